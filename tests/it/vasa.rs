//! VASA `VirtualVolumeHandle`s (round trip, stale and malformed handles),
//! the batched unbind with per-item results, and thin container quotas
//! with over-commit, restored on reopen.

use proptest::prelude::*;
use vvol::testing::quickstart;
use vvol::*;

use crate::support::bind_one;

const GIB: u64 = 1 << 30;

fn nfs_pe_id() -> PeInBandId {
    PeInBandId::nfs("192.0.2.10", "/vvol-pe").unwrap()
}

#[test]
fn vasa_handles_round_trip_on_scsi_and_nfs_pes() {
    let (plane, topo) = quickstart().unwrap();
    let (h0, h1) = (topo.hosts[0], topo.hosts[1]);
    // SCSI (gold) and NFS (bronze) vVols, a Config vVol on NFS (a directory).
    for vvol in [topo.vms[0].data, topo.vms[2].data, topo.vms[2].config] {
        let handle = bind_one(&plane, h0, vvol, BindContext::Normal);
        let vasa = plane.vasa_handle(h0, handle).unwrap();
        assert_eq!(vasa.vvol, vvol);
        assert_eq!(
            vasa.secondary_id,
            plane.vasa_secondary_id(handle).unwrap(),
            "the handle carries the secondary id text the plane reports"
        );
        assert_eq!(plane.resolve_vasa_handle(h0, &vasa).unwrap(), handle);
        let pe = plane.pe(handle.pe).unwrap();
        match (&pe.transport, &vasa.pe_in_band_id) {
            (Transport::Scsi { naa, .. }, PeInBandId::Scsi { lun_id }) => {
                assert_eq!(naa, lun_id);
                assert_eq!(vasa.secondary_id.len(), SCSI_SECONDARY_ID_LEN);
                assert!(vasa.secondary_id.ends_with('h'));
                // Rebuilt from the texts ESXi sends back (lowercase hex too).
                let again = VasaHandle::parse(
                    &vvol.to_string(),
                    PeInBandId::scsi(&naa.to_string()).unwrap(),
                    &vasa.secondary_id.to_ascii_lowercase(),
                )
                .unwrap();
                assert_eq!(plane.resolve_vasa_handle(h0, &again).unwrap(), handle);
            }
            (Transport::Nfs { .. }, id) => {
                assert_eq!(*id, nfs_pe_id());
                assert!(vasa.secondary_id.starts_with("bronze/rfc4122."));
                assert_eq!(
                    vasa.secondary_id.ends_with('/'),
                    vvol == topo.vms[2].config,
                    "a Config vVol's path is a directory"
                );
                let again =
                    VasaHandle::parse(&vvol.to_string(), nfs_pe_id(), &vasa.secondary_id).unwrap();
                assert_eq!(plane.resolve_vasa_handle(h0, &again).unwrap(), handle);
            }
            other => panic!("in-band id of the wrong protocol: {other:?}"),
        }
        // Another host does not hold it; another vVol id does not match.
        let err = plane.resolve_vasa_handle(h1, &vasa).unwrap_err();
        assert!(matches!(err, ControlError::VasaHandleNotFound { host, .. } if host == h1));
        assert_eq!(err.fault(), VasaFault::NotFound);
        let mut wrong = vasa.clone();
        wrong.vvol = topo.vms[1].data;
        assert!(matches!(
            plane.resolve_vasa_handle(h0, &wrong),
            Err(ControlError::VasaHandleNotFound { .. })
        ));
        assert!(matches!(
            plane.vasa_handle(h1, handle),
            Err(ControlError::HandleNotFound { .. })
        ));
    }
    // A PE nobody has.
    let naa = Naa::from_parts(0x00_1a_2b, 0x77, 0x77).unwrap();
    let ghost = VasaHandle::new(
        topo.vms[0].data,
        PeInBandId::Scsi { lun_id: naa },
        "0000000100000000h",
    )
    .unwrap();
    let err = plane.resolve_vasa_handle(h0, &ghost).unwrap_err();
    assert!(matches!(err, ControlError::UnknownPeInBandId(_)));
    assert_eq!(err.fault(), VasaFault::InvalidArgument);
    let nfs_elsewhere = VasaHandle::new(
        topo.vms[2].data,
        PeInBandId::nfs("192.0.2.10", "/other").unwrap(),
        "bronze/x",
    )
    .unwrap();
    assert!(matches!(
        plane.resolve_vasa_handle(h0, &nfs_elsewhere),
        Err(ControlError::UnknownPeInBandId(_))
    ));
    plane.check_invariants();
}

