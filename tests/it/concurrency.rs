//! Stress test: routed I/O racing bind, rebind and unbind on a PE whose
//! secondary ids are reused all the time.
//!
//! One control thread binds, rebinds and unbinds vVols for host 0 through a
//! PE with only 8 secondary ids, publishing every handle it gets. Reader
//! threads pick any handle ever published (most of them stale), resolve it
//! and write a block tagged with the vVol the handle was issued for, then
//! read it back. A write that succeeds must land on that vVol: at the end
//! every non-zero block of every vVol must carry the vVol's own id. No
//! timing is asserted; every loop is bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use parking_lot::RwLock;
use vvol::{
    ArraySpec, BindContext, BindHandle, ContainerSpec, ControlError, ControlPlane, HostId, Limits,
    MIB, Naa, PeSpec, Protocol, RouteError, SecondaryIdSpace, SubsidiaryAddressing, UnbindContext,
    VvolId, VvolKey, VvolSpec, VvolType,
};

const VVOLS: usize = 6;
const READERS: usize = 3;
const CONTROL_STEPS: usize = 3_000;
/// Reader iterations: at least this many, and on until the control thread
/// is done, but never more than `READER_MAX`.
const READER_MIN: u64 = 5_000;
const READER_MAX: u64 = 150_000;
/// Blocks each reader owns in every vVol (disjoint ranges per reader).
const BLOCKS_PER_READER: u64 = 64;
const BLOCK: usize = 512;
/// Live bindings the control thread keeps at most (the PE has 8 ids).
const MAX_LIVE: usize = 7;
/// Half of the reader picks come from the latest handles published.
const RECENT: usize = 8;

/// xorshift64*: deterministic choices per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn vvol_id(v: usize) -> VvolId {
    VvolId(0x0c0c_0000_0000_4000_8000_0000_0000_0000 + v as u128)
}

fn payload(vvol: VvolId, thread: usize, counter: u64) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..16].copy_from_slice(&vvol.0.to_be_bytes());
    b[16..24].copy_from_slice(&counter.to_le_bytes());
    b[24] = thread as u8 + 1;
    for (i, x) in b[25..].iter_mut().enumerate() {
        *x = (counter as usize).wrapping_add(i) as u8 | 0x80;
    }
    b
}

#[derive(Debug, Default)]
struct Tally {
    writes_ok: AtomicU64,
    reads_ok: AtomicU64,
    not_bound: AtomicU64,
    /// NotBound for a handle whose slot resolved to another generation: a
    /// stale handle of a reused secondary id.
    stale_reused: AtomicU64,
    denied: AtomicU64,
}

struct Fixture {
    plane: ControlPlane,
    host: HostId,
    other_host: HostId,
    keys: Vec<VvolKey>,
}

fn fixture() -> Fixture {
    let plane = ControlPlane::new(Limits::default());
    let array = plane
        .add_array(ArraySpec::new("array-a", 0x00_1A_2B))
        .unwrap();
    let container = plane
        .add_container(array, ContainerSpec::new("gold", Protocol::Scsi, 1 << 30))
        .unwrap();
    let space = SecondaryIdSpace::new(SubsidiaryAddressing::Simple, 1, 8).unwrap();
    let naa = Naa::from_parts(0x00_1A_2B, 0x5EED, 1).unwrap();
    let pe = plane
        .add_pe(array, PeSpec::scsi(naa, 255).with_secondary_ids(space))
        .unwrap();
    let host = plane.add_host("esx-01").unwrap();
    let other_host = plane.add_host("esx-02").unwrap();
    plane.map_pe(host, pe).unwrap();
    plane.set_pe_context(host, &[pe]).unwrap();
    plane.map_pe(other_host, pe).unwrap();
    plane.set_pe_context(other_host, &[pe]).unwrap();
    let mut keys = Vec::new();
    for v in 0..VVOLS {
        let id = plane
            .create_vvol(
                container,
                VvolSpec::new(VvolType::Data, MIB).with_id(vvol_id(v)),
            )
            .unwrap();
        keys.push(plane.vvol(id).unwrap().key);
    }
    Fixture {
        plane,
        host,
        other_host,
        keys,
    }
}

