//! Isolation: a host that has not bound a vVol cannot read or write it by
//! guessing the PE and secondary id (and even the generation), through the
//! router, the SCSI target or the NBD gateway.
//!
//! Already covered elsewhere: `routing::only_hosts_holding_the_binding_get_access`
//! (the exact handle from another host), `scsi_target::inquiry_sets_lu_cong_on_pe_and_slu_and_pq3_when_unbound`
//! (INQUIRY PQ 011b and READ to another host's SLU).

use vvol::testing::quickstart;
use vvol::{BindContext, BindHandle, Generation, RouteError, SecondaryId};

use crate::support::{bind_one, tagged_block};

#[test]
fn router_refuses_guessed_handles_of_another_host() {
    let (plane, topo) = quickstart().unwrap();
    let (owner, intruder) = (topo.hosts[0], topo.hosts[1]);
    let handle = bind_one(&plane, owner, topo.vms[0].data, BindContext::Normal);
    // The intruder holds a binding of its own.
    let own = bind_one(&plane, intruder, topo.vms[1].data, BindContext::Normal);
    let router = plane.router();
    router
        .write(owner, handle, 0, &tagged_block("owner"), true)
        .unwrap();
    let current = router.resolve(handle.pe, handle.secondary_id).unwrap();
    assert_eq!(current.generation, handle.generation);

    let (mut denied, mut not_bound) = (0, 0);
    let first = handle.secondary_id.0.saturating_sub(4);
    for sid in first..handle.secondary_id.0 + 4 {
        if own.pe == handle.pe && sid == own.secondary_id.0 {
            continue;
        }
        for generation in 0..4 {
            let guess = BindHandle {
                pe: handle.pe,
                secondary_id: SecondaryId(sid),
                generation: Generation(generation),
            };
            let mut buf = [0xEEu8; 512];
            let read = router.read(intruder, guess, 0, &mut buf);
            assert_eq!(buf, [0xEE; 512], "no data reaches the intruder");
            let write = router.write(intruder, guess, 0, &[0xFF; 512], true);
            for result in [read.map(|_| ()), write] {
                match result {
                    Err(RouteError::AccessDenied { host, .. }) => {
                        assert_eq!(host, intruder);
                        assert_eq!(guess, handle, "denied only where a binding is");
                        denied += 1;
                    }
                    Err(RouteError::NotBound { .. }) => not_bound += 1,
                    other => panic!("{guess}: expected a refusal, got {other:?}"),
                }
            }
        }
    }
    assert_eq!(denied, 2, "the exact guess is refused for the host");
    assert!(not_bound > 0);
    let mut back = vec![0u8; 512];
    router.read(owner, handle, 0, &mut back).unwrap();
    assert_eq!(back, tagged_block("owner"), "the intruder wrote nothing");
}

#[cfg(feature = "scsi")]
#[test]
fn scsi_other_host_cannot_write_or_read_a_slu() {
    use crate::scsi_target::{Fixture, kcq};
    use vvol::scsi::Status;

    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    // Host 1 binds a vVol of its own on the same PE.
    let (_, own) = f.bind(1, f.vvol(4));
    f.ready(0);
    f.ready(1);
    let write10 = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let read10 = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    assert_eq!(f.run(0, slu, &write10, &[0x11; 512]).status, Status::Good);
    let r = f.run(1, slu, &write10, &[0x66; 512]);
    assert_eq!((r.status, kcq(&r)), (Status::CheckCondition, (5, 0x25, 0)));
    let r = f.run(1, slu, &read10, &[]);
    assert_eq!((r.status, kcq(&r)), (Status::CheckCondition, (5, 0x25, 0)));
    assert!(r.data_in.is_empty());
    // INQUIRY: peripheral qualifier 011b, no device.
    let r = f.run(1, slu, &[0x12, 0, 0, 0, 36, 0], &[]);
    assert_eq!(r.status, Status::Good);
    assert_eq!(r.data_in[0], 0x7F);
    // Its own SLU works, and the owner's data is untouched.
    assert_eq!(f.run(1, own, &read10, &[]).status, Status::Good);
    let r = f.run(0, slu, &read10, &[]);
    assert_eq!(r.data_in, vec![0x11; 512]);
}

#[cfg(feature = "nbd")]
#[test]
fn nbd_gateway_of_one_host_does_not_export_anothers_bindings() {
    use std::time::Duration;
    use vvol::nbd::{Gateway, HostExports, NbdBackend, NbdConfig, ServerConfig};
    use vvol::{VvolSpec, VvolType};

    let g = Gateway::start("127.0.0.1:0", 1, None, ServerConfig::default()).expect("gateway");
    let owner = g.topology.hosts[0];
    assert_ne!(owner, g.host);
    let secret = g
        .plane
        .create_vvol(
            g.topology.containers[0],
            VvolSpec::new(VvolType::Data, 1 << 20),
        )
        .unwrap();
    let handle = bind_one(&g.plane, owner, secret, BindContext::Normal);
    g.plane
        .router()
        .write(owner, handle, 0, &tagged_block("secret"), true)
        .unwrap();
    let name = HostExports::export_name(handle);
    let config = NbdConfig::tcp(g.server.local_addr(), name.clone())
        .with_reconnect_attempts(0, Duration::ZERO);
    let listed = NbdBackend::list_exports(&config).expect("list");
    assert_eq!(listed.len(), g.export_names().len());
    assert!(!listed.contains(&name), "{name} listed for another host");
    NbdBackend::connect(config).expect_err("another host's export opens");
    // Guessing neighbouring secondary ids opens nothing either.
    for sid in handle.secondary_id.0.saturating_sub(2)..handle.secondary_id.0 + 3 {
        let guess = format!("{}:{sid}", handle.pe.0);
        if listed.contains(&guess) {
            continue;
        }
        let config = NbdConfig::tcp(g.server.local_addr(), guess.clone())
            .with_reconnect_attempts(0, Duration::ZERO);
        assert!(NbdBackend::connect(config).is_err(), "{guess} opened");
    }
}
