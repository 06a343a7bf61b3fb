//! `ScsiTarget`: commands, error semantics and unit attentions.

use std::io::ErrorKind;
use std::sync::Arc;

use proptest::prelude::*;
use vvol::backend::{BackendOp, Fault, FaultKind, FaultTrigger, FaultyBackend, MemoryBackend};
use vvol::scsi::{
    AluaState, InitiatorPortId, ItNexus, Lun, REPORT_LUNS_WLUN, ScsiResponse, ScsiTarget, Status,
    derive_vvol_naa,
};
use vvol::{
    ArraySpec, BindContext, BindHandle, ContainerSpec, ControlPlane, HostId, Limits, Naa, PeId,
    PeSpec, Protocol, ScsiPath, UnbindContext, VvolId, VvolSpec, VvolType,
};

use crate::support::bind_one;

pub(crate) const COMPANY: u32 = 0x00_1A_2B;
pub(crate) const PE_LUN: u16 = 255;
const MIB: u64 = 1 << 20;

/// One array, one SCSI container, one PE at LUN 255 with ports 1 (group 1)
/// and 2 (group 2), two hosts seeing it, and a target.
pub(crate) struct Fixture {
    pub(crate) plane: Arc<ControlPlane>,
    pub(crate) target: ScsiTarget,
    pub(crate) container: vvol::ContainerId,
    pub(crate) pe: PeId,
    pub(crate) pe_naa: Naa,
    pub(crate) hosts: [HostId; 2],
}

impl Fixture {
    pub(crate) fn new() -> Self {
        Self::with_queue_depth(64)
    }

    pub(crate) fn with_queue_depth(depth: u32) -> Self {
        let plane = ControlPlane::new(Limits::default());
        let array = plane.add_array(ArraySpec::new("a", COMPANY)).unwrap();
        let container = plane
            .add_container(array, ContainerSpec::new("c", Protocol::Scsi, 1 << 40))
            .unwrap();
        let pe_naa = Naa::from_parts(COMPANY, 0x5EED, 0xC0FFEE).unwrap();
        let pe = plane
            .add_pe(
                array,
                PeSpec::scsi(pe_naa, PE_LUN)
                    .with_paths(vec![ScsiPath::new(1, 1), ScsiPath::new(2, 2)])
                    .with_queue_depth(depth),
            )
            .unwrap();
        let hosts = [plane.add_host("h1").unwrap(), plane.add_host("h2").unwrap()];
        for h in hosts {
            plane.map_pe(h, pe).unwrap();
            plane.set_pe_context(h, &[pe]).unwrap();
        }
        let plane = Arc::new(plane);
        let target = ScsiTarget::new(Arc::clone(&plane), array).unwrap();
        Self {
            plane,
            target,
            container,
            pe,
            pe_naa,
            hosts,
        }
    }

    pub(crate) fn array(&self) -> vvol::ArrayId {
        self.target.array()
    }

    pub(crate) fn vvol(&self, mib: u64) -> VvolId {
        self.plane
            .create_vvol(self.container, VvolSpec::new(VvolType::Data, mib * MIB))
            .unwrap()
    }

    pub(crate) fn vvol_on(&self, backend: Arc<FaultyBackend>) -> VvolId {
        crate::support::create_on(
            &self.plane,
            self.container,
            VvolSpec::new(VvolType::Data, 4 * MIB),
            backend as _,
            "test",
        )
    }

    pub(crate) fn bind(&self, host: usize, vvol: VvolId) -> (BindHandle, Lun) {
        let h = bind_one(&self.plane, self.hosts[host], vvol, BindContext::Normal);
        (h, self.target.lun_of(h).unwrap())
    }

    pub(crate) fn alu(&self) -> Lun {
        self.target.admin_lun_of(self.pe).unwrap()
    }

    pub(crate) fn nexus(&self, host: usize) -> ItNexus {
        ItNexus::new(self.hosts[host], 1)
    }

    /// Runs `cdb`, first clearing the power-on unit attention of the nexus.
    pub(crate) fn run(&self, host: usize, lun: Lun, cdb: &[u8], out: &[u8]) -> ScsiResponse {
        self.target.execute(self.nexus(host), lun, cdb, out)
    }

    /// A nexus past the power-on unit attention of each of its LUs: the
    /// ALU and the SLU of every binding the host holds (unit attentions are
    /// per I_T_L nexus, SAM-5 5.14: each LU reports 29h/00h once).
    pub(crate) fn ready(&self, host: usize) {
        let r = self.run(host, self.alu(), &[0; 6], &[]);
        assert_eq!(r.status, Status::CheckCondition);
        assert_eq!(kcq(&r), (6, 0x29, 0));
        for b in self.plane.bindings_for_host(self.hosts[host]).unwrap() {
            let Some(lun) = self.target.lun_of(b.handle) else {
                continue;
            };
            let r = self.run(host, lun, &[0; 6], &[]);
            assert_eq!(kcq(&r), (6, 0x29, 0), "{lun}: {r:?}");
            assert_eq!(self.run(host, lun, &[0; 6], &[]).status, Status::Good);
        }
    }
}

/// Key, ASC, ASCQ of fixed or descriptor sense.
pub(crate) fn kcq(r: &ScsiResponse) -> (u8, u8, u8) {
    let s = &r.sense;
    assert!(!s.is_empty(), "no sense: {r:?}");
    match s[0] & 0x7F {
        0x70 => (s[2] & 0x0F, s[12], s[13]),
        0x72 => (s[1] & 0x0F, s[2], s[3]),
        other => panic!("sense format {other:#x}"),
    }
}

fn check(r: &ScsiResponse, expect: (u8, u8, u8)) {
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    assert_eq!(kcq(r), expect, "{r:?}");
}

fn good(r: &ScsiResponse) -> &[u8] {
    assert_eq!(r.status, Status::Good, "{r:?}");
    &r.data_in
}

pub(crate) const INQUIRY: [u8; 6] = [0x12, 0, 0, 0, 0xFF, 0];

pub(crate) fn vpd(page: u8) -> [u8; 6] {
    [0x12, 1, page, 0x01, 0x00, 0]
}

pub(crate) fn report_luns(select: u8) -> [u8; 12] {
    [0xA0, 0, select, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]
}

fn read10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![0x28, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.push(0);
    c.extend_from_slice(&blocks.to_be_bytes());
    c.push(0);
    c
}

fn write10(lba: u32, blocks: u16, fua: bool) -> Vec<u8> {
    let mut c = read10(lba, blocks);
    c[0] = 0x2A;
    if fua {
        c[1] = 0x08;
    }
    c
}

