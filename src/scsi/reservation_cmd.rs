//! PERSISTENT RESERVE IN (5Eh) and OUT (5Fh) (SPC-5 6.16, 6.17) and the
//! SPC-2 RESERVE(6) (16h) and RELEASE(6) (17h).
//!
//! PERSISTENT RESERVE OUT is decided on the plane's state of the logical
//! unit (`reservation_out.rs`), stored with the plane's compare-and-set
//! (journaled on a durable plane), and only then mirrored and its unit
//! attentions established.
//!
//! Supported: READ KEYS, READ RESERVATION, REPORT CAPABILITIES; REGISTER,
//! REGISTER AND IGNORE EXISTING KEY, RESERVE, RELEASE, CLEAR, PREEMPT,
//! PREEMPT AND ABORT; the six types; ALL_TG_PT and APTPL. Not supported,
//! and refused as SPC-5 requires: READ FULL STATUS (INVALID FIELD IN CDB),
//! REGISTER AND MOVE (INVALID FIELD IN CDB), SPEC_I_PT=1 (INVALID FIELD IN
//! PARAMETER LIST; SIP_C=0). Compatible Reservation Handling is not
//! claimed (CRH=0): RESERVE(6) conflicts with any registration, and PR
//! commands conflict with an SPC-2 reservation (SPC-4 5.9.3).

use super::cdb::{be_at, op};
use super::limits::{MAX_PR_OUT_TRIES, MAX_SPC2_RESERVATIONS};
use super::reservation::{MirrorKey, Spc2, it_nexus, mirror_key};
use super::reservation_out::{Action, Request, decide, insufficient_registration_resources};
use super::target::{CmdResult, Ctx, Fail, Lu};
use super::{Sense, SenseKey, Status};
use crate::ControlError;
use crate::model::{PrLu, PrNexus, PrType};

/// PERSISTENT RESERVE OUT parameter list length without SPEC_I_PT.
pub(crate) const PR_OUT_PARAMETER_LEN: usize = 24;

fn pr_lu(ctx: &Ctx<'_>) -> Result<(PrLu, MirrorKey, Vec<u16>), Fail> {
    let (pe_index, lu) = match ctx.lu {
        Lu::Alu(i) => (
            i,
            PrLu::Alu(ctx.target.pe_id(i).ok_or_else(Sense::lun_not_supported)?),
        ),
        Lu::Slu(s) => (
            s.pe,
            PrLu::Slu(
                ctx.target
                    .plane
                    .vvol_by_key(s.key)
                    .ok_or_else(Sense::lun_not_supported)?,
            ),
        ),
        _ => return Err(Sense::lun_not_supported().into()),
    };
    let key = mirror_key(ctx).ok_or_else(Sense::lun_not_supported)?;
    let ports = ctx
        .target
        .pe(pe_index)
        .map(|p| p.ports.iter().map(|(port, _)| *port).collect())
        .unwrap_or_default();
    Ok((lu, key, ports))
}

/// PERSISTENT RESERVE IN.
pub(crate) fn persistent_reserve_in(ctx: &Ctx<'_>) -> CmdResult {
    let cdb = ctx.cdb;
    cdb.reserved(1, 0xE0)?;
    let alloc = cdb.be(7, 2) as usize;
    let key = mirror_key(ctx).ok_or_else(Sense::lun_not_supported)?;
    let state = ctx.target.reservations.state(ctx.target, key);
    let mut out = state.generation.to_be_bytes().to_vec();
    match cdb.service_action() {
        op::SA_READ_KEYS => {
            let len = (state.registrations.len() * 8) as u32;
            out.extend_from_slice(&len.to_be_bytes());
            for r in &state.registrations {
                out.extend_from_slice(&r.key.to_be_bytes());
            }
        }
        op::SA_READ_RESERVATION => match state.reservation {
            None => out.extend_from_slice(&0u32.to_be_bytes()),
            Some(r) => {
                out.extend_from_slice(&16u32.to_be_bytes());
                // For the All Registrants types the key is 0 (SPC-5 6.16.3).
                let key = if r.kind.all_registrants() {
                    0
                } else {
                    state.key_of(r.holder).unwrap_or(0)
                };
                out.extend_from_slice(&key.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 0, 0, r.kind.code(), 0, 0]);
            }
        },
        op::SA_REPORT_CAPABILITIES => return Ok(report_capabilities(state.aptpl, alloc)),
        _ => return Err(Sense::invalid_field_in_cdb(1, Some(4)).into()),
    }
    out.truncate(alloc);
    Ok(out)
}

