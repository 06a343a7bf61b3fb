//! Persistent reservations (SPC-5 5.14) and SPC-2 RESERVE(6)/RELEASE(6)
//! through the SCSI target: the PR OUT sequences with the keys and
//! PRgeneration read back, the conflict table per type, ALL_TG_PT,
//! unit attentions, durability across a reopen, power on, limits, and
//! REPORT CAPABILITIES / REPORT SUPPORTED OPERATION CODES.

use std::path::Path;
use std::sync::Arc;

use vvol::scsi::{InitiatorPortId, ItNexus, Lun, ScsiResponse, ScsiTarget, Status};
use vvol::{
    ArraySpec, BindContext, ContainerId, ContainerSpec, ControlPlane, HostId, JournalOptions,
    Limits, Naa, PeId, PeSpec, PrLu, PrType, Protocol, ScsiPath, UnbindContext, VvolId, VvolSpec,
    VvolType,
};

use crate::scsi_target::kcq;
use crate::support::bind_one;

const COMPANY: u32 = 0x00_1A_2B;

// PERSISTENT RESERVE OUT service actions.
const REGISTER: u8 = 0;
const RESERVE: u8 = 1;
const RELEASE: u8 = 2;
const CLEAR: u8 = 3;
const PREEMPT: u8 = 4;
const PREEMPT_AND_ABORT: u8 = 5;
const REGISTER_AND_IGNORE: u8 = 6;
// Parameter list byte 20.
const ALL_TG_PT: u8 = 0x04;
const APTPL: u8 = 0x01;

/// One array, container and PE (ports 1 and 2), three hosts seeing it, a
/// target.
struct Setup {
    plane: Arc<ControlPlane>,
    target: ScsiTarget,
    container: ContainerId,
    pe: PeId,
    hosts: [HostId; 3],
}

fn build(plane: ControlPlane) -> Setup {
    let array = plane.add_array(ArraySpec::new("a", COMPANY)).unwrap();
    let container = plane
        .add_container(array, ContainerSpec::new("c", Protocol::Scsi, 1 << 40))
        .unwrap();
    let pe = plane
        .add_pe(
            array,
            PeSpec::scsi(Naa::from_parts(COMPANY, 0x5EED, 1).unwrap(), 255)
                .with_paths(vec![ScsiPath::new(1, 1), ScsiPath::new(2, 2)]),
        )
        .unwrap();
    let hosts = [
        plane.add_host("h0").unwrap(),
        plane.add_host("h1").unwrap(),
        plane.add_host("h2").unwrap(),
    ];
    for h in hosts {
        crate::support::expose(&plane, h, &[pe]);
    }
    let plane = Arc::new(plane);
    let target = ScsiTarget::new(Arc::clone(&plane), array).unwrap();
    Setup {
        plane,
        target,
        container,
        pe,
        hosts,
    }
}

impl Setup {
    fn new() -> Self {
        build(ControlPlane::new(Limits::default()))
    }

    /// A vVol bound for every host, and its LUN.
    fn slu(&self) -> (VvolId, Lun) {
        let v = self
            .plane
            .create_vvol(self.container, VvolSpec::new(VvolType::Data, 4 << 20))
            .unwrap();
        let mut lun = None;
        for h in self.hosts {
            let handle = bind_one(&self.plane, h, v, BindContext::Normal);
            lun = self.target.lun_of(handle);
        }
        (v, lun.unwrap())
    }

    fn alu(&self) -> Lun {
        self.target.admin_lun_of(self.pe).unwrap()
    }

    fn nexus(&self, host: usize, port: u16) -> ItNexus {
        ItNexus::new(self.hosts[host], port)
    }

    fn run(&self, n: ItNexus, lun: Lun, cdb: &[u8], out: &[u8]) -> ScsiResponse {
        self.target.execute(n, lun, cdb, out)
    }

    /// Clears the pending unit attentions of `n` on `lun`.
    fn ready(&self, n: ItNexus, lun: Lun) {
        for _ in 0..8 {
            if self.run(n, lun, &[0; 6], &[]).status == Status::Good {
                return;
            }
        }
        panic!("{n:?} never got ready");
    }

    fn out(
        &self,
        n: ItNexus,
        lun: Lun,
        (sa, kind): (u8, u8),
        key: u64,
        sa_key: u64,
        flags: u8,
    ) -> ScsiResponse {
        let (cdb, data) = pr_out(sa, kind, key, sa_key, flags);
        self.run(n, lun, &cdb, &data)
    }

