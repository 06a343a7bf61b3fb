//! Operation names and allocation-query results shared by all backends.

use std::fmt;

/// A backend operation, used in errors, capability queries and fault rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum BackendOp {
    /// [`read_at`](super::BlockBackend::read_at).
    Read,
    /// [`write_at`](super::BlockBackend::write_at).
    Write,
    /// [`flush`](super::BlockBackend::flush).
    Flush,
    /// [`discard`](super::BlockBackend::discard).
    Discard,
    /// [`write_zeroes`](super::BlockBackend::write_zeroes).
    WriteZeroes,
    /// [`allocation`](super::BlockBackend::allocation).
    Allocation,
    /// [`resize`](super::BlockBackend::resize).
    Resize,
}

impl BackendOp {
    /// Every operation, in declaration order.
    pub const ALL: [BackendOp; 7] = [
        BackendOp::Read,
        BackendOp::Write,
        BackendOp::Flush,
        BackendOp::Discard,
        BackendOp::WriteZeroes,
        BackendOp::Allocation,
        BackendOp::Resize,
    ];
}

impl fmt::Display for BackendOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendOp::Read => "read",
            BackendOp::Write => "write",
            BackendOp::Flush => "flush",
            BackendOp::Discard => "discard",
            BackendOp::WriteZeroes => "write-zeroes",
            BackendOp::Allocation => "allocation query",
            BackendOp::Resize => "resize",
        })
    }
}

/// Allocation state of an extent, as SCSI GET LBA STATUS and NBD
/// `base:allocation` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AllocationState {
    /// Backed by storage (may still hold zeros).
    Allocated,
    /// Not backed by storage; reads as zeros.
    Zero,
    /// The backend cannot tell.
    Unknown,
}

/// A contiguous byte range with one allocation state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllocationExtent {
    /// First byte of the extent.
    pub offset: u64,
    /// Length of the extent in bytes (never 0).
    pub len: u64,
    /// Allocation state of every byte in the extent.
    pub state: AllocationState,
}

/// Appends `extent` to `extents`, merging it into the last extent when both
/// have the same state and touch. Returns `false` when the extent could not be
/// added because [`MAX_ALLOCATION_EXTENTS`](super::MAX_ALLOCATION_EXTENTS)
/// extents are already held. Empty extents are skipped.
pub(crate) fn push_extent(extents: &mut Vec<AllocationExtent>, extent: AllocationExtent) -> bool {
    if extent.len == 0 {
        return true;
    }
    if let Some(last) = extents.last_mut()
        && last.state == extent.state
        && last.offset + last.len == extent.offset
    {
        last.len += extent.len;
        return true;
    }
    if extents.len() >= super::MAX_ALLOCATION_EXTENTS {
        return false;
    }
    extents.push(extent);
    true
}