/// A plane whose only PE hands out one secondary id, so a rebind reuses
/// the slot under the next generation.
fn one_slot_plane() -> (ControlPlane, HostId, Vec<VvolId>) {
    let plane = ControlPlane::new(Limits::default());
    let a = plane.add_array(ArraySpec::new("a", 0x00_1a_2b)).unwrap();
    let c = plane
        .add_container(a, ContainerSpec::new("c", Protocol::Scsi, GIB))
        .unwrap();
    let naa = Naa::from_parts(0x00_1a_2b, 1, 1).unwrap();
    let space = SecondaryIdSpace::new(SubsidiaryAddressing::ExtendedFlat24, 5, 5).unwrap();
    let pe = plane
        .add_pe(a, PeSpec::scsi(naa, 1).with_secondary_ids(space))
        .unwrap();
    let h = plane.add_host("esx").unwrap();
    plane.map_pe(h, pe).unwrap();
    plane.set_pe_context(h, &[pe]).unwrap();
    let vvols = (0..2)
        .map(|_| {
            plane
                .create_vvol(c, VvolSpec::new(VvolType::Data, MIB))
                .unwrap()
        })
        .collect();
    (plane, h, vvols)
}

#[test]
fn a_stale_generation_is_a_typed_error() {
    let (plane, h, v) = one_slot_plane();
    let old = bind_one(&plane, h, v[0], BindContext::Normal);
    let old_vasa = plane.vasa_handle(h, old).unwrap();
    // Extended flat space, 24 bits: D2h 000005.
    assert_eq!(old_vasa.secondary_id, "0000D20000050000h");
    plane.unbind(h, old, UnbindContext::Normal).unwrap();
    assert!(matches!(
        plane.vasa_handle(h, old),
        Err(ControlError::BindingNotFound(x)) if x == old
    ));
    let new = bind_one(&plane, h, v[1], BindContext::Normal);
    assert_eq!(new.secondary_id, old.secondary_id, "the one slot is reused");
    assert_ne!(new.generation, old.generation);
    let err = plane.vasa_handle(h, old).unwrap_err();
    assert!(
        matches!(err, ControlError::StaleGeneration { handle, current }
            if handle == old && current == new.generation),
        "{err:?}"
    );
    assert_eq!(err.fault(), VasaFault::NotFound);
    // The old VASA handle names the same slot, now bound to another vVol.
    assert!(matches!(
        plane.resolve_vasa_handle(h, &old_vasa),
        Err(ControlError::VasaHandleNotFound { vvol, .. }) if vvol == v[0]
    ));
    let new_vasa = plane.vasa_handle(h, new).unwrap();
    assert_eq!(plane.resolve_vasa_handle(h, &new_vasa).unwrap(), new);
}

