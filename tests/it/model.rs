//! Model rules: ids, names, specs.

use vvol::{
    ArraySpec, ConfigError, ContainerSpec, Naa, NfsVersion, PeSpec, Protocol, ScsiPath,
    SecondaryId, SecondaryIdSpace, SubsidiaryAddressing, VvolId, VvolSpec, VvolType,
};

#[test]
fn vvol_id_text_form_round_trips_and_rejects_other_forms() {
    let text = "rfc4122.6f1c2a4e-0d3b-4c8e-9a7f-1b2c3d4e5f60";
    let id: VvolId = text.parse().unwrap();
    assert_eq!(id.to_string(), text);
    assert_eq!(text.len(), 44);
    for bad in [
        "6f1c2a4e-0d3b-4c8e-9a7f-1b2c3d4e5f60",
        "rfc4122.6f1c2a4e0d3b4c8e9a7f1b2c3d4e5f60",
        "rfc4122.{6f1c2a4e-0d3b-4c8e-9a7f-1b2c3d4e5f60}",
        "rfc4122.urn:uuid:6f1c2a4e-0d3b-4c8e-9a7f-1b2c3d4e5f6",
        "RFC4122.6f1c2a4e-0d3b-4c8e-9a7f-1b2c3d4e5f60",
        "rfc4122.6f1c2a4e-0d3b-4c8e-9a7f-1b2c3d4e5f6g",
        "rfc4122.",
        "",
    ] {
        let err = bad.parse::<VvolId>().unwrap_err();
        assert!(
            matches!(err, vvol::ParseError::VvolId { .. }),
            "{bad}: {err}"
        );
    }
    // Uppercase hex is a valid UUID and prints back in lowercase.
    let upper: VvolId = "rfc4122.6F1C2A4E-0D3B-4C8E-9A7F-1B2C3D4E5F60"
        .parse()
        .unwrap();
    assert_eq!(upper, id);
}

#[test]
fn naa_text_form_requires_naa_6() {
    let naa: Naa = "naa.6f47acc2000000016a67746700000000".parse().unwrap();
    assert_eq!(naa.to_string(), "naa.6f47acc2000000016a67746700000000");
    assert_eq!(naa.to_bytes()[0] >> 4, 6);
    assert!(
        "naa.5f47acc2000000016a67746700000000"
            .parse::<Naa>()
            .is_err()
    );
    assert!("naa.6f47acc2".parse::<Naa>().is_err());
    assert!(
        "eui.6f47acc2000000016a67746700000000"
            .parse::<Naa>()
            .is_err()
    );
    assert!(
        "naa.6f47acc2000000016a6774670000000z"
            .parse::<Naa>()
            .is_err()
    );
    assert_eq!(Naa::from_parts(0x100_0000, 0, 0), None);
    assert_eq!(Naa::from_parts(1, 1 << 36, 0), None);
}

#[test]
fn subsidiary_lun_forms_match_vendor_examples() {
    // ONTAP `0000D20000010000h`: extended flat space, LUN 1.
    let lun = SubsidiaryAddressing::ExtendedFlat24
        .subsidiary_lun(SecondaryId(1))
        .unwrap();
    assert_eq!(lun, [0, 0, 0xD2, 0, 0, 1, 0, 0]);
    // Element `0xe200000000a6`: long extended flat space, 166.
    let lun = SubsidiaryAddressing::ExtendedFlat40
        .subsidiary_lun(SecondaryId(0xA6))
        .unwrap();
    assert_eq!(lun, [0, 0, 0xE2, 0, 0, 0, 0, 0xA6]);
    // Simple addressing: 14 bits in bytes 2-3.
    let lun = SubsidiaryAddressing::Simple
        .subsidiary_lun(SecondaryId(0x3FFF))
        .unwrap();
    assert_eq!(lun, [0, 0, 0x3F, 0xFF, 0, 0, 0, 0]);
    assert_eq!(
        SubsidiaryAddressing::Simple.subsidiary_lun(SecondaryId(0x4000)),
        None
    );
    assert_eq!(
        SubsidiaryAddressing::ExtendedFlat24.subsidiary_lun(SecondaryId(1 << 24)),
        None
    );
}

