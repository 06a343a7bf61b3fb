//! [`AdmissionConfig`]: every limit of the admission layer, with its default.

use std::time::Duration;

/// Default of [`AdmissionConfig::max_handshakes`].
pub const DEFAULT_MAX_HANDSHAKES: usize = 64;
/// Most connections a configuration may allow in the handshake pool.
pub const MAX_HANDSHAKES: usize = 4096;
/// Default of [`AdmissionConfig::max_handshakes_per_peer`].
pub const DEFAULT_MAX_HANDSHAKES_PER_PEER: usize = 16;
/// Default of [`AdmissionConfig::handshake_deadline`].
pub const DEFAULT_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// Longest handshake deadline a configuration may set.
pub const MAX_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(300);
/// Default of [`AdmissionConfig::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 64;
/// Most established sessions a configuration may allow.
pub const MAX_SESSIONS: usize = 1024;
/// Default of [`AdmissionConfig::max_sessions_per_peer`].
pub const DEFAULT_MAX_SESSIONS_PER_PEER: usize = 32;
/// Default of [`AdmissionConfig::max_sessions_per_host`].
pub const DEFAULT_MAX_SESSIONS_PER_HOST: usize = 32;
/// Default of [`AdmissionConfig::connection_budget_bytes`].
pub const DEFAULT_CONNECTION_BUDGET_BYTES: u64 = 8 << 20;
/// Smallest connection budget a configuration may set (one buffer chunk).
pub const MIN_CONNECTION_BUDGET_BYTES: u64 = super::BUFFER_CHUNK_BYTES as u64;
/// Default of [`AdmissionConfig::global_budget_bytes`].
pub const DEFAULT_GLOBAL_BUDGET_BYTES: u64 = 256 << 20;
/// Default of [`AdmissionConfig::budget_wait`].
pub const DEFAULT_BUDGET_WAIT: Duration = Duration::from_secs(10);

/// The limits of an [`Admission`](super::Admission). Values out of range are
/// clamped when the admission is built (a zero limit becomes 1, budgets
/// are rounded down to whole [`BUFFER_CHUNK_BYTES`](super::BUFFER_CHUNK_BYTES)
/// and are at least [`MIN_CONNECTION_BUDGET_BYTES`], the global budget is at
/// least one connection's).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionConfig {
    /// Connections in the handshake pool at once, all peers together
    /// (default [`DEFAULT_MAX_HANDSHAKES`], at most [`MAX_HANDSHAKES`]).
    pub max_handshakes: usize,
    /// Connections of one peer IP address in the handshake pool at once
    /// (default [`DEFAULT_MAX_HANDSHAKES_PER_PEER`]).
    pub max_handshakes_per_peer: usize,
    /// Time a connection has for its whole handshake, from accept to
    /// identifying itself (default [`DEFAULT_HANDSHAKE_DEADLINE`], at most
    /// [`MAX_HANDSHAKE_DEADLINE`]; always on, zero means the default).
    pub handshake_deadline: Duration,
    /// Established sessions at once (default [`DEFAULT_MAX_SESSIONS`], at
    /// most [`MAX_SESSIONS`]).
    pub max_sessions: usize,
    /// Established sessions of one peer IP address (default
    /// [`DEFAULT_MAX_SESSIONS_PER_PEER`]).
    pub max_sessions_per_peer: usize,
    /// Established sessions of one host, once the connection named it
    /// (default [`DEFAULT_MAX_SESSIONS_PER_HOST`]).
    pub max_sessions_per_host: usize,
    /// Time an established session may stay silent with nothing in flight
    /// before it is closed; `None` (the default for NBD, whose clients may
    /// idle) never closes it.
    pub idle_timeout: Option<Duration>,
    /// Bytes of request data (write payloads, read buffers) one connection
    /// may hold at once (default [`DEFAULT_CONNECTION_BUDGET_BYTES`], at
    /// least [`MIN_CONNECTION_BUDGET_BYTES`]); also the largest payload one
    /// request may carry.
    pub connection_budget_bytes: u64,
    /// Bytes of request data all connections together may hold (default
    /// [`DEFAULT_GLOBAL_BUDGET_BYTES`]).
    pub global_budget_bytes: u64,
    /// Time a request waits for room in the global budget before it is
    /// refused (default [`DEFAULT_BUDGET_WAIT`]).
    pub budget_wait: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_handshakes_per_peer: DEFAULT_MAX_HANDSHAKES_PER_PEER,
            handshake_deadline: DEFAULT_HANDSHAKE_DEADLINE,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_peer: DEFAULT_MAX_SESSIONS_PER_PEER,
            max_sessions_per_host: DEFAULT_MAX_SESSIONS_PER_HOST,
            idle_timeout: None,
            connection_budget_bytes: DEFAULT_CONNECTION_BUDGET_BYTES,
            global_budget_bytes: DEFAULT_GLOBAL_BUDGET_BYTES,
            budget_wait: DEFAULT_BUDGET_WAIT,
        }
    }
}

