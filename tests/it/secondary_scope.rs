//! Per-(PE, host) secondary-id spaces (review finding V2): an array in
//! `SecondaryIdScope::PerPeAndHost` scope gives each host binding through a
//! PE ids from its own space (Pure: 16,383 per host per PE), so the same id
//! names different vVols for different hosts. A LUN names a logical unit
//! only within one I_T nexus (SAM-5 4.6.1), which is what makes this sound.

use std::sync::Arc;

use vvol::*;

use crate::journal::fingerprint;
use crate::support::{bind_one, tagged_block};

const COMPANY: u32 = 0x24_A9_37;
const PE_LUN: u16 = 250;

struct Pure {
    plane: Arc<ControlPlane>,
    container: ContainerId,
    pe: PeId,
    hosts: [HostId; 2],
    array: ArrayId,
}

/// One array in `scope` with one SCSI PE whose space is `1..=last`, one
/// container, and two hosts seeing the PE.
fn setup(plane: ControlPlane, scope: SecondaryIdScope, last: u64) -> Pure {
    let array = plane
        .add_array(ArraySpec::new("pure", COMPANY).with_secondary_id_scope(scope))
        .unwrap();
    let container = plane
        .add_container(array, ContainerSpec::new("c", Protocol::Scsi, 1 << 40))
        .unwrap();
    let space = SecondaryIdSpace::new(SubsidiaryAddressing::Simple, 1, last).unwrap();
    let naa = Naa::from_parts(COMPANY, 0x1, 0x2).unwrap();
    let pe = plane
        .add_pe(array, PeSpec::scsi(naa, PE_LUN).with_secondary_ids(space))
        .unwrap();
    let hosts = [
        plane.add_host("esx-a").unwrap(),
        plane.add_host("esx-b").unwrap(),
    ];
    for h in hosts {
        crate::support::expose(&plane, h, &[pe]);
    }
    Pure {
        plane: Arc::new(plane),
        container,
        pe,
        hosts,
        array,
    }
}

impl Pure {
    fn vvol(&self) -> VvolId {
        self.plane
            .create_vvol(self.container, VvolSpec::new(VvolType::Data, 1 << 20))
            .unwrap()
    }

    fn read_tag(&self, host: HostId, handle: BindHandle) -> Result<Vec<u8>, RouteError> {
        let mut buf = vec![0u8; 512];
        self.plane.router().read(host, handle, 0, &mut buf)?;
        Ok(buf)
    }
}

#[test]
fn the_default_scope_is_per_pe() {
    let spec = ArraySpec::new("a", COMPANY);
    assert_eq!(spec.secondary_id_scope(), SecondaryIdScope::PerPe);
    let p = setup(
        ControlPlane::new(Limits::default()),
        SecondaryIdScope::PerPe,
        8,
    );
    assert_eq!(
        p.plane.array(p.array).unwrap().secondary_id_scope,
        SecondaryIdScope::PerPe
    );
    // One space for both hosts: the second host's vVol gets the next id,
    // and the host-less resolve answers.
    let (va, vb) = (p.vvol(), p.vvol());
    let ha = bind_one(&p.plane, p.hosts[0], va, BindContext::Normal);
    let hb = bind_one(&p.plane, p.hosts[1], vb, BindContext::Normal);
    assert_eq!(
        (ha.secondary_id, hb.secondary_id),
        (SecondaryId(1), SecondaryId(2))
    );
    let r = p.plane.router();
    assert!(r.resolve(p.pe, ha.secondary_id).is_some());
    assert_eq!(
        r.resolve_for_host(p.pe, p.hosts[1], ha.secondary_id),
        r.resolve(p.pe, ha.secondary_id),
        "per-PE scope: the host takes no part"
    );
}

