//! Admission control shared by the crate's transports (NBD now; iSCSI and
//! NFS when they land): who may connect, for how long a connection may take
//! to identify itself, and how much request data the connections may hold.
//!
//! A transport asks [`Admission`] at two points of a connection's life:
//!
//! 1. **On accept**, [`Admission::admit_handshake`]: the connection joins the
//!    *handshake pool* (negotiation, login), bounded globally
//!    ([`AdmissionConfig::max_handshakes`]) and per peer IP address
//!    ([`AdmissionConfig::max_handshakes_per_peer`]), with a deadline for
//!    the whole handshake ([`AdmissionConfig::handshake_deadline`], always
//!    on). When the pool (or the peer's share of it) is full, the oldest
//!    connection there that has not yet sent its first message is evicted to
//!    make room; only when none qualifies is the newcomer refused. A flood of
//!    idle connections therefore holds at most the pool and never a session.
//! 2. **Once the connection identified itself** (NBD: `NBD_OPT_GO` names an
//!    export, which maps to a host), [`HandshakeTicket::establish`] moves it
//!    from the pool to the *established sessions*, bounded globally
//!    ([`AdmissionConfig::max_sessions`]), per peer IP address and per host.
//!    Established sessions are never evicted, so handshakes cannot crowd
//!    them out, and they may be idle-timed out
//!    ([`AdmissionConfig::idle_timeout`], off by default).
//!
//! Request data (write payloads, read buffers) is reserved before it is
//! allocated, from the connection's budget
//! ([`AdmissionConfig::connection_budget_bytes`]) and from one budget across
//! every connection ([`AdmissionConfig::global_budget_bytes`]); a request
//! waits up to [`AdmissionConfig::budget_wait`] for the global budget and is
//! then refused. Every refusal is an [`AdmissionError`] (or the transport's
//! protocol-correct refusal carrying it) and is counted in
//! [`AdmissionStats`].
//!
//! The module knows nothing about the transports above it: peers are IP
//! addresses, hosts are the names the transport gives.

mod budget;
mod config;
mod error;
mod gate;
mod io;

pub use budget::{BUFFER_CHUNK_BYTES, Reservation};
pub use config::{
    AdmissionConfig, DEFAULT_BUDGET_WAIT, DEFAULT_CONNECTION_BUDGET_BYTES,
    DEFAULT_GLOBAL_BUDGET_BYTES, DEFAULT_HANDSHAKE_DEADLINE, DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_HANDSHAKES_PER_PEER, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_HOST,
    DEFAULT_MAX_SESSIONS_PER_PEER, MAX_HANDSHAKE_DEADLINE, MAX_HANDSHAKES, MAX_SESSIONS,
    MIN_CONNECTION_BUDGET_BYTES,
};
pub use error::AdmissionError;
pub use gate::{Admission, AdmissionStats, HandshakeTicket, SessionTicket};
pub use io::DeadlineIo;

#[cfg(test)]
mod tests;