impl AdmissionConfig {
    /// Sets [`max_handshakes`](Self::max_handshakes) and
    /// [`max_handshakes_per_peer`](Self::max_handshakes_per_peer).
    #[must_use]
    pub fn with_handshakes(mut self, total: usize, per_peer: usize) -> Self {
        self.max_handshakes = total;
        self.max_handshakes_per_peer = per_peer;
        self
    }

    /// Sets [`handshake_deadline`](Self::handshake_deadline).
    #[must_use]
    pub fn with_handshake_deadline(mut self, deadline: Duration) -> Self {
        self.handshake_deadline = deadline;
        self
    }

    /// Sets [`max_sessions`](Self::max_sessions),
    /// [`max_sessions_per_peer`](Self::max_sessions_per_peer) and
    /// [`max_sessions_per_host`](Self::max_sessions_per_host).
    #[must_use]
    pub fn with_sessions(mut self, total: usize, per_peer: usize, per_host: usize) -> Self {
        self.max_sessions = total;
        self.max_sessions_per_peer = per_peer;
        self.max_sessions_per_host = per_host;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout).
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`connection_budget_bytes`](Self::connection_budget_bytes) and
    /// [`global_budget_bytes`](Self::global_budget_bytes).
    #[must_use]
    pub fn with_budgets(mut self, connection_bytes: u64, global_bytes: u64) -> Self {
        self.connection_budget_bytes = connection_bytes;
        self.global_budget_bytes = global_bytes;
        self
    }

    /// Sets [`budget_wait`](Self::budget_wait).
    #[must_use]
    pub fn with_budget_wait(mut self, wait: Duration) -> Self {
        self.budget_wait = wait;
        self
    }

    /// The configuration with every value in its range.
    #[must_use]
    pub fn clamped(mut self) -> Self {
        self.max_handshakes = self.max_handshakes.clamp(1, MAX_HANDSHAKES);
        self.max_handshakes_per_peer = self.max_handshakes_per_peer.clamp(1, self.max_handshakes);
        if self.handshake_deadline.is_zero() {
            self.handshake_deadline = DEFAULT_HANDSHAKE_DEADLINE;
        }
        self.handshake_deadline = self.handshake_deadline.min(MAX_HANDSHAKE_DEADLINE);
        self.max_sessions = self.max_sessions.clamp(1, MAX_SESSIONS);
        self.max_sessions_per_peer = self.max_sessions_per_peer.clamp(1, self.max_sessions);
        self.max_sessions_per_host = self.max_sessions_per_host.clamp(1, self.max_sessions);
        self.idle_timeout = self.idle_timeout.filter(|t| !t.is_zero());
        // Whole buffer chunks, so rounded reservations never pass a budget.
        let chunk = MIN_CONNECTION_BUDGET_BYTES;
        self.connection_budget_bytes =
            (self.connection_budget_bytes / chunk * chunk).max(MIN_CONNECTION_BUDGET_BYTES);
        self.global_budget_bytes =
            (self.global_budget_bytes / chunk * chunk).max(self.connection_budget_bytes);
        self
    }
}