fn rw16(opcode: u8, lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = vec![opcode, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.extend_from_slice(&blocks.to_be_bytes());
    c.extend_from_slice(&[0, 0]);
    c
}

#[test]
fn power_on_unit_attention_once_and_not_on_inquiry() {
    let f = Fixture::new();
    let alu = f.alu();
    good(&f.run(0, alu, &INQUIRY, &[]));
    good(&f.run(0, alu, &report_luns(0), &[]));
    check(&f.run(0, alu, &[0; 6], &[]), (6, 0x29, 0));
    good(&f.run(0, alu, &[0; 6], &[]));
    // Another port is another nexus.
    let other = ItNexus::new(f.hosts[0], 2);
    let r = f.target.execute(other, alu, &[0; 6], &[]);
    check(&r, (6, 0x29, 0));
    // So is another initiator port of the same host on the same port.
    let second_port = ItNexus::with_initiator(f.hosts[0], InitiatorPortId(7), 1);
    check(
        &f.target.execute(second_port, alu, &[0; 6], &[]),
        (6, 0x29, 0),
    );
    good(&f.target.execute(second_port, alu, &[0; 6], &[]));
    // REQUEST SENSE returns a pending UA as data with GOOD and clears it.
    f.target.reset();
    let r = f.run(0, alu, &[0x03, 0, 0, 0, 18, 0], &[]);
    assert_eq!(good(&r)[0], 0x70);
    assert_eq!((r.data_in[2], r.data_in[12]), (6, 0x29));
    good(&f.run(0, alu, &[0; 6], &[]));
    let r = f.run(0, alu, &[0x03, 0, 0, 0, 18, 0], &[]);
    assert_eq!((good(&r)[2], r.data_in[12]), (0, 0));
}

#[test]
fn inquiry_sets_lu_cong_on_pe_and_slu_and_pq3_when_unbound() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (handle, slu) = f.bind(0, v);
    let alu = good(&f.run(0, f.alu(), &INQUIRY, &[])).to_vec();
    assert_eq!((alu[0], alu[1] & 0x40, alu[5] & 0x30), (0x00, 0x40, 0x10));
    assert_eq!(alu[6] & 0x10, 0x10, "MULTIP: two ports");
    assert_eq!(&alu[8..16], b"VVOL    ");
    let s = good(&f.run(0, slu, &INQUIRY, &[])).to_vec();
    assert_eq!((s[0], s[1] & 0x40), (0x00, 0x40));
    // Host 2 does not hold the binding: the SLU does not exist for it.
    let other = good(&f.run(1, slu, &INQUIRY, &[])).to_vec();
    assert_eq!(other[0], 0x7F);
    check(&f.run(1, slu, &read10(0, 1), &[]), (5, 0x25, 0));
    check(&f.run(1, slu, &vpd(0x83), &[]), (5, 0x25, 0));
    // Unbound, and never-bound ids: same answer.
    f.plane
        .unbind(f.hosts[0], handle, UnbindContext::Normal)
        .unwrap();
    assert_eq!(good(&f.run(0, slu, &INQUIRY, &[]))[0], 0x7F);
    check(&f.run(0, slu, &[0; 6], &[]), (5, 0x25, 0));
    let far = Lun::conglomerate(PE_LUN, Some(vvol::scsi::SubsidiaryElement::Simple(999))).unwrap();
    check(&f.run(0, far, &read10(0, 1), &[]), (5, 0x25, 0));
    // The wrong subsidiary form for this PE names no LU either.
    let d2 =
        Lun::conglomerate(PE_LUN, Some(vvol::scsi::SubsidiaryElement::ExtendedFlat(1))).unwrap();
    assert_eq!(good(&f.run(0, d2, &INQUIRY, &[]))[0], 0x7F);
    // A port the PE has no path on sees no PE.
    let r = f
        .target
        .execute(ItNexus::new(f.hosts[0], 9), f.alu(), &INQUIRY, &[]);
    assert_eq!(good(&r)[0], 0x7F);
    // REQUEST SENSE to an incorrect LUN: LOGICAL UNIT NOT SUPPORTED as data.
    let r = f.run(0, far, &[0x03, 0, 0, 0, 18, 0], &[]);
    assert_eq!((good(&r)[2], r.data_in[12]), (5, 0x25));
}

#[test]
fn vpd_pages_name_pe_and_vvol() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let pages = good(&f.run(0, slu, &vpd(0), &[])).to_vec();
    assert_eq!(&pages[4..], &[0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2]);
    let pe83 = good(&f.run(0, f.alu(), &vpd(0x83), &[])).to_vec();
    assert_eq!(&pe83[4..8], &[0x01, 0x03, 0x00, 0x10]);
    assert_eq!(&pe83[8..24], &f.pe_naa.to_bytes());
    // Relative target port 1, target port group 1.
    assert_eq!(&pe83[24..32], &[0x01, 0x14, 0, 4, 0, 0, 0, 1]);
    assert_eq!(&pe83[32..40], &[0x01, 0x15, 0, 4, 0, 0, 0, 1]);
    let v83 = good(&f.run(0, slu, &vpd(0x83), &[])).to_vec();
    let naa = derive_vvol_naa(COMPANY, v);
    assert_eq!(&v83[8..24], &naa.to_bytes());
    assert_eq!(naa.ieee_company_id(), COMPANY);
    let low = u128::from_be_bytes(naa.to_bytes()) & ((1u128 << 100) - 1);
    assert_eq!(low, v.get() & ((1u128 << 100) - 1));
    let serial = good(&f.run(0, slu, &vpd(0x80), &[])).to_vec();
    assert_eq!(serial.len(), 4 + 32);
    let x86 = good(&f.run(0, f.alu(), &vpd(0x86), &[])).to_vec();
    assert_eq!(x86[8] >> 5, 1, "LU_COLL_TYPE conglomerate");
    assert_eq!(x86[6] & 1, 1, "V_SUP: the volatile cache WCE reports");
    assert_eq!(
        x86[7] & 1,
        1,
        "LUICLR: 3Fh/0Eh clears on every LU of the nexus"
    );
    let b0 = good(&f.run(0, slu, &vpd(0xB0), &[])).to_vec();
    assert_eq!(b0[4] & 1, 1, "WSNZ");
    let b2 = good(&f.run(0, slu, &vpd(0xB2), &[])).to_vec();
    assert_eq!(b2[5] & 0xC0, 0xC0, "LBPU, LBPWS");
    check(&f.run(0, slu, &vpd(0xC7), &[]), (5, 0x24, 0));
    // Field pointer: byte 2 of the CDB.
    let r = f.run(0, slu, &vpd(0xC7), &[]);
    assert_eq!(&r.sense[15..18], &[0xCF, 0x00, 0x02]);
}

#[test]
fn vvol_naas_are_checked_unique_within_the_array() {
    let f = Fixture::new();
    let low = 0x0001_2345_6789_ABCD_EF01_2345_6789_u128;
    let a = VvolId(low | (0x4u128 << 120));
    let b = VvolId(low | (0x5u128 << 120));
    for id in [a, b] {
        f.plane
            .create_vvol(
                f.container,
                VvolSpec::new(VvolType::Data, 4 * MIB).with_id(id),
            )
            .unwrap();
    }
    assert_eq!(derive_vvol_naa(COMPANY, a), derive_vvol_naa(COMPANY, b));
    f.target.vvol_naa(a).unwrap();
    assert!(matches!(
        f.target.vvol_naa(b),
        Err(vvol::scsi::ScsiError::NaaCollision { .. })
    ));
    assert!(f.target.check_vvol_naas().is_err());
    // The colliding vVol's VPD 83h is refused rather than duplicated.
    let (_, slu) = f.bind(0, b);
    f.ready(0);
    check(&f.run(0, slu, &vpd(0x83), &[]), (4, 0x44, 0));
}

