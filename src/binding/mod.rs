//! The binding control plane with VASA 2.x semantics: topology, vVol
//! lifecycle, bind and unbind, the PE lifecycle and rebind, events,
//! queries, and durability.
//!
//! Every mutation decides a [`journal`] record under the lock and commits
//! it through `mutate.rs`, the one path to state, journal and router;
//! `apply.rs` is the only code that changes the state.

mod access;
mod apply;
mod bind;
mod control_plane;
mod durable;
mod error;
mod events;
mod id_pool;
mod journal;
mod lifecycle;
mod limits;
mod mutate;
mod policy;
mod queries;
mod reservation;
mod state;
mod vasa;

pub use bind::{BindResults, MAX_POLICY_TRIES};
pub use control_plane::{ControlPlane, MAX_PES};
pub use durable::{BackendProvider, JournalOptions};
pub use error::{ControlError, VasaFault};
pub use events::{Event, EventKind, RebindReason};
#[cfg(feature = "testing")]
pub use journal::MemStore;
pub use journal::{
    DEFAULT_COMPACT_EVERY, DEFAULT_MAX_RECORD_BYTES, DurableStore, FileStore, JOURNAL_VERSION,
    JournalError, LogInfo, MAX_RECORD_BYTES, MAX_SNAPSHOT_CHUNKS, SNAPSHOT_CHUNK_BYTES,
};
#[cfg(feature = "testing")]
pub(crate) use journal::{frame, split};
pub use limits::Limits;
pub use policy::{FewestBindings, PeCandidate, PeSelectionPolicy};
pub use queries::StatsSnapshot;
pub use vasa::UnbindResults;
