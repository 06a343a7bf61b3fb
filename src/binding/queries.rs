//! Read-only queries of the control plane.

use std::sync::Arc;

use super::ControlError;
use super::control_plane::ControlPlane;
use super::events::Event;
use super::state::{BindingKey, State};
use crate::backend::BlockBackend;
use crate::model::{
    Array, ArrayId, BindHandle, BindingInfo, Container, ContainerId, EventId, Host, HostId, PeId,
    ProtocolEndpoint, VirtualVolume, VvolId, VvolKey,
};
use crate::router::{PeStats, VvolStats};

/// Per-PE and per-vVol I/O counters at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Every PE, in id order.
    pub pes: Vec<PeStats>,
    /// Every vVol, in id order.
    pub vvols: Vec<VvolStats>,
}

fn info(st: &State, key: BindingKey) -> BindingInfo {
    let b = &st.bindings[&key];
    BindingInfo {
        handle: st.handle(key),
        vvol: b.vvol,
        hosts: b.hosts.to_vec(),
    }
}

fn sorted(mut v: Vec<BindingInfo>) -> Vec<BindingInfo> {
    v.sort_by_key(|b| b.handle);
    v
}

impl ControlPlane {
    /// A snapshot of an array.
    ///
    /// # Errors
    /// [`ControlError::ArrayNotFound`].
    pub fn array(&self, id: ArrayId) -> Result<Array, ControlError> {
        let st = self.lock();
        let a = st.array(id)?;
        Ok(Array {
            id,
            name: a.spec.name().to_owned(),
            ieee_company_id: a.spec.ieee_company_id(),
            secondary_id_scope: a.spec.secondary_id_scope(),
            containers: a.containers.iter().copied().collect(),
            pes: a.pes.iter().copied().collect(),
        })
    }

    /// Every array id, in order.
    #[must_use]
    pub fn arrays(&self) -> Vec<ArrayId> {
        self.lock().arrays.keys().copied().collect()
    }

    /// The PEs of an array (VASA `queryProtocolEndpointForArray`).
    ///
    /// # Errors
    /// [`ControlError::ArrayNotFound`].
    pub fn pes_for_array(&self, id: ArrayId) -> Result<Vec<PeId>, ControlError> {
        Ok(self.lock().array(id)?.pes.iter().copied().collect())
    }

    /// A snapshot of a container, with both its provisioned bytes (the sum
    /// of its vVols' capacities, which the quota admits against) and its
    /// allocated bytes (what the backends hold). O(vVols of the container).
    ///
    /// # Errors
    /// [`ControlError::ContainerNotFound`].
    pub fn container(&self, id: ContainerId) -> Result<Container, ControlError> {
        let st = self.lock();
        let c = st.container(id)?;
        let snapshot = Container {
            id,
            array: c.array,
            name: c.spec.name().to_owned(),
            protocol: c.spec.protocol(),
            quota_bytes: c.spec.quota_bytes(),
            max_vvol_bytes: c.spec.max_vvol_bytes(),
            used_bytes: c.used_bytes,
            provisioned_bytes: c.used_bytes,
            allocated_bytes: 0,
            overcommit_percent: c.spec.overcommit_percent(),
            provisioning_limit_bytes: c.spec.provisioning_limit_bytes(),
            vvols: c.vvols,
        };
        let cores: Vec<Arc<crate::router::VolumeCore>> = st
            .vvols
            .values()
            .filter(|v| v.container == id)
            .map(|v| Arc::clone(&v.core))
            .collect();
        // Backends are asked without the plane's lock (no lock is held
        // across a backend call).
        drop(st);
        let allocated_bytes = cores
            .iter()
            .map(|core| {
                core.backend
                    .allocated_bytes()
                    .map_or(core.capacity_bytes(), |a| a.min(core.capacity_bytes()))
            })
            .fold(0u64, u64::saturating_add);
        Ok(Container {
            allocated_bytes,
            ..snapshot
        })
    }

    /// A snapshot of a PE.
    ///
    /// # Errors
    /// [`ControlError::PeNotFound`].
    pub fn pe(&self, id: PeId) -> Result<ProtocolEndpoint, ControlError> {
        let st = self.lock();
        let e = st.pe(id)?;
        Ok(ProtocolEndpoint {
            id,
            array: e.array,
            transport: e.spec.transport().clone(),
            queue_depth: e.spec.queue_depth(),
            host_queue_depth: e.spec.host_queue_depth(),
            secondary_ids: e.spec.secondary_ids(),
            state: e.state,
            bindings: e.bindings,
        })
    }

    /// A snapshot of a host.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`].
    pub fn host(&self, id: HostId) -> Result<Host, ControlError> {
        let st = self.lock();
        let h = st.host(id)?;
        Ok(Host {
            id,
            name: h.name.clone(),
            initiators: h.initiators.iter().cloned().collect(),
            mapped_pes: h.mapped.iter().copied().collect(),
            pe_context: h.pe_context.iter().copied().collect(),
            bindings: h.bindings.len(),
        })
    }

    /// A snapshot of a vVol.
    ///
    /// # Errors
    /// [`ControlError::VvolNotFound`].
    pub fn vvol(&self, id: VvolId) -> Result<VirtualVolume, ControlError> {
        let st = self.lock();
        let v = st.vvol(id)?;
        Ok(VirtualVolume {
            id,
            key: v.core.key,
            container: v.container,
            vtype: v.vtype,
            capacity_bytes: v.core.capacity_bytes(),
            logical_block_size: v.core.block_size,
            backend_key: v.backend_key.clone(),
            bindings: v.bindings.len(),
        })
    }

