//! Reopen at random points: random operations under a stateful
//! (round-robin) PE-selection policy, closed and reopened (and compacted)
//! at random points, over `MemStore` (the test double with conditional
//! append and fencing). After every reopen every query, every live handle
//! and the data behind it are exactly as before, and `events_since`
//! answers what ARCHITECTURE.md promises: event ids survive, event
//! contents do not. A follower plane tails the same log with `read_from`
//! and `apply_records` and matches the writer after every step.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use proptest::prelude::*;
use vvol::*;

use crate::journal::fingerprint;

const PES: usize = 3;
const HOSTS: usize = 3;
const VVOLS: usize = 8;

/// Picks candidates in turn: its state is not in the journal, so a plane
/// that replayed requests through it would bind elsewhere after a reopen.
#[derive(Debug, Default)]
struct RoundRobin(AtomicUsize);

impl PeSelectionPolicy for RoundRobin {
    fn choose(&self, _: HostId, _: VvolId, candidates: &[PeCandidate]) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed) % candidates.len()
    }
}

/// The embedder's backends by key: they outlive the planes.
#[derive(Debug, Default)]
struct Disks(Mutex<HashMap<String, Arc<MemoryBackend>>>);

impl Disks {
    fn make(&self, key: &str) -> Arc<MemoryBackend> {
        let disk = Arc::new(MemoryBackend::new(1 << 20, 512).unwrap());
        self.0.lock().insert(key.to_owned(), Arc::clone(&disk));
        disk
    }
}

impl BackendProvider for Disks {
    fn backend(
        &self,
        _: VvolId,
        key: &BackendKey,
        _: u64,
        _: u32,
    ) -> Option<Arc<dyn BlockBackend>> {
        let disk: Arc<dyn BlockBackend> = self.0.lock().get(key.as_str())?.clone();
        Some(disk)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Bind {
        host: usize,
        vvols: Vec<usize>,
        rebind: bool,
    },
    Unbind {
        host: usize,
        pick: usize,
        end: bool,
    },
    UnbindAll(usize),
    Drain(usize),
    Fail(usize),
    Restore(usize),
    /// The host moves its handles off PEs that are not active.
    Rebind(usize),
    Create,
    Delete(usize),
    Resize(usize),
    /// Write a tag through one of the host's handles.
    Write {
        host: usize,
        pick: usize,
    },
    /// The host registers `key` on a vVol (an ALU with `alu`), and
    /// reserves it Write Exclusive when `reserve`.
    Register {
        host: usize,
        vvol: usize,
        alu: bool,
        key: u64,
        aptpl: bool,
        reserve: bool,
    },
    /// A power on of the array's logical units' reservations.
    PowerOn,
    /// Map (`map`) or unmap a PE for a host (tag 18).
    Access {
        host: usize,
        pe: usize,
        map: bool,
    },
    /// The host reports the PEs of `mask` (it may shrink).
    Context {
        host: usize,
        mask: u8,
    },
    /// Add or remove one of a few initiator names (tag 17).
    Initiator {
        host: usize,
        name: usize,
        add: bool,
    },
}

#[derive(Clone, Copy, Debug)]
enum Then {
    Go,
    Reopen,
    Compact,
    CompactReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..HOSTS, prop::collection::vec(0..VVOLS + 2, 1..=3), prop::bool::weighted(0.2))
            .prop_map(|(host, vvols, rebind)| Op::Bind { host, vvols, rebind }),
        4 => (0..HOSTS, any::<usize>(), any::<bool>())
            .prop_map(|(host, pick, end)| Op::Unbind { host, pick, end }),
        1 => (0..HOSTS).prop_map(Op::UnbindAll),
        1 => (0..PES).prop_map(Op::Drain),
        1 => (0..PES).prop_map(Op::Fail),
        2 => (0..PES).prop_map(Op::Restore),
        1 => (0..HOSTS).prop_map(Op::Rebind),
        1 => Just(Op::Create),
        1 => (0..VVOLS + 2).prop_map(Op::Delete),
        1 => (0..VVOLS + 2).prop_map(Op::Resize),
        4 => (0..HOSTS, any::<usize>()).prop_map(|(host, pick)| Op::Write { host, pick }),
        2 => (0..HOSTS, 0..VVOLS + 2, any::<bool>(), 0..4u64, any::<bool>(), any::<bool>())
            .prop_map(|(host, vvol, alu, key, aptpl, reserve)| Op::Register {
                host,
                vvol,
                alu,
                key,
                aptpl,
                reserve,
            }),
        1 => Just(Op::PowerOn),
        2 => (0..HOSTS, 0..PES, prop::bool::weighted(0.6))
            .prop_map(|(host, pe, map)| Op::Access { host, pe, map }),
        1 => (0..HOSTS, 0..8u8).prop_map(|(host, mask)| Op::Context { host, mask }),
        1 => (0..HOSTS, 0..4usize, any::<bool>())
            .prop_map(|(host, name, add)| Op::Initiator { host, name, add }),
    ]
}