    fn good_out(
        &self,
        n: ItNexus,
        lun: Lun,
        (sa, kind): (u8, u8),
        key: u64,
        sa_key: u64,
        flags: u8,
    ) {
        let r = self.out(n, lun, (sa, kind), key, sa_key, flags);
        assert_eq!(r.status, Status::Good, "PR OUT {sa} from {n:?}: {r:?}");
    }

    /// READ KEYS: PRgeneration and keys.
    fn keys(&self, n: ItNexus, lun: Lun) -> (u32, Vec<u64>) {
        let d = good(&self.run(n, lun, &pr_in(0), &[])).to_vec();
        let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
        assert_eq!(d.len(), 8 + len);
        let keys = d[8..]
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect();
        (u32::from_be_bytes(d[..4].try_into().unwrap()), keys)
    }

    /// READ RESERVATION: PRgeneration and (key, type) of the reservation.
    fn reservation(&self, n: ItNexus, lun: Lun) -> (u32, Option<(u64, u8)>) {
        let d = good(&self.run(n, lun, &pr_in(1), &[])).to_vec();
        let generation = u32::from_be_bytes(d[..4].try_into().unwrap());
        match u32::from_be_bytes(d[4..8].try_into().unwrap()) {
            0 => (generation, None),
            16 => {
                assert_eq!(d.len(), 24);
                assert_eq!(d[21] >> 4, 0, "LU_SCOPE");
                (
                    generation,
                    Some((
                        u64::from_be_bytes(d[8..16].try_into().unwrap()),
                        d[21] & 0x0F,
                    )),
                )
            }
            other => panic!("additional length {other}"),
        }
    }
}

fn pr_out(sa: u8, kind: u8, key: u64, sa_key: u64, flags: u8) -> (Vec<u8>, Vec<u8>) {
    let cdb = vec![0x5F, sa, kind, 0, 0, 0, 0, 0, 24, 0];
    let mut data = vec![0u8; 24];
    data[..8].copy_from_slice(&key.to_be_bytes());
    data[8..16].copy_from_slice(&sa_key.to_be_bytes());
    data[20] = flags;
    (cdb, data)
}

fn pr_in(sa: u8) -> Vec<u8> {
    vec![0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0]
}

fn read10() -> Vec<u8> {
    vec![0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]
}

fn write10() -> Vec<u8> {
    vec![0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0]
}

fn good(r: &ScsiResponse) -> &[u8] {
    assert_eq!(r.status, Status::Good, "{r:?}");
    &r.data_in
}

#[track_caller]
fn conflict(r: &ScsiResponse) {
    assert_eq!(r.status, Status::ReservationConflict, "{r:?}");
    assert!(r.sense.is_empty());
}

#[track_caller]
fn check(r: &ScsiResponse, expect: (u8, u8, u8)) {
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    assert_eq!(kcq(r), expect, "{r:?}");
}

