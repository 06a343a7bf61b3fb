//! PE selection policies.

use std::fmt::Debug;

use crate::model::{HostId, PeId, VvolId};

/// A PE a new binding may be made on: active, of the vVol's array and
/// protocol, in the host's PE context, with a free secondary id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeCandidate {
    /// The PE.
    pub pe: PeId,
    /// Bindings it carries now.
    pub bindings: u64,
    /// Its queue depth.
    pub queue_depth: u32,
}

/// Decides which PE a new binding goes to.
pub trait PeSelectionPolicy: Send + Sync + Debug {
    /// Returns the index in `candidates` (never empty, sorted by PE id) of
    /// the PE to bind `vvol` for `host` through. An index out of bounds is
    /// treated as 0.
    fn choose(&self, host: HostId, vvol: VvolId, candidates: &[PeCandidate]) -> usize;
}

/// The default policy: the candidate with the fewest bindings, the lowest PE
/// id on a tie.
///
/// # Example
/// ```
/// use vvol::{FewestBindings, PeSelectionPolicy};
///
/// // Candidates are built by the control plane; see `ControlPlane::with_policy`.
/// let policy = FewestBindings;
/// assert_eq!(format!("{policy:?}"), "FewestBindings");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FewestBindings;

impl PeSelectionPolicy for FewestBindings {
    fn choose(&self, _host: HostId, _vvol: VvolId, candidates: &[PeCandidate]) -> usize {
        candidates
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| (c.bindings, c.pe))
            .map_or(0, |(i, _)| i)
    }
}
