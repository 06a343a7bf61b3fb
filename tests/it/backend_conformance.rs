//! The crate's backend conformance kit (`vvol::testing::backend_conformance`)
//! run on every backend of the crate, plus backend-specific tests.
//!
//! Each kit case takes a constructor; the `suite!` macro runs every case
//! against every backend, as one test per case.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use vvol::backend::{
    AllocationExtent, AllocationState, BackendError, BackendOp, BlockBackend, Fault, FaultKind,
    FaultTrigger, FaultyBackend, FileBackend, FileBackendOptions, MAX_ALLOCATION_EXTENTS,
    MemoryBackend,
};
pub(crate) use vvol::testing::backend_conformance::pattern;
use vvol::testing::backend_conformance::{self, Case, ConformanceError};

use crate::support::MinimalBackend;

/// Builds a backend of `capacity` bytes with the given logical block size.
pub(crate) type Ctor = fn(u64, u32) -> Arc<dyn BlockBackend>;

/// Capacity the conformance kit asks its factories for.
pub(crate) const CAP: u64 = backend_conformance::CAPACITY_BYTES;
const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------

fn memory(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    Arc::new(MemoryBackend::new(capacity, block_size).expect("memory backend"))
}

fn faulty_memory(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    Arc::new(FaultyBackend::new(memory(capacity, block_size)))
}

/// A backend with only the five required methods.
fn minimal(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    Arc::new(MinimalBackend::new(capacity, block_size))
}

fn faulty_minimal(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    Arc::new(FaultyBackend::new(minimal(capacity, block_size)))
}

/// Opens a file backend on a fresh temporary file in `dir`. The file is
/// unlinked right away; the backend keeps its descriptor.
fn file_in(dir: &Path, capacity: u64, block_size: u32, direct: bool) -> Arc<dyn BlockBackend> {
    let file = tempfile::Builder::new()
        .prefix("vvol-backend-")
        .tempfile_in(dir)
        .expect("temporary file");
    let backend = FileBackend::open(
        file.path(),
        FileBackendOptions::default()
            .with_create_capacity(capacity)
            .with_logical_block_size(block_size)
            .with_direct(direct),
    )
    .expect("file backend");
    drop(file);
    Arc::new(backend)
}

fn file_buffered(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    file_in(&std::env::temp_dir(), capacity, block_size, false)
}

/// O_DIRECT needs a disk file system (tmpfs refuses it): use the target dir.
fn direct_dir() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

fn file_direct(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    file_in(direct_dir(), capacity, block_size, true)
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn read(b: &dyn BlockBackend, offset: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0x5A; len as usize];
    b.read_at(offset, &mut buf)
        .unwrap_or_else(|e| panic!("read {len} at {offset}: {e}"));
    buf
}

fn assert_bytes(b: &dyn BlockBackend, offset: u64, len: u64, byte: u8) {
    let mut pos = offset;
    while pos < offset + len {
        let n = (offset + len - pos).min(MIB);
        let got = read(b, pos, n);
        if let Some(i) = got.iter().position(|&x| x != byte) {
            panic!(
                "byte at {} is {:#x}, expected {byte:#x}",
                pos + i as u64,
                got[i]
            );
        }
        pos += n;
    }
}

fn fill(b: &dyn BlockBackend, offset: u64, len: u64, byte: u8) {
    b.write_at(offset, &vec![byte; len as usize], false)
        .expect("fill");
}

fn is_out_of_range<T: std::fmt::Debug>(r: Result<T, BackendError>) -> bool {
    matches!(r, Err(BackendError::OutOfRange { .. }))
}

/// Checks the allocation contract and returns the extents.
fn checked_allocation(b: &dyn BlockBackend, offset: u64, len: u64) -> Vec<AllocationExtent> {
    let extents = b.allocation(offset, len).expect("allocation");
    assert!(!extents.is_empty(), "no extents for a non-empty range");
    assert!(extents.len() <= MAX_ALLOCATION_EXTENTS);
    let mut pos = offset;
    for e in &extents {
        assert_eq!(e.offset, pos, "extents must be contiguous: {extents:?}");
        assert!(e.len > 0, "empty extent in {extents:?}");
        pos += e.len;
    }
    assert!(pos <= offset + len, "extents pass the range: {extents:?}");
    extents
}

// ---------------------------------------------------------------------------
// The conformance kit (`vvol::testing::backend_conformance`) on every backend
// ---------------------------------------------------------------------------

/// Runs one kit case on backends from `new`, failing the test with the
/// kit's description of what broke.
#[track_caller]
pub(crate) fn run_case(case: Case, new: Ctor, bs: u32) {
    if let Err(e) = case.run(|capacity, block_size| Ok(new(capacity, block_size)), bs) {
        panic!("{e}");
    }
}

