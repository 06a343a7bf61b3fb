//! `vvol` models VMware vSphere Virtual Volumes (vVols) I/O routing.
//!
//! On a vVol array, hosts never address a virtual volume directly. They send
//! I/O to a **protocol endpoint (PE)**, a logical I/O proxy; each vVol is
//! **bound** to a PE out of band (VASA), and the PE routes the I/O to it.
//! Every PE of an array serves every container of that array with its
//! protocol. On SCSI a PE is a proxy LUN named by an NAA (the administrative
//! logical unit of a conglomerate, each bound vVol a subsidiary LU); on NFS
//! it is a mount point.
//!
//! The crate has three layers:
//! - the **model** ([`Array`], [`Container`], [`ProtocolEndpoint`],
//!   [`VirtualVolume`], newtype ids, [`BindHandle`]);
//! - the **control plane** ([`ControlPlane`]): topology, vVol lifecycle, and
//!   binding with VASA 2.x semantics (batches, reference counts, rebind,
//!   events);
//! - the **data plane** ([`Router`]): resolves (PE, secondary id) in O(1)
//!   without locks and routes generation-checked I/O to a [`BlockBackend`]
//!   ([`MemoryBackend`], [`FileBackend`], [`FaultyBackend`]).
//!
//! # Example: bind a vVol and route I/O to it
//! ```
//! use vvol::{BindContext, UnbindContext};
//!
//! let (plane, topo) = vvol::topology::quickstart()?;
//! let host = topo.hosts[0];
//! // One result per vVol: config, data, swap.
//! let mut handles = plane.bind(host, &topo.vms[0].vvols(), BindContext::Normal)?;
//! let disk = handles.remove(1)?;
//!
//! let router = plane.router();
//! router.write(host, disk, 4096, b"hello vvol, block-sized payload.".repeat(16).as_slice(), true)?;
//! let mut block = vec![0u8; 512];
//! router.read(host, disk, 4096, &mut block)?;
//! assert!(block.starts_with(b"hello vvol"));
//!
//! plane.unbind(host, disk, UnbindContext::Normal)?;
//! assert!(router.read(host, disk, 4096, &mut block).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![doc(test(attr(deny(warnings))))]

pub mod backend;
mod binding;
mod error;
mod model;
#[cfg(feature = "nbd")]
pub mod nbd;
mod router;
#[cfg(feature = "scsi")]
pub mod scsi;
pub mod topology;

pub use backend::{
    AllocationExtent, AllocationState, BackendError, BackendOp, BlockBackend, FaultyBackend,
    FileBackend, MemoryBackend,
};
pub use binding::{
    BackendProvider, BindResults, ControlError, ControlPlane, DEFAULT_COMPACT_EVERY,
    DEFAULT_ID_SEED, DEFAULT_MAX_RECORD_BYTES, Event, EventKind, FewestBindings, FileStorage,
    JOURNAL_VERSION, JournalError, JournalOptions, JournalStorage, Limits, MemStorage, PeCandidate,
    PeSelectionPolicy, RebindReason, StatsSnapshot, VasaFault,
};
pub use error::Error;
pub use model::*;
/// The router's slot publish/retire protocol, exposed only to the loom test
/// (`RUSTFLAGS="--cfg loom" cargo test --release --test loom`).
#[cfg(loom)]
#[doc(hidden)]
pub use router::slot as loom_slot;
pub use router::{IoStats, PeStats, Resolved, RouteError, Router, SLOT_CHUNK, VvolStats};