fn then() -> impl Strategy<Value = Then> {
    prop_oneof![
        12 => Just(Then::Go),
        2 => Just(Then::Reopen),
        1 => Just(Then::Compact),
        2 => Just(Then::CompactReopen),
    ]
}

struct World {
    mem: MemStore,
    disks: Arc<Disks>,
    plane: ControlPlane,
    follower: ControlPlane,
    hosts: Vec<HostId>,
    pes: Vec<PeId>,
    container: ContainerId,
    vvols: Vec<VvolId>,
    /// The tag last written to block 0 of each vVol.
    tags: HashMap<VvolId, u64>,
    next_tag: u64,
}

fn limits() -> Limits {
    Limits::default().with_event_window(16)
}

fn options(disks: &Arc<Disks>) -> JournalOptions {
    JournalOptions::default()
        .with_compact_every(u64::MAX)
        .with_policy(Box::new(RoundRobin::default()))
        .with_backend_provider(Arc::clone(disks) as Arc<dyn BackendProvider>)
}

impl World {
    fn new() -> Self {
        Self::with_scope(SecondaryIdScope::PerPe)
    }

    fn with_scope(scope: SecondaryIdScope) -> Self {
        let mem = MemStore::new();
        let disks = Arc::new(Disks::default());
        let plane =
            ControlPlane::with_store(Box::new(mem.clone()), limits(), options(&disks)).unwrap();
        let array = plane
            .add_array(ArraySpec::new("array-a", 0x00_1a_2b).with_secondary_id_scope(scope))
            .unwrap();
        let container = plane
            .add_container(array, ContainerSpec::new("gold", Protocol::Scsi, 1 << 40))
            .unwrap();
        let space = SecondaryIdSpace::new(SubsidiaryAddressing::Simple, 1, 5).unwrap();
        let pes: Vec<PeId> = (0..PES as u64)
            .map(|i| {
                let naa = Naa::from_parts(0x00_1a_2b, 3, i).unwrap();
                let spec = PeSpec::scsi(naa, 250 + i as u16).with_secondary_ids(space);
                plane.add_pe(array, spec).unwrap()
            })
            .collect();
        let hosts: Vec<HostId> = (0..HOSTS)
            .map(|i| {
                let h = plane.add_host(&format!("esx-{i:02}")).unwrap();
                for pe in pes.iter() {
                    plane.map_pe(h, *pe).unwrap();
                }
                plane.set_pe_context(h, &pes).unwrap();
                h
            })
            .collect();
        let follower = ControlPlane::with_policy(limits(), Box::new(RoundRobin::default()))
            .with_backend_provider(Arc::clone(&disks) as Arc<dyn BackendProvider>);
        let mut w = Self {
            mem,
            disks,
            plane,
            follower,
            hosts,
            pes,
            container,
            vvols: Vec::new(),
            tags: HashMap::new(),
            next_tag: 1,
        };
        for _ in 0..VVOLS {
            w.create();
        }
        w
    }

    fn create(&mut self) {
        let key = format!("disk-{}", self.disks.0.lock().len());
        let disk = self.disks.make(&key);
        if let Ok(v) = self.plane.create_vvol_with_backend(
            self.container,
            VvolSpec::new(VvolType::Data, 1 << 20),
            disk,
            BackendKey::new(key).unwrap(),
        ) {
            self.vvols.push(v);
        }
    }

    fn vvol(&self, i: usize) -> VvolId {
        // Past the end: an id the plane never minted.
        self.vvols
            .get(i)
            .copied()
            .unwrap_or(VvolId(u128::from(i as u32) + 7))
    }

    fn held(&self, host: usize, pick: usize) -> Option<BindingInfo> {
        let mut held = self.plane.bindings_for_host(self.hosts[host]).unwrap();
        held.sort_by_key(|b| b.handle);
        (!held.is_empty()).then(|| held.swap_remove(pick % held.len()))
    }

