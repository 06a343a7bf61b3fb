//! The backend conformance kit: the suite every [`BlockBackend`] of this
//! crate passes, to run on your own backend in your own tests.
//!
//! Each [`Case`] builds one backend of [`CAPACITY_BYTES`] with the block size
//! asked for, through a factory you give, and checks one part of the
//! contract written on the trait's methods: zero-fill, round trips across
//! chunk boundaries, range errors that write nothing, FUA and flush,
//! write-zeroes and discard neighbours, allocation extents, resize, and
//! concurrent writers. A case whose optional operation the backend does not
//! [`supports`](BlockBackend::supports) checks that the operation answers
//! [`BackendError::Unsupported`] instead. A failed check is an `Err`
//! naming the case, the block size and what differed; nothing panics.
//!
//! # Example: run the suite on your own backend
//! ```
//! use std::sync::Arc;
//! use vvol::testing::backend_conformance::{self, Case};
//! use vvol::{BlockBackend, MemoryBackend};
//!
//! // Stands in for your backend; the factory gets capacity and block size.
//! let make = |capacity: u64, block_size: u32| {
//!     let backend = MemoryBackend::new(capacity, block_size)?;
//!     Ok(Arc::new(backend) as Arc<dyn BlockBackend>)
//! };
//! backend_conformance::run_all(make, 512)?;
//! // Or some cases, for example without the slow full-capacity reads:
//! backend_conformance::run_cases(&[Case::RoundTrip, Case::OutOfRange], make, 4096)?;
//! # Ok::<(), backend_conformance::ConformanceError>(())
//! ```

use std::fmt;
use std::sync::Arc;

use crate::backend::{
    AllocationExtent, AllocationState, BackendError, BackendOp, BlockBackend,
    MAX_ALLOCATION_EXTENTS,
};

/// Capacity in bytes of the backend each case asks the factory for: 4 MiB,
/// several chunks of the crate's sparse backends.
pub const CAPACITY_BYTES: u64 = 4 << 20;

const CAP: u64 = CAPACITY_BYTES;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// The error a backend factory may return; any error converts into it with
/// `?`.
pub type MakeError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One conformance case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Case {
    /// A fresh backend has the asked capacity and block size and reads as
    /// zeros everywhere; an empty read at the end succeeds.
    FreshReadsAreZeros,
    /// Writes of one block, across a 64 KiB boundary, of several chunks and
    /// of the last block read back; their neighbours stay zero; an overwrite
    /// of part of a write replaces exactly that part.
    RoundTrip,
    /// Every operation on a range past the capacity (also one whose end
    /// overflows `u64`) fails with [`BackendError::OutOfRange`] naming the
    /// operation and range, and writes nothing.
    OutOfRange,
    /// FUA writes, small and larger than 1 MiB, read back.
    FuaWriteThenRead,
    /// Flush succeeds on a fresh and on a written backend.
    Flush,
    /// Write-zeroes zeroes exactly its range (partial chunks, one block,
    /// nothing, everything), and the range can be written again.
    WriteZeroesKeepsNeighbours,
    /// A discarded range reads as zeros or as its old contents (zeros only
    /// when [`discard_zeroes`](BlockBackend::discard_zeroes) is true, which
    /// needs discard support), its neighbours keep their data, and writes
    /// after it read back.
    DiscardReadsZerosOrOld,
    /// A backend announcing a [`discard_granularity`](BlockBackend::discard_granularity)
    /// supports discard, its granularity is a multiple of the block size,
    /// and a discard of one aligned unit between two written units frees
    /// exactly that unit (allocation reports it not allocated, its
    /// neighbours allocated) when the backend reports allocation.
    DiscardFreesWholeUnits,
    /// Allocation extents are contiguous, non-empty, bounded by
    /// [`MAX_ALLOCATION_EXTENTS`]; written bytes are reported allocated,
    /// bytes far from every write are not.
    AllocationAfterWrites,
    /// Growing keeps data and exposes zeros; shrinking cuts off data (it
    /// reads as zeros after growing again) and moves the range limit; an
    /// unaligned size is [`BackendError::Misaligned`].
    ResizeGrowAndShrink,
    /// Four threads writing and reading interleaved blocks all over the
    /// capacity see their own data.
    ConcurrentWriters,
    /// Every operation the backend does not announce in
    /// [`supports`](BlockBackend::supports) answers
    /// [`BackendError::Unsupported`] naming it; reads are always supported.
    OptionalOpsMatchSupports,
}