#[test]
fn two_hosts_get_the_same_first_id_for_different_vvols_and_reach_only_their_own() {
    let p = setup(
        ControlPlane::new(Limits::default()),
        SecondaryIdScope::PerPeAndHost,
        16,
    );
    assert_eq!(
        p.plane.array(p.array).unwrap().secondary_id_scope,
        SecondaryIdScope::PerPeAndHost
    );
    let (va, vb) = (p.vvol(), p.vvol());
    let (a, b) = (p.hosts[0], p.hosts[1]);
    let ha = bind_one(&p.plane, a, va, BindContext::Normal);
    let hb = bind_one(&p.plane, b, vb, BindContext::Normal);
    assert_eq!(ha.pe, hb.pe);
    assert_eq!(
        ha.secondary_id,
        SecondaryId(1),
        "first id of host A's space"
    );
    assert_eq!(
        hb.secondary_id,
        SecondaryId(1),
        "first id of host B's space"
    );

    let router = p.plane.router();
    router
        .write(a, ha, 0, &tagged_block("vvol-a"), true)
        .unwrap();
    router
        .write(b, hb, 0, &tagged_block("vvol-b"), true)
        .unwrap();
    assert_eq!(p.read_tag(a, ha).unwrap(), tagged_block("vvol-a"));
    assert_eq!(p.read_tag(b, hb).unwrap(), tagged_block("vvol-b"));
    let mut back = vec![0u8; 512];
    p.plane.backend(va).unwrap().read_at(0, &mut back).unwrap();
    assert_eq!(back, tagged_block("vvol-a"), "A's write reached A's vVol");
    p.plane.backend(vb).unwrap().read_at(0, &mut back).unwrap();
    assert_eq!(back, tagged_block("vvol-b"), "B's write reached B's vVol");

    // Resolution is per host; the host-less form does not guess.
    let key_a = p.plane.vvol(va).unwrap().key;
    let key_b = p.plane.vvol(vb).unwrap().key;
    assert_eq!(
        router
            .resolve_for_host(p.pe, a, SecondaryId(1))
            .map(|r| r.vvol),
        Some(key_a)
    );
    assert_eq!(
        router
            .resolve_for_host(p.pe, b, SecondaryId(1))
            .map(|r| r.vvol),
        Some(key_b)
    );
    assert_eq!(router.resolve(p.pe, SecondaryId(1)), None);

    // The VASA handle round trip takes the host: the same text names each
    // host's own binding.
    let vasa_a = p.plane.vasa_handle(a, ha).unwrap();
    let vasa_b = p.plane.vasa_handle(b, hb).unwrap();
    assert_eq!(vasa_a.secondary_id, vasa_b.secondary_id);
    assert_eq!(p.plane.resolve_vasa_handle(a, &vasa_a).unwrap(), ha);
    assert_eq!(p.plane.resolve_vasa_handle(b, &vasa_b).unwrap(), hb);
    // B holds no binding of A's vVol: A's handle is not found for B.
    assert!(matches!(
        p.plane.resolve_vasa_handle(b, &vasa_a),
        Err(ControlError::VasaHandleNotFound { .. })
    ));
    assert_eq!(
        p.plane.vasa_secondary_id(ha).unwrap(),
        vasa_a.secondary_id,
        "on SCSI the text is the id's LUN whoever holds it"
    );
    p.plane.check_invariants();
}

#[test]
fn a_vvol_bound_by_two_hosts_gets_one_binding_per_host_and_unbind_leaves_the_other() {
    let p = setup(
        ControlPlane::new(Limits::default()),
        SecondaryIdScope::PerPeAndHost,
        16,
    );
    let (a, b) = (p.hosts[0], p.hosts[1]);
    let other = p.vvol();
    let shared = p.vvol();
    // A holds two, so the shared vVol is at id 2 for A and id 1 for B.
    bind_one(&p.plane, a, other, BindContext::Normal);
    let ha = bind_one(&p.plane, a, shared, BindContext::Normal);
    let hb = bind_one(&p.plane, b, shared, BindContext::Normal);
    assert_eq!(ha.secondary_id, SecondaryId(2));
    assert_eq!(hb.secondary_id, SecondaryId(1));
    let bindings = p.plane.bindings_for_vvol(shared).unwrap();
    assert_eq!(bindings.len(), 2, "one binding per host");
    for info in &bindings {
        assert_eq!(info.hosts.len(), 1, "{info:?}");
    }
    // A second bind by A counts on A's binding (same handle).
    assert_eq!(bind_one(&p.plane, a, shared, BindContext::Normal), ha);
    p.plane.unbind(a, ha, UnbindContext::Normal).unwrap();
    p.plane.unbind(a, ha, UnbindContext::Normal).unwrap();
    assert!(p.read_tag(a, ha).is_err(), "A's binding is gone");
    assert!(p.read_tag(b, hb).is_ok(), "B's binding stays");
    assert_eq!(p.plane.bindings_for_vvol(shared).unwrap().len(), 1);
    // B's handle does not work for A (A's id 1 names `other`; B's handle
    // has B's generation and A holds nothing of it).
    p.plane.check_invariants();
}

