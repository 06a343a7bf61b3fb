//! Control-plane behaviour: topology rules, VASA bind semantics, rebind, events.

use std::collections::BTreeSet;

use vvol::testing::quickstart;
use vvol::{
    ArraySpec, BindContext, ContainerSpec, ControlError, ControlPlane, EventId, EventKind, Limits,
    Naa, NfsVersion, PeId, PeSpec, PeState, Protocol, RebindReason, ScsiPath, SecondaryId,
    SecondaryIdSpace, SubsidiaryAddressing, UnbindContext, VasaFault, VvolSpec, VvolType,
};

use crate::support::bind_one;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn naa(n: u64) -> Naa {
    Naa::from_parts(0x1a2b, n, n).unwrap()
}

/// One SCSI array with one container and `pes` PEs, and one host seeing all.
fn small(
    pes: usize,
    space: SecondaryIdSpace,
) -> (ControlPlane, Vec<PeId>, vvol::ContainerId, vvol::HostId) {
    let plane = ControlPlane::new(Limits::default());
    let a = plane.add_array(ArraySpec::new("a", 0x1a2b)).unwrap();
    let c = plane
        .add_container(a, ContainerSpec::new("c", Protocol::Scsi, 64 * GIB))
        .unwrap();
    let ids: Vec<PeId> = (0..pes)
        .map(|i| {
            plane
                .add_pe(
                    a,
                    PeSpec::scsi(naa(i as u64 + 1), 100 + i as u16).with_secondary_ids(space),
                )
                .unwrap()
        })
        .collect();
    let h = plane.add_host("h").unwrap();
    for pe in ids.iter() {
        plane.map_pe(h, *pe).unwrap();
    }
    plane.set_pe_context(h, &ids).unwrap();
    (plane, ids, c, h)
}

#[test]
fn vsphere_example_both_containers_bind_through_all_three_pes() {
    let (plane, topo) = quickstart().unwrap();
    let array = topo.arrays[0];
    let pes = plane.pes_for_array(array).unwrap();
    assert_eq!(pes.len(), 3);
    let host = topo.hosts[0];
    for container in &topo.containers[..2] {
        let mut seen = BTreeSet::new();
        // Bind fresh vVols of the container until every PE carried one.
        for _ in 0..3 {
            let v = plane
                .create_vvol(*container, VvolSpec::new(VvolType::Data, MIB))
                .unwrap();
            seen.insert(bind_one(&plane, host, v, BindContext::Normal).pe);
        }
        assert_eq!(seen, pes.iter().copied().collect(), "container {container}");
    }
    // And each PE can be forced for each container through the PE context.
    let other = plane.add_host("esx-single").unwrap();
    for pe in &pes {
        plane.map_pe(other, *pe).unwrap();
        plane.set_pe_context(other, &[*pe]).unwrap();
        for container in &topo.containers[..2] {
            let v = plane
                .create_vvol(*container, VvolSpec::new(VvolType::Data, MIB))
                .unwrap();
            assert_eq!(bind_one(&plane, other, v, BindContext::Normal).pe, *pe);
        }
        plane.unbind_all_from_host(other).unwrap();
    }
    plane.check_invariants();
}

#[test]
fn pes_serve_only_containers_of_their_array_and_protocol() {
    let (plane, topo) = quickstart().unwrap();
    let nfs_pe = topo.pes[3];
    let host = plane.add_host("nfs-only").unwrap();
    plane.map_pe(host, nfs_pe).unwrap();
    plane.set_pe_context(host, &[nfs_pe]).unwrap();
    // A SCSI container cannot bind through the NFS PE.
    let err = plane
        .bind(host, &[topo.vms[0].data], BindContext::Normal)
        .unwrap_err();
    assert!(
        matches!(err, ControlError::NoEligiblePe { host: h, .. } if h == host),
        "{err}"
    );
    // The NFS vVol binds through the NFS PE, with a path as its secondary id.
    let vm = &topo.vms[2];
    let config = bind_one(&plane, host, vm.config, BindContext::Normal);
    let data = bind_one(&plane, host, vm.data, BindContext::Normal);
    assert_eq!(config.pe, nfs_pe);
    assert_eq!(
        plane.vasa_secondary_id(config).unwrap(),
        format!("bronze/{}/", vm.config)
    );
    assert_eq!(
        plane.vasa_secondary_id(data).unwrap(),
        format!("bronze/{}", vm.data)
    );
}

