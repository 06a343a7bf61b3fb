//! SBC-4 block commands on SLUs: READ CAPACITY, READ, WRITE, SYNCHRONIZE
//! CACHE, WRITE SAME(16), UNMAP, GET LBA STATUS, COMPARE AND WRITE.
//!
//! A PE (ALU) is presented as the smallest direct-access LU SBC-4 can
//! express, and every answer about it agrees (review S9): [`ALU_BLOCKS`]
//! logical block of [`ALU_BLOCK_SIZE`] bytes that reads as zeros, fully
//! provisioned (READ CAPACITY(16) LBPME=0 and LBPRZ=0, no Logical Block
//! Provisioning VPD page) and write protected (MODE SENSE WP=1). It
//! accepts what SBC-4 makes mandatory for a direct-access LU (READ(10),
//! READ(16), READ CAPACITY(10)/(16); table "Commands for direct-access
//! block devices") plus READ(6) and a SYNCHRONIZE CACHE that has nothing to
//! flush (its caching page reports WCE, so a host may send it); writes and
//! provisioning commands get INVALID COMMAND OPERATION CODE, and REPORT
//! SUPPORTED OPERATION CODES lists exactly that set. A PE is a proxy with
//! "zero (or minimal) capacity" that hosts only address for discovery
//! (domain.md 3.1), so a host that attaches it as a disk (a Linux host
//! reading a partition table at LBA 0) gets an empty, read-only disk
//! instead of I/O errors.

use super::Sense;
use super::cdb::{be_at, op};
use super::limits::{
    MAX_COMPARE_AND_WRITE_BLOCKS, MAX_LBA_STATUS_DESCRIPTORS, MAX_TRANSFER_BYTES, MAX_UNMAP_BLOCKS,
    MAX_UNMAP_DESCRIPTORS, MAX_WRITE_SAME_BLOCKS, WRITE_SAME_CHUNK_BLOCKS,
};
use super::sense::SenseKey;
use super::target::{CmdResult, Ctx, Fail, Lu, Slu, stripe};
use crate::{AllocationState, BackendError, BlockBackend, RouteError};

/// Logical blocks of a PE's administrative logical unit (READ CAPACITY
/// reports the last LBA, so one block is the least it can express).
pub const ALU_BLOCKS: u64 = 1;
/// Logical block size of a PE's administrative logical unit.
pub const ALU_BLOCK_SIZE: u32 = 512;

/// What a block command addresses: an SLU's medium or the ALU's one
/// all-zero block.
#[derive(Clone, Copy)]
enum Medium {
    Slu(Slu),
    Alu,
}

impl Medium {
    fn of(ctx: &Ctx<'_>) -> Result<Self, Fail> {
        match ctx.lu {
            Lu::Slu(s) => Ok(Self::Slu(s)),
            Lu::Alu(_) => Ok(Self::Alu),
            _ => Err(Sense::lun_not_supported().into()),
        }
    }

    fn blocks(self) -> u64 {
        match self {
            Self::Slu(s) => blocks(&s),
            Self::Alu => ALU_BLOCKS,
        }
    }

    fn block_size(self) -> u32 {
        match self {
            Self::Slu(s) => s.block_size,
            Self::Alu => ALU_BLOCK_SIZE,
        }
    }

    /// Checks `[lba, lba + count)` against the capacity.
    fn check_lba(self, lba: u64, count: u64) -> Result<(), Fail> {
        match lba.checked_add(count) {
            Some(end) if end <= self.blocks() => Ok(()),
            _ => Err(Sense::lba_out_of_range().into()),
        }
    }
}

fn slu(ctx: &Ctx<'_>) -> Result<Slu, Fail> {
    match ctx.lu {
        Lu::Slu(s) => Ok(s),
        Lu::Alu(_) => Err(Sense::invalid_opcode().into()),
        _ => Err(Sense::lun_not_supported().into()),
    }
}

fn blocks(s: &Slu) -> u64 {
    s.capacity_bytes / u64::from(s.block_size)
}

