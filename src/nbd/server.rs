//! [`NbdServer`]: serves an [`ExportCatalog`] over NBD on TCP.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::error::{ConnectionError, ServerError};
use super::exports::ExportCatalog;
use super::proto::MAX_REQUEST_BYTES;
use super::session;

/// Most connections a server serves at once (further ones are closed on
/// accept).
pub const MAX_SERVER_CONNECTIONS: usize = 1024;
/// Most worker threads per connection.
pub const MAX_WORKERS_PER_CONNECTION: usize = 64;

/// Server settings. Every size a client drives is bounded by these or by the
/// limits in [`proto`](super::proto): at most `max_connections` ×
/// `connection_buffer_bytes` of request and reply buffers are held at once.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Connections served at once (default 64, at most
    /// [`MAX_SERVER_CONNECTIONS`]).
    pub max_connections: usize,
    /// Threads answering one connection's requests (default 4, at most
    /// [`MAX_WORKERS_PER_CONNECTION`]); replies may come out of order. 0
    /// answers each request on the reading thread, in order.
    pub workers_per_connection: usize,
    /// Bytes of write payloads and read buffers one connection may hold at
    /// once (default 64 MiB, at least [`MAX_REQUEST_BYTES`]).
    pub connection_buffer_bytes: u64,
    /// Time a client may take for each negotiation step (default 30 s).
    pub handshake_timeout: Duration,
    /// Whether to listen on addresses other than loopback (default false).
    pub allow_non_loopback: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 64,
            workers_per_connection: 4,
            connection_buffer_bytes: 64 << 20,
            handshake_timeout: Duration::from_secs(30),
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

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    fn clamped(mut self) -> Self {
        self.max_connections = self.max_connections.clamp(1, MAX_SERVER_CONNECTIONS);
        self.workers_per_connection = self.workers_per_connection.min(MAX_WORKERS_PER_CONNECTION);
        self.connection_buffer_bytes = self
            .connection_buffer_bytes
            .max(u64::from(MAX_REQUEST_BYTES));
        if self.handshake_timeout.is_zero() {
            self.handshake_timeout = Duration::from_secs(30);
        }
        self
    }
}

/// Counters of a running server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections accepted so far.
    pub accepted: u64,
    /// Connections refused because [`ServerConfig::max_connections`] were
    /// open.
    pub refused: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections closed because of a protocol violation, an oversized
    /// request or a transport failure.
    pub failed: u64,
    /// Why the last failed connection was closed.
    pub last_failure: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
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
        let shared = Arc::new(Shared::default());
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
        self.shared.stats().clone()
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
        let Ok((stream, _)) = accepted else {
            // Transient accept failures (EMFILE, ECONNABORTED): back off.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        {
            let mut stats = shared.stats();
            if stats.open >= config.max_connections as u64 {
                stats.refused += 1;
                continue;
            }
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
                let result = serve(stream, &*catalog, &config);
                for_conn
                    .open
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                let mut stats = for_conn.stats();
                stats.open -= 1;
                if let Err(e) = result {
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

fn serve(
    mut stream: TcpStream,
    catalog: &dyn ExportCatalog,
    config: &ServerConfig,
) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(config.handshake_timeout))?;
    stream.set_write_timeout(Some(config.handshake_timeout))?;
    let Some(session) = session::negotiate(&mut stream, catalog)? else {
        return Ok(());
    };
    stream.set_read_timeout(None)?;
    session::transmit(&stream, &session, config)
}
