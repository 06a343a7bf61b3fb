//! The control plane's private state and its read-side helpers. Mutations
//! reach it only through [`State::apply`](super::apply) of a record.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use smallvec::SmallVec;

use super::ControlError;
use super::events::EventLog;
use super::id_pool::IdPool;
use crate::model::{
    ArrayId, ArraySpec, BackendKey, BindHandle, ContainerId, ContainerSpec, Generation, HostId,
    InitiatorName, LuReservations, PeId, PeSpec, PeState, PrLu, SecondaryId, SecondaryIdScope,
    VvolId, VvolKey, VvolType,
};
use crate::router::{INLINE_HOSTS, LiveBinding, VolumeCore};

/// A binding is named by its slot: the PE, the secondary id, and the host
/// whose space the id is from (`None` in [`SecondaryIdScope::PerPe`]
/// scope, where one space serves every host). A LUN names a logical unit
/// only within one I_T nexus (SAM-5 4.6.1), so in
/// [`SecondaryIdScope::PerPeAndHost`] scope `(pe, sid)` alone is ambiguous.
pub(crate) type BindingKey = (PeId, SecondaryId, Option<HostId>);

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
    /// The PE's one space ([`SecondaryIdScope::PerPe`]; stays fresh in
    /// per-host scope).
    pub(crate) ids: IdPool,
    /// Its array's scope.
    pub(crate) scope: SecondaryIdScope,
    /// Per-host spaces ([`SecondaryIdScope::PerPeAndHost`]): only hosts
    /// holding a binding here have one, at most
    /// [`Limits::max_host_spaces_per_pe`](super::Limits::max_host_spaces_per_pe).
    pub(crate) host_ids: BTreeMap<HostId, HostSpace>,
    /// The newest generation any dropped host space had issued: a space
    /// made later starts above it, so no (PE, host, id) slot ever repeats
    /// a generation and an old handle never reaches a later binding.
    pub(crate) host_floor: u32,
    pub(crate) bindings: u64,
}

/// One host's secondary-id space on a PE, and how many bindings it holds.
#[derive(Debug)]
pub(crate) struct HostSpace {
    pub(crate) ids: IdPool,
    pub(crate) bindings: u64,
}

impl PeEntry {
    /// A fresh PE of `array` with its array's `scope`.
    pub(crate) fn new(array: ArrayId, spec: PeSpec, scope: SecondaryIdScope) -> Self {
        let space = spec.secondary_ids();
        Self {
            array,
            state: PeState::Active,
            ids: IdPool::new(space.first(), space.last()),
            spec,
            scope,
            host_ids: BTreeMap::new(),
            host_floor: 0,
            bindings: 0,
        }
    }

    /// The key of the binding at `sid` of this PE as `host` names it.
    pub(crate) fn key(&self, pe: PeId, sid: SecondaryId, host: HostId) -> BindingKey {
        (pe, sid, self.scope.is_per_host().then_some(host))
    }

    /// The `n`th id (from 0) `host` would get next here, with its tag;
    /// `None` when its space is used up, or it has none and the PE already
    /// keeps `max_spaces` host spaces.
    pub(crate) fn peek_for(&self, host: HostId, n: u64, max_spaces: u32) -> Option<(u64, u32)> {
        if !self.scope.is_per_host() {
            return self.ids.peek_nth(n);
        }
        match self.host_ids.get(&host) {
            Some(s) => s.ids.peek_nth(n),
            None if self.host_ids.len() < max_spaces as usize => {
                let space = self.spec.secondary_ids();
                (n < space.len()).then(|| (space.first() + n, self.host_floor))
            }
            None => None,
        }
    }

    /// Free ids for `host` here (see [`peek_for`](Self::peek_for)).
    pub(crate) fn available_for(&self, host: HostId, max_spaces: u32) -> u64 {
        if !self.scope.is_per_host() {
            return self.ids.available();
        }
        match self.host_ids.get(&host) {
            Some(s) => s.ids.available(),
            None if self.host_ids.len() < max_spaces as usize => self.spec.secondary_ids().len(),
            None => 0,
        }
    }

