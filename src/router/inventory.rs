//! Lock-free counters of what each host may see: the SCSI target compares
//! them to decide when REPORTED LUNS DATA HAS CHANGED (3Fh/0Eh) and
//! ASYMMETRIC ACCESS STATE CHANGED (2Ah/06h) are due, without a lock and
//! without a scan of the bindings (review S1, S6).
//!
//! Every counter only grows; a reader compares the value it saw last with
//! the current one. Writers bump after the change they report is
//! published (release), readers load with acquire, so a reader that sees a
//! bump also sees the change.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::{HostId, PeId};

/// Counters of bind/unbind changes per (host, PE), hashed into this many
/// buckets: a change for one pair bumps its bucket, so a reader of another
/// pair in the same bucket sees a spurious change (never a missed one).
pub(crate) const HOST_PE_BUCKETS: usize = 4096;

/// Per-host counters.
#[derive(Debug, Default)]
struct HostCounters {
    /// Bindings the host holds were made, unbound, or had their host set
    /// changed.
    binds: AtomicU64,
    /// PEs were mapped or unmapped for the host (its access rules, `ControlPlane::map_pe`).
    maps: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Inventory {
    /// PEs added or removed.
    topology: AtomicU64,
    /// PE state changes (any PE).
    pe_states: AtomicU64,
    /// Per PE: transitions into or out of the Failed state.
    failures: Box<[AtomicU64]>,
    hosts: Box<[HostCounters]>,
    /// Per (host, PE) bucket: bindings of the host behind the PE changed.
    pairs: Box<[AtomicU64]>,
}

fn bucket(host: HostId, pe: PeId) -> usize {
    let mixed = (u64::from(host.0) << 32 | u64::from(pe.0)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 32) as usize % HOST_PE_BUCKETS
}

impl Inventory {
    pub(crate) fn new(max_pes: u32, max_hosts: u32) -> Self {
        Self {
            topology: AtomicU64::new(0),
            pe_states: AtomicU64::new(0),
            failures: (0..max_pes).map(|_| AtomicU64::new(0)).collect(),
            hosts: (0..max_hosts).map(|_| HostCounters::default()).collect(),
            pairs: (0..HOST_PE_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn host(&self, host: HostId) -> Option<&HostCounters> {
        self.hosts.get(host.0 as usize)
    }

    pub(crate) fn pe_added_or_removed(&self) {
        self.topology.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn pe_state_changed(&self, pe: PeId, failure_transition: bool) {
        if failure_transition && let Some(c) = self.failures.get(pe.0 as usize) {
            c.fetch_add(1, Ordering::Release);
        }
        self.pe_states.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn host_bindings_changed(&self, host: HostId, pe: PeId) {
        self.pairs[bucket(host, pe)].fetch_add(1, Ordering::Release);
        if let Some(h) = self.host(host) {
            h.binds.fetch_add(1, Ordering::Release);
        }
    }

    pub(crate) fn host_mapping_changed(&self, host: HostId) {
        if let Some(h) = self.host(host) {
            h.maps.fetch_add(1, Ordering::Release);
        }
    }

    /// Everything that may change what `host` sees.
    pub(crate) fn host_changes(&self, host: HostId) -> u64 {
        let own = self.host(host).map_or(0, |h| {
            h.binds
                .load(Ordering::Acquire)
                .wrapping_add(h.maps.load(Ordering::Acquire))
        });
        own.wrapping_add(self.topology.load(Ordering::Acquire))
            .wrapping_add(self.pe_states.load(Ordering::Acquire))
    }

    /// Bind/unbind changes of `host` behind `pe` (and of the pairs sharing
    /// its bucket).
    // Read by the SCSI target only.
    #[cfg_attr(not(feature = "scsi"), allow(dead_code))]
    pub(crate) fn host_pe(&self, host: HostId, pe: PeId) -> u64 {
        self.pairs[bucket(host, pe)].load(Ordering::Acquire)
    }

    // Read by the SCSI target only.
    #[cfg_attr(not(feature = "scsi"), allow(dead_code))]
    pub(crate) fn host_mappings(&self, host: HostId) -> u64 {
        self.host(host)
            .map_or(0, |h| h.maps.load(Ordering::Acquire))
    }

    // Read by the SCSI target only.
    #[cfg_attr(not(feature = "scsi"), allow(dead_code))]
    pub(crate) fn failures(&self, pe: PeId) -> u64 {
        self.failures
            .get(pe.0 as usize)
            .map_or(0, |c| c.load(Ordering::Acquire))
    }
}
