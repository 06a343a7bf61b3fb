//! PERSISTENT RESERVE OUT decided on a logical unit's state (SPC-5
//! 5.14.7-5.14.11): the new state and the unit attentions it establishes.
//! Pure: the caller stores the state through the control plane.

use super::target::Fail;
use super::{Sense, SenseKey, Status};
use crate::model::{LuReservations, PrNexus, PrRegistration, PrReservation, PrType};

/// 2Ah/03h RESERVATIONS PREEMPTED.
pub(crate) const UA_RESERVATIONS_PREEMPTED: u8 = 0x03;
/// 2Ah/04h RESERVATIONS RELEASED.
pub(crate) const UA_RESERVATIONS_RELEASED: u8 = 0x04;
/// 2Ah/05h REGISTRATIONS PREEMPTED.
pub(crate) const UA_REGISTRATIONS_PREEMPTED: u8 = 0x05;

/// ILLEGAL REQUEST, 55h/04h INSUFFICIENT REGISTRATION RESOURCES (SPC-5
/// 5.14.7).
pub(crate) const fn insufficient_registration_resources() -> Sense {
    Sense::new(SenseKey::IllegalRequest, 0x55, 0x04)
}

/// The service actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Register,
    RegisterAndIgnore,
    Reserve(PrType),
    Release(PrType),
    Clear,
    /// PREEMPT, and PREEMPT AND ABORT (whose abort finds no queued task:
    /// this target runs each command to completion in `execute`).
    Preempt(PrType),
}

/// One PERSISTENT RESERVE OUT, parsed.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) action: Action,
    pub(crate) key: u64,
    pub(crate) sa_key: u64,
    pub(crate) all_tg_pt: bool,
    pub(crate) aptpl: bool,
}

/// What a command decided.
#[derive(Debug)]
pub(crate) struct Decision {
    pub(crate) state: LuReservations,
    /// 2Ah/ascq unit attentions to establish.
    pub(crate) uas: Vec<(PrNexus, u8)>,
}

/// RESERVATION CONFLICT status.
pub(crate) fn conflict() -> Fail {
    Fail::Status(Status::ReservationConflict)
}

fn bump(s: &mut LuReservations) {
    s.generation = s.generation.wrapping_add(1);
}

/// After registrations were removed: a reservation whose holder left is
/// released (for the All Registrants types it passes to a remaining
/// registrant, and ends with the last one; SPC-5 5.14.11.2.3). Releasing a
/// Registrants Only reservation tells every remaining registrant
/// (2Ah/04h).
fn holder_left(s: &mut LuReservations, uas: &mut Vec<(PrNexus, u8)>) {
    let Some(r) = s.reservation else { return };
    if s.key_of(r.holder).is_some() {
        return;
    }
    if r.kind.all_registrants() {
        s.reservation = s.registrations.first().map(|first| PrReservation {
            holder: first.nexus,
            kind: r.kind,
        });
        return;
    }
    s.reservation = None;
    if matches!(
        r.kind,
        PrType::WriteExclusiveRegistrantsOnly | PrType::ExclusiveAccessRegistrantsOnly
    ) {
        uas.extend(
            s.registrations
                .iter()
                .map(|reg| (reg.nexus, UA_RESERVATIONS_RELEASED)),
        );
    }
}

/// Removes the registrations with `key` other than `me`'s; the removed.
fn remove_key(s: &mut LuReservations, key: u64, me: PrNexus) -> Vec<PrNexus> {
    let removed: Vec<PrNexus> = s
        .registrations
        .iter()
        .filter(|r| r.key == key && r.nexus != me)
        .map(|r| r.nexus)
        .collect();
    s.registrations.retain(|r| !(r.key == key && r.nexus != me));
    removed
}

