//! Unit attentions per I_T_L nexus (SAM-5 5.14), REPORTED LUNS DATA HAS
//! CHANGED scoping (SPC-5 REPORT LUNS), ALUA per (LU, target port group)
//! with per-state command sets (SPC-5 5.16.2.x), PE failure as ALUA
//! Unavailable rather than PDL, and mode parameters per LU.

use std::collections::BTreeMap;
use std::sync::Arc;

use vvol::scsi::{AluaState, InitiatorPortId, ItNexus, Lun, ScsiResponse, ScsiTarget, Status};
use vvol::{BindContext, BindHandle, HostId, Naa, PeId, PeSpec, ScsiPath};

use crate::scsi_target::{COMPANY, Fixture, INQUIRY, kcq, report_luns};

const TUR: [u8; 6] = [0; 6];
const RTPG: [u8; 12] = [0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];

fn read10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![0x28, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.push(0);
    c.extend_from_slice(&blocks.to_be_bytes());
    c.push(0);
    c
}

#[track_caller]
fn check(r: &ScsiResponse, expect: (u8, u8, u8)) {
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    assert_eq!(kcq(r), expect, "{r:?}");
}

#[track_caller]
fn good(r: &ScsiResponse) -> &[u8] {
    assert_eq!(r.status, Status::Good, "{r:?}");
    &r.data_in
}

/// The ALU and two SLUs of host 0, and the target.
fn three_lus() -> (Fixture, [Lun; 3]) {
    let f = Fixture::new();
    let (_, slu1) = f.bind(0, f.vvol(4));
    let (_, slu2) = f.bind(0, f.vvol(4));
    let alu = f.alu();
    (f, [alu, slu1, slu2])
}

#[test]
fn every_lu_of_a_nexus_reports_power_on_reset_and_nexus_loss_once() {
    let (f, lus) = three_lus();
    let nexus = f.nexus(0);
    let port2 = ItNexus::new(f.hosts[0], 2);
    let initiator2 = ItNexus::with_initiator(f.hosts[0], InitiatorPortId(3), 1);
    for n in [nexus, port2, initiator2] {
        for lun in lus {
            check(&f.target.execute(n, lun, &TUR, &[]), (6, 0x29, 0));
            good(&f.target.execute(n, lun, &TUR, &[]));
        }
    }
    f.target.reset();
    // Every LU of every nexus reports it once; clearing it on one LU or
    // one nexus leaves the others pending.
    for lun in lus {
        check(&f.target.execute(nexus, lun, &TUR, &[]), (6, 0x29, 0));
        good(&f.target.execute(nexus, lun, &TUR, &[]));
    }
    for n in [port2, initiator2] {
        for lun in lus {
            check(&f.target.execute(n, lun, &read10(0, 1), &[]), (6, 0x29, 0));
        }
    }
    // I_T nexus loss: 29h/07h on every LU of that nexus only.
    f.target.nexus_loss(port2);
    for lun in lus {
        check(&f.target.execute(port2, lun, &TUR, &[]), (6, 0x29, 0x07));
        good(&f.target.execute(port2, lun, &TUR, &[]));
        good(&f.target.execute(nexus, lun, &TUR, &[]));
    }
    // REQUEST SENSE returns and clears the condition of its LU only.
    f.target.reset();
    let r = f
        .target
        .execute(nexus, lus[1], &[0x03, 0, 0, 0, 18, 0], &[]);
    assert_eq!((good(&r)[2], r.data_in[12]), (6, 0x29));
    good(&f.target.execute(nexus, lus[1], &TUR, &[]));
    check(&f.target.execute(nexus, lus[2], &TUR, &[]), (6, 0x29, 0));
}