#[test]
fn the_per_host_limit_refuses_one_host_while_another_still_binds() {
    let p = setup(
        ControlPlane::new(Limits::default()),
        SecondaryIdScope::PerPeAndHost,
        3,
    );
    let (a, b) = (p.hosts[0], p.hosts[1]);
    let vvols: Vec<VvolId> = (0..5).map(|_| p.vvol()).collect();
    for v in &vvols[..3] {
        bind_one(&p.plane, a, *v, BindContext::Normal);
    }
    let fourth = p.plane.bind(a, &vvols[3..4], BindContext::Normal).unwrap();
    assert!(
        matches!(
            fourth[0],
            Err(ControlError::SecondaryIdsExhausted { vvol }) if vvol == vvols[3]
        ),
        "{fourth:?}"
    );
    let hb = bind_one(&p.plane, b, vvols[3], BindContext::Normal);
    assert_eq!(hb.secondary_id, SecondaryId(1));
    p.plane.check_invariants();
}

#[test]
fn a_pe_keeps_at_most_the_limit_of_host_spaces_and_frees_empty_ones() {
    let plane = ControlPlane::new(Limits::default().with_max_host_spaces_per_pe(1));
    let p = setup(plane, SecondaryIdScope::PerPeAndHost, 4);
    let (a, b) = (p.hosts[0], p.hosts[1]);
    let (va, vb) = (p.vvol(), p.vvol());
    let ha = bind_one(&p.plane, a, va, BindContext::Normal);
    let refused = p.plane.bind(b, &[vb], BindContext::Normal).unwrap();
    assert!(
        matches!(refused[0], Err(ControlError::SecondaryIdsExhausted { .. })),
        "{refused:?}"
    );
    // A's space goes with its last binding, so B can have one.
    p.plane.unbind(a, ha, UnbindContext::Normal).unwrap();
    let hb = bind_one(&p.plane, b, vb, BindContext::Normal);
    assert_eq!(hb.secondary_id, SecondaryId(1));
    assert!(
        hb.generation.0 > ha.generation.0,
        "a re-made space starts above every generation before: {hb:?} after {ha:?}"
    );
    p.plane.check_invariants();
}

#[test]
fn unbind_and_rebind_of_a_hosts_slot_bumps_its_generation_and_the_old_handle_fails() {
    let p = setup(
        ControlPlane::new(Limits::default()),
        SecondaryIdScope::PerPeAndHost,
        1,
    );
    let (a, b) = (p.hosts[0], p.hosts[1]);
    let (v1, v2, vb) = (p.vvol(), p.vvol(), p.vvol());
    // B keeps its own binding at id 1 throughout.
    let hb = bind_one(&p.plane, b, vb, BindContext::Normal);
    let old = bind_one(&p.plane, a, v1, BindContext::Normal);
    p.plane.unbind(a, old, UnbindContext::Normal).unwrap();
    let new = bind_one(&p.plane, a, v2, BindContext::Normal);
    assert_eq!(
        new.secondary_id, old.secondary_id,
        "the same (PE, host, id) slot"
    );
    assert!(new.generation.0 > old.generation.0);
    assert!(matches!(
        p.read_tag(a, old),
        Err(RouteError::NotBound { .. })
    ));
    assert!(matches!(
        p.plane.unbind(a, old, UnbindContext::Normal),
        Err(ControlError::HandleNotFound { .. })
    ));
    let key2 = p.plane.vvol(v2).unwrap().key;
    let r = p
        .plane
        .router()
        .resolve_for_host(p.pe, a, new.secondary_id)
        .unwrap();
    assert_eq!((r.vvol, r.generation), (key2, new.generation));
    assert!(p.read_tag(b, hb).is_ok(), "B's slot is untouched");
    // Even if A's space is dropped and made again (the floor), the old
    // generation never comes back.
    p.plane.unbind(a, new, UnbindContext::Normal).unwrap();
    let again = bind_one(&p.plane, a, v1, BindContext::Normal);
    assert!(again.generation.0 > new.generation.0);
    assert!(p.read_tag(a, old).is_err() && p.read_tag(a, new).is_err());
    p.plane.check_invariants();
}

