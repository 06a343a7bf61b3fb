//! Persistent reservation state per logical unit, kept by the control
//! plane so it survives a reopen (a controller restart or failover). The
//! SCSI target decides every change (SPC-5 5.14) and stores the outcome
//! here with a compare-and-set; the plane checks the state's own rules and
//! the limits, journals it (record tags 20 and 21) and bumps a version the
//! target's read-mostly mirror watches without taking the plane's lock.

use std::sync::atomic::Ordering;

use super::ControlError;
use super::apply::ApplyError;
use super::control_plane::ControlPlane;
use super::journal::Record;
use super::limits::Limits;
use super::state::State;
#[cfg(feature = "scsi")]
use crate::model::VvolKey;
use crate::model::{ArrayId, LuReservations, PrLu, Transport};

impl State {
    /// The array of `lu`, when it exists (a SCSI PE, or a vVol).
    pub(crate) fn pr_lu_array(&self, lu: PrLu) -> Option<ArrayId> {
        match lu {
            PrLu::Alu(pe) => self
                .pes
                .get(&pe)
                .filter(|p| matches!(p.spec.transport(), Transport::Scsi { .. }))
                .map(|p| p.array),
            PrLu::Slu(vvol) => {
                let v = self.vvols.get(&vvol)?;
                self.containers.get(&v.container).map(|c| c.array)
            }
        }
    }

    /// Checks that `new` may become the state of `lu`.
    pub(crate) fn check_reservations(
        &self,
        lu: PrLu,
        new: &LuReservations,
        limits: &Limits,
    ) -> Result<(), ApplyError> {
        if self.pr_lu_array(lu).is_none() {
            return Err(ApplyError::Invalid(
                "reservations of an unknown logical unit",
            ));
        }
        new.check().map_err(ApplyError::Invalid)?;
        if new.registrations.len() > limits.max_pr_registrations_per_lu {
            return Err(ApplyError::Limit {
                limit: "max_pr_registrations_per_lu",
                value: limits.max_pr_registrations_per_lu as u64,
                count: new.registrations.len() as u64,
            });
        }
        let registered_now = self
            .reservations
            .get(&lu)
            .is_some_and(|r| !r.registrations.is_empty());
        if !new.registrations.is_empty() && !registered_now {
            let lus = self
                .reservations
                .values()
                .filter(|r| !r.registrations.is_empty())
                .count();
            if lus >= limits.max_pr_lus {
                return Err(ApplyError::Limit {
                    limit: "max_pr_lus",
                    value: limits.max_pr_lus as u64,
                    count: lus as u64 + 1,
                });
            }
        }
        Ok(())
    }

    /// Makes `new` the state of `lu` (dropping an empty one).
    pub(crate) fn put_reservations(&mut self, lu: PrLu, new: LuReservations) {
        if new.is_empty() {
            self.reservations.remove(&lu);
        } else {
            self.reservations.insert(lu, new);
        }
        self.pr_version += 1;
    }

    /// Drops the state of a deleted vVol or removed PE. The version moves
    /// even when it had none: SCSI targets then drop their SPC-2
    /// reservations of that logical unit (not kept in the plane) before a
    /// reused vVol key could inherit one.
    pub(crate) fn drop_reservations(&mut self, lu: PrLu) {
        self.reservations.remove(&lu);
        self.pr_version += 1;
    }

    /// A power on of `array`'s logical units (SPC-5 5.14.5): state
    /// registered with APTPL=0 is lost, state with APTPL=1 is kept; every
    /// PRgeneration returns to 0 (SPC-5 6.16.2).
    pub(crate) fn power_on_reservations(&mut self, array: ArrayId) {
        let lus: Vec<PrLu> = self
            .reservations
            .keys()
            .copied()
            .filter(|lu| self.pr_lu_array(*lu) == Some(array))
            .collect();
        for lu in lus {
            let Some(r) = self.reservations.get_mut(&lu) else {
                continue;
            };
            if r.aptpl {
                r.generation = 0;
            } else {
                self.reservations.remove(&lu);
            }
        }
        self.pr_version += 1;
    }

    /// Checks the reservations against the rest of the state.
    pub(crate) fn validate_reservations(&self) -> Result<(), &'static str> {
        for (lu, r) in &self.reservations {
            if self.pr_lu_array(*lu).is_none() {
                return Err("reservations of an unknown logical unit");
            }
            r.check()?;
            if r.is_empty() {
                return Err("empty reservation state kept");
            }
        }
        Ok(())
    }
}