/// Checks that a backend from `new` announces exactly the optional
/// operations it is expected to implement, so a kit case cannot pass
/// through its `Unsupported` branch by accident.
#[track_caller]
pub(crate) fn check_supports(new: Ctor, bs: u32, expected: &[BackendOp]) {
    let b = new(CAP, bs);
    for op in BackendOp::ALL {
        let required = matches!(op, BackendOp::Read | BackendOp::Write | BackendOp::Flush);
        assert_eq!(
            b.supports(op),
            required || expected.contains(&op),
            "supports({op:?})"
        );
    }
}

const ALL_OPTIONAL: [BackendOp; 4] = [
    BackendOp::Discard,
    BackendOp::WriteZeroes,
    BackendOp::Allocation,
    BackendOp::Resize,
];

macro_rules! suite {
    ($($name:ident => ($ctor:expr, $bs:expr, $supports:expr)),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[test]
                fn supports_the_expected_ops() {
                    check_supports($ctor, $bs, &$supports);
                }

                suite!(@cases $ctor, $bs;
                    fresh_reads_are_zeros => FreshReadsAreZeros,
                    round_trip => RoundTrip,
                    out_of_range => OutOfRange,
                    fua_write_then_read => FuaWriteThenRead,
                    flush_ok => Flush,
                    write_zeroes_keeps_neighbours => WriteZeroesKeepsNeighbours,
                    discard_reads_zeros_or_old => DiscardReadsZerosOrOld,
                    discard_frees_whole_units => DiscardFreesWholeUnits,
                    allocation_after_writes => AllocationAfterWrites,
                    resize_grow_and_shrink => ResizeGrowAndShrink,
                    concurrent_writers => ConcurrentWriters,
                    optional_ops_match_supports => OptionalOpsMatchSupports,
                );
            }
        )*
    };
    (@cases $ctor:expr, $bs:expr; $($test:ident => $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                run_case(Case::$case, $ctor, $bs);
            }
        )*
    };
}

suite! {
    memory_512 => (memory, 512, ALL_OPTIONAL),
    memory_4096 => (memory, 4096, ALL_OPTIONAL),
    file_512 => (file_buffered, 512, ALL_OPTIONAL),
    file_4096 => (file_buffered, 4096, ALL_OPTIONAL),
    file_direct_4096 => (file_direct, 4096, ALL_OPTIONAL),
    faulty_memory_512 => (faulty_memory, 512, ALL_OPTIONAL),
    minimal_512 => (minimal, 512, []),
    minimal_4096 => (minimal, 4096, []),
    faulty_minimal_4096 => (faulty_minimal, 4096, []),
}

// NbdBackend against our own NbdServer over loopback (tests/it/nbd.rs).
#[cfg(feature = "nbd")]
use crate::nbd::{served_inline, served_memory, served_routed};

#[cfg(feature = "nbd")]
const NBD_OPTIONAL: [BackendOp; 3] = [
    BackendOp::Discard,
    BackendOp::WriteZeroes,
    BackendOp::Allocation,
];

#[cfg(feature = "nbd")]
suite! {
    nbd_memory_512 => (served_memory, 512, NBD_OPTIONAL),
    nbd_memory_4096 => (served_memory, 4096, NBD_OPTIONAL),
    nbd_routed_512 => (served_routed, 512, NBD_OPTIONAL),
    nbd_inline_4096 => (served_inline, 4096, NBD_OPTIONAL),
}

/// The whole kit in one call, as an embedder runs it.
#[test]
fn kit_run_all_passes_memory_and_minimal() {
    backend_conformance::run_all(|c, b| Ok(memory(c, b)), 512).expect("memory");
    backend_conformance::run_all(|c, b| Ok(minimal(c, b)), 4096).expect("minimal");
}

/// A factory error is reported, not panicked on.
#[test]
fn kit_reports_a_failing_factory() {
    let err = Case::RoundTrip
        .run(|c, b| Ok(Arc::new(MemoryBackend::new(c + 1, b)?)), 512)
        .expect_err("the factory fails");
    assert!(matches!(
        err,
        ConformanceError::Make {
            case: Case::RoundTrip,
            block_size: 512,
            ..
        }
    ));
    assert!(err.to_string().contains("round_trip"), "{err}");
}