#[test]
fn per_host_bindings_survive_reopen_and_compaction() {
    let mem = MemStore::new();
    let open = |mem: &MemStore| {
        ControlPlane::with_store(
            Box::new(mem.clone()),
            Limits::default(),
            JournalOptions::default().with_compact_every(u64::MAX),
        )
        .unwrap()
    };
    let p = setup(open(&mem), SecondaryIdScope::PerPeAndHost, 2);
    let (a, b) = (p.hosts[0], p.hosts[1]);
    let vvols: Vec<VvolId> = (0..4).map(|_| p.vvol()).collect();
    let ha = bind_one(&p.plane, a, vvols[0], BindContext::Normal);
    let hb = bind_one(&p.plane, b, vvols[1], BindContext::Normal);
    let gone = bind_one(&p.plane, a, vvols[2], BindContext::Normal);
    p.plane.unbind(a, gone, UnbindContext::Normal).unwrap();
    // C's space goes with its only binding: the PE's floor must survive.
    let c = p.plane.add_host("esx-c").unwrap();
    crate::support::expose(&p.plane, c, &[p.pe]);
    let c_gone = bind_one(&p.plane, c, vvols[2], BindContext::Normal);
    p.plane.unbind(c, c_gone, UnbindContext::Normal).unwrap();
    for compact in [false, true] {
        if compact {
            p.plane.compact_journal().unwrap();
        }
        let print = fingerprint(&p.plane);
        let reopened = open(&mem);
        assert_eq!(fingerprint(&reopened), print, "compacted first: {compact}");
        assert_eq!(
            reopened.array(p.array).unwrap().secondary_id_scope,
            SecondaryIdScope::PerPeAndHost
        );
        let router = reopened.router();
        assert!(router.resolve_for_host(p.pe, a, ha.secondary_id).is_some());
        assert!(router.resolve_for_host(p.pe, b, hb.secondary_id).is_some());
        assert_eq!(router.resolve(p.pe, SecondaryId(1)), None);
        let mut buf = vec![0u8; 512];
        assert!(router.read(a, ha, 0, &mut buf).is_ok());
        assert!(router.read(a, gone, 0, &mut buf).is_err());
        reopened.check_invariants();
    }
    // The writer goes; its successor's pools came back exactly.
    drop(p.plane);
    let reopened = open(&mem);
    let router = reopened.router();
    let mut buf = vec![0u8; 512];
    // The next bind of A gets the freed id 2 with a generation above the
    // one it had.
    let next = bind_one(&reopened, a, vvols[3], BindContext::Normal);
    assert_eq!(next.secondary_id, gone.secondary_id);
    assert!(next.generation.0 > gone.generation.0);
    reopened.unbind(a, next, UnbindContext::Normal).unwrap();
    // C's space is made again above every generation it had.
    let again = bind_one(&reopened, c, vvols[3], BindContext::Normal);
    assert_eq!(again.secondary_id, c_gone.secondary_id);
    assert!(
        again.generation.0 > c_gone.generation.0,
        "{again:?} after {c_gone:?}"
    );
    assert!(router.read(c, c_gone, 0, &mut buf).is_err());
    reopened.check_invariants();
}

#[cfg(feature = "scsi")]
mod scsi {
    use vvol::scsi::{ItNexus, Lun, ScsiTarget, Status};

    use super::*;

    fn report(target: &ScsiTarget, nexus: ItNexus) -> Vec<[u8; 8]> {
        let cdb = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
        let mut r = target.execute(nexus, Lun([0; 8]), &cdb, &[]);
        if r.status == Status::CheckCondition {
            // The power-on unit attention of a fresh nexus.
            r = target.execute(nexus, Lun([0; 8]), &cdb, &[]);
        }
        assert_eq!(r.status, Status::Good, "{r:?}");
        let len = u32::from_be_bytes(r.data_in[..4].try_into().unwrap()) as usize;
        r.data_in[8..8 + len]
            .chunks(8)
            .map(|c| c.try_into().unwrap())
            .collect()
    }

