//! The glue between a plane and its journal: opening (snapshot restore and
//! record replay, both checked field by field), snapshots of the live
//! state, and applying records to a live plane (a follower tailing a log).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use smallvec::SmallVec;

use super::apply::{ApplyError, RouterOp, table_state};
use super::control_plane::{ControlPlane, MAX_PES};
use super::id_pool::IdPool;
use super::journal::{
    BindingData, DEFAULT_COMPACT_EVERY, DEFAULT_MAX_RECORD_BYTES, DurableStore, FileStore,
    HostData, Journal, JournalError, MAX_RECORD_BYTES, MAX_SNAPSHOT_CHUNKS, PeData, PoolData,
    Record, SNAPSHOT_CHUNK_BYTES, Snapshot, VvolData,
};
use super::state::{
    ArrayState, BindingEntry, ContainerState, HostSpace, HostState, IdSource, PeEntry, State,
    VvolEntry,
};
use super::{FewestBindings, Limits, PeSelectionPolicy};
use crate::backend::{BlockBackend, MemoryBackend};
use crate::model::{
    BackendKey, MAX_INITIATORS_PER_HOST, PeId, PeState, Transport, VvolId, check_capacity,
    check_name,
};
use crate::router::VolumeCore;

/// Gives back the backend of a vVol created with
/// [`ControlPlane::create_vvol_with_backend`] when a durable plane is
/// reopened, by the key the embedder chose (journaled with the create).
/// vVols created with [`ControlPlane::create_vvol`] get a fresh, empty
/// [`MemoryBackend`]: the journal keeps the control plane's state, never
/// volume data.
pub trait BackendProvider: Send + Sync + fmt::Debug {
    /// The backend of `vvol`, or `None` when it is not available (opening
    /// then fails with [`JournalError::BackendRequired`]).
    fn backend(
        &self,
        vvol: VvolId,
        key: &BackendKey,
        capacity_bytes: u64,
        logical_block_size: u32,
    ) -> Option<Arc<dyn BlockBackend>>;
}

/// Options of a durable control plane.
#[derive(Debug)]
#[non_exhaustive]
pub struct JournalOptions {
    /// Records after which the journal is compacted into a snapshot.
    pub compact_every: u64,
    /// Largest record in bytes (at most [`MAX_RECORD_BYTES`]); a mutation
    /// whose record would be larger fails with
    /// [`JournalError::RecordTooLarge`] and changes nothing.
    pub max_record_bytes: usize,
    /// Restores vVols created with embedders' backends.
    pub backend_provider: Option<Arc<dyn BackendProvider>>,
    /// The PE selection policy (any policy: replay never runs it).
    pub policy: Option<Box<dyn PeSelectionPolicy>>,
    /// Deterministic vVol ids from this seed for a journal created now (a
    /// reopened journal keeps its own id source and generator state).
    pub id_seed: Option<u64>,
    skip_sync: bool,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            compact_every: DEFAULT_COMPACT_EVERY,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            backend_provider: None,
            policy: None,
            id_seed: None,
            skip_sync: false,
        }
    }
}

impl JournalOptions {
    /// Sets [`compact_every`](Self::compact_every) (at least 1).
    #[must_use]
    pub fn with_compact_every(mut self, records: u64) -> Self {
        self.compact_every = records.max(1);
        self
    }

    /// Sets [`max_record_bytes`](Self::max_record_bytes) (clamped to
    /// [`MAX_RECORD_BYTES`]).
    #[must_use]
    pub fn with_max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes.min(MAX_RECORD_BYTES);
        self
    }

    /// Sets the [`BackendProvider`].
    #[must_use]
    pub fn with_backend_provider(mut self, provider: Arc<dyn BackendProvider>) -> Self {
        self.backend_provider = Some(provider);
        self
    }

    /// Sets the PE selection policy.
    #[must_use]
    pub fn with_policy(mut self, policy: Box<dyn PeSelectionPolicy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Sets [`id_seed`](Self::id_seed).
    #[must_use]
    pub const fn with_id_seed(mut self, seed: u64) -> Self {
        self.id_seed = Some(seed);
        self
    }

    /// TEST ONLY: acknowledge without syncing. Breaks durability on power
    /// loss; exists so tests can prove they catch a missing sync.
    #[doc(hidden)]
    #[must_use]
    pub fn test_only_skip_sync(mut self, skip: bool) -> Self {
        self.skip_sync = skip;
        self
    }
}