#[test]
fn whole_call_faults() {
    let (plane, topo) = quickstart().unwrap();
    let host = topo.hosts[0];
    let err = plane.bind(host, &[], BindContext::Normal).unwrap_err();
    assert_eq!(err.fault(), VasaFault::InvalidArgument);
    let many: Vec<_> = (0..17)
        .map(|_| {
            plane
                .create_vvol(topo.containers[0], VvolSpec::new(VvolType::Other, MIB))
                .unwrap()
        })
        .collect();
    let err = plane.bind(host, &many, BindContext::Normal).unwrap_err();
    assert!(matches!(
        err,
        ControlError::BatchTooLarge {
            len: 17,
            max_batch: 16
        }
    ));
    assert_eq!(err.fault(), VasaFault::TooMany);
    let err = plane
        .bind(
            host,
            &[topo.vms[0].data, topo.vms[1].data],
            BindContext::Normal,
        )
        .unwrap_err();
    assert!(matches!(err, ControlError::MixedContainers { .. }), "{err}");
    assert_eq!(err.fault(), VasaFault::InvalidArgument);
    let err = plane
        .bind(vvol::HostId(99), &[topo.vms[0].data], BindContext::Normal)
        .unwrap_err();
    assert_eq!(err.fault(), VasaFault::NotFound);
    // Nothing was bound by the failed calls.
    assert!(plane.bindings_for_host(host).unwrap().is_empty());
}

#[test]
fn per_item_faults_do_not_fail_the_batch() {
    let (plane, topo) = quickstart().unwrap();
    let ghost: vvol::VvolId = "rfc4122.00000000-0000-4000-8000-000000000001"
        .parse()
        .unwrap();
    let results = plane
        .bind(
            topo.hosts[0],
            &[topo.vms[0].data, ghost, topo.vms[0].swap.unwrap()],
            BindContext::Normal,
        )
        .unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(ControlError::VvolNotFound(id)) if id == ghost));
    assert!(results[2].is_ok());
}

#[test]
fn repeated_binds_count_up_and_unbinds_count_down() {
    let (plane, topo) = quickstart().unwrap();
    let (h, v) = (topo.hosts[0], topo.vms[0].data);
    let first = bind_one(&plane, h, v, BindContext::Normal);
    let second = bind_one(&plane, h, v, BindContext::Normal);
    assert_eq!(first, second);
    assert_eq!(plane.bindings_for_vvol(v).unwrap()[0].hosts, vec![(h, 2)]);
    plane.unbind(h, first, UnbindContext::Normal).unwrap();
    assert!(
        plane
            .router()
            .resolve(first.pe, first.secondary_id)
            .is_some(),
        "count 1 left"
    );
    plane.unbind(h, first, UnbindContext::Normal).unwrap();
    assert!(
        plane
            .router()
            .resolve(first.pe, first.secondary_id)
            .is_none()
    );
    let err = plane.unbind(h, first, UnbindContext::Normal).unwrap_err();
    assert!(matches!(err, ControlError::HandleNotFound { .. }));
}

#[test]
fn hosts_share_a_binding_on_a_pe_they_both_see_and_split_otherwise() {
    let (plane, topo) = quickstart().unwrap();
    let v = topo.vms[0].data;
    let (h0, h1) = (topo.hosts[0], topo.hosts[1]);
    let a = bind_one(&plane, h0, v, BindContext::Normal);
    let b = bind_one(&plane, h1, v, BindContext::Normal);
    assert_eq!(a, b, "h1 sees a's PE, so it shares the binding");
    // A third host that does not see that PE gets its own binding.
    let h2 = plane.add_host("esx-03").unwrap();
    let elsewhere: Vec<PeId> = topo.pes[..3]
        .iter()
        .copied()
        .filter(|p| *p != a.pe)
        .collect();
    for pe in elsewhere.iter() {
        plane.map_pe(h2, *pe).unwrap();
    }
    plane.set_pe_context(h2, &elsewhere).unwrap();
    let c = bind_one(&plane, h2, v, BindContext::Normal);
    assert_ne!(c.pe, a.pe);
    assert_eq!(plane.bindings_for_vvol(v).unwrap().len(), 2);
    // Unbinding h0 keeps the shared binding for h1.
    plane.unbind(h0, a, UnbindContext::Normal).unwrap();
    assert!(plane.router().resolve(a.pe, a.secondary_id).is_some());
    plane.unbind(h1, a, UnbindContext::Normal).unwrap();
    assert!(plane.router().resolve(a.pe, a.secondary_id).is_none());
    // h2's binding was untouched.
    assert_eq!(plane.bindings_for_vvol(v).unwrap()[0].handle, c);
    // The wrong host cannot unbind it.
    assert!(plane.unbind(h0, c, UnbindContext::Normal).is_err());
}