/// Checks `[lba, lba + count)` against the SLU's capacity.
fn check_lba(s: &Slu, lba: u64, count: u64) -> Result<(), Fail> {
    Medium::Slu(*s).check_lba(lba, count)
}

/// READ CAPACITY (10).
pub(crate) fn read_capacity_10(ctx: &Ctx<'_>) -> CmdResult {
    let m = Medium::of(ctx)?;
    let last = u32::try_from(m.blocks().saturating_sub(1)).unwrap_or(u32::MAX);
    let mut out = last.to_be_bytes().to_vec();
    out.extend_from_slice(&m.block_size().to_be_bytes());
    Ok(out)
}

/// Whether unmapped blocks of the SLU read as zeros: LBPRZ in READ
/// CAPACITY(16) and VPD B2h (SBC-4 4.7.4.5). True exactly when the
/// backend promises that a discard leaves zeros
/// ([`BlockBackend::discard_zeroes`](crate::BlockBackend::discard_zeroes));
/// never-written blocks read as zeros on every backend.
pub(crate) fn lbprz(ctx: &Ctx<'_>, s: &Slu) -> Result<bool, Fail> {
    backend_property(ctx, s, |b| b.discard_zeroes())
}

/// A property of the SLU's backend, read without a queue place: INQUIRY
/// and READ CAPACITY do no I/O, so a full PE queue must not refuse them
/// (review S17). LOGICAL UNIT NOT SUPPORTED when the binding went away
/// since the LUN was resolved.
pub(crate) fn backend_property<T>(
    ctx: &Ctx<'_>,
    s: &Slu,
    f: impl FnOnce(&dyn BlockBackend) -> T,
) -> Result<T, Fail> {
    let handle = s.handle;
    ctx.target
        .router
        .with_bound(handle.pe, ctx.nexus.host, handle.secondary_id, |b| {
            (b.generation == handle.generation).then(|| f(&*b.volume.backend))
        })
        .flatten()
        .ok_or_else(|| Sense::lun_not_supported().into())
}

/// READ CAPACITY (16): LBPME=1 on SLUs (thin provisioned), with LBPRZ from
/// the backend; LBPME=0 and LBPRZ=0 on the fully provisioned ALU.
pub(crate) fn read_capacity_16(ctx: &Ctx<'_>) -> CmdResult {
    let m = Medium::of(ctx)?;
    let mut out = vec![0u8; 32];
    out[..8].copy_from_slice(&m.blocks().saturating_sub(1).to_be_bytes());
    out[8..12].copy_from_slice(&m.block_size().to_be_bytes());
    if let Medium::Slu(s) = m {
        out[14] = 0x80; // LBPME
        if lbprz(ctx, &s)? {
            out[14] |= 0x40; // LBPRZ
        }
    }
    out.truncate(ctx.cdb.be(10, 4) as usize);
    Ok(out)
}

/// (lba, blocks, fua, length field offset) of a READ or WRITE CDB.
fn rw_fields(ctx: &Ctx<'_>) -> Result<(u64, u64, bool, usize), Fail> {
    let cdb = ctx.cdb;
    match cdb.opcode() {
        op::READ_6 | op::WRITE_6 => {
            let lba = cdb.be(1, 3) & 0x1F_FFFF;
            let n = match cdb.u8(4) {
                0 => 256,
                n => u64::from(n),
            };
            Ok((lba, n, false, 4))
        }
        op::READ_10 | op::WRITE_10 => {
            cdb.reserved(1, 0xE0)?;
            Ok((cdb.be(2, 4), cdb.be(7, 2), cdb.u8(1) & 0x08 != 0, 7))
        }
        _ => {
            cdb.reserved(1, 0xE0)?;
            Ok((cdb.be(2, 8), cdb.be(10, 4), cdb.u8(1) & 0x08 != 0, 10))
        }
    }
}