impl Case {
    /// Every case, in the order [`run_all`] runs them.
    pub const ALL: [Case; 12] = [
        Case::FreshReadsAreZeros,
        Case::RoundTrip,
        Case::OutOfRange,
        Case::FuaWriteThenRead,
        Case::Flush,
        Case::WriteZeroesKeepsNeighbours,
        Case::DiscardReadsZerosOrOld,
        Case::DiscardFreesWholeUnits,
        Case::AllocationAfterWrites,
        Case::ResizeGrowAndShrink,
        Case::ConcurrentWriters,
        Case::OptionalOpsMatchSupports,
    ];

    /// The case's name in `snake_case`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Case::FreshReadsAreZeros => "fresh_reads_are_zeros",
            Case::RoundTrip => "round_trip",
            Case::OutOfRange => "out_of_range",
            Case::FuaWriteThenRead => "fua_write_then_read",
            Case::Flush => "flush",
            Case::WriteZeroesKeepsNeighbours => "write_zeroes_keeps_neighbours",
            Case::DiscardReadsZerosOrOld => "discard_reads_zeros_or_old",
            Case::DiscardFreesWholeUnits => "discard_frees_whole_units",
            Case::AllocationAfterWrites => "allocation_after_writes",
            Case::ResizeGrowAndShrink => "resize_grow_and_shrink",
            Case::ConcurrentWriters => "concurrent_writers",
            Case::OptionalOpsMatchSupports => "optional_ops_match_supports",
        }
    }

    /// Builds a backend with `make(CAPACITY_BYTES, block_size)` and runs
    /// this case on it.
    ///
    /// # Errors
    /// [`ConformanceError::Make`] when the factory fails,
    /// [`ConformanceError::Failed`] when the backend breaks the contract.
    pub fn run<F>(self, make: F, block_size: u32) -> Result<(), ConformanceError>
    where
        F: Fn(u64, u32) -> Result<Arc<dyn BlockBackend>, MakeError>,
    {
        let backend = make(CAP, block_size).map_err(|source| ConformanceError::Make {
            case: self,
            block_size,
            source,
        })?;
        let body = match self {
            Case::FreshReadsAreZeros => fresh_reads_are_zeros,
            Case::RoundTrip => round_trip,
            Case::OutOfRange => out_of_range,
            Case::FuaWriteThenRead => fua_write_then_read,
            Case::Flush => flush,
            Case::WriteZeroesKeepsNeighbours => write_zeroes_keeps_neighbours,
            Case::DiscardReadsZerosOrOld => discard_reads_zeros_or_old,
            Case::DiscardFreesWholeUnits => discard_frees_whole_units,
            Case::AllocationAfterWrites => allocation_after_writes,
            Case::ResizeGrowAndShrink => resize_grow_and_shrink,
            Case::ConcurrentWriters => concurrent_writers,
            Case::OptionalOpsMatchSupports => optional_ops_match_supports,
        };
        body(&backend, u64::from(block_size)).map_err(|detail| ConformanceError::Failed {
            case: self,
            block_size,
            detail,
        })
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs every case ([`Case::ALL`]) with `block_size`, stopping at the first
/// failure.
///
/// # Errors
/// The first case's [`ConformanceError`].
pub fn run_all<F>(make: F, block_size: u32) -> Result<(), ConformanceError>
where
    F: Fn(u64, u32) -> Result<Arc<dyn BlockBackend>, MakeError>,
{
    run_cases(&Case::ALL, make, block_size)
}

/// Runs `cases` in order with `block_size`, stopping at the first failure.
///
/// # Errors
/// The first failing case's [`ConformanceError`].
pub fn run_cases<F>(cases: &[Case], make: F, block_size: u32) -> Result<(), ConformanceError>
where
    F: Fn(u64, u32) -> Result<Arc<dyn BlockBackend>, MakeError>,
{
    for case in cases {
        case.run(&make, block_size)?;
    }
    Ok(())
}

/// A backend that failed a conformance case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConformanceError {
    /// The factory could not build the backend.
    #[error("conformance case {case} ({block_size}-byte blocks): the factory failed: {source}")]
    Make {
        /// The case that asked for the backend.
        case: Case,
        /// The block size asked for.
        block_size: u32,
        /// The factory's error.
        #[source]
        source: MakeError,
    },
    /// The backend broke the contract.
    #[error("conformance case {case} ({block_size}-byte blocks) failed: {detail}")]
    Failed {
        /// The failed case.
        case: Case,
        /// The block size the case ran with.
        block_size: u32,
        /// What the backend did and what the contract asks.
        detail: String,
    },
}