/// The control thread: bind, rebind, unbind; publish every handle. Returns
/// how many binds reused a secondary id seen before.
fn control(fx: &Fixture, published: &RwLock<Vec<(usize, BindHandle)>>, done: &AtomicBool) -> usize {
    let plane = &fx.plane;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // (vVol, handle, bind count) of every live binding.
    let mut live: Vec<(usize, BindHandle, u32)> = Vec::new();
    let mut seen_sids = std::collections::BTreeSet::new();
    let mut reused = 0;
    let mut publish = |v: usize, h: BindHandle, live: &mut Vec<(usize, BindHandle, u32)>| {
        if let Some(entry) = live.iter_mut().find(|e| e.1 == h) {
            assert_eq!(entry.0, v, "a handle names one vVol");
            entry.2 += 1;
            return;
        }
        if !seen_sids.insert(h.secondary_id) {
            reused += 1;
        }
        live.push((v, h, 1));
        published.write().push((v, h));
    };
    let unbind = |live: &mut Vec<(usize, BindHandle, u32)>, i: usize, ctx: UnbindContext| {
        plane.unbind(fx.host, live[i].1, ctx).unwrap();
        live[i].2 -= 1;
        if live[i].2 == 0 {
            live.swap_remove(i);
        }
    };
    for step in 0..CONTROL_STEPS {
        let roll = rng.below(10);
        if !live.is_empty() && (live.len() >= MAX_LIVE || roll < 4) {
            let i = rng.below(live.len());
            unbind(&mut live, i, UnbindContext::Normal);
        } else if !live.is_empty() && roll < 6 {
            // Rebind: a new handle first, then the old one goes.
            let i = rng.below(live.len());
            let (v, old, count) = live[i];
            match plane.bind(fx.host, &[vvol_id(v)], BindContext::RebindStart) {
                Ok(mut r) => match r.remove(0) {
                    Ok(h) => {
                        assert_ne!(h, old, "RebindStart gives another handle");
                        publish(v, h, &mut live);
                        let i = live.iter().position(|e| e.1 == old).unwrap();
                        assert_eq!(live[i].2, count);
                        for _ in 0..count {
                            let i = live.iter().position(|e| e.1 == old).unwrap();
                            unbind(&mut live, i, UnbindContext::RebindEnd);
                        }
                    }
                    Err(ControlError::SecondaryIdsExhausted { .. }) => {
                        unbind(&mut live, i, UnbindContext::Normal);
                    }
                    Err(e) => panic!("rebind item: {e}"),
                },
                Err(e) => panic!("rebind: {e}"),
            }
        } else {
            let v = rng.below(VVOLS);
            let mut r = plane
                .bind(fx.host, &[vvol_id(v)], BindContext::Normal)
                .unwrap();
            match r.remove(0) {
                Ok(h) => publish(v, h, &mut live),
                Err(ControlError::SecondaryIdsExhausted { .. }) => {
                    let i = rng.below(live.len());
                    unbind(&mut live, i, UnbindContext::Normal);
                }
                Err(e) => panic!("bind: {e}"),
            }
        }
        if step % 64 == 0 {
            plane.check_invariants();
        }
        // Let readers in now and then on a busy machine.
        if step % 16 == 0 {
            thread::yield_now();
        }
    }
    plane.check_invariants();
    done.store(true, Ordering::Release);
    reused
}

