//! The client side of fixed newstyle negotiation.

use std::io::{Read, Write};

use super::NbdConfig;
use super::error::NbdError;
use super::proto::*;
use super::stream::{NbdAddress, Stream, write_all_parts};

/// What negotiation learned about an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExportInfo {
    pub(crate) size: u64,
    pub(crate) flags: u16,
    pub(crate) min_block: u32,
    pub(crate) preferred_block: u32,
    pub(crate) max_block: u32,
    pub(crate) structured: bool,
    /// Context id of `base:allocation`, when negotiated.
    pub(crate) allocation_context: Option<u32>,
}

/// A raw option reply.
struct OptReply {
    kind: u32,
    data: Vec<u8>,
}

struct Negotiator<'a> {
    stream: Stream,
    address: &'a NbdAddress,
}

impl Negotiator<'_> {
    fn addr(&self) -> String {
        self.address.to_string()
    }

    fn transport(&self, source: std::io::Error) -> NbdError {
        NbdError::Transport {
            address: self.addr(),
            source,
        }
    }

    fn violation(&self, what: &'static str, value: u64) -> NbdError {
        NbdError::Protocol {
            address: self.addr(),
            what,
            value,
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), NbdError> {
        self.stream.read_exact(buf).map_err(|e| self.transport(e))
    }

    fn send_option(&mut self, option: u32, data: &[u8]) -> Result<(), NbdError> {
        let mut head = [0u8; 16];
        head[0..8].copy_from_slice(&IHAVEOPT.to_be_bytes());
        head[8..12].copy_from_slice(&option.to_be_bytes());
        head[12..16].copy_from_slice(&(data.len() as u32).to_be_bytes());
        write_all_parts(&mut self.stream, &[&head, data]).map_err(|e| self.transport(e))
    }

    fn read_reply(&mut self, option: u32) -> Result<OptReply, NbdError> {
        let mut head = [0u8; 20];
        self.read_exact(&mut head)?;
        let magic = be64(&head[0..8]);
        if magic != OPTION_REPLY_MAGIC {
            return Err(self.violation("bad option reply magic", magic));
        }
        let got = be32(&head[8..12]);
        if got != option {
            return Err(self.violation("option reply for another option", u64::from(got)));
        }
        let kind = be32(&head[12..16]);
        let len = be32(&head[16..20]);
        if len as usize > MAX_OPTION_BYTES {
            return Err(self.violation("option reply longer than MAX_OPTION_BYTES", u64::from(len)));
        }
        let mut data = vec![0u8; len as usize];
        self.read_exact(&mut data)?;
        Ok(OptReply { kind, data })
    }

    fn refused(&self, option: u32, reply: &OptReply) -> NbdError {
        NbdError::OptionRefused {
            address: self.addr(),
            option,
            reply: reply.kind,
            message: String::from_utf8_lossy(&reply.data).into_owned(),
        }
    }
}

/// Connects to `config.address` with the configured timeouts and does the
/// fixed-newstyle greeting; also says whether the server dropped the 124
/// zero bytes (`NO_ZEROES`).
fn connect_and_greet(config: &NbdConfig) -> Result<(Negotiator<'_>, bool), NbdError> {
    let stream = Stream::connect(&config.address, config.connect_timeout).map_err(|source| {
        NbdError::Connect {
            address: config.address.to_string(),
            source,
        }
    })?;
    let mut n = Negotiator {
        stream,
        address: &config.address,
    };
    n.stream
        .set_timeouts(Some(config.io_timeout))
        .map_err(|e| n.transport(e))?;
    let no_zeroes = greet(&mut n)?;
    Ok((n, no_zeroes))
}

/// Connects, negotiates and selects `config.export`. Returns the stream
/// ready for transmission and what was learned.
pub(crate) fn negotiate(config: &NbdConfig) -> Result<(Stream, ExportInfo), NbdError> {
    let (mut n, no_zeroes) = connect_and_greet(config)?;

    let mut structured = false;
    let mut allocation_context = None;
    if config.structured_replies {
        n.send_option(OPT_STRUCTURED_REPLY, &[])?;
        let r = n.read_reply(OPT_STRUCTURED_REPLY)?;
        structured = r.kind == REP_ACK;
        if structured {
            allocation_context = set_meta_context(&mut n, &config.export)?;
        }
    }
    let mut info = go(&mut n, &config.export, no_zeroes)?;
    info.structured = structured;
    info.allocation_context = allocation_context;
    n.stream
        .set_read_timeout(None)
        .map_err(|e| n.transport(e))?;
    Ok((n.stream, info))
}

/// Lists the server's exports with `NBD_OPT_LIST`, then aborts.
pub(crate) fn list(config: &NbdConfig) -> Result<Vec<String>, NbdError> {
    let (mut n, _) = connect_and_greet(config)?;
    n.send_option(OPT_LIST, &[])?;
    let mut names = Vec::new();
    loop {
        let r = n.read_reply(OPT_LIST)?;
        match r.kind {
            REP_ACK => break,
            REP_SERVER => {
                if names.len() >= MAX_LIST_EXPORTS {
                    return Err(
                        n.violation("more exports than MAX_LIST_EXPORTS", names.len() as u64)
                    );
                }
                let mut c = Cursor::new(&r.data);
                let name = c
                    .string()
                    .ok_or_else(|| n.violation("malformed NBD_REP_SERVER", r.data.len() as u64))?;
                names.push(name.to_owned());
            }
            _ => return Err(n.refused(OPT_LIST, &r)),
        }
    }
    let _ = n.send_option(OPT_ABORT, &[]);
    Ok(names)
}