/// Backends that break the contract fail the kit with a description.
#[test]
fn kit_catches_broken_backends() {
    // Claims discard but does not implement it.
    #[derive(Debug)]
    struct Liar(MinimalBackend);
    impl BlockBackend for Liar {
        fn capacity_bytes(&self) -> u64 {
            self.0.capacity_bytes()
        }
        fn logical_block_size(&self) -> u32 {
            self.0.logical_block_size()
        }
        fn supports(&self, op: BackendOp) -> bool {
            op == BackendOp::Discard || self.0.supports(op)
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
            self.0.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
            // Drops every other block on the floor past 1 MiB.
            if offset >= MIB && (offset / 512) % 2 == 1 {
                return Ok(());
            }
            self.0.write_at(offset, data, fua)
        }
        fn flush(&self) -> Result<(), BackendError> {
            self.0.flush()
        }
    }
    let liar = |c, b| Ok(Arc::new(Liar(MinimalBackend::new(c, b))) as Arc<dyn BlockBackend>);
    let err = Case::DiscardReadsZerosOrOld
        .run(liar, 512)
        .expect_err("discard is claimed but missing");
    assert!(
        matches!(
            err,
            ConformanceError::Failed {
                case: Case::DiscardReadsZerosOrOld,
                ..
            }
        ),
        "{err}"
    );
    let err = Case::RoundTrip.run(liar, 512).expect_err("lost writes");
    assert!(err.to_string().contains("does not read back"), "{err}");
    // A wrong capacity.
    let err = Case::FreshReadsAreZeros
        .run(|c, b| Ok(minimal(c / 2, b)), 512)
        .expect_err("half the capacity");
    assert!(err.to_string().contains("capacity"), "{err}");
}

