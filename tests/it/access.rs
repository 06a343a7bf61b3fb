//! Host access (issue 10; review S3, S4): initiator names, the array's
//! access rules (LUN masking, explicit), `setPEContext` as a host report
//! with VASA faults, and the two queue limits of a PE (per host and
//! shared), all across a reopen of a durable plane.

use crate::support::gate::Gate;
use std::sync::Arc;

use vvol::{
    ArraySpec, BindContext, ContainerId, ContainerSpec, ControlError, ControlPlane, HostId,
    InitiatorKind, InitiatorName, JournalOptions, Limits, MAX_INITIATORS_PER_HOST, MemStore, Naa,
    ParseError, PeId, PeSpec, Protocol, RouteError, ScsiPath, VasaFault, VvolId, VvolSpec,
    VvolType,
};

use crate::support::{bind_one, create_on};

const COMPANY: u32 = 0x00_1A_2B;
const MIB: u64 = 1 << 20;

fn iqn(s: &str) -> InitiatorName {
    s.parse().unwrap()
}

/// One array, one SCSI container, `n` PEs (LUNs 1..=n, ports 1 and 2) with
/// the given queue depths, and hosts h0, h1, h2 with no access rules.
struct World {
    plane: Arc<ControlPlane>,
    container: ContainerId,
    pes: Vec<PeId>,
    hosts: [HostId; 3],
}

impl World {
    fn new(n: u16, spec: impl Fn(PeSpec) -> PeSpec) -> Self {
        Self::on(ControlPlane::new(Limits::default()), n, spec)
    }

    fn on(plane: ControlPlane, n: u16, spec: impl Fn(PeSpec) -> PeSpec) -> Self {
        let array = plane.add_array(ArraySpec::new("a", COMPANY)).unwrap();
        let container = plane
            .add_container(array, ContainerSpec::new("c", Protocol::Scsi, 1 << 40))
            .unwrap();
        let pes = (1..=n)
            .map(|i| {
                let naa = Naa::from_parts(COMPANY, 0xACCE55, u64::from(i)).unwrap();
                let s =
                    PeSpec::scsi(naa, i).with_paths(vec![ScsiPath::new(1, 1), ScsiPath::new(2, 2)]);
                plane.add_pe(array, spec(s)).unwrap()
            })
            .collect();
        let hosts = [
            plane.add_host("h0").unwrap(),
            plane.add_host("h1").unwrap(),
            plane.add_host("h2").unwrap(),
        ];
        Self {
            plane: Arc::new(plane),
            container,
            pes,
            hosts,
        }
    }

    fn vvol(&self) -> VvolId {
        self.plane
            .create_vvol(self.container, VvolSpec::new(VvolType::Data, 4 * MIB))
            .unwrap()
    }

    /// Maps and reports `pes` for host `h` (the full bring-up).
    fn bring_up(&self, h: usize, pes: &[PeId]) {
        for pe in pes {
            self.plane.map_pe(self.hosts[h], *pe).unwrap();
        }
        self.plane.set_pe_context(self.hosts[h], pes).unwrap();
    }
}

