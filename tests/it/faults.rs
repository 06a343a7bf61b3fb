//! Faults end to end: a [`FaultyBackend`] failure surfaces on exactly the
//! affected I/O, through the SCSI target and through the NBD gateway, and
//! the I/O around it (other blocks, the next request, other vVols) succeeds.
//!
//! Already covered elsewhere: every fault kind per SCSI command class in
//! `scsi_target::backend_failures_map_to_medium_and_hardware_errors`; the
//! model invariants under injected faults in `control_plane_model`.

use std::io::ErrorKind;
use std::sync::Arc;

use vvol::backend::{BackendOp, Fault, FaultKind, FaultTrigger, FaultyBackend, MemoryBackend};

const MIB: u64 = 1 << 20;
const EIO: FaultKind = FaultKind::Io(ErrorKind::Other);

fn faulty(capacity: u64) -> Arc<FaultyBackend> {
    Arc::new(FaultyBackend::new(Arc::new(
        MemoryBackend::new(capacity, 512).expect("memory backend"),
    )))
}

#[cfg(feature = "scsi")]
mod scsi {
    use super::*;
    use crate::scsi_target::{Fixture, kcq};
    use vvol::scsi::{ScsiResponse, Status};

    fn read10(lba: u32) -> [u8; 10] {
        let l = lba.to_be_bytes();
        [0x28, 0, l[0], l[1], l[2], l[3], 0, 0, 1, 0]
    }

    fn write10(lba: u32) -> [u8; 10] {
        let l = lba.to_be_bytes();
        [0x2A, 0, l[0], l[1], l[2], l[3], 0, 0, 1, 0]
    }

    #[track_caller]
    fn good(r: &ScsiResponse) {
        assert_eq!(r.status, Status::Good, "sense {:?}", kcq(r));
    }

    #[track_caller]
    fn failed(r: &ScsiResponse, expect: (u8, u8, u8)) {
        assert_eq!(r.status, Status::CheckCondition);
        assert_eq!(kcq(r), expect);
        assert!(r.data_in.is_empty(), "no data with a failed read");
    }

    #[test]
    fn scsi_fault_fails_only_the_io_it_hits() {
        let f = Fixture::new();
        let backend = faulty(4 * MIB);
        let sick = f.vvol_on(Arc::clone(&backend));
        let healthy = f.vvol_on(faulty(4 * MIB));
        let (_, slu) = f.bind(0, sick);
        let (_, other) = f.bind(0, healthy);
        f.ready(0);
        good(&f.run(0, slu, &write10(8), &[0xAB; 512]));
        // Block 8 only.
        let id = backend
            .add_fault(Fault::any(
                FaultTrigger::Range {
                    offset: 8 * 512,
                    len: 512,
                },
                EIO,
            ))
            .unwrap();
        good(&f.run(0, slu, &read10(7), &[]));
        failed(&f.run(0, slu, &read10(8), &[]), (3, 0x11, 0));
        good(&f.run(0, slu, &read10(9), &[]));
        failed(&f.run(0, slu, &write10(8), &[0xCD; 512]), (3, 0x0C, 0));
        good(&f.run(0, slu, &write10(9), &[0xCD; 512]));
        good(&f.run(0, other, &read10(8), &[]));
        assert!(backend.remove_fault(id));
        // The failed write changed nothing; the block reads back.
        let r = f.run(0, slu, &read10(8), &[]);
        good(&r);
        assert_eq!(r.data_in, vec![0xAB; 512]);

        // The second read only: the one before and the one after succeed.
        let id = backend
            .add_fault(Fault::on(BackendOp::Read, FaultTrigger::Nth(2), EIO))
            .unwrap();
        good(&f.run(0, slu, &read10(0), &[]));
        failed(&f.run(0, slu, &read10(0), &[]), (3, 0x11, 0));
        good(&f.run(0, slu, &read10(0), &[]));
        assert!(backend.remove_fault(id));

        // A vanished backend: HARDWARE ERROR, on that vVol only.
        let id = backend
            .add_fault(Fault::any(FaultTrigger::Always, FaultKind::Gone))
            .unwrap();
        failed(&f.run(0, slu, &read10(0), &[]), (4, 0x44, 0));
        failed(&f.run(0, slu, &write10(0), &[0; 512]), (4, 0x44, 0));
        good(&f.run(0, other, &read10(0), &[]));
        assert!(backend.remove_fault(id));
        good(&f.run(0, slu, &read10(0), &[]));
    }
}

#[cfg(feature = "nbd")]
mod nbd {
    use std::time::Duration;

    use super::*;
    use vvol::backend::{BackendError, BlockBackend};
    use vvol::nbd::{Gateway, NbdBackend, NbdConfig, NbdError, ServerConfig, proto};

    #[track_caller]
    fn assert_eio(err: &BackendError) {
        let BackendError::Io { source, .. } = err else {
            panic!("expected Io, got {err:?}");
        };
        match source.get_ref().and_then(|e| e.downcast_ref::<NbdError>()) {
            Some(NbdError::Server { errno, .. }) => assert_eq!(*errno, proto::EIO),
            other => panic!("expected a server EIO, got {other:?}"),
        }
    }

    #[test]
    fn nbd_gateway_fault_fails_only_its_request() {
        let backend = faulty(MIB);
        let extra: Arc<dyn BlockBackend> = Arc::clone(&backend) as _;
        let g = Gateway::start("127.0.0.1:0", 0, Some(extra), ServerConfig::default())
            .expect("gateway");
        let names = g.export_names();
        let config = |name: &str| {
            NbdConfig::tcp(g.server.local_addr(), name)
                .with_connections(1)
                .with_reconnect_attempts(0, Duration::ZERO)
        };
        let client = NbdBackend::connect(config(names.last().unwrap())).expect("connect");
        let neighbour = NbdBackend::connect(config(&names[0])).expect("connect");
        client.write_at(4096, &[0x5A; 512], false).expect("write");

        let id = backend
            .add_fault(Fault::any(
                FaultTrigger::Range {
                    offset: 4096,
                    len: 512,
                },
                EIO,
            ))
            .unwrap();
        let mut buf = [0u8; 512];
        client.read_at(0, &mut buf).expect("block 0 is fine");
        assert_eio(&client.read_at(4096, &mut buf).unwrap_err());
        // The same connection goes on: the next request succeeds.
        client.read_at(4608, &mut buf).expect("the next request");
        assert_eio(&client.write_at(4096, &[1; 512], true).unwrap_err());
        client
            .write_at(0, &[2; 512], true)
            .expect("write elsewhere");
        neighbour.read_at(4096, &mut buf).expect("another export");
        assert!(backend.remove_fault(id));
        client.read_at(4096, &mut buf).expect("fault cleared");
        assert_eq!(buf, [0x5A; 512], "the failed write changed nothing");

        // Flush and a vanished backend: EIO too, and only while it lasts.
        let id = backend
            .add_fault(Fault::on(BackendOp::Flush, FaultTrigger::Nth(1), EIO))
            .unwrap();
        assert_eio(&client.flush().unwrap_err());
        client.flush().expect("the next flush");
        assert!(backend.remove_fault(id));
        let id = backend
            .add_fault(Fault::any(FaultTrigger::Always, FaultKind::Gone))
            .unwrap();
        assert_eio(&client.read_at(0, &mut buf).unwrap_err());
        assert!(backend.remove_fault(id));
        client.read_at(0, &mut buf).expect("back");
        assert_eq!(buf, [2; 512]);
    }
}
