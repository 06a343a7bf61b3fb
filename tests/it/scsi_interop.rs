//! Conformance against sg3_utils' decoders: our INQUIRY, VPD, REPORT LUNS
//! and sense bytes go to `sg_inq --inhex`, `sg_vpd --inhex`,
//! `sg_luns --test` and `sg_decode_sense`, and the decoded text must say
//! what we mean. A missing sg3_utils binary fails the test (scripts/interop
//! installs Debian's sg3-utils first).

use std::io::Write;
use std::process::{Command, Stdio};

use vvol::UnbindContext;
use vvol::scsi::{AluaState, Lun, REPORT_LUNS_WLUN, ScsiResponse, Status, SubsidiaryElement};

use super::scsi_target::{COMPANY, Fixture, INQUIRY, PE_LUN, report_luns, vpd};

/// Runs an sg3_utils tool; panics (fails the test) when it is missing or
/// exits non-zero.
fn sg(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{tool} is not runnable ({e}); install sg3-utils"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{tool} {args:?} failed: {text}");
    text
}

fn spaced_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes INQUIRY data with `tool --inhex=<file> extra...`.
fn inhex(tool: &str, data: &[u8], extra: &[&str]) -> String {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{}", spaced_hex(data)).unwrap();
    let arg = format!("--inhex={}", file.path().display());
    let mut args = vec![arg.as_str()];
    args.extend_from_slice(extra);
    sg(tool, &args)
}

fn decode_sense(r: &ScsiResponse) -> String {
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    let hex: Vec<String> = r.sense.iter().map(|b| format!("{b:02x}")).collect();
    let args: Vec<&str> = hex.iter().map(String::as_str).collect();
    sg("sg_decode_sense", &args)
}

fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
}

fn data(r: &ScsiResponse) -> Vec<u8> {
    assert_eq!(r.status, Status::Good, "{r:?}");
    r.data_in.clone()
}

#[test]
fn interop_sg_inq_decodes_lu_cong_and_pq3() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (handle, slu) = f.bind(0, v);
    for lun in [f.alu(), slu] {
        let text = inhex("sg_inq", &data(&f.run(0, lun, &INQUIRY, &[])), &[]);
        assert_has(&text, "PQual=0  PDT=0");
        assert_has(&text, "LU_CONG=1");
        assert_has(&text, "[SPC-5]");
        assert_has(&text, "TPGS=1");
        assert_has(&text, "Peripheral device type: disk");
        assert_has(&text, "Vendor identification: VVOL");
    }
    f.plane
        .unbind(f.hosts[0], handle, UnbindContext::Normal)
        .unwrap();
    let text = inhex("sg_inq", &data(&f.run(0, slu, &INQUIRY, &[])), &[]);
    assert_has(&text, "PQual=3  PDT=31");
    assert_has(&text, "LU_CONG=0");
}

#[test]
fn interop_sg_vpd_decodes_every_page() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let naa = f.target.vvol_naa(v).unwrap();
    let naa_hex: String = naa.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let text = inhex("sg_vpd", &data(&f.run(0, slu, &vpd(0x83), &[])), &[]);
    assert_has(&text, "Addressed logical unit:");
    assert_has(&text, "designator type: NAA,  code set: Binary");
    assert_has(&text, &format!("0x{naa_hex}"));
    assert_has(&text, "Relative target port: 0x1");
    assert_has(&text, "Target port group: 0x1");
    assert_eq!(naa.ieee_company_id(), COMPANY);
    let pe_hex: String = f
        .pe_naa
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let text = inhex("sg_vpd", &data(&f.run(0, f.alu(), &vpd(0x83), &[])), &[]);
    assert_has(&text, &format!("0x{pe_hex}"));
    let text = inhex("sg_vpd", &data(&f.run(0, f.alu(), &vpd(0x86), &[])), &[]);
    assert_has(&text, "extended INQUIRY data VPD page");
    assert_has(&text, "LU_COLL_TYPE=1");
    let text = inhex("sg_vpd", &data(&f.run(0, slu, &vpd(0x00), &[])), &[]);
    for page in [
        "Unit serial number",
        "Device identification",
        "Extended inquiry data",
        "Block limits (SBC)",
        "Block device characteristics (SBC)",
        "Logical block provisioning (SBC)",
    ] {
        assert_has(&text, page);
    }
    let text = inhex("sg_vpd", &data(&f.run(0, slu, &vpd(0x80), &[])), &[]);
    let uuid: String = v.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_has(&text, &format!("Unit serial number: {uuid}"));
    let text = inhex("sg_vpd", &data(&f.run(0, slu, &vpd(0xB0), &[])), &[]);
    assert_has(&text, "Write same non-zero (WSNZ): 1");
    assert_has(&text, "Maximum compare and write length: 64 blocks");
    assert_has(&text, "Maximum unmap block descriptor count: 256");
    let text = inhex("sg_vpd", &data(&f.run(0, slu, &vpd(0xB1), &[])), &[]);
    assert_has(&text, "Non-rotating medium");
    let text = inhex("sg_vpd", &data(&f.run(0, slu, &vpd(0xB2), &[])), &[]);
    assert_has(&text, "Unmap command supported (LBPU): 1");
    assert_has(&text, "Write same (16) with unmap bit supported (LBPWS): 1");
    // The memory backend reads discarded blocks as zeros (review S17).
    assert_has(&text, "Logical block provisioning read zeros (LBPRZ): 1");
    assert_has(&text, "Provisioning type: 2 (thin provisioned)");
    // The ALU (review S9): no provisioning page, no UNMAP limits.
    let text = inhex("sg_vpd", &data(&f.run(0, f.alu(), &vpd(0x00), &[])), &[]);
    assert_has(&text, "Block device characteristics (SBC)");
    assert!(!text.contains("Logical block provisioning"), "{text}");
    let text = inhex("sg_vpd", &data(&f.run(0, f.alu(), &vpd(0xB0), &[])), &[]);
    assert_has(&text, "Write same non-zero (WSNZ): 0");
    assert_has(&text, "Maximum unmap LBA count: 0");
}

