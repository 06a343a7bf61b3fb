//! The PE lifecycle (Active, Draining, Drained, Failed; removed only on
//! request) and the host side of VASA rebind.

use std::collections::BTreeMap;

use super::ControlError;
use super::control_plane::ControlPlane;
use super::journal::Record;
use crate::model::{
    BindContext, BindHandle, ContainerId, EventId, HostId, PeId, PeState, UnbindContext,
};

impl ControlPlane {
    /// Stops new binds on an active `pe`. With bindings it becomes
    /// Draining and a Rebind event names every vVol bound through it (its
    /// handles keep working until each is unbound, normally with
    /// [`UnbindContext::RebindEnd`] after a bind with
    /// [`BindContext::RebindStart`], see [`rebind`](Self::rebind)); it
    /// becomes Drained with its last binding. Without bindings it is
    /// Drained at once, with no Rebind event. The PE stays, with its stats
    /// and its place in hosts' PE contexts, until
    /// [`remove_pe`](Self::remove_pe). Returns the id of the Rebind event,
    /// or of the PeDrained event when there was nothing to rebind.
    ///
    /// # Errors
    /// [`ControlError::PeNotFound`], [`ControlError::PeStateConflict`] when
    /// the PE is not active, [`ControlError::Journal`].
    pub fn drain_pe(&self, pe: PeId) -> Result<EventId, ControlError> {
        let st = self.lock();
        let e = st.pe(pe)?;
        if e.state != PeState::Active {
            return Err(ControlError::PeStateConflict {
                pe,
                state: e.state,
                action: "drain",
            });
        }
        let bound = e.bindings > 0;
        let state = if bound {
            PeState::Draining
        } else {
            PeState::Drained
        };
        self.commit_then(st, Record::SetPeState { pe, state }, None, |st| {
            rebind_or_last(st.events.last_id(), bound)
        })
    }

    /// Marks `pe` failed (a PE or controller failure): its handles' I/O
    /// fails at once and a Rebind event names every vVol still bound
    /// through it. The PE and its bindings stay until hosts unbind them and
    /// the PE is restored or removed. Returns the id of the Rebind event, or
    /// of the PeFailed event when it had no bindings.
    ///
    /// # Errors
    /// [`ControlError::PeNotFound`], [`ControlError::PeStateConflict`] when
    /// it already failed, [`ControlError::Journal`].
    pub fn fail_pe(&self, pe: PeId) -> Result<EventId, ControlError> {
        let st = self.lock();
        let e = st.pe(pe)?;
        if e.state == PeState::Failed {
            return Err(ControlError::PeStateConflict {
                pe,
                state: e.state,
                action: "fail",
            });
        }
        let bound = e.bindings > 0;
        let state = PeState::Failed;
        self.commit_then(st, Record::SetPeState { pe, state }, None, |st| {
            rebind_or_last(st.events.last_id(), bound)
        })
    }

    /// Brings a drained or failed `pe` back to Active: it takes new binds,
    /// and the bindings a failed PE kept serve I/O again. Returns the id of
    /// the PeRestored event.
    ///
    /// # Errors
    /// [`ControlError::PeNotFound`], [`ControlError::PeStateConflict`] when
    /// it is active or still draining, [`ControlError::Journal`].
    pub fn restore_pe(&self, pe: PeId) -> Result<EventId, ControlError> {
        let st = self.lock();
        let e = st.pe(pe)?;
        if !matches!(e.state, PeState::Drained | PeState::Failed) {
            return Err(ControlError::PeStateConflict {
                pe,
                state: e.state,
                action: "restore",
            });
        }
        let rec = Record::SetPeState {
            pe,
            state: PeState::Active,
        };
        self.commit_then(st, rec, None, |st| st.events.last_id())
    }

    /// Removes a PE that has no bindings, in any state (drain it first to
    /// move them): from its array, every host's PE context and the router.
    ///
    /// # Errors
    /// [`ControlError::PeNotFound`], [`ControlError::PeBound`],
    /// [`ControlError::Journal`].
    pub fn remove_pe(&self, pe: PeId) -> Result<(), ControlError> {
        let st = self.lock();
        let bindings = st.pe(pe)?.bindings;
        if bindings > 0 {
            return Err(ControlError::PeBound { pe, bindings });
        }
        self.commit(st, Record::RemovePe(pe), None)
    }

    /// The host side of a rebind: for each handle `host` holds, binds its
    /// vVol again with [`BindContext::RebindStart`] (on another active PE
    /// where one is eligible) and then unbinds the old handle with
    /// [`UnbindContext::RebindEnd`]. One result per handle, in order: the
    /// new handle, or the error of its bind (the host keeps the old
    /// handle). Handles of several containers are bound one batch per
    /// container.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::BatchTooLarge`] for
    /// more handles than `max_bind_batch`, and whole-call errors of
    /// [`bind`](Self::bind) or [`unbind`](Self::unbind) (the journal).
    pub fn rebind(
        &self,
        host: HostId,
        handles: &[BindHandle],
    ) -> Result<Vec<Result<BindHandle, ControlError>>, ControlError> {
        if handles.len() > self.limits.max_bind_batch {
            return Err(ControlError::BatchTooLarge {
                len: handles.len(),
                max_batch: self.limits.max_bind_batch,
            });
        }
        let mut results: Vec<Result<BindHandle, ControlError>> = Vec::with_capacity(handles.len());
        let mut groups: BTreeMap<ContainerId, Vec<usize>> = BTreeMap::new();
        let vvols = {
            let st = self.lock();
            st.host(host)?;
            handles
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let found = st
                        .bindings
                        .get(&st.key_of(h.pe, h.secondary_id, host))
                        .filter(|b| b.generation == h.generation && b.count_of(host).is_some())
                        .and_then(|b| Some((b.vvol, st.vvols.get(&b.vvol)?.container)));
                    match found {
                        Some((vvol, container)) => {
                            groups.entry(container).or_default().push(i);
                            results.push(Ok(*h));
                            Some(vvol)
                        }
                        None => {
                            results.push(Err(ControlError::HandleNotFound { host, handle: *h }));
                            None
                        }
                    }
                })
                .collect::<Vec<_>>()
        };
        for members in groups.values() {
            let batch: Vec<_> = members.iter().filter_map(|&i| vvols[i]).collect();
            let bound = match self.bind(host, &batch, BindContext::RebindStart) {
                Ok(bound) => bound,
                Err(ControlError::NoEligiblePe {
                    host,
                    container,
                    array,
                    protocol,
                }) => {
                    for &i in members {
                        results[i] = Err(ControlError::NoEligiblePe {
                            host,
                            container,
                            array,
                            protocol,
                        });
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (&i, r) in members.iter().zip(bound) {
                match r {
                    Ok(new) => {
                        match self.unbind(host, handles[i], UnbindContext::RebindEnd) {
                            Ok(()) | Err(ControlError::HandleNotFound { .. }) => {}
                            Err(e) => return Err(e),
                        }
                        results[i] = Ok(new);
                    }
                    Err(e) => results[i] = Err(e),
                }
            }
        }
        Ok(results)
    }
}

fn rebind_or_last(last: EventId, bound: bool) -> EventId {
    // The Rebind event is pushed just before the state-change event.
    if bound { EventId(last.0 - 1) } else { last }
}
