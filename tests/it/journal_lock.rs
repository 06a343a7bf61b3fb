//! Opening a durable journal: one writer at a time (in this process, in
//! another, across compaction, released by a killed holder), and limits
//! checked against what the journal holds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use vvol::*;

const HOLDER_ENV: &str = "VVOL_JOURNAL_LOCK_HOLDER";

fn opts() -> JournalOptions {
    JournalOptions::default()
}

fn open(path: &Path, limits: Limits) -> Result<ControlPlane, JournalError> {
    ControlPlane::open_durable(path, limits, opts())
}

/// A plane with `hosts` hosts and one array, container and PE.
fn populate(plane: &ControlPlane, hosts: usize) {
    let array = plane
        .add_array(ArraySpec::new("array-a", 0x00_1a_2b))
        .unwrap();
    plane
        .add_container(array, ContainerSpec::new("gold", Protocol::Scsi, 1 << 40))
        .unwrap();
    let naa = Naa::from_parts(0x00_1a_2b, 9, 1).unwrap();
    plane.add_pe(array, PeSpec::scsi(naa, 250)).unwrap();
    for i in 0..hosts {
        plane.add_host(&format!("esx-{i:02}")).unwrap();
    }
}

/// The names of the plane's hosts, in id order.
fn host_names(plane: &ControlPlane) -> Vec<String> {
    (0..16)
        .filter_map(|i| plane.host(HostId(i)).ok())
        .map(|h| h.name)
        .collect()
}

fn assert_locked(res: Result<ControlPlane, JournalError>, path: &Path) {
    match res {
        Err(e @ JournalError::Locked { .. }) => {
            let JournalError::Locked { path: p } = &e else {
                unreachable!()
            };
            assert_eq!(p, path);
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second writer opened {}", path.display()),
    }
}

#[test]
fn a_second_open_in_this_process_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let plane = open(&path, Limits::default()).unwrap();
    populate(&plane, 2);
    assert_locked(open(&path, Limits::default()), &path);
    // The refused open changed nothing; the lock goes with the plane.
    drop(plane);
    let plane = open(&path, Limits::default()).unwrap();
    assert_eq!(host_names(&plane), ["esx-00", "esx-01"]);
}

#[test]
fn the_lock_holds_across_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let plane = open(&path, Limits::default()).unwrap();
    populate(&plane, 3);
    plane.compact_journal().unwrap();
    assert_locked(open(&path, Limits::default()), &path);
    plane.add_host("esx-after").unwrap();
    plane.compact_journal().unwrap();
    assert_locked(open(&path, Limits::default()), &path);
    drop(plane);
    assert_eq!(
        host_names(&open(&path, Limits::default()).unwrap()).len(),
        4
    );
}

/// The child side of the cross-process tests (does nothing unless the
/// parent set its environment): opens the journal, adds a host, says
/// `LOCKED` and holds the journal until killed.
#[test]
fn lock_holder_child() {
    let Ok(path) = std::env::var(HOLDER_ENV) else {
        return;
    };
    let plane = open(Path::new(&path), Limits::default()).unwrap();
    plane.add_host("esx-child").unwrap();
    println!("LOCKED");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn spawn_holder(path: &PathBuf) -> std::process::Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "journal_lock::lock_holder_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        if line.unwrap().contains("LOCKED") {
            return child;
        }
    }
    let status = child.wait().unwrap();
    panic!("the holder exited without locking: {status}");
}

#[test]
fn another_process_holding_the_journal_locks_it_until_killed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let mut child = spawn_holder(&path);
    assert_locked(open(&path, Limits::default()), &path);
    // SIGKILL: the kernel releases the lock with the process.
    child.kill().unwrap();
    child.wait().unwrap();
    let plane = open(&path, Limits::default()).unwrap();
    assert_eq!(
        host_names(&plane),
        ["esx-child"],
        "the child's acknowledged host survives"
    );
}

#[test]
fn limits_below_the_journal_are_refused_by_name_and_raising_them_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let plane = open(&path, Limits::default()).unwrap();
    populate(&plane, 3);
    drop(plane);
    let tight = Limits::default().with_max_hosts(2);
    match open(&path, tight) {
        Err(JournalError::LimitBelowState {
            limit,
            value,
            count,
        }) => assert_eq!((limit, value, count), ("max_hosts", 2, 3)),
        Err(e) => panic!("expected LimitBelowState, got {e}"),
        Ok(_) => panic!("opened with max_hosts below the journal's hosts"),
    }
    // Exactly enough is enough; more leaves room for more.
    drop(open(&path, Limits::default().with_max_hosts(3)).unwrap());
    let roomy = open(&path, Limits::default().with_max_hosts(5)).unwrap();
    roomy.add_host("esx-03").unwrap();
    roomy.add_host("esx-04").unwrap();
    assert!(matches!(
        roomy.add_host("esx-05"),
        Err(ControlError::TooMany { .. })
    ));
}

/// Reservation limits below what a journal holds are refused by name, from
/// records and from a compacted snapshot alike (not reported as corruption).
#[test]
fn reservation_limits_below_the_journal_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let plane = open(&path, Limits::default()).unwrap();
    populate(&plane, 3);
    let pe = plane.pes_for_array(plane.arrays()[0]).unwrap()[0];
    let mut state = LuReservations::default();
    for h in 0..3 {
        state.registrations.push(PrRegistration {
            nexus: PrNexus {
                host: HostId(h),
                initiator: 0,
                relative_target_port: 1,
            },
            key: u64::from(h) + 1,
        });
    }
    plane
        .set_reservations(PrLu::Alu(pe), &LuReservations::default(), state)
        .unwrap();
    drop(plane);
    let tight = Limits::default().with_max_pr_registrations_per_lu(2);
    for compacted in [false, true] {
        if compacted {
            let plane = open(&path, Limits::default()).unwrap();
            plane.compact_journal().unwrap();
        }
        match open(&path, tight) {
            Err(JournalError::LimitBelowState { limit, count, .. }) => {
                assert_eq!((limit, count), ("max_pr_registrations_per_lu", 3));
            }
            Err(e) => panic!("expected LimitBelowState (compacted {compacted}), got {e}"),
            Ok(_) => panic!("opened with fewer registrations allowed than held"),
        }
    }
    let plane = open(&path, Limits::default().with_max_pr_registrations_per_lu(3)).unwrap();
    assert_eq!(plane.reservations(PrLu::Alu(pe)).registrations.len(), 3);
}
