//! The control plane's private state and the bookkeeping shared by its
//! operations. Everything here runs under the control plane's mutex.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use smallvec::SmallVec;

use super::ControlError;
use super::events::{EventKind, EventLog};
use super::id_pool::IdPool;
use crate::model::{
    ArrayId, ArraySpec, BindHandle, ContainerId, ContainerSpec, Generation, HostId, PeId, PeSpec,
    PeState, SecondaryId, VvolId, VvolKey, VvolType,
};
use crate::router::{INLINE_HOSTS, LiveBinding, Router, TableState, VolumeCore};

/// A binding is named by its slot.
pub(crate) type BindingKey = (PeId, SecondaryId);

#[derive(Debug)]
pub(crate) struct ArrayState {
    pub(crate) spec: ArraySpec,
    pub(crate) containers: BTreeSet<ContainerId>,
    pub(crate) pes: BTreeSet<PeId>,
}

#[derive(Debug)]
pub(crate) struct ContainerState {
    pub(crate) array: ArrayId,
    pub(crate) spec: ContainerSpec,
    pub(crate) used_bytes: u64,
    pub(crate) vvols: u64,
}

impl ContainerState {
    /// A container of `array` holding no vVols yet.
    pub(crate) fn empty(array: ArrayId, spec: ContainerSpec) -> Self {
        Self {
            array,
            spec,
            used_bytes: 0,
            vvols: 0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct PeEntry {
    pub(crate) array: ArrayId,
    pub(crate) spec: PeSpec,
    pub(crate) state: PeState,
    pub(crate) ids: IdPool,
    pub(crate) bindings: u64,
}

#[derive(Debug)]
pub(crate) struct HostState {
    pub(crate) name: String,
    pub(crate) pe_context: BTreeSet<PeId>,
    pub(crate) bindings: HashSet<BindingKey>,
}

#[derive(Debug)]
pub(crate) struct VvolEntry {
    pub(crate) container: ContainerId,
    pub(crate) vtype: VvolType,
    pub(crate) core: Arc<VolumeCore>,
    pub(crate) bindings: SmallVec<[BindingKey; 2]>,
}

#[derive(Debug)]
pub(crate) struct BindingEntry {
    pub(crate) vvol: VvolId,
    pub(crate) generation: Generation,
    pub(crate) hosts: SmallVec<[(HostId, u32); INLINE_HOSTS]>,
}

impl BindingEntry {
    pub(crate) fn count_of(&self, host: HostId) -> Option<u32> {
        self.hosts.iter().find(|(h, _)| *h == host).map(|(_, c)| *c)
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) arrays: BTreeMap<ArrayId, ArrayState>,
    pub(crate) containers: BTreeMap<ContainerId, ContainerState>,
    pub(crate) pes: BTreeMap<PeId, PeEntry>,
    pub(crate) hosts: BTreeMap<HostId, HostState>,
    pub(crate) vvols: HashMap<VvolId, VvolEntry>,
    pub(crate) bindings: HashMap<BindingKey, BindingEntry>,
    pub(crate) events: EventLog,
    pub(crate) next_array: u32,
    pub(crate) next_container: u32,
    pub(crate) next_pe: u32,
    pub(crate) next_host: u32,
    pub(crate) vvol_keys: IdPool,
    pub(crate) keys: HashMap<VvolKey, VvolId>,
    pub(crate) rng: u64,
}

impl State {
    pub(crate) fn pe(&self, pe: PeId) -> Result<&PeEntry, ControlError> {
        self.pes.get(&pe).ok_or(ControlError::PeNotFound(pe))
    }

    pub(crate) fn host(&self, host: HostId) -> Result<&HostState, ControlError> {
        self.hosts
            .get(&host)
            .ok_or(ControlError::HostNotFound(host))
    }

    pub(crate) fn vvol(&self, vvol: VvolId) -> Result<&VvolEntry, ControlError> {
        self.vvols
            .get(&vvol)
            .ok_or(ControlError::VvolNotFound(vvol))
    }

    pub(crate) fn container(&self, id: ContainerId) -> Result<&ContainerState, ControlError> {
        self.containers
            .get(&id)
            .ok_or(ControlError::ContainerNotFound(id))
    }

    pub(crate) fn array(&self, id: ArrayId) -> Result<&ArrayState, ControlError> {
        self.arrays.get(&id).ok_or(ControlError::ArrayNotFound(id))
    }

    /// The next 16 bytes of the seeded id generator (SplitMix64).
    pub(crate) fn random_bytes(&mut self) -> [u8; 16] {
        let mut next = || {
            self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let hi = next();
        let lo = next();
        ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes()
    }

    fn live(&self, key: BindingKey) -> Arc<LiveBinding> {
        let entry = &self.bindings[&key];
        let volume = Arc::clone(&self.vvols[&entry.vvol].core);
        Arc::new(LiveBinding::new(
            volume,
            entry.generation,
            entry.hosts.iter().map(|(h, _)| *h),
        ))
    }

    /// Publishes an existing binding (restoring a journal snapshot).
    pub(crate) fn republish(&self, router: &Router, key: BindingKey) {
        router.publish(key.0, key.1, self.live(key));
    }

    pub(crate) fn handle(&self, key: BindingKey) -> BindHandle {
        BindHandle {
            pe: key.0,
            secondary_id: key.1,
            generation: self.bindings[&key].generation,
        }
    }

    /// Makes a new binding of `vvol` on `pe` for `host`; `None` when the PE
    /// has no free secondary id.
    pub(crate) fn create_binding(
        &mut self,
        router: &Router,
        host: HostId,
        vvol: VvolId,
        pe: PeId,
    ) -> Option<BindingKey> {
        let entry = self.pes.get_mut(&pe)?;
        let sid = SecondaryId(entry.ids.allocate()?);
        entry.bindings += 1;
        let key = (pe, sid);
        let generation = router.next_generation(pe, sid);
        let mut hosts = SmallVec::new();
        hosts.push((host, 1));
        let fresh = self
            .bindings
            .insert(
                key,
                BindingEntry {
                    vvol,
                    generation,
                    hosts,
                },
            )
            .is_none();
        assert!(fresh, "a free secondary id has no binding");
        if let Some(v) = self.vvols.get_mut(&vvol) {
            v.bindings.push(key);
        }
        if let Some(h) = self.hosts.get_mut(&host) {
            h.bindings.insert(key);
        }
        router.publish(pe, sid, self.live(key));
        Some(key)
    }

    /// Counts one more bind of `key` by `host`, adding the host if new.
    pub(crate) fn attach(
        &mut self,
        router: &Router,
        host: HostId,
        key: BindingKey,
    ) -> Result<(), ControlError> {
        let handle = self.handle(key);
        let entry = self.bindings.get_mut(&key).expect("caller checked the key");
        if let Some((_, count)) = entry.hosts.iter_mut().find(|(h, _)| *h == host) {
            *count = count
                .checked_add(1)
                .ok_or(ControlError::BindCountOverflow {
                    host,
                    handle,
                    count: *count,
                })?;
            return Ok(());
        }
        entry.hosts.push((host, 1));
        if let Some(h) = self.hosts.get_mut(&host) {
            h.bindings.insert(key);
        }
        router.replace(key.0, key.1, self.live(key));
        Ok(())
    }

    /// Counts one unbind of `key` by `host` (all of its binds when `whole`).
    /// Drops the host at zero and the binding with its last host; removes a
    /// draining or failed PE with its last binding.
    pub(crate) fn release(&mut self, router: &Router, host: HostId, key: BindingKey, whole: bool) {
        let Some(entry) = self.bindings.get_mut(&key) else {
            return;
        };
        let Some(at) = entry.hosts.iter().position(|(h, _)| *h == host) else {
            return;
        };
        if !whole && entry.hosts[at].1 > 1 {
            entry.hosts[at].1 -= 1;
            return;
        }
        entry.hosts.remove(at);
        if let Some(h) = self.hosts.get_mut(&host) {
            h.bindings.remove(&key);
        }
        if !entry.hosts.is_empty() {
            router.replace(key.0, key.1, self.live(key));
            return;
        }
        let vvol = entry.vvol;
        self.bindings.remove(&key);
        router.retire(key.0, key.1);
        if let Some(v) = self.vvols.get_mut(&vvol) {
            v.bindings.retain(|k| *k != key);
        }
        let (pe, sid) = key;
        if let Some(entry) = self.pes.get_mut(&pe) {
            entry.ids.free(sid.0);
            entry.bindings -= 1;
            if entry.bindings == 0 && entry.state != PeState::Active {
                self.remove_pe(router, pe);
            }
        }
    }

    /// Removes a PE without bindings from its array, every PE context and
    /// the router, and records the event.
    pub(crate) fn remove_pe(&mut self, router: &Router, pe: PeId) {
        let Some(entry) = self.pes.remove(&pe) else {
            return;
        };
        debug_assert_eq!(entry.bindings, 0);
        if let Some(array) = self.arrays.get_mut(&entry.array) {
            array.pes.remove(&pe);
        }
        for host in self.hosts.values_mut() {
            host.pe_context.remove(&pe);
        }
        router.set_pe_state(pe, TableState::Removed);
        self.events.push(EventKind::PeRemoved {
            array: entry.array,
            pe,
        });
    }

    /// Checks the cross-structure invariants; O(state). Used by tests in
    /// debug builds after every mutation.
    pub(crate) fn check_invariants(&self) {
        for (key, b) in &self.bindings {
            let pe = &self.pes[&key.0];
            let vvol = &self.vvols[&b.vvol];
            let container = &self.containers[&vvol.container];
            assert_eq!(pe.array, container.array, "binding PE in the vVol's array");
            assert_eq!(pe.spec.transport().protocol(), container.spec.protocol());
            assert!(!b.hosts.is_empty(), "a binding has a host");
            assert!(vvol.bindings.contains(key));
            for (h, count) in &b.hosts {
                assert!(*count > 0);
                let host = &self.hosts[h];
                assert!(host.pe_context.contains(&key.0), "PE in host context");
                assert!(host.bindings.contains(key));
            }
        }
        for (id, pe) in &self.pes {
            let n = self.bindings.keys().filter(|k| k.0 == *id).count() as u64;
            assert_eq!(pe.bindings, n, "binding count of {id}");
        }
    }
}
