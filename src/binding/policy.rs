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
///
/// # Example: prefer the deepest queue
/// ```
/// use vvol::{ControlPlane, HostId, Limits, PeCandidate, PeSelectionPolicy, VvolId};
///
/// #[derive(Debug)]
/// struct DeepestQueue;
///
/// impl PeSelectionPolicy for DeepestQueue {
///     fn choose(&self, _host: HostId, _vvol: VvolId, candidates: &[PeCandidate]) -> usize {
///         (0..candidates.len())
///             .max_by_key(|&i| (candidates[i].queue_depth, std::cmp::Reverse(candidates[i].pe)))
///             .unwrap_or(0)
///     }
/// }
///
/// let plane = ControlPlane::with_policy(Limits::default(), Box::new(DeepestQueue));
/// # let _ = plane;
/// ```
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
/// use vvol::{BindContext, FewestBindings, VvolSpec, VvolType};
///
/// // The quickstart plane uses this policy: fresh vVols spread over its 3 PEs.
/// let (plane, topo) = vvol::topology::quickstart()?;
/// let _default = FewestBindings;
/// let mut pes = Vec::new();
/// for _ in 0..3 {
///     let v = plane.create_vvol(topo.containers[0], VvolSpec::new(VvolType::Data, 1 << 20))?;
///     pes.push(plane.bind(topo.hosts[0], &[v], BindContext::Normal)?.remove(0)?.pe);
/// }
/// assert_eq!(pes, topo.pes[..3]);
/// # Ok::<(), vvol::ControlError>(())
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