#[test]
fn secondary_id_space_rules() {
    use SubsidiaryAddressing::*;
    assert!(SecondaryIdSpace::new(Simple, 1, 16383).is_ok());
    assert!(SecondaryIdSpace::new(Simple, 1, 16384).is_err());
    assert!(SecondaryIdSpace::new(Simple, 0, 5).is_err());
    assert!(SecondaryIdSpace::new(Simple, 6, 5).is_err());
    assert!(
        SecondaryIdSpace::new(ExtendedFlat24, 16384, (1 << 24) - 1).is_err(),
        "over the slot limit"
    );
    assert!(SecondaryIdSpace::new(ExtendedFlat40, 1 << 39, (1 << 39) + 1000).is_ok());
}

#[test]
fn pe_spec_rules() {
    let naa = Naa::from_parts(0x1a2b, 1, 1).unwrap();
    let bad_depth = PeSpec::scsi(naa, 1).with_queue_depth(31).validate();
    assert_eq!(
        bad_depth,
        Err(ConfigError::BadQueueDepth {
            value: 31,
            min: 32,
            max: 4096
        })
    );
    assert!(
        PeSpec::scsi(naa, 1)
            .with_queue_depth(4096)
            .validate()
            .is_ok()
    );
    assert!(
        PeSpec::scsi(naa, 1)
            .with_queue_depth(4097)
            .validate()
            .is_err()
    );
    assert_eq!(
        PeSpec::scsi(naa, 0x4000).validate(),
        Err(ConfigError::BadAdminLun(0x4000))
    );
    assert_eq!(
        PeSpec::scsi(naa, 1).with_paths(vec![]).validate(),
        Err(ConfigError::NoPaths)
    );
    assert_eq!(
        PeSpec::scsi(naa, 1)
            .with_paths(vec![ScsiPath::new(3, 1), ScsiPath::new(3, 2)])
            .validate(),
        Err(ConfigError::DuplicatePath(3))
    );
    assert_eq!(
        PeSpec::scsi(naa, 1)
            .with_paths(vec![ScsiPath::new(0, 1)])
            .validate(),
        Err(ConfigError::BadTargetPort)
    );
    let many: Vec<ScsiPath> = (1..=33).map(|p| ScsiPath::new(p, 1)).collect();
    assert!(matches!(
        PeSpec::scsi(naa, 1).with_paths(many).validate(),
        Err(ConfigError::TooManyPaths { count: 33, .. })
    ));
    // NFSv3: exactly one server; NFSv4.1 may trunk.
    assert_eq!(
        PeSpec::nfs("nfs-a.example.com", "/pe", NfsVersion::V3)
            .with_trunked_servers(["10.0.0.2"])
            .validate(),
        Err(ConfigError::NfsV3NeedsOnePath { count: 2 })
    );
    assert!(
        PeSpec::nfs("2001:db8::1", "/pe", NfsVersion::V4_1)
            .with_trunked_servers(["2001:db8::2", "nfs-b.example.com"])
            .validate()
            .is_ok()
    );
    for server in ["", "bad name", "-lead.example", "999.1.1.1", "a..b"] {
        assert!(
            matches!(
                PeSpec::nfs(server, "/pe", NfsVersion::V3).validate(),
                Err(ConfigError::BadNfsServer { .. })
            ),
            "{server:?}"
        );
    }
    assert!(matches!(
        PeSpec::nfs("10.0.0.1", "relative/path", NfsVersion::V3).validate(),
        Err(ConfigError::BadExportPath { .. })
    ));
}

#[test]
fn vvol_and_container_spec_rules() {
    assert!(VvolSpec::new(VvolType::Data, 1 << 20).validate().is_ok());
    assert_eq!(
        VvolSpec::new(VvolType::Data, 0).validate(),
        Err(ConfigError::BadCapacity { capacity_bytes: 0 })
    );
    assert!(
        VvolSpec::new(VvolType::Data, (1 << 20) + 512)
            .validate()
            .is_err()
    );
    assert_eq!(
        VvolSpec::new(VvolType::Swap, 1 << 20)
            .with_logical_block_size(1024)
            .validate(),
        Err(ConfigError::BadBlockSize(1024))
    );
    assert!(
        ContainerSpec::new("c", Protocol::Scsi, 1 << 30)
            .with_max_vvol_bytes(2 << 30)
            .validate(255)
            .is_err()
    );
    assert!(
        ContainerSpec::new("", Protocol::Scsi, 1 << 30)
            .validate(255)
            .is_err()
    );
    assert!(
        ContainerSpec::new("x".repeat(256), Protocol::Nfs, 1 << 30)
            .validate(255)
            .is_err()
    );
    assert!(ArraySpec::new("a", 0xFF_FFFF).validate(255).is_ok());
}