#[test]
fn secondary_ids_are_fifo_and_generations_grow() {
    let space = SecondaryIdSpace::new(SubsidiaryAddressing::Simple, 1, 3).unwrap();
    let (plane, pes, c, h) = small(1, space);
    let vols: Vec<_> = (0..4)
        .map(|_| {
            plane
                .create_vvol(c, VvolSpec::new(VvolType::Data, MIB))
                .unwrap()
        })
        .collect();
    let handles: Vec<_> = vols[..3]
        .iter()
        .map(|v| bind_one(&plane, h, *v, BindContext::Normal))
        .collect();
    let sids: Vec<u64> = handles.iter().map(|h| h.secondary_id.get()).collect();
    assert_eq!(sids, vec![1, 2, 3]);
    // Out of ids: a per-item OutOfResource.
    let r = plane.bind(h, &[vols[3]], BindContext::Normal).unwrap();
    assert!(matches!(&r[0], Err(e) if e.fault() == VasaFault::OutOfResource));
    // Free 2 then 1: 2 is reused first (least recently freed), with generation 2.
    plane.unbind(h, handles[1], UnbindContext::Normal).unwrap();
    plane.unbind(h, handles[0], UnbindContext::Normal).unwrap();
    let again = bind_one(&plane, h, vols[3], BindContext::Normal);
    assert_eq!(
        (again.pe, again.secondary_id.get(), again.generation.get()),
        (pes[0], 2, 2)
    );
    // The old handle of slot 2 is now stale.
    assert!(plane.unbind(h, handles[1], UnbindContext::Normal).is_err());
    let next = bind_one(&plane, h, vols[1], BindContext::Normal);
    assert_eq!(next.secondary_id, SecondaryId(1));
}

#[test]
fn extended_flat_space_handles_print_as_vendors_do() {
    let space = SecondaryIdSpace::new(SubsidiaryAddressing::ExtendedFlat24, 1, 100_000).unwrap();
    let (plane, _, c, h) = small(1, space);
    let v = plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, MIB))
        .unwrap();
    let handle = bind_one(&plane, h, v, BindContext::Normal);
    assert_eq!(
        plane.vasa_secondary_id(handle).unwrap(),
        "0000D20000010000h"
    );
    let space =
        SecondaryIdSpace::new(SubsidiaryAddressing::ExtendedFlat40, 0xA6, 0xA6 + 10).unwrap();
    let (plane, _, c, h) = small(1, space);
    let v = plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, MIB))
        .unwrap();
    let handle = bind_one(&plane, h, v, BindContext::Normal);
    assert_eq!(
        plane.vasa_secondary_id(handle).unwrap(),
        "0000E200000000A6h"
    );
}

#[test]
fn default_policy_balances_and_breaks_ties_by_pe_id() {
    let (plane, pes, c, h) = small(3, SecondaryIdSpace::default());
    let got: Vec<PeId> = (0..6)
        .map(|_| {
            let v = plane
                .create_vvol(c, VvolSpec::new(VvolType::Data, MIB))
                .unwrap();
            bind_one(&plane, h, v, BindContext::Normal).pe
        })
        .collect();
    assert_eq!(got, [pes[0], pes[1], pes[2], pes[0], pes[1], pes[2]]);
}