#[test]
fn register_reserve_release_clear_with_keys_and_generation() {
    let s = Setup::new();
    let (_, lun) = s.slu();
    let (a, b, c) = (s.nexus(0, 1), s.nexus(1, 1), s.nexus(2, 1));
    for n in [a, b, c] {
        s.ready(n, lun);
    }
    assert_eq!(s.keys(a, lun), (0, vec![]));
    s.good_out(a, lun, (REGISTER, 0), 0, 0xA, 0);
    assert_eq!(s.keys(a, lun), (1, vec![0xA]));
    s.good_out(b, lun, (REGISTER, 0), 0, 0xB, 0);
    assert_eq!(s.keys(c, lun), (2, vec![0xA, 0xB]));
    // REGISTER with a wrong key, or a key from an unregistered nexus.
    conflict(&s.out(a, lun, (REGISTER, 0), 0x99, 0xAA, 0));
    conflict(&s.out(c, lun, (REGISTER, 0), 0x1, 0xC, 0));
    assert_eq!(s.keys(a, lun), (2, vec![0xA, 0xB]));
    // REGISTER AND IGNORE EXISTING KEY replaces the key without it.
    s.good_out(b, lun, (REGISTER_AND_IGNORE, 0), 0x1234, 0xBB, 0);
    assert_eq!(s.keys(a, lun), (3, vec![0xA, 0xBB]));
    // RESERVE does not bump PRgeneration.
    s.good_out(a, lun, (RESERVE, 1), 0xA, 0, 0);
    assert_eq!(s.reservation(b, lun), (3, Some((0xA, 1))));
    // The holder again with the same type: GOOD; anyone else: conflict.
    s.good_out(a, lun, (RESERVE, 1), 0xA, 0, 0);
    conflict(&s.out(a, lun, (RESERVE, 3), 0xA, 0, 0));
    conflict(&s.out(b, lun, (RESERVE, 1), 0xBB, 0, 0));
    conflict(&s.out(b, lun, (RESERVE, 1), 0xB, 0, 0));
    // RELEASE by a non-holder: GOOD without effect.
    s.good_out(b, lun, (RELEASE, 1), 0xBB, 0, 0);
    assert_eq!(s.reservation(b, lun), (3, Some((0xA, 1))));
    // RELEASE with another type: INVALID RELEASE OF PERSISTENT RESERVATION.
    check(&s.out(a, lun, (RELEASE, 3), 0xA, 0, 0), (5, 0x26, 0x04));
    s.good_out(a, lun, (RELEASE, 1), 0xA, 0, 0);
    assert_eq!(s.reservation(b, lun), (3, None));
    // Releasing a Registrants Only reservation tells the other registrants.
    s.good_out(a, lun, (RESERVE, 5), 0xA, 0, 0);
    s.good_out(a, lun, (RELEASE, 5), 0xA, 0, 0);
    check(&s.run(b, lun, &[0; 6], &[]), (6, 0x2A, 0x04));
    assert_eq!(s.run(a, lun, &[0; 6], &[]).status, Status::Good);
    // CLEAR: everything goes, every other registrant gets 2Ah/03h.
    s.good_out(a, lun, (RESERVE, 3), 0xA, 0, 0);
    conflict(&s.out(b, lun, (CLEAR, 0), 0xB, 0, 0));
    s.good_out(b, lun, (CLEAR, 0), 0xBB, 0, 0);
    check(&s.run(a, lun, &[0; 6], &[]), (6, 0x2A, 0x03));
    assert_eq!(s.run(c, lun, &[0; 6], &[]).status, Status::Good);
    assert_eq!(s.keys(a, lun), (4, vec![]));
    assert_eq!(s.reservation(a, lun), (4, None));
    // Unregistering (service action key 0) releases the holder's
    // reservation.
    s.good_out(a, lun, (REGISTER, 0), 0, 0xA, 0);
    s.good_out(a, lun, (RESERVE, 1), 0xA, 0, 0);
    s.good_out(a, lun, (REGISTER, 0), 0xA, 0, 0);
    assert_eq!(s.keys(a, lun), (6, vec![]));
    assert_eq!(s.reservation(a, lun), (6, None));
    // An unregistered nexus registering key 0: GOOD, nothing changes.
    s.good_out(c, lun, (REGISTER, 0), 0, 0, 0);
    assert_eq!(s.keys(a, lun), (6, vec![]));
}

