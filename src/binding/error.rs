//! Errors of the control plane, classified as VASA faults.

use crate::backend::BackendError;
use crate::model::{
    ArrayId, BindHandle, ConfigError, ContainerId, EventId, Generation, HostId, InitiatorName, Naa,
    PeId, PeInBandId, PeState, Protocol, VasaHandleError, VvolId,
};

/// The VASA 2.x fault a [`ControlError`] corresponds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VasaFault {
    /// `InvalidArgument`.
    InvalidArgument,
    /// `NotFound`.
    NotFound,
    /// `TooMany` (carries `maxBatchSize` for batches).
    TooMany,
    /// `ResourceInUse`.
    ResourceInUse,
    /// `OutOfResource`.
    OutOfResource,
    /// `LostEvent`.
    LostEvent,
    /// `StorageFault`.
    StorageFault,
    /// `InvalidSession`: the call's session (its UsageContext host) is not
    /// valid.
    InvalidSession,
}

/// An error of a control-plane call. Per-item bind results use it too.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// A specification breaks a model rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A limit from [`Limits`](crate::Limits) was reached.
    #[error("too many {what}: the limit is {limit}")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// A bind batch larger than the configured maximum.
    #[error("a batch of {len} vVols exceeds the maximum batch size {max_batch}")]
    BatchTooLarge {
        /// vVols in the call.
        len: usize,
        /// The maximum (VASA `TooMany.maxBatchSize`).
        max_batch: usize,
    },
    /// A bind call without vVols.
    #[error("a bind needs at least one vVol")]
    EmptyBatch,
    /// A bind call naming vVols of more than one container.
    #[error("one bind call must name vVols of one container, got {first} and {other}")]
    MixedContainers {
        /// The container of the first known vVol.
        first: ContainerId,
        /// Another container in the same call.
        other: ContainerId,
    },
    /// No active PE of the container's array with its protocol is both
    /// mapped to the host and in its PE context.
    #[error("no active {protocol:?} PE of {array} serving {container} is visible to {host}")]
    NoEligiblePe {
        /// The binding host.
        host: HostId,
        /// The vVols' container.
        container: ContainerId,
        /// Its array.
        array: ArrayId,
        /// Its protocol.
        protocol: Protocol,
    },
    /// Unknown array.
    #[error("{0} does not exist")]
    ArrayNotFound(ArrayId),
    /// Unknown container.
    #[error("{0} does not exist")]
    ContainerNotFound(ContainerId),
    /// Unknown PE.
    #[error("{0} does not exist")]
    PeNotFound(PeId),
    /// Unknown host.
    #[error("{0} does not exist")]
    HostNotFound(HostId),
    /// Unknown vVol.
    #[error("vVol {0} does not exist")]
    VvolNotFound(VvolId),
    /// The handle names no binding this host holds (wrong secondary id or
    /// generation, or already unbound).
    #[error("{host} holds no binding {handle}")]
    HandleNotFound {
        /// The unbinding host.
        host: HostId,
        /// The handle it gave.
        handle: BindHandle,
    },
    /// No binding has this handle's secondary id and generation.
    #[error("no binding {0}")]
    BindingNotFound(BindHandle),
    /// The handle's slot is bound again under a newer generation: the
    /// handle is from an earlier binding.
    #[error("{handle} is stale: the slot is at generation {current}")]
    StaleGeneration {
        /// The stale handle.
        handle: BindHandle,
        /// The slot's generation now.
        current: Generation,
    },
    /// A malformed or oversized VASA handle part.
    #[error(transparent)]
    VasaHandle(#[from] VasaHandleError),
    /// No PE of the plane has this in-band id (VASA InvalidArgument, as
    /// Huawei's VP answers an unknown PE on unbind).
    #[error("no PE has in-band id {0}")]
    UnknownPeInBandId(PeInBandId),
    /// The VASA handle's secondary id names no binding of its vVol that the
    /// host holds on the PE (VASA NotFound).
    #[error("{host} holds no binding of vVol {vvol} at {secondary_id:?} on {pe}")]
    VasaHandleNotFound {
        /// The host.
        host: HostId,
        /// The handle's vVol.
        vvol: VvolId,
        /// The PE its in-band id names.
        pe: PeId,
        /// The handle's `vvolSecondaryId`, cut to
        /// [`MAX_ECHOED_INPUT`](crate::MAX_ECHOED_INPUT) characters.
        secondary_id: String,
    },
    /// An NFS handle's path names several bindings the host holds (a
    /// rebind that landed on the same PE): the path cannot tell them apart.
    #[error("{host} holds {bindings} bindings of vVol {vvol} on {pe}; the NFS path is ambiguous")]
    AmbiguousVasaHandle {
        /// The host.
        host: HostId,
        /// The vVol.
        vvol: VvolId,
        /// The PE.
        pe: PeId,
        /// How many bindings match.
        bindings: usize,
    },
    /// A name that is already taken.
    #[error("{what} name {name:?} is already used")]
    DuplicateName {
        /// What is being named.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// An NAA already used by another PE.
    #[error("{naa} already names {existing}")]
    DuplicateNaa {
        /// The NAA.
        naa: Naa,
        /// The PE using it.
        existing: PeId,
    },
    /// An administrative LUN already used by another PE of the array.
    #[error("administrative LUN {admin_lun} of {array} is already used by {existing}")]
    DuplicateAdminLun {
        /// The array.
        array: ArrayId,
        /// The LUN.
        admin_lun: u16,
        /// The PE using it.
        existing: PeId,
    },
    /// A relative target port already belongs to another target port group
    /// on another PE of the array.
    #[error(
        "relative target port {relative_target_port} of {array} is in target port group \
         {existing_group} on {existing}, not in group {target_port_group}"
    )]
    PortGroupMismatch {
        /// The array.
        array: ArrayId,
        /// The port.
        relative_target_port: u16,
        /// The group the new PE puts it in.
        target_port_group: u16,
        /// The PE that has it already.
        existing: PeId,
        /// The group it has there.
        existing_group: u16,
    },
    /// A vVol id already in use.
    #[error("vVol {0} already exists")]
    DuplicateVvol(VvolId),
    /// The vVol is bound, so it cannot be deleted.
    #[error("vVol {vvol} has {bindings} binding(s)")]
    VvolBound {
        /// The vVol.
        vvol: VvolId,
        /// Its bindings.
        bindings: usize,
    },
    /// The host holds bindings on the PE, so the PE cannot be unmapped
    /// from it (or the host cannot be removed).
    #[error("{host} holds bindings on {pe}")]
    HostBoundOnPe {
        /// The host.
        host: HostId,
        /// The PE.
        pe: PeId,
    },
    /// The initiator name already belongs to another host (a name is one
    /// initiator node, owned by at most one host).
    #[error("initiator {name} belongs to {owner}; it cannot be added to {host}")]
    InitiatorInUse {
        /// The name.
        name: InitiatorName,
        /// The host it was to be added to.
        host: HostId,
        /// The host that has it.
        owner: HostId,
    },
    /// The host has no initiator of this name.
    #[error("{host} has no initiator {name}")]
    InitiatorNotFound {
        /// The host.
        host: HostId,
        /// The name.
        name: InitiatorName,
    },
    /// `setPEContext` for a host the provider does not know: the session's
    /// UsageContext names no host (VASA InvalidSession, one of the faults
    /// setPEContext declares).
    #[error("the session's host {0} does not exist")]
    UnknownSessionHost(HostId),
    /// `setPEContext` listing a PE the provider does not know. setPEContext
    /// declares only InvalidSession, VasaProviderBusy, NotImplemented and
    /// StorageFault (domain.md 2.2), so a list the provider cannot
    /// reconcile with its arrays is a StorageFault; nothing changed.
    #[error("{host} reports {pe}, which this provider does not have")]
    UnknownReportedPe {
        /// The reporting host.
        host: HostId,
        /// The first unknown PE of its list.
        pe: PeId,
    },
    /// The PE has bindings, so it cannot be removed.
    #[error("{pe} has {bindings} binding(s)")]
    PeBound {
        /// The PE.
        pe: PeId,
        /// Its bindings.
        bindings: u64,
    },
    /// The container holds vVols, so it cannot be removed.
    #[error("{container} holds {vvols} vVol(s)")]
    ContainerNotEmpty {
        /// The container.
        container: ContainerId,
        /// Its vVols.
        vvols: u64,
    },
    /// A PE and a container in one array with different protocols, or a PE
    /// of another array.
    #[error("{pe} cannot serve {container}")]
    PeCannotServe {
        /// The PE.
        pe: PeId,
        /// The container.
        container: ContainerId,
    },
    /// The container's quota cannot hold the request.
    #[error("{container} has {available_bytes} bytes left, {requested_bytes} requested")]
    QuotaExceeded {
        /// The container.
        container: ContainerId,
        /// Bytes requested.
        requested_bytes: u64,
        /// Bytes left in the quota.
        available_bytes: u64,
    },
    /// A vVol larger than its container allows.
    #[error("{requested_bytes} bytes exceed the largest vVol of {container}, {max_vvol_bytes}")]
    VvolTooLarge {
        /// The container.
        container: ContainerId,
        /// Bytes requested.
        requested_bytes: u64,
        /// The container's maximum vVol size.
        max_vvol_bytes: u64,
    },
    /// A resize that would shrink the vVol.
    #[error("vVol {vvol} cannot shrink from {capacity_bytes} to {requested_bytes} bytes")]
    Shrink {
        /// The vVol.
        vvol: VvolId,
        /// Its capacity.
        capacity_bytes: u64,
        /// The requested capacity.
        requested_bytes: u64,
    },
    /// Every eligible PE has handed out all its secondary ids: in
    /// [`SecondaryIdScope::PerPeAndHost`](crate::SecondaryIdScope::PerPeAndHost)
    /// scope all of the binding host's own space, or the PE keeps
    /// [`Limits::max_host_spaces_per_pe`](crate::Limits::max_host_spaces_per_pe)
    /// other hosts' spaces already.
    #[error("every eligible PE is out of secondary ids for vVol {vvol}")]
    SecondaryIdsExhausted {
        /// The vVol that could not be bound.
        vvol: VvolId,
    },
    /// A host's bind count for one binding reached `u32::MAX`.
    #[error("{host} has bound {handle} {count} times")]
    BindCountOverflow {
        /// The host.
        host: HostId,
        /// The binding.
        handle: BindHandle,
        /// Its count.
        count: u32,
    },
    /// The backend does not fit the vVol.
    #[error(
        "backend with {backend_block_size}-byte blocks cannot serve {vvol_block_size}-byte blocks"
    )]
    BackendBlockSize {
        /// The backend's logical block size.
        backend_block_size: u32,
        /// The vVol's logical block size.
        vvol_block_size: u32,
    },
    /// The backend failed while creating or resizing a vVol.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The journal of a durable control plane refused or failed the call.
    #[error(transparent)]
    Journal(#[from] super::JournalError),
    /// The caller fell behind the retained event window.
    #[error("events after {requested} were dropped; the oldest kept is {oldest}")]
    LostEvent {
        /// The id the caller asked from.
        requested: EventId,
        /// The oldest event still kept.
        oldest: EventId,
    },
    /// A PE lifecycle call that its state does not allow (drain a PE that
    /// is not active, restore one that is neither drained nor failed, fail
    /// a failed one).
    #[error("{pe} is {state:?}; cannot {action} it")]
    PeStateConflict {
        /// The PE.
        pe: PeId,
        /// Its state.
        state: PeState,
        /// The call: "drain", "fail" or "restore".
        action: &'static str,
    },
    /// The PE selection policy panicked; nothing of the batch was applied.
    #[error("the PE selection policy panicked; nothing was bound")]
    PolicyPanicked,
    /// The state kept changing while the policy chose, for every try.
    #[error("the state changed during PE selection {tries} times; nothing was bound")]
    PolicyContended {
        /// How often the batch was recomputed.
        tries: u32,
    },
    /// A persistent reservation compare-and-set found another state than
    /// the one the change was decided from.
    #[error("the reservations of {lu:?} changed meanwhile")]
    ReservationsChanged {
        /// The logical unit.
        lu: crate::model::PrLu,
    },
    /// A persistent reservation state breaks its rules.
    #[error("invalid reservations for {lu:?}: {reason}")]
    InvalidReservations {
        /// The logical unit.
        lu: crate::model::PrLu,
        /// What is wrong.
        reason: &'static str,
    },
    /// A decided record did not apply: a bug in this crate. A durable plane
    /// is poisoned by it.
    #[error("internal error: {reason}")]
    Internal {
        /// What did not apply.
        reason: &'static str,
    },
}

