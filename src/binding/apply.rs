//! Applying a record to the state: the only code that mutates it. Live
//! calls apply the record they decided; replay and followers apply records
//! read back. Every record is checked against the state before it changes
//! anything it could leave half-done, and its effect on the router is
//! returned as [`RouterOp`]s, published once the record is durable.

use std::sync::Arc;

use smallvec::SmallVec;

use super::Limits;
use super::events::{EventKind, RebindReason};
use super::journal::{BindItem, Record, Release};
use super::state::{
    ArrayState, BindingEntry, BindingKey, ContainerState, HostState, IdSource, PeEntry, State,
    VvolEntry,
};
use crate::backend::{BackendError, BlockBackend};
use crate::model::{
    Generation, HostId, MAX_INITIATORS_PER_HOST, PeId, PeState, SecondaryIdSpace, Transport,
    check_capacity, check_name,
};
use crate::router::{LiveBinding, Router, TableState, VolumeCore};

/// A change of the router, made once its record is durable.
#[derive(Debug)]
pub(crate) enum RouterOp {
    /// A PE with its space, shared and per-host queue depths, and whether
    /// its ids are per host.
    AddPe(PeId, SecondaryIdSpace, u32, u32, bool),
    HostAdded(HostId),
    /// The PEs now mapped to a host (all of them).
    HostAccess(HostId, Vec<PeId>),
    SetState(PeId, TableState),
    Publish(BindingKey, Arc<LiveBinding>),
    Replace(BindingKey, Arc<LiveBinding>),
    Retire(BindingKey),
}

impl RouterOp {
    pub(crate) fn run(self, router: &Router) {
        match self {
            Self::AddPe(pe, space, depth, host_depth, per_host) => {
                router.add_pe(pe, space, depth, host_depth, per_host);
            }
            Self::HostAdded(host) => router.add_host(host),
            Self::HostAccess(host, pes) => router.set_host_access(host, pes),
            Self::SetState(pe, s) => router.set_pe_state(pe, s),
            Self::Publish((pe, sid, host), b) => router.publish(pe, host, sid, b),
            Self::Replace((pe, sid, host), b) => router.replace(pe, host, sid, b),
            Self::Retire((pe, sid, host)) => router.retire(pe, host, sid),
        }
    }
}

