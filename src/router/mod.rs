//! The data plane: resolves (PE, secondary id) and routes I/O to backends.
//!
//! [`Router::resolve`] is one bounds check and three dependent loads (PE
//! table, slot chunk, slot word): no lock, no hashing, no shared write. On a
//! PE whose secondary ids are per (PE, host)
//! ([`SecondaryIdScope::PerPeAndHost`](crate::SecondaryIdScope::PerPeAndHost))
//! [`Router::resolve_for_host`] loads the host's slot table first (one more
//! load) and routed I/O does the same with the calling host. Bind
//! and unbind publish into the same tables from the control plane without
//! ever blocking a reader. Routed I/O pins the binding it resolved (an
//! `arc-swap` guard), so an unbind never waits for I/O and I/O that resolved
//! before the unbind completes on the vVol it resolved to.

mod access;
mod error;
mod inventory;
mod io;
// Used by the SCSI target.
#[cfg_attr(not(feature = "scsi"), allow(dead_code))]
mod lookup;
#[cfg(loom)]
pub mod slot;
#[cfg(not(loom))]
mod slot;
mod stats;
mod table;
mod volume;

use std::sync::{Arc, OnceLock};

pub use error::RouteError;
pub use stats::{IoStats, PeStats, VvolStats};
use table::PeTable;
pub use table::SLOT_CHUNK;
pub(crate) use table::TableState;
pub(crate) use volume::{INLINE_HOSTS, LiveBinding, VolumeCore};

use access::HostViews;
use inventory::Inventory;

use crate::model::{Generation, HostId, PeId, SecondaryId, SecondaryIdSpace, VvolKey};

/// What [`Router::resolve`] finds in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resolved {
    /// The vVol bound at the slot.
    pub vvol: VvolKey,
    /// The slot's generation: a handle must carry it to do I/O.
    pub generation: Generation,
}

/// Routes I/O from (host, handle) to the bound vVol's backend.
///
/// A router belongs to one [`ControlPlane`](crate::ControlPlane), which binds
/// and unbinds through it; get it with
/// [`ControlPlane::router`](crate::ControlPlane::router) and share the `Arc`
/// with any number of I/O threads.
///
/// # Example
/// ```
/// use vvol::BindContext;
///
/// let (plane, topo) = vvol::testing::quickstart()?;
/// let vm = &topo.vms[0];
/// let host = topo.hosts[0];
/// let handle = plane.bind(host, &[vm.data], BindContext::Normal)?.remove(0)?;
/// let router = plane.router();
/// router.write(host, handle, 0, &[7u8; 512], false)?;
/// let mut back = [0u8; 512];
/// router.read(host, handle, 0, &mut back)?;
/// assert_eq!(back, [7u8; 512]);
/// assert_eq!(router.resolve(handle.pe, handle.secondary_id).unwrap().generation, handle.generation);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Router {
    pes: Box<[OnceLock<PeTable>]>,
    /// Host cells of a per-host PE table (`Limits::max_hosts`).
    max_hosts: u32,
    inventory: Inventory,
    hosts: HostViews,
}

impl Router {
    /// A router with room for `max_pes` PEs (ids `0..max_pes`) and
    /// `max_hosts` hosts (ids `0..max_hosts`: the host cells of PEs whose
    /// secondary ids are per host, and the inventory counters).
    pub(crate) fn new(max_pes: u32, max_hosts: u32) -> Self {
        Self {
            pes: (0..max_pes).map(|_| OnceLock::new()).collect(),
            max_hosts,
            inventory: Inventory::new(max_pes, max_hosts),
            hosts: HostViews::new(max_hosts),
        }
    }

    #[inline]
    fn table(&self, pe: PeId) -> Option<&PeTable> {
        self.pes.get(pe.0 as usize)?.get()
    }

    /// Finds what is bound at `(pe, secondary_id)`: `None` when the slot is
    /// empty, outside the PE's range, or the PE is unknown, failed or removed.
    /// Takes no lock and writes no shared memory.
    ///
    /// On a PE of a [`SecondaryIdScope::PerPeAndHost`](crate::SecondaryIdScope::PerPeAndHost)
    /// array a secondary id names a binding only together with the host
    /// (a LUN names a logical unit within one I_T nexus, SAM-5 4.6.1), so
    /// this host-less form does not guess: it returns `None`. Use
    /// [`resolve_for_host`](Self::resolve_for_host) there.
    #[inline]
    #[must_use]
    pub fn resolve(&self, pe: PeId, secondary_id: SecondaryId) -> Option<Resolved> {
        self.resolve_in(pe, None, secondary_id)
    }

