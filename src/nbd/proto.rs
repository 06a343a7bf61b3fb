//! Wire constants and fixed-size structures of the NBD protocol
//! (`doc/proto.md` of the NetworkBlockDevice/nbd project), plus the named
//! limits both ends of this crate enforce on sizes a peer drives.
//!
//! All integers travel in network byte order.

/// `NBDMAGIC`: first 8 bytes the server sends.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: newstyle negotiation magic, also prefixing every option.
pub const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
/// Magic prefixing every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a (compact) request header.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Magic of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Handshake flag: the server speaks fixed newstyle.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag: no 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag: the client speaks fixed newstyle.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: the client does not want the 124 zero bytes.
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Transmission flag: the flags field is valid (always set).
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
/// Transmission flag: the export is read-only.
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
/// Transmission flag: `NBD_CMD_FLUSH` is supported.
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
/// Transmission flag: `NBD_CMD_FLAG_FUA` is supported.
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
/// Transmission flag: the medium is rotational.
pub const TFLAG_ROTATIONAL: u16 = 1 << 4;
/// Transmission flag: `NBD_CMD_TRIM` is supported.
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
/// Transmission flag: `NBD_CMD_WRITE_ZEROES` is supported.
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// Transmission flag: `NBD_CMD_FLAG_DF` is supported.
pub const TFLAG_SEND_DF: u16 = 1 << 7;
/// Transmission flag: several connections see each other's completed writes.
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;

/// Option: old-style export selection (no error reply possible).
pub const OPT_EXPORT_NAME: u32 = 1;
/// Option: abort negotiation.
pub const OPT_ABORT: u32 = 2;
/// Option: list exports.
pub const OPT_LIST: u32 = 3;
/// Option: TLS (not supported here).
pub const OPT_STARTTLS: u32 = 5;
/// Option: describe an export.
pub const OPT_INFO: u32 = 6;
/// Option: describe and select an export.
pub const OPT_GO: u32 = 7;
/// Option: use structured replies.
pub const OPT_STRUCTURED_REPLY: u32 = 8;
/// Option: list metadata contexts.
pub const OPT_LIST_META_CONTEXT: u32 = 9;
/// Option: select metadata contexts.
pub const OPT_SET_META_CONTEXT: u32 = 10;
/// Option: 64-bit extended headers (not supported here).
pub const OPT_EXTENDED_HEADERS: u32 = 11;

/// Option reply: done.
pub const REP_ACK: u32 = 1;
/// Option reply: one export of a list.
pub const REP_SERVER: u32 = 2;
/// Option reply: one information item.
pub const REP_INFO: u32 = 3;
/// Option reply: one metadata context.
pub const REP_META_CONTEXT: u32 = 4;
/// Bit set in every error reply type.
pub const REP_FLAG_ERROR: u32 = 1 << 31;
/// Option error: unknown option.
pub const REP_ERR_UNSUP: u32 = REP_FLAG_ERROR | 1;
/// Option error: forbidden by policy.
pub const REP_ERR_POLICY: u32 = REP_FLAG_ERROR | 2;
/// Option error: syntactically or semantically invalid.
pub const REP_ERR_INVALID: u32 = REP_FLAG_ERROR | 3;
/// Option error: not supported on this platform.
pub const REP_ERR_PLATFORM: u32 = REP_FLAG_ERROR | 4;
/// Option error: TLS required.
pub const REP_ERR_TLS_REQD: u32 = REP_FLAG_ERROR | 5;
/// Option error: unknown export.
pub const REP_ERR_UNKNOWN: u32 = REP_FLAG_ERROR | 6;
/// Option error: server shutting down.
pub const REP_ERR_SHUTDOWN: u32 = REP_FLAG_ERROR | 7;
/// Option error: the client must request block sizes.
pub const REP_ERR_BLOCK_SIZE_REQD: u32 = REP_FLAG_ERROR | 8;
/// Option error: request too big.
pub const REP_ERR_TOO_BIG: u32 = REP_FLAG_ERROR | 9;