#[test]
fn quota_and_max_size_are_out_of_resource_and_invalid_argument() {
    let plane = ControlPlane::new(Limits::default());
    let a = plane.add_array(ArraySpec::new("a", 1)).unwrap();
    let c = plane
        .add_container(
            a,
            ContainerSpec::new("c", Protocol::Scsi, 10 * MIB).with_max_vvol_bytes(6 * MIB),
        )
        .unwrap();
    let big = plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, 7 * MIB))
        .unwrap_err();
    assert_eq!(big.fault(), VasaFault::InvalidArgument);
    let v = plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, 6 * MIB))
        .unwrap();
    let err = plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, 5 * MIB))
        .unwrap_err();
    assert!(
        matches!(err, ControlError::QuotaExceeded { requested_bytes, available_bytes, .. }
        if requested_bytes == 5 * MIB && available_bytes == 4 * MIB)
    );
    assert_eq!(err.fault(), VasaFault::OutOfResource);
    plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, 4 * MIB))
        .unwrap();
    // Resize past the quota fails; deleting frees the quota.
    assert!(plane.resize_vvol(v, 7 * MIB).is_err());
    plane.delete_vvol(v).unwrap();
    assert_eq!(plane.container(c).unwrap().used_bytes, 4 * MIB);
    plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, 6 * MIB))
        .unwrap();
}

#[test]
fn resize_grows_only_and_reaches_routing() {
    let (plane, topo) = quickstart().unwrap();
    let (h, v) = (topo.hosts[0], topo.vms[0].data);
    let handle = bind_one(&plane, h, v, BindContext::Normal);
    let old = plane.vvol(v).unwrap().capacity_bytes;
    let router = plane.router();
    assert!(router.read(h, handle, old, &mut [0u8; 512]).is_err());
    plane.resize_vvol(v, old + MIB).unwrap();
    let mut block = [1u8; 512];
    router.read(h, handle, old, &mut block).unwrap();
    assert_eq!(block, [0u8; 512], "grown space reads as zeros");
    let err = plane.resize_vvol(v, old).unwrap_err();
    assert!(matches!(err, ControlError::Shrink { .. }));
    assert!(plane.resize_vvol(v, old + MIB + 512).is_err());
    let events = plane.events_since(EventId(0)).unwrap();
    assert!(events.iter().any(|e| e.kind
        == EventKind::VvolResized {
            vvol: v,
            capacity_bytes: old + MIB
        }));
}

#[test]
fn delete_of_a_bound_vvol_is_resource_in_use() {
    let (plane, topo) = quickstart().unwrap();
    let (h, v) = (topo.hosts[0], topo.vms[0].swap.unwrap());
    let handle = bind_one(&plane, h, v, BindContext::Normal);
    let err = plane.delete_vvol(v).unwrap_err();
    assert_eq!(err.fault(), VasaFault::ResourceInUse);
    plane.unbind(h, handle, UnbindContext::Normal).unwrap();
    plane.delete_vvol(v).unwrap();
    assert_eq!(plane.vvol(v).unwrap_err().fault(), VasaFault::NotFound);
}

#[test]
fn unmapping_a_pe_the_host_is_bound_on_is_refused_but_its_context_may_shrink() {
    // Before host access rules existed, dropping the PE from the PE context
    // was refused with HostBoundOnPe. Now the PE context is what the host
    // reports (accepted as reported) and the array-side mapping is what may
    // not be taken away under live bindings.
    let (plane, topo) = quickstart().unwrap();
    let h = topo.hosts[0];
    let handle = bind_one(&plane, h, topo.vms[0].data, BindContext::Normal);
    let err = plane.unmap_pe(h, handle.pe).unwrap_err();
    assert!(
        matches!(err, ControlError::HostBoundOnPe { host, pe } if host == h && pe == handle.pe)
    );
    assert_eq!(err.fault(), VasaFault::ResourceInUse);
    let without: Vec<PeId> = topo
        .pes
        .iter()
        .copied()
        .filter(|p| *p != handle.pe)
        .collect();
    plane.set_pe_context(h, &without).unwrap();
    assert!(!plane.host(h).unwrap().pe_context.contains(&handle.pe));
    assert!(plane.host(h).unwrap().mapped_pes.contains(&handle.pe));
    plane.unbind(h, handle, UnbindContext::Normal).unwrap();
    plane.unmap_pe(h, handle.pe).unwrap();
    assert!(!plane.host(h).unwrap().mapped_pes.contains(&handle.pe));
}