    /// Runs one operation; errors other than the journal's are the plane
    /// refusing a request, which is fine.
    fn run(&mut self, op: &Op) {
        let plane = &self.plane;
        let res: Result<(), ControlError> = match op {
            Op::Bind {
                host,
                vvols,
                rebind,
            } => {
                let ids: Vec<VvolId> = vvols.iter().map(|i| self.vvol(*i)).collect();
                let ctx = if *rebind {
                    BindContext::RebindStart
                } else {
                    BindContext::Normal
                };
                plane.bind(self.hosts[*host], &ids, ctx).map(drop)
            }
            Op::Unbind { host, pick, end } => match self.held(*host, *pick) {
                Some(b) => {
                    let ctx = if *end {
                        UnbindContext::RebindEnd
                    } else {
                        UnbindContext::Normal
                    };
                    plane.unbind(self.hosts[*host], b.handle, ctx)
                }
                None => Ok(()),
            },
            Op::UnbindAll(host) => plane.unbind_all_from_host(self.hosts[*host]).map(drop),
            Op::Drain(pe) => plane.drain_pe(self.pes[*pe]).map(drop),
            Op::Fail(pe) => plane.fail_pe(self.pes[*pe]).map(drop),
            Op::Restore(pe) => plane.restore_pe(self.pes[*pe]).map(drop),
            Op::Rebind(host) => {
                let h = self.hosts[*host];
                let moving: Vec<BindHandle> = plane
                    .bindings_for_host(h)
                    .unwrap()
                    .iter()
                    .filter(|b| plane.pe(b.handle.pe).unwrap().state != PeState::Active)
                    .map(|b| b.handle)
                    .collect();
                plane.rebind(h, &moving).map(drop)
            }
            Op::Create => {
                self.create();
                Ok(())
            }
            Op::Delete(i) => plane.delete_vvol(self.vvol(*i)),
            Op::Resize(i) => {
                let v = self.vvol(*i);
                let cap = plane.vvol(v).map_or(1 << 20, |v| v.capacity_bytes);
                plane.resize_vvol(v, cap + (1 << 20))
            }
            Op::Access { host, pe, map } => {
                let (h, p) = (self.hosts[*host], self.pes[*pe]);
                if *map {
                    plane.map_pe(h, p)
                } else {
                    plane.unmap_pe(h, p)
                }
            }
            Op::Context { host, mask } => {
                let pes: Vec<PeId> = (0..PES)
                    .filter(|p| mask & (1 << p) != 0)
                    .map(|p| self.pes[p])
                    .collect();
                plane.set_pe_context(self.hosts[*host], &pes)
            }
            Op::Initiator { host, name, add } => {
                let name: InitiatorName =
                    format!("iqn.1998-01.com.vmware:n{name}").parse().unwrap();
                if *add {
                    plane.add_initiator(self.hosts[*host], name)
                } else {
                    plane.remove_initiator(self.hosts[*host], &name)
                }
            }
            Op::Write { host, pick } => {
                if let Some(b) = self.held(*host, *pick) {
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    let block = tag.to_le_bytes().repeat(64);
                    let h = self.hosts[*host];
                    if self
                        .plane
                        .router()
                        .write(h, b.handle, 0, &block, true)
                        .is_ok()
                    {
                        self.tags.insert(b.vvol, tag);
                    }
                }
                Ok(())
            }
            Op::Register {
                host,
                vvol,
                alu,
                key,
                aptpl,
                reserve,
            } => {
                let lu = if *alu {
                    PrLu::Alu(self.pes[*vvol % PES])
                } else {
                    PrLu::Slu(self.vvol(*vvol))
                };
                let nexus = PrNexus {
                    host: self.hosts[*host],
                    initiator: 0,
                    relative_target_port: 1,
                };
                let before = plane.reservations(lu);
                let mut after = before.clone();
                after.registrations.retain(|r| r.nexus != nexus);
                if *key != 0 {
                    after
                        .registrations
                        .push(PrRegistration { nexus, key: *key });
                }
                if after.reservation.is_some_and(|r| r.holder == nexus) && *key == 0 {
                    after.reservation = None;
                }
                if *reserve && *key != 0 && after.reservation.is_none() {
                    after.reservation = Some(PrReservation {
                        holder: nexus,
                        kind: PrType::WriteExclusive,
                    });
                }
                after.aptpl = *aptpl;
                after.generation = after.generation.wrapping_add(1);
                plane.set_reservations(lu, &before, after)
            }
            Op::PowerOn => plane.power_on_reservations(plane.arrays()[0]),
        };
        if let Err(e @ ControlError::Journal(_)) = res {
            panic!("{op:?}: the journal failed: {e}");
        }
    }