#[test]
fn preempt_and_preempt_and_abort() {
    let s = Setup::new();
    let (_, lun) = s.slu();
    let (a, b, c) = (s.nexus(0, 1), s.nexus(1, 1), s.nexus(2, 1));
    for n in [a, b, c] {
        s.ready(n, lun);
        s.good_out(n, lun, (REGISTER, 0), 0, 0xA0 + u64::from(n.host.0), 0);
    }
    let (ka, kb, kc) = (0xA0, 0xA1, 0xA2);
    s.good_out(a, lun, (RESERVE, 3), ka, 0, 0);
    assert_eq!(s.keys(a, lun), (3, vec![ka, kb, kc]));
    // Service action key 0 without an All Registrants reservation.
    check(&s.out(b, lun, (PREEMPT, 1), kb, 0, 0), (5, 0x26, 0x00));
    // A key nobody holds.
    conflict(&s.out(b, lun, (PREEMPT, 1), kb, 0x77, 0));
    // An unregistered key as the reservation key.
    conflict(&s.out(b, lun, (PREEMPT, 1), 0x77, ka, 0));
    // B preempts the holder A, with another type.
    s.good_out(b, lun, (PREEMPT, 1), kb, ka, 0);
    assert_eq!(s.keys(b, lun), (4, vec![kb, kc]));
    assert_eq!(s.reservation(b, lun), (4, Some((kb, 1))));
    // A lost its registration; C's reservation knowledge was released.
    check(&s.run(a, lun, &[0; 6], &[]), (6, 0x2A, 0x05));
    check(&s.run(c, lun, &[0; 6], &[]), (6, 0x2A, 0x04));
    // A is now unregistered under Write Exclusive: reads, no writes.
    good(&s.run(a, lun, &read10(), &[]));
    conflict(&s.run(a, lun, &write10(), &[0; 512]));
    good(&s.run(b, lun, &write10(), &[0; 512]));
    // PREEMPT AND ABORT of a registrant that holds nothing: only its
    // registration goes, the reservation stays.
    s.good_out(b, lun, (PREEMPT_AND_ABORT, 3), kb, kc, 0);
    assert_eq!(s.keys(b, lun), (5, vec![kb]));
    assert_eq!(s.reservation(b, lun), (5, Some((kb, 1))));
    check(&s.run(c, lun, &[0; 6], &[]), (6, 0x2A, 0x05));
    // All Registrants with key 0: every other registration goes and the
    // preempting nexus holds a new reservation.
    s.good_out(a, lun, (REGISTER, 0), 0, ka, 0);
    s.good_out(b, lun, (RELEASE, 1), kb, 0, 0);
    s.good_out(b, lun, (RESERVE, 7), kb, 0, 0);
    assert_eq!(
        s.reservation(a, lun),
        (6, Some((0, 7))),
        "key 0 for All Registrants"
    );
    s.good_out(a, lun, (PREEMPT_AND_ABORT, 8), ka, 0, 0);
    assert_eq!(s.keys(a, lun), (7, vec![ka]));
    assert_eq!(s.reservation(a, lun), (7, Some((0, 8))));
    check(&s.run(b, lun, &[0; 6], &[]), (6, 0x2A, 0x05));
    conflict(&s.run(b, lun, &read10(), &[]));
}