/// Information item: size and transmission flags.
pub const INFO_EXPORT: u16 = 0;
/// Information item: canonical name.
pub const INFO_NAME: u16 = 1;
/// Information item: description.
pub const INFO_DESCRIPTION: u16 = 2;
/// Information item: block size constraints.
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Command: read.
pub const CMD_READ: u16 = 0;
/// Command: write (payload follows the header).
pub const CMD_WRITE: u16 = 1;
/// Command: disconnect.
pub const CMD_DISC: u16 = 2;
/// Command: flush.
pub const CMD_FLUSH: u16 = 3;
/// Command: trim (discard).
pub const CMD_TRIM: u16 = 4;
/// Command: cache (prefetch).
pub const CMD_CACHE: u16 = 5;
/// Command: write zeroes.
pub const CMD_WRITE_ZEROES: u16 = 6;
/// Command: block status.
pub const CMD_BLOCK_STATUS: u16 = 7;

/// Command flag: force unit access.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
/// Command flag: write zeroes must not punch a hole.
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
/// Command flag: do not fragment a structured read reply.
pub const CMD_FLAG_DF: u16 = 1 << 2;
/// Command flag: block status returns one extent.
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
/// Command flag: write zeroes must be fast or fail.
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;

/// Structured reply flag: last chunk of the reply.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
/// Structured chunk: no payload.
pub const REPLY_TYPE_NONE: u16 = 0;
/// Structured chunk: offset and data.
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
/// Structured chunk: offset and a hole length.
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
/// Structured chunk: block status descriptors.
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
/// Bit set in every structured error chunk type.
pub const REPLY_TYPE_ERROR_BIT: u16 = 1 << 15;
/// Structured chunk: error.
pub const REPLY_TYPE_ERROR: u16 = REPLY_TYPE_ERROR_BIT | 1;
/// Structured chunk: error at an offset.
pub const REPLY_TYPE_ERROR_OFFSET: u16 = REPLY_TYPE_ERROR_BIT | 2;

/// Error code: operation not permitted.
pub const EPERM: u32 = 1;
/// Error code: input/output error.
pub const EIO: u32 = 5;
/// Error code: out of memory.
pub const ENOMEM: u32 = 12;
/// Error code: invalid argument.
pub const EINVAL: u32 = 22;
/// Error code: no space left.
pub const ENOSPC: u32 = 28;
/// Error code: value too large.
pub const EOVERFLOW: u32 = 75;
/// Error code: operation not supported.
pub const ENOTSUP: u32 = 95;
/// Error code: server shutting down.
pub const ESHUTDOWN: u32 = 108;

/// `base:allocation` state bit: the extent is a hole.
pub const STATE_HOLE: u32 = 1 << 0;
/// `base:allocation` state bit: the extent reads as zeros.
pub const STATE_ZERO: u32 = 1 << 1;
/// Name of the allocation metadata context.
pub const BASE_ALLOCATION: &str = "base:allocation";

/// Bytes of the zero padding after `NBD_OPT_EXPORT_NAME` without `NO_ZEROES`.
pub const EXPORT_NAME_PADDING: usize = 124;

// ---- named limits ----------------------------------------------------------

/// Largest string (export name, error message) either end accepts, as the
/// protocol document requires.
pub const MAX_STRING_BYTES: usize = 4096;
/// Largest option payload the server reads, or an option reply payload the
/// client reads; larger ones close the connection.
pub const MAX_OPTION_BYTES: usize = 2 * MAX_STRING_BYTES + 64;
/// Most options the server accepts on one connection before transmission.
pub const MAX_OPTIONS: usize = 128;
/// Most information items one `NBD_OPT_GO`/`INFO` may request.
pub const MAX_INFO_REQUESTS: usize = 32;
/// Most export names the client accepts from one `NBD_OPT_LIST`.
pub const MAX_LIST_EXPORTS: usize = 4096;
/// Largest payload of one read or write request (advertised as the maximum
/// block size). Larger client calls are split.
pub const MAX_REQUEST_BYTES: u32 = 32 << 20;
/// Largest structured reply chunk the client reads (a full read plus header).
pub const MAX_CHUNK_BYTES: u32 = MAX_REQUEST_BYTES + 64;