#[test]
fn unbind_all_from_host_and_from_all_hosts() {
    let (plane, topo) = quickstart().unwrap();
    let (h0, h1) = (topo.hosts[0], topo.hosts[1]);
    let vm = &topo.vms[0];
    plane.bind(h0, &vm.vvols(), BindContext::Normal).unwrap();
    plane.bind(h0, &vm.vvols(), BindContext::Normal).unwrap();
    plane.bind(h1, &[vm.data], BindContext::Normal).unwrap();
    assert_eq!(plane.unbind_all_from_host(h0).unwrap(), 3);
    assert!(plane.bindings_for_host(h0).unwrap().is_empty());
    assert_eq!(plane.bindings_for_host(h1).unwrap().len(), 1);
    assert_eq!(plane.unbind_from_all_hosts(vm.data).unwrap(), 1);
    assert!(plane.bindings_for_host(h1).unwrap().is_empty());
    plane.check_invariants();
}

#[test]
fn drain_rebind_sequence_keeps_both_handles_working_until_rebind_end() {
    let (plane, topo) = quickstart().unwrap();
    let (h, v) = (topo.hosts[0], topo.vms[0].data);
    let array = topo.arrays[0];
    let router = plane.router();
    let old = bind_one(&plane, h, v, BindContext::Normal);
    router.write(h, old, 0, &[5u8; 512], false).unwrap();
    let last = plane.last_event_id();
    let rebind = plane.drain_pe(old.pe).unwrap();
    let events = plane.events_since(last).unwrap();
    assert_eq!(
        events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        [
            EventKind::Rebind {
                array,
                pe: old.pe,
                reason: RebindReason::Drain,
                vvols: vec![v]
            },
            EventKind::PeDraining { array, pe: old.pe },
        ]
    );
    assert_eq!(rebind, events[0].id, "drain_pe returns the Rebind event");
    assert_eq!(plane.pe(old.pe).unwrap().state, PeState::Draining);
    assert!(matches!(
        plane.drain_pe(old.pe),
        Err(ControlError::PeStateConflict { pe, state: PeState::Draining, .. }) if pe == old.pe
    ));
    // No new binds on the draining PE, even when it is the host's only choice.
    let fresh = plane
        .create_vvol(topo.containers[0], VvolSpec::new(VvolType::Data, MIB))
        .unwrap();
    let h2 = plane.add_host("drain-only").unwrap();
    plane.map_pe(h2, old.pe).unwrap();
    plane.set_pe_context(h2, &[old.pe]).unwrap();
    assert!(matches!(
        plane.bind(h2, &[fresh], BindContext::Normal),
        Err(ControlError::NoEligiblePe { .. })
    ));
    // Rebind: unbind(RebindStart) is a no-op, bind(RebindStart) gives a new handle.
    plane.unbind(h, old, UnbindContext::RebindStart).unwrap();
    let new = bind_one(&plane, h, v, BindContext::RebindStart);
    assert_ne!(new.pe, old.pe);
    let mut block = [0u8; 512];
    router.read(h, old, 0, &mut block).unwrap();
    assert_eq!(block, [5u8; 512]);
    router.read(h, new, 0, &mut block).unwrap();
    assert_eq!(block, [5u8; 512], "both handles reach the same vVol");
    plane.unbind(h, old, UnbindContext::RebindEnd).unwrap();
    assert!(router.read(h, old, 0, &mut block).is_err());
    // Drained with its last binding: the PE stays, with its place in the
    // array and in the host's PE context, until it is removed.
    assert_eq!(plane.pe(old.pe).unwrap().state, PeState::Drained);
    assert!(plane.pes_for_array(array).unwrap().contains(&old.pe));
    assert!(plane.host(h).unwrap().pe_context.contains(&old.pe));
    assert!(
        plane
            .events_since(last)
            .unwrap()
            .iter()
            .any(|e| e.kind == EventKind::PeDrained { array, pe: old.pe })
    );
    plane.check_invariants();
    // Restored, it takes binds again; removed, it leaves everywhere.
    plane.restore_pe(old.pe).unwrap();
    assert_eq!(plane.pe(old.pe).unwrap().state, PeState::Active);
    let again = bind_one(&plane, h2, fresh, BindContext::Normal);
    assert_eq!(again.pe, old.pe);
    plane.unbind(h2, again, UnbindContext::Normal).unwrap();
    plane.remove_pe(old.pe).unwrap();
    assert_eq!(plane.pe(old.pe).unwrap_err().fault(), VasaFault::NotFound);
    assert!(!plane.pes_for_array(array).unwrap().contains(&old.pe));
    assert!(!plane.host(h).unwrap().pe_context.contains(&old.pe));
    assert!(
        plane
            .events_since(last)
            .unwrap()
            .iter()
            .any(|e| e.kind == EventKind::PeRemoved { array, pe: old.pe })
    );
    plane.check_invariants();
}