    /// The backend that holds a vVol's bytes.
    ///
    /// # Errors
    /// [`ControlError::VvolNotFound`].
    pub fn backend(&self, id: VvolId) -> Result<Arc<dyn BlockBackend>, ControlError> {
        Ok(Arc::clone(&self.lock().vvol(id)?.core.backend))
    }

    /// The vVol with a router key, as [`Router::resolve`](crate::Router::resolve) reports it.
    #[must_use]
    pub fn vvol_by_key(&self, key: VvolKey) -> Option<VvolId> {
        self.lock().keys.get(&key).copied()
    }

    /// Every vVol of a container, in id order.
    ///
    /// # Errors
    /// [`ControlError::ContainerNotFound`].
    pub fn vvols_in(&self, container: ContainerId) -> Result<Vec<VvolId>, ControlError> {
        let st = self.lock();
        st.container(container)?;
        let mut ids: Vec<VvolId> = st
            .vvols
            .iter()
            .filter(|(_, v)| v.container == container)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The bindings `host` holds, in handle order.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`].
    pub fn bindings_for_host(&self, host: HostId) -> Result<Vec<BindingInfo>, ControlError> {
        let st = self.lock();
        let keys = &st.host(host)?.bindings;
        Ok(sorted(keys.iter().map(|k| info(&st, *k)).collect()))
    }

    /// The bindings made through `pe`, in handle order.
    ///
    /// # Errors
    /// [`ControlError::PeNotFound`].
    pub fn bindings_for_pe(&self, pe: PeId) -> Result<Vec<BindingInfo>, ControlError> {
        let st = self.lock();
        st.pe(pe)?;
        Ok(sorted(
            st.bindings
                .keys()
                .filter(|k| k.0 == pe)
                .map(|k| info(&st, *k))
                .collect(),
        ))
    }

    /// The bindings of `vvol` (its handles), in handle order.
    ///
    /// # Errors
    /// [`ControlError::VvolNotFound`].
    pub fn bindings_for_vvol(&self, vvol: VvolId) -> Result<Vec<BindingInfo>, ControlError> {
        let st = self.lock();
        let keys = &st.vvol(vvol)?.bindings;
        Ok(sorted(keys.iter().map(|k| info(&st, *k)).collect()))
    }

    /// The VASA `vvolSecondaryId` text of a live handle: on SCSI the 8-byte
    /// subsidiary LUN as 16 uppercase hex digits and `h` (bytes 0-1 left to
    /// the PE), on NFS `<container name>/rfc4122.<uuid>`, with a trailing
    /// `/` for a Config vVol (a directory).
    ///
    /// # Errors
    /// [`ControlError::PeNotFound`], [`ControlError::BindingNotFound`] when no
    /// binding has this secondary id and generation.
    pub fn vasa_secondary_id(&self, handle: BindHandle) -> Result<String, ControlError> {
        let st = self.lock();
        let pe = st.pe(handle.pe)?;
        let (pe_id, sid) = (handle.pe, handle.secondary_id);
        let live = |key: &BindingKey| {
            st.bindings
                .get(key)
                .filter(|b| b.generation == handle.generation)
                .map(|b| (*key, b))
        };
        // Per-(PE, host) scope: the handle names a binding only with its
        // host; look through the PE's host spaces (at most
        // `max_host_spaces_per_pe`) and answer only when the text cannot
        // depend on which host's binding it is: on SCSI it is the LUN of
        // the id alone; on NFS it must be exactly one binding.
        let found = if pe.scope.is_per_host() {
            let mut hits = pe
                .host_ids
                .keys()
                .filter_map(|h| live(&(pe_id, sid, Some(*h))));
            let first = hits.next();
            match pe.spec.transport() {
                crate::model::Transport::Scsi { .. } => first,
                crate::model::Transport::Nfs { .. } => first.filter(|_| hits.next().is_none()),
            }
        } else {
            live(&(pe_id, sid, None))
        };
        let (key, b) = found.ok_or(ControlError::BindingNotFound(handle))?;
        super::vasa::secondary_id_text(&st, key, b).ok_or(ControlError::Internal {
            reason: "a bound secondary id outside its PE's addressing",
        })
    }

    /// Events after `last` (VASA `getEvents`); pass `EventId(0)` for all.
    ///
    /// # Errors
    /// [`ControlError::LostEvent`] when events after `last` were already
    /// dropped from the window.
    pub fn events_since(&self, last: EventId) -> Result<Vec<Event>, ControlError> {
        self.lock().events.since(last)
    }

    /// The id of the newest event (`EventId(0)` before the first).
    #[must_use]
    pub fn last_event_id(&self) -> EventId {
        self.lock().events.last_id()
    }

    /// I/O counters of every PE and vVol.
    #[must_use]
    pub fn stats(&self) -> StatsSnapshot {
        let st = self.lock();
        let pes = st
            .pes
            .keys()
            .filter_map(|pe| self.router.pe_stats(*pe))
            .collect();
        let mut vvols: Vec<VvolStats> = st
            .vvols
            .iter()
            .map(|(id, v)| VvolStats {
                vvol: *id,
                io: v.core.counters.snapshot(),
            })
            .collect();
        vvols.sort_by_key(|s| s.vvol);
        StatsSnapshot { pes, vvols }
    }
}
