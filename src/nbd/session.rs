//! One server connection: negotiation, then transmission with a few worker
//! threads answering requests out of order.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};

use super::error::ConnectionError;
use super::exports::{Export, ExportCatalog};
use super::proto::*;
use super::server::ServerConfig;
use super::stream::write_all_parts;
use crate::admission::{AdmissionError, BUFFER_CHUNK_BYTES, Reservation, SessionTicket};
use crate::backend::AllocationState;

/// The export a connection selected and what was negotiated on the way.
#[derive(Debug)]
pub(crate) struct Session {
    export: Export,
    size: u64,
    structured: bool,
    allocation: bool,
}

fn violation(what: &'static str, value: u64) -> ConnectionError {
    ConnectionError::Protocol { what, value }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> Result<(), ConnectionError> {
    r.read_exact(buf).map_err(ConnectionError::from)
}

fn opt_reply(
    w: &mut impl Write,
    option: u32,
    kind: u32,
    data: &[u8],
) -> Result<(), ConnectionError> {
    let mut head = [0u8; 20];
    head[0..8].copy_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    head[8..12].copy_from_slice(&option.to_be_bytes());
    head[12..16].copy_from_slice(&kind.to_be_bytes());
    head[16..20].copy_from_slice(&(data.len() as u32).to_be_bytes());
    write_all_parts(w, &[&head, data]).map_err(ConnectionError::from)
}

fn string_bytes(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + s.len());
    v.extend_from_slice(&(s.len() as u32).to_be_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

/// What negotiation asks the admission layer.
pub(crate) trait Gate {
    /// The client sent its first message (its flags).
    fn progressed(&mut self);
    /// The client chose `export`: establish its session (for the export's
    /// host, if it has one) or say why not.
    fn admit(&mut self, export: &Export) -> Result<(), AdmissionError>;
    /// The largest payload to advertise (`NBD_INFO_BLOCK_SIZE`).
    fn max_payload(&self) -> u32;
}

/// Runs negotiation on `s`. Returns the session to transmit on, or `None`
/// when the client aborted.
///
/// # Errors
/// A transport failure, a protocol violation or a size past a limit; the
/// caller closes the connection.
pub(crate) fn negotiate<S: Read + Write>(
    s: &mut S,
    catalog: &dyn ExportCatalog,
    gate: &mut dyn Gate,
) -> Result<Option<Session>, ConnectionError> {
    let mut hello = [0u8; 18];
    hello[0..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    hello[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    hello[16..18].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello)?;
    let mut cf = [0u8; 4];
    read_exact(s, &mut cf)?;
    let client_flags = be32(&cf);
    gate.progressed();
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(violation("unknown client flags", u64::from(client_flags)));
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
    let mut structured = false;
    let mut allocation_for: Option<String> = None;
    for _ in 0..MAX_OPTIONS {
        let mut head = [0u8; 16];
        read_exact(s, &mut head)?;
        let magic = be64(&head[0..8]);
        if magic != IHAVEOPT {
            return Err(violation("bad option magic", magic));
        }
        let option = be32(&head[8..12]);
        let len = be32(&head[12..16]);
        if len as usize > MAX_OPTION_BYTES {
            return Err(ConnectionError::TooLarge {
                what: "option payload",
                len: u64::from(len),
                limit: MAX_OPTION_BYTES as u64,
            });
        }
        let mut data = vec![0u8; len as usize];
        read_exact(s, &mut data)?;
        match option {
            OPT_EXPORT_NAME => {
                let name = std::str::from_utf8(&data)
                    .map_err(|_| violation("export name is not UTF-8", u64::from(len)))?;
                let export = catalog
                    .open(name)
                    .ok_or_else(|| violation("NBD_OPT_EXPORT_NAME of an unknown export", 0))?;
                let (size, _block_size) = export
                    .geometry()
                    .map_err(|errno| violation("export is no longer bound", u64::from(errno)))?;
                // EXPORT_NAME has no error reply: a refusal closes.
                gate.admit(&export)?;
                let session = Session {
                    allocation: false,
                    export,
                    size,
                    structured,
                };
                let mut reply = Vec::with_capacity(10 + EXPORT_NAME_PADDING);
                reply.extend_from_slice(&size.to_be_bytes());
                reply.extend_from_slice(&session.flags().to_be_bytes());
                if !no_zeroes {
                    reply.extend_from_slice(&[0u8; EXPORT_NAME_PADDING]);
                }
                s.write_all(&reply)?;
                return Ok(Some(session));
            }
            OPT_ABORT => {
                let _ = opt_reply(s, option, REP_ACK, &[]);
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    opt_reply(s, option, REP_ERR_INVALID, b"NBD_OPT_LIST takes no data")?;
                    continue;
                }
                for name in catalog.list().into_iter().take(MAX_LIST_EXPORTS) {
                    opt_reply(s, option, REP_SERVER, &string_bytes(&name))?;
                }
                opt_reply(s, option, REP_ACK, &[])?;
            }
            OPT_STRUCTURED_REPLY => {
                if data.is_empty() {
                    structured = true;
                    opt_reply(s, option, REP_ACK, &[])?;
                } else {
                    opt_reply(s, option, REP_ERR_INVALID, b"no data expected")?;
                }
            }
            OPT_INFO | OPT_GO => {
                if let Some(session) = info_or_go(
                    s,
                    option,
                    &data,
                    catalog,
                    structured,
                    allocation_for.as_deref(),
                    gate,
                )? {
                    return Ok(Some(session));
                }
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                meta_context(s, option, &data, catalog, structured, &mut allocation_for)?;
            }
            _ => opt_reply(s, option, REP_ERR_UNSUP, b"option not supported")?,
        }
    }
    Err(violation("too many options", MAX_OPTIONS as u64))
}

/// Answers `NBD_OPT_INFO` or `NBD_OPT_GO`; returns the session for a
/// successful GO.
fn info_or_go(
    s: &mut impl Write,
    option: u32,
    data: &[u8],
    catalog: &dyn ExportCatalog,
    structured: bool,
    allocation_for: Option<&str>,
    gate: &mut dyn Gate,
) -> Result<Option<Session>, ConnectionError> {
    let mut c = Cursor::new(data);
    let parsed = (|| {
        let name = c.string()?;
        let count = usize::from(c.u16()?);
        if count > MAX_INFO_REQUESTS {
            return None;
        }
        let mut infos = Vec::with_capacity(count);
        for _ in 0..count {
            infos.push(c.u16()?);
        }
        c.is_empty().then_some((name, infos))
    })();
    let Some((name, infos)) = parsed else {
        opt_reply(s, option, REP_ERR_INVALID, b"malformed request")?;
        return Ok(None);
    };
    let Some(export) = catalog.open(name) else {
        opt_reply(s, option, REP_ERR_UNKNOWN, b"no such export")?;
        return Ok(None);
    };
    let Ok((size, block_size)) = export.geometry() else {
        opt_reply(s, option, REP_ERR_UNKNOWN, b"export is no longer bound")?;
        return Ok(None);
    };
    if option == OPT_GO {
        // Refused by policy (a limit): the client may try again later; the
        // connection stays in negotiation under its deadline.
        if let Err(refused) = gate.admit(&export) {
            opt_reply(s, option, REP_ERR_POLICY, refused.to_string().as_bytes())?;
            return Ok(None);
        }
    }
    let session = Session {
        allocation: structured && allocation_for == Some(name),
        export,
        size,
        structured,
    };
    let mut exp = Vec::with_capacity(12);
    exp.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    exp.extend_from_slice(&size.to_be_bytes());
    exp.extend_from_slice(&session.flags().to_be_bytes());
    opt_reply(s, option, REP_INFO, &exp)?;
    let mut bs = Vec::with_capacity(14);
    bs.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    bs.extend_from_slice(&block_size.to_be_bytes());
    let preferred = block_size.max(4096);
    let max_payload = (gate.max_payload() / preferred * preferred).max(preferred);
    bs.extend_from_slice(&preferred.to_be_bytes());
    bs.extend_from_slice(&max_payload.to_be_bytes());
    opt_reply(s, option, REP_INFO, &bs)?;
    if infos.contains(&INFO_NAME) {
        let mut n = INFO_NAME.to_be_bytes().to_vec();
        n.extend_from_slice(name.as_bytes());
        opt_reply(s, option, REP_INFO, &n)?;
    }
    opt_reply(s, option, REP_ACK, &[])?;
    Ok((option == OPT_GO).then_some(session))
}

/// Answers `NBD_OPT_LIST_META_CONTEXT` and `NBD_OPT_SET_META_CONTEXT`; only
/// `base:allocation` exists (context id 1).
fn meta_context(
    s: &mut impl Write,
    option: u32,
    data: &[u8],
    catalog: &dyn ExportCatalog,
    structured: bool,
    allocation_for: &mut Option<String>,
) -> Result<(), ConnectionError> {
    /// Most queries one meta context option may carry.
    const MAX_QUERIES: u32 = 64;
    if !structured {
        return opt_reply(s, option, REP_ERR_INVALID, b"structured replies first");
    }
    let mut c = Cursor::new(data);
    let parsed = (|| {
        let name = c.string()?;
        let count = c.u32()?;
        if count > MAX_QUERIES {
            return None;
        }
        let mut queries = Vec::new();
        for _ in 0..count {
            queries.push(c.string()?);
        }
        c.is_empty().then_some((name, queries))
    })();
    let Some((name, queries)) = parsed else {
        return opt_reply(s, option, REP_ERR_INVALID, b"malformed request");
    };
    if catalog.open(name).is_none() {
        return opt_reply(s, option, REP_ERR_UNKNOWN, b"no such export");
    }
    let set = option == OPT_SET_META_CONTEXT;
    let matches = if set {
        queries.contains(&BASE_ALLOCATION)
    } else {
        queries.is_empty()
            || queries
                .iter()
                .any(|q| *q == "base:" || *q == BASE_ALLOCATION)
    };
    if set {
        *allocation_for = matches.then(|| name.to_owned());
    }
    if matches {
        let id: u32 = u32::from(set);
        let mut reply = id.to_be_bytes().to_vec();
        reply.extend_from_slice(BASE_ALLOCATION.as_bytes());
        opt_reply(s, option, REP_META_CONTEXT, &reply)?;
    }
    opt_reply(s, option, REP_ACK, &[])
}

impl Session {
    fn flags(&self) -> u16 {
        let mut f = TFLAG_HAS_FLAGS
            | TFLAG_SEND_FLUSH
            | TFLAG_SEND_FUA
            | TFLAG_SEND_WRITE_ZEROES
            | TFLAG_CAN_MULTI_CONN;
        if self.export.can_trim() {
            f |= TFLAG_SEND_TRIM;
        }
        if self.structured {
            f |= TFLAG_SEND_DF;
        }
        f
    }
}

/// A request handed to a worker.
#[derive(Debug)]
struct Job {
    header: RequestHeader,
    /// The error to answer with instead of executing (a refused budget).
    refusal: Option<u32>,
    /// The request's data (a write's payload, a read's buffer) in the
    /// connection and global budgets, given back when the job is dropped,
    /// after its reply.
    data: Option<Reservation>,
}

/// Scratch size for skipping the payload of a refused write.
const DRAIN_CHUNK_BYTES: usize = 64 << 10;

/// Serves transmission on `s` until the client disconnects or breaks the
/// protocol.
///
/// # Errors
/// As [`negotiate`], and [`AdmissionError::IdleTimeout`].
pub(crate) fn transmit(
    s: &TcpStream,
    session: &Session,
    config: &ServerConfig,
    ticket: &SessionTicket,
) -> Result<(), ConnectionError> {
    let writer = Mutex::new(s.try_clone()?);
    let in_flight = AtomicUsize::new(0);
    let finish = |mut job: Job| {
        let sent = answer(&writer, session, &mut job);
        drop(job);
        in_flight.fetch_sub(1, Ordering::AcqRel);
        sent
    };
    let reader = Reader {
        session,
        ticket,
        in_flight: &in_flight,
    };
    if config.workers_per_connection == 0 {
        // Inline: the reading thread answers each request itself.
        return reader.run(s, &mut |job| finish(job).map_err(ConnectionError::from));
    }
    let (tx, rx) = mpsc::sync_channel::<Job>(config.workers_per_connection);
    let rx = Mutex::new(rx);
    std::thread::scope(|scope| {
        for _ in 0..config.workers_per_connection {
            scope.spawn(|| {
                loop {
                    let job = match rx.lock().unwrap_or_else(PoisonError::into_inner).recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    if finish(job).is_err() {
                        // The reader notices the shut-down socket and stops.
                        let _ = s.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                }
            });
        }
        let result = reader.run(s, &mut |job| {
            tx.send(job).map_err(|_| {
                ConnectionError::Transport(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "sending a reply failed",
                ))
            })
        });
        drop(tx);
        result
    })
}

/// How [`Reader::fill`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Filled {
    Full,
    /// The client went away between requests.
    Eof,
}

/// The reading side of one connection.
struct Reader<'a> {
    session: &'a Session,
    ticket: &'a SessionTicket,
    /// Requests dispatched and not yet answered.
    in_flight: &'a AtomicUsize,
}