/// Why a record does not apply.
#[derive(Debug)]
pub(crate) enum ApplyError {
    /// The record contradicts the state.
    Invalid(&'static str),
    /// The record needs more than a limit allows.
    Limit {
        limit: &'static str,
        value: u64,
        count: u64,
    },
    /// A restored backend could not grow to the vVol's size.
    Backend(BackendError),
}

fn invalid(reason: &'static str) -> ApplyError {
    ApplyError::Invalid(reason)
}

fn limit(limit: &'static str, value: u32, count: u32) -> ApplyError {
    ApplyError::Limit {
        limit,
        value: u64::from(value),
        count: u64::from(count) + 1,
    }
}

/// The router state of a PE state.
pub(crate) fn table_state(s: PeState) -> TableState {
    match s {
        PeState::Active => TableState::Active,
        PeState::Draining | PeState::Drained => TableState::Draining,
        PeState::Failed => TableState::Failed,
    }
}

/// The generation after `last`, skipping 0 on wrap-around.
pub(crate) fn next_generation(last: u32) -> Generation {
    Generation(last.checked_add(1).unwrap_or(1))
}

impl State {
    /// Applies `rec`; `backend` is the backend of a created vVol.
    pub(crate) fn apply(
        &mut self,
        rec: &Record,
        limits: &Limits,
        backend: Option<Arc<dyn BlockBackend>>,
        ops: &mut Vec<RouterOp>,
    ) -> Result<(), ApplyError> {
        match rec {
            Record::AddArray { id, spec } => {
                if id.0 != self.next_array {
                    return Err(invalid("array id out of sequence"));
                }
                if id.0 >= limits.max_arrays {
                    return Err(limit("max_arrays", limits.max_arrays, id.0));
                }
                spec.validate(limits.max_name_len)
                    .map_err(|_| invalid("invalid array spec"))?;
                if self.arrays.values().any(|a| a.spec.name() == spec.name()) {
                    return Err(invalid("duplicate array name"));
                }
                self.next_array += 1;
                self.arrays.insert(
                    *id,
                    ArrayState {
                        spec: spec.clone(),
                        containers: Default::default(),
                        pes: Default::default(),
                    },
                );
            }
            Record::AddContainer { id, array, spec } => {
                if id.0 != self.next_container {
                    return Err(invalid("container id out of sequence"));
                }
                if id.0 >= limits.max_containers {
                    return Err(limit("max_containers", limits.max_containers, id.0));
                }
                spec.validate(limits.max_name_len)
                    .map_err(|_| invalid("invalid container spec"))?;
                let a = self
                    .arrays
                    .get(array)
                    .ok_or(invalid("container of an unknown array"))?;
                if a.containers.iter().any(|c| {
                    self.containers
                        .get(c)
                        .is_some_and(|x| x.spec.name() == spec.name())
                }) {
                    return Err(invalid("duplicate container name"));
                }
                self.next_container += 1;
                self.containers
                    .insert(*id, ContainerState::empty(*array, spec.clone()));
                if let Some(a) = self.arrays.get_mut(array) {
                    a.containers.insert(*id);
                }
            }
            Record::RemoveContainer(id) => {
                let c = self
                    .containers
                    .get(id)
                    .ok_or(invalid("unknown container"))?;
                if c.vvols > 0 {
                    return Err(invalid("removing a container that holds vVols"));
                }
                let array = c.array;
                self.containers.remove(id);
                if let Some(a) = self.arrays.get_mut(&array) {
                    a.containers.remove(id);
                }
            }
            Record::AddPe { id, array, spec } => {
                if id.0 != self.next_pe {
                    return Err(invalid("PE id out of sequence"));
                }
                if id.0 >= limits.max_pes {
                    return Err(limit("max_pes", limits.max_pes, id.0));
                }
                spec.validate().map_err(|_| invalid("invalid PE spec"))?;
                let scope = self
                    .arrays
                    .get(array)
                    .ok_or(invalid("PE of an unknown array"))?
                    .spec
                    .secondary_id_scope();
                if let Transport::Scsi { naa, admin_lun, .. } = spec.transport() {
                    for pe in self.pes.values() {
                        if let Transport::Scsi {
                            naa: n,
                            admin_lun: l,
                            ..
                        } = pe.spec.transport()
                            && (n == naa || (pe.array == *array && l == admin_lun))
                        {
                            return Err(invalid("duplicate NAA or administrative LUN"));
                        }
                    }
                }
                self.next_pe += 1;
                let space = spec.secondary_ids();
                ops.push(RouterOp::AddPe(
                    *id,
                    space,
                    spec.queue_depth(),
                    spec.host_queue_depth(),
                    scope.is_per_host(),
                ));
                self.pes
                    .insert(*id, PeEntry::new(*array, spec.clone(), scope));
                if let Some(a) = self.arrays.get_mut(array) {
                    a.pes.insert(*id);
                }
                self.events.push(EventKind::PeAdded {
                    array: *array,
                    pe: *id,
                });
            }
            Record::RemovePe(id) => {
                let pe = self.pes.get(id).ok_or(invalid("unknown PE"))?;
                if pe.bindings > 0 {
                    return Err(invalid("removing a PE with bindings"));
                }
                let array = pe.array;
                self.pes.remove(id);
                self.drop_reservations(crate::model::PrLu::Alu(*id));
                if let Some(a) = self.arrays.get_mut(&array) {
                    a.pes.remove(id);
                }
                for (hid, h) in &mut self.hosts {
                    h.pe_context.remove(id);
                    if h.mapped.remove(id) {
                        ops.push(RouterOp::HostAccess(
                            *hid,
                            h.mapped.iter().copied().collect(),
                        ));
                    }
                }
                ops.push(RouterOp::SetState(*id, TableState::Removed));
                self.events.push(EventKind::PeRemoved { array, pe: *id });
            }
            Record::AddHost { id, name } => {
                if id.0 != self.next_host {
                    return Err(invalid("host id out of sequence"));
                }
                if id.0 >= limits.max_hosts {
                    return Err(limit("max_hosts", limits.max_hosts, id.0));
                }
                check_name("host", name, limits.max_name_len)
                    .map_err(|_| invalid("invalid host name"))?;
                if self.hosts.values().any(|h| h.name == *name) {
                    return Err(invalid("duplicate host name"));
                }
                self.next_host += 1;
                self.hosts.insert(
                    *id,
                    HostState {
                        name: name.clone(),
                        initiators: Default::default(),
                        mapped: Default::default(),
                        pe_context: Default::default(),
                        bindings: Default::default(),
                    },
                );
                ops.push(RouterOp::HostAdded(*id));
            }
            Record::RemoveHost(id) => {
                let h = self.hosts.get(id).ok_or(invalid("unknown host"))?;
                if !h.bindings.is_empty() {
                    return Err(invalid("removing a host with bindings"));
                }
                if let Some(h) = self.hosts.remove(id) {
                    for name in &h.initiators {
                        self.initiators.remove(name);
                    }
                    if !h.mapped.is_empty() {
                        ops.push(RouterOp::HostAccess(*id, Vec::new()));
                    }
                }
            }
            Record::SetPeContext { host, pes } => {
                if pes.len() > limits.max_pes as usize {
                    return Err(invalid("PE context larger than max_pes"));
                }
                if pes.iter().any(|p| !self.pes.contains_key(p)) {
                    return Err(invalid("PE context names an unknown PE"));
                }
                let h = self.hosts.get_mut(host).ok_or(invalid("unknown host"))?;
                // A shrinking context is recorded as reported: bindings on a
                // PE that left it stay (VASA setPEContext, review S3).
                h.pe_context = pes.iter().copied().collect();
            }
            Record::Initiator { host, name, add } => {
                let h = self
                    .hosts
                    .get(host)
                    .ok_or(invalid("initiator of an unknown host"))?;
                if *add {
                    if self.initiators.contains_key(name) {
                        return Err(invalid("initiator name already belongs to a host"));
                    }
                    if h.initiators.len() >= MAX_INITIATORS_PER_HOST {
                        return Err(invalid("more initiators than MAX_INITIATORS_PER_HOST"));
                    }
                } else if !h.initiators.contains(name) {
                    return Err(invalid("removing an initiator the host does not have"));
                }
                if let Some(h) = self.hosts.get_mut(host) {
                    if *add {
                        h.initiators.insert(name.clone());
                        self.initiators.insert(name.clone(), *host);
                    } else {
                        h.initiators.remove(name);
                        self.initiators.remove(name);
                    }
                }
            }
            Record::MapPe { host, pe, mapped } => {
                if !self.pes.contains_key(pe) {
                    return Err(invalid("access rule for an unknown PE"));
                }
                let h = self
                    .hosts
                    .get_mut(host)
                    .ok_or(invalid("access rule for an unknown host"))?;
                if *mapped {
                    if !h.mapped.insert(*pe) {
                        return Err(invalid("mapping a PE that is mapped"));
                    }
                } else {
                    if h.bindings.iter().any(|k| k.0 == *pe) {
                        return Err(invalid("unmapping a PE the host is bound on"));
                    }
                    if !h.mapped.remove(pe) {
                        return Err(invalid("unmapping a PE that is not mapped"));
                    }
                }
                ops.push(RouterOp::HostAccess(
                    *host,
                    h.mapped.iter().copied().collect(),
                ));
            }
            Record::CreateVvol {
                id,
                key,
                container,
                vtype,
                capacity_bytes,
                logical_block_size,
                backend_key,
                id_seed,
            } => {
                check_capacity(*capacity_bytes).map_err(|_| invalid("bad vVol capacity"))?;
                if !matches!(*logical_block_size, 512 | 4096) {
                    return Err(invalid("bad vVol block size"));
                }
                let c = self
                    .containers
                    .get(container)
                    .ok_or(invalid("vVol of an unknown container"))?;
                let used = c
                    .used_bytes
                    .checked_add(*capacity_bytes)
                    .ok_or(invalid("container usage overflows"))?;
                if used > c.spec.provisioning_limit_bytes()
                    || *capacity_bytes > c.spec.max_vvol_bytes()
                {
                    return Err(invalid("vVol over its container's quota"));
                }
                if self.vvols.contains_key(id) {
                    return Err(invalid("duplicate vVol id"));
                }
                if key.0 >= limits.max_vvols {
                    return Err(ApplyError::Limit {
                        limit: "max_vvols",
                        value: u64::from(limits.max_vvols),
                        count: u64::from(key.0) + 1,
                    });
                }
                if !self.vvol_keys.is_free(u64::from(key.0)) {
                    return Err(invalid("vVol key is taken"));
                }
                let backend = backend.ok_or(invalid("vVol without a backend"))?;
                if backend.logical_block_size() == 0
                    || !logical_block_size.is_multiple_of(backend.logical_block_size())
                {
                    return Err(invalid("backend block size does not divide the vVol's"));
                }
                if backend.capacity_bytes() < *capacity_bytes {
                    backend
                        .resize(*capacity_bytes)
                        .map_err(ApplyError::Backend)?;
                }
                self.vvol_keys.take(u64::from(key.0));
                if let Some(seed) = id_seed {
                    self.id_source = IdSource::Seeded(*seed);
                }
                let core =
                    VolumeCore::new(*id, *key, backend, *logical_block_size, *capacity_bytes);
                self.keys.insert(*key, *id);
                self.vvols.insert(
                    *id,
                    VvolEntry {
                        container: *container,
                        vtype: *vtype,
                        core: Arc::new(core),
                        backend_key: backend_key.clone(),
                        bindings: SmallVec::new(),
                    },
                );
                if let Some(c) = self.containers.get_mut(container) {
                    c.used_bytes = used;
                    c.vvols += 1;
                }
            }
            Record::DeleteVvol(id) => {
                let v = self.vvols.get(id).ok_or(invalid("unknown vVol"))?;
                if !v.bindings.is_empty() {
                    return Err(invalid("deleting a bound vVol"));
                }
                let v = self.vvols.remove(id).ok_or(invalid("unknown vVol"))?;
                self.drop_reservations(crate::model::PrLu::Slu(*id));
                self.vvol_keys.free(u64::from(v.core.key.0), 0);
                self.keys.remove(&v.core.key);
                if let Some(c) = self.containers.get_mut(&v.container) {
                    c.used_bytes = c.used_bytes.saturating_sub(v.core.capacity_bytes());
                    c.vvols = c.vvols.saturating_sub(1);
                }
            }
            Record::ResizeVvol { id, capacity_bytes } => {
                check_capacity(*capacity_bytes).map_err(|_| invalid("bad vVol capacity"))?;
                let v = self.vvols.get(id).ok_or(invalid("unknown vVol"))?;
                let old = v.core.capacity_bytes();
                if *capacity_bytes < old {
                    return Err(invalid("vVol shrinks"));
                }
                let c = self
                    .containers
                    .get(&v.container)
                    .ok_or(invalid("vVol of an unknown container"))?;
                let used = c
                    .used_bytes
                    .checked_sub(old)
                    .and_then(|u| u.checked_add(*capacity_bytes))
                    .ok_or(invalid("container usage overflows"))?;
                if used > c.spec.provisioning_limit_bytes()
                    || *capacity_bytes > c.spec.max_vvol_bytes()
                {
                    return Err(invalid("vVol over its container's quota"));
                }
                let core = Arc::clone(&v.core);
                let container = v.container;
                if core.backend.capacity_bytes() < *capacity_bytes {
                    core.backend
                        .resize(*capacity_bytes)
                        .map_err(ApplyError::Backend)?;
                }
                core.set_capacity_bytes(*capacity_bytes);
                if let Some(c) = self.containers.get_mut(&container) {
                    c.used_bytes = used;
                }
                self.events.push(EventKind::VvolResized {
                    vvol: *id,
                    capacity_bytes: *capacity_bytes,
                });
            }
            Record::Bind { host, items } => {
                if !self.hosts.contains_key(host) {
                    return Err(invalid("bind of an unknown host"));
                }
                if items.len() > limits.max_bind_batch {
                    return Err(invalid("bind batch larger than max_bind_batch"));
                }
                for item in items {
                    self.apply_bind_item(*host, item, ops)?;
                }
            }
            Record::Unbind(releases) => {
                for r in releases {
                    self.apply_release(*r, ops)?;
                }
            }
            Record::SetPeState { pe, state } => {
                let entry = self.pes.get(pe).ok_or(invalid("unknown PE"))?;
                let from = entry.state;
                let array = entry.array;
                let bound = entry.bindings;
                let allowed = match (from, *state) {
                    (PeState::Active, PeState::Draining) => bound > 0,
                    (PeState::Active, PeState::Drained) => bound == 0,
                    (PeState::Active | PeState::Draining | PeState::Drained, PeState::Failed) => {
                        true
                    }
                    (PeState::Drained | PeState::Failed, PeState::Active) => true,
                    _ => false,
                };
                if !allowed {
                    return Err(invalid("PE state change not allowed"));
                }
                if matches!(state, PeState::Draining | PeState::Failed) && bound > 0 {
                    let mut vvols: Vec<_> = self
                        .bindings
                        .iter()
                        .filter(|(k, _)| k.0 == *pe)
                        .map(|(_, b)| b.vvol)
                        .collect();
                    vvols.sort_unstable();
                    vvols.dedup();
                    let reason = if *state == PeState::Failed {
                        RebindReason::Failure
                    } else {
                        RebindReason::Drain
                    };
                    self.events.push(EventKind::Rebind {
                        array,
                        pe: *pe,
                        reason,
                        vvols,
                    });
                }
                self.events.push(match state {
                    PeState::Active => EventKind::PeRestored { array, pe: *pe },
                    PeState::Draining => EventKind::PeDraining { array, pe: *pe },
                    PeState::Drained => EventKind::PeDrained { array, pe: *pe },
                    PeState::Failed => EventKind::PeFailed { array, pe: *pe },
                });
                if let Some(e) = self.pes.get_mut(pe) {
                    e.state = *state;
                }
                ops.push(RouterOp::SetState(*pe, table_state(*state)));
            }
            Record::IdSeed(seed) => {
                self.id_source = seed.map_or(IdSource::Random, IdSource::Seeded);
            }
            Record::SetReservations { lu, state } => {
                self.check_reservations(*lu, state, limits)?;
                self.put_reservations(*lu, state.clone());
            }
            Record::PowerOnReservations(array) => {
                if !self.arrays.contains_key(array) {
                    return Err(invalid("power on of an unknown array"));
                }
                self.power_on_reservations(*array);
            }
        }
        self.version += 1;
        Ok(())
    }

