//! PE-selection policies as embedders write them: a panic binds nothing
//! (in memory and in the journal) and leaves the plane usable; a policy may
//! query the plane; replay never asks the policy.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use vvol::*;

use crate::journal::fingerprint;

/// Panics while `armed`, else picks the last candidate.
#[derive(Debug, Default)]
struct Grenade {
    armed: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl PeSelectionPolicy for Grenade {
    fn choose(&self, _: HostId, _: VvolId, candidates: &[PeCandidate]) -> usize {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        // The first item of a batch is decided; a later one panics.
        assert!(
            !(self.armed.load(Ordering::SeqCst) && n % 3 == 2),
            "policy bug"
        );
        candidates.len() - 1
    }
}

struct Topo {
    host: HostId,
    vvols: Vec<VvolId>,
}

fn topology(plane: &ControlPlane) -> Topo {
    let array = plane
        .add_array(ArraySpec::new("array-a", 0x00_1a_2b))
        .unwrap();
    let c = plane
        .add_container(array, ContainerSpec::new("gold", Protocol::Scsi, 1 << 40))
        .unwrap();
    let pes: Vec<PeId> = (0..3)
        .map(|i| {
            let naa = Naa::from_parts(0x00_1a_2b, 5, i).unwrap();
            plane
                .add_pe(array, PeSpec::scsi(naa, 300 + i as u16))
                .unwrap()
        })
        .collect();
    let host = plane.add_host("esx-00").unwrap();
    for pe in pes.iter() {
        plane.map_pe(host, *pe).unwrap();
    }
    plane.set_pe_context(host, &pes).unwrap();
    let vvols = (0..6)
        .map(|_| {
            plane
                .create_vvol(c, VvolSpec::new(VvolType::Data, 1 << 20))
                .unwrap()
        })
        .collect();
    Topo { host, vvols }
}

fn panicking_batch_binds_nothing(plane: &ControlPlane, armed: &AtomicBool, calls: &AtomicUsize) {
    let t = topology(plane);
    let before = fingerprint(plane);
    calls.store(0, Ordering::SeqCst);
    armed.store(true, Ordering::SeqCst);
    let err = plane
        .bind(t.host, &t.vvols[..3], BindContext::Normal)
        .unwrap_err();
    assert!(matches!(err, ControlError::PolicyPanicked), "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the panic came after two choices"
    );
    assert_eq!(fingerprint(plane), before, "half a batch was bound");
    assert!(plane.bindings_for_host(t.host).unwrap().is_empty());
    // The plane stays usable once the policy behaves.
    armed.store(false, Ordering::SeqCst);
    let bound = plane
        .bind(t.host, &t.vvols[..3], BindContext::Normal)
        .unwrap();
    assert!(bound.iter().all(Result::is_ok));
    assert_eq!(plane.bindings_for_host(t.host).unwrap().len(), 3);
    plane.check_invariants();
}

#[test]
fn a_panicking_policy_binds_nothing_in_memory() {
    let policy = Grenade::default();
    let (armed, calls) = (Arc::clone(&policy.armed), Arc::clone(&policy.calls));
    let plane = ControlPlane::with_policy(Limits::default(), Box::new(policy));
    panicking_batch_binds_nothing(&plane, &armed, &calls);
}

#[test]
fn a_panicking_policy_binds_nothing_in_the_journal() {
    let mem = MemStore::new();
    let policy = Grenade::default();
    let (armed, calls) = (Arc::clone(&policy.armed), Arc::clone(&policy.calls));
    let opts = JournalOptions::default().with_policy(Box::new(policy));
    let plane = ControlPlane::with_store(Box::new(mem.clone()), Limits::default(), opts).unwrap();
    panicking_batch_binds_nothing(&plane, &armed, &calls);
    let after = fingerprint(&plane);
    drop(plane);
    // Replay applies what was decided and never asks the policy: an
    // armed grenade on reopen does not go off.
    let policy = Grenade::default();
    policy.armed.store(true, Ordering::SeqCst);
    let calls = Arc::clone(&policy.calls);
    let opts = JournalOptions::default().with_policy(Box::new(policy));
    let reopened = ControlPlane::with_store(Box::new(mem), Limits::default(), opts).unwrap();
    assert_eq!(fingerprint(&reopened), after);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Queries the plane it serves from inside `choose`: prefers the PE the
/// host already holds the fewest bindings on.
#[derive(Debug, Default)]
struct Curious {
    plane: Arc<OnceLock<Arc<ControlPlane>>>,
    queries: Arc<AtomicUsize>,
}

impl PeSelectionPolicy for Curious {
    fn choose(&self, host: HostId, vvol: VvolId, candidates: &[PeCandidate]) -> usize {
        let plane = self.plane.get().expect("set before the first bind");
        let held = plane.bindings_for_host(host).unwrap();
        assert!(plane.vvol(vvol).is_ok());
        self.queries.fetch_add(1, Ordering::SeqCst);
        (0..candidates.len())
            .min_by_key(|&i| {
                let pe = candidates[i].pe;
                assert_eq!(plane.pe(pe).unwrap().state, PeState::Active);
                held.iter().filter(|b| b.handle.pe == pe).count()
            })
            .unwrap_or(0)
    }
}

#[test]
fn a_policy_may_query_the_plane_without_deadlock() {
    let policy = Curious::default();
    let (cell, queries) = (Arc::clone(&policy.plane), Arc::clone(&policy.queries));
    let plane = Arc::new(ControlPlane::with_policy(
        Limits::default(),
        Box::new(policy),
    ));
    cell.set(Arc::clone(&plane)).unwrap();
    let t = topology(&plane);
    let (tx, rx) = mpsc::channel();
    let worker = {
        let plane = Arc::clone(&plane);
        std::thread::spawn(move || {
            for v in &t.vvols {
                let res = plane.bind(t.host, &[*v], BindContext::Normal);
                tx.send(res.map(|mut r| r.remove(0))).unwrap();
            }
        })
    };
    for _ in 0..6 {
        // A deadlock fails here instead of hanging the suite.
        let res = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("bind deadlocked");
        res.unwrap().unwrap();
    }
    worker.join().unwrap();
    assert_eq!(queries.load(Ordering::SeqCst), 6);
    // Its choices spread the host over the three PEs.
    let held = plane.bindings_for_host(t.host).unwrap();
    for pe in plane.pes_for_array(plane.arrays()[0]).unwrap() {
        assert_eq!(
            held.iter().filter(|b| b.handle.pe == pe).count(),
            2,
            "{pe:?}"
        );
    }
}

#[test]
fn an_index_out_of_bounds_picks_the_first_candidate() {
    #[derive(Debug)]
    struct Wild;
    impl PeSelectionPolicy for Wild {
        fn choose(&self, _: HostId, _: VvolId, _: &[PeCandidate]) -> usize {
            usize::MAX
        }
    }
    let plane = ControlPlane::with_policy(Limits::default(), Box::new(Wild));
    let t = topology(&plane);
    let h = plane
        .bind(t.host, &t.vvols[..1], BindContext::Normal)
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(h.pe, plane.pes_for_array(plane.arrays()[0]).unwrap()[0]);
}

#[test]
fn policies_unit_test_on_constructed_candidates() {
    let naa = |n| Naa::from_parts(0x00_1a_2b, 1, n).unwrap();
    let cand = |pe: u32, bindings: u64| {
        PeCandidate::new(
            PeId(pe),
            ArrayId(0),
            PeSpec::scsi(naa(u64::from(pe)), 10 + pe as u16)
                .transport()
                .clone(),
            PeState::Active,
            bindings,
            128,
        )
    };
    let vvol = VvolId(0x6f1c_2a4e_0d3b_4c8e_9a7f_1b2c_3d4e_5f60);
    let list = [cand(0, 4), cand(1, 2), cand(2, 2), cand(3, 9)];
    assert_eq!(
        FewestBindings.choose(HostId(0), vvol, &list),
        1,
        "lowest id on a tie"
    );
    assert_eq!(FewestBindings.choose(HostId(0), vvol, &list[2..]), 0);
    let c = cand(7, 1);
    assert_eq!(
        (c.pe, c.bindings, c.queue_depth, c.state),
        (PeId(7), 1, 128, PeState::Active)
    );
}