/// REPORT CAPABILITIES (SPC-5 6.16.4): CRH=0, SIP_C=0, ATP_C=1, PTPL_C=1,
/// TMV=1, ALLOW COMMANDS 000b (no information), PTPL_A = the logical
/// unit's APTPL, and the six types.
fn report_capabilities(aptpl: bool, alloc: usize) -> Vec<u8> {
    let mut out = vec![0u8; 8];
    out[1] = 8;
    out[2] = 0x04 | 0x01; // ATP_C, PTPL_C
    out[3] = 0x80 | u8::from(aptpl); // TMV, PTPL_A
    let mut mask = 0u16;
    for t in PrType::ALL {
        mask |= match t {
            PrType::WriteExclusiveAllRegistrants => 0x8000,
            PrType::ExclusiveAccessRegistrantsOnly => 0x4000,
            PrType::WriteExclusiveRegistrantsOnly => 0x2000,
            PrType::ExclusiveAccess => 0x0800,
            PrType::WriteExclusive => 0x0200,
            PrType::ExclusiveAccessAllRegistrants => 0x0001,
        };
    }
    out[4..6].copy_from_slice(&mask.to_be_bytes());
    out.truncate(alloc);
    out
}

fn parse_out(ctx: &Ctx<'_>) -> Result<Request, Fail> {
    let cdb = ctx.cdb;
    cdb.reserved(1, 0xE0)?;
    cdb.reserved(3, 0xFF)?;
    cdb.reserved(4, 0xFF)?;
    let len = cdb.be(5, 4) as usize;
    let Some(data) = ctx.data_out.get(..len.min(PR_OUT_PARAMETER_LEN)) else {
        return Err(Sense::parameter_list_length_error().into());
    };
    if len < PR_OUT_PARAMETER_LEN {
        return Err(Sense::parameter_list_length_error().into());
    }
    let flags = data[20];
    if flags & 0x08 != 0 {
        // SPEC_I_PT is not supported (SIP_C=0).
        return Err(Sense::invalid_field_in_parameter_list(20, Some(3)).into());
    }
    if len != PR_OUT_PARAMETER_LEN {
        return Err(Sense::parameter_list_length_error().into());
    }
    let typed = || -> Result<PrType, Fail> {
        if cdb.u8(2) >> 4 != 0 {
            // Only LU_SCOPE (SPC-5 6.17.2).
            return Err(Sense::invalid_field_in_cdb(2, Some(7)).into());
        }
        PrType::from_code(cdb.u8(2) & 0x0F)
            .ok_or_else(|| Sense::invalid_field_in_cdb(2, Some(3)).into())
    };
    let action = match cdb.service_action() {
        op::SA_REGISTER => Action::Register,
        op::SA_REGISTER_AND_IGNORE => Action::RegisterAndIgnore,
        op::SA_RESERVE => Action::Reserve(typed()?),
        op::SA_RELEASE => Action::Release(typed()?),
        op::SA_CLEAR => Action::Clear,
        op::SA_PREEMPT | op::SA_PREEMPT_AND_ABORT => Action::Preempt(typed()?),
        _ => return Err(Sense::invalid_field_in_cdb(1, Some(4)).into()),
    };
    let registering = matches!(action, Action::Register | Action::RegisterAndIgnore);
    Ok(Request {
        action,
        key: be_at(data, 0, 8),
        sa_key: be_at(data, 8, 8),
        // ALL_TG_PT and APTPL count only for the REGISTERs (SPC-5 6.17.3).
        all_tg_pt: registering && flags & 0x04 != 0,
        aptpl: registering && flags & 0x01 != 0,
    })
}

