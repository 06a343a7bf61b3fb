//! Per-PE and per-vVol I/O counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::model::{PeId, VvolId};

/// Lock-free counters updated by routed I/O.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    other_ops: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    errors: AtomicU64,
}

/// Which counter an I/O updates.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OpClass {
    Read,
    Write,
    Other,
}

impl Counters {
    pub(crate) fn record(&self, class: OpClass, bytes: u64) {
        match class {
            OpClass::Read => {
                self.reads.fetch_add(1, Relaxed);
                self.bytes_read.fetch_add(bytes, Relaxed);
            }
            OpClass::Write => {
                self.writes.fetch_add(1, Relaxed);
                self.bytes_written.fetch_add(bytes, Relaxed);
            }
            OpClass::Other => {
                self.other_ops.fetch_add(1, Relaxed);
            }
        }
    }

    pub(crate) fn record_error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> IoStats {
        IoStats {
            reads: self.reads.load(Relaxed),
            writes: self.writes.load(Relaxed),
            other_ops: self.other_ops.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}

/// I/O counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IoStats {
    /// Completed reads.
    pub reads: u64,
    /// Completed writes.
    pub writes: u64,
    /// Completed flushes, discards, write-zeroes and allocation queries.
    pub other_ops: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Requests that failed after reaching the PE (not bound, denied,
    /// out of range, queue full, backend errors).
    pub errors: u64,
}

impl IoStats {
    /// All completed operations.
    #[must_use]
    pub const fn ops(&self) -> u64 {
        self.reads + self.writes + self.other_ops
    }
}

/// Counters of one PE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeStats {
    /// The PE.
    pub pe: PeId,
    /// Commands in flight at the moment of the snapshot.
    pub in_flight: u32,
    /// Its counters.
    pub io: IoStats,
}

/// Counters of one vVol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VvolStats {
    /// The vVol.
    pub vvol: VvolId,
    /// Its counters.
    pub io: IoStats,
}
