//! Unit tests of the pool, the session limits and the budgets.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use super::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn admission(config: AdmissionConfig) -> Arc<Admission> {
    Arc::new(Admission::new(config))
}

#[test]
fn a_full_peer_share_evicts_its_oldest_silent_connection() {
    let a = admission(AdmissionConfig::default().with_handshakes(8, 2));
    let first = a.admit_handshake(ip(1), None).expect("first");
    let second = a.admit_handshake(ip(1), None).expect("second");
    second.progressed();
    let third = a.admit_handshake(ip(1), None).expect("evicts the first");
    assert_eq!(
        first.ended_by_admission(),
        Some(AdmissionError::Evicted { peer: ip(1) })
    );
    assert!(second.ended_by_admission().is_none());
    third.progressed();
    // Both remaining ones progressed: nothing to evict.
    assert_eq!(
        a.admit_handshake(ip(1), None).expect_err("refused"),
        AdmissionError::HandshakesPerPeer {
            peer: ip(1),
            limit: 2
        }
    );
    // Another peer still gets in.
    let other = a.admit_handshake(ip(2), None).expect("other peer");
    let stats = a.stats();
    assert_eq!(stats.handshaking, 3);
    assert_eq!(stats.handshake_evictions, 1);
    assert_eq!(stats.refused_handshake_per_peer, 1);
    drop((first, second, third, other));
    assert_eq!(a.stats().handshaking, 0);
}

#[test]
fn a_full_pool_evicts_across_peers_or_refuses() {
    let a = admission(AdmissionConfig::default().with_handshakes(2, 2));
    let silent = a.admit_handshake(ip(1), None).expect("1");
    let busy = a.admit_handshake(ip(2), None).expect("2");
    busy.progressed();
    let newcomer = a
        .admit_handshake(ip(3), None)
        .expect("evicts the silent one");
    assert!(silent.ended_by_admission().is_some());
    newcomer.progressed();
    assert!(matches!(
        a.admit_handshake(ip(4), None),
        Err(AdmissionError::HandshakePoolFull { limit: 2, .. })
    ));
    assert_eq!(a.stats().refused_handshake_pool_full, 1);
}

#[test]
fn established_sessions_leave_the_pool_and_have_their_own_limits() {
    let a = admission(
        AdmissionConfig::default()
            .with_handshakes(1, 1)
            .with_sessions(3, 2, 1),
    );
    let establish = |peer, host| {
        let mut t = a.admit_handshake(peer, None).expect("pool");
        t.progressed();
        t.establish(host)
    };
    let s1 = establish(ip(1), Some("h1")).expect("s1");
    // The pool of one is free again: the session does not count in it.
    let mut back = a.admit_handshake(ip(1), None).expect("pool");
    let e = back.establish(Some("h1")).expect_err("per host");
    assert!(matches!(
        e,
        AdmissionError::SessionsPerHost { limit: 1, .. }
    ));
    assert_eq!(
        a.stats().handshaking,
        1,
        "a refused ticket stays in the pool"
    );
    drop(back);
    let s2 = establish(ip(1), Some("h2")).expect("s2");
    assert!(matches!(
        establish(ip(1), Some("h3")),
        Err(AdmissionError::SessionsPerPeer { limit: 2, .. })
    ));
    let s3 = establish(ip(2), None).expect("s3");
    assert!(matches!(
        establish(ip(3), None),
        Err(AdmissionError::SessionsFull { limit: 3, .. })
    ));
    assert_eq!(s1.host(), Some("h1"));
    let stats = a.stats();
    assert_eq!(stats.established, 3);
    assert_eq!(stats.handshaking, 0);
    assert_eq!(
        (
            stats.refused_sessions_full,
            stats.refused_sessions_per_peer,
            stats.refused_sessions_per_host
        ),
        (1, 1, 1)
    );
    drop(s1);
    establish(ip(3), Some("h1")).expect("room again");
    drop((s2, s3));
}

#[test]
fn the_deadline_ends_a_handshake() {
    let a = admission(AdmissionConfig::default().with_handshake_deadline(Duration::from_millis(1)));
    let t = a.admit_handshake(ip(1), None).expect("pool");
    std::thread::sleep(Duration::from_millis(5));
    assert!(matches!(
        t.ended_by_admission(),
        Some(AdmissionError::HandshakeTimeout { .. })
    ));
    assert_eq!(a.stats().handshake_timeouts, 1);
}

#[test]
fn budgets_bound_reservations_wait_and_refuse() {
    let a = admission(
        AdmissionConfig::default()
            .with_budgets(MIN_CONNECTION_BUDGET_BYTES, 2 * MIN_CONNECTION_BUDGET_BYTES)
            .with_budget_wait(Duration::from_millis(20)),
    );
    let session = |peer| {
        let mut t = a.admit_handshake(peer, None).expect("pool");
        t.establish(None).expect("session")
    };
    let (s1, s2, s3) = (session(ip(1)), session(ip(2)), session(ip(3)));
    let max = s1.max_request_bytes();
    assert!(matches!(
        s1.reserve(max + 1),
        Err(AdmissionError::OverBudget { .. })
    ));
    let r1 = s1.reserve(max).expect("r1");
    let r2 = s2.reserve(max).expect("r2");
    assert_eq!(r1.bytes() + r2.bytes(), a.config().global_budget_bytes);
    assert!(matches!(
        s3.reserve(1),
        Err(AdmissionError::BudgetExhausted { .. })
    ));
    assert_eq!(s3.in_flight_bytes(), 0, "a refusal gives its share back");
    // A waiter gets the room once a reservation is dropped.
    let waiter = std::thread::scope(|scope| {
        let h = scope.spawn(|| {
            let a2 = Arc::clone(&a);
            drop(a2);
            s3.reserve(max)
        });
        std::thread::sleep(Duration::from_millis(2));
        drop(r1);
        h.join().expect("join")
    });
    // It may have waited past the short wait on a loaded machine; either
    // way the budget never passed its limit.
    drop(waiter);
    drop(r2);
    let stats = a.stats();
    assert!(stats.budget_peak_bytes <= a.config().global_budget_bytes);
    assert_eq!(stats.budget_in_use_bytes, 0);
    assert!(stats.budget_refusals >= 1);
    assert_eq!(stats.oversize_refusals, 1);
}

#[test]
fn config_is_clamped() {
    let c = AdmissionConfig {
        max_handshakes: 0,
        max_handshakes_per_peer: 100,
        handshake_deadline: Duration::ZERO,
        max_sessions: usize::MAX,
        idle_timeout: Some(Duration::ZERO),
        connection_budget_bytes: 1,
        global_budget_bytes: 0,
        ..AdmissionConfig::default()
    }
    .clamped();
    assert_eq!(c.max_handshakes, 1);
    assert_eq!(c.max_handshakes_per_peer, 1);
    assert_eq!(c.handshake_deadline, DEFAULT_HANDSHAKE_DEADLINE);
    assert_eq!(c.max_sessions, MAX_SESSIONS);
    assert_eq!(c.idle_timeout, None);
    assert_eq!(c.connection_budget_bytes, MIN_CONNECTION_BUDGET_BYTES);
    assert_eq!(c.global_budget_bytes, MIN_CONNECTION_BUDGET_BYTES);
}