#[test]
fn report_luns_select_report_values() {
    let f = Fixture::new();
    let v1 = f.vvol(4);
    let v2 = f.vvol(4);
    let (_, l1) = f.bind(0, v1);
    let (_, l2) = f.bind(1, v2);
    let alu = f.alu();
    let luns = |r: &ScsiResponse| -> Vec<Lun> {
        let d = good(r);
        let n = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize / 8;
        (0..n)
            .map(|i| Lun(d[8 + 8 * i..16 + 8 * i].try_into().unwrap()))
            .collect()
    };
    let zero = Lun::default();
    assert_eq!(
        luns(&f.run(0, zero, &report_luns(0x00), &[])),
        vec![alu, l1]
    );
    assert_eq!(
        luns(&f.run(0, zero, &report_luns(0x01), &[])),
        vec![REPORT_LUNS_WLUN]
    );
    assert_eq!(
        luns(&f.run(0, zero, &report_luns(0x02), &[])),
        vec![alu, l1, REPORT_LUNS_WLUN]
    );
    assert_eq!(
        luns(&f.run(0, REPORT_LUNS_WLUN, &report_luns(0x10), &[])),
        vec![alu]
    );
    assert_eq!(luns(&f.run(0, zero, &report_luns(0x11), &[])), vec![alu]);
    assert_eq!(luns(&f.run(0, alu, &report_luns(0x12), &[])), vec![alu, l1]);
    assert_eq!(luns(&f.run(1, alu, &report_luns(0x12), &[])), vec![alu, l2]);
    // 10h/11h only at LUN 0 or the W-LUN; 12h only at an ALU.
    check(&f.run(0, alu, &report_luns(0x10), &[]), (5, 0x24, 0));
    // 12h to a LU that is not an ALU: INVALID FIELD IN CDB at byte 2
    // (review S12: 20h/0Dh is a direct-access-only code, REPORT LUNS is
    // SPC).
    for lun in [zero, l1] {
        let r = f.run(0, lun, &report_luns(0x12), &[]);
        check(&r, (5, 0x24, 0));
        assert_eq!(&r.sense[15..18], &[0xCF, 0x00, 0x02], "field pointer");
    }
    check(&f.run(0, zero, &report_luns(0x03), &[]), (5, 0x24, 0));
    let mut short = report_luns(0);
    short[8] = 0;
    short[9] = 15;
    // Truncated, not refused (SPC-4 r37 and later); the full LIST LENGTH
    // tells the host how much to ask for.
    let d = good(&f.run(0, zero, &short, &[])).to_vec();
    assert_eq!((d.len(), &d[..4]), (15, &16u32.to_be_bytes()[..]));
    // LUN 0 has no LU here: INQUIRY says so, TUR is refused, REPORT LUNS works.
    assert_eq!(good(&f.run(0, zero, &INQUIRY, &[]))[0], 0x7F);
    check(&f.run(0, zero, &[0; 6], &[]), (5, 0x25, 0));
    // The W-LUN answers INQUIRY as a well-known LU and refuses media commands.
    assert_eq!(good(&f.run(0, REPORT_LUNS_WLUN, &INQUIRY, &[]))[0], 0x1E);
    check(
        &f.run(0, REPORT_LUNS_WLUN, &read10(0, 1), &[]),
        (5, 0x20, 0),
    );
}

#[test]
fn read_write_6_10_16_with_fua_and_range_checks() {
    let f = Fixture::new();
    let v = f.vvol(1);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let blocks = 2048u64; // 1 MiB / 512
    let data: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
    good(&f.run(0, slu, &write10(10, 2, true), &data));
    assert_eq!(good(&f.run(0, slu, &read10(10, 2), &[])), &data[..]);
    good(&f.run(0, slu, &rw16(0x8A, blocks - 2, 2), &data));
    assert_eq!(
        good(&f.run(0, slu, &rw16(0x88, blocks - 2, 2), &[])),
        &data[..]
    );
    good(&f.run(0, slu, &[0x0A, 0, 0, 5, 1, 0], &data[..512]));
    assert_eq!(
        good(&f.run(0, slu, &[0x08, 0, 0, 5, 1, 0], &[])),
        &data[..512]
    );
    check(
        &f.run(0, slu, &rw16(0x88, blocks - 1, 2), &[]),
        (5, 0x21, 0),
    );
    check(&f.run(0, slu, &rw16(0x88, u64::MAX, 1), &[]), (5, 0x21, 0));
    check(
        &f.run(0, slu, &write10(blocks as u32, 1, false), &data),
        (5, 0x21, 0),
    );
    // RDPROTECT is not supported.
    let mut prot = read10(0, 1);
    prot[1] = 0x20;
    check(&f.run(0, slu, &prot, &[]), (5, 0x24, 0));
    // Larger than MAX_TRANSFER_BYTES.
    let f2 = Fixture::new();
    let big = f2.vvol(64);
    let (_, big_lun) = f2.bind(0, big);
    f2.ready(0);
    check(
        &f2.run(0, big_lun, &rw16(0x88, 0, 32768), &[]),
        (5, 0x24, 0),
    );
    // Synchronize cache.
    good(&f.run(0, slu, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]));
    good(&f.run(0, slu, &rw16(0x91, 0, 0), &[]));
    // A PE's one block reads as zeros (see alu_personality_is_consistent).
    assert_eq!(good(&f.run(0, f.alu(), &read10(0, 1), &[])), &[0; 512][..]);
}

#[test]
fn read_capacity_of_pe_and_vvol() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let rc10 = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        good(&f.run(0, slu, &rc10, &[])),
        &[0, 0, 0x1F, 0xFF, 0, 0, 2, 0]
    );
    assert_eq!(
        good(&f.run(0, f.alu(), &rc10, &[])),
        &[0, 0, 0, 0, 0, 0, 2, 0]
    );
    let rc16 = [0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
    let d = good(&f.run(0, slu, &rc16, &[])).to_vec();
    assert_eq!(u64::from_be_bytes(d[..8].try_into().unwrap()), 8191);
    assert_eq!(d[14] & 0x80, 0x80, "LBPME");
}

