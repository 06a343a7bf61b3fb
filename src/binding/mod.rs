//! The binding control plane with VASA 2.x semantics: topology, vVol
//! lifecycle, bind and unbind, rebind through draining and failed PEs,
//! events, and queries.

mod bind;
mod control_plane;
mod error;
mod events;
mod id_pool;
mod journal;
mod limits;
mod policy;
mod queries;
mod rebind;
mod state;

pub use bind::BindResults;
pub use control_plane::{ControlPlane, DEFAULT_ID_SEED};
pub use error::{ControlError, VasaFault};
pub use events::{Event, EventKind, RebindReason};
pub use journal::{
    BackendProvider, DEFAULT_COMPACT_EVERY, DEFAULT_MAX_RECORD_BYTES, FileStorage, JOURNAL_VERSION,
    JournalError, JournalOptions, JournalStorage, MemStorage,
};
pub use limits::Limits;
pub use policy::{FewestBindings, PeCandidate, PeSelectionPolicy};
pub use queries::StatsSnapshot;