#[test]
fn interop_sg_inq_decodes_version_descriptors_and_product_ids() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    for (lun, product) in [(f.alu(), "PROTOCOL ENDPT"), (slu, "VIRTUAL VOLUME")] {
        let text = inhex("sg_inq", &data(&f.run(0, lun, &INQUIRY, &[])), &["-d"]);
        assert_has(&text, &format!("Product identification: {product}"));
        assert_has(&text, "Version descriptors:");
        for standard in ["SAM-5", "SPC-5", "SBC-4"] {
            assert_has(&text, &format!("{standard} (no version claimed)"));
        }
    }
    let wlun = data(&f.run(0, REPORT_LUNS_WLUN, &INQUIRY, &[]));
    let text = inhex("sg_inq", &wlun, &["-d"]);
    assert_has(&text, "Product identification: VVOL TARGET");
    assert_has(&text, "SPC-5 (no version claimed)");
    assert!(!text.contains("SBC-4"), "{text}");
}

#[test]
fn interop_sg_luns_decodes_report_luns_data() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    let d = data(&f.run(0, f.alu(), &report_luns(0x12), &[]));
    assert_eq!(d.len(), 8 + 16);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let alu_text = sg(
        "sg_luns",
        &["--lu_cong", &format!("--test={}", hex(&d[8..16]))],
    );
    assert_has(&alu_text, "Simple lu addressing: 255");
    let slu_hex = hex(&d[16..24]);
    assert_eq!(slu_hex, slu.to_string());
    let text = sg("sg_luns", &["--lu_cong", &format!("--test={slu_hex}")]);
    assert_has(&text, ">>Administrative element:");
    assert_has(&text, &format!("Simple lu addressing: {PE_LUN}"));
    assert_has(&text, ">>Subsidiary element:");
    assert_has(&text, "Simple lu addressing: 1");
    // The extended flat space forms a PE configured past 16383 ids uses.
    let d2 = Lun::conglomerate(256, Some(SubsidiaryElement::ExtendedFlat(70_000))).unwrap();
    let text = sg("sg_luns", &["--lu_cong", &format!("--test={d2}")]);
    assert_has(&text, "Simple lu addressing: 256");
    assert_has(&text, "Extended flat space addressing: lun=70000");
    let e2 = Lun::conglomerate(1, Some(SubsidiaryElement::LongExtendedFlat(166))).unwrap();
    let text = sg("sg_luns", &["--lu_cong", &format!("--test={e2}")]);
    assert_has(&text, "Long extended flat space addressing: lun=166");
    // An ALU from 256 on is reported in flat space addressing, which a
    // host decoding LUN 0's inventory (LU_CONG=0) reads as LUN 256
    // (review S15).
    let flat = Lun::administrative(256).unwrap();
    let text = sg("sg_luns", &[&format!("--test={flat}")]);
    assert_has(&text, "Flat space addressing: lun=256");
    let d = data(&f.run(0, Lun::default(), &report_luns(0x01), &[]));
    let text = sg("sg_luns", &[&format!("--test={}", hex(&d[8..16]))]);
    assert_has(&text, "REPORT LUNS well known logical unit");
    assert_eq!(&d[8..16], &REPORT_LUNS_WLUN.to_bytes());
}