/// `discard_granularity` is what SCSI reports as OPTIMAL UNMAP GRANULARITY:
/// the kit fails a backend whose discard of a whole unit leaves it
/// allocated, or that announces a unit that is not a multiple of the block.
#[test]
fn kit_checks_the_discard_granularity_promise() {
    /// Zeroes instead of freeing, yet announces `unit`.
    #[derive(Debug)]
    struct ZeroesOnly(Arc<MemoryBackend>, u64);
    impl BlockBackend for ZeroesOnly {
        fn capacity_bytes(&self) -> u64 {
            self.0.capacity_bytes()
        }
        fn logical_block_size(&self) -> u32 {
            self.0.logical_block_size()
        }
        fn supports(&self, op: BackendOp) -> bool {
            self.0.supports(op)
        }
        fn discard_granularity(&self) -> u64 {
            self.1
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
            self.0.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
            self.0.write_at(offset, data, fua)
        }
        fn flush(&self) -> Result<(), BackendError> {
            self.0.flush()
        }
        fn discard(&self, offset: u64, len: u64) -> Result<(), BackendError> {
            let len = usize::try_from(len).expect("small");
            self.0.write_at(offset, &vec![0; len], false)
        }
        fn allocation(&self, offset: u64, len: u64) -> Result<Vec<AllocationExtent>, BackendError> {
            self.0.allocation(offset, len)
        }
    }
    for (unit, needle) in [(64 * 1024, "still allocated"), (1000, "multiple")] {
        let make = move |c, b| {
            Ok(Arc::new(ZeroesOnly(
                Arc::new(MemoryBackend::new(c, b).unwrap()),
                unit,
            )) as Arc<dyn BlockBackend>)
        };
        let err = Case::DiscardFreesWholeUnits
            .run(make, 512)
            .expect_err("the granularity is a lie");
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert_eq!(
        memory(CAP, 512).discard_granularity(),
        MemoryBackend::CHUNK_SIZE
    );
}

/// `discard_zeroes` is what SCSI reports as LBPRZ: the kit fails a backend
/// that claims it while its discard keeps old data, or without discard.
#[test]
fn kit_checks_the_discard_zeroes_promise() {
    /// Discards by doing nothing (allowed), yet claims zeros (a lie).
    #[derive(Debug)]
    struct KeepsData(MinimalBackend, bool);
    impl BlockBackend for KeepsData {
        fn capacity_bytes(&self) -> u64 {
            self.0.capacity_bytes()
        }
        fn logical_block_size(&self) -> u32 {
            self.0.logical_block_size()
        }
        fn supports(&self, op: BackendOp) -> bool {
            (self.1 && op == BackendOp::Discard) || self.0.supports(op)
        }
        fn discard_zeroes(&self) -> bool {
            true
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
            self.0.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
            self.0.write_at(offset, data, fua)
        }
        fn flush(&self) -> Result<(), BackendError> {
            self.0.flush()
        }
        fn discard(&self, offset: u64, len: u64) -> Result<(), BackendError> {
            if !self.1 {
                return Err(BackendError::Unsupported {
                    op: BackendOp::Discard,
                });
            }
            let _ = (offset, len);
            Ok(())
        }
    }
    for with_discard in [true, false] {
        let make = move |c, b| {
            Ok(Arc::new(KeepsData(MinimalBackend::new(c, b), with_discard))
                as Arc<dyn BlockBackend>)
        };
        let err = Case::DiscardReadsZerosOrOld
            .run(make, 512)
            .expect_err("discard_zeroes is a lie");
        assert!(err.to_string().contains("discard_zeroes"), "{err}");
    }
    // The crate's backends keep the promise they make.
    assert!(memory(CAP, 512).discard_zeroes());
    assert!(faulty_memory(CAP, 512).discard_zeroes());
    assert!(!Arc::new(MinimalBackend::new(CAP, 512)).discard_zeroes());
    let off = FaultyBackend::new(memory(CAP, 512));
    off.add_fault(Fault::new(
        Some(BackendOp::Discard),
        FaultTrigger::Always,
        FaultKind::Unsupported,
    ))
    .unwrap();
    assert!(
        !off.discard_zeroes(),
        "discard switched off: no zeros promised"
    );
}

// ---------------------------------------------------------------------------
// MemoryBackend
// ---------------------------------------------------------------------------

#[test]
fn memory_many_huge_backends_fit() {
    const COUNT: usize = 100_000;
    const TIB: u64 = 1 << 40;
    let backends: Vec<MemoryBackend> = (0..COUNT)
        .map(|_| MemoryBackend::new(TIB, 4096).expect("backend"))
        .collect();
    assert!(
        std::mem::size_of::<MemoryBackend>() <= 256,
        "an empty backend must stay small"
    );
    for (i, b) in backends.iter().enumerate().step_by(COUNT / 10) {
        let offset = (i as u64 * MIB) % TIB;
        b.write_at(offset, &pattern(i as u64, 4096), false)
            .expect("write");
        assert_eq!(read(b, offset, 4096), pattern(i as u64, 4096));
        assert_bytes(b, TIB - 4096, 4096, 0);
    }
    let held: u64 = backends.iter().map(MemoryBackend::allocated_bytes).sum();
    assert_eq!(held, 10 * MemoryBackend::CHUNK_SIZE);
}

#[test]
fn memory_discard_frees_chunks() {
    let b = MemoryBackend::new(CAP, 512).expect("backend");
    let chunk = MemoryBackend::CHUNK_SIZE;
    assert_eq!(b.allocated_bytes(), 0);
    fill(&b, 0, MIB, 0xAA);
    assert_eq!(b.allocated_bytes(), MIB);
    // Partial chunks are zeroed, not freed.
    b.discard(chunk / 2, chunk).expect("discard");
    assert_eq!(b.allocated_bytes(), MIB);
    assert_bytes(&b, chunk / 2, chunk, 0);
    // Whole chunks are freed.
    b.discard(0, 4 * chunk).expect("discard");
    assert_eq!(b.allocated_bytes(), MIB - 4 * chunk);
    b.write_zeroes(4 * chunk, MIB - 4 * chunk)
        .expect("write_zeroes");
    assert_eq!(b.allocated_bytes(), 0);
    assert_bytes(&b, 0, MIB, 0);
    // Shrinking frees chunks past the end.
    fill(&b, 0, MIB, 0x11);
    b.resize(MIB / 2).expect("shrink");
    assert_eq!(b.allocated_bytes(), MIB / 2);
}

#[test]
fn memory_rejects_bad_config() {
    let invalid = |r: Result<MemoryBackend, BackendError>| {
        matches!(r, Err(BackendError::InvalidConfig { .. }))
    };
    assert!(invalid(MemoryBackend::new(4096, 1024)));
    assert!(invalid(MemoryBackend::new(4096, 0)));
    assert!(invalid(MemoryBackend::new(1000, 512)));
    assert!(invalid(MemoryBackend::new(4096 + 512, 4096)));
    assert!(invalid(MemoryBackend::new(
        MemoryBackend::MAX_CAPACITY + 4096,
        4096
    )));
    let b = MemoryBackend::new(MemoryBackend::MAX_CAPACITY, 4096).expect("max capacity");
    assert!(matches!(
        b.resize(MemoryBackend::MAX_CAPACITY + 4096),
        Err(BackendError::TooLarge { .. })
    ));
    let empty = MemoryBackend::new(0, 512).expect("empty backend");
    assert!(is_out_of_range(empty.read_at(0, &mut [0; 512])));
}

#[test]
fn memory_allocation_is_limited() {
    let chunk = MemoryBackend::CHUNK_SIZE;
    let written = 600;
    let cap = 2 * written * chunk;
    let b = MemoryBackend::new(cap, 512).expect("backend");
    for i in 0..written {
        b.write_at(2 * i * chunk, &[1; 512], false).expect("write");
    }
    let first = checked_allocation(&b, 0, cap);
    assert_eq!(first.len(), MAX_ALLOCATION_EXTENTS);
    let end = first.last().map(|e| e.offset + e.len).expect("extent");
    assert!(end < cap);
    // Asking again from the end continues where the first answer stopped.
    let rest = checked_allocation(&b, end, cap - end);
    assert_eq!(rest.last().map(|e| e.offset + e.len), Some(cap));
    let total = first.len() + rest.len();
    assert_eq!(total as u64, 2 * written);
    for (i, e) in first.iter().chain(&rest).enumerate() {
        let state = if i % 2 == 0 {
            AllocationState::Allocated
        } else {
            AllocationState::Zero
        };
        assert_eq!((e.state, e.len), (state, chunk), "extent {i}");
    }
}

mod memory_model {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Write { block: u64, blocks: u64, seed: u64 },
        Zero { block: u64, blocks: u64 },
        Discard { block: u64, blocks: u64 },
        Resize { blocks: u64 },
    }

    const BLOCK: u64 = 512;
    const MAX_BLOCKS: u64 = 640; // 5 chunks

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..MAX_BLOCKS, 1..300u64, any::<u64>())
                .prop_map(|(block, blocks, seed)| Op::Write { block, blocks, seed }),
            2 => (0..MAX_BLOCKS, 1..300u64).prop_map(|(block, blocks)| Op::Zero { block, blocks }),
            2 => (0..MAX_BLOCKS, 1..300u64)
                .prop_map(|(block, blocks)| Op::Discard { block, blocks }),
            1 => (0..=MAX_BLOCKS).prop_map(|blocks| Op::Resize { blocks }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The sparse backend behaves like a flat byte vector (its discard
        /// zeroes, so it is modelled like write_zeroes).
        #[test]
        fn memory_backend_matches_a_flat_model(ops in proptest::collection::vec(op(), 1..24)) {
            let b = MemoryBackend::new(MAX_BLOCKS * BLOCK, 512).expect("backend");
            let mut model = vec![0u8; (MAX_BLOCKS * BLOCK) as usize];
            for op in ops {
                let cap = model.len() as u64;
                let (offset, len, result) = match op {
                    Op::Write { block, blocks, seed } => {
                        let (offset, len) = (block * BLOCK, blocks * BLOCK);
                        let data = pattern(seed, len);
                        let r = b.write_at(offset, &data, false);
                        if r.is_ok() {
                            model[offset as usize..(offset + len) as usize].copy_from_slice(&data);
                        }
                        (offset, len, r)
                    }
                    Op::Zero { block, blocks } | Op::Discard { block, blocks } => {
                        let (offset, len) = (block * BLOCK, blocks * BLOCK);
                        let r = if matches!(op, Op::Zero { .. }) {
                            b.write_zeroes(offset, len)
                        } else {
                            b.discard(offset, len)
                        };
                        if r.is_ok() {
                            model[offset as usize..(offset + len) as usize].fill(0);
                        }
                        (offset, len, r)
                    }
                    Op::Resize { blocks } => {
                        b.resize(blocks * BLOCK).expect("resize");
                        model.resize((blocks * BLOCK) as usize, 0);
                        (0, 0, Ok(()))
                    }
                };
                prop_assert_eq!(result.is_ok(), offset + len <= cap);
                prop_assert_eq!(b.capacity_bytes(), model.len() as u64);
                prop_assert_eq!(read(&b, 0, model.len() as u64), model.clone());
                let extents = if model.is_empty() {
                    Vec::new()
                } else {
                    checked_allocation(&b, 0, model.len() as u64)
                };
                for e in extents {
                    if e.state == AllocationState::Zero {
                        let range = e.offset as usize..(e.offset + e.len) as usize;
                        prop_assert!(model[range].iter().all(|&x| x == 0));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// FileBackend
// ---------------------------------------------------------------------------

#[test]
fn file_direct_refuses_misaligned_ranges() {
    let b = file_direct(MIB, 4096);
    let misaligned = |r: Result<_, BackendError>| {
        matches!(
            r,
            Err(BackendError::Misaligned {
                alignment: 4096,
                ..
            })
        )
    };
    let mut buf = vec![0u8; 4096];
    assert!(misaligned(b.read_at(512, &mut buf)));
    assert!(misaligned(b.read_at(0, &mut buf[..100])));
    assert!(misaligned(b.write_at(512, &buf, false)));
    assert!(misaligned(b.write_at(0, &buf[..100], true)));
    assert!(misaligned(b.discard(0, 512)));
    assert!(misaligned(b.write_zeroes(4096, 100)));
    // Out of range wins over misaligned.
    assert!(is_out_of_range(b.read_at(MIB, &mut buf)));
}

#[test]
fn file_direct_accepts_unaligned_buffers() {
    let b = file_direct(MIB, 4096);
    let data = pattern(11, 8192);
    let mut storage = vec![0u8; 8192 + 1];
    storage[1..].copy_from_slice(&data);
    b.write_at(4096, &storage[1..], false)
        .expect("unaligned write");
    let mut out = vec![0u8; 8192 + 3];
    b.read_at(4096, &mut out[3..]).expect("unaligned read");
    assert_eq!(out[3..], data[..]);
}

#[test]
fn file_length_must_be_a_block_multiple() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("odd.img");
    std::fs::write(&path, vec![0u8; 1000]).expect("create");
    assert!(matches!(
        FileBackend::open(&path, FileBackendOptions::default()),
        Err(BackendError::InvalidConfig { .. })
    ));
    std::fs::write(&path, vec![0u8; 4096 + 512]).expect("create");
    FileBackend::open(&path, FileBackendOptions::default()).expect("512-byte multiple");
    assert!(matches!(
        FileBackend::open(
            &path,
            FileBackendOptions::default().with_logical_block_size(4096)
        ),
        Err(BackendError::InvalidConfig { .. })
    ));
    assert!(matches!(
        FileBackend::open(
            &path,
            FileBackendOptions::default().with_logical_block_size(1000)
        ),
        Err(BackendError::InvalidConfig { .. })
    ));
    assert!(matches!(
        FileBackend::open(
            &path,
            FileBackendOptions::default().with_create_capacity(1000)
        ),
        Err(BackendError::InvalidConfig { .. })
    ));
}

#[test]
fn file_open_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        FileBackend::open(dir.path().join("missing"), FileBackendOptions::default()),
        Err(BackendError::Open { .. })
    ));
    // A directory is neither a regular file nor a block device.
    let opened = FileBackend::open(
        dir.path(),
        FileBackendOptions::default().with_read_only(true),
    );
    assert!(matches!(opened, Err(BackendError::InvalidConfig { .. })));
    assert!(FileBackend::open(dir.path(), FileBackendOptions::default()).is_err());
    assert!(matches!(
        FileBackend::open(
            dir.path().join("x"),
            FileBackendOptions::default()
                .with_read_only(true)
                .with_create_capacity(4096)
        ),
        Err(BackendError::InvalidConfig { .. })
    ));
}

#[test]
fn file_persists_and_reopens_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("disk.img");
    {
        let b = FileBackend::open(
            &path,
            FileBackendOptions::default().with_create_capacity(MIB),
        )
        .expect("create");
        assert_eq!(b.path(), path);
        assert!(!b.is_block_device());
        assert!(!b.is_direct());
        b.write_at(8192, &pattern(12, 4096), false).expect("write");
        b.flush().expect("flush");
    }
    assert_eq!(std::fs::metadata(&path).expect("metadata").len(), MIB);
    let b = FileBackend::open(&path, FileBackendOptions::default().with_read_only(true))
        .expect("reopen");
    assert_eq!(b.capacity_bytes(), MIB);
    assert_eq!(read(&b, 8192, 4096), pattern(12, 4096));
    for op in [
        BackendOp::Write,
        BackendOp::Discard,
        BackendOp::WriteZeroes,
        BackendOp::Resize,
    ] {
        assert!(!b.supports(op), "{op}");
    }
    assert!(b.supports(BackendOp::Read));
    assert!(matches!(
        b.write_at(0, &[1; 512], false),
        Err(BackendError::Unsupported {
            op: BackendOp::Write
        })
    ));
    assert!(matches!(
        b.resize(2 * MIB),
        Err(BackendError::Unsupported { .. })
    ));
    b.flush().expect("flush of a read-only file");
}

/// The scratch block device the block-device cases run on, set by
/// [`interop_block_device_loop`] while it holds a loop device.
#[cfg(feature = "interop")]
static DEVICE: parking_lot::Mutex<Option<std::path::PathBuf>> = parking_lot::Mutex::new(None);

#[cfg(feature = "interop")]
fn device_path() -> std::path::PathBuf {
    DEVICE.lock().clone().expect("a loop device is attached")
}

#[cfg(feature = "interop")]
fn block_device(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    open_device(capacity, block_size, false)
}

#[cfg(feature = "interop")]
fn block_device_direct(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    open_device(capacity, block_size, true)
}

#[cfg(feature = "interop")]
fn open_device(capacity: u64, block_size: u32, direct: bool) -> Arc<dyn BlockBackend> {
    let b = FileBackend::open(
        device_path(),
        FileBackendOptions::default()
            .with_logical_block_size(block_size)
            .with_direct(direct),
    )
    .expect("open block device");
    assert!(b.is_block_device());
    assert_eq!(b.capacity_bytes(), capacity, "the loop device is 4 MiB");
    b.write_zeroes(0, capacity).expect("reset the device");
    Arc::new(b)
}

/// Detaches a loop device when dropped, also when a case panics.
#[cfg(feature = "interop")]
struct LoopDevice(std::path::PathBuf);

#[cfg(feature = "interop")]
impl LoopDevice {
    /// Attaches a 4 MiB image with `sector_size`-byte sectors (needs root and
    /// util-linux `losetup`, as `.ci/run` provides).
    fn attach(sector_size: u32) -> Self {
        let image = tempfile::Builder::new()
            .prefix("vvol-loop-")
            .tempfile_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("image file");
        image.as_file().set_len(CAP).expect("size the image");
        let out = std::process::Command::new("losetup")
            .args([
                "--find",
                "--show",
                "--sector-size",
                &sector_size.to_string(),
            ])
            .arg(image.path())
            .output()
            .expect("losetup must be installed (util-linux) for the block-device test");
        assert!(
            out.status.success(),
            "losetup failed (the block-device test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8(out.stdout).expect("losetup prints a path");
        Self(std::path::PathBuf::from(path.trim()))
    }
}

#[cfg(feature = "interop")]
impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("--detach")
            .arg(&self.0)
            .status();
    }
}

