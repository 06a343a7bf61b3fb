//! Integration tests, built as one binary.

mod support;

mod access;
mod backend_conformance;
mod concurrency;
mod control_plane;
mod control_plane_model;
// Its tests go through the SCSI target and the NBD gateway.
#[cfg(any(feature = "scsi", feature = "nbd"))]
mod faults;
mod identity;
mod inventory;
mod isolation;
mod journal;
mod journal_lock;
mod limits;
mod model;
#[cfg(feature = "nbd")]
mod nbd;
#[cfg(feature = "nbd")]
mod nbd_admission;
#[cfg(all(feature = "nbd", feature = "interop"))]
mod nbd_interop;
mod policy;
mod reopen;
mod routing;
#[cfg(feature = "scsi")]
mod scsi_execute;
#[cfg(all(feature = "scsi", feature = "interop"))]
mod scsi_interop;
#[cfg(feature = "scsi")]
mod scsi_lun;
#[cfg(feature = "scsi")]
mod scsi_multipath;
#[cfg(feature = "scsi")]
mod scsi_pr;
#[cfg(feature = "scsi")]
mod scsi_target;
#[cfg(feature = "scsi")]
mod scsi_ua;
mod secondary_scope;
mod vasa;
