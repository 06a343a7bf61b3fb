//! Host access as the data plane reads it: per host, the PEs its access
//! rules map to it (array LUN masking; changes to it are counted in
//! `inventory.rs`). Published by the control plane after the record is durable;
//! read per command by transports without any lock (one `arc-swap` load).

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use crate::model::{HostId, PeId};

/// One host's published view.
#[derive(Debug)]
pub(crate) struct HostView {
    /// The PEs mapped to the host, sorted.
    mapped: ArcSwap<Vec<PeId>>,
}

/// Every host's view, indexed by host id (ids are never reused).
#[derive(Debug)]
pub(crate) struct HostViews {
    hosts: Box<[OnceLock<HostView>]>,
}

impl HostViews {
    pub(crate) fn new(max_hosts: u32) -> Self {
        Self {
            hosts: (0..max_hosts).map(|_| OnceLock::new()).collect(),
        }
    }

    fn get(&self, host: HostId) -> Option<&HostView> {
        self.hosts.get(host.0 as usize)?.get()
    }

    /// Makes room for `host` (no PE mapped yet). Control plane only.
    pub(crate) fn add(&self, host: HostId) {
        if let Some(cell) = self.hosts.get(host.0 as usize) {
            let _ = cell.set(HostView {
                mapped: ArcSwap::from_pointee(Vec::new()),
            });
        }
    }

    /// Publishes the PEs mapped to `host`; whether they changed. Control
    /// plane only.
    pub(crate) fn set(&self, host: HostId, mut pes: Vec<PeId>) -> bool {
        self.add(host);
        let Some(view) = self.get(host) else {
            return false;
        };
        pes.sort_unstable();
        pes.dedup();
        if **view.mapped.load() == pes {
            return false;
        }
        view.mapped.store(Arc::new(pes));
        true
    }

    /// Whether `pe` is mapped to `host`.
    #[inline]
    pub(crate) fn is_mapped(&self, host: HostId, pe: PeId) -> bool {
        self.get(host)
            .is_some_and(|v| v.mapped.load().binary_search(&pe).is_ok())
    }

    /// The PEs mapped to `host`, sorted (empty for an unknown host).
    pub(crate) fn mapped(&self, host: HostId) -> Arc<Vec<PeId>> {
        self.get(host)
            .map_or_else(|| Arc::new(Vec::new()), |v| v.mapped.load_full())
    }
}