fn corrupt(offset: u64, reason: &'static str) -> JournalError {
    JournalError::Corrupt { offset, reason }
}

fn apply_error(index: u64, e: ApplyError) -> JournalError {
    match e {
        ApplyError::Invalid(reason) => corrupt(index, reason),
        ApplyError::Limit {
            limit,
            value,
            count,
        } => JournalError::LimitBelowState {
            limit,
            value,
            count,
        },
        ApplyError::Backend(b) => JournalError::Io(std::io::Error::other(b)),
    }
}

/// The backend of a restored vVol.
fn restore_backend(
    provider: Option<&Arc<dyn BackendProvider>>,
    vvol: VvolId,
    key: Option<&BackendKey>,
    capacity_bytes: u64,
    logical_block_size: u32,
) -> Result<Arc<dyn BlockBackend>, JournalError> {
    if let Some(key) = key {
        return provider
            .and_then(|p| p.backend(vvol, key, capacity_bytes, logical_block_size))
            .ok_or_else(|| JournalError::BackendRequired {
                vvol,
                key: key.clone(),
            });
    }
    check_capacity(capacity_bytes).map_err(|_| corrupt(0, "bad vVol capacity"))?;
    MemoryBackend::new(capacity_bytes, logical_block_size)
        .map(|b| Arc::new(b) as Arc<dyn BlockBackend>)
        .map_err(|_| corrupt(0, "bad vVol geometry"))
}

fn check_limits(limits: &Limits) -> Result<(), JournalError> {
    if limits.max_pes > MAX_PES {
        return Err(JournalError::LimitAboveCap {
            limit: "max_pes",
            value: u64::from(limits.max_pes),
            cap: u64::from(MAX_PES),
        });
    }
    Ok(())
}

