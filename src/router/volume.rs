//! The data-plane view of a vVol and of one live binding.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use smallvec::SmallVec;

use super::stats::Counters;
use crate::backend::BlockBackend;
use crate::model::{Generation, HostId, VvolId, VvolKey};

/// Hosts kept inline in a binding before it spills to the heap.
pub(crate) const INLINE_HOSTS: usize = 2;

/// What routed I/O needs of a vVol. Shared by every binding of the vVol and
/// kept alive by I/O in flight after an unbind.
#[derive(Debug)]
pub(crate) struct VolumeCore {
    pub(crate) id: VvolId,
    pub(crate) key: VvolKey,
    pub(crate) backend: Arc<dyn BlockBackend>,
    pub(crate) block_size: u32,
    capacity_bytes: AtomicU64,
    pub(crate) counters: Counters,
}

impl VolumeCore {
    pub(crate) fn new(
        id: VvolId,
        key: VvolKey,
        backend: Arc<dyn BlockBackend>,
        block_size: u32,
        capacity_bytes: u64,
    ) -> Self {
        Self {
            id,
            key,
            backend,
            block_size,
            capacity_bytes: AtomicU64::new(capacity_bytes),
            counters: Counters::default(),
        }
    }

    pub(crate) fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes.load(Ordering::Acquire)
    }

    pub(crate) fn set_capacity_bytes(&self, bytes: u64) {
        self.capacity_bytes.store(bytes, Ordering::Release);
    }
}

/// One binding as routed I/O sees it; replaced whole (copy on write) when
/// its host set changes.
#[derive(Debug)]
pub(crate) struct LiveBinding {
    pub(crate) volume: Arc<VolumeCore>,
    pub(crate) generation: Generation,
    pub(crate) hosts: SmallVec<[HostId; INLINE_HOSTS]>,
}