    fn read_block(target: &ScsiTarget, nexus: ItNexus, lun: Lun) -> Vec<u8> {
        let cdb = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        let mut r = target.execute(nexus, lun, &cdb, &[]);
        if r.status == Status::CheckCondition {
            r = target.execute(nexus, lun, &cdb, &[]);
        }
        assert_eq!(r.status, Status::Good, "{r:?}");
        r.data_in
    }

    /// Two hosts' SLUs on a per-host PE may have equal handles; they are
    /// different LUs (different vVols), so one's mode parameters are not
    /// the other's (SPC-5: mode parameters are per LU).
    #[test]
    fn equal_handles_of_two_hosts_keep_their_own_mode_parameters() {
        let p = setup(
            ControlPlane::new(Limits::default()),
            SecondaryIdScope::PerPeAndHost,
            16,
        );
        let (a, b) = (p.hosts[0], p.hosts[1]);
        let ha = bind_one(&p.plane, a, p.vvol(), BindContext::Normal);
        let hb = bind_one(&p.plane, b, p.vvol(), BindContext::Normal);
        assert_eq!(ha, hb, "the same handle in both hosts' spaces");
        let target = ScsiTarget::new(Arc::clone(&p.plane), p.array).unwrap();
        let (na, nb) = (ItNexus::new(a, 1), ItNexus::new(b, 1));
        let lun = target.lun_of(ha).unwrap();
        let sense = [0x1A, 0, 0x08, 0, 0xFF, 0]; // caching page
        let wce = |nexus| {
            let mut r = target.execute(nexus, lun, &sense, &[]);
            if r.status == Status::CheckCondition {
                r = target.execute(nexus, lun, &sense, &[]);
            }
            assert_eq!(r.status, Status::Good, "{r:?}");
            // Header (4), block descriptor (8), then the page: WCE is bit 2
            // of its byte 2.
            r.data_in[4 + 8 + 2] & 0x04 != 0
        };
        assert!(wce(na) && wce(nb), "WCE=1 by default");
        // Host a turns its write cache off.
        let page = target.execute(na, lun, &sense, &[]).data_in;
        let mut list = vec![0u8; 4];
        let mut caching = page[4 + 8..].to_vec();
        caching[2] &= !0x04;
        list.extend_from_slice(&caching);
        let select = [0x15, 0x10, 0, 0, list.len() as u8, 0];
        let r = target.execute(na, lun, &select, &list);
        assert_eq!(r.status, Status::Good, "{r:?}");
        assert!(!wce(na));
        // Host b's LU is another vVol: untouched, and no 2Ah/01h for it.
        let tur = target.execute(nb, lun, &[0; 6], &[]);
        assert_eq!(tur.status, Status::Good, "{tur:?}");
        assert!(wce(nb));
    }

    #[test]
    fn each_hosts_nexus_reaches_its_own_vvol_at_the_same_lun() {
        let p = setup(
            ControlPlane::new(Limits::default()),
            SecondaryIdScope::PerPeAndHost,
            16,
        );
        let (a, b) = (p.hosts[0], p.hosts[1]);
        let (va, vb) = (p.vvol(), p.vvol());
        let ha = bind_one(&p.plane, a, va, BindContext::Normal);
        let hb = bind_one(&p.plane, b, vb, BindContext::Normal);
        let router = p.plane.router();
        router
            .write(a, ha, 0, &tagged_block("vvol-a"), true)
            .unwrap();
        router
            .write(b, hb, 0, &tagged_block("vvol-b"), true)
            .unwrap();
        let target = ScsiTarget::new(Arc::clone(&p.plane), p.array).unwrap();
        let (na, nb) = (ItNexus::new(a, 1), ItNexus::new(b, 1));
        let lun_a = target.lun_of(ha).unwrap();
        let lun_b = target.lun_of(hb).unwrap();
        assert_eq!(lun_a, lun_b, "the same LUN under both nexuses");
        assert_eq!(read_block(&target, na, lun_a), tagged_block("vvol-a"));
        assert_eq!(read_block(&target, nb, lun_b), tagged_block("vvol-b"));
        // REPORT LUNS: each host sees the PE and its own one SLU.
        let admin = target.admin_lun_of(p.pe).unwrap().to_bytes();
        for nexus in [na, nb] {
            let luns = report(&target, nexus);
            assert_eq!(luns, vec![admin, lun_a.to_bytes()], "{nexus:?}");
        }
        // A unbinds: A's LUN names nothing for A, B's stays.
        p.plane.unbind(a, ha, UnbindContext::Normal).unwrap();
        assert_eq!(report(&target, na), vec![admin]);
        assert_eq!(report(&target, nb), vec![admin, lun_b.to_bytes()]);
        assert_eq!(read_block(&target, nb, lun_b), tagged_block("vvol-b"));
    }
}

