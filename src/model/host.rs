//! Hosts: their initiator names, the PEs the array maps to them (LUN
//! masking) and their PE contexts.

use super::{HostId, InitiatorName, PeId};

/// A snapshot of a host: its name, its initiators, the PEs its access
/// rules map to it (array LUN masking, [`ControlPlane::map_pe`]) and its PE
/// context (VASA `setPEContext`: the PEs the host reports it discovered).
///
/// [`ControlPlane::map_pe`]: crate::ControlPlane::map_pe
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Host {
    /// Its id.
    pub id: HostId,
    /// Its name.
    pub name: String,
    /// Its initiator names, in name order.
    pub initiators: Vec<InitiatorName>,
    /// The PEs mapped to it (it discovers them in-band), in id order.
    pub mapped_pes: Vec<PeId>,
    /// The PEs it reported seeing, in id order.
    pub pe_context: Vec<PeId>,
    /// How many bindings it holds.
    pub bindings: usize,
}
