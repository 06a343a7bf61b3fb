//! The data plane: resolves (PE, secondary id) and routes I/O to backends.
//!
//! [`Router::resolve`] is one bounds check and three dependent loads (PE
//! table, slot chunk, slot word): no lock, no hashing, no shared write. Bind
//! and unbind publish into the same tables from the control plane without
//! ever blocking a reader. Routed I/O pins the binding it resolved (an
//! `arc-swap` guard), so an unbind never waits for I/O and I/O that resolved
//! before the unbind completes on the vVol it resolved to.

mod access;
mod error;
mod io;
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
    hosts: HostViews,
    max_hosts: u32,
}

impl Router {
    /// A router with room for `max_pes` PEs (ids `0..max_pes`) and
    /// `max_hosts` hosts.
    pub(crate) fn new(max_pes: u32, max_hosts: u32) -> Self {
        Self {
            pes: (0..max_pes).map(|_| OnceLock::new()).collect(),
            hosts: HostViews::new(max_hosts),
            max_hosts,
        }
    }

    #[inline]
    fn table(&self, pe: PeId) -> Option<&PeTable> {
        self.pes.get(pe.0 as usize)?.get()
    }

    /// Finds what is bound at `(pe, secondary_id)`: `None` when the slot is
    /// empty, outside the PE's range, or the PE is unknown, failed or removed.
    /// Takes no lock and writes no shared memory.
    #[inline]
    #[must_use]
    pub fn resolve(&self, pe: PeId, secondary_id: SecondaryId) -> Option<Resolved> {
        let table = self.table(pe)?;
        if matches!(table.state(), TableState::Failed | TableState::Removed) {
            return None;
        }
        let word = table.word(secondary_id)?;
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
    /// on every bind, unbind, host-set change and PE state change. A SCSI
    /// target compares it to decide whether REPORTED LUNS DATA HAS CHANGED
    /// may be due. `None` for an unknown PE. One atomic load; no lock.
    #[must_use]
    pub fn binding_changes(&self, pe: PeId) -> Option<u64> {
        Some(
            self.table(pe)?
                .changes
                .load(std::sync::atomic::Ordering::Acquire),
        )
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

    /// How often the set of logical units `host` may see through its access
    /// rules has changed (a PE mapped to it or unmapped): a SCSI target
    /// compares it to raise REPORTED LUNS DATA HAS CHANGED (3Fh/0Eh, SPC-5
    /// 5.14 / review S6). 0 for an unknown host. One atomic load; no lock.
    #[must_use]
    pub fn host_inventory_changes(&self, host: HostId) -> u64 {
        self.hosts.inventory_changes(host)
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
    /// chunks of [`SLOT_CHUNK`]).
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
    ) {
        let cell = self
            .pes
            .get(pe.0 as usize)
            .expect("the control plane checks max_pes before adding a PE");
        let table = PeTable::new(space, queue_depth, host_queue_depth, self.max_hosts);
        let fresh = cell.set(table).is_ok();
        assert!(fresh, "PE ids are never reused");
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
        self.hosts.set(host, pes);
    }

    pub(crate) fn set_pe_state(&self, pe: PeId, state: TableState) {
        if let Some(table) = self.table(pe) {
            table.set_state(state);
        }
    }

    pub(crate) fn publish(&self, pe: PeId, sid: SecondaryId, binding: Arc<LiveBinding>) {
        let table = self.table(pe).expect("bindings are only made on known PEs");
        table.publish(sid, binding);
    }

    pub(crate) fn replace(&self, pe: PeId, sid: SecondaryId, binding: Arc<LiveBinding>) {
        if let Some(table) = self.table(pe) {
            table.replace(sid, binding);
        }
    }

    pub(crate) fn retire(&self, pe: PeId, sid: SecondaryId) {
        if let Some(table) = self.table(pe) {
            table.retire(sid);
        }
    }
}