    /// Finds what is bound at `secondary_id` of `pe` as `host` addresses
    /// it: in [`SecondaryIdScope::PerPe`](crate::SecondaryIdScope::PerPe)
    /// scope the same as [`resolve`](Self::resolve) (the host does not take
    /// part), in [`SecondaryIdScope::PerPeAndHost`](crate::SecondaryIdScope::PerPeAndHost)
    /// scope the slot of `host`'s own space (one more load: the host's
    /// slot table). `None` as for `resolve`, or when `host` holds nothing
    /// there. Whether the host may do I/O is checked by the I/O calls.
    #[inline]
    #[must_use]
    pub fn resolve_for_host(
        &self,
        pe: PeId,
        host: HostId,
        secondary_id: SecondaryId,
    ) -> Option<Resolved> {
        self.resolve_in(pe, Some(host), secondary_id)
    }

    #[inline]
    fn resolve_in(
        &self,
        pe: PeId,
        host: Option<HostId>,
        secondary_id: SecondaryId,
    ) -> Option<Resolved> {
        let table = self.table(pe)?;
        if matches!(table.state(), TableState::Failed | TableState::Removed) {
            return None;
        }
        let word = table.slots(host)?.word(secondary_id)?;
        Some(Resolved {
            vvol: word.key?,
            generation: word.generation,
        })
    }

    /// Counters of one PE; `None` for an unknown PE.
    #[must_use]
    pub fn pe_stats(&self, pe: PeId) -> Option<PeStats> {
        let table = self.table(pe)?;
        Some(PeStats {
            pe,
            in_flight: table.in_flight.load(std::sync::atomic::Ordering::Relaxed),
            io: table.counters.snapshot(),
        })
    }

    /// How often the bindings behind `pe` (or its state) have changed: bumped
    /// on every bind, unbind, host-set change and PE state change (the
    /// SCSI target uses the finer per-host counters behind
    /// [`host_inventory_changes`](Self::host_inventory_changes)). `None`
    /// for an unknown PE. One atomic load; no lock.
    #[must_use]
    pub fn binding_changes(&self, pe: PeId) -> Option<u64> {
        Some(
            self.table(pe)?
                .changes
                .load(std::sync::atomic::Ordering::Acquire),
        )
    }

    /// How often what `host` may see has changed: bumped on every bind and
    /// unbind for `host` (and every change of a binding's host set that adds
    /// or drops it), on every PE added, removed or changing state, and when
    /// a PE is mapped or unmapped for `host` (its access rules,
    /// [`ControlPlane::map_pe`](crate::ControlPlane::map_pe)). A SCSI target
    /// compares it (and the finer counters behind it) to decide whether
    /// REPORTED LUNS DATA HAS CHANGED may be due for the host's I_T nexuses.
    /// 0 for a host id past `max_hosts`. A few atomic loads; no lock.
    #[must_use]
    pub fn host_inventory_changes(&self, host: HostId) -> u64 {
        self.inventory.host_changes(host)
    }

    /// Bind/unbind changes of `host`'s bindings behind `pe` (counted in
    /// hashed buckets: may move for another pair, never misses this one).
    // Read by the SCSI target only.
    #[cfg_attr(not(feature = "scsi"), allow(dead_code))]
    pub(crate) fn host_pe_binding_changes(&self, host: HostId, pe: PeId) -> u64 {
        self.inventory.host_pe(host, pe)
    }

    /// The PE (un)mapping part of [`host_inventory_changes`](Self::host_inventory_changes).
    // Read by the SCSI target only.
    #[cfg_attr(not(feature = "scsi"), allow(dead_code))]
    pub(crate) fn host_mapping_changes(&self, host: HostId) -> u64 {
        self.inventory.host_mappings(host)
    }

    /// How often `pe` entered or left the Failed state (a SCSI target
    /// reports ASYMMETRIC ACCESS STATE CHANGED on its LUs for each).
    // Read by the SCSI target only.
    #[cfg_attr(not(feature = "scsi"), allow(dead_code))]
    pub(crate) fn pe_failure_changes(&self, pe: PeId) -> u64 {
        self.inventory.failures(pe)
    }

    /// Whether `pe` is known and failed. One atomic load.
    // Read by the SCSI target only.
    #[cfg_attr(not(feature = "scsi"), allow(dead_code))]
    pub(crate) fn pe_failed(&self, pe: PeId) -> bool {
        self.table(pe)
            .is_some_and(|t| t.state() == TableState::Failed)
    }

    /// Whether the access rules of `host` map `pe` to it (array LUN
    /// masking, [`ControlPlane::map_pe`](crate::ControlPlane::map_pe)):
    /// what a transport asks before it shows the PE's administrative
    /// logical unit to the host. One `arc-swap` load; no lock.
    #[must_use]
    pub fn is_mapped(&self, host: HostId, pe: PeId) -> bool {
        self.hosts.is_mapped(host, pe)
    }

