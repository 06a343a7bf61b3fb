//! Errors of routed I/O.

use crate::backend::BackendError;
use crate::model::{Generation, HostId, PeId, SecondaryId, VvolId};

/// Why a routed I/O failed. Each variant maps to one transport status
/// (for SCSI: LOGICAL UNIT NOT SUPPORTED, LBA OUT OF RANGE, INVALID FIELD IN
/// CDB, TASK SET FULL or BUSY, or a medium or hardware error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The PE does not exist (or was removed).
    #[error("{pe} does not exist")]
    UnknownPe {
        /// The PE named by the handle.
        pe: PeId,
    },
    /// The PE has failed; its handles fail until they are rebound.
    #[error("{pe} has failed")]
    PeFailed {
        /// The failed PE.
        pe: PeId,
    },
    /// Nothing is bound at the handle's slot with the handle's generation:
    /// the binding was unbound, or its secondary id reused.
    #[error("nothing is bound at {pe}:{secondary_id} with generation {generation}")]
    NotBound {
        /// The PE named by the handle.
        pe: PeId,
        /// The secondary id named by the handle.
        secondary_id: SecondaryId,
        /// The generation named by the handle.
        generation: Generation,
    },
    /// The binding exists but this host does not hold it.
    #[error("{host} does not hold the binding at {pe}:{secondary_id}")]
    AccessDenied {
        /// The host that sent the I/O.
        host: HostId,
        /// The PE of the binding.
        pe: PeId,
        /// The secondary id of the binding.
        secondary_id: SecondaryId,
    },
    /// The byte range passes the vVol's capacity.
    #[error("{len} bytes at offset {offset} pass the capacity {capacity_bytes} of {vvol}")]
    OutOfRange {
        /// The addressed vVol.
        vvol: VvolId,
        /// First byte of the request.
        offset: u64,
        /// Length of the request in bytes.
        len: u64,
        /// The vVol's capacity in bytes.
        capacity_bytes: u64,
    },
    /// Offset or length is not a multiple of the vVol's logical block size.
    #[error(
        "{len} bytes at offset {offset} are not aligned to the {block_size}-byte blocks of {vvol}"
    )]
    Misaligned {
        /// The addressed vVol.
        vvol: VvolId,
        /// First byte of the request.
        offset: u64,
        /// Length of the request in bytes.
        len: u64,
        /// The vVol's logical block size.
        block_size: u32,
    },
    /// The host's own queue on the PE is full: it has `queue_depth`
    /// commands outstanding there (ESXi `Scsi.ScsiVVolPESNRO`). SCSI: TASK
    /// SET FULL.
    #[error("{host} has {queue_depth} commands in flight on {pe}, its queue depth there")]
    HostQueueFull {
        /// The host.
        host: HostId,
        /// The PE.
        pe: PeId,
        /// The per-(host, PE) queue depth.
        queue_depth: u32,
    },
    /// The PE's array-side queue, shared by all hosts, is full. SCSI: BUSY
    /// when the host had no other command on the PE, TASK SET FULL when it
    /// had (SAM-5 5.3.1).
    #[error("the queue of {pe} is full ({queue_depth} commands in flight)")]
    QueueFull {
        /// The PE whose queue is full.
        pe: PeId,
        /// Its queue depth.
        queue_depth: u32,
        /// Commands the rejected command's host already had in flight on
        /// the PE.
        host_in_flight: u32,
    },
    /// The backend of the vVol failed.
    #[error("backend of {vvol} failed: {source}")]
    Backend {
        /// The addressed vVol.
        vvol: VvolId,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
}