    /// Takes the next id of `host`'s space (made if missing) and counts
    /// the binding.
    pub(crate) fn allocate_for(&mut self, host: HostId) {
        self.bindings += 1;
        if !self.scope.is_per_host() {
            self.ids.allocate();
            return;
        }
        let space = self.spec.secondary_ids();
        let floor = self.host_floor;
        let s = self.host_ids.entry(host).or_insert_with(|| HostSpace {
            ids: IdPool::new(space.first(), space.last()).with_fresh_tag(floor),
            bindings: 0,
        });
        s.ids.allocate();
        s.bindings += 1;
    }

    /// Gives `sid` back to `host`'s space with the generation it had; a
    /// host space left holding nothing is dropped (its newest generation
    /// raises the floor).
    pub(crate) fn free_for(&mut self, host: HostId, sid: SecondaryId, generation: u32) {
        self.bindings = self.bindings.saturating_sub(1);
        if !self.scope.is_per_host() {
            self.ids.free(sid.0, generation);
            return;
        }
        if let Some(s) = self.host_ids.get_mut(&host) {
            s.ids.free(sid.0, generation);
            s.bindings = s.bindings.saturating_sub(1);
            if s.bindings == 0 {
                self.host_floor = self.host_floor.max(s.ids.newest_tag());
                self.host_ids.remove(&host);
            }
        }
    }

    /// The pool `key`'s id came from.
    pub(crate) fn pool_of(&self, key: &BindingKey) -> Option<&IdPool> {
        match key.2 {
            None => Some(&self.ids),
            Some(h) => self.host_ids.get(&h).map(|s| &s.ids),
        }
    }
}

#[derive(Debug)]
pub(crate) struct HostState {
    pub(crate) name: String,
    /// Its initiator names (each in `State::initiators` too).
    pub(crate) initiators: BTreeSet<InitiatorName>,
    /// The PEs its access rules map to it (LUN masking).
    pub(crate) mapped: BTreeSet<PeId>,
    /// The PEs it reported (VASA `setPEContext`).
    pub(crate) pe_context: BTreeSet<PeId>,
    pub(crate) bindings: HashSet<BindingKey>,
}

#[derive(Debug)]
pub(crate) struct VvolEntry {
    pub(crate) container: ContainerId,
    pub(crate) vtype: VvolType,
    pub(crate) core: Arc<VolumeCore>,
    pub(crate) backend_key: Option<BackendKey>,
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

/// Where new vVol ids come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdSource {
    /// Random v4 UUIDs from the OS.
    Random,
    /// A SplitMix64 generator at this state (tests and examples).
    Seeded(u64),
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) arrays: BTreeMap<ArrayId, ArrayState>,
    pub(crate) containers: BTreeMap<ContainerId, ContainerState>,
    pub(crate) pes: BTreeMap<PeId, PeEntry>,
    pub(crate) hosts: BTreeMap<HostId, HostState>,
    /// Which host each initiator name belongs to.
    pub(crate) initiators: HashMap<InitiatorName, HostId>,
    pub(crate) vvols: HashMap<VvolId, VvolEntry>,
    pub(crate) bindings: HashMap<BindingKey, BindingEntry>,
    pub(crate) events: EventLog,
    pub(crate) next_array: u32,
    pub(crate) next_container: u32,
    pub(crate) next_pe: u32,
    pub(crate) next_host: u32,
    pub(crate) vvol_keys: IdPool,
    pub(crate) keys: HashMap<VvolKey, VvolId>,
    pub(crate) id_source: IdSource,
    /// [`Limits::max_host_spaces_per_pe`](super::Limits::max_host_spaces_per_pe).
    pub(crate) max_host_spaces: u32,
    /// Bumped by every applied record: a policy's view is still current
    /// when this has not moved.
    pub(crate) version: u64,
    /// Index of the last journal record applied (0: none).
    pub(crate) log_index: u64,
    /// Persistent reservation state per logical unit (`reservation.rs`).
    pub(crate) reservations: BTreeMap<PrLu, LuReservations>,
    /// Bumped whenever `reservations` changes.
    pub(crate) pr_version: u64,
}