/// The outcome of one case body: `Err` describes the broken check.
type Check = Result<(), String>;

/// Returns `Err(format!(..))` from the case body unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Deterministic non-zero bytes, different for each seed.
#[must_use]
pub fn pattern(seed: u64, len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(131).wrapping_add(i * 7 + (i >> 9)) % 255 + 1) as u8)
        .collect()
}

fn read(b: &dyn BlockBackend, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let mut buf = vec![0x5A; len as usize];
    b.read_at(offset, &mut buf)
        .map_err(|e| format!("read of {len} bytes at {offset}: {e}"))?;
    Ok(buf)
}

fn write(b: &dyn BlockBackend, offset: u64, data: &[u8], fua: bool) -> Check {
    b.write_at(offset, data, fua)
        .map_err(|e| format!("write of {} bytes at {offset}: {e}", data.len()))
}

fn check_data(b: &dyn BlockBackend, offset: u64, expected: &[u8]) -> Check {
    let got = read(b, offset, expected.len() as u64)?;
    if let Some(i) = got.iter().zip(expected).position(|(g, e)| g != e) {
        return Err(format!(
            "byte at {} is {:#x}, expected {:#x} (written data does not read back)",
            offset + i as u64,
            got[i],
            expected[i]
        ));
    }
    Ok(())
}

fn assert_bytes(b: &dyn BlockBackend, offset: u64, len: u64, byte: u8) -> Check {
    let mut pos = offset;
    while pos < offset + len {
        let n = (offset + len - pos).min(MIB);
        let got = read(b, pos, n)?;
        if let Some(i) = got.iter().position(|&x| x != byte) {
            return Err(format!(
                "byte at {} is {:#x}, expected {byte:#x}",
                pos + i as u64,
                got[i]
            ));
        }
        pos += n;
    }
    Ok(())
}

fn fill(b: &dyn BlockBackend, offset: u64, len: u64, byte: u8) -> Check {
    write(b, offset, &vec![byte; len as usize], false)
}

fn is_out_of_range<T>(r: &Result<T, BackendError>) -> bool {
    matches!(r, Err(BackendError::OutOfRange { .. }))
}

fn is_unsupported<T>(r: &Result<T, BackendError>, want: BackendOp) -> bool {
    matches!(r, Err(BackendError::Unsupported { op }) if *op == want)
}

fn describe<T: fmt::Debug>(r: &Result<T, BackendError>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({e:?})"),
    }
}

/// For a backend without `op`: checks the call answered `Unsupported`.
fn check_unsupported<T: fmt::Debug>(op: BackendOp, r: &Result<T, BackendError>) -> Check {
    ensure!(
        is_unsupported(r, op),
        "supports({op:?}) is false, so {op} must answer Unsupported, got {}",
        describe(r)
    );
    Ok(())
}

/// Checks the allocation contract and returns the extents.
fn checked_allocation(
    b: &dyn BlockBackend,
    offset: u64,
    len: u64,
) -> Result<Vec<AllocationExtent>, String> {
    let extents = b
        .allocation(offset, len)
        .map_err(|e| format!("allocation of {len} bytes at {offset}: {e}"))?;
    ensure!(!extents.is_empty(), "no extents for a non-empty range");
    ensure!(
        extents.len() <= MAX_ALLOCATION_EXTENTS,
        "{} extents, more than MAX_ALLOCATION_EXTENTS",
        extents.len()
    );
    let mut pos = offset;
    for e in &extents {
        ensure!(e.offset == pos, "extents must be contiguous: {extents:?}");
        ensure!(e.len > 0, "empty extent in {extents:?}");
        pos += e.len;
    }
    ensure!(pos <= offset + len, "extents pass the range: {extents:?}");
    Ok(extents)
}

fn state_at(extents: &[AllocationExtent], byte: u64) -> Result<AllocationState, String> {
    extents
        .iter()
        .find(|e| e.offset <= byte && byte < e.offset + e.len)
        .map(|e| e.state)
        .ok_or_else(|| format!("byte {byte} not covered by {extents:?}"))
}