impl Reader<'_> {
    fn run(
        &self,
        s: &TcpStream,
        dispatch: &mut dyn FnMut(Job) -> Result<(), ConnectionError>,
    ) -> Result<(), ConnectionError> {
        let mut r = BufReader::with_capacity(128 << 10, s);
        loop {
            let mut raw = [0u8; RequestHeader::SIZE];
            if self.fill(&mut r, &mut raw, true)? == Filled::Eof {
                return Ok(());
            }
            let header = RequestHeader::decode(&raw)
                .map_err(|magic| violation("bad request magic", u64::from(magic)))?;
            if header.command == CMD_DISC {
                return Ok(());
            }
            let len = u64::from(header.length);
            let mut job = Job {
                header,
                refusal: None,
                data: None,
            };
            if header.command == CMD_WRITE {
                if header.length > MAX_REQUEST_BYTES {
                    return Err(ConnectionError::TooLarge {
                        what: "write payload",
                        len,
                        limit: u64::from(MAX_REQUEST_BYTES),
                    });
                }
                match self.ticket.reserve(len) {
                    Ok(mut reservation) => {
                        for slice in reservation.slices_mut() {
                            self.fill(&mut r, slice, false)?;
                        }
                        job.data = Some(reservation);
                    }
                    Err(refused) => {
                        self.drain(&mut r, len)?;
                        job.refusal = Some(refusal_errno(&refused, self.session.structured));
                    }
                }
            } else if header.command == CMD_READ && header.length <= MAX_REQUEST_BYTES {
                match self.ticket.reserve(len) {
                    Ok(reservation) => job.data = Some(reservation),
                    Err(refused) => {
                        job.refusal = Some(refusal_errno(&refused, self.session.structured));
                    }
                }
            }
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            dispatch(job)?;
        }
    }

    /// Fills `buf` from the client. A read timeout (only set with an idle
    /// timeout) closes the session when nothing is in flight or the client
    /// stalled inside a request; `between` is true at a request boundary,
    /// where a clean end of stream is [`Filled::Eof`].
    fn fill(
        &self,
        r: &mut impl Read,
        buf: &mut [u8],
        between: bool,
    ) -> Result<Filled, ConnectionError> {
        use std::io::ErrorKind;
        let mut filled = 0;
        while filled < buf.len() {
            match r.read(&mut buf[filled..]) {
                // A client that simply goes away ends the session quietly.
                Ok(0) if between => return Ok(Filled::Eof),
                Ok(0) => return Err(std::io::Error::from(ErrorKind::UnexpectedEof).into()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if between && filled == 0 && self.in_flight.load(Ordering::Acquire) > 0 {
                        continue;
                    }
                    return Err(self.ticket.idle_timed_out().into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Filled::Full)
    }

    /// Skips `len` payload bytes through a small scratch buffer.
    fn drain(&self, r: &mut impl Read, len: u64) -> Result<(), ConnectionError> {
        let mut scratch = vec![0u8; DRAIN_CHUNK_BYTES];
        let mut left = len;
        while left > 0 {
            let now = left.min(DRAIN_CHUNK_BYTES as u64) as usize;
            self.fill(r, &mut scratch[..now], false)?;
            left -= now as u64;
        }
        Ok(())
    }
}

/// The NBD error for a request the budgets refused: `EOVERFLOW` (or
/// `EINVAL` without structured replies) for a payload past the connection
/// budget, which is the advertised maximum; `ENOMEM` when the global budget
/// stayed full.
fn refusal_errno(refused: &AdmissionError, structured: bool) -> u32 {
    match refused {
        AdmissionError::OverBudget { .. } if structured => EOVERFLOW,
        AdmissionError::OverBudget { .. } => EINVAL,
        AdmissionError::BudgetExhausted { .. } => ENOMEM,
        _ => EIO,
    }
}

/// Executes one request and sends its reply.
fn answer(writer: &Mutex<TcpStream>, session: &Session, job: &mut Job) -> std::io::Result<()> {
    let h = job.header;
    if let Some(errno) = job.refusal {
        return reply_error(writer, session, h.cookie, errno);
    }
    let known = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_DF | CMD_FLAG_REQ_ONE;
    if h.flags & !known != 0 {
        return reply_error(writer, session, h.cookie, EINVAL);
    }
    let len = u64::from(h.length);
    let in_range = h
        .offset
        .checked_add(len)
        .is_some_and(|end| end <= session.size);
    match h.command {
        CMD_READ => {
            if h.length > MAX_REQUEST_BYTES {
                return reply_error(writer, session, h.cookie, EINVAL);
            }
            if !in_range {
                return reply_error(writer, session, h.cookie, EINVAL);
            }
            let Some(data) = job.data.as_mut() else {
                return reply_error(writer, session, h.cookie, EIO);
            };
            let mut offset = h.offset;
            for slice in data.slices_mut() {
                if let Err(errno) = session.export.read(offset, slice) {
                    return reply_error(writer, session, h.cookie, errno);
                }
                offset += slice.len() as u64;
            }
            reply_read(writer, session, &h, data)
        }
        CMD_WRITE => {
            let fua = h.flags & CMD_FLAG_FUA != 0;
            let result = match job.data.as_ref() {
                Some(data) if in_range => {
                    // Chunk by chunk; NBD promises no atomicity across a
                    // write, and FUA holds for each piece.
                    let mut offset = h.offset;
                    data.slices().try_for_each(|slice| {
                        session.export.write(offset, slice, fua)?;
                        offset += slice.len() as u64;
                        Ok(())
                    })
                }
                Some(_) => Err(ENOSPC),
                None => Err(EIO),
            };
            reply_status(writer, session, h.cookie, result)
        }
        CMD_FLUSH => reply_status(writer, session, h.cookie, session.export.flush()),
        CMD_TRIM | CMD_WRITE_ZEROES => {
            let mut result = if !in_range {
                Err(ENOSPC)
            } else if h.command == CMD_TRIM {
                session.export.trim(h.offset, len)
            } else {
                session.export.write_zeroes(h.offset, len)
            };
            if result.is_ok() && h.flags & CMD_FLAG_FUA != 0 {
                result = session.export.flush();
            }
            reply_status(writer, session, h.cookie, result)
        }
        CMD_BLOCK_STATUS if session.allocation => {
            if !in_range || len == 0 {
                return reply_error(writer, session, h.cookie, EINVAL);
            }
            match session.export.allocation(h.offset, len) {
                Ok(extents) => {
                    let one = h.flags & CMD_FLAG_REQ_ONE != 0;
                    reply_block_status(writer, h.cookie, &extents, one)
                }
                Err(errno) => reply_error(writer, session, h.cookie, errno),
            }
        }
        _ => reply_error(writer, session, h.cookie, EINVAL),
    }
}

fn send(writer: &Mutex<TcpStream>, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
    write_all_parts(&mut *w, parts)
}

fn simple_header(errno: u32, cookie: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&errno.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b
}

fn chunk_header(flags: u16, kind: u16, cookie: u64, length: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&kind.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b[16..20].copy_from_slice(&length.to_be_bytes());
    b
}

fn reply_status(
    writer: &Mutex<TcpStream>,
    session: &Session,
    cookie: u64,
    result: Result<(), u32>,
) -> std::io::Result<()> {
    match result {
        Ok(()) if session.structured => send(
            writer,
            &[&chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0)],
        ),
        Ok(()) => send(writer, &[&simple_header(0, cookie)]),
        Err(errno) => reply_error(writer, session, cookie, errno),
    }
}

fn reply_error(
    writer: &Mutex<TcpStream>,
    session: &Session,
    cookie: u64,
    errno: u32,
) -> std::io::Result<()> {
    if session.structured {
        let msg = errno_name(errno).as_bytes();
        let mut body = Vec::with_capacity(6 + msg.len());
        body.extend_from_slice(&errno.to_be_bytes());
        body.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        body.extend_from_slice(msg);
        let head = chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie, body.len() as u32);
        send(writer, &[&head, &body])
    } else {
        send(writer, &[&simple_header(errno, cookie)])
    }
}