/// Runs the conformance cases on real loop block devices with 512- and
/// 4096-byte sectors, buffered and with O_DIRECT.
#[cfg(feature = "interop")]
#[test]
fn interop_block_device_loop() {
    for sector in [512u32, 4096] {
        let device = LoopDevice::attach(sector);
        *DEVICE.lock() = Some(device.0.clone());
        let probe = FileBackend::open(&device.0, FileBackendOptions::default()).expect("open");
        let bs = probe.logical_block_size();
        assert_eq!(bs, sector, "logical block size read from the device");
        assert!(!probe.supports(BackendOp::Resize));
        assert!(matches!(
            probe.resize(CAP),
            Err(BackendError::Unsupported {
                op: BackendOp::Resize
            })
        ));
        assert_eq!(
            probe.allocation(0, CAP).expect("allocation"),
            [AllocationExtent {
                offset: 0,
                len: CAP,
                state: AllocationState::Unknown
            }]
        );
        drop(probe);
        // Every case but allocation_after_writes (a device reports Unknown).
        let cases: [Case; 10] = [
            Case::FreshReadsAreZeros,
            Case::RoundTrip,
            Case::OutOfRange,
            Case::FuaWriteThenRead,
            Case::Flush,
            Case::WriteZeroesKeepsNeighbours,
            Case::DiscardReadsZerosOrOld,
            Case::DiscardFreesWholeUnits,
            Case::ResizeGrowAndShrink,
            Case::ConcurrentWriters,
        ];
        for case in cases {
            run_case(case, block_device, bs);
            run_case(case, block_device_direct, bs);
        }
        *DEVICE.lock() = None;
    }
}