#[test]
fn alua_change_reports_2a06_on_every_lu_of_every_nexus() {
    let (f, lus) = three_lus();
    let nexuses = [
        f.nexus(0),
        ItNexus::new(f.hosts[0], 2),
        ItNexus::with_initiator(f.hosts[0], InitiatorPortId(9), 2),
    ];
    for n in nexuses {
        for lun in lus {
            check(&f.target.execute(n, lun, &TUR, &[]), (6, 0x29, 0));
        }
    }
    // Group 2 (port 2) goes active/non-optimized: an implicit change, so
    // every I_T nexus (SPC-5 5.16.2.x), each LU once.
    f.target
        .set_alua_state(2, AluaState::ActiveNonOptimized)
        .unwrap();
    for n in nexuses {
        for lun in lus {
            check(&f.target.execute(n, lun, &TUR, &[]), (6, 0x2A, 0x06));
            good(&f.target.execute(n, lun, &TUR, &[]));
        }
    }
    // Back to active/optimized: told again, on each LU.
    f.target
        .set_alua_state(2, AluaState::ActiveOptimized)
        .unwrap();
    for lun in lus {
        check(
            &f.target.execute(nexuses[0], lun, &TUR, &[]),
            (6, 0x2A, 0x06),
        );
    }
}

#[test]
fn a_bind_reports_3f0e_on_the_alu_for_that_host_only() {
    let f = Fixture::new();
    let (_, slu) = f.bind(0, f.vvol(4));
    let (_, slu1) = f.bind(1, f.vvol(4));
    let second = ItNexus::with_initiator(f.hosts[0], InitiatorPortId(5), 1);
    f.ready(0);
    f.ready(1);
    for lun in [f.alu(), slu] {
        check(&f.target.execute(second, lun, &TUR, &[]), (6, 0x29, 0));
    }
    f.bind(0, f.vvol(4));
    // Both nexuses of host 0, on the PE's ALU.
    check(&f.run(0, f.alu(), &TUR, &[]), (6, 0x3F, 0x0E));
    good(&f.run(0, f.alu(), &TUR, &[]));
    check(
        &f.target.execute(second, f.alu(), &TUR, &[]),
        (6, 0x3F, 0x0E),
    );
    // Not on the SLUs, whose own data did not change.
    good(&f.run(0, slu, &TUR, &[]));
    // Not for host 1, whose inventory did not change.
    good(&f.run(1, f.alu(), &TUR, &[]));
    good(&f.run(1, slu1, &TUR, &[]));
    // A whole REPORT LUNS 12h tells the nexus: no UA follows.
    f.bind(0, f.vvol(4));
    good(&f.run(0, f.alu(), &report_luns(0x12), &[]));
    good(&f.run(0, f.alu(), &TUR, &[]));
    check(
        &f.target.execute(second, f.alu(), &TUR, &[]),
        (6, 0x3F, 0x0E),
    );
}

#[test]
fn a_pe_added_or_removed_reports_3f0e_on_lun_0_and_every_lu() {
    let f = Fixture::new();
    let naa0 = Naa::from_parts(COMPANY, 0x0E0, 1).unwrap();
    let pe0 = f
        .plane
        .add_pe(
            f.array(),
            PeSpec::scsi(naa0, 0).with_paths(vec![ScsiPath::new(1, 1), ScsiPath::new(2, 2)]),
        )
        .unwrap();
    for h in f.hosts {
        crate::support::expose(&f.plane, h, &[f.pe, pe0]);
    }
    f.target.refresh().unwrap();
    let (_, slu) = f.bind(0, f.vvol(4));
    let lun0 = Lun::default();
    let all = [lun0, f.alu(), slu];
    for lun in all {
        check(&f.run(0, lun, &TUR, &[]), (6, 0x29, 0));
    }
    check(&f.run(1, lun0, &TUR, &[]), (6, 0x29, 0));
    // A PE is added and mapped: every LU of every nexus of the hosts.
    let naa7 = Naa::from_parts(COMPANY, 0x0E7, 1).unwrap();
    let pe7 = f
        .plane
        .add_pe(
            f.array(),
            PeSpec::scsi(naa7, 7).with_paths(vec![ScsiPath::new(1, 1)]),
        )
        .unwrap();
    for h in f.hosts {
        crate::support::expose(&f.plane, h, &[f.pe, pe0, pe7]);
    }
    f.target.refresh().unwrap();
    // Reported on the first LU addressed; LUICLR=1 (SPC-5 7.7.7): that
    // clears it on every other LU of the same nexus, not on other nexuses.
    check(&f.run(0, f.alu(), &TUR, &[]), (6, 0x3F, 0x0E));
    good(&f.run(0, f.alu(), &TUR, &[]));
    good(&f.run(0, lun0, &TUR, &[]));
    good(&f.run(0, slu, &TUR, &[]));
    check(&f.run(1, lun0, &TUR, &[]), (6, 0x3F, 0x0E));
    let other_port = vvol::scsi::ItNexus::new(f.hosts[0], 2);
    check(&f.target.execute(other_port, lun0, &TUR, &[]), (6, 0x29, 0));
    // A whole REPORT LUNS 00h at LUN 0 tells the nexus (the new PE is in
    // it), clearing the condition on its LUs without a unit attention.
    let list = good(&f.run(0, lun0, &report_luns(0), &[])).to_vec();
    let admin7 = f.target.admin_lun_of(pe7).unwrap().to_bytes();
    assert!(list[8..].chunks(8).any(|l| l == admin7));
    // Removed: reported again, once per nexus.
    f.plane.remove_pe(pe7).unwrap();
    f.target.refresh().unwrap();
    check(&f.run(0, slu, &TUR, &[]), (6, 0x3F, 0x0E));
    good(&f.run(0, lun0, &TUR, &[]));
    check(&f.run(1, lun0, &TUR, &[]), (6, 0x3F, 0x0E));
    // REPORT LUNS clears it without reporting it.
    let naa8 = Naa::from_parts(COMPANY, 0x0E8, 1).unwrap();
    let pe8 = f
        .plane
        .add_pe(
            f.array(),
            PeSpec::scsi(naa8, 8).with_paths(vec![ScsiPath::new(1, 1)]),
        )
        .unwrap();
    for h in f.hosts {
        crate::support::expose(&f.plane, h, &[f.pe, pe0, pe8]);
    }
    f.target.refresh().unwrap();
    good(&f.run(0, lun0, &report_luns(0), &[]));
    for lun in all {
        good(&f.run(0, lun, &TUR, &[]));
    }
}