#[test]
fn unit_attentions_for_bind_resize_and_alua() {
    let f = Fixture::new();
    let v1 = f.vvol(4);
    let (h1, slu) = f.bind(0, v1);
    f.ready(0);
    f.ready(1);
    // A bind for host 1 changes what host 1 sees behind the PE: once.
    let v2 = f.vvol(4);
    let (h2, _) = f.bind(0, v2);
    check(&f.run(0, f.alu(), &[0; 6], &[]), (6, 0x3F, 0x0E));
    good(&f.run(0, f.alu(), &[0; 6], &[]));
    good(&f.run(0, slu, &[0; 6], &[]));
    // Host 2 sees nothing new behind the PE.
    good(&f.run(1, f.alu(), &[0; 6], &[]));
    // Unbind: again, on the PE's ALU (whose REPORT LUNS 12h data
    // changed), not on its SLUs.
    f.plane
        .unbind(f.hosts[0], h2, UnbindContext::Normal)
        .unwrap();
    good(&f.run(0, slu, &[0; 6], &[]));
    check(&f.run(0, f.alu(), &[0; 6], &[]), (6, 0x3F, 0x0E));
    good(&f.run(0, f.alu(), &[0; 6], &[]));
    // REPORT LUNS tells the host, so no UA follows; a list cut short by
    // the allocation length told it nothing.
    let (_, _) = f.bind(0, v2);
    let mut short = report_luns(0x12);
    short[6..10].copy_from_slice(&16u32.to_be_bytes());
    good(&f.run(0, f.alu(), &short, &[]));
    check(&f.run(0, f.alu(), &[0; 6], &[]), (6, 0x3F, 0x0E));
    f.plane
        .unbind(
            f.hosts[0],
            f.plane
                .bindings_for_host(f.hosts[0])
                .unwrap()
                .iter()
                .find(|b| b.vvol == v2)
                .unwrap()
                .handle,
            UnbindContext::Normal,
        )
        .unwrap();
    let (_, _) = f.bind(0, v2);
    good(&f.run(0, f.alu(), &report_luns(0x12), &[]));
    good(&f.run(0, f.alu(), &[0; 6], &[]));
    // Growing the vVol: CAPACITY DATA HAS CHANGED on its SLU.
    f.plane.resize_vvol(v1, 8 * MIB).unwrap();
    check(&f.run(0, slu, &[0; 6], &[]), (6, 0x2A, 0x09));
    good(&f.run(0, slu, &[0; 6], &[]));
    // ALUA change: every nexus, once; NOT READY on a standby port.
    f.target.set_alua_state(1, AluaState::Standby).unwrap();
    check(&f.run(0, slu, &[0; 6], &[]), (6, 0x2A, 0x06));
    check(&f.run(0, slu, &read10(0, 1), &[]), (2, 0x04, 0x0B));
    good(&f.run(0, slu, &INQUIRY, &[]));
    let port2 = ItNexus::new(f.hosts[0], 2);
    check(&f.target.execute(port2, slu, &[0; 6], &[]), (6, 0x29, 0));
    good(&f.target.execute(port2, slu, &read10(0, 1), &[]));
    for (state, ascq) in [
        (AluaState::Transitioning, 0x0A),
        (AluaState::Unavailable, 0x0C),
        (AluaState::Offline, 0x12),
    ] {
        f.target.set_alua_state(1, state).unwrap();
        check(&f.run(0, slu, &read10(0, 1), &[]), (6, 0x2A, 0x06));
        check(&f.run(0, slu, &read10(0, 1), &[]), (2, 0x04, ascq));
    }
    f.target
        .set_alua_state(1, AluaState::ActiveOptimized)
        .unwrap();
    check(&f.run(0, slu, &read10(0, 1), &[]), (6, 0x2A, 0x06));
    good(&f.run(0, slu, &read10(0, 1), &[]));
    assert!(f.target.set_alua_state(7, AluaState::Standby).is_err());
    // REPORT TARGET PORT GROUPS: two groups, one port each.
    f.target
        .set_alua_state(2, AluaState::ActiveNonOptimized)
        .unwrap();
    check(&f.run(0, slu, &[0; 6], &[]), (6, 0x2A, 0x06));
    let rtpg = [0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let d = good(&f.run(0, slu, &rtpg, &[])).to_vec();
    assert_eq!(&d[..4], &[0, 0, 0, 24]);
    assert_eq!(&d[4..8], &[0x00, 0xCF, 0, 1]);
    assert_eq!(&d[12..16], &[0, 0, 0, 1]);
    assert_eq!(&d[16..20], &[0x01, 0xCF, 0, 2]);
    let mut ext = rtpg;
    ext[1] = 0x2A;
    assert_eq!(good(&f.run(0, slu, &ext, &[]))[4], 0x10);
    let _ = h1;
}

#[test]
fn mode_pages_and_descriptor_sense() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let sense6 = [0x1A, 0, 0x3F, 0, 0xFF, 0];
    let d = good(&f.run(0, slu, &sense6, &[])).to_vec();
    assert_eq!(usize::from(d[0]) + 1, d.len());
    assert_eq!(d[3], 8, "block descriptor");
    assert_eq!(
        &d[4 + 8..4 + 8 + 3],
        &[0x08, 0x12, 0x04],
        "caching page, WCE"
    );
    assert_eq!(&d[32..35], &[0x0A, 0x0A, 0x00], "control page, D_SENSE 0");
    // Set D_SENSE with MODE SELECT(10).
    let mut list = vec![0u8; 8];
    let control = &d[32..44];
    let mut page = control.to_vec();
    page[2] |= 0x04;
    list.extend_from_slice(&page);
    let select10 = [0x55, 0x10, 0, 0, 0, 0, 0, 0, list.len() as u8, 0];
    good(&f.run(0, slu, &select10, &list));
    let r = f.run(0, slu, &[0xEE, 0, 0, 0, 0, 0], &[]);
    assert_eq!(r.sense[0], 0x72, "descriptor format");
    assert_eq!(kcq(&r), (5, 0x20, 0));
    let r = f.run(0, slu, &vpd(0xC7), &[]);
    assert_eq!(r.sense[0], 0x72);
    assert_eq!(&r.sense[8..16], &[0x02, 0x06, 0, 0, 0xCF, 0, 2, 0]);
    // Other hosts keep fixed format.
    f.ready(1);
    assert_eq!(
        f.run(1, f.alu(), &[0xEE, 0, 0, 0, 0, 0], &[]).sense[0],
        0x70
    );
    // Changing an unchangeable field is refused with a parameter pointer.
    let mut bad = list.clone();
    bad[8 + 3] ^= 0x01;
    let r = f.run(0, slu, &select10, &bad);
    assert_eq!(kcq(&r), (5, 0x26, 0));
    // SP=1 (save) is refused; saved values are not supported.
    let mut sp = select10;
    sp[1] |= 1;
    check(&f.run(0, slu, &sp, &list), (5, 0x24, 0));
    check(
        &f.run(0, slu, &[0x1A, 0, 0xC8, 0, 0xFF, 0], &[]),
        (5, 0x39, 0),
    );
    // MODE SENSE(10) of the caching page, changeable values.
    let d = good(&f.run(0, slu, &[0x5A, 0x08, 0x48, 0, 0, 0, 0, 0, 0xFF, 0], &[])).to_vec();
    assert_eq!(&d[8..11], &[0x08, 0x12, 0x04]);
    // Reset restores defaults.
    f.target.reset();
    assert_eq!(f.run(0, slu, &[0; 6], &[]).sense[0], 0x70);
}

#[test]
fn thin_provisioning_commands() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let get_status = rw16(0x9E, 0, 4096);
    let mut get_status = get_status;
    get_status[1] = 0x12;
    let d = good(&f.run(0, slu, &get_status, &[])).to_vec();
    assert_eq!(d[8 + 12], 1, "never written: deallocated");
    good(&f.run(0, slu, &write10(0, 8, false), &[0xAB; 4096]));
    let d = good(&f.run(0, slu, &get_status, &[])).to_vec();
    assert_eq!(u64::from_be_bytes(d[8..16].try_into().unwrap()), 0);
    assert_eq!(d[8 + 12], 0, "written: mapped");
    // UNMAP it again.
    let mut list = vec![0, 22, 0, 16, 0, 0, 0, 0];
    list.extend_from_slice(&0u64.to_be_bytes());
    list.extend_from_slice(&8u32.to_be_bytes());
    list.extend_from_slice(&[0; 4]);
    good(&f.run(0, slu, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &list));
    // Out of range descriptor.
    let mut far = list.clone();
    far[8..16].copy_from_slice(&8190u64.to_be_bytes());
    check(
        &f.run(0, slu, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &far),
        (5, 0x21, 0),
    );
    // WRITE SAME(16) with a pattern, then with UNMAP and zeros.
    let mut ws = rw16(0x93, 100, 4);
    good(&f.run(0, slu, &ws, &[0x5A; 512]));
    assert_eq!(
        good(&f.run(0, slu, &read10(100, 4), &[])),
        &[0x5A; 2048][..]
    );
    ws[1] = 0x08;
    good(&f.run(0, slu, &ws, &[0; 512]));
    assert_eq!(good(&f.run(0, slu, &read10(100, 4), &[])), &[0; 2048][..]);
    let mut zero_len = rw16(0x93, 0, 0);
    zero_len[1] = 0x01;
    check(&f.run(0, slu, &zero_len, &[]), (5, 0x24, 0));
    let mut anchor = rw16(0x93, 0, 1);
    anchor[1] = 0x10;
    check(&f.run(0, slu, &anchor, &[0; 512]), (5, 0x24, 0));
}

fn caw(lba: u64, blocks: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = blocks;
    c
}

#[test]
fn compare_and_write_miscompares_and_is_atomic() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let mut buf = vec![0u8; 512];
    buf.extend_from_slice(&[7u8; 512]);
    good(&f.run(0, slu, &caw(3, 1), &buf));
    assert_eq!(good(&f.run(0, slu, &read10(3, 1), &[])), &[7u8; 512][..]);
    let mut wrong = vec![7u8; 512];
    wrong[100] = 0;
    wrong.extend_from_slice(&[9u8; 512]);
    let r = f.run(0, slu, &caw(3, 1), &wrong);
    check(&r, (0x0E, 0x1D, 0));
    assert_eq!(r.sense[0] & 0x80, 0x80, "VALID");
    assert_eq!(&r.sense[3..7], &100u32.to_be_bytes());
    assert_eq!(good(&f.run(0, slu, &read10(3, 1), &[])), &[7u8; 512][..]);
    check(&f.run(0, slu, &caw(3, 65), &[]), (5, 0x24, 0));

    // Counter incremented by C&W from many threads: no increment is lost.
    const THREADS: u64 = 4;
    const EACH: u64 = 50;
    let block = |n: u64| {
        let mut b = vec![0u8; 512];
        b[..8].copy_from_slice(&n.to_be_bytes());
        b
    };
    good(&f.run(0, slu, &write10(50, 1, false), &block(0)));
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let mut done = 0;
                while done < EACH {
                    let cur = f.run(0, slu, &read10(50, 1), &[]).data_in;
                    let n = u64::from_be_bytes(cur[..8].try_into().unwrap());
                    let mut io = block(n);
                    io.extend_from_slice(&block(n + 1));
                    if f.run(0, slu, &caw(50, 1), &io).status == Status::Good {
                        done += 1;
                    }
                }
            });
        }
    });
    let end = good(&f.run(0, slu, &read10(50, 1), &[])).to_vec();
    assert_eq!(
        u64::from_be_bytes(end[..8].try_into().unwrap()),
        THREADS * EACH
    );
}

