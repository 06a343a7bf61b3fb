//! The one path by which a mutation reaches state, journal and router:
//! the caller decided a record under the lock; here it is appended, applied
//! to the state, the lock is released, the record's sync is awaited (shared
//! with every record appended meanwhile: group commit), and only then are
//! its router changes published, in log order, and the call acknowledged.

use std::sync::Arc;

use parking_lot::MutexGuard;

use super::ControlError;
use super::apply::{ApplyError, RouterOp};
use super::control_plane::ControlPlane;
use super::journal::{JournalError, Record};
use super::state::State;
use crate::backend::BlockBackend;

fn internal(e: &ApplyError) -> ControlError {
    ControlError::Internal {
        reason: match e {
            ApplyError::Invalid(reason) => reason,
            ApplyError::Limit { limit, .. } => limit,
            ApplyError::Backend(_) => "backend resize while applying",
        },
    }
}

impl ControlPlane {
    /// Commits a decided record; see the module docs.
    pub(super) fn commit(
        &self,
        st: MutexGuard<'_, State>,
        rec: Record,
        backend: Option<Arc<dyn BlockBackend>>,
    ) -> Result<(), ControlError> {
        self.commit_then(st, rec, backend, |_| ())
    }

    /// As [`commit`](Self::commit), returning `after(state)` as it is right
    /// after the record applied (the ids of events it pushed, say).
    pub(super) fn commit_then<T>(
        &self,
        mut st: MutexGuard<'_, State>,
        rec: Record,
        backend: Option<Arc<dyn BlockBackend>>,
        after: impl FnOnce(&State) -> T,
    ) -> Result<T, ControlError> {
        let mut ops: Vec<RouterOp> = Vec::new();
        let Some(journal) = &self.journal else {
            st.apply(&rec, &self.limits, backend, &mut ops)
                .map_err(|e| internal(&e))?;
            self.note_reservations(&st);
            let out = after(&st);
            for op in ops {
                op.run(&self.router);
            }
            return Ok(out);
        };
        let payload = rec.encode();
        journal.check(&payload)?;
        let index = journal.append(&payload)?;
        if let Err(e) = st.apply(&rec, &self.limits, backend, &mut ops) {
            journal.poison();
            drop(st);
            journal.publish_in_order(index, false, || ());
            return Err(internal(&e));
        }
        st.log_index = index;
        self.note_reservations(&st);
        let out = after(&st);
        drop(st);
        let synced = journal.sync_through(index);
        journal.publish_in_order(index, synced.is_ok(), || {
            for op in ops {
                op.run(&self.router);
            }
        });
        synced?;
        if journal.compaction_due() {
            // The record is durable: a failed compaction leaves the log as
            // it was (and poisons on an I/O error, reported next call).
            let _ = self.compact();
        }
        Ok(out)
    }

    /// Compacts the journal into a snapshot of the state now (encoded under
    /// the lock, written without it; records appended meanwhile stay after
    /// it).
    pub(super) fn compact(&self) -> Result<(), JournalError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let Some(_one) = self.compacting.try_lock() else {
            return Ok(());
        };
        let (index, bytes) = {
            let st = self.lock();
            let index = st.log_index;
            (index, super::durable::snapshot_of(&st, index).encode())
        };
        journal.write_snapshot(index, &bytes)
    }
}