#[test]
fn failed_pe_handles_fail_at_once_and_restore_brings_them_back() {
    let (plane, topo) = quickstart().unwrap();
    let (h, v) = (topo.hosts[0], topo.vms[1].data);
    let array = topo.arrays[0];
    let router = plane.router();
    let old = bind_one(&plane, h, v, BindContext::Normal);
    router.write(h, old, 0, &[9u8; 512], false).unwrap();
    let last = plane.last_event_id();
    plane.fail_pe(old.pe).unwrap();
    let kinds: Vec<_> = plane
        .events_since(last)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Rebind {
                array,
                pe: old.pe,
                reason: RebindReason::Failure,
                vvols: vec![v]
            },
            EventKind::PeFailed { array, pe: old.pe },
        ]
    );
    let err = router.read(h, old, 0, &mut [0u8; 512]).unwrap_err();
    assert!(matches!(err, vvol::RouteError::PeFailed { pe } if pe == old.pe));
    assert!(router.resolve(old.pe, old.secondary_id).is_none());
    // The failed PE stays as an object with its binding, in the host's context.
    let pe = plane.pe(old.pe).unwrap();
    assert_eq!((pe.state, pe.bindings), (PeState::Failed, 1));
    assert!(plane.host(h).unwrap().pe_context.contains(&old.pe));
    assert!(matches!(
        plane.remove_pe(old.pe),
        Err(ControlError::PeBound { bindings: 1, .. })
    ));
    // A normal bind does not return the failed handle.
    let new = bind_one(&plane, h, v, BindContext::Normal);
    assert_ne!(new.pe, old.pe);
    router.read(h, new, 0, &mut [0u8; 512]).unwrap();
    // Restored, the binding it kept serves I/O again with the same handle.
    plane.restore_pe(old.pe).unwrap();
    let mut block = [0u8; 512];
    router.read(h, old, 0, &mut block).unwrap();
    assert_eq!(block, [9u8; 512]);
    assert!(
        plane
            .events_since(last)
            .unwrap()
            .iter()
            .any(|e| e.kind == EventKind::PeRestored { array, pe: old.pe })
    );
    // Failed again, and unbound: it stays, Failed, with no bindings.
    plane.fail_pe(old.pe).unwrap();
    assert!(matches!(
        plane.fail_pe(old.pe),
        Err(ControlError::PeStateConflict {
            state: PeState::Failed,
            ..
        })
    ));
    plane.unbind(h, old, UnbindContext::RebindEnd).unwrap();
    let pe = plane.pe(old.pe).unwrap();
    assert_eq!((pe.state, pe.bindings), (PeState::Failed, 0));
    plane.remove_pe(old.pe).unwrap();
    plane.check_invariants();
}

#[test]
fn draining_an_unbound_pe_drains_it_at_once_and_a_removed_id_is_never_reused() {
    let (plane, pes, _, _) = small(2, SecondaryIdSpace::default());
    let last = plane.last_event_id();
    plane.drain_pe(pes[1]).unwrap();
    assert_eq!(plane.pe(pes[1]).unwrap().state, PeState::Drained);
    let kinds: Vec<_> = plane
        .events_since(last)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        matches!(kinds.as_slice(), [EventKind::PeDrained { pe, .. }] if *pe == pes[1]),
        "no Rebind event for a PE with nothing bound: {kinds:?}"
    );
    assert!(matches!(
        plane.restore_pe(pes[0]),
        Err(ControlError::PeStateConflict {
            state: PeState::Active,
            ..
        })
    ));
    plane.remove_pe(pes[1]).unwrap();
    assert!(plane.pe(pes[1]).is_err());
    let a = plane.arrays()[0];
    let fresh = plane.add_pe(a, PeSpec::scsi(naa(50), 200)).unwrap();
    assert!(fresh > pes[1]);
    // Its NAA and LUN are free again.
    plane.add_pe(a, PeSpec::scsi(naa(2), 101)).unwrap();
}