// ---------------------------------------------------------------------------
// Case bodies; `bs` is the block size in bytes.
// ---------------------------------------------------------------------------

fn fresh_reads_are_zeros(b: &Arc<dyn BlockBackend>, bs: u64) -> Check {
    ensure!(
        b.capacity_bytes() == CAP,
        "capacity is {}, the factory was asked for {CAP}",
        b.capacity_bytes()
    );
    ensure!(
        u64::from(b.logical_block_size()) == bs,
        "logical block size is {}, the factory was asked for {bs}",
        b.logical_block_size()
    );
    assert_bytes(&**b, 0, CAP, 0)?;
    assert_bytes(&**b, CAP - bs, bs, 0)?;
    let mut empty = [0u8; 0];
    b.read_at(CAP, &mut empty)
        .map_err(|e| format!("empty read at the end: {e}"))
}

fn round_trip(b: &Arc<dyn BlockBackend>, bs: u64) -> Check {
    let writes = [
        (0, bs),
        (bs, bs),
        (64 * KIB - bs, 2 * bs), // across a memory chunk boundary
        (MIB + 3 * bs, 8 * bs),
        (2 * MIB, 300 * KIB), // several chunks, and more than a bounce buffer piece
        (CAP - bs, bs),       // last block
    ];
    for (i, &(offset, len)) in writes.iter().enumerate() {
        write(&**b, offset, &pattern(i as u64, len), false)?;
    }
    for (i, &(offset, len)) in writes.iter().enumerate() {
        check_data(&**b, offset, &pattern(i as u64, len))?;
    }
    // Neighbours untouched.
    assert_bytes(&**b, 2 * bs, 64 * KIB - 3 * bs, 0)?;
    assert_bytes(&**b, MIB + 2 * bs, bs, 0)?;
    assert_bytes(&**b, MIB + 11 * bs, bs, 0)?;
    assert_bytes(&**b, CAP - 2 * bs, bs, 0)?;
    // Overwrite part of an earlier write.
    write(&**b, 2 * MIB + 4 * KIB, &pattern(99, 8 * KIB), false)?;
    let mut expected = pattern(4, 300 * KIB);
    expected[4 * KIB as usize..12 * KIB as usize].copy_from_slice(&pattern(99, 8 * KIB));
    check_data(&**b, 2 * MIB, &expected)
}

fn out_of_range(b: &Arc<dyn BlockBackend>, bs: u64) -> Check {
    let huge = !(bs - 1); // u64::MAX rounded down to a block: aligned, and offset + len overflows
    let block = vec![0u8; bs as usize];
    let two = vec![0u8; 2 * bs as usize];
    for (offset, buf) in [(CAP, &block), (CAP - bs, &two), (huge, &two)] {
        let mut rbuf = buf.clone();
        let r = b.read_at(offset, &mut rbuf);
        ensure!(is_out_of_range(&r), "read at {offset}: {}", describe(&r));
        let r = b.write_at(offset, buf, false);
        ensure!(is_out_of_range(&r), "write at {offset}: {}", describe(&r));
        let len = buf.len() as u64;
        // An optional operation may answer Unsupported instead, when the
        // backend does not announce it.
        let optional = |op: BackendOp, r: &Result<(), BackendError>| {
            is_out_of_range(r) || (!b.supports(op) && is_unsupported(r, op))
        };
        let r = b.discard(offset, len);
        ensure!(
            optional(BackendOp::Discard, &r),
            "discard at {offset}: {}",
            describe(&r)
        );
        let r = b.write_zeroes(offset, len);
        ensure!(
            optional(BackendOp::WriteZeroes, &r),
            "write_zeroes at {offset}: {}",
            describe(&r)
        );
        let r = b.allocation(offset, len);
        let op = BackendOp::Allocation;
        ensure!(
            is_out_of_range(&r) || (!b.supports(op) && is_unsupported(&r, op)),
            "allocation at {offset}: {}",
            describe(&r)
        );
    }
    match b.write_at(CAP, &block, true) {
        Err(BackendError::OutOfRange {
            op,
            offset,
            len,
            capacity,
        }) => {
            ensure!(op == BackendOp::Write, "OutOfRange names {op:?}, not Write");
            ensure!(
                (offset, len, capacity) == (CAP, bs, CAP),
                "OutOfRange names offset {offset}, len {len}, capacity {capacity}; \
                 expected {CAP}, {bs}, {CAP}"
            );
        }
        other => return Err(format!("expected OutOfRange, got {}", describe(&other))),
    }
    // Nothing was written anywhere.
    assert_bytes(&**b, CAP - 2 * bs, 2 * bs, 0)
}