impl State {
    pub(crate) fn new(max_vvols: u32, event_window: usize, max_host_spaces: u32) -> Self {
        Self {
            arrays: BTreeMap::new(),
            containers: BTreeMap::new(),
            pes: BTreeMap::new(),
            hosts: BTreeMap::new(),
            initiators: HashMap::new(),
            vvols: HashMap::new(),
            bindings: HashMap::new(),
            events: EventLog::new(event_window),
            next_array: 0,
            next_container: 0,
            next_pe: 0,
            next_host: 0,
            vvol_keys: IdPool::new(0, u64::from(max_vvols.max(1)) - 1),
            keys: HashMap::new(),
            id_source: IdSource::Random,
            max_host_spaces,
            version: 0,
            log_index: 0,
            reservations: BTreeMap::new(),
            pr_version: 0,
        }
    }

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

    /// A new vVol id and the seeded generator's next state (`None` for
    /// random ids). Does not change the state: the record carries both.
    pub(crate) fn mint_id(&self) -> (VvolId, Option<u64>) {
        match self.id_source {
            IdSource::Random => (VvolId(uuid::Uuid::new_v4().as_u128()), None),
            IdSource::Seeded(mut rng) => {
                let mut next = || {
                    rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let mut z = rng;
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    z ^ (z >> 31)
                };
                let hi = next();
                let lo = next();
                let bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes();
                (VvolId::from_random_bytes(bytes), Some(rng))
            }
        }
    }

    /// The live binding the router publishes for `key`.
    pub(crate) fn live(&self, key: BindingKey) -> Option<Arc<LiveBinding>> {
        let entry = self.bindings.get(&key)?;
        let volume = Arc::clone(&self.vvols.get(&entry.vvol)?.core);
        if entry.hosts.is_empty() {
            return None;
        }
        Some(Arc::new(LiveBinding::new(
            volume,
            entry.generation,
            entry.hosts.iter().map(|(h, _)| *h),
        )))
    }

    /// The key of the binding at `(pe, sid)` as `host` names it (the PE's
    /// scope decides whether the host is part of it).
    pub(crate) fn key_of(&self, pe: PeId, sid: SecondaryId, host: HostId) -> BindingKey {
        match self.pes.get(&pe) {
            Some(p) => p.key(pe, sid, host),
            None => (pe, sid, None),
        }
    }

    pub(crate) fn handle(&self, key: BindingKey) -> BindHandle {
        BindHandle {
            pe: key.0,
            secondary_id: key.1,
            generation: self
                .bindings
                .get(&key)
                .map_or(Generation(0), |b| b.generation),
        }
    }

