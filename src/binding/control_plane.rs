//! The control plane: topology, vVol lifecycle, and the entry points of
//! binding (implemented in `bind.rs`, `rebind.rs` and `queries.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;

use super::events::{EventKind, EventLog};
use super::id_pool::IdPool;
use super::journal::Op;
use super::state::{ArrayState, ContainerState, HostState, PeEntry, State, VvolEntry};
use super::{ControlError, FewestBindings, Limits, PeSelectionPolicy};
use crate::backend::{BlockBackend, MemoryBackend};
use crate::model::{
    ArrayId, ArraySpec, ContainerId, ContainerSpec, HostId, PeId, PeSpec, PeState, Transport,
    VvolId, VvolKey, VvolSpec, check_capacity, check_name,
};
use crate::router::{Router, VolumeCore};

/// The default seed of the vVol id generator, so that two control planes
/// built the same way name their vVols the same.
pub const DEFAULT_ID_SEED: u64 = 0x7676_6f6c_5f69_6473;

/// The binding control plane of one VASA provider: arrays with their
/// containers and PEs, hosts with their PE contexts, vVols, bindings and
/// events. All calls are serialized by one mutex; the data plane
/// ([`Router`]) never takes it.
///
/// # Example
/// ```
/// use vvol::*;
///
/// let plane = ControlPlane::new(Limits::default());
/// let array = plane.add_array(ArraySpec::new("array-a", 0x00_1a_2b))?;
/// let gold = plane.add_container(array, ContainerSpec::new("gold", Protocol::Scsi, 1 << 40))?;
/// let pe = plane.add_pe(array, PeSpec::scsi(Naa::from_parts(0x00_1a_2b, 1, 0).unwrap(), 255))?;
/// let host = plane.add_host("esx-01")?;
/// plane.set_pe_context(host, &[pe])?;
/// let disk = plane.create_vvol(gold, VvolSpec::new(VvolType::Data, 64 << 20))?;
///
/// let handle = plane.bind(host, &[disk], BindContext::Normal)?.remove(0)?;
/// assert_eq!(handle.pe, pe);
/// assert_eq!(plane.vasa_secondary_id(handle)?, "0000000100000000h");
/// assert_eq!(plane.router().resolve(pe, handle.secondary_id).map(|r| r.generation), Some(handle.generation));
/// plane.unbind(host, handle, UnbindContext::Normal)?;
/// assert!(plane.router().resolve(pe, handle.secondary_id).is_none());
/// # Ok::<(), vvol::ControlError>(())
/// ```
pub struct ControlPlane {
    pub(super) state: Mutex<State>,
    pub(super) router: Arc<Router>,
    pub(super) policy: Box<dyn PeSelectionPolicy>,
    pub(super) limits: Limits,
    /// The journal of a durable plane (`open_durable`); `None` otherwise.
    pub(super) journal: Option<parking_lot::Mutex<super::journal::Journal>>,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("limits", &self.limits)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// An empty control plane with the [`FewestBindings`] policy.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self::with_policy(limits, Box::new(FewestBindings))
    }

    /// An empty control plane choosing PEs with `policy`.
    #[must_use]
    pub fn with_policy(limits: Limits, policy: Box<dyn PeSelectionPolicy>) -> Self {
        Self {
            state: Mutex::new(State {
                arrays: BTreeMap::new(),
                containers: BTreeMap::new(),
                pes: BTreeMap::new(),
                hosts: BTreeMap::new(),
                vvols: HashMap::new(),
                bindings: HashMap::new(),
                events: EventLog::new(limits.event_window),
                next_array: 0,
                next_container: 0,
                next_pe: 0,
                next_host: 0,
                vvol_keys: IdPool::new(0, u64::from(limits.max_vvols.max(1)) - 1),
                keys: HashMap::new(),
                rng: DEFAULT_ID_SEED,
            }),
            router: Arc::new(Router::new(limits.max_pes)),
            policy,
            limits,
            journal: None,
        }
    }

    /// Reseeds the generator of vVol ids (for vVols created without one).
    #[must_use]
    pub fn with_id_seed(self, seed: u64) -> Self {
        let mut st = self.state.lock();
        st.rng = seed;
        // On a durable plane a failed record poisons the journal, so the
        // next mutation reports it.
        if let Ok(rec) = self.journal_begin(|| Op::Seed(seed)) {
            let _ = self.journal_commit(&st, rec);
        }
        drop(st);
        self
    }

    /// The limits this plane enforces.
    #[must_use]
    pub const fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The data plane, to share with I/O threads.
    #[must_use]
    pub fn router(&self) -> Arc<Router> {
        Arc::clone(&self.router)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Checks the internal invariants in O(state): every binding's PE is of
    /// its vVol's array and protocol and in each holding host's PE context,
    /// and the per-PE binding counts add up. Meant for tests.
    ///
    /// # Panics
    /// When an invariant is broken, which is a bug in this crate.
    pub fn check_invariants(&self) {
        self.lock().check_invariants();
    }

    /// Adds an array.
    ///
    /// # Errors
    /// [`ControlError::Config`], [`ControlError::TooMany`],
    /// [`ControlError::DuplicateName`].
    pub fn add_array(&self, spec: ArraySpec) -> Result<ArrayId, ControlError> {
        spec.validate(self.limits.max_name_len)?;
        let mut st = self.lock();
        if st.next_array >= self.limits.max_arrays {
            return Err(too_many("arrays", self.limits.max_arrays));
        }
        if st.arrays.values().any(|a| a.spec.name() == spec.name()) {
            return Err(duplicate("array", spec.name()));
        }
        let rec = self.journal_begin(|| Op::AddArray(spec.clone()))?;
        let id = ArrayId(st.next_array);
        st.next_array += 1;
        st.arrays.insert(
            id,
            ArrayState {
                spec,
                containers: BTreeSet::new(),
                pes: BTreeSet::new(),
            },
        );
        self.journal_commit(&st, rec)?;
        Ok(id)
    }

    /// Adds a container to `array`.
    ///
    /// # Errors
    /// [`ControlError::ArrayNotFound`], [`ControlError::Config`],
    /// [`ControlError::TooMany`], [`ControlError::DuplicateName`] (names are
    /// unique within an array).
    pub fn add_container(
        &self,
        array: ArrayId,
        spec: ContainerSpec,
    ) -> Result<ContainerId, ControlError> {
        spec.validate(self.limits.max_name_len)?;
        let mut st = self.lock();
        let arr = st.array(array)?;
        if arr
            .containers
            .iter()
            .any(|c| st.containers[c].spec.name() == spec.name())
        {
            return Err(duplicate("container", spec.name()));
        }
        if st.next_container >= self.limits.max_containers {
            return Err(too_many("containers", self.limits.max_containers));
        }
        let rec = self.journal_begin(|| Op::AddContainer(array, spec.clone()))?;
        let id = ContainerId(st.next_container);
        st.next_container += 1;
        st.containers.insert(id, ContainerState::empty(array, spec));
        st.arrays
            .get_mut(&array)
            .expect("checked above")
            .containers
            .insert(id);
        self.journal_commit(&st, rec)?;
        Ok(id)
    }

    /// Removes an empty container.
    ///
    /// # Errors
    /// [`ControlError::ContainerNotFound`], [`ControlError::ContainerNotEmpty`].
    pub fn remove_container(&self, id: ContainerId) -> Result<(), ControlError> {
        let mut st = self.lock();
        let c = st.container(id)?;
        if c.vvols > 0 {
            return Err(ControlError::ContainerNotEmpty {
                container: id,
                vvols: c.vvols,
            });
        }
        let array = c.array;
        let rec = self.journal_begin(|| Op::RemoveContainer(id))?;
        st.containers.remove(&id);
        if let Some(a) = st.arrays.get_mut(&array) {
            a.containers.remove(&id);
        }
        self.journal_commit(&st, rec)
    }

    /// Adds a PE to `array`. It serves every container of the array with its
    /// protocol. NAA names are unique in the plane, administrative LUNs
    /// within an array.
    ///
    /// # Errors
    /// [`ControlError::ArrayNotFound`], [`ControlError::Config`],
    /// [`ControlError::TooMany`] (PE ids are never reused, so this counts
    /// every PE ever added), [`ControlError::DuplicateNaa`],
    /// [`ControlError::DuplicateAdminLun`].
    pub fn add_pe(&self, array: ArrayId, spec: PeSpec) -> Result<PeId, ControlError> {
        spec.validate()?;
        let mut st = self.lock();
        st.array(array)?;
        if let Transport::Scsi { naa, admin_lun, .. } = spec.transport() {
            for (id, pe) in &st.pes {
                if let Transport::Scsi {
                    naa: other_naa,
                    admin_lun: other_lun,
                    ..
                } = pe.spec.transport()
                {
                    if other_naa == naa {
                        return Err(ControlError::DuplicateNaa {
                            naa: *naa,
                            existing: *id,
                        });
                    }
                    if pe.array == array && other_lun == admin_lun {
                        return Err(ControlError::DuplicateAdminLun {
                            array,
                            admin_lun: *admin_lun,
                            existing: *id,
                        });
                    }
                }
            }
        }
        if st.next_pe >= self.limits.max_pes {
            return Err(too_many("PEs", self.limits.max_pes));
        }
        let rec = self.journal_begin(|| Op::AddPe(array, spec.clone()))?;
        let id = PeId(st.next_pe);
        st.next_pe += 1;
        let space = spec.secondary_ids();
        self.router.add_pe(id, space, spec.queue_depth());
        st.pes.insert(
            id,
            PeEntry {
                array,
                spec,
                state: PeState::Active,
                ids: IdPool::new(space.first(), space.last()),
                bindings: 0,
            },
        );
        st.arrays
            .get_mut(&array)
            .expect("checked above")
            .pes
            .insert(id);
        self.journal_commit(&st, rec)?;
        Ok(id)
    }

    /// Removes a PE that has no bindings (drain it first to move them).
    ///
    /// # Errors
    /// [`ControlError::PeNotFound`], [`ControlError::PeBound`].
    pub fn remove_pe(&self, pe: PeId) -> Result<(), ControlError> {
        let mut st = self.lock();
        let bindings = st.pe(pe)?.bindings;
        if bindings > 0 {
            return Err(ControlError::PeBound { pe, bindings });
        }
        let rec = self.journal_begin(|| Op::RemovePe(pe))?;
        st.remove_pe(&self.router, pe);
        self.journal_commit(&st, rec)
    }

    /// Adds a host with an empty PE context.
    ///
    /// # Errors
    /// [`ControlError::Config`] for a bad name, [`ControlError::TooMany`],
    /// [`ControlError::DuplicateName`].
    pub fn add_host(&self, name: &str) -> Result<HostId, ControlError> {
        check_name("host", name, self.limits.max_name_len)?;
        let mut st = self.lock();
        if st.hosts.values().any(|h| h.name == name) {
            return Err(duplicate("host", name));
        }
        if st.next_host >= self.limits.max_hosts {
            return Err(too_many("hosts", self.limits.max_hosts));
        }
        let rec = self.journal_begin(|| Op::AddHost(name.to_owned()))?;
        let id = HostId(st.next_host);
        st.next_host += 1;
        st.hosts.insert(
            id,
            HostState {
                name: name.to_owned(),
                pe_context: BTreeSet::new(),
                bindings: HashSet::new(),
            },
        );
        self.journal_commit(&st, rec)?;
        Ok(id)
    }

    /// Removes a host that holds no bindings.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::HostBoundOnPe`].
    pub fn remove_host(&self, host: HostId) -> Result<(), ControlError> {
        let mut st = self.lock();
        if let Some(key) = st.host(host)?.bindings.iter().min() {
            return Err(ControlError::HostBoundOnPe { host, pe: key.0 });
        }
        let rec = self.journal_begin(|| Op::RemoveHost(host))?;
        st.hosts.remove(&host);
        self.journal_commit(&st, rec)
    }

    /// Sets the PEs `host` can see (VASA `setPEContext`), replacing the
    /// previous set. Duplicates are ignored.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::PeNotFound`],
    /// [`ControlError::TooMany`] (more PEs than `max_pes`),
    /// [`ControlError::HostBoundOnPe`] when a PE leaving the context still
    /// carries bindings of this host.
    pub fn set_pe_context(&self, host: HostId, pes: &[PeId]) -> Result<(), ControlError> {
        if pes.len() > self.limits.max_pes as usize {
            return Err(too_many("PEs in a PE context", self.limits.max_pes));
        }
        let mut st = self.lock();
        let h = st.host(host)?;
        let new: BTreeSet<PeId> = pes.iter().copied().collect();
        if let Some(pe) = new.iter().find(|pe| !st.pes.contains_key(pe)) {
            return Err(ControlError::PeNotFound(*pe));
        }
        if let Some(key) = h.bindings.iter().filter(|k| !new.contains(&k.0)).min() {
            return Err(ControlError::HostBoundOnPe { host, pe: key.0 });
        }
        let rec = self.journal_begin(|| Op::SetPeContext(host, pes.to_vec()))?;
        st.hosts.get_mut(&host).expect("checked above").pe_context = new;
        self.journal_commit(&st, rec)
    }

    /// Creates a vVol in `container` and returns its id.
    ///
    /// # Errors
    /// [`ControlError::ContainerNotFound`], [`ControlError::Config`],
    /// [`ControlError::VvolTooLarge`], [`ControlError::QuotaExceeded`]
    /// (out of resource), [`ControlError::DuplicateVvol`],
    /// [`ControlError::TooMany`], [`ControlError::BackendBlockSize`],
    /// [`ControlError::Backend`].
    pub fn create_vvol(
        &self,
        container: ContainerId,
        spec: VvolSpec,
    ) -> Result<VvolId, ControlError> {
        spec.validate()?;
        let mut st = self.lock();
        let c = st.container(container)?;
        check_fits(container, c, spec.capacity_bytes, 0)?;
        let id = match spec.id {
            Some(id) => id,
            None => VvolId::from_random_bytes(st.random_bytes()),
        };
        if st.vvols.contains_key(&id) {
            return Err(ControlError::DuplicateVvol(id));
        }
        if st.vvol_keys.is_exhausted() {
            return Err(too_many("vVols", self.limits.max_vvols));
        }
        let rec = self.journal_begin(|| Op::CreateVvol {
            container,
            vtype: spec.vtype,
            capacity_bytes: spec.capacity_bytes,
            logical_block_size: spec.logical_block_size,
            id,
            generated: spec.id.is_none(),
            explicit_backend: spec.backend.is_some(),
        })?;
        let backend = match spec.backend {
            Some(backend) => {
                let bs = backend.logical_block_size();
                if bs == 0 || !spec.logical_block_size.is_multiple_of(bs) {
                    return Err(ControlError::BackendBlockSize {
                        backend_block_size: bs,
                        vvol_block_size: spec.logical_block_size,
                    });
                }
                if backend.capacity_bytes() < spec.capacity_bytes {
                    backend.resize(spec.capacity_bytes)?;
                }
                backend
            }
            None => Arc::new(MemoryBackend::new(
                spec.capacity_bytes,
                spec.logical_block_size,
            )?) as Arc<dyn BlockBackend>,
        };
        let key = VvolKey(
            st.vvol_keys
                .allocate()
                .and_then(|k| u32::try_from(k).ok())
                .expect("checked for exhaustion above; keys are below max_vvols"),
        );
        let core = VolumeCore::new(
            id,
            key,
            backend,
            spec.logical_block_size,
            spec.capacity_bytes,
        );
        st.keys.insert(key, id);
        st.vvols.insert(
            id,
            VvolEntry {
                container,
                vtype: spec.vtype,
                core: Arc::new(core),
                bindings: SmallVec::new(),
            },
        );
        let c = st.containers.get_mut(&container).expect("checked above");
        c.used_bytes += spec.capacity_bytes;
        c.vvols += 1;
        self.journal_commit(&st, rec)?;
        Ok(id)
    }

    /// Deletes an unbound vVol and returns its capacity to the container.
    ///
    /// # Errors
    /// [`ControlError::VvolNotFound`], [`ControlError::VvolBound`]
    /// (resource in use).
    pub fn delete_vvol(&self, vvol: VvolId) -> Result<(), ControlError> {
        let mut st = self.lock();
        let v = st.vvol(vvol)?;
        if !v.bindings.is_empty() {
            return Err(ControlError::VvolBound {
                vvol,
                bindings: v.bindings.len(),
            });
        }
        let rec = self.journal_begin(|| Op::DeleteVvol(vvol))?;
        let v = st.vvols.remove(&vvol).expect("checked above");
        st.vvol_keys.free(u64::from(v.core.key.0));
        st.keys.remove(&v.core.key);
        if let Some(c) = st.containers.get_mut(&v.container) {
            c.used_bytes -= v.core.capacity_bytes();
            c.vvols -= 1;
        }
        self.journal_commit(&st, rec)
    }

    /// Grows a vVol to `new_capacity_bytes` (a multiple of 1 MiB) within its
    /// container's quota, growing the backend when it is smaller. Growing to
    /// the current size changes nothing; vVols never shrink.
    ///
    /// # Errors
    /// [`ControlError::VvolNotFound`], [`ControlError::Config`],
    /// [`ControlError::Shrink`], [`ControlError::VvolTooLarge`],
    /// [`ControlError::QuotaExceeded`], [`ControlError::Backend`].
    pub fn resize_vvol(&self, vvol: VvolId, new_capacity_bytes: u64) -> Result<(), ControlError> {
        check_capacity(new_capacity_bytes)?;
        let mut st = self.lock();
        let v = st.vvol(vvol)?;
        let old = v.core.capacity_bytes();
        if new_capacity_bytes < old {
            return Err(ControlError::Shrink {
                vvol,
                capacity_bytes: old,
                requested_bytes: new_capacity_bytes,
            });
        }
        if new_capacity_bytes == old {
            return Ok(());
        }
        let container = v.container;
        check_fits(container, st.container(container)?, new_capacity_bytes, old)?;
        let rec = self.journal_begin(|| Op::ResizeVvol(vvol, new_capacity_bytes))?;
        let core = Arc::clone(&v.core);
        if core.backend.capacity_bytes() < new_capacity_bytes {
            core.backend.resize(new_capacity_bytes)?;
        }
        core.set_capacity_bytes(new_capacity_bytes);
        st.containers
            .get_mut(&container)
            .expect("checked above")
            .used_bytes += new_capacity_bytes - old;
        st.events.push(EventKind::VvolResized {
            vvol,
            capacity_bytes: new_capacity_bytes,
        });
        self.journal_commit(&st, rec)
    }
}

/// Checks that a vVol of `requested` bytes (replacing `current` bytes of the
/// same vVol) fits the container's limits.
fn check_fits(
    id: ContainerId,
    c: &ContainerState,
    requested: u64,
    current: u64,
) -> Result<(), ControlError> {
    if requested > c.spec.max_vvol_bytes() {
        return Err(ControlError::VvolTooLarge {
            container: id,
            requested_bytes: requested,
            max_vvol_bytes: c.spec.max_vvol_bytes(),
        });
    }
    let available = c.spec.quota_bytes() - (c.used_bytes - current);
    if requested > available {
        return Err(ControlError::QuotaExceeded {
            container: id,
            requested_bytes: requested - current,
            available_bytes: available - current,
        });
    }
    Ok(())
}

fn too_many(what: &'static str, limit: u32) -> ControlError {
    ControlError::TooMany {
        what,
        limit: u64::from(limit),
    }
}

fn duplicate(what: &'static str, name: &str) -> ControlError {
    ControlError::DuplicateName {
        what,
        name: name.to_owned(),
    }
}
