//! Errors of the NBD client and server.

use std::io;
use std::time::Duration;

use super::proto::{command_name, errno_name};

/// An error of [`NbdBackend`](super::NbdBackend) talking to an NBD server.
///
/// [`NbdBackend`](super::NbdBackend) wraps these in
/// [`BackendError`](crate::BackendError) (`Io` with this error as the source,
/// or `Gone` once reconnecting has failed); match on them through
/// [`std::error::Error::source`] or call [`NbdBackend::connect`] directly.
///
/// [`NbdBackend::connect`]: super::NbdBackend::connect
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NbdError {
    /// Connecting to the server failed.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address, as configured.
        address: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("NBD transport to {address} failed: {source}")]
    Transport {
        /// The server address.
        address: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The server closed the connection (or it was closed after an earlier
    /// failure) while a request was outstanding.
    #[error("NBD connection to {address} closed: {reason}")]
    Disconnected {
        /// The server address.
        address: String,
        /// Why the connection is closed.
        reason: String,
    },
    /// No reply arrived within the I/O timeout; the connection is closed.
    #[error("{} request (cookie {cookie}) to {address} timed out after {after:?}", command_name(*command))]
    Timeout {
        /// The server address.
        address: String,
        /// The command type.
        command: u16,
        /// The request's cookie.
        cookie: u64,
        /// The timeout that passed.
        after: Duration,
    },
    /// The server broke the protocol.
    #[error("NBD protocol violation by {address}: {what} (value {value:#x})")]
    Protocol {
        /// The server address.
        address: String,
        /// What was wrong.
        what: &'static str,
        /// The offending value (a magic, a length, a cookie, a type).
        value: u64,
    },
    /// The server refused an option during negotiation.
    #[error("server {address} refused option {option} with reply {reply:#x}: {message}")]
    OptionRefused {
        /// The server address.
        address: String,
        /// The option (`OPT_*`).
        option: u32,
        /// The error reply type (`REP_ERR_*`).
        reply: u32,
        /// The server's message.
        message: String,
    },
    /// The server does not know the export.
    #[error("server {address} has no export named {export:?}")]
    UnknownExport {
        /// The server address.
        address: String,
        /// The export name asked for.
        export: String,
    },
    /// The server does not speak fixed newstyle negotiation.
    #[error("server {address} does not support fixed newstyle negotiation (flags {flags:#x})")]
    NotFixedNewstyle {
        /// The server address.
        address: String,
        /// The handshake flags it sent.
        flags: u16,
    },
    /// The server answered a request with an error code.
    #[error("{} at offset {offset} failed on {address}: {} ({errno})", command_name(*command), errno_name(*errno))]
    Server {
        /// The server address.
        address: String,
        /// The command type.
        command: u16,
        /// First byte of the request.
        offset: u64,
        /// The NBD error code (`EIO`, `ENOSPC`, ...).
        errno: u32,
        /// The server's message (structured replies only).
        message: String,
    },
    /// The export changed size across a reconnect.
    #[error("export {export:?} on {address} changed size from {before} to {after}")]
    SizeChanged {
        /// The server address.
        address: String,
        /// The export name.
        export: String,
        /// Size at the first connection.
        before: u64,
        /// Size after reconnecting.
        after: u64,
    },
    /// Every reconnect attempt failed.
    #[error("gave up on {address} after {attempts} reconnect attempts: {last}")]
    RetriesExhausted {
        /// The server address.
        address: String,
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        #[source]
        last: Box<NbdError>,
    },
    /// The configuration cannot work (block size, connection count, ...).
    #[error("invalid NBD client configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
}

impl NbdError {
    /// Whether a new connection might succeed where this error happened (a
    /// transport failure, a disconnect, a timeout).
    #[must_use]
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            Self::Transport { .. } | Self::Disconnected { .. } | Self::Timeout { .. }
        )
    }
}

/// An error starting or running an [`NbdServer`](super::NbdServer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Binding the listening socket failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The listener refused to bind because the address is not loopback and
    /// [`ServerConfig::allow_non_loopback`](super::ServerConfig) is off.
    #[error("{address} is not a loopback address")]
    NotLoopback {
        /// The address asked for.
        address: String,
    },
    /// Starting a thread failed.
    #[error("cannot start a server thread: {source}")]
    Thread {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Why the server closed one connection (kept in [`ServerStats`]).
///
/// [`ServerStats`]: super::ServerStats
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The socket failed or the peer went away.
    #[error("transport failed: {0}")]
    Transport(#[from] io::Error),
    /// The client broke the protocol.
    #[error("client protocol violation: {what} (value {value:#x})")]
    Protocol {
        /// What was wrong.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// The admission layer refused or closed the connection (pool full,
    /// evicted, handshake deadline, session limits, idle timeout).
    #[error(transparent)]
    Admission(#[from] crate::admission::AdmissionError),
    /// A size the client drove passed a named limit.
    #[error("{what} of {len} bytes passes the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The requested size.
        len: u64,
        /// The limit.
        limit: u64,
    },
}

/// An error starting the quickstart [`Gateway`](super::Gateway).
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The host index is not one of the topology's hosts.
    #[error("host {index} does not exist (the topology has {hosts} hosts)")]
    UnknownHost {
        /// The index asked for.
        index: usize,
        /// How many hosts there are.
        hosts: usize,
    },
    /// Building the topology or binding failed.
    #[error(transparent)]
    Control(#[from] crate::ControlError),
    /// The server could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
}