fn apply_to_control(lu: PrLu, e: ApplyError) -> ControlError {
    match e {
        ApplyError::Limit { limit, value, .. } => ControlError::TooMany {
            what: limit,
            limit: value,
        },
        ApplyError::Invalid(reason) => ControlError::InvalidReservations { lu, reason },
        ApplyError::Backend(_) => ControlError::Internal {
            reason: "backend while storing reservations",
        },
    }
}

impl ControlPlane {
    /// The persistent reservation state of `lu` (empty when it has none or
    /// does not exist).
    #[must_use]
    pub fn reservations(&self, lu: PrLu) -> LuReservations {
        self.lock()
            .reservations
            .get(&lu)
            .cloned()
            .unwrap_or_default()
    }

    /// A counter that changes whenever any logical unit's reservation state
    /// changes (a PERSISTENT RESERVE OUT, a power on, a deleted vVol or
    /// removed PE). Read without the plane's lock: caches compare it.
    #[must_use]
    pub fn reservations_version(&self) -> u64 {
        self.pr_version.load(Ordering::Acquire)
    }

    /// Replaces the reservation state of `lu` with `new` if it is still
    /// `expected` (compare-and-set: the SCSI target decides the change from
    /// `expected`). Journaled on a durable plane.
    ///
    /// # Errors
    /// [`ControlError::ReservationsChanged`] when the state is no longer
    /// `expected`, [`ControlError::PeNotFound`] / [`ControlError::VvolNotFound`]
    /// for an unknown logical unit, [`ControlError::InvalidReservations`]
    /// for a state that breaks its rules (see [`LuReservations::check`]),
    /// [`ControlError::TooMany`] past
    /// [`Limits::max_pr_registrations_per_lu`] or [`Limits::max_pr_lus`],
    /// [`ControlError::Journal`].
    pub fn set_reservations(
        &self,
        lu: PrLu,
        expected: &LuReservations,
        new: LuReservations,
    ) -> Result<(), ControlError> {
        let st = self.lock();
        if st.pr_lu_array(lu).is_none() {
            return Err(match lu {
                PrLu::Alu(pe) => ControlError::PeNotFound(pe),
                PrLu::Slu(vvol) => ControlError::VvolNotFound(vvol),
            });
        }
        let current = st.reservations.get(&lu).cloned().unwrap_or_default();
        if current != *expected {
            return Err(ControlError::ReservationsChanged { lu });
        }
        st.check_reservations(lu, &new, &self.limits)
            .map_err(|e| apply_to_control(lu, e))?;
        self.commit(st, Record::SetReservations { lu, state: new }, None)
    }

    /// A power on of `array`'s logical units: persistent reservation state
    /// registered with APTPL=0 is lost, state with APTPL=1 kept, every
    /// PRgeneration set to 0 (SPC-5 5.14.5, 6.16.2). A reopen of a durable
    /// plane is not a power on: it keeps everything.
    ///
    /// # Errors
    /// [`ControlError::ArrayNotFound`], [`ControlError::Journal`].
    pub fn power_on_reservations(&self, array: ArrayId) -> Result<(), ControlError> {
        let st = self.lock();
        st.array(array)?;
        if !st
            .reservations
            .keys()
            .any(|lu| st.pr_lu_array(*lu) == Some(array))
        {
            return Ok(());
        }
        self.commit(st, Record::PowerOnReservations(array), None)
    }

    /// The reservation state of `array`'s logical units, with the version
    /// it is at and, for SLUs, the vVol's key (the SCSI target's mirror).
    #[cfg(feature = "scsi")]
    pub(crate) fn reservations_of_array(
        &self,
        array: ArrayId,
    ) -> (u64, Vec<(PrLu, Option<VvolKey>, LuReservations)>) {
        let st = self.lock();
        let out = st
            .reservations
            .iter()
            .filter(|(lu, _)| st.pr_lu_array(**lu) == Some(array))
            .map(|(lu, r)| {
                let key = match lu {
                    PrLu::Slu(v) => st.vvols.get(v).map(|e| e.core.key),
                    PrLu::Alu(_) => None,
                };
                (*lu, key, r.clone())
            })
            .collect();
        (st.pr_version, out)
    }

    /// Publishes the state's reservation version to lock-free readers.
    pub(super) fn note_reservations(&self, st: &State) {
        self.pr_version.fetch_max(st.pr_version, Ordering::AcqRel);
    }
}
