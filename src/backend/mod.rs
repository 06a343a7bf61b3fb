//! Block backends: where a vVol's bytes live.
//!
//! A [`BlockBackend`] is positional, `&self` block storage: many router
//! threads share one backend through an `Arc` with no outer mutex. The
//! contract of every method is written on the method and checked for every
//! implementation by one conformance suite, which embedders can run on their
//! own backends (`vvol::testing::backend_conformance`, cargo feature
//! `testing`).
//!
//! # Example: a minimal backend
//! Only the five required methods; discard, write-zeroes, allocation status
//! and resize answer [`BackendError::Unsupported`] by default, and the
//! transports fall back (SCSI WRITE SAME writes the pattern, UNMAP and NBD
//! TRIM are advisory, block status reports everything allocated).
//! ```
//! use parking_lot::RwLock;
//! use vvol::backend::{BackendError, BackendOp, BlockBackend};
//!
//! #[derive(Debug)]
//! struct Flat(RwLock<Vec<u8>>);
//!
//! impl Flat {
//!     fn range(&self, op: BackendOp, offset: u64, len: usize) -> Result<std::ops::Range<usize>, BackendError> {
//!         let capacity = self.capacity_bytes();
//!         match offset.checked_add(len as u64) {
//!             Some(end) if end <= capacity => Ok(offset as usize..end as usize),
//!             _ => Err(BackendError::OutOfRange { op, offset, len: len as u64, capacity }),
//!         }
//!     }
//! }
//!
//! impl BlockBackend for Flat {
//!     fn capacity_bytes(&self) -> u64 {
//!         self.0.read().len() as u64
//!     }
//!     fn logical_block_size(&self) -> u32 {
//!         512
//!     }
//!     fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
//!         let range = self.range(BackendOp::Read, offset, buf.len())?;
//!         buf.copy_from_slice(&self.0.read()[range]);
//!         Ok(())
//!     }
//!     fn write_at(&self, offset: u64, data: &[u8], _fua: bool) -> Result<(), BackendError> {
//!         let range = self.range(BackendOp::Write, offset, data.len())?;
//!         self.0.write()[range].copy_from_slice(data);
//!         Ok(())
//!     }
//!     fn flush(&self) -> Result<(), BackendError> {
//!         Ok(())
//!     }
//! }
//!
//! let disk = Flat(RwLock::new(vec![0; 1 << 20]));
//! disk.write_at(512, &[7; 512], true)?;
//! assert!(!disk.supports(BackendOp::Discard));
//! assert!(matches!(
//!     disk.discard(0, 512),
//!     Err(BackendError::Unsupported { op: BackendOp::Discard })
//! ));
//! # Ok::<(), BackendError>(())
//! ```
//!
//! Implementations:
//! - [`MemoryBackend`]: sparse chunks in RAM, allocated on first write.
//! - [`FileBackend`]: a regular file or a block device through pread/pwrite,
//!   optionally with O_DIRECT.
//! - [`FaultyBackend`]: wraps another backend and fails chosen operations,
//!   for error-path tests.

mod error;
mod faulty;
mod file;
mod memory;
mod op;

pub use error::BackendError;
pub use faulty::{Fault, FaultId, FaultKind, FaultTrigger, FaultyBackend};
pub use file::{FileBackend, FileBackendOptions};
pub use memory::MemoryBackend;
pub use op::{AllocationExtent, AllocationState, BackendOp};

/// Most extents an [`allocation`](BlockBackend::allocation) query returns in
/// one call; a caller asks again from the end of the last extent.
pub const MAX_ALLOCATION_EXTENTS: usize = 1024;