// ---------------------------------------------------------------------------
// FaultyBackend
// ---------------------------------------------------------------------------

fn faulty() -> FaultyBackend {
    FaultyBackend::new(memory(MIB, 512))
}

fn io_fault(op: BackendOp, trigger: FaultTrigger) -> Fault {
    Fault::on(op, trigger, FaultKind::Io(ErrorKind::Other))
}

fn is_io<T: std::fmt::Debug>(r: &Result<T, BackendError>, want: BackendOp) -> bool {
    matches!(r, Err(BackendError::Io { op, source, .. }) if *op == want && source.kind() == ErrorKind::Other)
}

#[test]
fn faulty_nth_write_fails_once() {
    let b = faulty();
    b.add_fault(io_fault(BackendOp::Write, FaultTrigger::Nth(2)))
        .expect("add");
    b.write_at(0, &[1; 512], false).expect("first write");
    let r = b.write_at(512, &[2; 512], false);
    assert!(is_io(&r, BackendOp::Write), "{r:?}");
    b.write_at(512, &[2; 512], false).expect("third write");
    b.write_at(1024, &[3; 512], false).expect("fourth write");
    b.read_at(0, &mut [0; 512]).expect("reads unaffected");
    assert_eq!(b.calls(BackendOp::Write), 4);
    assert_eq!(b.calls(BackendOp::Read), 1);
    assert_eq!(read(&b, 512, 512), vec![2; 512]);
}