/// Decides `req` from `me` on state `cur`. `ports` are the logical unit's
/// relative target ports (for ALL_TG_PT).
///
/// # Errors
/// RESERVATION CONFLICT, or CHECK CONDITION with the sense SPC-5 names.
pub(crate) fn decide(
    cur: &LuReservations,
    me: PrNexus,
    ports: &[u16],
    req: &Request,
    max_registrations: usize,
) -> Result<Decision, Fail> {
    let mut s = cur.clone();
    let mut uas = Vec::new();
    let mine = cur.key_of(me);
    // Every action but the two REGISTERs needs a registered I_T nexus and
    // its key (SPC-5 5.14.7).
    let checked = |ignore: bool| -> Result<(), Fail> {
        match mine {
            Some(k) if ignore || req.key == k => Ok(()),
            _ => Err(conflict()),
        }
    };
    match req.action {
        Action::Register | Action::RegisterAndIgnore => {
            let ignore = req.action == Action::RegisterAndIgnore;
            match mine {
                None if !ignore && req.key != 0 => return Err(conflict()),
                Some(k) if !ignore && req.key != k => return Err(conflict()),
                None if req.sa_key == 0 => {
                    // Nothing to register or remove: GOOD, no change.
                    return Ok(Decision { state: s, uas });
                }
                _ => {}
            }
            // ALL_TG_PT: the registration is for the initiator port through
            // every target port of the logical unit (SPC-5 5.14.7).
            let mut targets = vec![me];
            if req.all_tg_pt {
                targets.extend(
                    ports
                        .iter()
                        .filter(|p| **p != me.relative_target_port)
                        .map(|p| PrNexus {
                            relative_target_port: *p,
                            ..me
                        }),
                );
            }
            if req.sa_key == 0 {
                s.registrations.retain(|r| !targets.contains(&r.nexus));
                holder_left(&mut s, &mut uas);
            } else {
                for t in targets {
                    match s.registrations.iter_mut().find(|r| r.nexus == t) {
                        Some(r) => r.key = req.sa_key,
                        None => s.registrations.push(PrRegistration {
                            nexus: t,
                            key: req.sa_key,
                        }),
                    }
                }
                if s.registrations.len() > max_registrations {
                    return Err(insufficient_registration_resources().into());
                }
            }
            s.aptpl = req.aptpl;
            bump(&mut s);
        }
        Action::Reserve(kind) => {
            checked(false)?;
            match cur.reservation {
                Some(r) if cur.is_holder(me) && r.kind == kind => {}
                Some(_) => return Err(conflict()),
                None => s.reservation = Some(PrReservation { holder: me, kind }),
            }
        }
        Action::Release(kind) => {
            checked(false)?;
            let Some(r) = cur.reservation else {
                return Ok(Decision { state: s, uas });
            };
            if !cur.is_holder(me) {
                // SPC-5 5.14.11.2.2: not the holder, GOOD without effect.
                return Ok(Decision { state: s, uas });
            }
            if r.kind != kind {
                // 26h/04h INVALID RELEASE OF PERSISTENT RESERVATION.
                return Err(Sense::new(SenseKey::IllegalRequest, 0x26, 0x04).into());
            }
            s.reservation = None;
            if kind.registrants_share() {
                uas.extend(
                    s.registrations
                        .iter()
                        .filter(|r| r.nexus != me)
                        .map(|r| (r.nexus, UA_RESERVATIONS_RELEASED)),
                );
            }
        }
        Action::Clear => {
            checked(false)?;
            uas.extend(
                s.registrations
                    .iter()
                    .filter(|r| r.nexus != me)
                    .map(|r| (r.nexus, UA_RESERVATIONS_PREEMPTED)),
            );
            s.registrations.clear();
            s.reservation = None;
            bump(&mut s);
        }
        Action::Preempt(kind) => {
            checked(false)?;
            let zero_key = || Sense::invalid_field_in_parameter_list(8, None).into();
            match cur.reservation {
                // All Registrants with key 0: every other registration goes
                // and `me` holds a new reservation (SPC-5 5.14.11.4.3).
                Some(r) if r.kind.all_registrants() && req.sa_key == 0 => {
                    let removed: Vec<PrNexus> = s
                        .registrations
                        .iter()
                        .filter(|x| x.nexus != me)
                        .map(|x| x.nexus)
                        .collect();
                    s.registrations.retain(|x| x.nexus == me);
                    s.reservation = Some(PrReservation { holder: me, kind });
                    uas.extend(removed.into_iter().map(|n| (n, UA_REGISTRATIONS_PREEMPTED)));
                }
                // The holder's key: its reservation is preempted.
                Some(r)
                    if !r.kind.all_registrants() && cur.key_of(r.holder) == Some(req.sa_key) =>
                {
                    let removed = remove_key(&mut s, req.sa_key, me);
                    s.reservation = Some(PrReservation { holder: me, kind });
                    if r.kind != kind {
                        // The type changed: the remaining registrants lose
                        // the reservation they knew (SPC-5 5.14.11.4.3).
                        uas.extend(
                            s.registrations
                                .iter()
                                .filter(|x| x.nexus != me)
                                .map(|x| (x.nexus, UA_RESERVATIONS_RELEASED)),
                        );
                    }
                    uas.extend(removed.into_iter().map(|n| (n, UA_REGISTRATIONS_PREEMPTED)));
                }
                // Otherwise only registrations are removed (SPC-5
                // 5.14.11.4.4); key 0 names none.
                _ => {
                    if req.sa_key == 0 {
                        return Err(zero_key());
                    }
                    let removed = remove_key(&mut s, req.sa_key, me);
                    if removed.is_empty() {
                        return Err(conflict());
                    }
                    holder_left(&mut s, &mut uas);
                    uas.extend(removed.into_iter().map(|n| (n, UA_REGISTRATIONS_PREEMPTED)));
                }
            }
            bump(&mut s);
        }
    }
    Ok(Decision { state: s, uas })
}