#[test]
fn each_type_decides_read_and_write_for_registered_and_unregistered_nexuses() {
    // (type, registered READ, registered WRITE, unregistered READ,
    // unregistered WRITE): SBC-4 4.17 / SPC-5 5.14.1 tables.
    let table = [
        (PrType::WriteExclusive, true, false, true, false),
        (PrType::ExclusiveAccess, false, false, false, false),
        (
            PrType::WriteExclusiveRegistrantsOnly,
            true,
            true,
            true,
            false,
        ),
        (
            PrType::ExclusiveAccessRegistrantsOnly,
            true,
            true,
            false,
            false,
        ),
        (
            PrType::WriteExclusiveAllRegistrants,
            true,
            true,
            true,
            false,
        ),
        (
            PrType::ExclusiveAccessAllRegistrants,
            true,
            true,
            false,
            false,
        ),
    ];
    for (kind, reg_read, reg_write, unreg_read, unreg_write) in table {
        let s = Setup::new();
        for lun in [s.slu().1, s.alu()] {
            let holder = s.nexus(0, 1);
            let registered = s.nexus(1, 1);
            let unregistered = ItNexus::with_initiator(s.hosts[1], InitiatorPortId(7), 1);
            for n in [holder, registered, unregistered] {
                s.ready(n, lun);
            }
            s.good_out(holder, lun, (REGISTER, 0), 0, 0x1, 0);
            s.good_out(registered, lun, (REGISTER, 0), 0, 0x2, 0);
            s.good_out(holder, lun, (RESERVE, kind.code()), 0x1, 0, 0);
            let is_slu = lun != s.alu();
            let outcome = |n: ItNexus, cdb: &[u8]| {
                let r = s.run(n, lun, cdb, &[0; 512]);
                match r.status {
                    Status::ReservationConflict => false,
                    Status::Good => true,
                    _ => panic!("{kind:?} {cdb:02x?}: {r:?}"),
                }
            };
            assert!(outcome(holder, &read10()), "{kind:?} holder READ");
            assert_eq!(
                outcome(registered, &read10()),
                reg_read,
                "{kind:?} registered READ"
            );
            assert_eq!(
                outcome(unregistered, &read10()),
                unreg_read,
                "{kind:?} unregistered READ"
            );
            if is_slu {
                assert!(outcome(holder, &write10()), "{kind:?} holder WRITE");
                assert_eq!(
                    outcome(registered, &write10()),
                    reg_write,
                    "{kind:?} registered WRITE"
                );
                assert_eq!(
                    outcome(unregistered, &write10()),
                    unreg_write,
                    "{kind:?} unregistered WRITE"
                );
            }
            // Always allowed: INQUIRY, TEST UNIT READY, READ CAPACITY.
            for cdb in [
                vec![0x12, 0, 0, 0, 36, 0],
                vec![0; 6],
                vec![0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ] {
                assert!(outcome(unregistered, &cdb), "{kind:?} {cdb:02x?}");
            }
            // MODE SELECT is a write, MODE SENSE a read.
            let sense = [0x1A, 0, 0x3F, 0, 0xFF, 0];
            assert_eq!(
                outcome(unregistered, &sense),
                !kind.exclusive_access(),
                "{kind:?}"
            );
        }
    }
}

#[test]
fn all_tg_pt_registers_every_target_port_of_the_lu() {
    let s = Setup::new();
    let (_, lun) = s.slu();
    let (a1, a2, b1, b2) = (s.nexus(0, 1), s.nexus(0, 2), s.nexus(1, 1), s.nexus(1, 2));
    for n in [a1, a2, b1, b2] {
        s.ready(n, lun);
    }
    s.good_out(a1, lun, (REGISTER, 0), 0, 0xA, ALL_TG_PT);
    assert_eq!(s.keys(b1, lun), (1, vec![0xA, 0xA]));
    // The registration through port 2 is A's too: it may reserve there.
    s.good_out(a2, lun, (RESERVE, 1), 0xA, 0, 0);
    s.good_out(a2, lun, (RELEASE, 1), 0xA, 0, 0);
    // Without ALL_TG_PT only the one nexus.
    s.good_out(b1, lun, (REGISTER, 0), 0, 0xB, 0);
    assert_eq!(s.keys(b1, lun), (2, vec![0xA, 0xA, 0xB]));
    conflict(&s.out(b2, lun, (RESERVE, 1), 0xB, 0, 0));
    // Unregistering with ALL_TG_PT removes A on both ports.
    s.good_out(a1, lun, (REGISTER, 0), 0xA, 0, ALL_TG_PT);
    assert_eq!(s.keys(b1, lun), (3, vec![0xB]));
}

#[test]
fn reserve_6_conflicts_with_others_and_with_persistent_reservations() {
    let s = Setup::new();
    let (_, lun) = s.slu();
    let (a, b) = (s.nexus(0, 1), s.nexus(1, 1));
    for n in [a, b] {
        s.ready(n, lun);
    }
    let reserve = [0x16, 0, 0, 0, 0, 0];
    let release = [0x17, 0, 0, 0, 0, 0];
    good(&s.run(a, lun, &reserve, &[]));
    conflict(&s.run(b, lun, &read10(), &[]));
    conflict(&s.run(b, lun, &reserve, &[]));
    good(&s.run(b, lun, &[0x12, 0, 0, 0, 36, 0], &[]));
    good(&s.run(a, lun, &read10(), &[]));
    // PR commands conflict while an SPC-2 reservation is held (CRH=0).
    conflict(&s.run(a, lun, &pr_in(0), &[]));
    // RELEASE from another nexus: GOOD without effect.
    good(&s.run(b, lun, &release, &[]));
    conflict(&s.run(b, lun, &read10(), &[]));
    good(&s.run(a, lun, &release, &[]));
    good(&s.run(b, lun, &read10(), &[]));
    // A registration refuses RESERVE(6) from anyone.
    s.good_out(b, lun, (REGISTER, 0), 0, 0xB, 0);
    conflict(&s.run(a, lun, &reserve, &[]));
    s.good_out(b, lun, (RESERVE, 3), 0xB, 0, 0);
    conflict(&s.run(b, lun, &reserve, &[]));
    // RELEASE(6) leaves the persistent reservation alone.
    good(&s.run(b, lun, &release, &[]));
    assert_eq!(s.reservation(b, lun), (1, Some((0xB, 3))));
    // A reset releases SPC-2 reservations.
    s.good_out(b, lun, (CLEAR, 0), 0xB, 0, 0);
    s.ready(b, lun);
    good(&s.run(a, lun, &reserve, &[]));
    s.target.reset();
    s.ready(b, lun);
    good(&s.run(b, lun, &read10(), &[]));
}

fn durable(path: &Path, limits: Limits) -> ControlPlane {
    ControlPlane::open_durable(path, limits, JournalOptions::default()).unwrap()
}

#[test]
fn reservations_survive_a_reopen_and_a_power_on_keeps_only_aptpl() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let s = build(durable(&path, Limits::default()));
    let (v, lun) = s.slu();
    let alu = s.alu();
    let (a, b) = (s.nexus(0, 1), s.nexus(1, 1));
    for n in [a, b] {
        s.ready(n, lun);
        s.ready(n, alu);
    }
    s.good_out(a, lun, (REGISTER, 0), 0, 0xA, 0);
    s.good_out(b, lun, (REGISTER, 0), 0, 0xB, 0);
    s.good_out(a, lun, (RESERVE, 3), 0xA, 0, 0);
    // The ALU registered with APTPL=1.
    s.good_out(a, alu, (REGISTER, 0), 0, 0xAA, APTPL);
    s.good_out(a, alu, (RESERVE, 1), 0xAA, 0, 0);
    let pe = s.pe;
    let array = s.target.array();
    drop(s);
    for compact in [false, true] {
        let plane = Arc::new(durable(&path, Limits::default()));
        if compact {
            // The state comes from the snapshot section next time.
            plane.compact_journal().unwrap();
        }
        let target = ScsiTarget::new(Arc::clone(&plane), array).unwrap();
        let handle = plane.bindings_for_vvol(v).unwrap()[0].handle;
        let lun = target.lun_of(handle).unwrap();
        let alu = target.admin_lun_of(pe).unwrap();
        let s = Setup {
            plane,
            target,
            container: ContainerId(0),
            pe,
            hosts: [HostId(0), HostId(1), HostId(2)],
        };
        for n in [a, b] {
            s.ready(n, lun);
            s.ready(n, alu);
        }
        assert_eq!(s.keys(b, lun), (2, vec![0xA, 0xB]));
        assert_eq!(s.reservation(b, lun), (2, Some((0xA, 3))));
        conflict(&s.run(b, lun, &read10(), &[]));
        assert_eq!(s.reservation(b, alu), (1, Some((0xAA, 1))));
        assert_eq!(s.plane.reservations(PrLu::Slu(v)).registrations.len(), 2);
    }
    // A power on: APTPL=0 state is lost, APTPL=1 kept with PRgeneration 0.
    let plane = Arc::new(durable(&path, Limits::default()));
    let target = ScsiTarget::new(Arc::clone(&plane), array).unwrap();
    target.try_reset().unwrap();
    drop(target);
    drop(plane);
    let plane = Arc::new(durable(&path, Limits::default()));
    let target = ScsiTarget::new(Arc::clone(&plane), array).unwrap();
    let handle = plane.bindings_for_vvol(v).unwrap()[0].handle;
    let (lun, alu) = (
        target.lun_of(handle).unwrap(),
        target.admin_lun_of(pe).unwrap(),
    );
    let s = Setup {
        plane,
        target,
        container: ContainerId(0),
        pe,
        hosts: [HostId(0), HostId(1), HostId(2)],
    };
    for n in [a, b] {
        s.ready(n, lun);
        s.ready(n, alu);
    }
    assert_eq!(s.keys(b, lun), (0, vec![]));
    assert_eq!(s.reservation(b, lun), (0, None));
    good(&s.run(b, lun, &read10(), &[]));
    assert_eq!(s.keys(b, alu), (0, vec![0xAA]));
    assert_eq!(s.reservation(b, alu), (0, Some((0xAA, 1))));
    // REPORT CAPABILITIES: PTPL_A follows the LU's APTPL.
    assert_eq!(good(&s.run(b, alu, &pr_in(2), &[]))[3] & 1, 1);
    assert_eq!(good(&s.run(b, lun, &pr_in(2), &[]))[3] & 1, 0);
}

