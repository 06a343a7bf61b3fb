//! The data-plane view of a vVol and of one live binding.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::stats::Counters;
use crate::backend::BlockBackend;
use crate::model::{Generation, HostId, VvolId, VvolKey};

/// Hosts kept inline in the control plane's binding record before it spills
/// to the heap.
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
///
/// Kept to 24 bytes (40 with the `Arc` counts) because there is one per
/// binding: the first host inline, any others behind one thin pointer
/// (bindings shared by several hosts are the exception).
#[derive(Debug)]
pub(crate) struct LiveBinding {
    pub(crate) volume: Arc<VolumeCore>,
    pub(crate) generation: Generation,
    first_host: HostId,
    more_hosts: Option<Box<MoreHosts>>,
}

/// Hosts of a binding after the first.
#[derive(Debug)]
struct MoreHosts(Box<[HostId]>);

impl LiveBinding {
    /// A binding of `volume` at `generation` for `hosts` (at least one).
    pub(crate) fn new(
        volume: Arc<VolumeCore>,
        generation: Generation,
        hosts: impl IntoIterator<Item = HostId>,
    ) -> Self {
        let mut hosts = hosts.into_iter();
        let first_host = hosts.next().expect("a live binding has at least one host");
        let rest: Box<[HostId]> = hosts.collect();
        Self {
            volume,
            generation,
            first_host,
            more_hosts: (!rest.is_empty()).then(|| Box::new(MoreHosts(rest))),
        }
    }

    /// Whether `host` may do I/O through this binding.
    #[inline]
    pub(crate) fn admits(&self, host: HostId) -> bool {
        self.first_host == host
            || self
                .more_hosts
                .as_ref()
                .is_some_and(|more| more.0.contains(&host))
    }

    /// The hosts that may do I/O through this binding.
    pub(crate) fn hosts(&self) -> impl Iterator<Item = HostId> + '_ {
        std::iter::once(self.first_host).chain(
            self.more_hosts
                .as_deref()
                .map_or(&[][..], |more| &more.0[..])
                .iter()
                .copied(),
        )
    }
}