    /// The follower reads what it has not applied yet and must then
    /// answer every query as the writer does.
    fn follow(&self) {
        loop {
            let next = self.follower.applied_index() + 1;
            let records = self.mem.read_from(next, 1 << 16).unwrap();
            if records.is_empty() {
                break;
            }
            self.follower.apply_records(&records).unwrap();
        }
        assert_eq!(
            fingerprint(&self.follower),
            fingerprint(&self.plane),
            "follower"
        );
    }

    /// Every handle any host holds, with what I/O through it gives.
    fn handles(&self) -> Vec<(HostId, BindingInfo, Result<Vec<u8>, String>)> {
        let mut out = Vec::new();
        for &h in &self.hosts {
            for b in self.plane.bindings_for_host(h).unwrap() {
                let mut buf = vec![0u8; 512];
                let io = self
                    .plane
                    .router()
                    .read(h, b.handle, 0, &mut buf)
                    .map(|()| buf)
                    .map_err(|e| e.to_string());
                out.push((h, b, io));
            }
        }
        out.sort_by_key(|(h, b, _)| (*h, b.handle));
        out
    }

    fn reopen(&mut self, compact: bool) {
        if compact {
            self.plane.compact_journal().unwrap();
        }
        let print = fingerprint(&self.plane);
        let handles = self.handles();
        let last = self.plane.last_event_id();
        let stats: Vec<_> = self
            .pes
            .iter()
            .map(|p| self.plane.pe(*p).unwrap().state)
            .collect();
        drop(std::mem::replace(
            &mut self.plane,
            ControlPlane::new(limits()),
        ));
        self.plane =
            ControlPlane::with_store(Box::new(self.mem.clone()), limits(), options(&self.disks))
                .unwrap();
        assert_eq!(fingerprint(&self.plane), print, "queries after reopen");
        assert_eq!(
            self.handles(),
            handles,
            "handles and their data after reopen"
        );
        let states: Vec<_> = self
            .pes
            .iter()
            .map(|p| self.plane.pe(*p).unwrap().state)
            .collect();
        assert_eq!(states, stats);
        // Events: ids continue, contents before the reopen are gone.
        assert_eq!(self.plane.last_event_id(), last);
        assert!(self.plane.events_since(last).unwrap().is_empty());
        if last.0 > 0 {
            assert!(matches!(
                self.plane.events_since(EventId(last.0 - 1)),
                Err(ControlError::LostEvent { .. })
            ));
        }
        self.plane.check_invariants();
    }