#[test]
fn limits_give_insufficient_registration_resources() {
    let limits = Limits::default()
        .with_max_pr_registrations_per_lu(2)
        .with_max_pr_lus(1);
    let s = build(ControlPlane::new(limits));
    let (_, lun) = s.slu();
    let (_, other) = s.slu();
    let (a, b, c) = (s.nexus(0, 1), s.nexus(1, 1), s.nexus(2, 1));
    for n in [a, b, c] {
        s.ready(n, lun);
        s.ready(n, other);
    }
    s.good_out(a, lun, (REGISTER, 0), 0, 0xA, 0);
    s.good_out(b, lun, (REGISTER, 0), 0, 0xB, 0);
    check(&s.out(c, lun, (REGISTER, 0), 0, 0xC, 0), (5, 0x55, 0x04));
    // ALL_TG_PT would need two more.
    s.good_out(b, lun, (REGISTER, 0), 0xB, 0, 0);
    check(
        &s.out(b, lun, (REGISTER, 0), 0, 0xB, ALL_TG_PT),
        (5, 0x55, 0x04),
    );
    assert_eq!(s.keys(a, lun), (3, vec![0xA]));
    // A second LU with registrations is past max_pr_lus.
    check(&s.out(a, other, (REGISTER, 0), 0, 0xA, 0), (5, 0x55, 0x04));
    assert_eq!(s.keys(a, other), (0, vec![]));
}