impl ControlPlane {
    /// Opens (or creates) a durable control plane journaled in the file at
    /// `path`, locked for this plane alone (`<path>.lock`, `flock`). Every
    /// acknowledged mutation is synced before the call returns; reopening
    /// rebuilds the same topology, bindings and handles, reference counts,
    /// free secondary ids and generations, id generator, and the router.
    /// Events are not durable: ids continue after the reopen, and
    /// [`events_since`](Self::events_since) an id from before it answers
    /// [`ControlError::LostEvent`](super::ControlError::LostEvent). vVol data
    /// is not journaled.
    ///
    /// # Errors
    /// [`JournalError`]: [`Locked`](JournalError::Locked) when another plane
    /// holds the journal, I/O, corruption before the tail (a torn last
    /// record is dropped), an unsupported version, limits below what the
    /// journal holds, or a backend no provider gives back.
    ///
    /// # Example
    /// ```
    /// use vvol::*;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("vasa.journal");
    /// let plane = ControlPlane::open_durable(&path, Limits::default(), JournalOptions::default())?;
    /// let array = plane.add_array(ArraySpec::new("array-a", 0x00_1a_2b))?;
    /// assert!(matches!(
    ///     ControlPlane::open_durable(&path, Limits::default(), JournalOptions::default()),
    ///     Err(JournalError::Locked { .. })
    /// ));
    /// drop(plane);
    /// let plane = ControlPlane::open_durable(&path, Limits::default(), JournalOptions::default())?;
    /// assert_eq!(plane.arrays(), vec![array]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_durable(
        path: impl AsRef<Path>,
        limits: Limits,
        options: JournalOptions,
    ) -> Result<Self, JournalError> {
        let store = FileStore::open(path, options.max_record_bytes)?;
        Self::with_store(Box::new(store), limits, options)
    }

    /// As [`open_durable`](Self::open_durable) over any [`DurableStore`].
    ///
    /// # Errors
    /// As [`open_durable`](Self::open_durable), and the store's own.
    pub fn with_store(
        store: Box<dyn DurableStore>,
        limits: Limits,
        options: JournalOptions,
    ) -> Result<Self, JournalError> {
        check_limits(&limits)?;
        let info = store.load()?;
        let policy = options.policy.unwrap_or_else(|| Box::new(FewestBindings));
        let mut plane = Self::with_policy(limits, policy);
        plane.provider = options.backend_provider;
        if info.snapshot_chunks > 0 {
            plane.restore_snapshot(store.as_ref(), info.snapshot_chunks, info.snapshot_index)?;
        } else if info.snapshot_index != 0 {
            return Err(corrupt(0, "snapshot index without a snapshot"));
        }
        let max_record_bytes = options.max_record_bytes.min(MAX_RECORD_BYTES);
        plane.replay(store.as_ref(), info.snapshot_index + 1, max_record_bytes)?;
        let fresh = info.next_index == 1 && info.snapshot_index == 0;
        {
            let mut st = plane.lock();
            if st.log_index + 1 != info.next_index {
                return Err(corrupt(0, "the log does not continue its snapshot"));
            }
            let last = st.events.last_id().0;
            st.events.resume(last);
        }
        plane.journal = Some(Journal::new(
            store,
            info.next_index,
            info.snapshot_index,
            max_record_bytes,
            options.compact_every,
            options.skip_sync,
        ));
        if let (true, Some(seed)) = (fresh, options.id_seed) {
            let st = plane.lock();
            plane
                .commit(st, Record::IdSeed(Some(seed)), None)
                .map_err(|e| match e {
                    super::ControlError::Journal(j) => j,
                    _ => corrupt(0, "could not journal the id seed"),
                })?;
        }
        if plane.journal.as_ref().is_some_and(Journal::compaction_due) {
            plane.compact()?;
        }
        Ok(plane)
    }

    /// Replays records from `index` on through the store's bounded reads;
    /// a record over `max_record_bytes` is refused, as it is on append.
    fn replay(
        &self,
        store: &dyn DurableStore,
        mut index: u64,
        max_record_bytes: usize,
    ) -> Result<(), JournalError> {
        loop {
            let batch = store.read_from(index, DEFAULT_MAX_RECORD_BYTES)?;
            if batch.is_empty() {
                return Ok(());
            }
            for (i, payload) in &batch {
                if *i != index {
                    return Err(corrupt(*i, "records out of sequence"));
                }
                if payload.len() > max_record_bytes {
                    return Err(JournalError::RecordTooLarge {
                        len: payload.len(),
                        max: max_record_bytes,
                    });
                }
                self.apply_one(*i, payload)?;
                index += 1;
            }
        }
    }

    /// Applies record `index` to this plane's state and router directly.
    fn apply_one(&self, index: u64, payload: &[u8]) -> Result<(), JournalError> {
        let rec = Record::decode(payload).map_err(|e| match e {
            JournalError::Corrupt { reason, .. } => corrupt(index, reason),
            other => other,
        })?;
        let backend = match &rec {
            Record::CreateVvol {
                id,
                capacity_bytes,
                logical_block_size,
                backend_key,
                ..
            } => Some(restore_backend(
                self.provider.as_ref(),
                *id,
                backend_key.as_ref(),
                *capacity_bytes,
                *logical_block_size,
            )?),
            _ => None,
        };
        let mut st = self.lock();
        let mut ops: Vec<RouterOp> = Vec::new();
        st.apply(&rec, &self.limits, backend, &mut ops)
            .map_err(|e| apply_error(index, e))?;
        st.log_index = index;
        self.note_reservations(&st);
        for op in ops {
            op.run(&self.router);
        }
        Ok(())
    }

    /// Applies records read from another writer's log to this plane (a
    /// follower that tails the log with
    /// [`DurableStore::read_from`]): each must be the next after the last
    /// one applied ([`applied_index`](Self::applied_index)). A plane that
    /// writes its own journal refuses.
    ///
    /// # Errors
    /// [`JournalError::Conflict`] for a record out of sequence or a plane
    /// with its own journal, [`JournalError::Corrupt`] for a record that
    /// does not decode or apply (the plane then stops at the record before
    /// it), and the errors of restoring a backend.
    pub fn apply_records(&self, records: &[(u64, Vec<u8>)]) -> Result<(), JournalError> {
        for (index, payload) in records {
            let next = self.applied_index() + 1;
            if self.journal.is_some() || *index != next {
                return Err(JournalError::Conflict {
                    expected: *index,
                    found: next,
                });
            }
            self.apply_one(*index, payload)?;
        }
        Ok(())
    }

    /// Sets the provider that gives back the backends of vVols created
    /// with a [`BackendKey`](crate::BackendKey) when records from another
    /// writer's log create them ([`apply_records`](Self::apply_records) on
    /// a follower). A durable plane gets its provider from
    /// [`JournalOptions::with_backend_provider`].
    #[must_use]
    pub fn with_backend_provider(mut self, provider: Arc<dyn BackendProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Index of the last journal record this plane applied (0: none).
    #[must_use]
    pub fn applied_index(&self) -> u64 {
        self.lock().log_index
    }

    /// Whether this plane writes a journal.
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.journal.is_some()
    }

    /// Compacts the journal into one snapshot now.
    ///
    /// # Errors
    /// [`JournalError`] (none when the plane has no journal).
    pub fn compact_journal(&self) -> Result<(), JournalError> {
        self.compact()
    }

    fn restore_snapshot(
        &mut self,
        store: &dyn DurableStore,
        chunks: u32,
        index: u64,
    ) -> Result<(), JournalError> {
        if chunks > MAX_SNAPSHOT_CHUNKS {
            return Err(corrupt(0, "too many snapshot chunks"));
        }
        let mut bytes = Vec::new();
        for n in 0..chunks {
            let c = store.read_snapshot_chunk(n)?;
            if c.len() > SNAPSHOT_CHUNK_BYTES {
                return Err(corrupt(0, "snapshot chunk too large"));
            }
            bytes.extend_from_slice(&c);
        }
        let snap = Snapshot::decode(&bytes)?;
        if snap.index != index {
            return Err(corrupt(0, "snapshot index differs from the log's"));
        }
        let (state, ops) = state_from_snapshot(&snap, &self.limits, self.provider.as_ref())?;
        *self.state.get_mut() = state;
        self.note_reservations(&self.state.lock());
        for op in ops {
            op.run(&self.router);
        }
        Ok(())
    }
}

