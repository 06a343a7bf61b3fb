//! Every count and size that input can drive has a named limit and a typed
//! error past it. This module tests the limits no other test reaches; the
//! others are tested where their feature is:
//!
//! | limit | error | test |
//! | --- | --- | --- |
//! | `Limits::max_bind_batch` | `ControlError::BatchTooLarge` | `control_plane` (batch of 17) |
//! | `Limits::max_pes`, `max_hosts`, `max_vvols` | `ControlError::TooMany` | `control_plane::limits_are_enforced` |
//! | journal record size | `JournalError::RecordTooLarge` | `journal` |
//! | NBD request length `proto::MAX_REQUEST_BYTES` | connection closed, counted failed | `nbd::nbd_hostile_requests_close_only_their_connection` |
//! | NBD client connections `nbd::MAX_CONNECTIONS` | `NbdError::InvalidConfig` | `nbd::nbd_config_is_validated` |
//! | SCSI `MAX_TRANSFER_BYTES` | ILLEGAL REQUEST, INVALID FIELD IN CDB | `scsi_target::read_write_6_10_16_with_fua_and_range_checks` |
//! | `FaultyBackend::MAX_FAULTS`, `MAX_ALLOCATION_EXTENTS` | `BackendError` | `backend_conformance` |
//!
//! Here: arrays, containers, name length, bindings per PE (a small
//! `SecondaryIdSpace`), NBD server connections, and the SCSI limits on
//! COMPARE AND WRITE, WRITE SAME, UNMAP and REPORT LUNS allocation length.

use vvol::{
    ArraySpec, BindContext, ConfigError, ContainerSpec, ControlError, ControlPlane, Limits, MIB,
    Naa, PeSpec, Protocol, SecondaryIdSpace, SubsidiaryAddressing, VasaFault, VvolSpec, VvolType,
};

const GIB: u64 = 1 << 30;

