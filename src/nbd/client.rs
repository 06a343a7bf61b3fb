//! [`NbdBackend`]: a [`BlockBackend`] on an NBD server.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::error::NbdError;
use super::handshake::{self, ExportInfo};
use super::proto::*;
use super::stream::{NbdAddress, Stream, write_all_parts};
use crate::backend::{
    AllocationExtent, AllocationState, BackendError, BackendOp, BlockBackend,
    MAX_ALLOCATION_EXTENTS,
};

/// Most connections one [`NbdBackend`] opens (only when the server
/// advertises `CAN_MULTI_CONN`).
pub const MAX_CONNECTIONS: usize = 16;
/// Most reconnect attempts [`NbdConfig::with_reconnect_attempts`] accepts.
pub const MAX_RECONNECT_ATTEMPTS: u32 = 100;
/// Largest block status reply chunk the client reads.
pub const MAX_BLOCK_STATUS_BYTES: u32 = 8 + 8 * 65536;
/// Largest trim or write-zeroes request sent at once (larger calls are split).
const MAX_ZERO_REQUEST: u64 = 1 << 30;

/// How to reach an NBD export and how patient to be.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NbdConfig {
    pub(crate) address: NbdAddress,
    pub(crate) export: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    pub(crate) connections: usize,
    pub(crate) reconnect_attempts: u32,
    pub(crate) reconnect_delay: Duration,
    pub(crate) logical_block_size: Option<u32>,
    pub(crate) structured_replies: bool,
}

impl NbdConfig {
    /// Export `export` on the server at `address`, with defaults: 5 s connect
    /// timeout, 30 s I/O timeout, one connection, 3 reconnect attempts 100 ms
    /// apart, structured replies when offered.
    #[must_use]
    pub fn new(address: NbdAddress, export: impl Into<String>) -> Self {
        Self {
            address,
            export: export.into(),
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(30),
            connections: 1,
            reconnect_attempts: 3,
            reconnect_delay: Duration::from_millis(100),
            logical_block_size: None,
            structured_replies: true,
        }
    }

    /// A TCP server.
    #[must_use]
    pub fn tcp(address: std::net::SocketAddr, export: impl Into<String>) -> Self {
        Self::new(NbdAddress::Tcp(address), export)
    }

    /// A Unix socket server.
    #[must_use]
    pub fn unix(path: impl Into<PathBuf>, export: impl Into<String>) -> Self {
        Self::new(NbdAddress::Unix(path.into()), export)
    }

    /// Timeout for connecting (TCP) and for each negotiation step.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time each request may wait for its reply; then the connection is
    /// closed and the request fails with [`NbdError::Timeout`].
    #[must_use]
    pub fn with_io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Connections to open when the server advertises `CAN_MULTI_CONN`
    /// (1..=[`MAX_CONNECTIONS`]); one otherwise.
    #[must_use]
    pub fn with_connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// Reconnect attempts after a lost connection, each retrying the failed
    /// request (0..=[`MAX_RECONNECT_ATTEMPTS`]), and the pause before each.
    #[must_use]
    pub fn with_reconnect_attempts(mut self, attempts: u32, delay: Duration) -> Self {
        self.reconnect_attempts = attempts;
        self.reconnect_delay = delay;
        self
    }

    /// The logical block size to report (a power of two from 512 to 65536 and
    /// a multiple of the server's minimum block size). Default: the server's
    /// minimum, at least 512.
    #[must_use]
    pub fn with_logical_block_size(mut self, block_size: u32) -> Self {
        self.logical_block_size = Some(block_size);
        self
    }

    /// Whether to ask for structured replies (default true). Without them
    /// there is no `base:allocation`.
    #[must_use]
    pub fn with_structured_replies(mut self, structured: bool) -> Self {
        self.structured_replies = structured;
        self
    }

    fn validate(&self) -> Result<(), NbdError> {
        let bad = |reason: String| Err(NbdError::InvalidConfig { reason });
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return bad(format!(
                "{} connections is outside 1..={MAX_CONNECTIONS}",
                self.connections
            ));
        }
        if self.reconnect_attempts > MAX_RECONNECT_ATTEMPTS {
            return bad(format!(
                "{} reconnect attempts pass the limit {MAX_RECONNECT_ATTEMPTS}",
                self.reconnect_attempts
            ));
        }
        if self.io_timeout.is_zero() || self.connect_timeout.is_zero() {
            return bad("timeouts must not be zero".to_owned());
        }
        if let Some(bs) = self.logical_block_size
            && !(bs.is_power_of_two() && (512..=65536).contains(&bs))
        {
            return bad(format!(
                "logical block size {bs} is not a power of two in 512..=65536"
            ));
        }
        Ok(())
    }
}