fn fua_write_then_read(b: &Arc<dyn BlockBackend>, bs: u64) -> Check {
    write(&**b, 10 * bs, &pattern(1, 2 * bs), true)?;
    check_data(&**b, 10 * bs, &pattern(1, 2 * bs))?;
    let big = 1536 * KIB; // more than one bounce piece
    write(&**b, MIB, &pattern(2, big), true)?;
    check_data(&**b, MIB, &pattern(2, big))
}

fn flush(b: &Arc<dyn BlockBackend>, bs: u64) -> Check {
    b.flush()
        .map_err(|e| format!("flush of a fresh backend: {e}"))?;
    write(&**b, 0, &pattern(3, bs), false)?;
    b.flush().map_err(|e| format!("flush: {e}"))?;
    check_data(&**b, 0, &pattern(3, bs))
}

fn write_zeroes(b: &dyn BlockBackend, offset: u64, len: u64) -> Check {
    b.write_zeroes(offset, len)
        .map_err(|e| format!("write_zeroes of {len} bytes at {offset}: {e}"))
}

fn write_zeroes_keeps_neighbours(b: &Arc<dyn BlockBackend>, bs: u64) -> Check {
    if !b.supports(BackendOp::WriteZeroes) {
        return check_unsupported(BackendOp::WriteZeroes, &b.write_zeroes(0, bs));
    }
    fill(&**b, 0, 256 * KIB, 0xAA)?;
    // A whole chunk plus partial ones on both sides.
    write_zeroes(&**b, 32 * KIB, 128 * KIB)?;
    assert_bytes(&**b, 0, 32 * KIB, 0xAA)?;
    assert_bytes(&**b, 32 * KIB, 128 * KIB, 0)?;
    assert_bytes(&**b, 160 * KIB, 96 * KIB, 0xAA)?;
    // One block.
    write_zeroes(&**b, bs, bs)?;
    assert_bytes(&**b, 0, bs, 0xAA)?;
    assert_bytes(&**b, bs, bs, 0)?;
    assert_bytes(&**b, 2 * bs, 32 * KIB - 2 * bs, 0xAA)?;
    // Nothing at all.
    write_zeroes(&**b, 0, 0)?;
    assert_bytes(&**b, 0, bs, 0xAA)?;
    // Everything, then write again.
    write_zeroes(&**b, 0, CAP)?;
    assert_bytes(&**b, 0, CAP, 0)?;
    fill(&**b, 64 * KIB, bs, 0x11)?;
    assert_bytes(&**b, 64 * KIB, bs, 0x11)
}

fn discard(b: &dyn BlockBackend, offset: u64, len: u64) -> Check {
    b.discard(offset, len)
        .map_err(|e| format!("discard of {len} bytes at {offset}: {e}"))
}

fn discard_reads_zeros_or_old(b: &Arc<dyn BlockBackend>, bs: u64) -> Check {
    if !b.supports(BackendOp::Discard) {
        ensure!(
            !b.discard_zeroes(),
            "discard_zeroes() is true but discard is not supported"
        );
        return check_unsupported(BackendOp::Discard, &b.discard(0, bs));
    }
    fill(&**b, 0, 256 * KIB, 0xAA)?;
    discard(&**b, 64 * KIB, 128 * KIB)?;
    assert_bytes(&**b, 0, 64 * KIB, 0xAA)?;
    assert_bytes(&**b, 192 * KIB, 64 * KIB, 0xAA)?;
    let middle = read(&**b, 64 * KIB, 128 * KIB)?;
    ensure!(
        middle.iter().all(|&x| x == 0 || x == 0xAA),
        "discarded range holds neither zeros nor old data"
    );
    if b.discard_zeroes() {
        // The promise SCSI reports as LBPRZ=1.
        ensure!(
            middle.iter().all(|&x| x == 0),
            "discard_zeroes() is true but a discarded range kept old data"
        );
    }
    // A partial discard leaves its neighbours alone.
    discard(&**b, 3 * bs, bs)?;
    assert_bytes(&**b, 0, 3 * bs, 0xAA)?;
    assert_bytes(&**b, 4 * bs, 64 * KIB - 4 * bs, 0xAA)?;
    discard(&**b, 0, 0)?;
    // Writes after a discard read back.
    write(&**b, 64 * KIB, &pattern(5, 4 * bs), false)?;
    check_data(&**b, 64 * KIB, &pattern(5, 4 * bs))
}