#[test]
fn malformed_secondary_ids_are_typed_errors() {
    let malformed_scsi = [
        "",
        "h",
        "0000D20000010000",
        "0000D2000001000h",
        "0000D20000010000hh",
        "0000D2000001000Gh",
        "0000D2000001000\u{e9}h",
        "+000D20000010000h",
        "0x0000d20000010000",
    ];
    for text in malformed_scsi {
        assert!(
            matches!(
                VasaSecondaryId::parse(text, Protocol::Scsi),
                Err(VasaHandleError::Malformed { .. })
            ),
            "{text:?}"
        );
    }
    let malformed_nfs = [
        "",
        "bronze",
        "/rfc4122.6f1c2a4e-0d3b-4c8e-9a7f-1b2c3d4e5f60",
        "bronze/",
    ];
    for text in malformed_nfs {
        assert!(
            matches!(
                VasaSecondaryId::parse(text, Protocol::Nfs),
                Err(VasaHandleError::Malformed { .. } | VasaHandleError::Parse(_))
            ),
            "{text:?}"
        );
    }
    assert!(matches!(
        VasaSecondaryId::parse("bronze/rfc4122.nope", Protocol::Nfs),
        Err(VasaHandleError::Parse(ParseError::VvolId { .. }))
    ));
    let long = "0".repeat(MAX_VASA_SECONDARY_ID_LEN + 1);
    for protocol in [Protocol::Scsi, Protocol::Nfs] {
        assert!(matches!(
            VasaSecondaryId::parse(&long, protocol),
            Err(VasaHandleError::TooLong { len, max, .. })
                if len == MAX_VASA_SECONDARY_ID_LEN + 1 && max == MAX_VASA_SECONDARY_ID_LEN
        ));
    }
    let id = VvolId(1);
    assert!(matches!(
        VasaHandle::new(id, nfs_pe_id(), long),
        Err(VasaHandleError::TooLong { .. })
    ));
    assert!(matches!(
        PeInBandId::scsi("naa.12"),
        Err(VasaHandleError::Parse(ParseError::Naa { .. }))
    ));
    assert!(matches!(
        PeInBandId::nfs("x".repeat(MAX_DNS_NAME_LEN + 1), "/"),
        Err(VasaHandleError::TooLong { .. })
    ));
    // Through the plane: a malformed text is InvalidArgument; a LUN in
    // another address method (the REPORT LUNS well-known LU) names nothing.
    let (plane, topo) = quickstart().unwrap();
    let h = topo.hosts[0];
    let handle = bind_one(&plane, h, topo.vms[0].data, BindContext::Normal);
    let good = plane.vasa_handle(h, handle).unwrap();
    let mut bad = good.clone();
    bad.secondary_id = "not a lun".into();
    let err = plane.resolve_vasa_handle(h, &bad).unwrap_err();
    assert!(matches!(
        err,
        ControlError::VasaHandle(VasaHandleError::Malformed { .. })
    ));
    assert_eq!(err.fault(), VasaFault::InvalidArgument);
    bad.secondary_id = "0000C10100000000h".into();
    assert!(matches!(
        plane.resolve_vasa_handle(h, &bad),
        Err(ControlError::VasaHandleNotFound { .. })
    ));
}

proptest! {
    #[test]
    fn parsing_a_secondary_id_is_total(text in "\\PC{0,40}", hexish in "[0-9a-fA-FhH/.]{0,20}") {
        for t in [&text, &hexish] {
            for protocol in [Protocol::Scsi, Protocol::Nfs] {
                let _ = VasaSecondaryId::parse(t, protocol);
            }
        }
    }
}