fn reply_read(
    writer: &Mutex<TcpStream>,
    session: &Session,
    h: &RequestHeader,
    data: &Reservation,
) -> std::io::Result<()> {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(2 + data.bytes() as usize / BUFFER_CHUNK_BYTES);
    if !session.structured {
        let head = simple_header(0, h.cookie);
        parts.push(&head);
        parts.extend(data.slices());
        return send(writer, &parts);
    }
    if data.is_empty() {
        return send(
            writer,
            &[&chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_NONE, h.cookie, 0)],
        );
    }
    let head = chunk_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_OFFSET_DATA,
        h.cookie,
        8 + data.len() as u32,
    );
    let offset = h.offset.to_be_bytes();
    parts.push(&head);
    parts.push(&offset);
    parts.extend(data.slices());
    send(writer, &parts)
}

fn reply_block_status(
    writer: &Mutex<TcpStream>,
    cookie: u64,
    extents: &[crate::backend::AllocationExtent],
    one: bool,
) -> std::io::Result<()> {
    let mut body = Vec::with_capacity(4 + 8 * extents.len());
    body.extend_from_slice(&1u32.to_be_bytes());
    for e in extents.iter().take(if one { 1 } else { extents.len() }) {
        let flags = match e.state {
            AllocationState::Zero => STATE_HOLE | STATE_ZERO,
            _ => 0,
        };
        // Extents of one reply never pass the request's u32 length.
        let len = u32::try_from(e.len).unwrap_or(u32::MAX);
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(&flags.to_be_bytes());
    }
    let head = chunk_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_BLOCK_STATUS,
        cookie,
        body.len() as u32,
    );
    send(writer, &[&head, &body])
}