#[test]
fn pe_naming_must_be_unique() {
    let (plane, pes, _, _) = small(1, SecondaryIdSpace::default());
    let a = plane.arrays()[0];
    let err = plane.add_pe(a, PeSpec::scsi(naa(1), 7)).unwrap_err();
    assert!(matches!(err, ControlError::DuplicateNaa { existing, .. } if existing == pes[0]));
    let err = plane.add_pe(a, PeSpec::scsi(naa(9), 100)).unwrap_err();
    assert!(matches!(
        err,
        ControlError::DuplicateAdminLun { admin_lun: 100, .. }
    ));
    let err = plane
        .add_pe(vvol::ArrayId(7), PeSpec::nfs("h", "/e", NfsVersion::V3))
        .unwrap_err();
    assert_eq!(err.fault(), VasaFault::NotFound);
    assert!(plane.remove_pe(pes[0]).is_ok());
}

/// A relative target port belongs to one target port group (SPC-5
/// 5.16.2.1), whichever PE reports it: RTPG and the ALUA state of every LU
/// behind the port depend on it (review S17).
#[test]
fn a_target_port_keeps_one_port_group_across_the_pes_of_an_array() {
    let (plane, pes, _, _) = small(1, SecondaryIdSpace::default());
    let a = plane.arrays()[0];
    let vvol::Transport::Scsi { paths, .. } = plane.pe(pes[0]).unwrap().transport else {
        panic!("a SCSI PE");
    };
    let port = paths[0];
    let elsewhere = ScsiPath::new(port.relative_target_port, port.target_port_group + 1);
    let err = plane
        .add_pe(a, PeSpec::scsi(naa(60), 60).with_paths(vec![elsewhere]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ControlError::PortGroupMismatch { relative_target_port, target_port_group, existing, existing_group, .. }
                if relative_target_port == port.relative_target_port
                    && target_port_group == port.target_port_group + 1
                    && existing == pes[0]
                    && existing_group == port.target_port_group
        ),
        "{err}"
    );
    assert_eq!(err.fault(), VasaFault::InvalidArgument);
    // The same group, or a new port, is fine; so is another array.
    let more = vec![port, ScsiPath::new(port.relative_target_port + 10, 9)];
    plane
        .add_pe(a, PeSpec::scsi(naa(61), 61).with_paths(more))
        .unwrap();
    let b = plane.add_array(ArraySpec::new("b", 2)).unwrap();
    plane
        .add_pe(b, PeSpec::scsi(naa(62), 62).with_paths(vec![elsewhere]))
        .unwrap();
}

#[test]
fn limits_are_enforced() {
    let plane = ControlPlane::new(
        Limits::default()
            .with_max_pes(1)
            .with_max_hosts(1)
            .with_max_vvols(1),
    );
    let a = plane.add_array(ArraySpec::new("a", 1)).unwrap();
    let c = plane
        .add_container(a, ContainerSpec::new("c", Protocol::Scsi, GIB))
        .unwrap();
    plane.add_pe(a, PeSpec::scsi(naa(1), 1)).unwrap();
    assert!(matches!(
        plane.add_pe(a, PeSpec::scsi(naa(2), 2)),
        Err(ControlError::TooMany { .. })
    ));
    plane.add_host("h").unwrap();
    assert!(matches!(
        plane.add_host("i"),
        Err(ControlError::TooMany { .. })
    ));
    let v = plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, MIB))
        .unwrap();
    assert!(matches!(
        plane.create_vvol(c, VvolSpec::new(VvolType::Data, MIB)),
        Err(ControlError::TooMany { .. })
    ));
    plane.delete_vvol(v).unwrap();
    plane
        .create_vvol(c, VvolSpec::new(VvolType::Data, MIB))
        .unwrap();
    assert!(matches!(
        plane.add_host("h"),
        Err(ControlError::DuplicateName { .. }) | Err(ControlError::TooMany { .. })
    ));
}