fn discard_frees_whole_units(b: &Arc<dyn BlockBackend>, bs: u64) -> Check {
    let unit = b.discard_granularity();
    if unit == 0 {
        return Ok(());
    }
    ensure!(
        b.supports(BackendOp::Discard),
        "discard_granularity() is {unit} but discard is not supported"
    );
    ensure!(
        unit.is_multiple_of(bs),
        "discard_granularity() {unit} is not a multiple of the {bs}-byte block"
    );
    if 4 * unit > CAP {
        // Too large to test within the kit's capacity.
        return Ok(());
    }
    fill(&**b, unit, 3 * unit, 0x5A)?;
    discard(&**b, 2 * unit, unit)?;
    assert_bytes(&**b, unit, unit, 0x5A)?;
    assert_bytes(&**b, 3 * unit, unit, 0x5A)?;
    if !b.supports(BackendOp::Allocation) {
        return Ok(());
    }
    let extents = checked_allocation(&**b, 0, CAP)?;
    for byte in [2 * unit, 2 * unit + unit / 2, 3 * unit - 1] {
        ensure!(
            state_at(&extents, byte)? != AllocationState::Allocated,
            "byte {byte} of a discarded aligned {unit}-byte unit is still allocated in {extents:?}"
        );
    }
    for byte in [unit, 2 * unit - 1, 3 * unit, 4 * unit - 1] {
        ensure!(
            state_at(&extents, byte)? == AllocationState::Allocated,
            "written byte {byte} next to a discarded unit is not allocated in {extents:?}"
        );
    }
    Ok(())
}

fn allocation_after_writes(b: &Arc<dyn BlockBackend>, _bs: u64) -> Check {
    if !b.supports(BackendOp::Allocation) {
        return check_unsupported(BackendOp::Allocation, &b.allocation(0, CAP));
    }
    // A fresh backend has nothing allocated.
    for e in checked_allocation(&**b, 0, CAP)? {
        ensure!(
            e.state != AllocationState::Allocated,
            "fresh backend reports {e:?}"
        );
    }
    let written = [(0, 4 * KIB), (MIB, 8 * KIB), (CAP - 4 * KIB, 4 * KIB)];
    for (i, &(offset, len)) in written.iter().enumerate() {
        write(&**b, offset, &pattern(i as u64, len), false)?;
    }
    let extents = checked_allocation(&**b, 0, CAP)?;
    ensure!(
        extents.last().map(|e| e.offset + e.len) == Some(CAP),
        "a few extents cover the whole range: {extents:?}"
    );
    for &(offset, len) in &written {
        for byte in [offset, offset + len / 2, offset + len - 1] {
            ensure!(
                state_at(&extents, byte)? == AllocationState::Allocated,
                "written byte {byte} is not allocated in {extents:?}"
            );
        }
    }
    // Far from every write: not allocated (Zero, or Unknown where the backend
    // cannot tell).
    for byte in (2 * MIB..3 * MIB).step_by(64 * KIB as usize) {
        ensure!(
            state_at(&extents, byte)? != AllocationState::Allocated,
            "byte {byte}, far from every write, is allocated in {extents:?}"
        );
    }
    // A query from inside a written range starts there.
    let from_inside = checked_allocation(&**b, MIB + 4 * KIB, 2 * MIB)?;
    ensure!(
        from_inside[0].offset == MIB + 4 * KIB,
        "a query from {} starts at {}",
        MIB + 4 * KIB,
        from_inside[0].offset
    );
    ensure!(
        from_inside[0].state == AllocationState::Allocated,
        "a query from inside a write starts with {:?}",
        from_inside[0]
    );
    let empty = b
        .allocation(0, 0)
        .map_err(|e| format!("empty allocation query: {e}"))?;
    ensure!(
        empty.is_empty(),
        "empty allocation query returned {empty:?}"
    );
    Ok(())
}

