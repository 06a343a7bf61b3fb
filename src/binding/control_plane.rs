//! The control plane: topology and vVol lifecycle. Each call decides its
//! outcome under the lock and hands the record to the one mutation path
//! (`mutate.rs`); binding is in `bind.rs`, the PE lifecycle in
//! `lifecycle.rs`, queries in `queries.rs`, durability in `durable.rs`.

use std::fmt;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::journal::{Journal, Record};
use super::state::{ContainerState, IdSource, State};
use super::{BackendProvider, ControlError, FewestBindings, Limits, PeSelectionPolicy};
use crate::backend::{BlockBackend, MemoryBackend};
use crate::model::{
    ArrayId, ArraySpec, BackendKey, ContainerId, ContainerSpec, HostId, PeId, PeSpec, Transport,
    VvolId, VvolKey, VvolSpec, check_capacity, check_name,
};
use crate::router::Router;

/// The most PE ids a plane can issue ([`Limits::max_pes`] is capped by
/// it): the router keeps one table pointer per PE id.
pub const MAX_PES: u32 = 1 << 16;

/// The binding control plane of one VASA provider: arrays with their
/// containers and PEs, hosts with their PE contexts, vVols, bindings and
/// events. Calls are serialized by one mutex, never held across a journal
/// sync or a policy call; the data plane ([`Router`]) never takes it.
///
/// vVol ids are random (v4 UUIDs) unless the plane opts into deterministic
/// ids with [`with_id_seed`](Self::with_id_seed).
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
/// plane.map_pe(host, pe)?; // LUN masking: the array maps the PE to the host
/// plane.set_pe_context(host, &[pe])?; // the host reports what it discovered
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
    /// The journal of a durable plane; `None` otherwise.
    pub(super) journal: Option<Journal>,
    pub(super) provider: Option<Arc<dyn BackendProvider>>,
    /// Held by the one thread compacting at a time.
    pub(super) compacting: Mutex<()>,
    /// The state's reservation version, for lock-free readers
    /// (`reservation.rs`).
    pub(super) pr_version: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("limits", &self.limits)
            .field("policy", &self.policy)
            .field("durable", &self.journal.is_some())
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// An empty control plane with the [`FewestBindings`] policy.
    ///
    /// `limits.max_pes` above [`MAX_PES`] is clamped to it.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self::with_policy(limits, Box::new(FewestBindings))
    }

    /// An empty control plane choosing PEs with `policy`.
    #[must_use]
    pub fn with_policy(limits: Limits, policy: Box<dyn PeSelectionPolicy>) -> Self {
        let limits = limits.with_max_pes(limits.max_pes.min(MAX_PES));
        Self {
            state: Mutex::new(State::new(
                limits.max_vvols,
                limits.event_window,
                limits.max_host_spaces_per_pe,
            )),
            router: Arc::new(Router::new(limits.max_pes, limits.max_hosts)),
            policy,
            limits,
            journal: None,
            provider: None,
            compacting: Mutex::new(()),
            pr_version: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Opts into deterministic vVol ids drawn from a generator seeded with
    /// `seed` (tests and examples; two planes seeded alike mint the same
    /// ids). On a durable plane the choice is journaled, and the
    /// generator's state is part of every record that mints an id, so a
    /// reopened plane continues where it stopped: it never rewinds. Calling
    /// it on a reopened plane that already uses seeded ids changes nothing.
    ///
    /// # Errors
    /// [`ControlError::Journal`] when the choice cannot be journaled.
    pub fn with_id_seed(self, seed: u64) -> Result<Self, ControlError> {
        let st = self.lock();
        if matches!(st.id_source, IdSource::Seeded(_)) && self.journal.is_some() {
            drop(st);
            return Ok(self);
        }
        self.commit(st, Record::IdSeed(Some(seed)), None)?;
        Ok(self)
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
    /// counts and usage add up, ids are held by what uses them.
    ///
    /// # Panics
    /// When an invariant is broken, which is a bug in this crate.
    #[cfg(feature = "testing")]
    pub fn check_invariants(&self) {
        if let Err(reason) = self.lock().validate() {
            panic!("control-plane invariant broken: {reason}");
        }
    }

    /// Adds an array.
    ///
    /// # Errors
    /// [`ControlError::Config`], [`ControlError::TooMany`],
    /// [`ControlError::DuplicateName`].
    pub fn add_array(&self, spec: ArraySpec) -> Result<ArrayId, ControlError> {
        spec.validate(self.limits.max_name_len)?;
        let st = self.lock();
        if st.next_array >= self.limits.max_arrays {
            return Err(too_many("arrays", self.limits.max_arrays));
        }
        if st.arrays.values().any(|a| a.spec.name() == spec.name()) {
            return Err(duplicate("array", spec.name()));
        }
        let id = ArrayId(st.next_array);
        self.commit(st, Record::AddArray { id, spec }, None)?;
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
        let st = self.lock();
        let arr = st.array(array)?;
        if arr.containers.iter().any(|c| {
            st.containers
                .get(c)
                .is_some_and(|c| c.spec.name() == spec.name())
        }) {
            return Err(duplicate("container", spec.name()));
        }
        if st.next_container >= self.limits.max_containers {
            return Err(too_many("containers", self.limits.max_containers));
        }
        let id = ContainerId(st.next_container);
        self.commit(st, Record::AddContainer { id, array, spec }, None)?;
        Ok(id)
    }

    /// Removes an empty container.
    ///
    /// # Errors
    /// [`ControlError::ContainerNotFound`], [`ControlError::ContainerNotEmpty`].
    pub fn remove_container(&self, id: ContainerId) -> Result<(), ControlError> {
        let st = self.lock();
        let c = st.container(id)?;
        if c.vvols > 0 {
            return Err(ControlError::ContainerNotEmpty {
                container: id,
                vvols: c.vvols,
            });
        }
        self.commit(st, Record::RemoveContainer(id), None)
    }

    /// Adds a PE to `array`. It serves every container of the array with its
    /// protocol. NAA names are unique in the plane, administrative LUNs
    /// within an array.
    ///
    /// # Errors
    /// [`ControlError::ArrayNotFound`], [`ControlError::Config`],
    /// [`ControlError::TooMany`] (PE ids are never reused, so this counts
    /// every PE ever added), [`ControlError::DuplicateNaa`],
    /// [`ControlError::DuplicateAdminLun`], [`ControlError::PortGroupMismatch`]
    /// when a relative target port of the PE is in another target port
    /// group on another PE of the array (a port belongs to one group: SPC-5
    /// 5.16.2.1).
    pub fn add_pe(&self, array: ArrayId, spec: PeSpec) -> Result<PeId, ControlError> {
        spec.validate()?;
        let st = self.lock();
        st.array(array)?;
        if let Transport::Scsi {
            naa,
            admin_lun,
            paths,
        } = spec.transport()
        {
            for (id, pe) in &st.pes {
                if let Transport::Scsi {
                    naa: other_naa,
                    admin_lun: other_lun,
                    paths: other_paths,
                } = pe.spec.transport()
                {
                    if pe.array == array
                        && let Some((path, other)) = paths.iter().find_map(|p| {
                            other_paths
                                .iter()
                                .find(|o| {
                                    o.relative_target_port == p.relative_target_port
                                        && o.target_port_group != p.target_port_group
                                })
                                .map(|o| (p, o))
                        })
                    {
                        return Err(ControlError::PortGroupMismatch {
                            array,
                            relative_target_port: path.relative_target_port,
                            target_port_group: path.target_port_group,
                            existing: *id,
                            existing_group: other.target_port_group,
                        });
                    }
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
        let id = PeId(st.next_pe);
        self.commit(st, Record::AddPe { id, array, spec }, None)?;
        Ok(id)
    }

    /// Adds a host with no initiators, no PE mapped to it ([`map_pe`](Self::map_pe))
    /// and an empty PE context.
    ///
    /// # Errors
    /// [`ControlError::Config`] for a bad name, [`ControlError::TooMany`],
    /// [`ControlError::DuplicateName`].
    pub fn add_host(&self, name: &str) -> Result<HostId, ControlError> {
        check_name("host", name, self.limits.max_name_len)?;
        let st = self.lock();
        if st.hosts.values().any(|h| h.name == name) {
            return Err(duplicate("host", name));
        }
        if st.next_host >= self.limits.max_hosts {
            return Err(too_many("hosts", self.limits.max_hosts));
        }
        let id = HostId(st.next_host);
        let rec = Record::AddHost {
            id,
            name: name.to_owned(),
        };
        self.commit(st, rec, None)?;
        Ok(id)
    }

    /// Removes a host that holds no bindings.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::HostBoundOnPe`].
    pub fn remove_host(&self, host: HostId) -> Result<(), ControlError> {
        let st = self.lock();
        if let Some(key) = st.host(host)?.bindings.iter().min() {
            return Err(ControlError::HostBoundOnPe { host, pe: key.0 });
        }
        self.commit(st, Record::RemoveHost(host), None)
    }

    /// Creates a vVol in `container`, its bytes in a new sparse
    /// [`MemoryBackend`], and returns its id.
    ///
    /// # Errors
    /// [`ControlError::ContainerNotFound`], [`ControlError::Config`],
    /// [`ControlError::VvolTooLarge`], [`ControlError::QuotaExceeded`]
    /// (out of resource), [`ControlError::DuplicateVvol`],
    /// [`ControlError::TooMany`], [`ControlError::Backend`].
    pub fn create_vvol(
        &self,
        container: ContainerId,
        spec: VvolSpec,
    ) -> Result<VvolId, ControlError> {
        spec.validate()?;
        let backend = Arc::new(MemoryBackend::new(
            spec.capacity_bytes,
            spec.logical_block_size,
        )?) as Arc<dyn BlockBackend>;
        self.create(container, spec, backend, None)
    }

    /// Creates a vVol whose bytes live in the embedder's `backend`, named
    /// by `key` in the journal: a reopened durable plane asks its
    /// [`BackendProvider`] for (vVol id, `key`). The backend's capacity must
    /// be at least the vVol's (a smaller one is grown) and its block size
    /// must divide the vVol's.
    ///
    /// # Errors
    /// As [`create_vvol`](Self::create_vvol), and
    /// [`ControlError::BackendBlockSize`].
    ///
    /// # Example
    /// ```
    /// use std::sync::Arc;
    /// use vvol::*;
    ///
    /// let plane = ControlPlane::new(Limits::default());
    /// let array = plane.add_array(ArraySpec::new("array-a", 0x00_1a_2b))?;
    /// let gold = plane.add_container(array, ContainerSpec::new("gold", Protocol::Scsi, 1 << 40))?;
    /// let backend = Arc::new(MemoryBackend::new(8 << 20, 512)?);
    /// let key = BackendKey::new("mem-0")?;
    /// let disk = plane.create_vvol_with_backend(gold, VvolSpec::new(VvolType::Data, 8 << 20), backend, key.clone())?;
    /// assert_eq!(plane.vvol(disk)?.backend_key, Some(key));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_vvol_with_backend(
        &self,
        container: ContainerId,
        spec: VvolSpec,
        backend: Arc<dyn BlockBackend>,
        key: BackendKey,
    ) -> Result<VvolId, ControlError> {
        spec.validate()?;
        let bs = backend.logical_block_size();
        if bs == 0 || !spec.logical_block_size.is_multiple_of(bs) {
            return Err(ControlError::BackendBlockSize {
                backend_block_size: bs,
                vvol_block_size: spec.logical_block_size,
            });
        }
        self.create(container, spec, backend, Some(key))
    }

    fn create(
        &self,
        container: ContainerId,
        spec: VvolSpec,
        backend: Arc<dyn BlockBackend>,
        backend_key: Option<BackendKey>,
    ) -> Result<VvolId, ControlError> {
        let st = self.lock();
        let c = st.container(container)?;
        check_fits(container, c, spec.capacity_bytes, 0)?;
        let (id, id_seed) = match spec.id {
            Some(id) => (id, None),
            None => st.mint_id(),
        };
        if st.vvols.contains_key(&id) {
            return Err(ControlError::DuplicateVvol(id));
        }
        if st.vvols.len() >= self.limits.max_vvols as usize {
            return Err(too_many("vVols", self.limits.max_vvols));
        }
        let Some((key, _)) = st.vvol_keys.peek_nth(0) else {
            return Err(too_many("vVols", self.limits.max_vvols));
        };
        let key =
            VvolKey(u32::try_from(key).map_err(|_| too_many("vVols", self.limits.max_vvols))?);
        if backend.capacity_bytes() < spec.capacity_bytes {
            backend.resize(spec.capacity_bytes)?;
        }
        let rec = Record::CreateVvol {
            id,
            key,
            container,
            vtype: spec.vtype,
            capacity_bytes: spec.capacity_bytes,
            logical_block_size: spec.logical_block_size,
            backend_key,
            id_seed,
        };
        self.commit(st, rec, Some(backend))?;
        Ok(id)
    }

    /// Deletes an unbound vVol and returns its capacity to the container.
    ///
    /// # Errors
    /// [`ControlError::VvolNotFound`], [`ControlError::VvolBound`]
    /// (resource in use).
    pub fn delete_vvol(&self, vvol: VvolId) -> Result<(), ControlError> {
        let st = self.lock();
        let v = st.vvol(vvol)?;
        if !v.bindings.is_empty() {
            return Err(ControlError::VvolBound {
                vvol,
                bindings: v.bindings.len(),
            });
        }
        self.commit(st, Record::DeleteVvol(vvol), None)
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
        let st = self.lock();
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
        if v.core.backend.capacity_bytes() < new_capacity_bytes {
            v.core.backend.resize(new_capacity_bytes)?;
        }
        let rec = Record::ResizeVvol {
            id: vvol,
            capacity_bytes: new_capacity_bytes,
        };
        self.commit(st, rec, None)
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
    // The quota is logical: thin vVols may provision up to the over-commit
    // ratio times the capacity (`ContainerSpec::provisioning_limit_bytes`).
    let others = c.used_bytes.saturating_sub(current);
    let available = c.spec.provisioning_limit_bytes().saturating_sub(others);
    if requested > available {
        return Err(ControlError::QuotaExceeded {
            container: id,
            requested_bytes: requested.saturating_sub(current),
            available_bytes: available.saturating_sub(current),
        });
    }
    Ok(())
}

pub(super) fn too_many(what: &'static str, limit: u32) -> ControlError {
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