#[cfg(feature = "nbd")]
#[test]
fn nbd_export_names_are_per_host_and_open_each_hosts_own_binding() {
    use vvol::nbd::{ExportCatalog, HostExports};

    let p = setup(
        ControlPlane::new(Limits::default()),
        SecondaryIdScope::PerPeAndHost,
        16,
    );
    let (a, b) = (p.hosts[0], p.hosts[1]);
    let (va, vb) = (p.vvol(), p.vvol());
    let ha = bind_one(&p.plane, a, va, BindContext::Normal);
    let hb = bind_one(&p.plane, b, vb, BindContext::Normal);
    let ea = HostExports::new(Arc::clone(&p.plane), a);
    let eb = HostExports::new(Arc::clone(&p.plane), b);
    let name = HostExports::export_name(ha);
    assert_eq!(name, HostExports::export_name(hb));
    assert_eq!(ea.list(), std::slice::from_ref(&name));
    assert_eq!(eb.list(), std::slice::from_ref(&name));
    let oa = ea.open(&name).unwrap();
    let ob = eb.open(&name).unwrap();
    assert_eq!((oa.handle(), oa.host()), (Some(ha), Some(a)));
    assert_eq!((ob.handle(), ob.host()), (Some(hb), Some(b)));
    let router = p.plane.router();
    router.write(a, ha, 0, &tagged_block("a"), true).unwrap();
    router.write(b, hb, 0, &tagged_block("b"), true).unwrap();
    let mut back = vec![0u8; 512];
    router.read(a, oa.handle().unwrap(), 0, &mut back).unwrap();
    assert_eq!(back, tagged_block("a"));
    router.read(b, ob.handle().unwrap(), 0, &mut back).unwrap();
    assert_eq!(back, tagged_block("b"));
}

