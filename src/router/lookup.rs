//! What a transport resolves before a command's I/O: the binding at a
//! slot, pinned only for the look-up, with the geometry of its vVol. No
//! queue place is taken, so commands that do no I/O (a SCSI target's
//! INQUIRY, REQUEST SENSE, REPORT LUNS to a subsidiary LU) are never
//! refused because the PE's queue is full, and a READ or WRITE is admitted
//! once, by the routed I/O call itself.

use super::volume::LiveBinding;
use super::{Resolved, Router, TableState};
use crate::model::{HostId, PeId, SecondaryId};

/// A binding found at a slot for one host: what is bound there, at which
/// generation, and the vVol's capacity and logical block size at the time
/// of the look-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BoundVolume {
    pub(crate) resolved: Resolved,
    pub(crate) capacity_bytes: u64,
    pub(crate) block_size: u32,
}

impl Router {
    /// Runs `f` on the binding at `secondary_id` of `pe` as `host`
    /// addresses it, pinned for the call, when `host` holds it: the checks
    /// of an admission (PE known, slot, host) without the queue place.
    /// `None` when the PE is unknown or removed, the slot is empty, or
    /// `host` does not hold it. A failed PE's bindings are found (a SCSI
    /// target keeps answering for their SLUs with the Unavailable ALUA
    /// state, review S2); their I/O fails at admission.
    ///
    /// The answer is a snapshot: the I/O that follows is admitted by
    /// [`read`](Self::read) and the other routed calls with the handle
    /// of the generation seen here, so an unbind in between makes that
    /// I/O fail with [`RouteError::NotBound`](super::RouteError::NotBound)
    /// (the generation rule), and I/O admitted before an unbind completes
    /// on the vVol it pinned.
    #[inline]
    pub(crate) fn with_bound<T>(
        &self,
        pe: PeId,
        host: HostId,
        secondary_id: SecondaryId,
        f: impl FnOnce(&LiveBinding) -> T,
    ) -> Option<T> {
        let table = self.table(pe)?;
        if table.state() == TableState::Removed {
            return None;
        }
        let guard = table.slots(Some(host))?.binding(secondary_id)?;
        let binding = guard.as_deref()?;
        binding.admits(host).then(|| f(binding))
    }

    /// The binding at `secondary_id` of `pe` for `host`, with its vVol's
    /// geometry ([`with_bound`](Self::with_bound)).
    #[inline]
    pub(crate) fn bound_volume(
        &self,
        pe: PeId,
        host: HostId,
        secondary_id: SecondaryId,
    ) -> Option<BoundVolume> {
        self.with_bound(pe, host, secondary_id, |binding| {
            let volume = &binding.volume;
            BoundVolume {
                resolved: Resolved {
                    vvol: volume.key,
                    generation: binding.generation,
                },
                capacity_bytes: volume.capacity_bytes(),
                block_size: volume.block_size,
            }
        })
    }
}