    fn apply_bind_item(
        &mut self,
        host: HostId,
        item: &BindItem,
        ops: &mut Vec<RouterOp>,
    ) -> Result<(), ApplyError> {
        match item {
            BindItem::Fault { .. } => Ok(()),
            BindItem::New {
                vvol,
                pe,
                sid,
                generation,
            } => {
                let v = self
                    .vvols
                    .get(vvol)
                    .ok_or(invalid("bind of an unknown vVol"))?;
                let c = self
                    .containers
                    .get(&v.container)
                    .ok_or(invalid("vVol of an unknown container"))?;
                let p = self.pes.get(pe).ok_or(invalid("bind on an unknown PE"))?;
                if p.state != PeState::Active {
                    return Err(invalid("new binding on a PE that is not active"));
                }
                if p.array != c.array || p.spec.transport().protocol() != c.spec.protocol() {
                    return Err(invalid("new binding on a PE that cannot serve the vVol"));
                }
                if !self
                    .hosts
                    .get(&host)
                    .is_some_and(|h| h.pe_context.contains(pe))
                {
                    return Err(invalid("new binding on a PE outside the host's context"));
                }
                if p.scope.is_per_host()
                    && !p.host_ids.contains_key(&host)
                    && p.host_ids.len() >= self.max_host_spaces as usize
                {
                    return Err(ApplyError::Limit {
                        limit: "max_host_spaces_per_pe",
                        value: u64::from(self.max_host_spaces),
                        count: p.host_ids.len() as u64 + 1,
                    });
                }
                // The outcome as decided: the id and generation are the
                // next of the (PE, host) space the PE's scope names.
                let (next, last) = p
                    .peek_for(host, 0, u32::MAX)
                    .ok_or(invalid("PE out of secondary ids"))?;
                if next != sid.0 || *generation != next_generation(last) {
                    return Err(invalid(
                        "new binding is not at the PE's next id and generation",
                    ));
                }
                let key: BindingKey = p.key(*pe, *sid, host);
                if self.bindings.contains_key(&key) {
                    return Err(invalid("new binding over a live one"));
                }
                if let Some(p) = self.pes.get_mut(pe) {
                    p.allocate_for(host);
                }
                let mut hosts = SmallVec::new();
                hosts.push((host, 1));
                self.bindings.insert(
                    key,
                    BindingEntry {
                        vvol: *vvol,
                        generation: *generation,
                        hosts,
                    },
                );
                if let Some(v) = self.vvols.get_mut(vvol) {
                    v.bindings.push(key);
                }
                if let Some(h) = self.hosts.get_mut(&host) {
                    h.bindings.insert(key);
                }
                let live = self.live(key).ok_or(invalid("binding without a host"))?;
                ops.push(RouterOp::Publish(key, live));
                Ok(())
            }
            BindItem::Attach { pe, sid } => {
                let key: BindingKey = self.key_of(*pe, *sid, host);
                if self.pes.get(pe).map(|p| p.state) != Some(PeState::Active) {
                    return Err(invalid("attach on a PE that is not active"));
                }
                if !self
                    .hosts
                    .get(&host)
                    .is_some_and(|h| h.pe_context.contains(pe))
                {
                    return Err(invalid("attach on a PE outside the host's context"));
                }
                let b = self
                    .bindings
                    .get_mut(&key)
                    .ok_or(invalid("attach to no binding"))?;
                if let Some((_, count)) = b.hosts.iter_mut().find(|(h, _)| *h == host) {
                    *count = count
                        .checked_add(1)
                        .ok_or(invalid("bind count overflows"))?;
                    return Ok(());
                }
                b.hosts.push((host, 1));
                if let Some(h) = self.hosts.get_mut(&host) {
                    h.bindings.insert(key);
                }
                let live = self.live(key).ok_or(invalid("binding without a host"))?;
                ops.push(RouterOp::Replace(key, live));
                Ok(())
            }
        }
    }