    /// Every vVol's block 0 holds the tag last written through the router.
    fn check_data(&self) {
        for (v, tag) in &self.tags {
            if let Ok(backend) = self.plane.backend(*v) {
                let mut buf = vec![0u8; 512];
                backend.read_at(0, &mut buf).unwrap();
                assert_eq!(buf, tag.to_le_bytes().repeat(64), "data of {v}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn reopen_and_compaction_change_nothing_a_host_sees(
        steps in prop::collection::vec((op(), then()), 1..60),
        per_host in any::<bool>(),
    ) {
        let mut w = World::with_scope(if per_host {
            SecondaryIdScope::PerPeAndHost
        } else {
            SecondaryIdScope::PerPe
        });
        w.follow();
        for (op, then) in &steps {
            w.run(op);
            w.follow();
            match then {
                Then::Go => {}
                Then::Reopen => w.reopen(false),
                Then::Compact => w.plane.compact_journal().unwrap(),
                Then::CompactReopen => w.reopen(true),
            }
            w.check_data();
        }
        w.follow();
    }
}

/// A deposed writer (its store fenced, as when another node took over)
/// fails every mutation with `Fenced`, changes nothing, and stays failed;
/// the log holds exactly what it acknowledged.
#[test]
fn a_fenced_writer_changes_nothing_and_stays_failed() {
    let w = World::new();
    let host = w.hosts[0];
    w.plane
        .bind(host, &w.vvols[..2], BindContext::Normal)
        .unwrap();
    let before = fingerprint(&w.plane);
    w.mem.fence();
    let err = w
        .plane
        .bind(host, &w.vvols[2..3], BindContext::Normal)
        .unwrap_err();
    assert!(
        matches!(err, ControlError::Journal(JournalError::Fenced)),
        "{err}"
    );
    assert_eq!(fingerprint(&w.plane), before, "nothing applied");
    // Poisoned: even a call that would otherwise succeed fails typed.
    let err = w.plane.add_host("esx-99").unwrap_err();
    assert!(matches!(err, ControlError::Journal(_)), "{err}");
    assert_eq!(fingerprint(&w.plane), before);
    // What the log holds is what was acknowledged.
    let reader = ControlPlane::new(limits())
        .with_backend_provider(Arc::clone(&w.disks) as Arc<dyn BackendProvider>);
    let records = w.mem.read_from(1, usize::MAX).unwrap();
    reader.apply_records(&records).unwrap();
    assert_eq!(fingerprint(&reader), before);
}

/// A sync that fails poisons the plane: the call fails typed, every later
/// call fails typed, and a reopen finds the failed call wholly present or
/// wholly absent, whichever bytes survived.
#[test]
fn a_failed_sync_poisons_the_plane_and_reopen_sees_all_or_nothing() {
    for keep_unsynced in [false, true] {
        let w = World::new();
        let host = w.hosts[0];
        w.plane
            .bind(host, &w.vvols[..1], BindContext::Normal)
            .unwrap();
        let before = fingerprint(&w.plane);
        w.mem.fail_sync_after(0);
        let err = w
            .plane
            .bind(host, &w.vvols[1..4], BindContext::Normal)
            .unwrap_err();
        assert!(
            matches!(err, ControlError::Journal(JournalError::Io(_))),
            "{err}"
        );
        assert!(matches!(
            w.plane.add_host("esx-99"),
            Err(ControlError::Journal(_))
        ));
        assert!(matches!(
            w.plane.unbind_all_from_host(host),
            Err(ControlError::Journal(_))
        ));
        let image = if keep_unsynced {
            w.mem.bytes()
        } else {
            w.mem.power_cut(0, None)
        };
        drop(w.plane);
        let reopened = ControlPlane::with_store(
            Box::new(MemStore::from_bytes(image)),
            limits(),
            options(&w.disks),
        )
        .unwrap();
        let held = reopened.bindings_for_host(host).unwrap().len();
        if keep_unsynced {
            assert_eq!(held, 4, "the whole batch survived with its bytes");
        } else {
            assert_eq!(fingerprint(&reopened), before, "the batch is wholly absent");
        }
        reopened.check_invariants();
    }
}

/// The store's append is conditional on the log's position, as a
/// replicated store's compare-and-swap is; a follower refuses records out
/// of order.
#[test]
fn appends_and_applies_are_conditional_on_the_log_position() {
    let w = World::new();
    let info = w.mem.load().unwrap();
    let next = info.next_index;
    assert!(next > 1, "the topology was journaled");
    for wrong in [next - 1, next + 1] {
        match w.mem.append(wrong, b"x") {
            Err(JournalError::Conflict { expected, found }) => {
                assert_eq!((expected, found), (wrong, next));
            }
            other => panic!("append at {wrong} (next {next}): {other:?}"),
        }
    }
    let records = w.mem.read_from(1, usize::MAX).unwrap();
    let follower = ControlPlane::new(limits())
        .with_backend_provider(Arc::clone(&w.disks) as Arc<dyn BackendProvider>);
    // Skipping a record is refused and applies nothing.
    assert!(matches!(
        follower.apply_records(&records[1..]),
        Err(JournalError::Conflict {
            expected: 2,
            found: 1
        })
    ));
    assert_eq!(follower.applied_index(), 0);
    follower.apply_records(&records[..2]).unwrap();
    // Applying a record twice is refused too.
    assert!(matches!(
        follower.apply_records(&records[1..2]),
        Err(JournalError::Conflict {
            expected: 2,
            found: 3
        })
    ));
    follower.apply_records(&records[2..]).unwrap();
    assert_eq!(fingerprint(&follower), fingerprint(&w.plane));
    // A durable plane is a writer, not a follower.
    assert!(matches!(
        w.plane.apply_records(&records[..1]),
        Err(JournalError::Conflict { .. })
    ));
}