fn transfer_bytes(s: &Slu, n: u64, field: usize) -> Result<usize, Fail> {
    let bytes = n.saturating_mul(u64::from(s.block_size));
    if bytes > MAX_TRANSFER_BYTES {
        return Err(Sense::invalid_field_in_cdb(field as u16, None).into());
    }
    Ok(bytes as usize)
}

/// READ (6), (10), (16); the ALU's block reads as zeros. With
/// `execute_into` the data goes straight into the caller's buffer when it
/// holds the whole transfer (no allocation).
pub(crate) fn read(ctx: &Ctx<'_>) -> CmdResult {
    let m = Medium::of(ctx)?;
    let (lba, n, _fua, field) = rw_fields(ctx)?;
    m.check_lba(lba, n)?;
    let Medium::Slu(s) = m else {
        let len = (n * u64::from(ALU_BLOCK_SIZE)) as usize;
        let mut zeros = |buf: &mut [u8]| {
            buf.fill(0);
            Ok(())
        };
        if let Some(done) = ctx.data_in.fill(len, &mut zeros) {
            return done.map(|()| Vec::new());
        }
        return Ok(vec![0u8; len]);
    };
    let len = transfer_bytes(&s, n, field)?;
    let offset = lba * u64::from(s.block_size);
    let mut routed = |buf: &mut [u8]| {
        if buf.is_empty() {
            return Ok(());
        }
        ctx.target
            .router
            .read(ctx.nexus.host, s.handle, offset, buf)
            .map_err(|e| ctx.route(e, false))
    };
    if let Some(done) = ctx.data_in.fill(len, &mut routed) {
        return done.map(|()| Vec::new());
    }
    let mut buf = vec![0u8; len];
    routed(&mut buf)?;
    Ok(buf)
}

/// WRITE (6), (10), (16).
pub(crate) fn write(ctx: &Ctx<'_>) -> CmdResult {
    let s = slu(ctx)?;
    let (lba, n, fua, field) = rw_fields(ctx)?;
    check_lba(&s, lba, n)?;
    let len = transfer_bytes(&s, n, field)?;
    if len == 0 {
        return Ok(Vec::new());
    }
    let data = ctx
        .data_out
        .get(..len)
        .ok_or_else(|| Sense::invalid_field_in_cdb(field as u16, None))?;
    let fua = fua || !ctx.mode().wce;
    let _shared = ctx.target.write_locks[stripe(s.key)].read();
    let offset = lba * u64::from(s.block_size);
    ctx.target
        .router
        .write(ctx.nexus.host, s.handle, offset, data, fua)
        .map_err(|e| ctx.route(e, true))?;
    Ok(Vec::new())
}

/// SYNCHRONIZE CACHE (10) and (16); nothing to flush on the ALU.
pub(crate) fn synchronize_cache(ctx: &Ctx<'_>) -> CmdResult {
    let m = Medium::of(ctx)?;
    let cdb = ctx.cdb;
    let (lba, n) = if cdb.opcode() == op::SYNCHRONIZE_CACHE_10 {
        (cdb.be(2, 4), cdb.be(7, 2))
    } else {
        (cdb.be(2, 8), cdb.be(10, 4))
    };
    m.check_lba(lba, n)?;
    let Medium::Slu(s) = m else {
        return Ok(Vec::new());
    };
    ctx.target
        .router
        .flush(ctx.nexus.host, s.handle)
        .map_err(|e| ctx.route(e, true))?;
    Ok(Vec::new())
}

