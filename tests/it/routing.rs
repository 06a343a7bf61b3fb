//! Data-plane behaviour: generation safety, access, ranges, queue depth,
//! backend failures, stats.

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vvol::backend::{Fault, FaultKind, FaultTrigger, FaultyBackend, MemoryBackend};
use vvol::testing::quickstart;
use vvol::{
    ArraySpec, BackendError, BackendOp, BindContext, BindHandle, BlockBackend, ContainerSpec,
    ControlPlane, Generation, Limits, Naa, PeSpec, Protocol, RouteError, SecondaryIdSpace,
    SubsidiaryAddressing, UnbindContext, VvolSpec, VvolType,
};

use crate::support::{bind_one, tagged_block};

const MIB: u64 = 1 << 20;

/// One PE with a single secondary id, so every bind reuses slot 1.
fn one_slot_plane() -> (ControlPlane, vvol::ContainerId, vvol::HostId, vvol::PeId) {
    let plane = ControlPlane::new(Limits::default());
    let a = plane.add_array(ArraySpec::new("a", 1)).unwrap();
    let c = plane
        .add_container(a, ContainerSpec::new("c", Protocol::Scsi, 1 << 30))
        .unwrap();
    let space = SecondaryIdSpace::new(SubsidiaryAddressing::Simple, 1, 1).unwrap();
    let pe = plane
        .add_pe(
            a,
            PeSpec::scsi(Naa::from_parts(1, 1, 1).unwrap(), 1).with_secondary_ids(space),
        )
        .unwrap();
    let h = plane.add_host("h").unwrap();
    plane.map_pe(h, pe).unwrap();
    plane.set_pe_context(h, &[pe]).unwrap();
    (plane, c, h, pe)
}

#[test]
fn a_stale_handle_never_reaches_the_vvol_that_reused_its_slot() {
    let (plane, c, h, pe) = one_slot_plane();
    let router = plane.router();
    let first = plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, MIB))
        .unwrap();
    let second = plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, MIB))
        .unwrap();
    let old = bind_one(&plane, h, first, BindContext::Normal);
    plane.unbind(h, old, UnbindContext::Normal).unwrap();
    let new = bind_one(&plane, h, second, BindContext::Normal);
    assert_eq!((old.pe, old.secondary_id), (new.pe, new.secondary_id));
    assert_eq!(new.generation, Generation(old.generation.get() + 1));

    let err = router
        .write(h, old, 0, &tagged_block("stale"), false)
        .unwrap_err();
    assert!(
        matches!(err, RouteError::NotBound { pe: p, generation, .. } if p == pe && generation == old.generation)
    );
    let mut block = vec![0u8; 512];
    plane
        .backend(second)
        .unwrap()
        .read_at(0, &mut block)
        .unwrap();
    assert_eq!(block, vec![0u8; 512], "nothing landed on the new vVol");
    let resolved = router.resolve(pe, new.secondary_id).unwrap();
    assert_eq!(resolved.generation, new.generation);
    assert_eq!(plane.vvol_by_key(resolved.vvol), Some(second));
}