/// The quickstart's SCSI PEs, a target, and host 0's SLUs grouped by PE.
struct Quick {
    target: ScsiTarget,
    plane: Arc<vvol::ControlPlane>,
    host: HostId,
    pes: Vec<PeId>,
    slus: BTreeMap<PeId, Vec<Lun>>,
}

fn quick() -> Quick {
    let (plane, topo) = vvol::testing::quickstart().unwrap();
    let host = topo.hosts[0];
    let mut handles: Vec<BindHandle> = Vec::new();
    for vm in &topo.vms[..2] {
        for r in plane.bind(host, &vm.vvols(), BindContext::Normal).unwrap() {
            handles.push(r.unwrap());
        }
    }
    let plane = Arc::new(plane);
    let target = ScsiTarget::new(Arc::clone(&plane), topo.arrays[0]).unwrap();
    let mut slus: BTreeMap<PeId, Vec<Lun>> = BTreeMap::new();
    for h in handles {
        slus.entry(h.pe)
            .or_default()
            .push(target.lun_of(h).unwrap());
    }
    let pes = topo.pes[..3].to_vec();
    Quick {
        target,
        plane,
        host,
        pes,
        slus,
    }
}

impl Quick {
    fn alu(&self, pe: PeId) -> Lun {
        self.target.admin_lun_of(pe).unwrap()
    }

    /// Every LU of `pe` for host 0: its ALU and its SLUs.
    fn lus(&self, pe: PeId) -> Vec<Lun> {
        let mut all = vec![self.alu(pe)];
        all.extend(self.slus.get(&pe).into_iter().flatten().copied());
        all
    }

    fn run(&self, port: u16, lun: Lun, cdb: &[u8]) -> ScsiResponse {
        self.target
            .execute(ItNexus::new(self.host, port), lun, cdb, &[])
    }

    fn ready(&self) {
        for port in [1, 2] {
            for pe in &self.pes {
                for lun in self.lus(*pe) {
                    check(&self.run(port, lun, &TUR), (6, 0x29, 0));
                }
            }
        }
    }

    /// (state, status code) per target port group from RTPG to `lun`.
    fn rtpg(&self, lun: Lun) -> Vec<(u16, u8, u8)> {
        let d = good(&self.run(1, lun, &RTPG)).to_vec();
        let mut out = Vec::new();
        let mut at = 4;
        while at + 8 <= d.len() {
            let ports = usize::from(d[at + 7]);
            out.push((
                u16::from_be_bytes([d[at + 2], d[at + 3]]),
                d[at] & 0x0F,
                d[at + 5],
            ));
            at += 8 + 4 * ports;
        }
        out
    }
}