#[test]
fn report_capabilities_and_supported_operation_codes_agree() {
    let s = Setup::new();
    let (_, lun) = s.slu();
    let a = s.nexus(0, 1);
    s.ready(a, lun);
    let caps = good(&s.run(a, lun, &pr_in(2), &[])).to_vec();
    // Length 8; CRH=0, SIP_C=0, ATP_C=1, PTPL_C=1; TMV=1, PTPL_A=0; the
    // six types (WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; EX_AC_AR).
    assert_eq!(caps, vec![0, 8, 0x05, 0x80, 0xEA, 0x01, 0, 0]);
    // RSOC one command: READ KEYS..REPORT CAPABILITIES supported, READ FULL
    // STATUS not; PR OUT 00h-06h supported, REGISTER AND MOVE not.
    let one = |opcode: u8, sa: u16| {
        let cdb = [
            0xA3,
            0x0C,
            0x02,
            opcode,
            (sa >> 8) as u8,
            sa as u8,
            0,
            0,
            1,
            0,
            0,
            0,
        ];
        good(&s.run(a, lun, &cdb, &[]))[1] & 0x07
    };
    for sa in 0..=2 {
        assert_eq!(one(0x5E, sa), 3, "PR IN {sa}");
    }
    assert_eq!(one(0x5E, 3), 1, "READ FULL STATUS is not supported");
    for sa in 0..=6 {
        assert_eq!(one(0x5F, sa), 3, "PR OUT {sa}");
    }
    assert_eq!(one(0x5F, 7), 1, "REGISTER AND MOVE is not supported");
    // And the commands refuse them as SPC-5 requires.
    let r = s.run(a, lun, &pr_in(3), &[]);
    check(&r, (5, 0x24, 0));
    let (cdb, data) = pr_out(7, 0, 0, 0xA, 0);
    check(&s.run(a, lun, &cdb, &data), (5, 0x24, 0));
    // SPEC_I_PT=1 (SIP_C=0): INVALID FIELD IN PARAMETER LIST.
    check(&s.out(a, lun, (REGISTER, 0), 0, 0xA, 0x08), (5, 0x26, 0));
    // A short parameter list; a bad scope; a reserved type.
    let (mut cdb, data) = pr_out(REGISTER, 0, 0, 0xA, 0);
    cdb[8] = 16;
    check(&s.run(a, lun, &cdb, &data), (5, 0x1A, 0));
    s.good_out(a, lun, (REGISTER, 0), 0, 0xA, APTPL);
    check(&s.out(a, lun, (RESERVE, 0x11), 0xA, 0, 0), (5, 0x24, 0));
    check(&s.out(a, lun, (RESERVE, 2), 0xA, 0, 0), (5, 0x24, 0));
    assert_eq!(good(&s.run(a, lun, &pr_in(2), &[]))[3], 0x81);
}