#[test]
fn initiator_names_are_validated_and_normalized() {
    let ok = [
        ("iqn.1998-01.com.vmware:esx-01-5f3c", InitiatorKind::Iqn),
        ("iqn.2001-04.com.example", InitiatorKind::Iqn),
        (
            "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
            InitiatorKind::Iqn,
        ),
        ("eui.02004567A425678D", InitiatorKind::Eui),
        ("naa.52004567BA64678D", InitiatorKind::Naa),
        ("naa.62004567BA64678D0123456789ABCDEF", InitiatorKind::Naa),
    ];
    for (name, kind) in ok {
        let n = InitiatorName::iscsi(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(n.kind(), kind, "{name}");
        // RFC 3722 folds case: the stored form is lower case, and names
        // differing only in case are the same initiator.
        assert_eq!(n.as_str(), name.to_ascii_lowercase());
        assert_eq!(n, iqn(&name.to_ascii_uppercase()));
    }
    let long = format!("iqn.1998-01.com.vmware:{}", "x".repeat(223 - 23 + 1));
    assert_eq!(long.len(), 224);
    let just = &long[..223];
    assert!(InitiatorName::iscsi(just).is_ok(), "223 bytes are allowed");
    let bad = [
        long.as_str(),
        "",
        "iqn.",
        "iqn.1998-1.com.vmware",
        "iqn.1998-00.com.vmware",
        "iqn.1998-13.com.vmware",
        "iqn.98-01.com.vmware",
        "iqn.1998-01",
        "iqn.1998-01.",
        "iqn.1998-01.:x",
        "iqn.1998-01.com..vmware",
        "iqn.1998-01.com.vmware:esx 01",
        "iqn.1998-01.com.vmware:esx_01",
        "eui.02004567A425678",
        "eui.02004567A425678DA",
        "eui.02004567A425678G",
        "naa.52004567BA64678",
        "naa.52004567BA64678D00",
        "wwn.5001438001234567",
        "50:01:43:80:01:23:45:67",
    ];
    for name in bad {
        assert!(
            matches!(
                InitiatorName::iscsi(name),
                Err(ParseError::InitiatorName { .. })
            ),
            "{name:?} must be refused"
        );
    }
}

#[test]
fn an_initiator_name_belongs_to_one_host() {
    let w = World::new(1, |s| s);
    let [h0, h1, _] = w.hosts;
    let a = iqn("iqn.1998-01.com.vmware:esx-a");
    let b = iqn("eui.02004567A425678D");
    w.plane.add_initiator(h0, a.clone()).unwrap();
    w.plane.add_initiator(h0, b.clone()).unwrap();
    w.plane.add_initiator(h0, a.clone()).unwrap(); // a repeat changes nothing
    assert_eq!(
        w.plane.host(h0).unwrap().initiators,
        vec![b.clone(), a.clone()]
    );
    assert_eq!(w.plane.host_for_initiator(&a), Some(h0));
    // Case-folded: the same initiator.
    let upper = iqn("IQN.1998-01.COM.VMWARE:ESX-A");
    let err = w.plane.add_initiator(h1, upper).unwrap_err();
    assert!(
        matches!(&err, ControlError::InitiatorInUse { name, host, owner }
            if *name == a && *host == h1 && *owner == h0),
        "{err}"
    );
    assert_eq!(err.fault(), VasaFault::InvalidArgument);
    assert!(w.plane.host(h1).unwrap().initiators.is_empty());
    // Moving a name: remove, then add to the other host.
    w.plane.remove_initiator(h0, &a).unwrap();
    assert_eq!(w.plane.host_for_initiator(&a), None);
    let err = w.plane.remove_initiator(h0, &a).unwrap_err();
    assert!(matches!(err, ControlError::InitiatorNotFound { host, .. } if host == h0));
    w.plane.add_initiator(h1, a.clone()).unwrap();
    assert_eq!(w.plane.host_for_initiator(&a), Some(h1));
    // The per-host limit.
    for i in 1..MAX_INITIATORS_PER_HOST {
        w.plane
            .add_initiator(h0, iqn(&format!("iqn.1998-01.com.vmware:n{i}")))
            .unwrap();
    }
    assert_eq!(
        w.plane.host(h0).unwrap().initiators.len(),
        MAX_INITIATORS_PER_HOST
    );
    let err = w
        .plane
        .add_initiator(h0, iqn("iqn.1998-01.com.vmware:one-too-many"))
        .unwrap_err();
    assert!(matches!(err, ControlError::TooMany { .. }), "{err}");
    // A removed host frees its names.
    w.plane.remove_host(h1).unwrap();
    assert_eq!(w.plane.host_for_initiator(&a), None);
    w.plane.check_invariants();
}

#[test]
fn set_pe_context_faults_only_as_vasa_declares() {
    let w = World::new(2, |s| s);
    let h = w.hosts[0];
    w.bring_up(0, &w.pes[..1]);
    // An unknown PE in the list: StorageFault (setPEContext declares no
    // NotFound or InvalidArgument), and nothing changes.
    let err = w
        .plane
        .set_pe_context(h, &[w.pes[1], PeId(999)])
        .unwrap_err();
    assert!(
        matches!(err, ControlError::UnknownReportedPe { host, pe } if host == h && pe == PeId(999)),
        "{err}"
    );
    assert_eq!(err.fault(), VasaFault::StorageFault);
    assert_eq!(w.plane.host(h).unwrap().pe_context, vec![w.pes[0]]);
    // An unknown session host: InvalidSession.
    let err = w.plane.set_pe_context(HostId(77), &[w.pes[0]]).unwrap_err();
    assert!(
        matches!(err, ControlError::UnknownSessionHost(HostId(77))),
        "{err}"
    );
    assert_eq!(err.fault(), VasaFault::InvalidSession);
    // A PE the host is not mapped to may be reported (the plane records
    // it), but it takes no binds until mapped.
    w.plane.set_pe_context(h, &[w.pes[1]]).unwrap();
    let err = w
        .plane
        .bind(h, &[w.vvol()], BindContext::Normal)
        .unwrap_err();
    assert!(matches!(err, ControlError::NoEligiblePe { .. }), "{err}");
    w.plane.map_pe(h, w.pes[1]).unwrap();
    let handle = bind_one(&w.plane, h, w.vvol(), BindContext::Normal);
    assert_eq!(handle.pe, w.pes[1]);
}

#[test]
fn set_pe_context_may_shrink_and_the_dropped_pe_keeps_serving_its_binding() {
    let w = World::new(2, |s| s);
    let h = w.hosts[0];
    let (p0, p1) = (w.pes[0], w.pes[1]);
    w.bring_up(0, &[p0]);
    w.plane.map_pe(h, p1).unwrap();
    let v = w.vvol();
    let old = bind_one(&w.plane, h, v, BindContext::Normal);
    assert_eq!(old.pe, p0);
    let router = w.plane.router();
    router.write(h, old, 0, &[5u8; 512], false).unwrap();
    // The host lost p0 (or stopped reporting it): accepted as reported.
    w.plane.set_pe_context(h, &[p1]).unwrap();
    assert_eq!(w.plane.host(h).unwrap().pe_context, vec![p1]);
    assert_eq!(w.plane.host(h).unwrap().bindings, 1);
    // The existing binding on p0 still serves the host.
    let mut back = [0u8; 512];
    router.read(h, old, 0, &mut back).unwrap();
    assert_eq!(back, [5u8; 512]);
    // New binds go to p1: another vVol, and the same vVol bound again.
    let other = bind_one(&w.plane, h, w.vvol(), BindContext::Normal);
    assert_eq!(other.pe, p1);
    let again = bind_one(&w.plane, h, v, BindContext::Normal);
    assert_eq!(again.pe, p1, "no new bind lands on the dropped PE");
    router.read(h, again, 0, &mut back).unwrap();
    assert_eq!(back, [5u8; 512]);
    w.plane.check_invariants();
}

#[test]
fn queue_limits_are_per_host_and_shared() {
    let w = World::new(1, |s| s.with_queue_depth(64).with_host_queue_depth(32));
    let pe = w.pes[0];
    assert_eq!(w.plane.pe(pe).unwrap().host_queue_depth, 32);
    for h in 0..3 {
        w.bring_up(h, &[pe]);
    }
    let gate = Gate::new();
    let v = create_on(
        &w.plane,
        w.container,
        VvolSpec::new(VvolType::Data, 4 * MIB),
        gate.clone() as _,
        "gate",
    );
    let handles: Vec<_> = w
        .hosts
        .iter()
        .map(|h| bind_one(&w.plane, *h, v, BindContext::Normal))
        .collect();
    let router = w.plane.router();
    let [h0, h1, h2] = w.hosts;
    std::thread::scope(|s| {
        let mut held = Vec::new();
        for _ in 0..32 {
            let (router, handle) = (router.clone(), handles[0]);
            held.push(s.spawn(move || router.read(h0, handle, 0, &mut [0u8; 512])));
        }
        gate.wait_for(32);
        // h0's own queue is full; the PE's is not.
        let err = router.read(h0, handles[0], 0, &mut [0u8; 512]).unwrap_err();
        assert!(
            matches!(err, RouteError::HostQueueFull { host, pe: p, queue_depth: 32 } if host == h0 && p == pe),
            "{err}"
        );
        assert_eq!(router.host_in_flight(h0, pe), Some(32));
        // h1 fills its own 32: the shared 64 is full now.
        for _ in 0..32 {
            let (router, handle) = (router.clone(), handles[1]);
            held.push(s.spawn(move || router.read(h1, handle, 0, &mut [0u8; 512])));
        }
        gate.wait_for(64);
        let err = router.read(h2, handles[2], 0, &mut [0u8; 512]).unwrap_err();
        assert!(
            matches!(err, RouteError::QueueFull { pe: p, queue_depth: 64, host_in_flight: 0 } if p == pe),
            "{err}"
        );
        assert_eq!(
            router.host_in_flight(h2, pe),
            Some(0),
            "a refused command gives its place back"
        );
        gate.open();
        for r in held {
            r.join().unwrap().unwrap();
        }
    });
    assert_eq!(router.host_in_flight(h0, pe), Some(0));
    assert_eq!(router.pe_stats(pe).unwrap().in_flight, 0);
    router.read(h2, handles[2], 0, &mut [0u8; 512]).unwrap();
}

#[test]
fn access_rules_initiators_and_queue_depths_survive_reopen() {
    let mem = MemStore::new();
    let open = |mem: &MemStore| {
        ControlPlane::with_store(
            Box::new(mem.clone()),
            Limits::default(),
            JournalOptions::default().with_compact_every(u64::MAX),
        )
        .unwrap()
    };
    let w = World::on(open(&mem), 3, |s| s.with_host_queue_depth(48));
    let [h0, h1, _] = w.hosts;
    let (p0, p1, p2) = (w.pes[0], w.pes[1], w.pes[2]);
    let name = iqn("iqn.1998-01.com.vmware:esx-durable");
    w.plane.add_initiator(h0, name.clone()).unwrap();
    w.bring_up(0, &[p0, p1]);
    w.plane.map_pe(h1, p2).unwrap();
    let handle = bind_one(&w.plane, h0, w.vvol(), BindContext::Normal);
    let (kept, dropped) = if handle.pe == p0 { (p1, p0) } else { (p0, p1) };
    w.plane.set_pe_context(h0, &[kept]).unwrap();
    let want = |plane: &ControlPlane| {
        let host0 = plane.host(h0).unwrap();
        assert_eq!(host0.initiators, vec![name.clone()]);
        assert_eq!(host0.mapped_pes, vec![p0, p1]);
        assert_eq!(host0.pe_context, vec![kept]);
        assert_eq!(plane.host(h1).unwrap().mapped_pes, vec![p2]);
        assert_eq!(plane.host_for_initiator(&name), Some(h0));
        for pe in [p0, p1, p2] {
            assert_eq!(plane.pe(pe).unwrap().host_queue_depth, 48);
        }
        let router = plane.router();
        assert!(router.is_mapped(h0, p0) && router.is_mapped(h0, p1));
        assert!(!router.is_mapped(h0, p2) && router.is_mapped(h1, p2));
        // The binding on the dropped PE still serves; unmapping it is
        // still refused.
        assert_eq!(handle.pe, dropped);
        router.write(h0, handle, 0, &[9u8; 512], false).unwrap();
        assert!(matches!(
            plane.unmap_pe(h0, dropped),
            Err(ControlError::HostBoundOnPe { .. })
        ));
        plane.check_invariants();
    };
    want(&w.plane);
    drop(w);
    // Replay of the records (tags 17, 18, 19).
    let plane = open(&mem);
    want(&plane);
    // From a snapshot (its host-access sections).
    plane.compact_journal().unwrap();
    drop(plane);
    let plane = open(&mem);
    want(&plane);
}

/// Through the SCSI target: discovery follows the access rules, queue
/// full maps to TASK SET FULL or BUSY per host.
#[cfg(feature = "scsi")]
mod scsi {
    use vvol::scsi::{ItNexus, Lun, ScsiResponse, ScsiTarget, Status};

    use super::*;

    const INQUIRY: [u8; 6] = [0x12, 0, 0, 0, 0xFF, 0];
    const TUR: [u8; 6] = [0; 6];

    fn report_luns(select: u8) -> [u8; 12] {
        [0xA0, 0, select, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]
    }

    fn read10() -> [u8; 10] {
        [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    }

    /// Runs `cdb` after the nexus's power-on unit attention.
    fn run(t: &ScsiTarget, host: HostId, lun: Lun, cdb: &[u8]) -> ScsiResponse {
        let nexus = ItNexus::new(host, 1);
        let r = t.execute(nexus, lun, cdb, &[]);
        if r.status == Status::CheckCondition && r.sense.get(12) == Some(&0x29) {
            return t.execute(nexus, lun, cdb, &[]);
        }
        r
    }

    fn listed(r: &ScsiResponse) -> Vec<Lun> {
        assert_eq!(r.status, Status::Good, "{r:?}");
        let len = u32::from_be_bytes(r.data_in[..4].try_into().unwrap()) as usize;
        r.data_in[8..8 + len]
            .chunks(8)
            .map(|c| Lun(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn report_luns_shows_exactly_the_mapped_pes_before_any_pe_context() {
        let w = World::new(3, |s| s);
        let [h0, h1, _] = w.hosts;
        let t = ScsiTarget::new(Arc::clone(&w.plane), w.plane.arrays()[0]).unwrap();
        let alu = |i: usize| t.admin_lun_of(w.pes[i]).unwrap();
        let before = w.plane.router().host_inventory_changes(h0);
        w.plane.map_pe(h0, w.pes[0]).unwrap();
        w.plane.map_pe(h0, w.pes[2]).unwrap();
        let h1_before = w.plane.router().host_inventory_changes(h1);
        let after = w.plane.router().host_inventory_changes(h0);
        assert_eq!(
            after,
            before + 2,
            "each mapping changes the host's inventory"
        );
        // No set_pe_context yet: discovery comes first.
        assert!(w.plane.host(h0).unwrap().pe_context.is_empty());
        for at in [Lun([0; 8]), vvol::scsi::REPORT_LUNS_WLUN] {
            assert_eq!(
                listed(&run(&t, h0, at, &report_luns(0))),
                vec![alu(0), alu(2)]
            );
            assert!(
                listed(&run(&t, h1, at, &report_luns(0))).is_empty(),
                "h1 is masked"
            );
        }
        assert_eq!(
            run(&t, h0, alu(0), &INQUIRY).data_in[1] & 0x40,
            0x40,
            "LU_CONG"
        );
        assert_eq!(
            run(&t, h0, alu(1), &INQUIRY).data_in[0],
            0x7F,
            "PE 1 is not mapped"
        );
        assert_eq!(run(&t, h1, alu(0), &INQUIRY).data_in[0], 0x7F);
        assert_eq!(run(&t, h0, alu(2), &TUR).status, Status::Good);
        // The host reports a subset: visibility does not change.
        w.plane.set_pe_context(h0, &[w.pes[2]]).unwrap();
        assert_eq!(w.plane.router().host_inventory_changes(h0), after);
        assert_eq!(
            listed(&run(&t, h0, Lun([0; 8]), &report_luns(0))),
            vec![alu(0), alu(2)]
        );
        // Unmapping hides the PE.
        w.plane.unmap_pe(h0, w.pes[0]).unwrap();
        assert_eq!(w.plane.router().host_inventory_changes(h0), after + 1);
        assert_eq!(
            listed(&run(&t, h0, Lun([0; 8]), &report_luns(0))),
            vec![alu(2)]
        );
        assert_eq!(run(&t, h0, alu(0), &INQUIRY).data_in[0], 0x7F);
        assert_eq!(
            w.plane.router().host_inventory_changes(h1),
            h1_before,
            "another host's mapping changes nothing h1 sees"
        );
    }

    #[test]
    fn a_full_host_queue_is_task_set_full_for_that_host_only_and_a_full_pe_is_busy() {
        let w = World::new(1, |s| s.with_queue_depth(64).with_host_queue_depth(32));
        let pe = w.pes[0];
        for h in 0..3 {
            w.bring_up(h, &[pe]);
        }
        let t = ScsiTarget::new(Arc::clone(&w.plane), w.plane.arrays()[0]).unwrap();
        let gate = Gate::new();
        let v = create_on(
            &w.plane,
            w.container,
            VvolSpec::new(VvolType::Data, 4 * MIB),
            gate.clone() as _,
            "gate",
        );
        let luns: Vec<Lun> = w
            .hosts
            .iter()
            .map(|h| {
                t.lun_of(bind_one(&w.plane, *h, v, BindContext::Normal))
                    .unwrap()
            })
            .collect();
        assert!(luns.iter().all(|l| *l == luns[0]), "one shared binding");
        let lun = luns[0];
        for h in w.hosts {
            let _ = run(&t, h, lun, &TUR); // past the power-on unit attention
        }
        let [h0, h1, h2] = w.hosts;
        std::thread::scope(|s| {
            let mut held = Vec::new();
            for _ in 0..32 {
                let t = &t;
                held.push(s.spawn(move || run(t, h0, lun, &read10())));
            }
            gate.wait_for(32);
            // h0's own limit (Scsi.ScsiVVolPESNRO) is full: TASK SET FULL
            // for h0, while h1 on the same PE is served.
            assert_eq!(run(&t, h0, lun, &read10()).status, Status::TaskSetFull);
            let one = s.spawn(|| run(&t, h1, lun, &read10()));
            gate.wait_for(33);
            for _ in 0..31 {
                let t = &t;
                held.push(s.spawn(move || run(t, h1, lun, &read10())));
            }
            gate.wait_for(64);
            // The PE's shared queue is full: BUSY for h2, which has no
            // command on it; TASK SET FULL for h1, which has (SAM-5 5.3.1).
            assert_eq!(run(&t, h2, lun, &read10()).status, Status::Busy);
            assert_eq!(run(&t, h1, lun, &read10()).status, Status::TaskSetFull);
            gate.open();
            assert_eq!(one.join().unwrap().status, Status::Good);
            for r in held {
                assert_eq!(r.join().unwrap().status, Status::Good);
            }
        });
        assert_eq!(run(&t, h2, lun, &read10()).status, Status::Good);
    }
}