/// Reads the server greeting and answers it; returns whether the 124 zero
/// bytes are skipped.
fn greet(n: &mut Negotiator<'_>) -> Result<bool, NbdError> {
    let mut hello = [0u8; 18];
    n.read_exact(&mut hello)?;
    let magic = be64(&hello[0..8]);
    if magic != NBD_MAGIC {
        return Err(n.violation("bad server magic", magic));
    }
    let style = be64(&hello[8..16]);
    let flags = be16(&hello[16..18]);
    if style != IHAVEOPT || flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(NbdError::NotFixedNewstyle {
            address: n.addr(),
            flags,
        });
    }
    let no_zeroes = flags & FLAG_NO_ZEROES != 0;
    let mut client = FLAG_C_FIXED_NEWSTYLE;
    if no_zeroes {
        client |= FLAG_C_NO_ZEROES;
    }
    n.stream
        .write_all(&client.to_be_bytes())
        .map_err(|e| n.transport(e))?;
    Ok(no_zeroes)
}

fn set_meta_context(n: &mut Negotiator<'_>, export: &str) -> Result<Option<u32>, NbdError> {
    let mut data = Vec::new();
    data.extend_from_slice(&(export.len() as u32).to_be_bytes());
    data.extend_from_slice(export.as_bytes());
    data.extend_from_slice(&1u32.to_be_bytes());
    data.extend_from_slice(&(BASE_ALLOCATION.len() as u32).to_be_bytes());
    data.extend_from_slice(BASE_ALLOCATION.as_bytes());
    n.send_option(OPT_SET_META_CONTEXT, &data)?;
    let mut context = None;
    for _ in 0..MAX_OPTIONS {
        let r = n.read_reply(OPT_SET_META_CONTEXT)?;
        match r.kind {
            REP_ACK => return Ok(context),
            REP_META_CONTEXT => {
                let mut c = Cursor::new(&r.data);
                let id = c.u32().ok_or_else(|| {
                    n.violation("short NBD_REP_META_CONTEXT", r.data.len() as u64)
                })?;
                if c.rest() == BASE_ALLOCATION.as_bytes() {
                    context = Some(id);
                }
            }
            kind if kind & REP_FLAG_ERROR != 0 => return Ok(None),
            kind => return Err(n.violation("unexpected meta context reply", u64::from(kind))),
        }
    }
    Err(n.violation("too many meta context replies", MAX_OPTIONS as u64))
}

fn go(n: &mut Negotiator<'_>, export: &str, no_zeroes: bool) -> Result<ExportInfo, NbdError> {
    if export.len() > MAX_STRING_BYTES {
        return Err(NbdError::InvalidConfig {
            reason: format!("export name longer than {MAX_STRING_BYTES} bytes"),
        });
    }
    let mut data = Vec::new();
    data.extend_from_slice(&(export.len() as u32).to_be_bytes());
    data.extend_from_slice(export.as_bytes());
    data.extend_from_slice(&1u16.to_be_bytes());
    data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    n.send_option(OPT_GO, &data)?;
    let mut info = ExportInfo {
        size: 0,
        flags: 0,
        min_block: 1,
        preferred_block: 4096,
        max_block: MAX_REQUEST_BYTES,
        structured: false,
        allocation_context: None,
    };
    let mut have_export = false;
    for _ in 0..MAX_OPTIONS {
        let r = n.read_reply(OPT_GO)?;
        match r.kind {
            REP_ACK => {
                if !have_export {
                    return Err(n.violation("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT", 0));
                }
                return Ok(info);
            }
            REP_INFO => {
                let mut c = Cursor::new(&r.data);
                let bad = || n.violation("malformed NBD_REP_INFO", r.data.len() as u64);
                match c.u16().ok_or_else(bad)? {
                    INFO_EXPORT => {
                        info.size = c.u64().ok_or_else(bad)?;
                        info.flags = c.u16().ok_or_else(bad)?;
                        have_export = true;
                    }
                    INFO_BLOCK_SIZE => {
                        info.min_block = c.u32().ok_or_else(bad)?;
                        info.preferred_block = c.u32().ok_or_else(bad)?;
                        info.max_block = c.u32().ok_or_else(bad)?;
                        if info.min_block == 0
                            || !info.min_block.is_power_of_two()
                            || info.max_block < info.min_block
                        {
                            return Err(n.violation(
                                "invalid block size constraints",
                                u64::from(info.min_block),
                            ));
                        }
                    }
                    _ => {}
                }
            }
            REP_ERR_UNKNOWN => {
                return Err(NbdError::UnknownExport {
                    address: n.addr(),
                    export: export.to_owned(),
                });
            }
            REP_ERR_UNSUP => return export_name(n, export, no_zeroes, info),
            kind if kind & REP_FLAG_ERROR != 0 => return Err(n.refused(OPT_GO, &r)),
            kind => return Err(n.violation("unexpected NBD_OPT_GO reply", u64::from(kind))),
        }
    }
    Err(n.violation("too many NBD_OPT_GO replies", MAX_OPTIONS as u64))
}

/// The old way to select an export, for servers without `NBD_OPT_GO`.
fn export_name(
    n: &mut Negotiator<'_>,
    export: &str,
    no_zeroes: bool,
    mut info: ExportInfo,
) -> Result<ExportInfo, NbdError> {
    n.send_option(OPT_EXPORT_NAME, export.as_bytes())?;
    let mut head = [0u8; 10];
    n.read_exact(&mut head)
        .map_err(|_| NbdError::UnknownExport {
            address: n.addr(),
            export: export.to_owned(),
        })?;
    info.size = be64(&head[0..8]);
    info.flags = be16(&head[8..10]);
    if !no_zeroes {
        let mut pad = [0u8; EXPORT_NAME_PADDING];
        n.read_exact(&mut pad)?;
    }
    Ok(info)
}
