//! The control plane's event log (VASA `getEvents`).

use std::collections::VecDeque;

use super::ControlError;
use crate::model::{ArrayId, EventId, PeId, VvolId};

/// Why a rebind was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RebindReason {
    /// The PE is draining: its handles work until rebound.
    Drain,
    /// The PE failed: its handles already fail.
    Failure,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// VASA `RebindEvent`: every vVol bound through `pe` should be bound
    /// again with `BindContext::RebindStart`.
    Rebind {
        /// The array of the PE.
        array: ArrayId,
        /// The PE being drained or failed.
        pe: PeId,
        /// Why.
        reason: RebindReason,
        /// The vVols bound through it, in id order.
        vvols: Vec<VvolId>,
    },
    /// A PE started draining: it serves its bindings and takes no new ones.
    PeDraining {
        /// Its array.
        array: ArrayId,
        /// The PE.
        pe: PeId,
    },
    /// A PE drained: it has no bindings left and takes no new ones.
    PeDrained {
        /// Its array.
        array: ArrayId,
        /// The PE.
        pe: PeId,
    },
    /// A PE failed: its bindings' I/O fails until it is restored.
    PeFailed {
        /// Its array.
        array: ArrayId,
        /// The PE.
        pe: PeId,
    },
    /// A drained or failed PE is active again.
    PeRestored {
        /// Its array.
        array: ArrayId,
        /// The PE.
        pe: PeId,
    },
    /// A PE was added (VASA `ConfigProtocolEndpoint` event, "New"): hosts
    /// rescan to discover it.
    PeAdded {
        /// Its array.
        array: ArrayId,
        /// The PE.
        pe: PeId,
    },
    /// A PE was removed (VASA `ConfigProtocolEndpoint`, delete).
    PeRemoved {
        /// Its array.
        array: ArrayId,
        /// The PE.
        pe: PeId,
    },
    /// A vVol grew. Not a VASA event type (VASA has no resize event: a host
    /// learns of a resize from its own `resizeVirtualVolume` call and from
    /// the SCSI unit attention 2Ah/09h CAPACITY DATA HAS CHANGED); kept for
    /// embedders that watch the log, and never sent to a VASA client as is.
    VvolResized {
        /// The vVol.
        vvol: VvolId,
        /// Its new capacity.
        capacity_bytes: u64,
    },
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Its id; ids increase by one from 1.
    pub id: EventId,
    /// What happened.
    pub kind: EventKind,
}

/// A bounded log of the latest events.
#[derive(Debug)]
pub(crate) struct EventLog {
    events: VecDeque<Event>,
    next_id: u64,
    window: usize,
}

impl EventLog {
    pub(crate) fn new(window: usize) -> Self {
        Self {
            events: VecDeque::new(),
            next_id: 1,
            window: window.max(1),
        }
    }

    pub(crate) fn push(&mut self, kind: EventKind) -> EventId {
        let id = EventId(self.next_id);
        self.next_id += 1;
        if self.events.len() == self.window {
            self.events.pop_front();
        }
        self.events.push_back(Event { id, kind });
        id
    }

    /// Events after `last`; an error when some of them were dropped.
    pub(crate) fn since(&self, last: EventId) -> Result<Vec<Event>, ControlError> {
        let oldest = self.next_id - self.events.len() as u64;
        if last.0.saturating_add(1) < oldest {
            return Err(ControlError::LostEvent {
                requested: last,
                oldest: EventId(oldest),
            });
        }
        Ok(self
            .events
            .iter()
            .filter(|e| e.id > last)
            .cloned()
            .collect())
    }

    /// Drops every kept event and continues numbering after `last_id`
    /// (on reopen: older ids answer lost-event, never wrong events).
    pub(crate) fn resume(&mut self, last_id: u64) {
        self.events.clear();
        self.next_id = last_id + 1;
    }

    pub(crate) fn last_id(&self) -> EventId {
        EventId(self.next_id - 1)
    }
}