    /// Checks every cross-reference; O(state). Restored snapshots must
    /// pass it, and tests run it after every mutation.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        let mut per_pe: HashMap<PeId, u64> = HashMap::new();
        let mut per_space: HashMap<(PeId, HostId), u64> = HashMap::new();
        let freed_of = |pool: &IdPool| -> HashSet<u64> {
            pool.parts().3.into_iter().map(|(f, _)| f).collect()
        };
        let freed: HashMap<(PeId, Option<HostId>), HashSet<u64>> = self
            .pes
            .iter()
            .flat_map(|(id, p)| {
                std::iter::once(((*id, None), freed_of(&p.ids))).chain(
                    p.host_ids
                        .iter()
                        .map(|(h, s)| ((*id, Some(*h)), freed_of(&s.ids))),
                )
            })
            .collect();
        for (key, b) in &self.bindings {
            let pe = self.pes.get(&key.0).ok_or("binding on an unknown PE")?;
            if pe.scope.is_per_host() != key.2.is_some() {
                return Err("binding key does not match its PE's scope");
            }
            if let Some(h) = key.2 {
                if b.hosts.len() != 1 || b.hosts[0].0 != h {
                    return Err("per-host binding held by another host");
                }
                *per_space.entry((key.0, h)).or_default() += 1;
            }
            let pool = pe.pool_of(key).ok_or("binding of a host without a space")?;
            let vvol = self
                .vvols
                .get(&b.vvol)
                .ok_or("binding of an unknown vVol")?;
            let container = self
                .containers
                .get(&vvol.container)
                .ok_or("vVol of an unknown container")?;
            if pe.array != container.array {
                return Err("binding PE outside the vVol's array");
            }
            if pe.spec.transport().protocol() != container.spec.protocol() {
                return Err("binding PE of another protocol");
            }
            if !pe.spec.secondary_ids().contains(key.1)
                || !pool.is_issued(key.1.0)
                || freed
                    .get(&(key.0, key.2))
                    .is_some_and(|f| f.contains(&key.1.0))
            {
                return Err("binding at a secondary id the PE has not handed out");
            }
            if b.hosts.is_empty() {
                return Err("binding without a host");
            }
            if !vvol.bindings.contains(key) {
                return Err("binding missing from its vVol");
            }
            let mut seen = SmallVec::<[HostId; 4]>::new();
            for (h, count) in &b.hosts {
                if *count == 0 || seen.contains(h) {
                    return Err("binding host counted zero or twice");
                }
                seen.push(*h);
                let host = self.hosts.get(h).ok_or("binding of an unknown host")?;
                if !host.bindings.contains(key) {
                    return Err("binding missing from its host");
                }
            }
            *per_pe.entry(key.0).or_default() += 1;
        }
        for (id, pe) in &self.pes {
            if pe.bindings != per_pe.get(id).copied().unwrap_or(0) {
                return Err("PE binding count does not add up");
            }
            if pe.host_ids.len() > self.max_host_spaces as usize {
                return Err("PE keeps more host spaces than its limit");
            }
            for (h, space) in &pe.host_ids {
                if space.bindings == 0
                    || space.bindings != per_space.get(&(*id, *h)).copied().unwrap_or(0)
                {
                    return Err("host space binding count does not add up");
                }
            }
            if pe.state == PeState::Drained && pe.bindings > 0 {
                return Err("drained PE with bindings");
            }
            if !self
                .arrays
                .get(&pe.array)
                .is_some_and(|a| a.pes.contains(id))
            {
                return Err("PE missing from its array");
            }
        }
        for (id, c) in &self.containers {
            if !self
                .arrays
                .get(&c.array)
                .is_some_and(|a| a.containers.contains(id))
            {
                return Err("container missing from its array");
            }
        }
        let freed_keys: HashSet<u64> = self
            .vvol_keys
            .parts()
            .3
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        let mut used: HashMap<ContainerId, (u64, u64)> = HashMap::new();
        for (id, v) in &self.vvols {
            let k = u64::from(v.core.key.0);
            if self.keys.get(&v.core.key) != Some(id)
                || !self.vvol_keys.is_issued(k)
                || freed_keys.contains(&k)
            {
                return Err("vVol key not held");
            }
            let e = used.entry(v.container).or_default();
            e.0 =
                e.0.checked_add(v.core.capacity_bytes())
                    .ok_or("container usage overflows")?;
            e.1 += 1;
            for key in &v.bindings {
                if self.bindings.get(key).map(|b| b.vvol) != Some(*id) {
                    return Err("vVol lists a binding of another vVol");
                }
            }
        }
        if self.keys.len() != self.vvols.len() {
            return Err("vVol keys do not match vVols");
        }
        for (id, c) in &self.containers {
            let (bytes, n) = used.get(id).copied().unwrap_or((0, 0));
            if c.used_bytes != bytes || c.vvols != n {
                return Err("container usage does not add up");
            }
            if bytes > c.spec.provisioning_limit_bytes() {
                return Err("container over its quota");
            }
        }
        for (id, h) in &self.hosts {
            for key in &h.bindings {
                if self
                    .bindings
                    .get(key)
                    .and_then(|b| b.count_of(*id))
                    .is_none()
                {
                    return Err("host lists a binding it does not hold");
                }
            }
            if h.pe_context.iter().any(|pe| !self.pes.contains_key(pe)) {
                return Err("PE context names an unknown PE");
            }
            if h.mapped.iter().any(|pe| !self.pes.contains_key(pe)) {
                return Err("access rule names an unknown PE");
            }
            for name in &h.initiators {
                if self.initiators.get(name) != Some(id) {
                    return Err("initiator name not indexed to its host");
                }
            }
        }
        if self.initiators.len()
            != self
                .hosts
                .values()
                .map(|h| h.initiators.len())
                .sum::<usize>()
        {
            return Err("initiator index does not match the hosts");
        }
        self.validate_reservations()
    }
}