/// WRITE SAME (16), with its UNMAP and NDOB bits.
pub(crate) fn write_same_16(ctx: &Ctx<'_>) -> CmdResult {
    let s = slu(ctx)?;
    let cdb = ctx.cdb;
    // WRPROTECT, ANCHOR, obsolete PBDATA/LBDATA: not supported.
    cdb.reserved(1, 0xF6)?;
    let unmap = cdb.u8(1) & 0x08 != 0;
    let ndob = cdb.u8(1) & 0x01 != 0;
    let lba = cdb.be(2, 8);
    let n = cdb.be(10, 4);
    if n == 0 || n > MAX_WRITE_SAME_BLOCKS {
        return Err(Sense::invalid_field_in_cdb(10, None).into());
    }
    check_lba(&s, lba, n)?;
    let bs = s.block_size as usize;
    let pattern: Vec<u8> = if ndob {
        vec![0; bs]
    } else {
        ctx.data_out
            .get(..bs)
            .ok_or_else(Sense::parameter_list_length_error)?
            .to_vec()
    };
    let _shared = ctx.target.write_locks[stripe(s.key)].read();
    let router = &ctx.target.router;
    let host = ctx.nexus.host;
    let offset = lba * bs as u64;
    let len = n * bs as u64;
    if unmap && pattern.iter().all(|&b| b == 0) {
        match router.write_zeroes(host, s.handle, offset, len) {
            Ok(()) => return Ok(Vec::new()),
            Err(RouteError::Backend {
                source: BackendError::Unsupported { .. },
                ..
            }) => {}
            Err(e) => return Err(ctx.route(e, true)),
        }
    }
    let fua = !ctx.mode().wce;
    let chunk_blocks = n.min(WRITE_SAME_CHUNK_BLOCKS);
    let chunk: Vec<u8> = pattern.repeat(chunk_blocks as usize);
    let mut done = 0u64;
    while done < n {
        let now = (n - done).min(chunk_blocks);
        let bytes = &chunk[..now as usize * bs];
        router
            .write(host, s.handle, offset + done * bs as u64, bytes, fua)
            .map_err(|e| ctx.route(e, true))?;
        done += now;
    }
    Ok(Vec::new())
}

/// UNMAP (42h).
pub(crate) fn unmap(ctx: &Ctx<'_>) -> CmdResult {
    let s = slu(ctx)?;
    let cdb = ctx.cdb;
    cdb.reserved(1, 0xFF)?; // ANCHOR not supported
    let len = cdb.be(7, 2) as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    if len < 8 {
        return Err(Sense::parameter_list_length_error().into());
    }
    let data = ctx
        .data_out
        .get(..len)
        .ok_or_else(Sense::parameter_list_length_error)?;
    let bd_len = be_at(data, 2, 2) as usize;
    let count = bd_len / 16;
    if count > MAX_UNMAP_DESCRIPTORS as usize {
        return Err(Sense::invalid_field_in_parameter_list(2, None).into());
    }
    if 8 + count * 16 > len {
        return Err(Sense::parameter_list_length_error().into());
    }
    let mut ranges = Vec::with_capacity(count);
    // SBC-4 5.32.1: MAXIMUM UNMAP LBA COUNT bounds the sum over every
    // descriptor of the command, checked before anything is unmapped.
    let mut total = 0u64;
    for i in 0..count {
        let at = 8 + 16 * i;
        let lba = be_at(data, at, 8);
        let n = be_at(data, at + 8, 4);
        total += n;
        if total > u64::from(MAX_UNMAP_BLOCKS) {
            return Err(Sense::invalid_field_in_parameter_list((at + 8) as u16, None).into());
        }
        check_lba(&s, lba, n)?;
        if n > 0 {
            ranges.push((lba, n));
        }
    }
    let bs = u64::from(s.block_size);
    let _shared = ctx.target.write_locks[stripe(s.key)].read();
    for (lba, n) in ranges {
        match ctx
            .target
            .router
            .discard(ctx.nexus.host, s.handle, lba * bs, n * bs)
        {
            // UNMAP is advisory: a backend that cannot discard keeps the data.
            Ok(())
            | Err(RouteError::Backend {
                source: BackendError::Unsupported { .. },
                ..
            }) => {}
            Err(e) => return Err(ctx.route(e, true)),
        }
    }
    Ok(Vec::new())
}