#[test]
fn io_in_flight_at_unbind_completes_on_its_vvol_and_unbind_does_not_wait() {
    /// A backend whose writes block until released, to hold I/O in flight.
    #[derive(Debug)]
    struct Gate {
        inner: MemoryBackend,
        entered: AtomicBool,
        open: AtomicBool,
    }
    impl BlockBackend for Gate {
        fn capacity_bytes(&self) -> u64 {
            self.inner.capacity_bytes()
        }
        fn logical_block_size(&self) -> u32 {
            self.inner.logical_block_size()
        }
        fn supports(&self, op: BackendOp) -> bool {
            self.inner.supports(op)
        }
        fn read_at(&self, o: u64, b: &mut [u8]) -> Result<(), BackendError> {
            self.inner.read_at(o, b)
        }
        fn write_at(&self, o: u64, d: &[u8], fua: bool) -> Result<(), BackendError> {
            self.entered.store(true, Ordering::SeqCst);
            while !self.open.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            self.inner.write_at(o, d, fua)
        }
        fn flush(&self) -> Result<(), BackendError> {
            self.inner.flush()
        }
        fn discard(&self, o: u64, l: u64) -> Result<(), BackendError> {
            self.inner.discard(o, l)
        }
        fn write_zeroes(&self, o: u64, l: u64) -> Result<(), BackendError> {
            self.inner.write_zeroes(o, l)
        }
        fn allocation(&self, o: u64, l: u64) -> Result<Vec<vvol::AllocationExtent>, BackendError> {
            self.inner.allocation(o, l)
        }
        fn resize(&self, c: u64) -> Result<(), BackendError> {
            self.inner.resize(c)
        }
    }
    let (plane, c, h, _) = one_slot_plane();
    let gate = Arc::new(Gate {
        inner: MemoryBackend::new(MIB, 512).unwrap(),
        entered: AtomicBool::new(false),
        open: AtomicBool::new(false),
    });
    let v = crate::support::create_on(
        &plane,
        c,
        VvolSpec::new(VvolType::Data, MIB),
        gate.clone() as _,
        "test",
    );
    let handle = bind_one(&plane, h, v, BindContext::Normal);
    let router = plane.router();
    let writer = {
        let router = router.clone();
        std::thread::spawn(move || router.write(h, handle, 0, &tagged_block("in flight"), false))
    };
    while !gate.entered.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    // The write is inside the backend: unbind returns without waiting for it.
    plane.unbind(h, handle, UnbindContext::Normal).unwrap();
    assert!(
        router.read(h, handle, 0, &mut [0u8; 512]).is_err(),
        "new I/O fails"
    );
    gate.open.store(true, Ordering::SeqCst);
    writer
        .join()
        .unwrap()
        .expect("the admitted write completes");
    let mut block = vec![0u8; 512];
    gate.inner.read_at(0, &mut block).unwrap();
    assert_eq!(block, tagged_block("in flight"));
}

#[test]
fn only_hosts_holding_the_binding_get_access() {
    let (plane, topo) = quickstart().unwrap();
    let handle = bind_one(&plane, topo.hosts[0], topo.vms[0].data, BindContext::Normal);
    let router = plane.router();
    let err = router
        .read(topo.hosts[1], handle, 0, &mut [0u8; 512])
        .unwrap_err();
    assert!(matches!(err, RouteError::AccessDenied { host, .. } if host == topo.hosts[1]));
    // Once the other host binds too, it shares the binding and has access.
    bind_one(&plane, topo.hosts[1], topo.vms[0].data, BindContext::Normal);
    router
        .read(topo.hosts[1], handle, 0, &mut [0u8; 512])
        .unwrap();
}

#[test]
fn ranges_and_alignment_are_checked_against_the_vvol() {
    let (plane, topo) = quickstart().unwrap();
    let (h, v) = (topo.hosts[0], topo.vms[0].config);
    let handle = bind_one(&plane, h, v, BindContext::Normal);
    let router = plane.router();
    let cap = plane.vvol(v).unwrap().capacity_bytes;
    router
        .write(h, handle, cap - 512, &[1u8; 512], false)
        .unwrap();
    assert!(matches!(
        router.write(h, handle, cap, &[1u8; 512], false),
        Err(RouteError::OutOfRange { capacity_bytes, .. }) if capacity_bytes == cap
    ));
    assert!(matches!(
        router.discard(h, handle, u64::MAX - 511, 512),
        Err(RouteError::OutOfRange { .. })
    ));
    assert!(matches!(
        router.write(h, handle, 100, &[1u8; 512], false),
        Err(RouteError::Misaligned {
            block_size: 512,
            ..
        })
    ));
    assert!(matches!(
        router.read(h, handle, 0, &mut [0u8; 100]),
        Err(RouteError::Misaligned { .. })
    ));
    // A 4096-byte vVol rejects 512-byte I/O.
    let big = plane
        .create_vvol(
            topo.containers[0],
            VvolSpec::new(VvolType::Data, MIB).with_logical_block_size(4096),
        )
        .unwrap();
    let bh = bind_one(&plane, h, big, BindContext::Normal);
    assert!(matches!(
        router.write(h, bh, 0, &[0u8; 512], false),
        Err(RouteError::Misaligned {
            block_size: 4096,
            ..
        })
    ));
    router.write(h, bh, 4096, &[9u8; 4096], true).unwrap();
    assert_eq!(router.geometry(h, bh).unwrap(), (MIB, 4096));
}