    fn apply_release(&mut self, r: Release, ops: &mut Vec<RouterOp>) -> Result<(), ApplyError> {
        let key: BindingKey = self.key_of(r.pe, r.sid, r.host);
        let b = self
            .bindings
            .get_mut(&key)
            .ok_or(invalid("release of no binding"))?;
        let at = b
            .hosts
            .iter()
            .position(|(h, _)| *h == r.host)
            .ok_or(invalid("release by a host that does not hold the binding"))?;
        if !r.whole && b.hosts[at].1 > 1 {
            b.hosts[at].1 -= 1;
            return Ok(());
        }
        b.hosts.remove(at);
        let empty = b.hosts.is_empty();
        let vvol = b.vvol;
        let generation = b.generation;
        if let Some(h) = self.hosts.get_mut(&r.host) {
            h.bindings.remove(&key);
        }
        if !empty {
            let live = self.live(key).ok_or(invalid("binding without a host"))?;
            ops.push(RouterOp::Replace(key, live));
            return Ok(());
        }
        self.bindings.remove(&key);
        ops.push(RouterOp::Retire(key));
        if let Some(v) = self.vvols.get_mut(&vvol) {
            v.bindings.retain(|k| *k != key);
        }
        if let Some(p) = self.pes.get_mut(&r.pe) {
            p.free_for(r.host, r.sid, generation.0);
            if p.bindings == 0 && p.state == PeState::Draining {
                p.state = PeState::Drained;
                let array = p.array;
                ops.push(RouterOp::SetState(r.pe, table_state(PeState::Drained)));
                self.events.push(EventKind::PeDrained { array, pe: r.pe });
            }
        }
        Ok(())
    }
}