/// Appends the extent (`start`, `blocks`) as LBA status descriptors, split
/// into pieces of at most 2^32-1 blocks (the descriptor's 32-bit count),
/// so the descriptors describe every LBA in order without a gap (SBC-4
/// 5.8.2). Returns false once `max` descriptors are reached.
fn push_extent(
    out: &mut Vec<(u64, u64, u8)>,
    mut start: u64,
    mut blocks: u64,
    status: u8,
    max: usize,
) -> bool {
    while blocks > 0 {
        if out.len() >= max {
            return false;
        }
        let n = blocks.min(u64::from(u32::MAX));
        out.push((start, n, status));
        start += n;
        blocks -= n;
    }
    out.len() < max
}

/// GET LBA STATUS (SERVICE ACTION IN(16) 12h), from the router's
/// allocation query.
pub(crate) fn get_lba_status(ctx: &Ctx<'_>) -> CmdResult {
    let s = slu(ctx)?;
    let cdb = ctx.cdb;
    let lba = cdb.be(2, 8);
    let alloc = cdb.be(10, 4) as usize;
    let total = blocks(&s);
    if lba >= total {
        return Err(Sense::lba_out_of_range().into());
    }
    let bs = u64::from(s.block_size);
    let max_descriptors = (alloc.saturating_sub(8) / 16).clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
    let mut descriptors: Vec<(u64, u64, u8)> = Vec::new();
    match ctx
        .target
        .router
        .allocation(ctx.nexus.host, s.handle, lba * bs, (total - lba) * bs)
    {
        Ok(extents) => {
            for e in &extents {
                let status = match e.state {
                    AllocationState::Zero => 1,
                    _ => 0,
                };
                if !push_extent(
                    &mut descriptors,
                    e.offset / bs,
                    e.len / bs,
                    status,
                    max_descriptors,
                ) {
                    break;
                }
            }
        }
        Err(RouteError::Backend {
            source: BackendError::Unsupported { .. },
            ..
        }) => {
            push_extent(&mut descriptors, lba, total - lba, 0, max_descriptors);
        }
        Err(e) => return Err(ctx.route(e, false)),
    }
    let mut out = vec![0u8; 8];
    for (start, n, status) in &descriptors {
        out.extend_from_slice(&start.to_be_bytes());
        out.extend_from_slice(&(*n as u32).to_be_bytes());
        out.extend_from_slice(&[*status, 0, 0, 0]);
    }
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.truncate(alloc);
    Ok(out)
}

/// COMPARE AND WRITE (89h): atomic against every other write this target
/// sends to the same vVol (they share a lock stripe).
pub(crate) fn compare_and_write(ctx: &Ctx<'_>) -> CmdResult {
    let s = slu(ctx)?;
    let cdb = ctx.cdb;
    cdb.reserved(1, 0xE0)?;
    let fua = cdb.u8(1) & 0x08 != 0 || !ctx.mode().wce;
    let lba = cdb.be(2, 8);
    let n = u64::from(cdb.u8(13));
    if n == 0 {
        return Ok(Vec::new());
    }
    if n > u64::from(MAX_COMPARE_AND_WRITE_BLOCKS) {
        return Err(Sense::invalid_field_in_cdb(13, None).into());
    }
    check_lba(&s, lba, n)?;
    let len = (n * u64::from(s.block_size)) as usize;
    let data = ctx
        .data_out
        .get(..2 * len)
        .ok_or_else(|| Sense::invalid_field_in_cdb(13, None))?;
    let (verify, new) = data.split_at(len);
    let offset = lba * u64::from(s.block_size);
    let _exclusive = ctx.target.write_locks[stripe(s.key)].write();
    let mut current = vec![0u8; len];
    ctx.target
        .router
        .read(ctx.nexus.host, s.handle, offset, &mut current)
        .map_err(|e| ctx.route(e, false))?;
    if let Some(at) = current.iter().zip(verify).position(|(a, b)| a != b) {
        let mut sense = Sense::new(SenseKey::Miscompare, 0x1D, 0x00);
        sense.information = Some(at as u64);
        return Err(sense.into());
    }
    ctx.target
        .router
        .write(ctx.nexus.host, s.handle, offset, new, fua)
        .map_err(|e| ctx.route(e, true))?;
    Ok(Vec::new())
}