#[test]
fn deleting_a_vvol_or_removing_a_pe_drops_its_reservations() {
    let s = Setup::new();
    let (v, lun) = s.slu();
    let alu = s.alu();
    let a = s.nexus(0, 1);
    s.ready(a, lun);
    s.ready(a, alu);
    s.good_out(a, lun, (REGISTER, 0), 0, 0xA, 0);
    s.good_out(a, lun, (RESERVE, 3), 0xA, 0, 0);
    s.good_out(a, alu, (REGISTER, 0), 0, 0xAA, 0);
    assert_eq!(s.plane.reservations(PrLu::Slu(v)).registrations.len(), 1);
    for h in s.hosts {
        for b in s.plane.bindings_for_host(h).unwrap() {
            s.plane.unbind(h, b.handle, UnbindContext::Normal).unwrap();
        }
    }
    s.plane.delete_vvol(v).unwrap();
    assert!(s.plane.reservations(PrLu::Slu(v)).registrations.is_empty());
    // A new vVol (which may reuse the key) starts without reservations.
    let (_, lun2) = s.slu();
    s.ready(a, lun2);
    assert_eq!(s.keys(a, lun2), (0, vec![]));
    for h in s.hosts {
        for b in s.plane.bindings_for_host(h).unwrap() {
            s.plane.unbind(h, b.handle, UnbindContext::Normal).unwrap();
        }
        s.plane.set_pe_context(h, &[]).unwrap();
    }
    s.plane.remove_pe(s.pe).unwrap();
    assert!(
        s.plane
            .reservations(PrLu::Alu(s.pe))
            .registrations
            .is_empty()
    );
}

#[test]
fn a_second_target_on_the_plane_sees_the_reservations() {
    let s = Setup::new();
    let (_, lun) = s.slu();
    let other = ScsiTarget::new(Arc::clone(&s.plane), s.target.array()).unwrap();
    let (a, b) = (s.nexus(0, 1), s.nexus(1, 1));
    for n in [a, b] {
        s.ready(n, lun);
        for _ in 0..8 {
            if other.execute(n, lun, &[0; 6], &[]).status == Status::Good {
                break;
            }
        }
    }
    good(&other.execute(b, lun, &write10(), &[0; 512]));
    s.good_out(a, lun, (REGISTER, 0), 0, 0xA, 0);
    s.good_out(a, lun, (RESERVE, 3), 0xA, 0, 0);
    conflict(&other.execute(b, lun, &read10(), &[]));
    // A PR OUT through the other target decides on the same state.
    let (cdb, data) = pr_out(RESERVE, 1, 0xB, 0, 0);
    conflict(&other.execute(b, lun, &cdb, &data));
    let (cdb, data) = pr_out(CLEAR, 0, 0xA, 0, 0);
    good(&other.execute(a, lun, &cdb, &data));
    good(&s.run(b, lun, &read10(), &[]));
    // REQUEST SENSE returns a pending reservation unit attention.
    s.good_out(a, lun, (REGISTER, 0), 0, 0xA, 0);
    s.good_out(b, lun, (REGISTER, 0), 0, 0xB, 0);
    s.good_out(a, lun, (CLEAR, 0), 0xA, 0, 0);
    let sense = good(&s.run(b, lun, &[0x03, 0, 0, 0, 18, 0], &[])).to_vec();
    assert_eq!((sense[2] & 0x0F, sense[12], sense[13]), (6, 0x2A, 0x03));
    assert_eq!(s.run(b, lun, &[0; 6], &[]).status, Status::Good);
}

/// An SPC-2 reservation belongs to its vVol: once the vVol is deleted, a
/// new vVol that gets its key (the plane reuses keys) is not reserved.
#[test]
fn a_reserve_6_does_not_outlive_its_vvol() {
    // Room for two vVols, so the third reuses the deleted one's key.
    let s = build(ControlPlane::new(Limits::default().with_max_vvols(2)));
    let (v, lun) = s.slu();
    let (a, b) = (s.nexus(0, 1), s.nexus(1, 1));
    for n in [a, b] {
        s.ready(n, lun);
    }
    good(&s.run(a, lun, &[0x16, 0, 0, 0, 0, 0], &[]));
    conflict(&s.run(b, lun, &read10(), &[]));
    for h in s.hosts {
        for binding in s.plane.bindings_for_vvol(v).unwrap() {
            let _ = s
                .plane
                .unbind(h, binding.handle, vvol::UnbindContext::Normal);
        }
    }
    let key = s.plane.vvol(v).unwrap().key;
    s.plane.delete_vvol(v).unwrap();
    // Of the next two vVols (the most there may be), one has the key.
    let (x, lun_x) = s.slu();
    let (y, lun_y) = s.slu();
    let lun = if s.plane.vvol(x).unwrap().key == key {
        lun_x
    } else {
        assert_eq!(s.plane.vvol(y).unwrap().key, key, "the key is reused");
        lun_y
    };
    for n in [a, b] {
        s.ready(n, lun);
    }
    good(&s.run(b, lun, &read10(), &[]));
}
