//! [`AdmissionError`]: why the admission layer refused or closed a
//! connection, or refused a request.

use std::net::IpAddr;
use std::time::Duration;

/// Why a connection was refused or closed, or a request refused, by the
/// admission layer. Each variant names the peer and the limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// The handshake pool was full of connections that had all sent their
    /// first message, so none could be evicted for this one.
    #[error("handshake pool full ({limit} connections in negotiation); refused {peer}")]
    HandshakePoolFull {
        /// The refused peer.
        peer: IpAddr,
        /// [`AdmissionConfig::max_handshakes`](super::AdmissionConfig::max_handshakes).
        limit: usize,
    },
    /// The peer already had its share of the handshake pool, none of it
    /// evictable.
    #[error("peer {peer} has {limit} connections in negotiation already")]
    HandshakesPerPeer {
        /// The refused peer.
        peer: IpAddr,
        /// [`AdmissionConfig::max_handshakes_per_peer`](super::AdmissionConfig::max_handshakes_per_peer).
        limit: usize,
    },
    /// The connection was evicted from the handshake pool, before it sent
    /// its first message, to make room for a newer one.
    #[error("connection from {peer} evicted from the handshake pool before its first message")]
    Evicted {
        /// The evicted peer.
        peer: IpAddr,
    },
    /// The connection did not finish its handshake within the deadline.
    #[error("handshake of {peer} did not finish within {after:?}")]
    HandshakeTimeout {
        /// The peer.
        peer: IpAddr,
        /// [`AdmissionConfig::handshake_deadline`](super::AdmissionConfig::handshake_deadline).
        after: Duration,
    },
    /// As many sessions as allowed are established.
    #[error("{limit} sessions established; refused {peer}")]
    SessionsFull {
        /// The refused peer.
        peer: IpAddr,
        /// [`AdmissionConfig::max_sessions`](super::AdmissionConfig::max_sessions).
        limit: usize,
    },
    /// The peer IP address has as many sessions as allowed.
    #[error("peer {peer} has {limit} sessions established already")]
    SessionsPerPeer {
        /// The refused peer.
        peer: IpAddr,
        /// [`AdmissionConfig::max_sessions_per_peer`](super::AdmissionConfig::max_sessions_per_peer).
        limit: usize,
    },
    /// The host the connection named has as many sessions as allowed.
    #[error("host {host} has {limit} sessions established already; refused {peer}")]
    SessionsPerHost {
        /// The refused peer.
        peer: IpAddr,
        /// The host, as the transport names it.
        host: String,
        /// [`AdmissionConfig::max_sessions_per_host`](super::AdmissionConfig::max_sessions_per_host).
        limit: usize,
    },
    /// The established session sent nothing for the idle timeout while
    /// nothing was in flight, or stalled in the middle of a request.
    #[error("session of {peer} idle for {after:?}")]
    IdleTimeout {
        /// The peer.
        peer: IpAddr,
        /// [`AdmissionConfig::idle_timeout`](super::AdmissionConfig::idle_timeout).
        after: Duration,
    },
    /// The global budget had no room for the request within the wait.
    #[error(
        "no room for {requested} bytes of {peer} in the global budget of {limit} bytes within {waited:?}"
    )]
    BudgetExhausted {
        /// The peer.
        peer: IpAddr,
        /// Bytes the request needed.
        requested: u64,
        /// [`AdmissionConfig::global_budget_bytes`](super::AdmissionConfig::global_budget_bytes).
        limit: u64,
        /// [`AdmissionConfig::budget_wait`](super::AdmissionConfig::budget_wait).
        waited: Duration,
    },
    /// A request carries more data than one connection may hold.
    #[error(
        "request of {requested} bytes from {peer} passes the connection budget of {limit} bytes"
    )]
    OverBudget {
        /// The peer.
        peer: IpAddr,
        /// Bytes the request needed.
        requested: u64,
        /// [`AdmissionConfig::connection_budget_bytes`](super::AdmissionConfig::connection_budget_bytes).
        limit: u64,
    },
}