#[test]
fn unknown_pe_and_secondary_ids_are_not_bound() {
    let (plane, topo) = quickstart().unwrap();
    let handle = bind_one(&plane, topo.hosts[0], topo.vms[0].data, BindContext::Normal);
    let router = plane.router();
    let bad_pe = BindHandle {
        pe: vvol::PeId(4000),
        ..handle
    };
    assert!(matches!(
        router.read(topo.hosts[0], bad_pe, 0, &mut [0u8; 512]),
        Err(RouteError::UnknownPe { .. })
    ));
    for sid in [0, 99, 16384, u64::MAX] {
        let bad = BindHandle {
            secondary_id: vvol::SecondaryId(sid),
            ..handle
        };
        assert!(
            matches!(
                router.read(topo.hosts[0], bad, 0, &mut [0u8; 512]),
                Err(RouteError::NotBound { .. })
            ),
            "{sid}"
        );
        assert!(router.resolve(handle.pe, vvol::SecondaryId(sid)).is_none());
    }
    assert!(
        router
            .resolve(vvol::PeId(u32::MAX), handle.secondary_id)
            .is_none()
    );
}

#[test]
fn a_full_pe_queue_rejects_io_with_queue_full() {
    let plane = ControlPlane::new(Limits::default());
    let a = plane.add_array(ArraySpec::new("a", 1)).unwrap();
    let c = plane
        .add_container(a, ContainerSpec::new("c", Protocol::Scsi, 1 << 30))
        .unwrap();
    let pe = plane
        .add_pe(
            a,
            PeSpec::scsi(Naa::from_parts(1, 1, 1).unwrap(), 1).with_queue_depth(32),
        )
        .unwrap();
    let h = plane.add_host("h").unwrap();
    plane.map_pe(h, pe).unwrap();
    plane.set_pe_context(h, &[pe]).unwrap();
    let _gate = Arc::new(FaultyBackend::new(Arc::new(
        MemoryBackend::new(MIB, 512).unwrap(),
    )));
    // Hold 32 reads inside the backend with a barrier-like spin.
    #[derive(Debug)]
    struct Slow(Arc<std::sync::Barrier>, MemoryBackend);
    impl BlockBackend for Slow {
        fn capacity_bytes(&self) -> u64 {
            self.1.capacity_bytes()
        }
        fn logical_block_size(&self) -> u32 {
            512
        }
        fn supports(&self, op: BackendOp) -> bool {
            self.1.supports(op)
        }
        fn read_at(&self, o: u64, b: &mut [u8]) -> Result<(), BackendError> {
            self.0.wait(); // all 32 admitted
            self.0.wait(); // the test has checked QueueFull
            self.1.read_at(o, b)
        }
        fn write_at(&self, o: u64, d: &[u8], f: bool) -> Result<(), BackendError> {
            self.1.write_at(o, d, f)
        }
        fn flush(&self) -> Result<(), BackendError> {
            Ok(())
        }
        fn discard(&self, o: u64, l: u64) -> Result<(), BackendError> {
            self.1.discard(o, l)
        }
        fn write_zeroes(&self, o: u64, l: u64) -> Result<(), BackendError> {
            self.1.write_zeroes(o, l)
        }
        fn allocation(&self, o: u64, l: u64) -> Result<Vec<vvol::AllocationExtent>, BackendError> {
            self.1.allocation(o, l)
        }
        fn resize(&self, c: u64) -> Result<(), BackendError> {
            self.1.resize(c)
        }
    }
    let barrier = Arc::new(std::sync::Barrier::new(33));
    let slow = Arc::new(Slow(barrier.clone(), MemoryBackend::new(MIB, 512).unwrap()));
    let v = crate::support::create_on(
        &plane,
        c,
        VvolSpec::new(VvolType::Data, MIB),
        slow as _,
        "test",
    );
    let handle = bind_one(&plane, h, v, BindContext::Normal);
    let router = plane.router();
    let readers: Vec<_> = (0..32)
        .map(|_| {
            let router = router.clone();
            std::thread::spawn(move || router.read(h, handle, 0, &mut [0u8; 512]))
        })
        .collect();
    barrier.wait();
    assert_eq!(router.pe_stats(pe).unwrap().in_flight, 32);
    let err = router.read(h, handle, 0, &mut [0u8; 512]).unwrap_err();
    assert!(
        matches!(err, RouteError::QueueFull { pe: p, queue_depth: 32, host_in_flight: 32 } if p == pe)
    );
    barrier.wait();
    for r in readers {
        r.join().unwrap().unwrap();
    }
    assert_eq!(
        router.pe_stats(pe).unwrap().in_flight,
        0,
        "queue places given back"
    );
    let stats = router.pe_stats(pe).unwrap().io;
    assert_eq!((stats.reads, stats.errors), (32, 1));
    // The queue has room again: a write (which does not wait) is admitted.
    router.write(h, handle, 0, &[1u8; 512], false).unwrap();
}