/// A finished request: the bytes read, or the extents found.
#[derive(Debug, Default)]
struct Completion {
    data: Vec<u8>,
    status: Vec<(u32, u32)>,
}

/// A request waiting for its reply; owned by the reader while it parses a
/// chunk for it.
#[derive(Debug)]
struct Pending {
    command: u16,
    offset: u64,
    len: u32,
    done: Completion,
    error: Option<(u32, String)>,
    tx: SyncSender<Result<Completion, NbdError>>,
}

/// State shared between a connection's callers and its reader thread.
#[derive(Debug)]
struct Shared {
    address: String,
    pending: Mutex<HashMap<u64, Pending>>,
    dead: AtomicBool,
    reason: Mutex<String>,
    info: ExportInfo,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the connection dead and fails every outstanding request.
    fn kill(&self, reason: String) {
        {
            let mut r = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
            if !self.dead.swap(true, Ordering::AcqRel) {
                *r = reason;
            }
        }
        let drained: Vec<Pending> = self.pending().drain().map(|(_, p)| p).collect();
        for p in drained {
            let _ = p.tx.send(Err(self.disconnected()));
        }
    }

    fn disconnected(&self) -> NbdError {
        NbdError::Disconnected {
            address: self.address.clone(),
            reason: self
                .reason
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// One negotiated connection with its reader thread.
#[derive(Debug)]
struct Conn {
    shared: Arc<Shared>,
    writer: Mutex<Stream>,
    control: Stream,
    reader: Option<JoinHandle<()>>,
}

impl Conn {
    fn open(config: &NbdConfig) -> Result<Self, NbdError> {
        let (stream, info) = handshake::negotiate(config)?;
        let address = config.address.to_string();
        let transport = |source| NbdError::Transport {
            address: address.clone(),
            source,
        };
        let read_half = stream.try_clone().map_err(transport)?;
        let control = stream.try_clone().map_err(transport)?;
        stream
            .set_timeouts(Some(config.io_timeout))
            .map_err(transport)?;
        read_half.set_read_timeout(None).map_err(transport)?;
        let shared = Arc::new(Shared {
            address: address.clone(),
            pending: Mutex::new(HashMap::new()),
            dead: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
            info,
        });
        let for_reader = Arc::clone(&shared);
        let reader = std::thread::Builder::new()
            .name("nbd-client-reader".to_owned())
            .spawn(move || read_loop(&for_reader, read_half))
            .map_err(transport)?;
        Ok(Self {
            shared,
            writer: Mutex::new(stream),
            control,
            reader: Some(reader),
        })
    }

    fn is_dead(&self) -> bool {
        self.shared.dead.load(Ordering::Acquire)
    }

    fn close(&self, reason: String) {
        self.control.shutdown();
        self.shared.kill(reason);
    }

    /// Sends one request; the receiver yields its completion.
    fn submit(
        &self,
        command: u16,
        flags: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> Result<(u64, mpsc::Receiver<Result<Completion, NbdError>>), NbdError> {
        static COOKIES: AtomicU64 = AtomicU64::new(1);
        if self.is_dead() {
            return Err(self.shared.disconnected());
        }
        let cookie = COOKIES.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        let data = if command == CMD_READ {
            vec![0u8; len as usize]
        } else {
            Vec::new()
        };
        self.shared.pending().insert(
            cookie,
            Pending {
                command,
                offset,
                len,
                done: Completion {
                    data,
                    status: Vec::new(),
                },
                error: None,
                tx,
            },
        );
        let header = RequestHeader {
            flags,
            command,
            cookie,
            offset,
            length: len,
        }
        .encode();
        let sent = {
            let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            write_all_parts(&mut *w, &[&header, payload])
        };
        if let Err(source) = sent {
            self.shared.pending().remove(&cookie);
            self.close(format!("send failed: {source}"));
            return Err(NbdError::Transport {
                address: self.shared.address.clone(),
                source,
            });
        }
        // The reader may have died between the check and the insert.
        if self.is_dead() && self.shared.pending().remove(&cookie).is_some() {
            return Err(self.shared.disconnected());
        }
        Ok((cookie, rx))
    }

    fn wait(
        &self,
        command: u16,
        cookie: u64,
        rx: &mpsc::Receiver<Result<Completion, NbdError>>,
        timeout: Duration,
    ) -> Result<Completion, NbdError> {
        match rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => {
                self.shared.pending().remove(&cookie);
                self.close(format!("request {cookie} timed out after {timeout:?}"));
                Err(NbdError::Timeout {
                    address: self.shared.address.clone(),
                    command,
                    cookie,
                    after: timeout,
                })
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.shared.disconnected()),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.is_dead() {
            let disc = RequestHeader {
                flags: 0,
                command: CMD_DISC,
                cookie: 0,
                offset: 0,
                length: 0,
            }
            .encode();
            let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = write_all_parts(&mut *w, &[&disc]);
        }
        self.close("connection closed by the client".to_owned());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Reads replies until the connection fails, then fails what is pending.
fn read_loop(shared: &Shared, stream: Stream) {
    let mut r = BufReader::with_capacity(256 << 10, stream);
    let reason = loop {
        if let Err(e) = read_reply(shared, &mut r) {
            break e;
        }
    };
    shared.kill(reason);
}

fn violation(what: &str, value: u64) -> String {
    format!("protocol violation: {what} (value {value:#x})")
}

fn io_reason(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        "the server closed the connection".to_owned()
    } else {
        format!("receive failed: {e}")
    }
}

/// Reads one reply (or one structured chunk) and routes it to its request.
fn read_reply(shared: &Shared, r: &mut impl Read) -> Result<(), String> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(|e| io_reason(&e))?;
    match be32(&magic) {
        SIMPLE_REPLY_MAGIC => {
            let mut rest = [0u8; 12];
            r.read_exact(&mut rest).map_err(|e| io_reason(&e))?;
            let errno = be32(&rest[0..4]);
            let cookie = be64(&rest[4..12]);
            let mut p = shared
                .pending()
                .remove(&cookie)
                .ok_or_else(|| violation("simple reply with an unknown cookie", cookie))?;
            if errno != 0 {
                let _ =
                    p.tx.send(Err(server_error(shared, &p, errno, String::new())));
                return Ok(());
            }
            if p.command == CMD_READ {
                r.read_exact(&mut p.done.data).map_err(|e| io_reason(&e))?;
            }
            let _ = p.tx.send(Ok(p.done));
            Ok(())
        }
        STRUCTURED_REPLY_MAGIC if shared.info.structured => {
            let mut rest = [0u8; 16];
            r.read_exact(&mut rest).map_err(|e| io_reason(&e))?;
            let flags = be16(&rest[0..2]);
            let kind = be16(&rest[2..4]);
            let cookie = be64(&rest[4..12]);
            let length = be32(&rest[12..16]);
            if length > MAX_CHUNK_BYTES {
                return Err(violation(
                    "chunk longer than MAX_CHUNK_BYTES",
                    u64::from(length),
                ));
            }
            let mut p = shared
                .pending()
                .remove(&cookie)
                .ok_or_else(|| violation("structured chunk with an unknown cookie", cookie))?;
            chunk(&mut p, kind, length, r)?;
            if flags & REPLY_FLAG_DONE != 0 {
                let result = match p.error.take() {
                    Some((errno, msg)) => Err(server_error(shared, &p, errno, msg)),
                    None => Ok(std::mem::take(&mut p.done)),
                };
                let _ = p.tx.send(result);
            } else {
                shared.pending().insert(cookie, p);
            }
            Ok(())
        }
        other => Err(violation("bad reply magic", u64::from(other))),
    }
}

fn server_error(shared: &Shared, p: &Pending, errno: u32, message: String) -> NbdError {
    NbdError::Server {
        address: shared.address.clone(),
        command: p.command,
        offset: p.offset,
        errno,
        message,
    }
}

/// Parses one structured chunk's payload into `p`.
fn chunk(p: &mut Pending, kind: u16, length: u32, r: &mut impl Read) -> Result<(), String> {
    let io = |e: io::Error| io_reason(&e);
    match kind {
        REPLY_TYPE_NONE if length == 0 => Ok(()),
        REPLY_TYPE_OFFSET_DATA | REPLY_TYPE_OFFSET_HOLE if p.command == CMD_READ => {
            let mut off = [0u8; 8];
            if length < 8 {
                return Err(violation("short read chunk", u64::from(length)));
            }
            r.read_exact(&mut off).map_err(io)?;
            let offset = be64(&off);
            let n = if kind == REPLY_TYPE_OFFSET_DATA {
                u64::from(length - 8)
            } else {
                if length != 12 {
                    return Err(violation("bad hole chunk length", u64::from(length)));
                }
                let mut h = [0u8; 4];
                r.read_exact(&mut h).map_err(io)?;
                u64::from(be32(&h))
            };
            let rel = offset
                .checked_sub(p.offset)
                .filter(|rel| {
                    rel.checked_add(n)
                        .is_some_and(|end| end <= u64::from(p.len))
                })
                .ok_or_else(|| violation("read chunk outside the request", offset))?;
            let range = rel as usize..(rel + n) as usize;
            if kind == REPLY_TYPE_OFFSET_DATA {
                r.read_exact(&mut p.done.data[range]).map_err(io)?;
            } else {
                p.done.data[range].fill(0);
            }
            Ok(())
        }
        REPLY_TYPE_BLOCK_STATUS if p.command == CMD_BLOCK_STATUS => {
            if !(12..=MAX_BLOCK_STATUS_BYTES).contains(&length) || !(length - 4).is_multiple_of(8) {
                return Err(violation(
                    "bad block status chunk length",
                    u64::from(length),
                ));
            }
            let mut buf = vec![0u8; length as usize];
            r.read_exact(&mut buf).map_err(io)?;
            for d in buf[4..].chunks_exact(8) {
                if p.done.status.len() >= MAX_ALLOCATION_EXTENTS {
                    break;
                }
                p.done.status.push((be32(&d[0..4]), be32(&d[4..8])));
            }
            Ok(())
        }
        kind if kind & REPLY_TYPE_ERROR_BIT != 0 => {
            if !(6..=MAX_OPTION_BYTES as u32).contains(&length) {
                return Err(violation("bad error chunk length", u64::from(length)));
            }
            let mut buf = vec![0u8; length as usize];
            r.read_exact(&mut buf).map_err(io)?;
            let errno = be32(&buf[0..4]);
            let msg_len = usize::from(be16(&buf[4..6]));
            if errno == 0 || msg_len > buf.len() - 6 {
                return Err(violation("malformed error chunk", u64::from(errno)));
            }
            let msg = String::from_utf8_lossy(&buf[6..6 + msg_len]).into_owned();
            p.error.get_or_insert((errno, msg));
            Ok(())
        }
        other => Err(violation("unexpected chunk type", u64::from(other))),
    }
}

/// A [`BlockBackend`] whose bytes live in an NBD export.
///
/// Any number of threads may call it at once: each call sends its requests
/// and waits for their replies, which a reader thread per connection matches
/// by cookie, so many requests are in flight on one connection. Calls larger
/// than the server's maximum block size are split into pipelined requests.
/// When the server advertises `CAN_MULTI_CONN`, up to
/// [`NbdConfig::with_connections`] connections are used round robin.
///
/// A lost connection (reset, EOF, I/O timeout) is reopened on the next
/// request, and the failed request retried, up to the configured number of
/// reconnect attempts.
///
/// Capabilities follow the server's transmission flags: without `SEND_TRIM`
/// [`discard`](BlockBackend::discard) is unsupported; without
/// `SEND_WRITE_ZEROES` zeros are written as data; without `SEND_FUA` a FUA
/// write is followed by a flush. [`allocation`](BlockBackend::allocation)
/// needs structured replies and the `base:allocation` context, otherwise it
/// returns [`BackendError::Unsupported`]. [`resize`](BlockBackend::resize) is
/// never supported.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use vvol::nbd::{BackendExports, NbdBackend, NbdConfig, NbdServer, ServerConfig};
/// use vvol::{BlockBackend, MemoryBackend};
///
/// let disk = Arc::new(MemoryBackend::new(1 << 20, 512)?);
/// let exports = BackendExports::new().with("disk", disk);
/// let server = NbdServer::start("127.0.0.1:0", Arc::new(exports), ServerConfig::default())?;
/// let nbd = NbdBackend::connect(NbdConfig::tcp(server.local_addr(), "disk"))?;
/// nbd.write_at(4096, &[7u8; 512], true)?;
/// let mut back = [0u8; 512];
/// nbd.read_at(4096, &mut back)?;
/// assert_eq!(back, [7u8; 512]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct NbdBackend {
    config: NbdConfig,
    info: ExportInfo,
    block_size: u32,
    max_request: u32,
    conns: Vec<Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
}

impl NbdBackend {
    /// Connects to the export and negotiates (opening the extra connections
    /// when allowed).
    ///
    /// # Errors
    /// [`NbdError::InvalidConfig`], [`NbdError::Connect`],
    /// [`NbdError::NotFixedNewstyle`], [`NbdError::UnknownExport`],
    /// [`NbdError::OptionRefused`], [`NbdError::Protocol`],
    /// [`NbdError::Transport`].
    pub fn connect(config: NbdConfig) -> Result<Self, NbdError> {
        config.validate()?;
        let first = Conn::open(&config)?;
        let info = first.shared.info;
        let block_size = match config.logical_block_size {
            Some(bs) if bs % info.min_block != 0 => {
                return Err(NbdError::InvalidConfig {
                    reason: format!(
                        "block size {bs} is not a multiple of the server's minimum {}",
                        info.min_block
                    ),
                });
            }
            Some(bs) => bs,
            None => info.min_block.max(512),
        };
        if block_size > 65536 || info.size % u64::from(block_size) != 0 {
            return Err(NbdError::InvalidConfig {
                reason: format!(
                    "export size {} is not a multiple of the block size {block_size}",
                    info.size
                ),
            });
        }
        let max_request = info.max_block.min(MAX_REQUEST_BYTES) / block_size * block_size;
        if max_request == 0 {
            return Err(NbdError::InvalidConfig {
                reason: format!(
                    "server maximum block size {} is below {block_size}",
                    info.max_block
                ),
            });
        }
        let count = if info.flags & TFLAG_CAN_MULTI_CONN != 0 {
            config.connections
        } else {
            1
        };
        let mut conns = vec![Mutex::new(Some(Arc::new(first)))];
        for _ in 1..count {
            conns.push(Mutex::new(Some(Arc::new(Conn::open(&config)?))));
        }
        Ok(Self {
            config,
            info,
            block_size,
            max_request,
            conns,
            next: AtomicUsize::new(0),
        })
    }

    /// Lists the exports of the server at `config`'s address
    /// (`NBD_OPT_LIST`; `config`'s export name is ignored).
    ///
    /// # Errors
    /// As [`connect`](Self::connect); [`NbdError::OptionRefused`] when the
    /// server refuses to list.
    pub fn list_exports(config: &NbdConfig) -> Result<Vec<String>, NbdError> {
        config.validate()?;
        handshake::list(config)
    }

    /// Connections in use (more than one only with `CAN_MULTI_CONN`).
    #[must_use]
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Whether the server sends structured replies on this backend's
    /// connections.
    #[must_use]
    pub fn structured_replies(&self) -> bool {
        self.info.structured
    }

    /// The transmission flags the server advertised (`TFLAG_*`).
    #[must_use]
    pub fn transmission_flags(&self) -> u16 {
        self.info.flags
    }

    fn has(&self, flag: u16) -> bool {
        self.info.flags & flag != 0
    }

    /// A live connection for slot `idx`, reopening a dead one.
    fn conn(&self, idx: usize) -> Result<Arc<Conn>, NbdError> {
        let mut slot = self.conns[idx]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = slot.as_ref()
            && !c.is_dead()
        {
            return Ok(Arc::clone(c));
        }
        *slot = None;
        let fresh = Conn::open(&self.config)?;
        let size = fresh.shared.info.size;
        if size != self.info.size {
            return Err(NbdError::SizeChanged {
                address: self.config.address.to_string(),
                export: self.config.export.clone(),
                before: self.info.size,
                after: size,
            });
        }
        let fresh = Arc::new(fresh);
        *slot = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    /// Runs `op` on a connection, reconnecting and retrying after a lost
    /// connection up to the configured number of attempts.
    fn run<T>(&self, op: impl Fn(&Conn) -> Result<T, NbdError>) -> Result<T, NbdError> {
        let idx = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let mut attempts = 0;
        loop {
            let result = self.conn(idx).and_then(|c| op(&c));
            match result {
                Err(e) if attempts < self.config.reconnect_attempts && lost(&e) => {
                    attempts += 1;
                    std::thread::sleep(self.config.reconnect_delay);
                }
                Err(e) if attempts > 0 && lost(&e) => {
                    return Err(NbdError::RetriesExhausted {
                        address: self.config.address.to_string(),
                        attempts,
                        last: Box::new(e),
                    });
                }
                other => return other,
            }
        }
    }

    /// Sends `pieces` of one command pipelined on one connection and waits
    /// for all of them.
    fn pipelined(
        &self,
        command: u16,
        flags: u16,
        pieces: &[(u64, u32)],
        payload: &[u8],
        mut on_done: impl FnMut(usize, Completion),
    ) -> Result<(), NbdError> {
        let Some(&(base, _)) = pieces.first() else {
            return Ok(());
        };
        let results = self.run(|c| {
            let mut waiting = Vec::with_capacity(pieces.len());
            for &(offset, len) in pieces {
                let data: &[u8] = if command == CMD_WRITE {
                    let rel = (offset - base) as usize;
                    &payload[rel..rel + len as usize]
                } else {
                    &[]
                };
                waiting.push(c.submit(command, flags, offset, len, data)?);
            }
            let mut out = Vec::with_capacity(waiting.len());
            for (cookie, rx) in waiting {
                out.push(c.wait(command, cookie, &rx, self.config.io_timeout)?);
            }
            Ok(out)
        })?;
        for (i, done) in results.into_iter().enumerate() {
            on_done(i, done);
        }
        Ok(())
    }

    fn split(&self, offset: u64, len: u64, max: u64) -> Vec<(u64, u32)> {
        let mut pieces = Vec::new();
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(max);
            pieces.push((offset + pos, n as u32));
            pos += n;
        }
        pieces
    }

    fn check(&self, op: BackendOp, offset: u64, len: u64) -> Result<(), BackendError> {
        crate::backend::check_range(op, offset, len, self.info.size)
    }

    fn write_zeroes_as_data(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        let zeros = vec![0u8; (self.max_request as u64).min(len) as usize];
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(zeros.len() as u64);
            self.write_at(offset + pos, &zeros[..n as usize], false)?;
            pos += n;
        }
        Ok(())
    }
}

fn lost(e: &NbdError) -> bool {
    e.is_connection_lost() || matches!(e, NbdError::Connect { .. })
}

/// Maps a client error to the backend contract's error.
fn backend_error(op: BackendOp, offset: u64, e: NbdError) -> BackendError {
    let kind = match &e {
        NbdError::Server { errno: ENOTSUP, .. } => return BackendError::Unsupported { op },
        NbdError::RetriesExhausted { .. } | NbdError::SizeChanged { .. } => {
            return BackendError::Gone {
                reason: e.to_string(),
            };
        }
        NbdError::Server { errno: ENOSPC, .. } => io::ErrorKind::StorageFull,
        NbdError::Server { errno: EINVAL, .. } => io::ErrorKind::InvalidInput,
        NbdError::Timeout { .. } => io::ErrorKind::TimedOut,
        NbdError::Disconnected { .. } | NbdError::Transport { .. } => {
            io::ErrorKind::ConnectionAborted
        }
        NbdError::Connect { .. } => io::ErrorKind::ConnectionRefused,
        _ => io::ErrorKind::Other,
    };
    BackendError::Io {
        op,
        offset,
        source: io::Error::new(kind, e),
    }
}

impl BlockBackend for NbdBackend {
    fn capacity_bytes(&self) -> u64 {
        self.info.size
    }

    fn logical_block_size(&self) -> u32 {
        self.block_size
    }

    fn supports(&self, op: BackendOp) -> bool {
        match op {
            BackendOp::Read | BackendOp::Write | BackendOp::Flush | BackendOp::WriteZeroes => true,
            BackendOp::Discard => self.has(TFLAG_SEND_TRIM),
            BackendOp::Allocation => self.info.allocation_context.is_some(),
            _ => false,
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let op = BackendOp::Read;
        self.check(op, offset, buf.len() as u64)?;
        let pieces = self.split(offset, buf.len() as u64, u64::from(self.max_request));
        self.pipelined(CMD_READ, 0, &pieces, &[], |i, done| {
            let rel = (pieces[i].0 - offset) as usize;
            buf[rel..rel + done.data.len()].copy_from_slice(&done.data);
        })
        .map_err(|e| backend_error(op, offset, e))
    }

    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        let op = BackendOp::Write;
        self.check(op, offset, data.len() as u64)?;
        let pieces = self.split(offset, data.len() as u64, u64::from(self.max_request));
        let native_fua = fua && self.has(TFLAG_SEND_FUA);
        let flags = if native_fua { CMD_FLAG_FUA } else { 0 };
        self.pipelined(CMD_WRITE, flags, &pieces, data, |_, _| {})
            .map_err(|e| backend_error(op, offset, e))?;
        if fua && !native_fua {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        if !self.has(TFLAG_SEND_FLUSH) {
            return Ok(());
        }
        self.pipelined(CMD_FLUSH, 0, &[(0, 0)], &[], |_, _| {})
            .map_err(|e| backend_error(BackendOp::Flush, 0, e))
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        let op = BackendOp::Discard;
        self.check(op, offset, len)?;
        if !self.has(TFLAG_SEND_TRIM) {
            return Err(BackendError::Unsupported { op });
        }
        let max = MAX_ZERO_REQUEST.min(u64::from(self.info.max_block.max(self.max_request)));
        let pieces = self.split(
            offset,
            len,
            max / u64::from(self.block_size) * u64::from(self.block_size),
        );
        if pieces.is_empty() {
            return Ok(());
        }
        self.pipelined(CMD_TRIM, 0, &pieces, &[], |_, _| {})
            .map_err(|e| backend_error(op, offset, e))
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        let op = BackendOp::WriteZeroes;
        self.check(op, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        if !self.has(TFLAG_SEND_WRITE_ZEROES) {
            return self.write_zeroes_as_data(offset, len);
        }
        let max = MAX_ZERO_REQUEST.min(u64::from(self.info.max_block.max(self.max_request)));
        let pieces = self.split(
            offset,
            len,
            max / u64::from(self.block_size) * u64::from(self.block_size),
        );
        self.pipelined(CMD_WRITE_ZEROES, 0, &pieces, &[], |_, _| {})
            .map_err(|e| backend_error(op, offset, e))
    }

    fn allocation(&self, offset: u64, len: u64) -> Result<Vec<AllocationExtent>, BackendError> {
        let op = BackendOp::Allocation;
        self.check(op, offset, len)?;
        if self.info.allocation_context.is_none() {
            return Err(BackendError::Unsupported { op });
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let bs = u64::from(self.block_size);
        let ask = len.min(u64::from(u32::MAX) / bs * bs) as u32;
        let mut status = Vec::new();
        self.pipelined(CMD_BLOCK_STATUS, 0, &[(offset, ask)], &[], |_, done| {
            status = done.status;
        })
        .map_err(|e| backend_error(op, offset, e))?;
        let end = offset + len;
        let mut extents: Vec<AllocationExtent> = Vec::new();
        let mut pos = offset;
        for (length, flags) in status {
            if pos >= end || length == 0 {
                break;
            }
            let n = u64::from(length).min(end - pos);
            let state = if flags & STATE_HOLE != 0 && flags & STATE_ZERO != 0 {
                AllocationState::Zero
            } else if flags & STATE_HOLE != 0 {
                AllocationState::Unknown
            } else {
                AllocationState::Allocated
            };
            match extents.last_mut() {
                Some(last) if last.state == state => last.len += n,
                _ => extents.push(AllocationExtent {
                    offset: pos,
                    len: n,
                    state,
                }),
            }
            pos += n;
        }
        if extents.is_empty() {
            return Err(backend_error(
                op,
                offset,
                NbdError::Protocol {
                    address: self.config.address.to_string(),
                    what: "block status reply without extents",
                    value: offset,
                },
            ));
        }
        Ok(extents)
    }

    fn resize(&self, _new_capacity_bytes: u64) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            op: BackendOp::Resize,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fixture() -> (Shared, mpsc::Receiver<Result<Completion, NbdError>>) {
        let (tx, rx) = mpsc::sync_channel(1);
        let shared = Shared {
            address: "test".to_owned(),
            pending: Mutex::new(HashMap::new()),
            dead: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
            info: ExportInfo {
                size: 1 << 20,
                flags: 0,
                min_block: 1,
                preferred_block: 4096,
                max_block: MAX_REQUEST_BYTES,
                structured: true,
                allocation_context: Some(1),
            },
        };
        shared.pending().insert(
            7,
            Pending {
                command: CMD_READ,
                offset: 4096,
                len: 512,
                done: Completion {
                    data: vec![0; 512],
                    status: Vec::new(),
                },
                error: None,
                tx,
            },
        );
        (shared, rx)
    }

    fn chunk_bytes(flags: u16, kind: u16, cookie: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = STRUCTURED_REPLY_MAGIC.to_be_bytes().to_vec();
        v.extend_from_slice(&flags.to_be_bytes());
        v.extend_from_slice(&kind.to_be_bytes());
        v.extend_from_slice(&cookie.to_be_bytes());
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn structured_read_completes() {
        let (shared, rx) = fixture();
        let mut payload = 4096u64.to_be_bytes().to_vec();
        payload.extend_from_slice(&[9u8; 512]);
        let bytes = chunk_bytes(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 7, &payload);
        read_reply(&shared, &mut bytes.as_slice()).expect("valid chunk");
        let done = rx.recv().expect("completion").expect("ok");
        assert_eq!(done.data, vec![9u8; 512]);
    }

    #[test]
    fn hostile_replies_are_violations() {
        // Unknown cookie.
        let (shared, _rx) = fixture();
        let bytes = chunk_bytes(REPLY_FLAG_DONE, REPLY_TYPE_NONE, 8, &[]);
        assert!(read_reply(&shared, &mut bytes.as_slice()).is_err());
        // A chunk length past the limit is refused before any allocation.
        let (shared, _rx) = fixture();
        let mut bytes = chunk_bytes(0, REPLY_TYPE_OFFSET_DATA, 7, &[]);
        bytes[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(read_reply(&shared, &mut bytes.as_slice()).is_err());
        // Data outside the request, with an offset that would overflow.
        let (shared, _rx) = fixture();
        let mut payload = u64::MAX.to_be_bytes().to_vec();
        payload.extend_from_slice(&[1u8; 16]);
        let bytes = chunk_bytes(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 7, &payload);
        assert!(read_reply(&shared, &mut bytes.as_slice()).is_err());
        // A bad magic.
        let (shared, _rx) = fixture();
        assert!(read_reply(&shared, &mut [0u8; 32].as_slice()).is_err());
    }

    #[test]
    fn error_chunk_maps_the_errno() {
        let (shared, rx) = fixture();
        let mut payload = ENOSPC.to_be_bytes().to_vec();
        payload.extend_from_slice(&2u16.to_be_bytes());
        payload.extend_from_slice(b"no");
        let bytes = chunk_bytes(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 7, &payload);
        read_reply(&shared, &mut bytes.as_slice()).expect("valid chunk");
        match rx.recv().expect("completion") {
            Err(NbdError::Server { errno, message, .. }) => {
                assert_eq!(errno, ENOSPC);
                assert_eq!(message, "no");
            }
            other => panic!("expected a server error, got {other:?}"),
        }
    }

    proptest! {
        /// Arbitrary server bytes give a reply or a violation; never a panic.
        #[test]
        fn arbitrary_reply_bytes_never_panic(
            kind in prop_oneof![Just(REPLY_TYPE_OFFSET_DATA), Just(REPLY_TYPE_OFFSET_HOLE), Just(REPLY_TYPE_BLOCK_STATUS), Just(REPLY_TYPE_ERROR), any::<u16>()],
            flags in any::<u16>(),
            cookie in prop_oneof![Just(7u64), any::<u64>()],
            payload in proptest::collection::vec(any::<u8>(), 0..600),
            raw in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let (shared, _rx) = fixture();
            let bytes = chunk_bytes(flags, kind, cookie, &payload);
            let _ = read_reply(&shared, &mut bytes.as_slice());
            let (shared, _rx) = fixture();
            let _ = read_reply(&shared, &mut raw.as_slice());
        }
    }
}