#[test]
fn faulty_failed_write_leaves_data() {
    let b = faulty();
    b.write_at(0, &pattern(1, 4096), false).expect("write");
    let id = b
        .add_fault(io_fault(BackendOp::Write, FaultTrigger::Always))
        .expect("add");
    assert!(is_io(
        &b.write_at(0, &pattern(2, 4096), true),
        BackendOp::Write
    ));
    assert!(is_io(&b.write_at(8192, &[9; 512], false), BackendOp::Write));
    assert_eq!(read(&b, 0, 4096), pattern(1, 4096));
    assert_eq!(read(b.inner().as_ref(), 8192, 512), vec![0; 512]);
    assert!(b.remove_fault(id));
    assert!(!b.remove_fault(id));
    b.write_at(0, &pattern(2, 4096), false)
        .expect("write after removal");
    assert_eq!(read(&b, 0, 4096), pattern(2, 4096));
}

#[test]
fn faulty_range_trigger() {
    let b = faulty();
    b.add_fault(io_fault(
        BackendOp::Read,
        FaultTrigger::Range {
            offset: 4096,
            len: 4096,
        },
    ))
    .expect("add");
    let mut buf = [0u8; 4096];
    b.read_at(0, &mut buf).expect("before the range");
    b.read_at(8192, &mut buf).expect("after the range");
    assert!(is_io(&b.read_at(4096, &mut buf), BackendOp::Read));
    assert!(is_io(&b.read_at(2048, &mut buf), BackendOp::Read));
    assert!(is_io(
        &b.read_at(8191 - 511, &mut buf[..512]),
        BackendOp::Read
    ));
    b.read_at(4096, &mut []).expect("empty read never overlaps");
    b.write_at(4096, &buf, false).expect("other ops unaffected");
}