#[test]
fn a_failed_pe_reports_unavailable_not_pdl_and_restore_reports_2a06() {
    let q = quick();
    q.ready();
    let (&failed, _) = q
        .slus
        .iter()
        .find(|(_, s)| !s.is_empty())
        .expect("a PE with SLUs");
    let others: Vec<PeId> = q.pes.iter().copied().filter(|p| *p != failed).collect();
    // Before any change: active/optimized, STATUS CODE 00h.
    assert_eq!(q.rtpg(q.alu(failed)), vec![(1, 0, 0), (2, 0, 0)]);
    q.plane.fail_pe(failed).unwrap();
    for port in [1, 2] {
        for lun in q.lus(failed) {
            // The change is told, then every medium or readiness command
            // gets NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN
            // UNAVAILABLE STATE (04h/0Ch), never 05h/25h/00h (PDL).
            check(&q.run(port, lun, &TUR), (6, 0x2A, 0x06));
            check(&q.run(port, lun, &TUR), (2, 0x04, 0x0C));
            check(&q.run(port, lun, &read10(0, 1)), (2, 0x04, 0x0C));
            // Still the same LU: INQUIRY answers with PQ 000b.
            assert_eq!(good(&q.run(port, lun, &INQUIRY))[0] & 0xE0, 0, "{lun}");
        }
    }
    // Its RTPG shows Unavailable (3h) on both groups, changed implicitly.
    for lun in q.lus(failed) {
        assert_eq!(q.rtpg(lun), vec![(1, 3, 2), (2, 3, 2)], "{lun}");
    }
    // The other PEs share both groups and are untouched.
    for pe in &others {
        for lun in q.lus(*pe) {
            good(&q.run(1, lun, &TUR));
            good(&q.run(2, lun, &read10(0, 1)));
            assert_eq!(q.rtpg(lun), vec![(1, 0, 0), (2, 0, 0)], "{lun}");
        }
    }
    assert_eq!(
        q.target.pe_alua_state(failed, 1),
        Some(AluaState::Unavailable)
    );
    assert_eq!(q.target.alua_state(1), Some(AluaState::ActiveOptimized));
    q.plane.restore_pe(failed).unwrap();
    for port in [1, 2] {
        for lun in q.lus(failed) {
            check(&q.run(port, lun, &TUR), (6, 0x2A, 0x06));
            good(&q.run(port, lun, &TUR));
            good(&q.run(port, lun, &read10(0, 1)));
        }
    }
    assert_eq!(q.rtpg(q.alu(failed)), vec![(1, 0, 2), (2, 0, 2)]);
}

#[test]
fn a_per_pe_alua_state_leaves_the_other_pes_of_the_group_alone() {
    let q = quick();
    q.ready();
    let (pe, other) = (q.pes[0], q.pes[1]);
    q.target
        .set_pe_alua_state(pe, 1, AluaState::Standby)
        .unwrap();
    check(&q.run(1, q.alu(pe), &TUR), (6, 0x2A, 0x06));
    check(&q.run(1, q.alu(pe), &TUR), (2, 0x04, 0x0B));
    // Every nexus of the LU is told (also through group 2, whose state
    // did not change), and group 2 still serves it.
    check(&q.run(2, q.alu(pe), &TUR), (6, 0x2A, 0x06));
    good(&q.run(2, q.alu(pe), &read10(0, 1)));
    assert_eq!(q.rtpg(q.alu(pe)), vec![(1, 2, 2), (2, 0, 0)]);
    good(&q.run(1, q.alu(other), &TUR));
    assert_eq!(q.rtpg(q.alu(other)), vec![(1, 0, 0), (2, 0, 0)]);
    assert!(
        q.target
            .set_pe_alua_state(pe, 7, AluaState::Standby)
            .is_err()
    );
    // The whole-group setting replaces the per-PE one.
    q.target
        .set_alua_state(1, AluaState::ActiveOptimized)
        .unwrap();
    check(&q.run(1, q.alu(pe), &TUR), (6, 0x2A, 0x06));
    good(&q.run(1, q.alu(pe), &TUR));
    good(&q.run(1, q.alu(other), &TUR));
}