impl ControlError {
    /// The VASA fault this error is reported as.
    #[must_use]
    pub fn fault(&self) -> VasaFault {
        use ControlError as E;
        match self {
            E::Config(_)
            | E::EmptyBatch
            | E::MixedContainers { .. }
            | E::DuplicateName { .. }
            | E::DuplicateNaa { .. }
            | E::DuplicateAdminLun { .. }
            | E::PortGroupMismatch { .. }
            | E::DuplicateVvol(_)
            | E::PeCannotServe { .. }
            | E::VvolTooLarge { .. }
            | E::Shrink { .. }
            | E::BackendBlockSize { .. }
            | E::PeStateConflict { .. }
            | E::VasaHandle(_)
            | E::UnknownPeInBandId(_)
            | E::AmbiguousVasaHandle { .. }
            | E::InvalidReservations { .. }
            | E::InitiatorInUse { .. } => VasaFault::InvalidArgument,
            E::TooMany { .. } | E::BatchTooLarge { .. } | E::BindCountOverflow { .. } => {
                VasaFault::TooMany
            }
            E::ArrayNotFound(_)
            | E::ContainerNotFound(_)
            | E::PeNotFound(_)
            | E::HostNotFound(_)
            | E::VvolNotFound(_)
            | E::HandleNotFound { .. }
            | E::BindingNotFound(_)
            | E::StaleGeneration { .. }
            | E::VasaHandleNotFound { .. }
            | E::InitiatorNotFound { .. } => VasaFault::NotFound,
            E::UnknownSessionHost(_) => VasaFault::InvalidSession,
            E::VvolBound { .. }
            | E::HostBoundOnPe { .. }
            | E::PeBound { .. }
            | E::ContainerNotEmpty { .. }
            | E::ReservationsChanged { .. } => VasaFault::ResourceInUse,
            E::QuotaExceeded { .. } | E::SecondaryIdsExhausted { .. } => VasaFault::OutOfResource,
            E::LostEvent { .. } => VasaFault::LostEvent,
            E::NoEligiblePe { .. }
            | E::UnknownReportedPe { .. }
            | E::Backend(_)
            | E::Journal(_)
            | E::PolicyPanicked
            | E::PolicyContended { .. }
            | E::Internal { .. } => VasaFault::StorageFault,
        }
    }
}