fn pool_data(p: &IdPool) -> PoolData {
    let (next_fresh, last, fresh_left, freed) = p.parts();
    PoolData {
        next_fresh,
        last,
        fresh_left,
        freed,
        fresh_tag: p.fresh_tag(),
    }
}

/// The snapshot of `st` after record `index`.
pub(super) fn snapshot_of(st: &State, index: u64) -> Snapshot {
    let mut vvols: Vec<VvolData> = st
        .vvols
        .iter()
        .map(|(id, v)| VvolData {
            id: *id,
            key: v.core.key,
            container: v.container,
            vtype: v.vtype,
            block_size: v.core.block_size,
            capacity_bytes: v.core.capacity_bytes(),
            backend_key: v.backend_key.clone(),
            bindings: v
                .bindings
                .iter()
                .filter_map(|k| {
                    let b = st.bindings.get(k)?;
                    Some(BindingData {
                        pe: k.0,
                        sid: k.1,
                        generation: b.generation,
                        hosts: b.hosts.to_vec(),
                    })
                })
                .collect(),
        })
        .collect();
    vvols.sort_unstable_by_key(|v| v.id);
    Snapshot {
        index,
        id_seed: match st.id_source {
            IdSource::Random => None,
            IdSource::Seeded(s) => Some(s),
        },
        next_array: st.next_array,
        next_container: st.next_container,
        next_pe: st.next_pe,
        next_host: st.next_host,
        last_event: st.events.last_id().0,
        vvol_keys: pool_data(&st.vvol_keys),
        arrays: st
            .arrays
            .iter()
            .map(|(id, a)| (*id, a.spec.clone()))
            .collect(),
        containers: st
            .containers
            .iter()
            .map(|(id, c)| (*id, c.array, c.spec.clone()))
            .collect(),
        pes: st
            .pes
            .iter()
            .map(|(id, p)| PeData {
                id: *id,
                array: p.array,
                spec: p.spec.clone(),
                state: p.state,
                ids: pool_data(&p.ids),
                host_floor: p.host_floor,
                host_pools: p
                    .host_ids
                    .iter()
                    .map(|(h, space)| (*h, pool_data(&space.ids)))
                    .collect(),
            })
            .collect(),
        hosts: st
            .hosts
            .iter()
            .map(|(id, h)| HostData {
                id: *id,
                name: h.name.clone(),
                initiators: h.initiators.iter().cloned().collect(),
                mapped: h.mapped.iter().copied().collect(),
                pe_context: h.pe_context.iter().copied().collect(),
            })
            .collect(),
        vvols,
        reservations: st
            .reservations
            .iter()
            .map(|(lu, r)| (*lu, r.clone()))
            .collect(),
    }
}

