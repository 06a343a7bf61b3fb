//! Draining and failing PEs: the array side of VASA rebind.

use std::collections::BTreeSet;

use super::ControlError;
use super::control_plane::ControlPlane;
use super::events::{EventKind, RebindReason};
use super::journal::Op;
use crate::model::{EventId, PeId, PeState, VvolId};
use crate::router::TableState;

impl ControlPlane {
    /// Stops new binds on `pe` and queues a Rebind event naming every vVol
    /// bound through it. Its handles keep working until each is unbound
    /// (normally with [`UnbindContext::RebindEnd`](crate::UnbindContext)
    /// after a bind with [`BindContext::RebindStart`](crate::BindContext));
    /// the PE is removed with its last binding, at once if it has none.
    /// Returns the event's id.
    ///
    /// # Errors
    /// [`ControlError::PeNotFound`].
    pub fn drain_pe(&self, pe: PeId) -> Result<EventId, ControlError> {
        self.stop_pe(pe, PeState::Draining, RebindReason::Drain)
    }

    /// As [`drain_pe`](Self::drain_pe), but the PE's handles fail at once.
    ///
    /// # Errors
    /// [`ControlError::PeNotFound`].
    pub fn fail_pe(&self, pe: PeId) -> Result<EventId, ControlError> {
        self.stop_pe(pe, PeState::Failed, RebindReason::Failure)
    }

    fn stop_pe(
        &self,
        pe: PeId,
        state: PeState,
        reason: RebindReason,
    ) -> Result<EventId, ControlError> {
        let mut st = self.lock();
        let entry = st.pe(pe)?;
        let array = entry.array;
        let bindings = entry.bindings;
        // A failed PE stays failed; draining a failed PE does not revive it.
        let state = if entry.state == PeState::Failed {
            PeState::Failed
        } else {
            state
        };
        let vvols: BTreeSet<VvolId> = st
            .bindings
            .iter()
            .filter(|(k, _)| k.0 == pe)
            .map(|(_, b)| b.vvol)
            .collect();
        let rec = self.journal_begin(|| match reason {
            RebindReason::Drain => Op::DrainPe(pe),
            _ => Op::FailPe(pe),
        })?;
        st.pes.get_mut(&pe).expect("checked above").state = state;
        self.router.set_pe_state(pe, TableState::from(state));
        let id = st.events.push(EventKind::Rebind {
            array,
            pe,
            reason,
            vvols: vvols.into_iter().collect(),
        });
        if bindings == 0 {
            st.remove_pe(&self.router, pe);
        }
        self.journal_commit(&st, rec)?;
        Ok(id)
    }
}