#[test]
fn backend_failures_map_to_medium_and_hardware_errors() {
    let f = Fixture::new();
    let backend = Arc::new(FaultyBackend::new(Arc::new(
        MemoryBackend::new(4 * MIB, 512).unwrap(),
    )));
    let v = f.vvol_on(Arc::clone(&backend));
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let eio = FaultKind::Io(ErrorKind::Other);
    let id = backend
        .add_fault(Fault::on(BackendOp::Read, FaultTrigger::Always, eio))
        .unwrap();
    check(&f.run(0, slu, &read10(0, 1), &[]), (3, 0x11, 0));
    assert!(backend.remove_fault(id));
    let id = backend
        .add_fault(Fault::on(BackendOp::Write, FaultTrigger::Always, eio))
        .unwrap();
    check(
        &f.run(0, slu, &write10(0, 1, true), &[0; 512]),
        (3, 0x0C, 0),
    );
    assert!(backend.remove_fault(id));
    let id = backend
        .add_fault(Fault::on(BackendOp::Flush, FaultTrigger::Always, eio))
        .unwrap();
    check(&f.run(0, slu, &rw16(0x91, 0, 0), &[]), (3, 0x0C, 0));
    assert!(backend.remove_fault(id));
    backend
        .add_fault(Fault::any(FaultTrigger::Always, FaultKind::Gone))
        .unwrap();
    check(&f.run(0, slu, &read10(0, 1), &[]), (4, 0x44, 0));
}

#[test]
fn unknown_opcodes_and_bad_fields() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    check(&f.run(0, slu, &[0xEE, 0, 0, 0, 0, 0], &[]), (5, 0x20, 0));
    check(&f.run(0, slu, &[0xC0, 0, 0, 0, 0, 0], &[]), (5, 0x20, 0));
    // NACA in the CONTROL byte.
    let r = f.run(0, slu, &[0, 0, 0, 0, 0, 0x04], &[]);
    check(&r, (5, 0x24, 0));
    assert_eq!(&r.sense[15..18], &[0xCA, 0, 5]);
    // Unknown service action of SERVICE ACTION IN(16).
    let mut sa = rw16(0x9E, 0, 0);
    sa[1] = 0x1F;
    check(&f.run(0, slu, &sa, &[]), (5, 0x24, 0));
    // Too short a CDB.
    check(&f.run(0, slu, &[0x28, 0, 0], &[]), (5, 0x24, 0));
    check(&f.run(0, slu, &[], &[]), (5, 0x24, 0));
}

#[test]
fn report_supported_operation_codes() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let all = [0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
    let d = good(&f.run(0, slu, &all, &[])).to_vec();
    let len = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
    assert_eq!(len % 8, 0);
    let ops: Vec<u8> = d[4..4 + len].chunks(8).map(|c| c[0]).collect();
    for op in [0x00, 0x12, 0x28, 0x2A, 0x88, 0x89, 0x8A, 0x93, 0xA0, 0xA3] {
        assert!(ops.contains(&op), "{op:#x}");
    }
    let d = good(&f.run(0, f.alu(), &all, &[])).to_vec();
    let len = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
    assert!(
        !d[4..4 + len].chunks(8).any(|c| c[0] == 0x2A),
        "a PE has no WRITE"
    );
    let one = [0xA3, 0x0C, 0x01, 0x88, 0, 0, 0, 0, 0, 64, 0, 0];
    let d = good(&f.run(0, slu, &one, &[])).to_vec();
    assert_eq!(&d[..4], &[0, 3, 0, 16]);
    assert_eq!(d[4], 0x88);
    assert_eq!(
        good(&f.run(0, f.alu(), &one, &[]))[1],
        3,
        "READ(16) on the ALU"
    );
    let write16 = [0xA3, 0x0C, 0x01, 0x8A, 0, 0, 0, 0, 0, 64, 0, 0];
    assert_eq!(
        good(&f.run(0, f.alu(), &write16, &[]))[1],
        1,
        "no WRITE(16)"
    );
    let with_sa = [0xA3, 0x0C, 0x02, 0x9E, 0, 0x10, 0, 0, 0, 64, 0, 0];
    assert_eq!(good(&f.run(0, slu, &with_sa, &[]))[1], 3);
    let wrong = [0xA3, 0x0C, 0x01, 0x9E, 0, 0, 0, 0, 0, 64, 0, 0];
    check(&f.run(0, slu, &wrong, &[]), (5, 0x24, 0));
    // One command's usage data as libiscsi's *.DpoFua tests read it: the
    // service action in its field, DPO and FUA wherever MODE SENSE says
    // DPOFUA=1 (SPC-5 6.35.3; SBC-4 6.5.1).
    let usage = |opcode: u8, sa: u16| {
        let mut cdb = [0xA3, 0x0C, 0x03, opcode, 0, 0, 0, 0, 0, 64, 0, 0];
        cdb[4..6].copy_from_slice(&sa.to_be_bytes());
        let d = good(&f.run(0, slu, &cdb, &[])).to_vec();
        assert_eq!(d[1] & 0x07, 3, "{opcode:#x}/{sa:#x} supported");
        let n = usize::from(u16::from_be_bytes([d[2], d[3]]));
        d[4..4 + n].to_vec()
    };
    let sense6 = [0x1A, 0x08, 0x3F, 0, 64, 0];
    let dpofua = good(&f.run(0, slu, &sense6, &[]))[2] & 0x10 != 0;
    assert!(dpofua, "MODE SENSE reports DPOFUA=1");
    for opcode in [0x28, 0x2A, 0x88, 0x8A, 0x89] {
        assert_eq!(usage(opcode, 0)[1] & 0x18, 0x18, "{opcode:#x}: DPO and FUA");
        assert_eq!(usage(opcode, 0)[1] & 0xE0, 0, "{opcode:#x}: no protection");
    }
    assert_eq!(usage(0x9E, 0x10)[1], 0x10, "READ CAPACITY(16)");
    assert_eq!(usage(0x9E, 0x12)[1], 0x12, "GET LBA STATUS");
    assert_eq!(usage(0xA3, 0x0A)[1], 0xEA, "REPORT TARGET PORT GROUPS");
    assert_eq!(
        usage(0xA3, 0x0C)[1],
        0x0C,
        "REPORT SUPPORTED OPERATION CODES"
    );
    assert_eq!(
        usage(0x93, 0)[1],
        0x09,
        "WRITE SAME(16): UNMAP and NDOB only"
    );
    // DPO is accepted (and needs nothing: the target keeps no cache to
    // evict), so the usage data does not lie.
    let mut dpo = read10(0, 1);
    dpo[1] |= 0x10;
    good(&f.run(0, slu, &dpo, &[]));
    let mut timeouts = all;
    timeouts[2] = 0x80;
    let d = good(&f.run(0, slu, &timeouts, &[])).to_vec();
    let len = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
    assert_eq!(len % 20, 0);
}

