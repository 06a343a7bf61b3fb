//! The SAM-5 LUN codec and vendor secondary-id text.

use proptest::prelude::*;
use vvol::scsi::{
    ConglomerateLun, Lun, LunError, LunLevel, REPORT_LUNS_WLUN, SecondaryIdStyle,
    SubsidiaryElement, VendorSecondaryId,
};
use vvol::{SecondaryId, SecondaryIdSpace, SubsidiaryAddressing};

#[test]
fn every_address_method_encodes_as_sam5_says() {
    let cases: &[(LunLevel, &str)] = &[
        (
            LunLevel::Peripheral { bus: 0, target: 5 },
            "0005000000000000",
        ),
        (LunLevel::Flat(0x1234), "5234000000000000"),
        (
            LunLevel::LogicalUnit {
                target: 3,
                bus: 2,
                lun: 7,
            },
            "8347000000000000",
        ),
        (LunLevel::ExtendedFlat(0x01_0203), "d2010203 00000000"),
        (LunLevel::LongExtendedFlat(0xA6), "e200000000a60000"),
        (LunLevel::WellKnown(1), "c101000000000000"),
        (LunLevel::NotSpecified, "ffffffffffffffff"),
    ];
    for (level, hex) in cases {
        let hex = hex.replace(' ', "");
        let lun = Lun::from_levels(&[*level]).expect("encodes");
        assert_eq!(lun.to_string(), hex, "{level:?}");
        assert_eq!(lun.decode().expect("decodes"), vec![*level], "{hex}");
    }
    assert_eq!(REPORT_LUNS_WLUN.to_string(), "c101000000000000");
}

#[test]
fn conglomerate_structure() {
    // PE at LUN 255 with SLU 1 (domain.md 3.2 example).
    let lun = Lun::conglomerate(255, Some(SubsidiaryElement::Simple(1))).unwrap();
    assert_eq!(lun.to_bytes(), [0x00, 0xFF, 0x00, 0x01, 0, 0, 0, 0]);
    let alu = Lun::conglomerate(255, None).unwrap();
    assert_eq!(
        alu.decode_conglomerate().unwrap(),
        ConglomerateLun {
            admin: 255,
            subsidiary: None
        }
    );
    let d2 = Lun::conglomerate(256, Some(SubsidiaryElement::ExtendedFlat(1))).unwrap();
    assert_eq!(d2.to_string(), "0100d20000010000");
    let e2 = Lun::conglomerate(
        0x3FFF,
        Some(SubsidiaryElement::LongExtendedFlat(0xFF_FFFF_FFFF)),
    )
    .unwrap();
    assert_eq!(e2.to_string(), "3fffe2ffffffffff");
    assert_eq!(
        e2.decode_conglomerate().unwrap().subsidiary,
        Some(SubsidiaryElement::LongExtendedFlat(0xFF_FFFF_FFFF))
    );
    // The element matches what the model's SecondaryIdSpace encodes.
    for addressing in [
        SubsidiaryAddressing::Simple,
        SubsidiaryAddressing::ExtendedFlat24,
        SubsidiaryAddressing::ExtendedFlat40,
    ] {
        let id = SecondaryId(77);
        let element = SubsidiaryElement::new(addressing, id).unwrap();
        let mut expect = addressing.subsidiary_lun(id).unwrap();
        expect[1] = 9;
        assert_eq!(
            Lun::conglomerate(9, Some(element)).unwrap().to_bytes(),
            expect
        );
        assert_eq!(element.secondary_id(), id);
        assert_eq!(element.addressing(), addressing);
    }
    assert!(SecondaryIdSpace::default().contains(SecondaryId(16383)));
}

#[test]
fn malformed_luns_give_typed_errors() {
    let parse = |s: &str| s.parse::<Lun>().unwrap();
    assert!(matches!(
        parse("c200000000000000").decode(),
        Err(LunError::ReservedAddressMethod {
            byte: 0xC2,
            offset: 0
        })
    ));
    assert!(matches!(
        parse("00010000c1010000").decode(),
        Err(LunError::NotSingleLevel { offset: 4 })
    ));
    assert!(matches!(
        parse("c101000000000001").decode(),
        Err(LunError::NotSingleLevel { .. })
    ));
    assert!(matches!(
        parse("000100010001e200").decode(),
        Err(LunError::Truncated { offset: 6, len: 6 })
    ));
    assert!(matches!(
        parse("4001000000000000").decode_conglomerate(),
        Err(LunError::NotConglomerate { .. })
    ));
    assert!(matches!(
        parse("00ff000100000001").decode_conglomerate(),
        Err(LunError::TrailingBytes { offset: 7 })
    ));
    assert!(matches!(
        parse("00ff410000000000").decode_conglomerate(),
        Err(LunError::NotConglomerate { .. })
    ));
    assert!(matches!(
        Lun::from_levels(&[LunLevel::Flat(0x4000)]),
        Err(LunError::ValueTooLarge { .. })
    ));
    assert!(matches!(
        Lun::from_levels(&[LunLevel::Flat(1); 5]),
        Err(LunError::TooLong { .. })
    ));
    assert!(matches!(
        Lun::from_levels(&[LunLevel::WellKnown(1), LunLevel::Flat(1)]),
        Err(LunError::NotSingleLevel { .. })
    ));
    assert!(Lun::conglomerate(0x4000, None).is_err());
    assert!("00ff".parse::<Lun>().is_err());
    assert!("zz00000000000000".parse::<Lun>().is_err());
}