fn reader(
    t: usize,
    fx: &Fixture,
    published: &RwLock<Vec<(usize, BindHandle)>>,
    done: &AtomicBool,
    tally: &Tally,
) {
    let router = fx.plane.router();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (t as u64 + 1));
    let mut i = 0u64;
    while i < READER_MAX && (i < READER_MIN || !done.load(Ordering::Acquire)) {
        i += 1;
        let picked = {
            let all = published.read();
            if all.is_empty() {
                None
            } else if rng.below(2) == 0 {
                // A recent handle: likely still bound.
                let recent = all.len().min(RECENT);
                Some(all[all.len() - 1 - rng.below(recent)])
            } else {
                Some(all[rng.below(all.len())])
            }
        };
        let Some((v, handle)) = picked else {
            thread::yield_now();
            continue;
        };
        let resolved = router.resolve(handle.pe, handle.secondary_id);
        if let Some(r) = resolved {
            // A slot word is published whole: its generation names its vVol.
            if r.generation == handle.generation {
                assert_eq!(r.vvol, fx.keys[v], "resolve of a current handle");
            }
        }
        let block = t as u64 * BLOCKS_PER_READER + i % BLOCKS_PER_READER;
        let offset = block * BLOCK as u64;
        let data = payload(vvol_id(v), t, i);
        // Now and then from a host that never binds: always refused.
        if i.is_multiple_of(16) {
            match router.write(fx.other_host, handle, offset, &data, false) {
                Err(RouteError::AccessDenied { .. }) => {
                    tally.denied.fetch_add(1, Ordering::Relaxed);
                }
                Err(RouteError::NotBound { .. }) => {}
                Ok(()) => panic!("a host without the binding wrote through {handle}"),
                Err(e) => panic!("unexpected error {e}"),
            }
            continue;
        }
        match router.write(fx.host, handle, offset, &data, false) {
            Ok(()) => {
                tally.writes_ok.fetch_add(1, Ordering::Relaxed);
                let mut back = [0u8; BLOCK];
                // Only this thread writes this block: a read that gets
                // through the same handle sees exactly what it wrote.
                match router.read(fx.host, handle, offset, &mut back) {
                    Ok(()) => {
                        assert_eq!(back, data, "read back through {handle}");
                        tally.reads_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(RouteError::NotBound { .. }) => {}
                    Err(e) => panic!("unexpected read error {e}"),
                }
            }
            Err(RouteError::NotBound { .. }) => {
                tally.not_bound.fetch_add(1, Ordering::Relaxed);
                if resolved.is_some_and(|r| r.generation != handle.generation) {
                    tally.stale_reused.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => panic!("unexpected write error {e}"),
        }
    }
}

#[test]
fn io_never_reaches_a_vvol_its_handle_was_not_issued_for() {
    let fx = Arc::new(fixture());
    let published = Arc::new(RwLock::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());

    let readers: Vec<_> = (0..READERS)
        .map(|t| {
            let (fx, published, done, tally) = (
                Arc::clone(&fx),
                Arc::clone(&published),
                Arc::clone(&done),
                Arc::clone(&tally),
            );
            thread::spawn(move || reader(t, &fx, &published, &done, &tally))
        })
        .collect();
    let reused = {
        let (fx, published, done) = (Arc::clone(&fx), Arc::clone(&published), Arc::clone(&done));
        thread::spawn(move || control(&fx, &published, &done))
            .join()
            .expect("control thread")
    };
    for r in readers {
        r.join().expect("reader thread");
    }

    // Every non-zero block carries the id of the vVol that holds it.
    let mut tagged = 0u64;
    for v in 0..VVOLS {
        let mut bytes = vec![0u8; MIB as usize];
        let backend = fx.plane.backend(vvol_id(v)).unwrap();
        backend.read_at(0, &mut bytes).unwrap();
        for (b, block) in bytes.chunks(BLOCK).enumerate() {
            if block.iter().all(|x| *x == 0) {
                continue;
            }
            let tag = VvolId(u128::from_be_bytes(block[..16].try_into().unwrap()));
            assert_eq!(
                tag,
                vvol_id(v),
                "block {b} of vVol {v} holds a write issued for another vVol"
            );
            tagged += 1;
        }
    }

    eprintln!("reused ids: {reused}, tagged blocks: {tagged}, {tally:?}");
    let writes_ok = tally.writes_ok.load(Ordering::Relaxed);
    let stale = tally.stale_reused.load(Ordering::Relaxed);
    assert!(reused > 0, "secondary ids were reused");
    assert!(writes_ok > 0, "some writes succeeded");
    assert!(tagged > 0, "some blocks were written");
    assert!(
        stale > 0,
        "stale handles of reused slots were rejected (not bound: {})",
        tally.not_bound.load(Ordering::Relaxed)
    );
    assert!(
        tally.denied.load(Ordering::Relaxed) > 0,
        "other host refused"
    );
    let stats = fx.plane.stats();
    let routed: u64 = stats.vvols.iter().map(|s| s.io.writes).sum();
    assert_eq!(routed, writes_ok, "every successful write was counted once");
}
