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
//! # Example: build a topology, bind a vVol and route I/O to it
//! ```
//! use vvol::{
//!     ArraySpec, BindContext, ContainerSpec, ControlPlane, Limits, Naa, PeSpec, Protocol,
//!     UnbindContext, VvolSpec, VvolType,
//! };
//!
//! let plane = ControlPlane::new(Limits::default());
//! let array = plane.add_array(ArraySpec::new("array-1", 0x00_1A_2B))?;
//! let gold = plane.add_container(array, ContainerSpec::new("gold", Protocol::Scsi, 1 << 40))?;
//! let naa = Naa::from_parts(0x00_1A_2B, 1, 1).ok_or("NAA fields out of range")?;
//! let pe = plane.add_pe(array, PeSpec::scsi(naa, 254))?;
//! let host = plane.add_host("esx-01")?;
//! plane.map_pe(host, pe)?; // LUN masking: the array maps the PE to the host
//! plane.set_pe_context(host, &[pe])?; // the host reports the PE it discovered
//! let vvol = plane.create_vvol(gold, VvolSpec::new(VvolType::Data, 64 << 20))?;
//!
//! // One result per vVol of the batch.
//! let disk = plane.bind(host, &[vvol], BindContext::Normal)?.remove(0)?;
//! let router = plane.router(); // Arc<Router>: share it with I/O threads
//! router.write(host, disk, 4096, b"hello vvol, block-sized payload.".repeat(16).as_slice(), true)?;
//! let mut block = vec![0u8; 512];
//! router.read(host, disk, 4096, &mut block)?;
//! assert!(block.starts_with(b"hello vvol"));
//!
//! plane.unbind(host, disk, UnbindContext::Normal)?;
//! assert!(router.read(host, disk, 4096, &mut block).is_err()); // the old handle is dead
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---------|---------|--------------|
//! | `scsi` | yes | [`scsi`]: the SCSI transport (PEs as conglomerate ALUs, vVols as SLUs) |
//! | `nbd` | yes | [`nbd`]: the NBD client backend and server |
//! | `testing` | no | [`testing`]: the quickstart topology, the backend conformance kit, the NBD `Gateway` |
//! | `interop` | no | the crate's own interop tests against Debian peers (no API) |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod admission;
pub mod backend;
mod binding;
mod error;
mod model;
#[cfg(feature = "nbd")]
#[cfg_attr(docsrs, doc(cfg(feature = "nbd")))]
pub mod nbd;
mod router;
#[cfg(feature = "scsi")]
#[cfg_attr(docsrs, doc(cfg(feature = "scsi")))]
pub mod scsi;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use backend::{
    AllocationExtent, AllocationState, BackendError, BackendOp, BlockBackend, FaultyBackend,
    FileBackend, MemoryBackend,
};
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use binding::MemStore;
pub use binding::{
    BackendProvider, BindResults, ControlError, ControlPlane, DEFAULT_COMPACT_EVERY,
    DEFAULT_MAX_RECORD_BYTES, DurableStore, Event, EventKind, FewestBindings, FileStore,
    JOURNAL_VERSION, JournalError, JournalOptions, Limits, LogInfo, MAX_PES, MAX_POLICY_TRIES,
    MAX_RECORD_BYTES, MAX_SNAPSHOT_CHUNKS, PeCandidate, PeSelectionPolicy, RebindReason,
    SNAPSHOT_CHUNK_BYTES, StatsSnapshot, UnbindResults, VasaFault,
};
pub use error::Error;
pub use model::{
    Array, ArrayId, ArraySpec, BackendKey, BindContext, BindHandle, BindingInfo, ConfigError,
    Container, ContainerId, ContainerSpec, DEFAULT_HOST_QUEUE_DEPTH, DEFAULT_OVERCOMMIT_PERCENT,
    DEFAULT_QUEUE_DEPTH, ESXI_DEFAULT_MAX_LUN, EventId, Generation, Host, HostId, InitiatorKind,
    InitiatorName, MAX_ADMIN_LUN, MAX_BACKEND_KEY_LEN, MAX_DNS_NAME_LEN, MAX_ECHOED_INPUT,
    MAX_EXPORT_PATH_LEN, MAX_EXTENDED_FLAT_24_ID, MAX_EXTENDED_FLAT_40_ID, MAX_IEEE_COMPANY_ID,
    MAX_INITIATOR_NAME_LEN, MAX_INITIATORS_PER_HOST, MAX_OVERCOMMIT_PERCENT, MAX_PATHS_PER_PE,
    MAX_QUEUE_DEPTH, MAX_SECONDARY_IDS_PER_PE, MAX_SIMPLE_SECONDARY_ID, MAX_VASA_SECONDARY_ID_LEN,
    MIB, MIN_OVERCOMMIT_PERCENT, MIN_QUEUE_DEPTH, Naa, NfsVersion, ParseError, PeId, PeInBandId,
    PeSpec, PeState, Protocol, ProtocolEndpoint, SCSI_SECONDARY_ID_LEN, ScsiPath, SecondaryId,
    SecondaryIdScope, SecondaryIdSpace, SubsidiaryAddressing, Transport, UnbindContext,
    VVOL_ID_PREFIX, VasaHandle, VasaHandleError, VasaSecondaryId, VirtualVolume, VvolId, VvolKey,
    VvolSpec, VvolType,
};
pub use model::{LuReservations, PrLu, PrNexus, PrRegistration, PrReservation, PrType};
/// The router's slot publish/retire protocol, exposed only to the loom test
/// (`RUSTFLAGS="--cfg loom" cargo test --release --test loom`).
#[cfg(loom)]
#[doc(hidden)]
pub use router::slot as loom_slot;
pub use router::{IoStats, PeStats, Resolved, RouteError, Router, SLOT_CHUNK, VvolStats};

/// The README's Rust code blocks, run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