/// PERSISTENT RESERVE OUT.
pub(crate) fn persistent_reserve_out(ctx: &Ctx<'_>) -> CmdResult {
    let req = parse_out(ctx)?;
    let (lu, key, ports) = pr_lu(ctx)?;
    let target = ctx.target;
    let mirror = &target.reservations;
    let me = PrNexus::from(ctx.nexus);
    let max = target.plane.limits().max_pr_registrations_per_lu;
    let _one = mirror.out.lock();
    for _ in 0..MAX_PR_OUT_TRIES {
        let current = target.plane.reservations(lu);
        let decision = decide(&current, me, &ports, &req, max)?;
        if decision.state == current {
            return Ok(Vec::new());
        }
        match target.plane.set_reservations(lu, &current, decision.state) {
            Ok(()) => {
                mirror.reload(target);
                for (nexus, ascq) in decision.uas {
                    mirror.add_ua(it_nexus(nexus), key, ascq);
                }
                return Ok(Vec::new());
            }
            Err(ControlError::ReservationsChanged { .. }) => {}
            Err(ControlError::TooMany { .. }) => {
                return Err(insufficient_registration_resources().into());
            }
            Err(ControlError::PeNotFound(_) | ControlError::VvolNotFound(_)) => {
                return Err(Sense::lun_not_supported().into());
            }
            // The journal failed: 44h/00h INTERNAL TARGET FAILURE.
            Err(_) => return Err(Sense::internal_target_failure().into()),
        }
    }
    Err(Fail::Status(Status::Busy))
}

/// RESERVE(6) (SPC-2 7.21): third-party and extent reservations are not
/// supported.
pub(crate) fn reserve_6(ctx: &Ctx<'_>) -> CmdResult {
    let cdb = ctx.cdb;
    for byte in 1..=4 {
        cdb.reserved(byte, 0xFF)?;
    }
    let key = mirror_key(ctx).ok_or_else(Sense::lun_not_supported)?;
    let mirror = &ctx.target.reservations;
    let _one = mirror.out.lock();
    if let Some(r) = mirror.spc2_of(key) {
        return if r.holder == ctx.nexus {
            Ok(Vec::new())
        } else {
            Err(super::reservation_out::conflict())
        };
    }
    // SPC-4 5.9.3 (CRH=0): a registered logical unit refuses RESERVE.
    let state = mirror.state(ctx.target, key);
    if !state.registrations.is_empty() || state.reservation.is_some() {
        return Err(super::reservation_out::conflict());
    }
    let vvol = match ctx.lu {
        Lu::Slu(s) => Some(
            ctx.target
                .plane
                .vvol_by_key(s.key)
                .ok_or_else(Sense::lun_not_supported)?,
        ),
        _ => None,
    };
    if mirror.spc2.lock().len() >= MAX_SPC2_RESERVATIONS {
        // 55h/00h SYSTEM RESOURCE FAILURE.
        return Err(Sense::new(SenseKey::IllegalRequest, 0x55, 0x00).into());
    }
    mirror.set_spc2(
        key,
        Some(Spc2 {
            holder: ctx.nexus,
            vvol,
        }),
    );
    Ok(Vec::new())
}

/// RELEASE(6) (SPC-2 7.19): releases this I_T nexus's reservation; from
/// any other nexus, or with only persistent reservations, GOOD without
/// effect.
pub(crate) fn release_6(ctx: &Ctx<'_>) -> CmdResult {
    let cdb = ctx.cdb;
    for byte in 1..=4 {
        cdb.reserved(byte, 0xFF)?;
    }
    let key = mirror_key(ctx).ok_or_else(Sense::lun_not_supported)?;
    let mirror = &ctx.target.reservations;
    let _one = mirror.out.lock();
    if mirror.spc2_of(key).is_some_and(|r| r.holder == ctx.nexus) {
        mirror.set_spc2(key, None);
    }
    Ok(Vec::new())
}