#[test]
fn interop_sg_decode_sense_reads_our_sense_data() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    let tur = [0u8; 6];
    let text = decode_sense(&f.run(0, slu, &tur, &[]));
    assert_has(&text, "Fixed format, current; Sense key: Unit Attention");
    assert_has(&text, "Power on, reset, or bus device reset occurred");
    // Each LU reports it once to the nexus (SAM-5 5.14): the ALU too.
    let text = decode_sense(&f.run(0, f.alu(), &tur, &[]));
    assert_has(&text, "Power on, reset, or bus device reset occurred");
    let far = Lun::conglomerate(PE_LUN, Some(SubsidiaryElement::Simple(77))).unwrap();
    let text = decode_sense(&f.run(0, far, &tur, &[]));
    assert_has(&text, "Sense key: Illegal Request");
    assert_has(&text, "Logical unit not supported");
    let read_past = [0x88, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 1, 0, 0];
    let text = decode_sense(&f.run(0, slu, &read_past, &[]));
    assert_has(&text, "Logical block address out of range");
    let text = decode_sense(&f.run(0, slu, &vpd(0xC7), &[]));
    assert_has(&text, "Invalid field in cdb");
    assert_has(&text, "Error in Command: byte 2 bit 7");
    let text = decode_sense(&f.run(0, slu, &[0xEE, 0, 0, 0, 0, 0], &[]));
    assert_has(&text, "Invalid command operation code");
    let text = decode_sense(&f.run(0, slu, &report_luns(0x12), &[]));
    assert_has(&text, "Invalid field in cdb");
    assert_has(&text, "Error in Command: byte 2 bit 7");
    // A bind behind the PE: REPORTED LUNS DATA HAS CHANGED, on the PE's
    // ALU (what REPORT LUNS SELECT REPORT 12h to it returns changed).
    let v2 = f.vvol(4);
    f.bind(0, v2);
    let text = decode_sense(&f.run(0, f.alu(), &tur, &[]));
    assert_has(&text, "Reported luns data has changed");
    f.plane.resize_vvol(v, 8 << 20).unwrap();
    let text = decode_sense(&f.run(0, slu, &tur, &[]));
    assert_has(&text, "Capacity data has changed");
    f.target.set_alua_state(1, AluaState::Standby).unwrap();
    let text = decode_sense(&f.run(0, slu, &tur, &[]));
    assert_has(&text, "Asymmetric access state changed");
    let text = decode_sense(&f.run(0, slu, &tur, &[]));
    assert_has(&text, "Sense key: Not Ready");
    assert_has(&text, "target port in standby state");
    f.target
        .set_alua_state(1, AluaState::ActiveOptimized)
        .unwrap();
    decode_sense(&f.run(0, slu, &tur, &[]));
    // MISCOMPARE with the offset in INFORMATION, fixed then descriptor.
    let mut caw = [0u8; 16];
    caw[0] = 0x89;
    caw[13] = 1;
    let mut out = vec![1u8; 512];
    out.extend_from_slice(&[2u8; 512]);
    let text = decode_sense(&f.run(0, slu, &caw, &out));
    assert_has(&text, "Sense key: Miscompare");
    assert_has(&text, "Miscompare during verify operation");
    assert_has(&text, "Info fld=0x0 [0]");
    // D_SENSE on: descriptor format with the field pointer descriptor.
    let mode = data(&f.run(0, slu, &[0x1A, 0x08, 0x0A, 0, 0xFF, 0], &[]));
    let mut list = vec![0u8; 4];
    let mut page = mode[4..].to_vec();
    page[2] |= 0x04;
    list.extend_from_slice(&page);
    data(&f.run(0, slu, &[0x15, 0x10, 0, 0, list.len() as u8, 0], &list));
    let text = decode_sense(&f.run(0, slu, &vpd(0xC7), &[]));
    assert_has(
        &text,
        "Descriptor format, current; Sense key: Illegal Request",
    );
    assert_has(&text, "Field pointer");
    assert_has(&text, "Error in Command: byte 2 bit 7");
    let text = decode_sense(&f.run(0, slu, &caw, &out));
    assert_has(&text, "Descriptor type: Information: 0x0000000000000000");
}

#[test]
fn interop_sg_get_lba_status_reads_our_lba_status() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let write = [0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0];
    data(&f.run(0, slu, &write, &[0xAB; 4096]));
    let mut cdb = [0u8; 16];
    cdb[0] = 0x9E;
    cdb[1] = 0x12;
    cdb[13] = 0x80;
    let d = data(&f.run(0, slu, &cdb, &[]));
    assert_eq!(d.len(), 8 + 2 * 16);
    let text = inhex("sg_get_lba_status", &d, &["--maxlen=128"]);
    // The backend allocates in its own granules: the first extent covers at
    // least the 8 written blocks; the rest of the 8192 is deallocated.
    let first = u32::from_be_bytes(d[16..20].try_into().unwrap());
    assert!(first >= 8);
    assert_has(
        &text,
        &format!("[1] LBA: 0x0000000000000000  blocks: {first:>10}  mapped (or unknown)"),
    );
    assert_has(
        &text,
        &format!(
            "[2] LBA: 0x{first:016x}  blocks: {:>10}  deallocated",
            8192 - first
        ),
    );
}