#[test]
fn unbind_batch_reports_per_item_and_releases_the_good_ones() {
    let (plane, topo) = quickstart().unwrap();
    let h = topo.hosts[0];
    let vm = &topo.vms[0];
    let data = bind_one(&plane, h, vm.data, BindContext::Normal);
    let config = bind_one(&plane, h, vm.config, BindContext::Normal);
    let (data_vasa, config_vasa) = (
        plane.vasa_handle(h, data).unwrap(),
        plane.vasa_handle(h, config).unwrap(),
    );
    let mut unknown = data_vasa.clone();
    unknown.vvol = topo.vms[1].data;
    // Whole-call faults.
    assert!(matches!(
        plane.unbind_batch(h, &[], UnbindContext::Normal),
        Err(ControlError::EmptyBatch)
    ));
    let many = vec![data_vasa.clone(); Limits::default().max_bind_batch + 1];
    assert!(matches!(
        plane.unbind_batch(h, &many, UnbindContext::Normal),
        Err(ControlError::BatchTooLarge { .. })
    ));
    assert!(matches!(
        plane.unbind_batch(
            HostId(99),
            std::slice::from_ref(&data_vasa),
            UnbindContext::Normal
        ),
        Err(ControlError::HostNotFound(_))
    ));
    // RebindStart checks and changes nothing.
    let checked = plane
        .unbind_batch(
            h,
            &[data_vasa.clone(), unknown.clone()],
            UnbindContext::RebindStart,
        )
        .unwrap();
    assert!(checked[0].is_ok() && checked[1].is_err());
    assert_eq!(plane.bindings_for_host(h).unwrap().len(), 2);
    // One unknown handle, two good ones, one repeat beyond the count.
    let results = plane
        .unbind_batch(
            h,
            &[
                data_vasa.clone(),
                unknown,
                config_vasa.clone(),
                config_vasa.clone(),
            ],
            UnbindContext::Normal,
        )
        .unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_ref().ok(), Some(&data));
    assert!(matches!(
        &results[1],
        Err(ControlError::VasaHandleNotFound { vvol, .. }) if *vvol == topo.vms[1].data
    ));
    assert_eq!(results[2].as_ref().ok(), Some(&config));
    assert!(matches!(
        &results[3],
        Err(ControlError::HandleNotFound { handle, .. }) if *handle == config
    ));
    assert!(plane.bindings_for_host(h).unwrap().is_empty());
    let router = plane.router();
    assert!(router.resolve(data.pe, data.secondary_id).is_none());
    assert!(router.read(h, data, 0, &mut [0u8; 512]).is_err());
    // A counted bind needs as many releases.
    let twice = bind_one(&plane, h, vm.data, BindContext::Normal);
    assert_eq!(bind_one(&plane, h, vm.data, BindContext::Normal), twice);
    let vasa = plane.vasa_handle(h, twice).unwrap();
    let results = plane
        .unbind_batch(h, &[vasa.clone(), vasa], UnbindContext::Normal)
        .unwrap();
    assert!(results.iter().all(Result::is_ok));
    assert!(plane.bindings_for_host(h).unwrap().is_empty());
    plane.check_invariants();
}

fn thin_container(plane: &ControlPlane) -> ContainerId {
    let a = plane.add_array(ArraySpec::new("a", 0x00_1a_2b)).unwrap();
    plane
        .add_container(
            a,
            ContainerSpec::new("thin", Protocol::Scsi, 10 * MIB)
                .with_max_vvol_bytes(8 * MIB)
                .with_overcommit_percent(300),
        )
        .unwrap()
}

