//! [`NbdServer`]: serves an [`ExportCatalog`] over NBD on TCP.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::error::{ConnectionError, ServerError};
use super::exports::{Export, ExportCatalog};
use super::proto::MAX_REQUEST_BYTES;
use super::session::{self, Gate};
use crate::admission::{
    Admission, AdmissionConfig, AdmissionError, AdmissionStats, DeadlineIo, HandshakeTicket,
    MAX_HANDSHAKES, MAX_SESSIONS, SessionTicket,
};

/// Most connections a server holds at once: the largest handshake pool
/// plus the most established sessions (further ones are closed on accept).
pub const MAX_SERVER_CONNECTIONS: usize = MAX_HANDSHAKES + MAX_SESSIONS;
/// Most worker threads per connection.
pub const MAX_WORKERS_PER_CONNECTION: usize = 64;
/// Default of [`ServerConfig::reply_timeout`].
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Server settings. Every size a client drives is bounded by these, by the
/// [`admission`](Self::admission) limits or by the limits in
/// [`proto`](super::proto): request data is reserved from the connection's
/// and the global budget before it is allocated, so at most
/// [`AdmissionConfig::global_budget_bytes`] of it is held at once (plus a
/// fixed 192 KiB of buffers per connection).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Threads answering one connection's requests (default 4, at most
    /// [`MAX_WORKERS_PER_CONNECTION`]); replies may come out of order. 0
    /// answers each request on the reading thread, in order.
    pub workers_per_connection: usize,
    /// The handshake pool, session limits, idle timeout and byte budgets
    /// (see [`crate::admission`]). For NBD the host of a session is the
    /// host of the export it chose ([`Export::host`]); the idle timeout is
    /// off by default. The largest request payload advertised and accepted
    /// is the connection budget (at most [`MAX_REQUEST_BYTES`]).
    pub admission: AdmissionConfig,
    /// Time one reply may take to be written to a client that does not read
    /// (default [`DEFAULT_REPLY_TIMEOUT`]); the connection is closed after.
    pub reply_timeout: Duration,
    /// Whether to listen on addresses other than loopback (default false).
    pub allow_non_loopback: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            workers_per_connection: 4,
            admission: AdmissionConfig::default(),
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            allow_non_loopback: false,
        }
    }
}

impl ServerConfig {
    /// Sets [`workers_per_connection`](Self::workers_per_connection).
    #[must_use]
    pub fn with_workers_per_connection(mut self, workers: usize) -> Self {
        self.workers_per_connection = workers;
        self
    }

    /// Sets the [`admission`](Self::admission) limits.
    #[must_use]
    pub fn with_admission(mut self, admission: AdmissionConfig) -> Self {
        self.admission = admission;
        self
    }

    /// Sets [`AdmissionConfig::handshake_deadline`], the time a client has
    /// for its whole negotiation.
    #[must_use]
    pub fn with_handshake_deadline(mut self, deadline: Duration) -> Self {
        self.admission.handshake_deadline = deadline;
        self
    }

    fn clamped(mut self) -> Self {
        self.workers_per_connection = self.workers_per_connection.min(MAX_WORKERS_PER_CONNECTION);
        self.admission = self.admission.clamped();
        if self.reply_timeout.is_zero() {
            self.reply_timeout = DEFAULT_REPLY_TIMEOUT;
        }
        self
    }
}

/// Counters of a running server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections accepted into the handshake pool so far.
    pub accepted: u64,
    /// Connections refused on accept by the handshake pool (its counters in
    /// [`admission`](Self::admission) say which limit).
    pub refused: u64,
    /// Connections open now (handshaking and established).
    pub open: u64,
    /// Connections closed because of a protocol violation, an oversized
    /// request or a transport failure (not counting the admission layer's
    /// closes, which are in [`admission`](Self::admission)).
    pub failed: u64,
    /// Why the last failed connection was closed.
    pub last_failure: Option<String>,
    /// The admission layer's counters: refusals per limit, evictions,
    /// handshake and idle timeouts, budget waits and refusals, bytes
    /// reserved.
    pub admission: AdmissionStats,
}