#[cfg(test)]
mod tests {
    use std::io::{self, Cursor as IoCursor, Read, Write};
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::MemoryBackend;
    use crate::nbd::BackendExports;

    /// Client bytes in, server bytes out.
    struct Mock {
        input: IoCursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Mock {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Mock {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A gate that admits everything.
    struct Open;

    impl Gate for Open {
        fn progressed(&mut self) {}
        fn admit(&mut self, _: &Export) -> Result<(), AdmissionError> {
            Ok(())
        }
        fn max_payload(&self) -> u32 {
            MAX_REQUEST_BYTES
        }
    }

    fn catalog() -> BackendExports {
        BackendExports::new().with(
            "disk",
            Arc::new(MemoryBackend::new(1 << 20, 512).expect("memory")),
        )
    }

    fn option(opt: u32, data: &[u8]) -> Vec<u8> {
        let mut v = IHAVEOPT.to_be_bytes().to_vec();
        v.extend_from_slice(&opt.to_be_bytes());
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn run(input: Vec<u8>) -> (Result<Option<Session>, ConnectionError>, Vec<u8>) {
        let mut m = Mock {
            input: IoCursor::new(input),
            output: Vec::new(),
        };
        let r = negotiate(&mut m, &catalog(), &mut Open);
        (r, m.output)
    }

    fn go(name: &str) -> Vec<u8> {
        let mut d = string_bytes(name);
        d.extend_from_slice(&0u16.to_be_bytes());
        option(OPT_GO, &d)
    }

    /// The reply types the server sent, in order, after the 18-byte greeting.
    fn reply_types(out: &[u8]) -> Vec<u32> {
        let mut c = Cursor::new(&out[18..]);
        let mut kinds = Vec::new();
        while let Some(_magic) = c.u64() {
            let _opt = c.u32();
            kinds.push(c.u32().expect("type"));
            let len = c.u32().expect("len") as usize;
            c.take(len).expect("payload");
        }
        kinds
    }

    #[test]
    fn go_selects_an_export_with_structured_replies() {
        let mut input = FLAG_C_FIXED_NEWSTYLE.to_be_bytes().to_vec();
        input.extend(option(OPT_STRUCTURED_REPLY, &[]));
        input.extend(go("disk"));
        let (r, out) = run(input);
        let session = r.expect("negotiated").expect("a session");
        assert!(session.structured);
        assert_eq!(session.size, 1 << 20);
        assert_eq!(reply_types(&out), [REP_ACK, REP_INFO, REP_INFO, REP_ACK]);
    }

    #[test]
    fn option_edge_cases() {
        let mut input = (FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
            .to_be_bytes()
            .to_vec();
        input.extend(go("nope"));
        input.extend(option(OPT_STARTTLS, &[]));
        input.extend(option(OPT_EXTENDED_HEADERS, &[]));
        input.extend(option(OPT_STRUCTURED_REPLY, &[1]));
        input.extend(option(OPT_SET_META_CONTEXT, &[])); // before structured replies
        input.extend(option(OPT_LIST, &[1, 2]));
        input.extend(option(OPT_LIST, &[]));
        input.extend(option(OPT_GO, &[0, 0, 0, 200])); // name length past the data
        input.extend(option(OPT_ABORT, &[]));
        let (r, out) = run(input);
        assert!(r.expect("clean").is_none(), "abort ends negotiation");
        assert_eq!(
            reply_types(&out),
            [
                REP_ERR_UNKNOWN,
                REP_ERR_UNSUP,
                REP_ERR_UNSUP,
                REP_ERR_INVALID,
                REP_ERR_INVALID,
                REP_ERR_INVALID,
                REP_SERVER,
                REP_ACK,
                REP_ERR_INVALID,
                REP_ACK,
            ]
        );
    }

    #[test]
    fn hostile_negotiation_is_a_typed_error() {
        // Unknown client flags.
        let (r, _) = run(0xFFu32.to_be_bytes().to_vec());
        assert!(matches!(r, Err(ConnectionError::Protocol { .. })));
        // An option longer than the limit.
        let mut input = 1u32.to_be_bytes().to_vec();
        input.extend(IHAVEOPT.to_be_bytes());
        input.extend(OPT_LIST.to_be_bytes());
        input.extend(u32::MAX.to_be_bytes());
        let (r, _) = run(input);
        assert!(matches!(r, Err(ConnectionError::TooLarge { .. })));
        // Too many options.
        let mut input = 1u32.to_be_bytes().to_vec();
        for _ in 0..=MAX_OPTIONS {
            input.extend(option(99, &[]));
        }
        let (r, _) = run(input);
        assert!(matches!(r, Err(ConnectionError::Protocol { .. })));
        // EXPORT_NAME of an unknown export closes the connection.
        let mut input = 1u32.to_be_bytes().to_vec();
        input.extend(option(OPT_EXPORT_NAME, b"nope"));
        assert!(run(input).0.is_err());
        // Truncated input.
        let (r, _) = run(vec![0, 0]);
        assert!(matches!(r, Err(ConnectionError::Transport(_))));
    }

    #[test]
    fn export_name_sends_size_and_padding() {
        let mut input = FLAG_C_FIXED_NEWSTYLE.to_be_bytes().to_vec();
        input.extend(option(OPT_EXPORT_NAME, b"disk"));
        let (r, out) = run(input);
        assert!(r.expect("ok").is_some());
        assert_eq!(out.len(), 18 + 10 + EXPORT_NAME_PADDING);
        assert_eq!(be64(&out[18..26]), 1 << 20);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary client bytes give a session, a clean end or a typed
        /// error; never a panic.
        #[test]
        fn arbitrary_negotiation_bytes_never_panic(
            flags in prop_oneof![Just(1u32), Just(3u32), any::<u32>()],
            options in proptest::collection::vec((0u32..16, proptest::collection::vec(any::<u8>(), 0..64)), 0..8),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut input = flags.to_be_bytes().to_vec();
            for (opt, data) in &options {
                input.extend(option(*opt, data));
            }
            input.extend(tail);
            let _ = run(input);
        }

        #[test]
        fn arbitrary_request_headers_decode_or_name_the_magic(raw in proptest::array::uniform28(any::<u8>())) {
            match RequestHeader::decode(&raw) {
                Ok(h) => prop_assert_eq!(h.encode(), raw),
                Err(magic) => prop_assert_ne!(magic, REQUEST_MAGIC),
            }
        }
    }
}