/// Routing memory per binding (`Router::slot_bytes`): 16 bytes a slot in
/// per-PE scope, as before (BENCHMARKS.md: 16.25 B at 1M with partial
/// chunks; with the 40-byte `LiveBinding` record, under the 64-byte
/// budget); per-host scope adds one 16-byte cell per possible host on the
/// PE and a small table per host that bound there.
#[test]
fn routing_memory_per_binding_stays_within_budget_in_both_scopes() {
    const N: u64 = 1024;
    for scope in [SecondaryIdScope::PerPe, SecondaryIdScope::PerPeAndHost] {
        let limits = Limits::default().with_max_hosts(8);
        let p = setup(ControlPlane::new(limits), scope, N);
        let vvols: Vec<VvolId> = (0..N).map(|_| p.vvol()).collect();
        // Per PE: one host binds all N; per host: each host binds half.
        for (i, chunk) in vvols.chunks(16).enumerate() {
            let host = match scope {
                SecondaryIdScope::PerPe => p.hosts[0],
                _ => p.hosts[i % 2],
            };
            for r in p.plane.bind(host, chunk, BindContext::Normal).unwrap() {
                r.unwrap();
            }
        }
        let bytes = p.plane.router().slot_bytes() as u64;
        match scope {
            SecondaryIdScope::PerPe => assert_eq!(bytes, N * 16, "16 bytes a slot"),
            _ => {
                assert!(bytes > N * 16, "host cells and tables are counted: {bytes}");
                assert!(bytes / N <= 24, "{bytes} bytes for {N} bindings");
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    Bind { host: usize, vvol: usize },
    Unbind { host: usize, pick: usize },
    UnbindAll(usize),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        5 => (0..3usize, 0..6usize).prop_map(|(host, vvol)| Step::Bind { host, vvol }),
        3 => (0..3usize, any::<usize>()).prop_map(|(host, pick)| Step::Unbind { host, pick }),
        1 => (0..3usize).prop_map(Step::UnbindAll),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Random binds and unbinds by three hosts on one per-host PE (3 ids a
    /// host, at most 2 host spaces): every handle a host holds resolves, for
    /// that host only, to the vVol it bound; a handle once released never
    /// works again; a (host, id) slot's generations only grow, across its
    /// space being dropped and made again.
    #[test]
    fn per_host_slots_resolve_for_their_host_only_and_generations_only_grow(
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        use std::collections::HashMap;

        let plane = ControlPlane::new(Limits::default().with_max_host_spaces_per_pe(2));
        let p = setup(plane, SecondaryIdScope::PerPeAndHost, 3);
        let c = p.plane.add_host("esx-c").unwrap();
        crate::support::expose(&p.plane, c, &[p.pe]);
        let hosts = [p.hosts[0], p.hosts[1], c];
        let vvols: Vec<VvolId> = (0..6).map(|_| p.vvol()).collect();
        let mut newest: HashMap<(HostId, SecondaryId), u32> = HashMap::new();
        let mut released: Vec<(HostId, BindHandle)> = Vec::new();
        for s in &steps {
            match *s {
                Step::Bind { host, vvol } => {
                    let h = hosts[host];
                    let before = p.plane.bindings_for_host(h).unwrap();
                    let r = p.plane.bind(h, &vvols[vvol..=vvol], BindContext::Normal).unwrap();
                    match &r[0] {
                        Ok(handle) if !before.iter().any(|b| b.handle == *handle) => {
                            let last = newest.insert((h, handle.secondary_id), handle.generation.0);
                            proptest::prop_assert!(
                                last.is_none_or(|g| g < handle.generation.0),
                                "generation of {h} {handle:?} after {last:?}"
                            );
                        }
                        Ok(_) => {}
                        Err(e) => proptest::prop_assert!(
                            matches!(e, ControlError::SecondaryIdsExhausted { .. }),
                            "{e}"
                        ),
                    }
                }
                Step::Unbind { host, pick } => {
                    let h = hosts[host];
                    let held = p.plane.bindings_for_host(h).unwrap();
                    if !held.is_empty() {
                        let b = &held[pick % held.len()];
                        p.plane.unbind(h, b.handle, UnbindContext::Normal).unwrap();
                        if p.plane.bindings_for_host(h).unwrap().iter().all(|x| x.handle != b.handle) {
                            released.push((h, b.handle));
                        }
                    }
                }
                Step::UnbindAll(host) => {
                    let h = hosts[host];
                    for b in p.plane.bindings_for_host(h).unwrap() {
                        released.push((h, b.handle));
                    }
                    p.plane.unbind_all_from_host(h).unwrap();
                }
            }
            p.plane.check_invariants();
            let router = p.plane.router();
            for &h in &hosts {
                for b in p.plane.bindings_for_host(h).unwrap() {
                    proptest::prop_assert_eq!(b.hosts.len(), 1);
                    let key = p.plane.vvol(b.vvol).unwrap().key;
                    let r = router.resolve_for_host(p.pe, h, b.handle.secondary_id).unwrap();
                    proptest::prop_assert_eq!((r.vvol, r.generation), (key, b.handle.generation));
                    proptest::prop_assert!(p.read_tag(h, b.handle).is_ok());
                    for &other in hosts.iter().filter(|o| **o != h) {
                        // A handle means something only with its host
                        // (VASA binds per host): through another host it
                        // works only when that host holds the same handle
                        // of its own, in its own space.
                        if p.read_tag(other, b.handle).is_ok() {
                            let own = p.plane.bindings_for_host(other).unwrap();
                            let mine = own.iter().find(|o| o.handle == b.handle);
                            proptest::prop_assert!(mine.is_some(), "{other} reached {h}'s {b:?}");
                            let mine = mine.unwrap();
                            let r = router
                                .resolve_for_host(p.pe, other, b.handle.secondary_id)
                                .unwrap();
                            proptest::prop_assert_eq!(r.vvol, p.plane.vvol(mine.vvol).unwrap().key);
                        }
                    }
                }
                proptest::prop_assert_eq!(router.resolve(p.pe, SecondaryId(1)), None);
            }
            for (h, old) in &released {
                proptest::prop_assert!(p.read_tag(*h, *old).is_err(), "{h} {old:?} still works");
            }
        }
    }
}