#[test]
fn arrays_and_containers_are_limited() {
    let plane = ControlPlane::new(Limits::default().with_max_arrays(1).with_max_containers(1));
    let a = plane.add_array(ArraySpec::new("a", 1)).unwrap();
    let err = plane.add_array(ArraySpec::new("b", 2)).unwrap_err();
    assert!(
        matches!(err, ControlError::TooMany { limit: 1, .. }),
        "{err:?}"
    );
    assert_eq!(err.fault(), VasaFault::TooMany);
    plane
        .add_container(a, ContainerSpec::new("c", Protocol::Scsi, GIB))
        .unwrap();
    let err = plane
        .add_container(a, ContainerSpec::new("d", Protocol::Scsi, GIB))
        .unwrap_err();
    assert!(
        matches!(err, ControlError::TooMany { limit: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn names_are_limited() {
    let plane = ControlPlane::new(Limits::default().with_max_name_len(8));
    let long = "n".repeat(9);
    let bad_name = |err: ControlError| {
        assert!(
            matches!(
                err,
                ControlError::Config(ConfigError::BadName {
                    len: 9,
                    limit: 8,
                    ..
                })
            ),
            "{err:?}"
        );
    };
    bad_name(plane.add_array(ArraySpec::new(&long, 1)).unwrap_err());
    let a = plane.add_array(ArraySpec::new(&long[..8], 1)).unwrap();
    bad_name(
        plane
            .add_container(a, ContainerSpec::new(&long, Protocol::Scsi, GIB))
            .unwrap_err(),
    );
    bad_name(plane.add_host(&long).unwrap_err());
    plane.add_host(&long[..8]).unwrap();
}

#[test]
fn bindings_per_pe_are_limited_by_its_secondary_id_space() {
    let plane = ControlPlane::new(Limits::default());
    let a = plane.add_array(ArraySpec::new("a", 1)).unwrap();
    let c = plane
        .add_container(a, ContainerSpec::new("c", Protocol::Scsi, GIB))
        .unwrap();
    let space = SecondaryIdSpace::new(SubsidiaryAddressing::Simple, 1, 2).unwrap();
    let naa = Naa::from_parts(1, 0x5EED, 1).unwrap();
    let pe = plane
        .add_pe(a, PeSpec::scsi(naa, 7).with_secondary_ids(space))
        .unwrap();
    let host = plane.add_host("h").unwrap();
    plane.map_pe(host, pe).unwrap();
    plane.set_pe_context(host, &[pe]).unwrap();
    let vvols: Vec<_> = (0..3)
        .map(|_| {
            plane
                .create_vvol(c, VvolSpec::new(VvolType::Data, MIB))
                .unwrap()
        })
        .collect();
    let results = plane.bind(host, &vvols, BindContext::Normal).unwrap();
    assert!(results[0].is_ok() && results[1].is_ok());
    let err = results[2].as_ref().unwrap_err();
    assert!(
        matches!(err, ControlError::SecondaryIdsExhausted { vvol } if *vvol == vvols[2]),
        "{err:?}"
    );
    assert_eq!(err.fault(), VasaFault::OutOfResource);
    plane.check_invariants();
}

#[cfg(feature = "nbd")]
#[test]
fn nbd_server_connections_are_limited() {
    use std::sync::Arc;
    use std::time::Duration;
    use vvol::backend::{BlockBackend, MemoryBackend};
    use vvol::nbd::{BackendExports, NbdBackend, NbdConfig, NbdServer, ServerConfig};

    let disk = Arc::new(MemoryBackend::new(MIB, 512).unwrap());
    let mut config = ServerConfig::default();
    config.admission.max_sessions = 1;
    let server = NbdServer::start(
        "127.0.0.1:0",
        Arc::new(BackendExports::new().with("disk", disk)),
        config,
    )
    .unwrap();
    let client = |connections| {
        NbdConfig::tcp(server.local_addr(), "disk")
            .with_connections(connections)
            .with_reconnect_attempts(0, Duration::ZERO)
    };
    let first = NbdBackend::connect(client(1)).expect("the first connection");
    NbdBackend::connect(client(1)).expect_err("a second session past the limit");
    assert!(server.stats().admission.refused_sessions_full >= 1);
    assert_eq!(server.stats().admission.established, 1);
    first
        .write_at(0, &[1; 512], true)
        .expect("the first goes on");
    drop(first);
}

#[cfg(feature = "scsi")]
#[test]
fn scsi_length_limits_are_invalid_field_in_cdb() {
    use crate::scsi_target::{Fixture, kcq};
    use vvol::scsi::Status;
    use vvol::scsi::limits::{
        MAX_COMPARE_AND_WRITE_BLOCKS, MAX_UNMAP_DESCRIPTORS, MAX_WRITE_SAME_BLOCKS,
    };

    let f = Fixture::new();
    let v = f.vvol(64);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let refused = |cdb: &[u8], out: &[u8], asc: u8| {
        let r = f.run(0, slu, cdb, out);
        assert_eq!(r.status, Status::CheckCondition, "{cdb:02x?}");
        assert_eq!(kcq(&r), (5, asc, 0), "{cdb:02x?}");
    };
    // COMPARE AND WRITE of one block more than the limit.
    let blocks = MAX_COMPARE_AND_WRITE_BLOCKS + 1;
    let mut caw = [0u8; 16];
    caw[0] = 0x89;
    caw[13] = blocks as u8;
    refused(&caw, &vec![0; 2 * 512 * blocks as usize], 0x24);
    // WRITE SAME(16) past its block limit.
    let mut ws = [0u8; 16];
    ws[0] = 0x93;
    ws[10..14].copy_from_slice(&((MAX_WRITE_SAME_BLOCKS + 1) as u32).to_be_bytes());
    refused(&ws, &[0; 512], 0x24);
    // UNMAP with one descriptor more than the limit.
    let n = MAX_UNMAP_DESCRIPTORS as usize + 1;
    let mut list = vec![0u8; 8 + 16 * n];
    list[0..2].copy_from_slice(&((6 + 16 * n) as u16).to_be_bytes());
    list[2..4].copy_from_slice(&((16 * n) as u16).to_be_bytes());
    for d in 0..n {
        let at = 8 + 16 * d;
        list[at..at + 8].copy_from_slice(&(d as u64).to_be_bytes());
        list[at + 8..at + 12].copy_from_slice(&1u32.to_be_bytes());
    }
    let mut unmap = [0u8; 10];
    unmap[0] = 0x42;
    unmap[7..9].copy_from_slice(&(list.len() as u16).to_be_bytes());
    let r = f.run(0, slu, &unmap, &list);
    assert_eq!(r.status, Status::CheckCondition);
    assert_eq!(kcq(&r).0, 5, "ILLEGAL REQUEST past MAX_UNMAP_DESCRIPTORS");
    // REPORT LUNS with an allocation length below the recommended 16 is
    // truncated, not refused (SPC-4 r37 and later; review S10).
    let mut rl = [0u8; 12];
    rl[0] = 0xA0;
    for alloc in [0u8, 4, 15] {
        rl[9] = alloc;
        let r = f.run(0, f.alu(), &rl, &[]);
        assert_eq!(r.status, Status::Good, "alloc {alloc}");
        assert_eq!(r.data_in.len(), usize::from(alloc));
    }
    rl[9] = vvol::scsi::MIN_REPORT_LUNS_ALLOCATION as u8;
    let r = f.run(0, f.alu(), &rl, &[]);
    assert_eq!(r.status, Status::Good);
    assert_eq!(
        &r.data_in[..4],
        &16u32.to_be_bytes(),
        "the ALU and the W-LUN's list"
    );
}