/// A request header (the 28-byte compact form).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestHeader {
    /// Command flags (`CMD_FLAG_*`).
    pub flags: u16,
    /// Command type (`CMD_*`).
    pub command: u16,
    /// Opaque cookie echoed in the reply.
    pub cookie: u64,
    /// First byte addressed.
    pub offset: u64,
    /// Length in bytes.
    pub length: u32,
}

impl RequestHeader {
    /// Encoded size in bytes.
    pub const SIZE: usize = 28;

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.command.to_be_bytes());
        b[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Decodes a header.
    ///
    /// # Errors
    /// The magic found, when it is not [`REQUEST_MAGIC`].
    pub fn decode(b: &[u8; Self::SIZE]) -> Result<Self, u32> {
        let magic = be32(&b[0..4]);
        if magic != REQUEST_MAGIC {
            return Err(magic);
        }
        Ok(Self {
            flags: be16(&b[4..6]),
            command: be16(&b[6..8]),
            cookie: be64(&b[8..16]),
            offset: be64(&b[16..24]),
            length: be32(&b[24..28]),
        })
    }
}

/// Reads a big-endian `u16` from the first 2 bytes of `b` (callers pass
/// exact slices).
pub(crate) fn be16(b: &[u8]) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[..2]);
    u16::from_be_bytes(a)
}

/// Reads a big-endian `u32` from the first 4 bytes of `b`.
pub(crate) fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

/// Reads a big-endian `u64` from the first 8 bytes of `b`.
pub(crate) fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// A bounds-checked reader over an option or chunk payload.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Some(head)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(be16)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4).map(be32)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8).map(be64)
    }

    /// A `u32`-length-prefixed string of at most [`MAX_STRING_BYTES`].
    pub(crate) fn string(&mut self) -> Option<&'a str> {
        let len = self.u32()? as usize;
        if len > MAX_STRING_BYTES {
            return None;
        }
        std::str::from_utf8(self.take(len)?).ok()
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.data
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// The conventional name of an NBD error code.
#[must_use]
pub fn errno_name(errno: u32) -> &'static str {
    match errno {
        0 => "OK",
        EPERM => "EPERM",
        EIO => "EIO",
        ENOMEM => "ENOMEM",
        EINVAL => "EINVAL",
        ENOSPC => "ENOSPC",
        EOVERFLOW => "EOVERFLOW",
        ENOTSUP => "ENOTSUP",
        ESHUTDOWN => "ESHUTDOWN",
        _ => "unknown error",
    }
}

/// The name of a command type, for errors.
#[must_use]
pub fn command_name(command: u16) -> &'static str {
    match command {
        CMD_READ => "READ",
        CMD_WRITE => "WRITE",
        CMD_DISC => "DISC",
        CMD_FLUSH => "FLUSH",
        CMD_TRIM => "TRIM",
        CMD_CACHE => "CACHE",
        CMD_WRITE_ZEROES => "WRITE_ZEROES",
        CMD_BLOCK_STATUS => "BLOCK_STATUS",
        _ => "unknown command",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_header_round_trip() {
        let h = RequestHeader {
            flags: CMD_FLAG_FUA,
            command: CMD_WRITE,
            cookie: 0x0102_0304_0506_0708,
            offset: 1 << 40,
            length: 4096,
        };
        assert_eq!(RequestHeader::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[0] = 0;
        assert!(RequestHeader::decode(&bad).is_err());
    }

    #[test]
    fn cursor_is_bounded() {
        let mut c = Cursor::new(&[0, 0, 0, 9, b'a']);
        assert_eq!(c.string(), None);
        let mut c = Cursor::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(c.string(), None);
        let mut c = Cursor::new(&[0, 0, 0, 1, b'a', 7]);
        assert_eq!(c.string(), Some("a"));
        assert_eq!(c.rest(), &[7]);
        assert_eq!(c.u16(), None);
    }
}