#[derive(Debug)]
struct Shared {
    admission: Arc<Admission>,
    stopping: AtomicBool,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, TcpStream>>,
    stats: Mutex<ServerStats>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn stats(&self) -> std::sync::MutexGuard<'_, ServerStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An NBD server: fixed newstyle negotiation with `NBD_OPT_GO`/`INFO`,
/// `LIST`, structured replies and the `base:allocation` metadata context;
/// READ, WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES and BLOCK_STATUS;
/// `CAN_MULTI_CONN`. One thread per connection reads requests and a few
/// workers per connection answer them, so replies may come out of order.
///
/// A connection that breaks the protocol or passes a limit is closed; the
/// others keep running. Dropping the server (or [`shutdown`](Self::shutdown))
/// closes every connection and joins every thread.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use vvol::MemoryBackend;
/// use vvol::nbd::{BackendExports, NbdBackend, NbdConfig, NbdServer, ServerConfig};
///
/// let exports = BackendExports::new().with("disk", Arc::new(MemoryBackend::new(1 << 20, 512)?));
/// let server = NbdServer::start("127.0.0.1:0", Arc::new(exports), ServerConfig::default())?;
/// let names = NbdBackend::list_exports(&NbdConfig::tcp(server.local_addr(), ""))?;
/// assert_eq!(names, ["disk"]);
/// server.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct NbdServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl NbdServer {
    /// Listens on `address` and serves `catalog` until shut down.
    ///
    /// # Errors
    /// [`ServerError::Bind`] when the address cannot be bound,
    /// [`ServerError::NotLoopback`] for a non-loopback address unless
    /// allowed, [`ServerError::Thread`] when no thread can be started.
    pub fn start(
        address: impl ToSocketAddrs + std::fmt::Debug,
        catalog: Arc<dyn ExportCatalog>,
        config: ServerConfig,
    ) -> Result<Self, ServerError> {
        let config = config.clamped();
        let shown = format!("{address:?}");
        let listener = TcpListener::bind(address).map_err(|source| ServerError::Bind {
            address: shown.clone(),
            source,
        })?;
        let local = listener.local_addr().map_err(|source| ServerError::Bind {
            address: shown.clone(),
            source,
        })?;
        if !config.allow_non_loopback && !local.ip().is_loopback() {
            return Err(ServerError::NotLoopback {
                address: local.to_string(),
            });
        }
        let shared = Arc::new(Shared {
            admission: Arc::new(Admission::new(config.admission.clone())),
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            stats: Mutex::new(ServerStats::default()),
            threads: Mutex::new(Vec::new()),
        });
        let for_acceptor = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("nbd-accept".to_owned())
            .spawn(move || accept_loop(&listener, &for_acceptor, &catalog, &config))
            .map_err(|source| ServerError::Thread { source })?;
        Ok(Self {
            address: local,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address the server listens on (with the real port when bound to
    /// port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// A snapshot of the server's counters.
    #[must_use]
    pub fn stats(&self) -> ServerStats {
        let mut stats = self.shared.stats().clone();
        stats.admission = self.shared.admission.stats();
        stats
    }

    /// Stops accepting, closes every connection and joins every thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        let _ = acceptor.join();
        for s in self
            .shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let threads = std::mem::take(
            &mut *self
                .shared
                .threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    catalog: &Arc<dyn ExportCatalog>,
    config: &ServerConfig,
) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok((stream, peer)) = accepted else {
            // Transient accept failures (EMFILE, ECONNABORTED): back off.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        // The pool evicts or refuses; a refused stream is closed here.
        let Ok(ticket) = shared
            .admission
            .admit_handshake(peer.ip(), stream.try_clone().ok())
        else {
            shared.stats().refused += 1;
            continue;
        };
        {
            let mut stats = shared.stats();
            stats.accepted += 1;
            stats.open += 1;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(control) = stream.try_clone() {
            shared
                .open
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, control);
        }
        let for_conn = Arc::clone(shared);
        let catalog = Arc::clone(catalog);
        let config = config.clone();
        let spawned = std::thread::Builder::new()
            .name("nbd-conn".to_owned())
            .spawn(move || {
                let result = serve(stream, ticket, &*catalog, &config);
                for_conn
                    .open
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                let mut stats = for_conn.stats();
                stats.open -= 1;
                if let Err(e) = result
                    && !matches!(e, ConnectionError::Admission(_))
                {
                    stats.failed += 1;
                    stats.last_failure = Some(e.to_string());
                }
            });
        let mut threads = shared
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match spawned {
            Ok(t) => threads.push(t),
            Err(_) => {
                shared
                    .open
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                shared.stats().open -= 1;
            }
        }
        // Reap finished connection threads so the list stays bounded.
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *threads)
            .into_iter()
            .partition(JoinHandle::is_finished);
        *threads = running;
        drop(threads);
        for t in done {
            let _ = t.join();
        }
    }
}

/// The NBD side of the admission layer during negotiation.
#[derive(Debug)]
struct NbdGate {
    ticket: Option<HandshakeTicket>,
    session: Option<SessionTicket>,
    max_payload: u32,
}

impl Gate for NbdGate {
    fn progressed(&mut self) {
        if let Some(t) = &self.ticket {
            t.progressed();
        }
    }

    fn admit(&mut self, export: &Export) -> Result<(), AdmissionError> {
        let Some(ticket) = self.ticket.as_mut() else {
            // Established already: negotiation ends at the first GO.
            return Ok(());
        };
        let host = export.host().map(|h| h.to_string());
        self.session = Some(ticket.establish(host.as_deref())?);
        self.ticket = None;
        Ok(())
    }

    fn max_payload(&self) -> u32 {
        self.max_payload
    }
}

fn serve(
    stream: TcpStream,
    ticket: HandshakeTicket,
    catalog: &dyn ExportCatalog,
    config: &ServerConfig,
) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let deadline = ticket.deadline();
    let budget = config.admission.connection_budget_bytes;
    let mut gate = NbdGate {
        ticket: Some(ticket),
        session: None,
        max_payload: u32::try_from(budget)
            .unwrap_or(u32::MAX)
            .min(MAX_REQUEST_BYTES),
    };
    let negotiated =
        session::negotiate(&mut DeadlineIo::new(&stream, deadline), catalog, &mut gate);
    let session = match negotiated {
        Ok(Some(session)) => session,
        Ok(None) => return Ok(()),
        Err(e) => {
            let by_admission = gate
                .ticket
                .as_ref()
                .and_then(HandshakeTicket::ended_by_admission);
            return Err(by_admission.map_or(e, ConnectionError::from));
        }
    };
    let Some(ticket) = gate.session.take() else {
        return Err(ConnectionError::Protocol {
            what: "negotiation ended without an admitted session",
            value: 0,
        });
    };
    stream.set_read_timeout(ticket.idle_timeout())?;
    stream.set_write_timeout(Some(config.reply_timeout))?;
    session::transmit(&stream, &session, config, &ticket)
}