#[test]
fn full_queue_gives_task_set_full_or_busy() {
    const DEPTH: u32 = 32;
    let f = Fixture::with_queue_depth(DEPTH);
    let gate = crate::support::gate::Gate::new();
    let v = crate::support::create_on(
        &f.plane,
        f.container,
        VvolSpec::new(VvolType::Data, 4 * MIB),
        gate.clone() as _,
        "test",
    );
    let (_, slu) = f.bind(0, v);
    let (_, slu2) = f.bind(1, v);
    assert_eq!(slu, slu2, "both hosts share the binding");
    f.ready(0);
    f.ready(1);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..DEPTH)
            .map(|_| s.spawn(|| f.run(0, slu, &read10(0, 1), &[])))
            .collect();
        gate.wait_for(DEPTH);
        // Host 1's nexus has commands in the task set: TASK SET FULL.
        assert_eq!(
            f.run(0, slu, &read10(0, 1), &[]).status,
            Status::TaskSetFull
        );
        // Host 2's nexus has none: BUSY.
        assert_eq!(f.run(1, slu, &read10(0, 1), &[]).status, Status::Busy);
        gate.open();
        for r in readers {
            assert_eq!(r.join().unwrap().status, Status::Good);
        }
    });
    good(&f.run(1, slu, &read10(0, 1), &[]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn arbitrary_cdbs_and_luns_never_panic(
        lun in prop_oneof![any::<[u8; 8]>().prop_map(Lun), Just(Lun([0, 255, 0, 1, 0, 0, 0, 0])), Just(Lun([0, 255, 0, 0, 0, 0, 0, 0]))],
        cdb in proptest::collection::vec(any::<u8>(), 0..40),
        out in proptest::collection::vec(any::<u8>(), 0..1100),
    ) {
        use std::sync::OnceLock;
        static FIX: OnceLock<std::sync::Mutex<Fixture>> = OnceLock::new();
        let f = FIX.get_or_init(|| {
            let f = Fixture::new();
            let v = f.vvol(1);
            f.bind(0, v);
            std::sync::Mutex::new(f)
        });
        let f = f.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = f.run(0, lun, &cdb, &out);
        match r.status {
            Status::Good => prop_assert!(r.sense.is_empty()),
            Status::CheckCondition => prop_assert!(matches!(r.sense[0], 0x70 | 0x72)),
            _ => prop_assert!(r.sense.is_empty()),
        }
    }
}

#[test]
fn extended_flat_space_slus_on_a_wide_pe() {
    let f = Fixture::new();
    let wide =
        vvol::SecondaryIdSpace::new(vvol::SubsidiaryAddressing::ExtendedFlat24, 100, 200).unwrap();
    let naa = Naa::from_parts(COMPANY, 0x5EEE, 1).unwrap();
    let pe2 = f
        .plane
        .add_pe(f.array(), PeSpec::scsi(naa, 300).with_secondary_ids(wide))
        .unwrap();
    for h in f.hosts {
        f.plane.map_pe(h, pe2).unwrap();
        f.plane.unmap_pe(h, f.pe).unwrap();
        f.plane.set_pe_context(h, &[pe2]).unwrap();
    }
    f.target.refresh().unwrap();
    let v = f.vvol(4);
    let h = bind_one(&f.plane, f.hosts[0], v, BindContext::Normal);
    assert_eq!(h.pe, pe2);
    let lun = f.target.lun_of(h).unwrap();
    assert_eq!(
        lun.to_string(),
        format!("012cd2{:06x}0000", h.secondary_id.get())
    );
    let r = f
        .target
        .execute(ItNexus::new(f.hosts[0], 1), lun, &[0; 6], &[]);
    assert_eq!(kcq(&r), (6, 0x29, 0));
    good(&f.run(0, lun, &write10(0, 1, false), &[3; 512]));
    assert_eq!(good(&f.run(0, lun, &read10(0, 1), &[])), &[3; 512][..]);
    let alu2 = f.target.admin_lun_of(pe2).unwrap();
    assert_eq!(alu2.to_string(), "412c000000000000", "flat space from 256");
    let d = good(&f.run(0, alu2, &report_luns(0x12), &[])).to_vec();
    let listed: Vec<&[u8]> = d[8..].chunks(8).collect();
    assert_eq!(listed, vec![&lun.to_bytes()[..], &alu2.to_bytes()[..]]);
    // The same id in simple addressing is not a LUN this PE accepts.
    let simple = Lun::conglomerate(
        300,
        Some(vvol::scsi::SubsidiaryElement::Simple(
            h.secondary_id.get() as u16
        )),
    )
    .unwrap();
    check(&f.run(0, simple, &read10(0, 1), &[]), (5, 0x25, 0));
    // The first PE is no longer mapped to the hosts: its ALU is gone for
    // them (LUN masking; the PE context alone would not hide it).
    assert_eq!(good(&f.run(0, f.alu(), &INQUIRY, &[]))[0], 0x7F);
}

fn unmap_list(ranges: &[(u64, u32)]) -> Vec<u8> {
    let bd = (ranges.len() * 16) as u16;
    let mut list = Vec::new();
    list.extend_from_slice(&(bd + 6).to_be_bytes());
    list.extend_from_slice(&bd.to_be_bytes());
    list.extend_from_slice(&[0; 4]);
    for (lba, n) in ranges {
        list.extend_from_slice(&lba.to_be_bytes());
        list.extend_from_slice(&n.to_be_bytes());
        list.extend_from_slice(&[0; 4]);
    }
    list
}

/// SBC-4 5.32.1: MAXIMUM UNMAP LBA COUNT bounds the whole command (review
/// S7); a refused UNMAP unmaps nothing.
#[test]
fn unmap_limit_applies_to_the_sum_of_the_descriptors() {
    let f = Fixture::new();
    let v = f.vvol(8 << 10);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let max = vvol::scsi::limits::MAX_UNMAP_BLOCKS;
    let half = u64::from(max / 2);
    for lba in [0, 2 * half] {
        good(&f.run(0, slu, &rw16(0x8A, lba, 1), &[0xAB; 512]));
    }
    let unmap = |list: &[u8]| {
        let mut cdb = [0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[7..9].copy_from_slice(&(list.len() as u16).to_be_bytes());
        f.run(0, slu, &cdb, list)
    };
    // Each descriptor within the limit, their sum over it.
    let over = unmap_list(&[(0, max), (2 * half, 1)]);
    check(&unmap(&over), (5, 0x26, 0));
    for lba in [0, 2 * half] {
        assert_eq!(
            good(&f.run(0, slu, &rw16(0x88, lba, 1), &[])),
            &[0xAB; 512][..]
        );
    }
    // Exactly the limit is fine.
    let at = unmap_list(&[(0, max - 1), (2 * half, 1)]);
    good(&unmap(&at));
    for lba in [0, 2 * half] {
        assert_eq!(
            good(&f.run(0, slu, &rw16(0x88, lba, 1), &[])),
            &[0; 512][..]
        );
    }
}

/// SBC-4 6.6.4: OPTIMAL UNMAP GRANULARITY is the unit the backend frees
/// (64 KiB chunks of `MemoryBackend`, so 128 blocks of 512 bytes, aligned
/// from LBA 0), so an UNMAP of one such unit shows as deallocated in GET
/// LBA STATUS (review S17: it said 1 block, and a 1-block UNMAP never shows).
#[test]
fn optimal_unmap_granularity_is_the_unit_an_unmap_frees() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let b0 = good(&f.run(0, slu, &vpd(0xB0), &[])).to_vec();
    let unit = u32::from_be_bytes(b0[28..32].try_into().unwrap());
    assert_eq!(
        u64::from(unit) * 512,
        vvol::MemoryBackend::CHUNK_SIZE,
        "OPTIMAL UNMAP GRANULARITY"
    );
    assert_eq!(b0[32], 0x80, "UGAVALID with alignment 0");
    assert_eq!(&b0[33..36], &[0, 0, 0]);
    let blocks = u16::try_from(3 * unit).unwrap();
    let data = vec![0xC3; usize::from(blocks) * 512];
    good(&f.run(0, slu, &write10(0, blocks, false), &data));
    good(&f.run(
        0,
        slu,
        &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0],
        &unmap_list(&[(u64::from(unit), unit)]),
    ));
    let mut get_status = rw16(0x9E, 0, 4096);
    get_status[1] = 0x12;
    let d = good(&f.run(0, slu, &get_status, &[])).to_vec();
    let extents: Vec<(u64, u32, u8)> = d[8..]
        .chunks(16)
        .map(|e| {
            (
                u64::from_be_bytes(e[..8].try_into().unwrap()),
                u32::from_be_bytes(e[8..12].try_into().unwrap()),
                e[12] & 0x0F,
            )
        })
        .collect();
    assert_eq!(
        &extents[..3],
        &[
            (0, unit, 0),
            (u64::from(unit), unit, 1),
            (u64::from(2 * unit), unit, 0)
        ],
        "mapped, deallocated, mapped"
    );
    assert_eq!(
        good(&f.run(0, slu, &read10(unit, 1), &[])),
        &[0; 512][..],
        "LBPRZ"
    );
}