#[test]
fn faulty_always_on_flush_and_every_nth() {
    let b = faulty();
    b.add_fault(io_fault(BackendOp::Flush, FaultTrigger::Always))
        .expect("add");
    for _ in 0..3 {
        assert!(is_io(&b.flush(), BackendOp::Flush));
    }
    assert_eq!(b.calls(BackendOp::Flush), 3);
    b.clear_faults();
    b.flush().expect("flush after clear");

    b.add_fault(io_fault(BackendOp::Discard, FaultTrigger::EveryNth(3)))
        .expect("add");
    let failed: Vec<bool> = (0..7).map(|_| b.discard(0, 512).is_err()).collect();
    assert_eq!(
        failed,
        [false, false, true, false, false, true, false],
        "every third discard fails"
    );
}

#[test]
fn faulty_gone_and_unsupported_kinds() {
    let b = faulty();
    let gone = b
        .add_fault(Fault::any(FaultTrigger::Always, FaultKind::Gone))
        .expect("add");
    for r in [
        b.read_at(0, &mut [0; 512]),
        b.write_at(0, &[0; 512], false),
        b.flush(),
        b.resize(MIB),
    ] {
        let err = r.expect_err("gone");
        assert!(matches!(err, BackendError::Gone { .. }), "{err:?}");
        assert_eq!(err.op(), None);
    }
    assert!(b.remove_fault(gone));
    b.flush().expect("flush after removal");

    assert!(b.supports(BackendOp::Discard));
    b.add_fault(Fault::on(
        BackendOp::Discard,
        FaultTrigger::Always,
        FaultKind::Unsupported,
    ))
    .expect("add");
    assert!(!b.supports(BackendOp::Discard));
    assert!(b.supports(BackendOp::WriteZeroes));
    assert!(matches!(
        b.discard(0, 512),
        Err(BackendError::Unsupported {
            op: BackendOp::Discard
        })
    ));
    // A one-off Unsupported fault does not change supports().
    b.add_fault(Fault::on(
        BackendOp::WriteZeroes,
        FaultTrigger::Nth(1),
        FaultKind::Unsupported,
    ))
    .expect("add");
    assert!(b.supports(BackendOp::WriteZeroes));
}

#[test]
fn faulty_counts_calls_and_limits_rules() {
    let b = faulty();
    for op in BackendOp::ALL {
        assert_eq!(b.calls(op), 0);
    }
    b.read_at(0, &mut [0; 512]).expect("read");
    b.read_at(0, &mut [0; 512]).expect("read");
    b.write_at(0, &[0; 512], false).expect("write");
    b.write_zeroes(0, 512).expect("write_zeroes");
    b.allocation(0, 512).expect("allocation");
    b.resize(2 * MIB).expect("resize");
    assert_eq!(b.calls(BackendOp::Read), 2);
    assert_eq!(b.calls(BackendOp::Write), 1);
    assert_eq!(b.calls(BackendOp::WriteZeroes), 1);
    assert_eq!(b.calls(BackendOp::Allocation), 1);
    assert_eq!(b.calls(BackendOp::Resize), 1);
    assert_eq!(b.calls(BackendOp::Flush), 0);
    assert_eq!(b.capacity_bytes(), 2 * MIB);

    for bad in [
        FaultTrigger::Nth(0),
        FaultTrigger::EveryNth(0),
        FaultTrigger::Range { offset: 0, len: 0 },
    ] {
        assert!(matches!(
            b.add_fault(io_fault(BackendOp::Read, bad)),
            Err(BackendError::InvalidConfig { .. })
        ));
    }
    for _ in 0..FaultyBackend::MAX_FAULTS {
        b.add_fault(io_fault(BackendOp::Resize, FaultTrigger::Always))
            .expect("add");
    }
    assert!(matches!(
        b.add_fault(io_fault(BackendOp::Resize, FaultTrigger::Always)),
        Err(BackendError::InvalidConfig { .. })
    ));
    b.clear_faults();
    b.add_fault(io_fault(BackendOp::Resize, FaultTrigger::Always))
        .expect("add after clear");
}