#[test]
fn events_report_lost_when_the_caller_falls_behind() {
    let plane = ControlPlane::new(Limits::default().with_event_window(2));
    let a = plane.add_array(ArraySpec::new("a", 1)).unwrap();
    for i in 0..4 {
        let pe = plane.add_pe(a, PeSpec::scsi(naa(i + 1), i as u16)).unwrap(); // PeAdded
        plane.drain_pe(pe).unwrap(); // PeDrained
        plane.remove_pe(pe).unwrap(); // PeRemoved
    }
    assert_eq!(plane.last_event_id(), EventId(12));
    let err = plane.events_since(EventId(0)).unwrap_err();
    assert!(matches!(
        err,
        ControlError::LostEvent {
            oldest: EventId(11),
            ..
        }
    ));
    assert_eq!(err.fault(), VasaFault::LostEvent);
    let kept = plane.events_since(EventId(10)).unwrap();
    assert_eq!(
        kept.iter().map(|e| e.id).collect::<Vec<_>>(),
        [EventId(11), EventId(12)]
    );
    assert!(matches!(kept[0].kind, EventKind::PeDrained { .. }));
    assert!(plane.events_since(EventId(12)).unwrap().is_empty());
}

#[test]
fn same_seed_gives_same_ids() {
    let (a, ta) = quickstart().unwrap();
    let (b, tb) = quickstart().unwrap();
    assert_eq!(ta, tb);
    assert_eq!(
        a.vvol(ta.vms[0].data).unwrap().id,
        b.vvol(tb.vms[0].data).unwrap().id
    );
    let c = ControlPlane::new(Limits::default())
        .with_id_seed(7)
        .unwrap();
    let arr = c.add_array(ArraySpec::new("a", 1)).unwrap();
    let cont = c
        .add_container(arr, ContainerSpec::new("c", Protocol::Nfs, GIB))
        .unwrap();
    assert_ne!(
        c.create_vvol(cont, VvolSpec::new(VvolType::Data, MIB))
            .unwrap(),
        ta.vms[0].config
    );
}

#[test]
fn rebind_moves_handles_off_a_failed_pe_and_keeps_those_it_cannot_move() {
    let (plane, topo) = quickstart().unwrap();
    let (h, vm) = (topo.hosts[0], &topo.vms[0]);
    let router = plane.router();
    let handles: Vec<vvol::BindHandle> = plane
        .bind(h, &vm.vvols(), BindContext::Normal)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for (i, handle) in handles.iter().enumerate() {
        router
            .write(h, *handle, 0, &[i as u8 + 1; 512], true)
            .unwrap();
    }
    let failed = handles[0].pe;
    plane.fail_pe(failed).unwrap();
    // A handle the host never held answers per item; the others move.
    let stale = vvol::BindHandle {
        generation: vvol::Generation(handles[0].generation.0 + 1),
        ..handles[0]
    };
    let res = plane.rebind(h, &[handles[0], stale]).unwrap();
    assert!(
        matches!(res[1], Err(ControlError::HandleNotFound { .. })),
        "{:?}",
        res[1]
    );
    let moved = *res[0].as_ref().unwrap();
    assert_ne!(moved.pe, failed);
    let mut block = [0u8; 512];
    router.read(h, moved, 0, &mut block).unwrap();
    assert_eq!(block, [1u8; 512], "the new handle reaches the same vVol");
    assert!(
        router.read(h, handles[0], 0, &mut block).is_err(),
        "RebindEnd released the old one"
    );
    assert!(
        plane
            .bindings_for_host(h)
            .unwrap()
            .iter()
            .all(|b| b.handle.pe != failed)
    );
    // A host that sees only the failed PE has nowhere to go: it keeps its
    // handle, and the binding stays for when the PE is restored.
    let lonely = plane.add_host("lonely").unwrap();
    plane.restore_pe(failed).unwrap();
    plane.map_pe(lonely, failed).unwrap();
    plane.set_pe_context(lonely, &[failed]).unwrap();
    let kept = bind_one(&plane, lonely, vm.data, BindContext::Normal);
    plane.fail_pe(failed).unwrap();
    let res = plane.rebind(lonely, &[kept]).unwrap();
    assert!(
        matches!(res[0], Err(ControlError::NoEligiblePe { .. })),
        "{:?}",
        res[0]
    );
    let held: Vec<_> = plane
        .bindings_for_host(lonely)
        .unwrap()
        .iter()
        .map(|b| b.handle)
        .collect();
    assert_eq!(held, [kept]);
    plane.restore_pe(failed).unwrap();
    router.read(lonely, kept, 0, &mut block).unwrap();
    assert_eq!(block, [2u8; 512]);
    plane.check_invariants();
}