fn below(limit: &'static str, value: u32, count: u64) -> JournalError {
    JournalError::LimitBelowState {
        limit,
        value: u64::from(value),
        count,
    }
}

/// Rebuilds a state (and the router changes that publish it) from a
/// snapshot, checking every field and cross-reference.
fn state_from_snapshot(
    s: &Snapshot,
    limits: &Limits,
    provider: Option<&Arc<dyn BackendProvider>>,
) -> Result<(State, Vec<RouterOp>), JournalError> {
    let bad = |reason| corrupt(0, reason);
    if s.next_array > limits.max_arrays {
        return Err(below("max_arrays", limits.max_arrays, s.next_array.into()));
    }
    if s.next_container > limits.max_containers {
        return Err(below(
            "max_containers",
            limits.max_containers,
            s.next_container.into(),
        ));
    }
    if s.next_pe > limits.max_pes {
        return Err(below("max_pes", limits.max_pes, s.next_pe.into()));
    }
    if s.next_host > limits.max_hosts {
        return Err(below("max_hosts", limits.max_hosts, s.next_host.into()));
    }
    if s.vvols.len() > limits.max_vvols as usize {
        return Err(below("max_vvols", limits.max_vvols, s.vvols.len() as u64));
    }
    let mut st = State::new(
        limits.max_vvols,
        limits.event_window,
        limits.max_host_spaces_per_pe,
    );
    let mut ops = Vec::new();
    st.log_index = s.index;
    st.id_source = s.id_seed.map_or(IdSource::Random, IdSource::Seeded);
    st.next_array = s.next_array;
    st.next_container = s.next_container;
    st.next_pe = s.next_pe;
    st.next_host = s.next_host;
    st.events.resume(s.last_event);
    let k = &s.vvol_keys;
    let key_last = u64::from(limits.max_vvols.max(1)) - 1;
    let old_last = k.last;
    st.vvol_keys = IdPool::from_parts(0, old_last, k.next_fresh, k.fresh_left, k.freed.clone())
        .map_err(bad)?
        .resized(key_last);
    let longest = limits.max_name_len;
    for (id, spec) in &s.arrays {
        if id.0 >= s.next_array || st.arrays.contains_key(id) {
            return Err(bad("array id unknown or repeated"));
        }
        spec.validate(longest)
            .map_err(|_| bad("invalid array spec"))?;
        if st.arrays.values().any(|a| a.spec.name() == spec.name()) {
            return Err(bad("duplicate array name"));
        }
        st.arrays.insert(
            *id,
            ArrayState {
                spec: spec.clone(),
                containers: BTreeSet::new(),
                pes: BTreeSet::new(),
            },
        );
    }
    for (id, array, spec) in &s.containers {
        if id.0 >= s.next_container || st.containers.contains_key(id) {
            return Err(bad("container id unknown or repeated"));
        }
        spec.validate(longest)
            .map_err(|_| bad("invalid container spec"))?;
        let a = st
            .arrays
            .get_mut(array)
            .ok_or(bad("container of an unknown array"))?;
        a.containers.insert(*id);
        st.containers
            .insert(*id, ContainerState::empty(*array, spec.clone()));
    }
    let mut naas = HashSet::new();
    let mut luns = HashSet::new();
    for p in &s.pes {
        if p.id.0 >= s.next_pe || st.pes.contains_key(&p.id) {
            return Err(bad("PE id unknown or repeated"));
        }
        p.spec.validate().map_err(|_| bad("invalid PE spec"))?;
        if let Transport::Scsi { naa, admin_lun, .. } = p.spec.transport()
            && (!naas.insert(*naa) || !luns.insert((p.array, *admin_lun)))
        {
            return Err(bad("duplicate NAA or administrative LUN"));
        }
        let space = p.spec.secondary_ids();
        let ids = IdPool::from_parts(
            space.first(),
            space.last(),
            p.ids.next_fresh,
            p.ids.fresh_left,
            p.ids.freed.clone(),
        )
        .map_err(bad)?;
        if p.ids.last != space.last() {
            return Err(bad("PE id pool does not match its space"));
        }
        let a = st
            .arrays
            .get_mut(&p.array)
            .ok_or(bad("PE of an unknown array"))?;
        a.pes.insert(p.id);
        let scope = a.spec.secondary_id_scope();
        if !scope.is_per_host() && (!p.host_pools.is_empty() || p.host_floor != 0) {
            return Err(bad("host spaces on a PE of a per-PE array"));
        }
        if p.host_pools.len() > limits.max_host_spaces_per_pe as usize {
            return Err(below(
                "max_host_spaces_per_pe",
                limits.max_host_spaces_per_pe,
                p.host_pools.len() as u64,
            ));
        }
        let mut entry = PeEntry::new(p.array, p.spec.clone(), scope);
        entry.state = p.state;
        entry.ids = ids;
        entry.host_floor = p.host_floor;
        for (h, pool) in &p.host_pools {
            if pool.last != space.last() || h.0 >= s.next_host {
                return Err(bad("host id pool does not match its space or host"));
            }
            let ids = IdPool::from_parts(
                space.first(),
                space.last(),
                pool.next_fresh,
                pool.fresh_left,
                pool.freed.clone(),
            )
            .map_err(bad)?
            .with_fresh_tag(pool.fresh_tag);
            let fresh = HostSpace { ids, bindings: 0 };
            if entry.host_ids.insert(*h, fresh).is_some() {
                return Err(bad("host id pool repeated"));
            }
        }
        ops.push(RouterOp::AddPe(
            p.id,
            space,
            p.spec.queue_depth(),
            p.spec.host_queue_depth(),
            scope.is_per_host(),
        ));
        ops.push(RouterOp::SetState(p.id, table_state(p.state)));
        st.pes.insert(p.id, entry);
    }
    for h in &s.hosts {
        if h.id.0 >= s.next_host || st.hosts.contains_key(&h.id) {
            return Err(bad("host id unknown or repeated"));
        }
        check_name("host", &h.name, longest).map_err(|_| bad("invalid host name"))?;
        if st.hosts.values().any(|o| o.name == h.name) {
            return Err(bad("duplicate host name"));
        }
        if h.pe_context.len() > limits.max_pes as usize
            || h.pe_context.iter().any(|pe| !st.pes.contains_key(pe))
        {
            return Err(bad("PE context names an unknown PE"));
        }
        if h.mapped.len() > limits.max_pes as usize
            || h.mapped.iter().any(|pe| !st.pes.contains_key(pe))
        {
            return Err(bad("access rule names an unknown PE"));
        }
        if h.initiators.len() > MAX_INITIATORS_PER_HOST {
            return Err(bad("more initiators than MAX_INITIATORS_PER_HOST"));
        }
        for name in &h.initiators {
            if st.initiators.insert(name.clone(), h.id).is_some() {
                return Err(bad("initiator name of two hosts"));
            }
        }
        let mapped: BTreeSet<PeId> = h.mapped.iter().copied().collect();
        if mapped.len() != h.mapped.len() {
            // Replay refuses mapping a PE that is mapped; so does restore.
            return Err(bad("access rule repeated"));
        }
        ops.push(RouterOp::HostAdded(h.id));
        ops.push(RouterOp::HostAccess(h.id, mapped.iter().copied().collect()));
        st.hosts.insert(
            h.id,
            HostState {
                name: h.name.clone(),
                initiators: h.initiators.iter().cloned().collect(),
                mapped,
                pe_context: h.pe_context.iter().copied().collect(),
                bindings: HashSet::new(),
            },
        );
    }
    let mut keys = HashMap::new();
    for v in &s.vvols {
        if st.vvols.contains_key(&v.id) {
            return Err(bad("vVol id repeated"));
        }
        if u64::from(v.key.0) > key_last {
            return Err(below("max_vvols", limits.max_vvols, u64::from(v.key.0) + 1));
        }
        if keys.insert(v.key, v.id).is_some() {
            return Err(bad("vVol key repeated"));
        }
        check_capacity(v.capacity_bytes).map_err(|_| bad("bad vVol capacity"))?;
        if !matches!(v.block_size, 512 | 4096) {
            return Err(bad("bad vVol block size"));
        }
        let c = st
            .containers
            .get_mut(&v.container)
            .ok_or(bad("vVol of an unknown container"))?;
        c.used_bytes = c
            .used_bytes
            .checked_add(v.capacity_bytes)
            .ok_or(bad("container usage overflows"))?;
        c.vvols += 1;
        let backend = restore_backend(
            provider,
            v.id,
            v.backend_key.as_ref(),
            v.capacity_bytes,
            v.block_size,
        )?;
        if backend.logical_block_size() == 0
            || !v.block_size.is_multiple_of(backend.logical_block_size())
            || backend.capacity_bytes() < v.capacity_bytes
        {
            return Err(bad("provided backend does not fit its vVol"));
        }
        let core = Arc::new(VolumeCore::new(
            v.id,
            v.key,
            backend,
            v.block_size,
            v.capacity_bytes,
        ));
        let mut bindings = SmallVec::new();
        for b in &v.bindings {
            if b.hosts.is_empty() || b.generation.0 == 0 {
                return Err(bad("binding without a host or generation"));
            }
            let pe = st
                .pes
                .get_mut(&b.pe)
                .ok_or(bad("binding on an unknown PE"))?;
            // A per-host binding is held by its one host (checked again by
            // `validate`), which names its space.
            let key = pe.key(b.pe, b.sid, b.hosts[0].0);
            if pe.state == PeState::Drained {
                return Err(bad("binding on a drained PE"));
            }
            pe.bindings += 1;
            if let Some(h) = key.2 {
                pe.host_ids
                    .get_mut(&h)
                    .ok_or(bad("per-host binding without its host space"))?
                    .bindings += 1;
            }
            if st.bindings.contains_key(&key) {
                return Err(bad("two bindings at one slot"));
            }
            for (h, _) in &b.hosts {
                st.hosts
                    .get_mut(h)
                    .ok_or(bad("binding of an unknown host"))?
                    .bindings
                    .insert(key);
            }
            st.bindings.insert(
                key,
                BindingEntry {
                    vvol: v.id,
                    generation: b.generation,
                    hosts: b.hosts.iter().copied().collect(),
                },
            );
            bindings.push(key);
        }
        st.vvols.insert(
            v.id,
            VvolEntry {
                container: v.container,
                vtype: v.vtype,
                core,
                backend_key: v.backend_key.clone(),
                bindings,
            },
        );
    }
    st.keys = keys;
    for (lu, r) in &s.reservations {
        if st.reservations.contains_key(lu) || r.is_empty() {
            return Err(bad("reservations of one logical unit twice, or empty"));
        }
        st.check_reservations(*lu, r, limits).map_err(|e| match e {
            ApplyError::Invalid(reason) => bad(reason),
            e => apply_error(s.index, e),
        })?;
        st.put_reservations(*lu, r.clone());
    }
    st.validate().map_err(bad)?;
    let mut slots: Vec<_> = st.bindings.keys().copied().collect();
    slots.sort_unstable();
    for key in slots {
        if let Some(live) = st.live(key) {
            ops.push(RouterOp::Publish(key, live));
        }
    }
    Ok((st, ops))
}