#[test]
fn vendor_secondary_id_strings() {
    let ontap: VendorSecondaryId = "0000D20000010000h".parse().unwrap();
    assert_eq!(ontap.subsidiary(), SubsidiaryElement::ExtendedFlat(1));
    assert_eq!(ontap.style(), SecondaryIdStyle::LunHex);
    assert_eq!(ontap.to_string(), "0000D20000010000h");
    assert_eq!(
        ontap.lun_behind(255).unwrap().to_string(),
        "00ffd20000010000"
    );

    let element: VendorSecondaryId = "0xe200000000a6".parse().unwrap();
    assert_eq!(
        element.subsidiary(),
        SubsidiaryElement::LongExtendedFlat(166)
    );
    assert_eq!(element.to_string(), "0xe200000000a6");

    let huawei: VendorSecondaryId = "0xD2000123".parse().unwrap();
    assert_eq!(huawei.subsidiary(), SubsidiaryElement::ExtendedFlat(0x123));
    assert_eq!(huawei.to_string(), "0xd2000123");

    let simple: VendorSecondaryId = "0000000500000000h".parse().unwrap();
    assert_eq!(simple.subsidiary(), SubsidiaryElement::Simple(5));

    for bad in [
        "0000000000000000h",  // the ALU itself
        "00FF000100000000h",  // bytes 0-1 are the PE's
        "0000C10100000000h",  // a well-known LUN
        "0xe2",               // truncated E2h element... is E2 00000000 00 -> 0? no: too short
        "0x123",              // odd digits
        "0x",                 // empty
        "0xd200000100000000", // 8 bytes
        "D20000010000",       // no marker
        "0000D2000001000h",   // 15 digits
    ] {
        let parsed = bad.parse::<VendorSecondaryId>();
        if bad == "0xe2" {
            // E2h followed by zero padding is a valid element naming id 0.
            assert_eq!(
                parsed.unwrap().subsidiary(),
                SubsidiaryElement::LongExtendedFlat(0)
            );
            continue;
        }
        assert!(matches!(parsed, Err(LunError::BadText { .. })), "{bad}");
    }
}

fn level() -> impl Strategy<Value = LunLevel> {
    prop_oneof![
        (0u8..=0x3F, any::<u8>()).prop_map(|(bus, target)| LunLevel::Peripheral { bus, target }),
        (0u16..=0x3FFF).prop_map(LunLevel::Flat),
        (0u8..=0x3F, 0u8..=7, 0u8..=0x1F).prop_map(|(target, bus, lun)| LunLevel::LogicalUnit {
            target,
            bus,
            lun
        }),
        (0u32..=0xFF_FFFF).prop_map(LunLevel::ExtendedFlat),
        (0u64..=0xFF_FFFF_FFFF).prop_map(LunLevel::LongExtendedFlat),
    ]
}

fn element() -> impl Strategy<Value = SubsidiaryElement> {
    prop_oneof![
        (1u16..=0x3FFF).prop_map(SubsidiaryElement::Simple),
        (0u32..=0xFF_FFFF).prop_map(SubsidiaryElement::ExtendedFlat),
        (0u64..=0xFF_FFFF_FFFF).prop_map(SubsidiaryElement::LongExtendedFlat),
    ]
}