/// SBC-4 5.8.2: LBA status descriptors describe consecutive extents from
/// the requested LBA on; an extent over 2^32-1 blocks is split, never
/// clipped into a gap (review S8).
#[test]
fn get_lba_status_splits_long_extents_without_a_gap() {
    let plane = Arc::new(ControlPlane::new(Limits::default()));
    let array = plane.add_array(ArraySpec::new("a", COMPANY)).unwrap();
    let container = plane
        .add_container(array, ContainerSpec::new("c", Protocol::Scsi, 1 << 44))
        .unwrap();
    let naa = Naa::from_parts(COMPANY, 0x5EED, 1).unwrap();
    let pe = plane.add_pe(array, PeSpec::scsi(naa, PE_LUN)).unwrap();
    let host = plane.add_host("h1").unwrap();
    plane.map_pe(host, pe).unwrap();
    plane.set_pe_context(host, &[pe]).unwrap();
    let v = plane
        .create_vvol(container, VvolSpec::new(VvolType::Data, 3 << 40))
        .unwrap();
    let handle = bind_one(&plane, host, v, BindContext::Normal);
    let target = ScsiTarget::new(Arc::clone(&plane), array).unwrap();
    let slu = target.lun_of(handle).unwrap();
    let nexus = ItNexus::new(host, 1);
    let _ = target.execute(nexus, slu, &[0; 6], &[]); // power-on UA
    let blocks: u64 = (3 << 40) / 512;
    let last = blocks - 1;
    let r = target.execute(nexus, slu, &rw16(0x8A, last, 1), &[0xCD; 512]);
    good(&r);
    let mut cdb = rw16(0x9E, 0, 8 + 16 * 16);
    cdb[1] = 0x12;
    let d = good(&target.execute(nexus, slu, &cdb, &[])).to_vec();
    let len = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
    let descs: Vec<(u64, u64, u8)> = d[8..4 + len]
        .chunks(16)
        .map(|c| {
            let lba = u64::from_be_bytes(c[..8].try_into().unwrap());
            let n = u64::from(u32::from_be_bytes(c[8..12].try_into().unwrap()));
            (lba, n, c[12] & 0x0F)
        })
        .collect();
    let mut next = 0;
    for (lba, n, _) in &descs {
        assert_eq!(*lba, next, "a gap before {lba:#x}: {descs:x?}");
        next = lba + n;
    }
    assert_eq!(next, blocks, "the descriptors reach the end: {descs:x?}");
    let (lba, n, status) = *descs.last().unwrap();
    assert_eq!(
        (lba + n - 1, status),
        (last, 0),
        "the written block is mapped"
    );
    assert!(descs[..descs.len() - 1].iter().all(|d| d.2 == 1));
}

