//! What the SCSI target reads about host access per command, without the
//! control plane's lock: the PEs mapped to the host (array LUN masking,
//! published by the router) and the status for a full queue.

use super::sense::Status;
use crate::RouteError;
use crate::Router;
use crate::model::{HostId, PeId};

/// Whether `host` may see the administrative logical unit of `pe`: the
/// array's access rules map the PE to it. Independent of the host's VASA
/// PE context, which only records what the host reported after it
/// discovered the PE (review S3). One `arc-swap` load.
pub(crate) fn alu_visible(router: &Router, host: HostId, pe: PeId) -> bool {
    router.is_mapped(host, pe)
}

/// The status for a command refused by a full queue; `None` for other
/// routing errors. SAM-5 5.3.1: TASK SET FULL when the I_T nexus already
/// has commands in the task set and a lack of task-set resources refuses
/// one more, BUSY when it has none. The task set a host fills is its
/// share of the PE (the conglomerate's queue for that host): its own
/// limit (`Scsi.ScsiVVolPESNRO`) full is TASK SET FULL; the array-side
/// queue full is TASK SET FULL if the host has other commands on the PE,
/// BUSY if not (review S4, S17).
pub(crate) fn queue_full_status(error: &RouteError) -> Option<Status> {
    match error {
        RouteError::HostQueueFull { .. } => Some(Status::TaskSetFull),
        RouteError::QueueFull { host_in_flight, .. } => Some(if *host_in_flight > 0 {
            Status::TaskSetFull
        } else {
            Status::Busy
        }),
        _ => None,
    }
}