/// Positional block storage shared by many threads.
///
/// All offsets and lengths are in bytes. Unless a method says otherwise, a
/// range must lie within [`capacity_bytes`](Self::capacity_bytes)
/// ([`BackendError::OutOfRange`] otherwise); alignment to
/// [`logical_block_size`](Self::logical_block_size) is enforced by the router,
/// and a backend may also enforce it itself ([`BackendError::Misaligned`]).
///
/// A backend implements five methods: [`capacity_bytes`](Self::capacity_bytes),
/// [`logical_block_size`](Self::logical_block_size), [`read_at`](Self::read_at),
/// [`write_at`](Self::write_at) and [`flush`](Self::flush). The optional
/// capabilities ([`discard`](Self::discard),
/// [`write_zeroes`](Self::write_zeroes), [`allocation`](Self::allocation),
/// [`resize`](Self::resize)) have default bodies returning
/// [`BackendError::Unsupported`]; a backend that overrides one also
/// overrides [`supports`](Self::supports) to announce it (the conformance
/// kit checks that the two agree).
pub trait BlockBackend: Send + Sync + std::fmt::Debug + 'static {
    /// Capacity in bytes.
    fn capacity_bytes(&self) -> u64;

    /// Logical block size in bytes (512 or 4096 for the provided backends).
    fn logical_block_size(&self) -> u32;

    /// Whether the backend implements `op`.
    ///
    /// The default announces read, write and flush only, matching the
    /// default bodies of the optional methods.
    fn supports(&self, op: BackendOp) -> bool {
        matches!(op, BackendOp::Read | BackendOp::Write | BackendOp::Flush)
    }

    /// Fills `buf` with the bytes at `offset`. Never-written ranges read as zeros.
    ///
    /// # Errors
    /// [`BackendError::OutOfRange`] when the range passes the capacity;
    /// [`BackendError::Io`] or [`BackendError::Gone`] when the storage fails.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError>;

    /// Writes `data` at `offset`. With `fua` the data is durable when the call
    /// returns; without it, only after a later [`flush`](Self::flush).
    ///
    /// # Errors
    /// [`BackendError::OutOfRange`] when the range passes the capacity;
    /// [`BackendError::Io`] or [`BackendError::Gone`] when the storage fails.
    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError>;

    /// Makes every completed write durable.
    ///
    /// # Errors
    /// [`BackendError::Io`] or [`BackendError::Gone`] when the storage fails;
    /// a failed flush means earlier writes may not be durable.
    fn flush(&self) -> Result<(), BackendError>;

    /// Whether a successful [`discard`](Self::discard) guarantees that the
    /// range reads as zeros afterwards (until written again).
    ///
    /// The SCSI target reports it as LBPRZ (SBC-4 4.7.4.5: unmapped LBAs
    /// read as zeros), so only a backend that keeps the promise on every
    /// discard may say `true`; it must then also support
    /// [`BackendOp::Discard`] (the conformance kit checks both). The
    /// default is `false`: a discarded range may keep its old contents.
    fn discard_zeroes(&self) -> bool {
        false
    }

    /// The size, in bytes, of the units a [`discard`](Self::discard)
    /// deallocates, aligned from offset 0: a discard covering whole units
    /// frees them ([`allocation`](Self::allocation) no longer reports them
    /// allocated), while the parts of a unit it covers are zeroed or kept
    /// but stay allocated. `0` (the default) when the backend does not know.
    ///
    /// The SCSI target reports it as OPTIMAL UNMAP GRANULARITY (SBC-4
    /// 6.6.4), so that hosts send discards that free space. When non-zero
    /// it is a multiple of the logical block size and the backend supports
    /// [`BackendOp::Discard`] (the conformance kit checks both).
    fn discard_granularity(&self) -> u64 {
        0
    }

    /// Tells the backend the range is no longer needed. Afterwards the range
    /// reads as zeros or as its old contents ([`discard_zeroes`](Self::discard_zeroes)
    /// says which the backend guarantees); [`write_zeroes`](Self::write_zeroes)
    /// always guarantees zeros.
    ///
    /// # Errors
    /// [`BackendError::Unsupported`] when the backend cannot discard (the
    /// default body), and the errors of [`write_at`](Self::write_at).
    fn discard(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        let _ = (offset, len);
        Err(BackendError::Unsupported {
            op: BackendOp::Discard,
        })
    }

    /// Makes the range read as zeros, freeing space where the backend can.
    ///
    /// # Errors
    /// [`BackendError::Unsupported`] when the backend cannot do it (the
    /// default body), and the errors of [`write_at`](Self::write_at).
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        let _ = (offset, len);
        Err(BackendError::Unsupported {
            op: BackendOp::WriteZeroes,
        })
    }

    /// Describes the allocation state of `[offset, offset + len)` as contiguous
    /// extents in ascending order, covering the range from `offset` without
    /// gaps. At most [`MAX_ALLOCATION_EXTENTS`] are returned, so the extents
    /// may end before `offset + len`.
    ///
    /// # Errors
    /// [`BackendError::OutOfRange`], [`BackendError::Unsupported`] (the
    /// default body), or a storage failure.
    fn allocation(&self, offset: u64, len: u64) -> Result<Vec<AllocationExtent>, BackendError> {
        let _ = (offset, len);
        Err(BackendError::Unsupported {
            op: BackendOp::Allocation,
        })
    }

    /// How many bytes of storage the backend holds for the volume (thin
    /// allocation), or `None` when it cannot tell (the default body). A
    /// container reports the sum over its vVols
    /// ([`Container::allocated_bytes`](crate::Container::allocated_bytes)),
    /// counting a `None` as the vVol's whole capacity. Called without any
    /// lock of the control plane held.
    fn allocated_bytes(&self) -> Option<u64> {
        None
    }

    /// Changes the capacity to `new_capacity_bytes` (a multiple of the
    /// logical block size). Growing exposes zeros.
    ///
    /// # Errors
    /// [`BackendError::Unsupported`] when the backend cannot change size
    /// (a block device; the default body), [`BackendError::Misaligned`] for
    /// an unaligned size, or a storage failure.
    fn resize(&self, new_capacity_bytes: u64) -> Result<(), BackendError> {
        let _ = new_capacity_bytes;
        Err(BackendError::Unsupported {
            op: BackendOp::Resize,
        })
    }
}

/// Checks that `[offset, offset + len)` fits in `capacity`.
pub(crate) fn check_range(
    op: BackendOp,
    offset: u64,
    len: u64,
    capacity: u64,
) -> Result<(), BackendError> {
    match offset.checked_add(len) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(BackendError::OutOfRange {
            op,
            offset,
            len,
            capacity,
        }),
    }
}
