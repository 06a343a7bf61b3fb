//! Host-side multipathing to a SCSI PE: failover, ALUA, policies.

use std::sync::Arc;

use vvol::scsi::{AluaState, Lun, Multipath, MultipathError, PathPolicy, ScsiTarget, Status};
use vvol::{BindContext, ControlPlane, HostId};

use super::scsi_target::Fixture;

const READ: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];

struct Setup {
    f: Fixture,
    target: Arc<ScsiTarget>,
    slu: Lun,
}

fn setup() -> Setup {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    let target = Arc::new(ScsiTarget::new(Arc::clone(&f.plane), f.array()).unwrap());
    Setup { f, target, slu }
}

fn device(s: &Setup, policy: PathPolicy) -> Multipath {
    Multipath::new(
        Arc::clone(&s.target),
        s.f.hosts[0],
        s.f.alu(),
        &[1, 2],
        policy,
    )
    .unwrap()
}

fn read_ok(d: &Multipath, lun: Lun) -> u16 {
    let r = d.execute(lun, &READ, &[]).unwrap();
    assert_eq!(r.status, Status::Good, "{r:?}");
    d.current_path().unwrap()
}

#[test]
fn mru_fails_over_without_an_error_and_stays() {
    let s = setup();
    let d = device(&s, PathPolicy::MostRecentlyUsed);
    assert_eq!(read_ok(&d, s.slu), 1);
    d.set_link(1, false).unwrap();
    assert_eq!(read_ok(&d, s.slu), 2);
    d.set_link(1, true).unwrap();
    assert_eq!(read_ok(&d, s.slu), 2, "MRU does not fail back");
}

#[test]
fn fixed_fails_back_to_the_preferred_path() {
    let s = setup();
    let d = device(&s, PathPolicy::Fixed { preferred: Some(2) });
    assert_eq!(read_ok(&d, s.slu), 2);
    d.set_link(2, false).unwrap();
    assert_eq!(read_ok(&d, s.slu), 1);
    d.set_link(2, true).unwrap();
    assert_eq!(read_ok(&d, s.slu), 2, "Fixed fails back");
    d.set_preferred(1).unwrap();
    assert_eq!(read_ok(&d, s.slu), 1);
    assert_eq!(d.set_preferred(9), Err(MultipathError::UnknownPath(9)));
}

#[test]
fn round_robin_switches_every_n_commands() {
    let s = setup();
    assert_eq!(
        PathPolicy::round_robin(),
        PathPolicy::RoundRobin { iops: 1000 }
    );
    let d = device(&s, PathPolicy::RoundRobin { iops: 3 });
    let used: Vec<u16> = (0..9).map(|_| read_ok(&d, s.slu)).collect();
    assert_eq!(used, [1, 1, 1, 2, 2, 2, 1, 1, 1]);
    // Only optimized paths while one exists.
    s.target
        .set_alua_state(1, AluaState::ActiveNonOptimized)
        .unwrap();
    let used: Vec<u16> = (0..6).map(|_| read_ok(&d, s.slu)).collect();
    assert!(used.iter().all(|&p| p == 2), "{used:?}");
}

#[test]
fn alua_standby_and_unavailable_fail_over_then_run_out() {
    let s = setup();
    let d = device(&s, PathPolicy::MostRecentlyUsed);
    let data = vec![0x5Au8; 512];
    let write = [0x2A, 0x08, 0, 0, 0, 7, 0, 0, 1, 0];
    assert_eq!(
        d.execute(s.slu, &write, &data).unwrap().status,
        Status::Good
    );
    assert_eq!(d.current_path(), Some(1));
    s.target.set_alua_state(1, AluaState::Standby).unwrap();
    let r = d
        .execute(s.slu, &[0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0], &[])
        .unwrap();
    assert_eq!(r.status, Status::Good);
    assert_eq!(r.data_in, data);
    assert_eq!(d.current_path(), Some(2));
    let paths = d.paths();
    assert_eq!(
        (paths[0].target_port_group, paths[0].state),
        (1, AluaState::Standby)
    );
    assert_eq!(paths[1].state, AluaState::ActiveOptimized);
    s.target.set_alua_state(2, AluaState::Unavailable).unwrap();
    assert!(matches!(
        d.execute(s.slu, &READ, &[]),
        Err(MultipathError::NoActivePath { .. })
    ));
    // A path coming back makes the device usable again.
    s.target
        .set_alua_state(1, AluaState::ActiveOptimized)
        .unwrap();
    d.set_link(1, true).unwrap();
    assert_eq!(read_ok(&d, s.slu), 1);
    d.set_link(1, false).unwrap();
    assert!(matches!(
        d.execute(s.slu, &READ, &[]),
        Err(MultipathError::NoActivePath { .. })
    ));
}

#[test]
fn reported_luns_change_is_surfaced_as_a_rescan() {
    let s = setup();
    let d = device(&s, PathPolicy::MostRecentlyUsed);
    read_ok(&d, s.slu);
    assert!(!d.take_rescan_needed());
    let v = s.f.vvol(4);
    let plane: &ControlPlane = &s.f.plane;
    let host: HostId = s.f.hosts[0];
    plane.bind(host, &[v], BindContext::Normal).unwrap();
    // 3Fh/0Eh is established on the PE's ALU (SAM-5 5.14: per I_T_L
    // nexus), whose SELECT REPORT 12h data changed.
    read_ok(&d, s.slu);
    assert!(!d.take_rescan_needed());
    let tur = d.execute(s.f.alu(), &[0; 6], &[]).unwrap();
    assert_eq!(tur.status, Status::Good);
    assert!(d.take_rescan_needed());
    assert!(!d.take_rescan_needed());
}

#[test]
fn bad_path_lists_are_refused() {
    let s = setup();
    let host = s.f.hosts[0];
    let new = |ports: &[u16]| {
        Multipath::new(
            Arc::clone(&s.target),
            host,
            s.f.alu(),
            ports,
            PathPolicy::MostRecentlyUsed,
        )
    };
    assert!(matches!(new(&[]), Err(MultipathError::BadPaths { .. })));
    assert!(matches!(new(&[1, 1]), Err(MultipathError::BadPaths { .. })));
    let many: Vec<u16> = (1..=40).collect();
    assert!(matches!(new(&many), Err(MultipathError::BadPaths { .. })));
    // A port the PE has no path on is offline for the host.
    let d = new(&[1, 9]).unwrap();
    assert_eq!(d.paths()[1].state, AluaState::Offline);
    assert_eq!(d.set_link(7, false), Err(MultipathError::UnknownPath(7)));
}