#[test]
fn thin_quota_admits_provisioned_bytes_up_to_the_overcommit() {
    assert!(matches!(
        ContainerSpec::new("c", Protocol::Scsi, MIB)
            .with_overcommit_percent(MIN_OVERCOMMIT_PERCENT - 1)
            .validate(255),
        Err(ConfigError::BadOvercommit { percent: 99, .. })
    ));
    assert!(
        ContainerSpec::new("c", Protocol::Scsi, MIB)
            .with_overcommit_percent(MAX_OVERCOMMIT_PERCENT + 1)
            .validate(255)
            .is_err()
    );
    assert_eq!(
        ContainerSpec::new("c", Protocol::Scsi, MIB).overcommit_percent(),
        DEFAULT_OVERCOMMIT_PERCENT
    );
    let plane = ControlPlane::new(Limits::default());
    assert!(matches!(
        plane.add_container(
            plane.add_array(ArraySpec::new("b", 1)).unwrap(),
            ContainerSpec::new("c", Protocol::Scsi, MIB).with_overcommit_percent(0)
        ),
        Err(ControlError::Config(ConfigError::BadOvercommit { .. }))
    ));
    let c = thin_container(&plane);
    // 3 x 8 MiB = 24 MiB provisioned on a 10 MiB container (limit 30 MiB).
    let vvols: Vec<VvolId> = (0..3)
        .map(|_| {
            plane
                .create_vvol(c, VvolSpec::new(VvolType::Data, 8 * MIB))
                .unwrap()
        })
        .collect();
    let snap = plane.container(c).unwrap();
    assert_eq!(snap.provisioned_bytes, 24 * MIB);
    assert_eq!(snap.used_bytes, 24 * MIB);
    assert_eq!(snap.quota_bytes, 10 * MIB);
    assert_eq!(snap.overcommit_percent, 300);
    assert_eq!(snap.provisioning_limit_bytes, 30 * MIB);
    assert_eq!(snap.allocated_bytes, 0, "nothing written yet");
    let err = plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, 8 * MIB))
        .unwrap_err();
    assert!(
        matches!(err, ControlError::QuotaExceeded { container, requested_bytes, available_bytes }
            if container == c && requested_bytes == 8 * MIB && available_bytes == 6 * MIB),
        "{err:?}"
    );
    assert!(err.to_string().contains(&c.to_string()));
    assert_eq!(err.fault(), VasaFault::OutOfResource);
    plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, 6 * MIB))
        .unwrap();
    assert!(matches!(
        plane.resize_vvol(vvols[0], 8 * MIB + MIB),
        Err(ControlError::VvolTooLarge { .. })
    ));
    // Allocated bytes come from the backends.
    let backend = plane.backend(vvols[0]).unwrap();
    backend.write_at(0, &[1u8; 4096], false).unwrap();
    let snap = plane.container(c).unwrap();
    assert!(snap.allocated_bytes > 0 && snap.allocated_bytes <= 8 * MIB);
    assert_eq!(snap.allocated_bytes, backend.allocated_bytes().unwrap());
    assert_eq!(snap.provisioned_bytes, 30 * MIB);
    plane.check_invariants();
}

#[test]
fn reopen_restores_the_overcommit_from_records_and_snapshots() {
    let store = MemStore::new();
    let open = || {
        ControlPlane::with_store(
            Box::new(store.clone()),
            Limits::default(),
            JournalOptions::default(),
        )
        .unwrap()
    };
    let plane = open();
    let c = thin_container(&plane);
    let h = plane.add_host("esx").unwrap();
    let a = plane.container(c).unwrap().array;
    let pe = plane
        .add_pe(
            a,
            PeSpec::scsi(Naa::from_parts(0x00_1a_2b, 1, 1).unwrap(), 1),
        )
        .unwrap();
    plane.map_pe(h, pe).unwrap();
    plane.set_pe_context(h, &[pe]).unwrap();
    let v = plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, 8 * MIB))
        .unwrap();
    plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, 8 * MIB))
        .unwrap();
    let handle = bind_one(&plane, h, v, BindContext::Normal);
    let vasa = plane.vasa_handle(h, handle).unwrap();
    let before = plane.container(c).unwrap();
    drop(plane);
    for compact in [false, true] {
        let plane = open();
        assert_eq!(plane.container(c).unwrap(), before, "compacted: {compact}");
        assert_eq!(plane.resolve_vasa_handle(h, &vasa).unwrap(), handle);
        // The limit is still 30 MiB: 16 + 8 fit, 8 more do not.
        let added = plane
            .create_vvol(c, VvolSpec::new(VvolType::Data, 8 * MIB))
            .unwrap();
        assert!(matches!(
            plane.create_vvol(c, VvolSpec::new(VvolType::Data, 8 * MIB)),
            Err(ControlError::QuotaExceeded { container, .. }) if container == c
        ));
        // Put the state back for the next round.
        plane.delete_vvol(added).unwrap();
        plane.check_invariants();
        if !compact {
            plane.compact_journal().unwrap();
        }
    }
}