#[test]
fn each_alua_state_serves_its_own_command_set() {
    let f = Fixture::new();
    let (_, slu) = f.bind(0, f.vvol(4));
    f.ready(0);
    let mode_sense = [0x1A, 0, 0x0A, 0, 0xFF, 0];
    let rsoc = [0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let read_capacity = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    // Standby: MODE SENSE/SELECT and READ CAPACITY are served, RSOC not.
    f.target.set_alua_state(1, AluaState::Standby).unwrap();
    check(&f.run(0, slu, &TUR, &[]), (6, 0x2A, 0x06));
    let page = good(&f.run(0, slu, &mode_sense, &[])).to_vec();
    let mut list = vec![0u8; 4];
    list.extend_from_slice(&page[4 + 8..]);
    let select = [0x15, 0x10, 0, 0, list.len() as u8, 0];
    good(&f.run(0, slu, &select, &list));
    good(&f.run(0, slu, &read_capacity, &[]));
    check(&f.run(0, slu, &rsoc, &[]), (2, 0x04, 0x0B));
    check(&f.run(0, slu, &read10(0, 1), &[]), (2, 0x04, 0x0B));
    // Unavailable and transitioning: neither MODE SENSE nor RSOC nor READ
    // CAPACITY; INQUIRY, REPORT LUNS, RTPG and REQUEST SENSE still.
    for (state, ascq) in [
        (AluaState::Unavailable, 0x0C),
        (AluaState::Transitioning, 0x0A),
    ] {
        f.target.set_alua_state(1, state).unwrap();
        check(&f.run(0, slu, &TUR, &[]), (6, 0x2A, 0x06));
        for cdb in [&mode_sense[..], &rsoc, &read_capacity, &select] {
            check(&f.run(0, slu, cdb, &list), (2, 0x04, ascq));
        }
        good(&f.run(0, slu, &INQUIRY, &[]));
        good(&f.run(0, slu, &report_luns(0), &[]));
        good(&f.run(0, slu, &RTPG, &[]));
        good(&f.run(0, slu, &[0x03, 0, 0, 0, 18, 0], &[]));
    }
}

#[test]
fn mode_parameters_belong_to_the_lu_and_other_nexuses_get_2a01() {
    let f = Fixture::new();
    let (_, slu) = f.bind(0, f.vvol(4));
    f.ready(0);
    let port2 = ItNexus::new(f.hosts[0], 2);
    check(&f.target.execute(port2, slu, &TUR, &[]), (6, 0x29, 0));
    // Set D_SENSE on the SLU through host 0's port 1.
    let sense = [0x1A, 0, 0x0A, 0, 0xFF, 0];
    let d = good(&f.run(0, slu, &sense, &[])).to_vec();
    let mut list = vec![0u8; 4];
    let mut page = d[4 + 8..].to_vec();
    page[2] |= 0x04;
    list.extend_from_slice(&page);
    good(&f.run(0, slu, &[0x15, 0x10, 0, 0, list.len() as u8, 0], &list));
    // This nexus is not told of its own change.
    good(&f.run(0, slu, &TUR, &[]));
    // Another nexus of the LU is, once, and sees the shared value.
    let r = f.target.execute(port2, slu, &TUR, &[]);
    assert_eq!(r.sense[0], 0x72, "descriptor format is the LU's now");
    assert_eq!(kcq(&r), (6, 0x2A, 0x01));
    let d = good(&f.target.execute(port2, slu, &sense, &[])).to_vec();
    assert_eq!(d[4 + 8 + 2] & 0x04, 0x04, "D_SENSE");
    // Other LUs keep their own parameters: the ALU still uses fixed sense.
    let r = f.run(0, f.alu(), &[0xEE, 0, 0, 0, 0, 0], &[]);
    assert_eq!(r.sense[0], 0x70);
    // A reset returns the LU to the defaults.
    f.target.reset();
    let r = f.run(0, slu, &TUR, &[]);
    assert_eq!((r.sense[0], kcq(&r)), (0x70, (6, 0x29, 0)));
}