    /// The PEs mapped to `host`, in id order (empty for an unknown host).
    /// One `arc-swap` load; no lock.
    #[must_use]
    pub fn mapped_pes(&self, host: HostId) -> Arc<Vec<PeId>> {
        self.hosts.mapped(host)
    }

    /// Commands `host` has in flight on `pe` (its share of the per-(host,
    /// PE) queue); `None` for an unknown PE.
    #[must_use]
    pub fn host_in_flight(&self, host: HostId, pe: PeId) -> Option<u32> {
        let table = self.table(pe)?;
        Some(
            table
                .host_in_flight(host)
                .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed)),
        )
    }

    /// Bytes held by every PE's routing slots (16 bytes a slot, allocated in
    /// chunks of [`SLOT_CHUNK`]), with, on per-host PEs, the host cells
    /// (16 bytes for each of `Limits::max_hosts`) and each host's table.
    #[must_use]
    pub fn slot_bytes(&self) -> usize {
        self.pes
            .iter()
            .filter_map(OnceLock::get)
            .map(PeTable::slot_bytes)
            .sum()
    }

    // ---- control-plane side -------------------------------------------------

    pub(crate) fn add_pe(
        &self,
        pe: PeId,
        space: SecondaryIdSpace,
        queue_depth: u32,
        host_queue_depth: u32,
        per_host: bool,
    ) {
        let cell = self
            .pes
            .get(pe.0 as usize)
            .expect("the control plane checks max_pes before adding a PE");
        let cells = if per_host { self.max_hosts.max(1) } else { 0 };
        let table = PeTable::new(space, queue_depth, host_queue_depth, self.max_hosts, cells);
        let fresh = cell.set(table).is_ok();
        assert!(fresh, "PE ids are never reused");
        self.inventory.pe_added_or_removed();
    }

    pub(crate) fn add_host(&self, host: HostId) {
        self.hosts.add(host);
    }

    /// Publishes the PEs mapped to `host` (allocating its queue counters
    /// on them first).
    pub(crate) fn set_host_access(&self, host: HostId, pes: Vec<PeId>) {
        for pe in &pes {
            if let Some(table) = self.table(*pe) {
                let _ = table.host_in_flight(host);
            }
        }
        if self.hosts.set(host, pes) {
            // What REPORT LUNS shows the host changed (3Fh/0Eh, review S6).
            self.inventory.host_mapping_changed(host);
        }
    }

    pub(crate) fn set_pe_state(&self, pe: PeId, state: TableState) {
        if let Some(table) = self.table(pe) {
            let before = table.state();
            table.set_state(state);
            let failed = |s| s == TableState::Failed;
            self.inventory
                .pe_state_changed(pe, failed(before) != failed(state));
            if state == TableState::Removed && before != TableState::Removed {
                self.inventory.pe_added_or_removed();
            }
        }
    }

    /// Publishes at `sid` of `host`'s space on `pe` (`None`: the PE's one
    /// space).
    pub(crate) fn publish(
        &self,
        pe: PeId,
        host: Option<HostId>,
        sid: SecondaryId,
        binding: Arc<LiveBinding>,
    ) {
        let table = self.table(pe).expect("bindings are only made on known PEs");
        let hosts: smallvec::SmallVec<[HostId; INLINE_HOSTS]> = binding.hosts().collect();
        table.publish(host, sid, binding);
        for h in hosts {
            self.inventory.host_bindings_changed(h, pe);
        }
    }

    pub(crate) fn replace(
        &self,
        pe: PeId,
        host: Option<HostId>,
        sid: SecondaryId,
        binding: Arc<LiveBinding>,
    ) {
        if let Some(table) = self.table(pe) {
            let before: smallvec::SmallVec<[HostId; INLINE_HOSTS]> = table
                .slots(host)
                .and_then(|s| s.binding(sid))
                .and_then(|g| g.as_deref().map(|b| b.hosts().collect()))
                .unwrap_or_default();
            let after: smallvec::SmallVec<[HostId; INLINE_HOSTS]> = binding.hosts().collect();
            table.replace(host, sid, binding);
            // Only the hosts gained or lost see a different inventory.
            for h in before.iter().filter(|h| !after.contains(h)) {
                self.inventory.host_bindings_changed(*h, pe);
            }
            for h in after.iter().filter(|h| !before.contains(h)) {
                self.inventory.host_bindings_changed(*h, pe);
            }
        }
    }

    pub(crate) fn retire(&self, pe: PeId, host: Option<HostId>, sid: SecondaryId) {
        if let Some(table) = self.table(pe) {
            let before: smallvec::SmallVec<[HostId; INLINE_HOSTS]> = table
                .slots(host)
                .and_then(|s| s.binding(sid))
                .and_then(|g| g.as_deref().map(|b| b.hosts().collect()))
                .unwrap_or_default();
            table.retire(host, sid);
            for h in before {
                self.inventory.host_bindings_changed(h, pe);
            }
        }
    }
}