fn resize(b: &dyn BlockBackend, new_capacity_bytes: u64) -> Check {
    b.resize(new_capacity_bytes)
        .map_err(|e| format!("resize to {new_capacity_bytes}: {e}"))?;
    ensure!(
        b.capacity_bytes() == new_capacity_bytes,
        "capacity after resize to {new_capacity_bytes} is {}",
        b.capacity_bytes()
    );
    Ok(())
}

fn resize_grow_and_shrink(b: &Arc<dyn BlockBackend>, bs: u64) -> Check {
    if !b.supports(BackendOp::Resize) {
        return check_unsupported(BackendOp::Resize, &b.resize(2 * CAP));
    }
    write(&**b, CAP - bs, &pattern(7, bs), false)?;
    resize(&**b, 2 * CAP)?;
    check_data(&**b, CAP - bs, &pattern(7, bs))?;
    assert_bytes(&**b, CAP, CAP, 0)?;
    write(&**b, 2 * CAP - bs, &pattern(8, bs), false)?;
    check_data(&**b, 2 * CAP - bs, &pattern(8, bs))?;

    // Shrink to the middle of a memory chunk, then grow: the cut-off part
    // reads as zeros.
    let half = CAP / 2;
    write(&**b, half, &pattern(9, 2 * bs), false)?;
    resize(&**b, half + bs)?;
    let r = b.read_at(half + bs, &mut vec![0; bs as usize]);
    ensure!(
        is_out_of_range(&r),
        "read past a shrunk end: {}",
        describe(&r)
    );
    let r = b.write_at(half + bs, &vec![1; bs as usize], false);
    ensure!(
        is_out_of_range(&r),
        "write past a shrunk end: {}",
        describe(&r)
    );
    let kept = pattern(9, 2 * bs);
    check_data(&**b, half, &kept[..bs as usize])?;
    resize(&**b, CAP)?;
    check_data(&**b, half, &kept[..bs as usize])?;
    assert_bytes(&**b, half + bs, CAP - half - bs, 0)?;

    let r = b.resize(CAP + bs / 2);
    ensure!(
        matches!(
            r,
            Err(BackendError::Misaligned {
                op: BackendOp::Resize,
                ..
            })
        ),
        "resize to an unaligned size: {}",
        describe(&r)
    );
    ensure!(
        b.capacity_bytes() == CAP,
        "a refused resize changed the capacity to {}",
        b.capacity_bytes()
    );
    Ok(())
}

fn concurrent_writers(b: &Arc<dyn BlockBackend>, bs: u64) -> Check {
    const THREADS: u64 = 4;
    const BLOCKS: u64 = 256;
    // Spread the blocks over the whole capacity so memory chunks are shared
    // by several threads.
    let stride = CAP / BLOCKS;
    let results: Vec<Check> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let b = Arc::clone(b);
                scope.spawn(move || -> Check {
                    for i in (t..BLOCKS).step_by(THREADS as usize) {
                        let offset = i * stride;
                        write(&*b, offset, &pattern(i, bs), i % 8 == 0)?;
                        check_data(&*b, offset, &pattern(i, bs))?;
                    }
                    Ok(())
                })
            })
            .collect();
        writers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("a writer thread panicked".to_owned()))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    for i in 0..BLOCKS {
        check_data(&**b, i * stride, &pattern(i, bs)).map_err(|e| format!("block {i}: {e}"))?;
    }
    Ok(())
}

fn optional_ops_match_supports(b: &Arc<dyn BlockBackend>, bs: u64) -> Check {
    for op in BackendOp::ALL {
        if b.supports(op) {
            continue;
        }
        match op {
            BackendOp::Discard => check_unsupported(op, &b.discard(0, bs))?,
            BackendOp::WriteZeroes => check_unsupported(op, &b.write_zeroes(0, bs))?,
            BackendOp::Allocation => check_unsupported(op, &b.allocation(0, bs))?,
            BackendOp::Resize => check_unsupported(op, &b.resize(CAP))?,
            // A read-only backend refuses writes.
            BackendOp::Write => {
                check_unsupported(op, &b.write_at(0, &vec![0; bs as usize], false))?
            }
            BackendOp::Flush => check_unsupported(op, &b.flush())?,
            BackendOp::Read => return Err("supports(Read) is false: reads are required".to_owned()),
        }
    }
    Ok(())
}