/// Review S9: the PE's ALU is one coherent LU: a 1-block, all-zero,
/// read-only, fully provisioned disk. Every command RSOC lists for it is
/// accepted, every other one is INVALID COMMAND OPERATION CODE, and the
/// capacity, VPD and mode data agree with that.
#[test]
fn alu_personality_is_consistent() {
    let f = Fixture::new();
    f.ready(0);
    let alu = f.alu();
    // READ CAPACITY: one 512-byte block, LBPME=0, LBPRZ=0.
    let rc10 = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(good(&f.run(0, alu, &rc10, &[])), &[0, 0, 0, 0, 0, 0, 2, 0]);
    let rc16 = [0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
    let d = good(&f.run(0, alu, &rc16, &[])).to_vec();
    assert_eq!(u64::from_be_bytes(d[..8].try_into().unwrap()), 0);
    assert_eq!(d[14] & 0xC0, 0, "LBPME=0, LBPRZ=0: fully provisioned");
    // Its block exists and reads as zeros, through READ(6), (10) and (16).
    assert_eq!(good(&f.run(0, alu, &read10(0, 1), &[])), &[0; 512][..]);
    assert_eq!(good(&f.run(0, alu, &rw16(0x88, 0, 1), &[])), &[0; 512][..]);
    assert_eq!(
        good(&f.run(0, alu, &[0x08, 0, 0, 0, 1, 0], &[])),
        &[0; 512][..]
    );
    check(&f.run(0, alu, &read10(1, 1), &[]), (5, 0x21, 0));
    check(&f.run(0, alu, &read10(0, 2), &[]), (5, 0x21, 0));
    // SYNCHRONIZE CACHE: nothing to flush, GOOD; out of range still checked.
    good(&f.run(0, alu, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]));
    good(&f.run(0, alu, &rw16(0x91, 0, 1), &[]));
    check(&f.run(0, alu, &rw16(0x91, 1, 1), &[]), (5, 0x21, 0));
    // No provisioning page: VPD 00h stops at B1h and B2h is refused.
    let pages = good(&f.run(0, alu, &vpd(0), &[])).to_vec();
    assert_eq!(&pages[4..], &[0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1]);
    check(&f.run(0, alu, &vpd(0xB2), &[]), (5, 0x24, 0));
    // Block limits: no COMPARE AND WRITE, UNMAP or WRITE SAME limits.
    let b0 = good(&f.run(0, alu, &vpd(0xB0), &[])).to_vec();
    assert_eq!((b0[4] & 1, b0[5]), (0, 0), "WSNZ, MAX COMPARE AND WRITE");
    assert!(b0[20..32].iter().all(|&b| b == 0), "UNMAP limits");
    assert!(b0[36..44].iter().all(|&b| b == 0), "WRITE SAME limit");
    // MODE SENSE: write protected, one block in the block descriptor.
    let m = good(&f.run(0, alu, &[0x1A, 0, 0x08, 0, 0xFF, 0], &[])).to_vec();
    assert_eq!(m[2] & 0x80, 0x80, "WP");
    assert_eq!(m[3], 8, "block descriptor");
    assert_eq!(&m[4..8], &1u32.to_be_bytes());
    // RSOC lists exactly what the ALU accepts.
    let all = [0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
    let d = good(&f.run(0, alu, &all, &[])).to_vec();
    let len = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
    let listed: Vec<(u8, u16)> = d[4..4 + len]
        .chunks(8)
        .map(|c| (c[0], u16::from_be_bytes([c[2], c[3]])))
        .collect();
    let mut opcodes: Vec<u8> = listed.iter().map(|(o, _)| *o).collect();
    opcodes.dedup();
    assert_eq!(
        opcodes,
        vec![
            0x00, 0x03, 0x08, 0x12, 0x15, 0x16, 0x17, 0x1A, 0x25, 0x28, 0x35, 0x55, 0x5A, 0x5E,
            0x5F, 0x88, 0x91, 0x9E, 0xA0, 0xA3
        ]
    );
    assert!(listed.contains(&(0x9E, 0x10)) && !listed.contains(&(0x9E, 0x12)));
    for (opcode, sa) in &listed {
        // A CDB of the right length with the service action and a 1-block
        // (or zero) transfer: never INVALID COMMAND OPERATION CODE.
        let mut cdb = vec![0u8; vvol::scsi::cdb_len(*opcode).unwrap()];
        cdb[0] = *opcode;
        if matches!(opcode, 0x9E | 0xA3) {
            cdb[1] = *sa as u8;
        }
        let r = f.run(0, alu, &cdb, &[]);
        if r.status == Status::CheckCondition {
            assert_ne!(kcq(&r), (5, 0x20, 0), "{opcode:#x}/{sa:#x} is listed");
        }
    }
    // Every write and provisioning command: INVALID COMMAND OPERATION CODE.
    let mut get_lba_status = rw16(0x9E, 0, 64);
    get_lba_status[1] = 0x12;
    for cdb in [
        write10(0, 1, false),
        vec![0x0A, 0, 0, 0, 1, 0],
        rw16(0x8A, 0, 1),
        rw16(0x93, 0, 1),
        rw16(0x89, 0, 1),
        vec![0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0],
        get_lba_status,
    ] {
        check(&f.run(0, alu, &cdb, &[0; 1024]), (5, 0x20, 0));
    }
}

/// Review S17: LBPRZ=1 (READ CAPACITY(16) and VPD B2h) exactly where the
/// backend promises that unmapped blocks read as zeros.
#[test]
fn lbprz_follows_the_backend_promise() {
    let f = Fixture::new();
    let rc16 = [0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
    let memory = f.vvol(4);
    let (_, zeroing) = f.bind(0, memory);
    let plain = crate::support::create_on(
        &f.plane,
        f.container,
        VvolSpec::new(VvolType::Data, 4 * MIB),
        Arc::new(crate::support::MinimalBackend::new(4 * MIB, 512)),
        "minimal",
    );
    let (_, keeping) = f.bind(0, plain);
    f.ready(0);
    let rc = good(&f.run(0, zeroing, &rc16, &[])).to_vec();
    assert_eq!(rc[14] & 0xC0, 0xC0, "LBPME, LBPRZ on the memory backend");
    let b2 = good(&f.run(0, zeroing, &vpd(0xB2), &[])).to_vec();
    assert_eq!(b2[5] & 0x1C, 0x04, "LBPRZ 001b");
    assert_eq!(b2[5] & 0xC0, 0xC0, "LBPU, LBPWS");
    // What LBPRZ promises: an unmapped range reads as zeros.
    good(&f.run(0, zeroing, &write10(0, 256, false), &[0xAB; 256 * 512]));
    let mut list = vec![0, 22, 0, 16, 0, 0, 0, 0];
    list.extend_from_slice(&0u64.to_be_bytes());
    list.extend_from_slice(&256u32.to_be_bytes());
    list.extend_from_slice(&[0; 4]);
    good(&f.run(0, zeroing, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &list));
    assert_eq!(
        good(&f.run(0, zeroing, &read10(0, 256), &[])),
        &[0; 256 * 512][..]
    );
    // A backend without discard keeps data on UNMAP: LBPRZ=0.
    let rc = good(&f.run(0, keeping, &rc16, &[])).to_vec();
    assert_eq!(rc[14] & 0xC0, 0x80, "LBPME only");
    let b2 = good(&f.run(0, keeping, &vpd(0xB2), &[])).to_vec();
    assert_eq!(b2[5] & 0x1C, 0, "LBPRZ 000b");
}

/// Review S17: version descriptors (SAM-5, SPC-5, SBC-4) in standard
/// INQUIRY data, and the W-LUN is not named a protocol endpoint.
#[test]
fn standard_inquiry_claims_versions_and_names_the_wlun() {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    let version = |d: &[u8], i: usize| u16::from_be_bytes([d[58 + 2 * i], d[59 + 2 * i]]);
    for lun in [f.alu(), slu] {
        let d = good(&f.run(0, lun, &INQUIRY, &[])).to_vec();
        assert_eq!(d.len(), 74);
        assert_eq!(usize::from(d[4]) + 5, d.len(), "ADDITIONAL LENGTH");
        assert_eq!(
            (version(&d, 0), version(&d, 1), version(&d, 2)),
            (0x00A0, 0x05C0, 0x0600)
        );
        assert!((3..8).all(|i| version(&d, i) == 0));
    }
    let w = good(&f.run(0, REPORT_LUNS_WLUN, &INQUIRY, &[])).to_vec();
    assert_eq!(&w[16..32], b"VVOL TARGET     ");
    assert_eq!(
        (version(&w, 0), version(&w, 1), version(&w, 2)),
        (0x00A0, 0x05C0, 0)
    );
    // A 36-byte request still gets the first 36 bytes.
    let short = [0x12, 0, 0, 0, 36, 0];
    assert_eq!(good(&f.run(0, f.alu(), &short, &[])).len(), 36);
}

/// Review S15: a PE at LUN 256 or above is reported in flat space
/// addressing (the single-level form hosts use) and reachable in both
/// forms SAM-5 gives its number; its SLUs keep the conglomerate form and
/// also answer behind the flat administrative element.
#[test]
fn admin_luns_above_255_are_reported_flat_and_accepted_in_both_forms() {
    let f = Fixture::new();
    let naa = Naa::from_parts(COMPANY, 0x5EEF, 1).unwrap();
    let pe2 = f.plane.add_pe(f.array(), PeSpec::scsi(naa, 256)).unwrap();
    for h in f.hosts {
        for pe in [f.pe, pe2].iter() {
            f.plane.map_pe(h, *pe).unwrap();
        }
        f.plane.set_pe_context(h, &[f.pe, pe2]).unwrap();
    }
    f.target.refresh().unwrap();
    let h = (0..4)
        .map(|_| bind_one(&f.plane, f.hosts[0], f.vvol(4), BindContext::Normal))
        .find(|h| h.pe == pe2)
        .expect("a binding behind the PE at 256");
    let flat: Lun = "4100000000000000".parse().unwrap();
    let simple: Lun = "0100000000000000".parse().unwrap();
    assert_eq!(f.target.admin_lun_of(pe2), Some(flat));
    let slu = f.target.lun_of(h).unwrap();
    assert_eq!(
        slu.to_string(),
        format!("0100{:04x}00000000", h.secondary_id.get())
    );
    let luns = good(&f.run(0, Lun::default(), &report_luns(0x00), &[])).to_vec();
    let listed: Vec<&[u8]> = luns[8..].chunks(8).collect();
    assert!(listed.contains(&&flat.to_bytes()[..]), "{listed:?}");
    assert!(listed.contains(&&slu.to_bytes()[..]), "{listed:?}");
    assert!(
        !listed.contains(&&simple.to_bytes()[..]),
        "one form is reported"
    );
    f.ready(0);
    // The second ALU is its own LU: its own power-on condition (SAM-5
    // 5.14), once for both forms of its LUN.
    check(&f.run(0, simple, &[0; 6], &[]), (6, 0x29, 0));
    for alu in [flat, simple] {
        let d = good(&f.run(0, alu, &vpd(0x83), &[])).to_vec();
        assert_eq!(&d[8..24], &naa.to_bytes(), "{alu}");
        good(&f.run(0, alu, &[0; 6], &[]));
    }
    let mut flat_slu = slu.to_bytes();
    flat_slu[0] |= 0x40;
    for lun in [slu, Lun(flat_slu)] {
        good(&f.run(0, lun, &write10(0, 1, false), &[9; 512]));
        assert_eq!(good(&f.run(0, lun, &read10(0, 1), &[])), &[9; 512][..]);
    }
    // Other address methods name nothing.
    let mut logical_unit = flat.to_bytes();
    logical_unit[0] = 0x81;
    assert_eq!(good(&f.run(0, Lun(logical_unit), &INQUIRY, &[]))[0], 0x7F);
    // ESXi at its default Disk.MaxLUN scans ids below 1024 only.
    assert_eq!(vvol::ESXI_DEFAULT_MAX_LUN, 1024);
    assert!(PeSpec::scsi(naa, 1023).scanned_by_default_esxi());
    assert!(!PeSpec::scsi(naa, 1024).scanned_by_default_esxi());
    assert!(PeSpec::scsi(naa, vvol::MAX_ADMIN_LUN).validate().is_ok());
}