proptest! {
    #[test]
    fn decoded_luns_reencode_to_the_same_bytes(bytes in any::<[u8; 8]>()) {
        let lun = Lun(bytes);
        if let Ok(levels) = lun.decode() {
            prop_assert_eq!(Lun::from_levels(&levels).unwrap(), lun);
        }
        let _ = lun.decode_conglomerate();
        prop_assert_eq!(Lun::from(u64::from(lun)), lun);
        prop_assert_eq!(lun.to_string().parse::<Lun>().unwrap(), lun);
    }

    #[test]
    fn levels_round_trip(levels in proptest::collection::vec(level(), 1..=4)) {
        if let Ok(lun) = Lun::from_levels(&levels) {
            let decoded = lun.decode().unwrap();
            // Trailing all-zero levels are not distinguishable from padding.
            prop_assert!(levels.starts_with(&decoded));
            let zero = LunLevel::Peripheral { bus: 0, target: 0 };
            let padding = levels[decoded.len()..].iter().all(|l| *l == zero);
            prop_assert!(padding);
        }
    }

    #[test]
    fn conglomerate_round_trip(admin in 0u16..=0x3FFF, sub in proptest::option::of(element())) {
        let lun = Lun::conglomerate(admin, sub).unwrap();
        let decoded = lun.decode_conglomerate().unwrap();
        prop_assert_eq!(decoded, ConglomerateLun { admin, subsidiary: sub });
    }

    #[test]
    fn vendor_text_round_trip(sub in element(), lun_hex in any::<bool>(), n in 1u8..=6) {
        let style = if lun_hex { SecondaryIdStyle::LunHex } else { SecondaryIdStyle::ElementHex(n) };
        let id = VendorSecondaryId::new(sub, style);
        let text = id.to_string();
        let back: VendorSecondaryId = text.parse().unwrap();
        prop_assert_eq!(back.subsidiary(), sub);
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,40}") {
        let _ = text.parse::<VendorSecondaryId>();
        let _ = text.parse::<Lun>();
    }
}

/// Found by the `lun_decode` fuzz target: a short `0x` form names a wider
/// element; it must print so that it parses back to the same id.
#[test]
fn short_element_hex_round_trips() {
    let id: vvol::scsi::VendorSecondaryId = "0X06".parse().unwrap();
    assert_eq!(id.to_string(), "0x0600");
    assert_eq!(
        id.to_string()
            .parse::<vvol::scsi::VendorSecondaryId>()
            .unwrap(),
        id
    );
    let e2: vvol::scsi::VendorSecondaryId = "0xe2".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        e2.to_string()
            .parse::<vvol::scsi::VendorSecondaryId>()
            .unwrap(),
        e2
    );
}

/// Review S15: the administrative LUN in the single-level form SAM-5 4.7.3
/// gives each range, and both forms decode to the same ALU.
#[test]
fn administrative_luns_use_flat_space_from_256() {
    assert_eq!(Lun::administrative(0).unwrap(), Lun::default());
    assert_eq!(
        Lun::administrative(255).unwrap().to_string(),
        "00ff000000000000"
    );
    assert_eq!(
        Lun::administrative(256).unwrap().to_string(),
        "4100000000000000"
    );
    assert_eq!(
        Lun::administrative(0x3FFF).unwrap().to_string(),
        "7fff000000000000"
    );
    assert!(matches!(
        Lun::administrative(0x4000),
        Err(LunError::ValueTooLarge { .. })
    ));
    assert_eq!(
        Lun::administrative(256).unwrap().decode().unwrap(),
        vec![LunLevel::Flat(256)]
    );
    let flat_slu: Lun = "4100000500000000".parse().unwrap();
    assert_eq!(
        flat_slu.decode_addressed().unwrap(),
        ConglomerateLun {
            admin: 256,
            subsidiary: Some(SubsidiaryElement::Simple(5))
        }
    );
    // The strict conglomerate reading still refuses flat space.
    assert!(flat_slu.decode_conglomerate().is_err());
    // Logical unit and extended addressing are no administrative element.
    for text in ["8100000000000000", "c101000000000000", "d200010000000000"] {
        let lun: Lun = text.parse().unwrap();
        assert!(lun.decode_addressed().is_err(), "{text}");
    }
}

proptest! {
    #[test]
    fn both_admin_forms_decode_alike(admin in 0u16..=0x3FFF, sub in proptest::option::of(element())) {
        let congl = Lun::conglomerate(admin, sub).unwrap();
        let mut flat = congl.to_bytes();
        flat[0] |= 0x40;
        prop_assert_eq!(congl.decode_addressed().unwrap(), congl.decode_conglomerate().unwrap());
        prop_assert_eq!(Lun(flat).decode_addressed().unwrap(), congl.decode_conglomerate().unwrap());
        let reported = Lun::administrative(admin).unwrap();
        prop_assert_eq!(
            reported.decode_addressed().unwrap(),
            ConglomerateLun { admin, subsidiary: None }
        );
    }
}
