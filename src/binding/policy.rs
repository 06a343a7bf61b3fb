//! PE selection policies.

use std::fmt::Debug;

use crate::model::{ArrayId, HostId, PeId, PeState, Transport, VvolId};

/// A PE a new binding may be made on: active, of the vVol's array and
/// protocol, in the host's PE context, with a free secondary id.
///
/// # Example: unit-test a policy
/// ```
/// use vvol::*;
///
/// let naa = |n| Naa::from_parts(0x00_1a_2b, n, 0).unwrap();
/// let a = PeCandidate::new(PeId(0), ArrayId(0), PeSpec::scsi(naa(1), 1).transport().clone(), PeState::Active, 5, 256);
/// let b = PeCandidate::new(PeId(1), ArrayId(0), PeSpec::scsi(naa(2), 2).transport().clone(), PeState::Active, 2, 256);
/// let vvol: VvolId = "rfc4122.6f1c2a4e-0d3b-4c8e-9a7f-1b2c3d4e5f60".parse().unwrap();
/// assert_eq!(FewestBindings.choose(HostId(0), vvol, &[a, b]), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeCandidate {
    /// The PE.
    pub pe: PeId,
    /// Its array.
    pub array: ArrayId,
    /// How it is reached (NAA and paths, or NFS servers and export).
    pub transport: Transport,
    /// Its state (always [`PeState::Active`] for a candidate today).
    pub state: PeState,
    /// Bindings it carries, counting the choices already made for earlier
    /// items of the same batch.
    pub bindings: u64,
    /// Its queue depth.
    pub queue_depth: u32,
}

impl PeCandidate {
    /// A candidate, for policies' unit tests.
    #[must_use]
    pub const fn new(
        pe: PeId,
        array: ArrayId,
        transport: Transport,
        state: PeState,
        bindings: u64,
        queue_depth: u32,
    ) -> Self {
        Self {
            pe,
            array,
            transport,
            state,
            bindings,
            queue_depth,
        }
    }
}

/// Decides which PE a new binding goes to. The plane calls it without
/// holding its lock (a policy may query the plane), then re-validates the
/// choices; a panic aborts the whole batch with nothing applied. Replay
/// never calls it: the journal records the choices.
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
/// let (plane, topo) = vvol::testing::quickstart()?;
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