#[test]
fn backend_failures_surface_with_the_vvol_and_count_as_errors() {
    let (plane, topo) = quickstart().unwrap();
    let faulty = Arc::new(FaultyBackend::new(Arc::new(
        MemoryBackend::new(MIB, 512).unwrap(),
    )));
    let v = crate::support::create_on(
        &plane,
        topo.containers[0],
        VvolSpec::new(VvolType::Data, MIB),
        faulty.clone() as _,
        "test",
    );
    let h = topo.hosts[0];
    let handle = bind_one(&plane, h, v, BindContext::Normal);
    let router = plane.router();
    faulty
        .add_fault(Fault::on(
            BackendOp::Write,
            FaultTrigger::Nth(1),
            FaultKind::Io(ErrorKind::Other),
        ))
        .unwrap();
    let err = router.write(h, handle, 0, &[3u8; 512], true).unwrap_err();
    assert!(
        matches!(&err, RouteError::Backend { vvol, source: BackendError::Io { op: BackendOp::Write, .. } } if *vvol == v),
        "{err}"
    );
    router.write(h, handle, 0, &[3u8; 512], true).unwrap();
    faulty
        .add_fault(Fault::on(
            BackendOp::Flush,
            FaultTrigger::Always,
            FaultKind::Gone,
        ))
        .unwrap();
    assert!(matches!(
        router.flush(h, handle),
        Err(RouteError::Backend {
            source: BackendError::Gone { .. },
            ..
        })
    ));
    let stats = plane.stats();
    let vs = stats.vvols.iter().find(|s| s.vvol == v).unwrap();
    assert_eq!(
        (vs.io.writes, vs.io.errors, vs.io.bytes_written),
        (1, 2, 512)
    );
}

#[test]
fn discard_write_zeroes_and_allocation_route_to_the_backend() {
    let (plane, topo) = quickstart().unwrap();
    let (h, v) = (topo.hosts[0], topo.vms[0].data);
    let handle = bind_one(&plane, h, v, BindContext::Normal);
    let router = plane.router();
    router
        .write(h, handle, 0, &vec![0xAAu8; MIB as usize], false)
        .unwrap();
    router.flush(h, handle).unwrap();
    let extents = router.allocation(h, handle, 0, 2 * MIB).unwrap();
    assert_eq!(extents[0].offset, 0);
    assert_eq!(extents[0].state, vvol::AllocationState::Allocated);
    router.write_zeroes(h, handle, 0, MIB).unwrap();
    let mut back = vec![1u8; 4096];
    router.read(h, handle, 0, &mut back).unwrap();
    assert!(back.iter().all(|b| *b == 0));
    router.discard(h, handle, 0, MIB).unwrap();
    let s = plane.stats();
    let ps = s.pes.iter().find(|p| p.pe == handle.pe).unwrap();
    assert_eq!(ps.io.writes, 1);
    assert_eq!(ps.io.other_ops, 4);
}

#[test]
fn the_router_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<vvol::Router>();
    check::<ControlPlane>();
}
