//! Hosts and their PE contexts.

use super::{HostId, PeId};

/// A snapshot of a host: its name and its PE context (VASA `setPEContext`),
/// the PEs it can see.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Host {
    /// Its id.
    pub id: HostId,
    /// Its name.
    pub name: String,
    /// The PEs it can see, in id order.
    pub pe_context: Vec<PeId>,
    /// How many bindings it holds.
    pub bindings: usize,
}
