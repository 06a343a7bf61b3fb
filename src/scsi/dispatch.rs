//! Command dispatch: logical unit checks, unit attentions, ALUA, then the
//! command itself.

use super::cdb::op;
use super::target::{CmdResult, Ctx, Lu};
use super::{Sense, alua, block, inquiry, mode, opcodes, report_luns, reservation_cmd};

/// Commands a unit attention is never reported on (SPC-5 5.14; REQUEST
/// SENSE returns it as its data instead).
fn ua_exempt(opcode: u8) -> bool {
    matches!(opcode, op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE)
}

/// The ALUA state the addressed LU reports through the nexus's target
/// port: its PE's state on the port's group (per (LU, target port group),
/// Unavailable while the PE is failed); `None` for LUs outside a
/// conglomerate (the W-LUN).
fn alua_state(ctx: &Ctx<'_>) -> Option<super::AluaState> {
    if !matches!(ctx.lu, Lu::Alu(_) | Lu::Slu(_)) {
        return None;
    }
    let (pe, group) = ctx.port?;
    ctx.target.pe_alua_state(pe, group)
}

pub(crate) fn dispatch(ctx: &Ctx<'_>) -> CmdResult {
    let opcode = ctx.cdb.opcode();
    // Incorrect LUNs answer only INQUIRY, REQUEST SENSE and (at LUN 0 and the
    // W-LUN) REPORT LUNS.
    match ctx.lu {
        Lu::Unsupported | Lu::AbsentLun0 => {
            return match opcode {
                op::INQUIRY => inquiry::inquiry(ctx),
                op::REQUEST_SENSE => request_sense(ctx, Some(Sense::lun_not_supported())),
                op::REPORT_LUNS if matches!(ctx.lu, Lu::AbsentLun0) => {
                    report_luns::report_luns(ctx)
                }
                _ => Err(Sense::lun_not_supported().into()),
            };
        }
        Lu::ReportLunsWlun => {
            if !matches!(
                opcode,
                op::INQUIRY | op::REQUEST_SENSE | op::REPORT_LUNS | op::TEST_UNIT_READY
            ) {
                return Err(Sense::invalid_opcode().into());
            }
        }
        Lu::Alu(_) | Lu::Slu(_) => {}
    }
    let Some(command) = opcodes::lookup(opcode, ctx.cdb.service_action()) else {
        if opcodes::has_service_actions(opcode) {
            return Err(Sense::invalid_field_in_cdb(1, Some(4)).into());
        }
        return Err(Sense::invalid_opcode().into());
    };
    // Reservation unit attentions (2Ah/03h-05h) wait behind the nexus's
    // own (`reservation.rs` keeps them per I_T nexus and LU).
    let take_ua = || {
        ctx.state
            .take(ctx.target, ctx.nexus, ctx.key, &ctx.lu, ctx.lu_cache)
            .or_else(|| ctx.target.reservations.take_ua(ctx))
    };
    if opcode == op::REQUEST_SENSE {
        return request_sense(ctx, take_ua());
    }
    if !ua_exempt(opcode)
        && let Some(ua) = take_ua()
    {
        return Err(ua.into());
    }
    // SPC-5 5.16.2.4.x: each non-active state serves its own command set
    // (review S11); the others get NOT READY with the state's ASCQ.
    if let Some(state) = alua_state(ctx)
        && !state.allows(opcode, ctx.cdb.service_action())
        && let Some(sense) = state.not_ready()
    {
        return Err(sense.into());
    }
    if command.slu_only && !matches!(ctx.lu, Lu::Slu(_)) {
        return Err(Sense::invalid_opcode().into());
    }
    // RESERVATION CONFLICT after unit attentions (SAM-5 5.14, SPC-5
    // 5.14.1), ALUA access states and unsupported commands.
    ctx.target.reservations.check(ctx)?;
    match (opcode, command.service_action) {
        (op::TEST_UNIT_READY, _) => Ok(Vec::new()),
        (op::INQUIRY, _) => inquiry::inquiry(ctx),
        (op::REPORT_LUNS, _) => report_luns::report_luns(ctx),
        (op::MODE_SENSE_6, _) => mode::mode_sense(ctx, false),
        (op::MODE_SENSE_10, _) => mode::mode_sense(ctx, true),
        (op::MODE_SELECT_6, _) => mode::mode_select(ctx, false),
        (op::MODE_SELECT_10, _) => mode::mode_select(ctx, true),
        (op::READ_CAPACITY_10, _) => block::read_capacity_10(ctx),
        (op::READ_6 | op::READ_10 | op::READ_16, _) => block::read(ctx),
        (op::WRITE_6 | op::WRITE_10 | op::WRITE_16, _) => block::write(ctx),
        (op::SYNCHRONIZE_CACHE_10 | op::SYNCHRONIZE_CACHE_16, _) => block::synchronize_cache(ctx),
        (op::WRITE_SAME_16, _) => block::write_same_16(ctx),
        (op::UNMAP, _) => block::unmap(ctx),
        (op::COMPARE_AND_WRITE, _) => block::compare_and_write(ctx),
        (op::SERVICE_ACTION_IN_16, Some(op::SA_READ_CAPACITY_16)) => block::read_capacity_16(ctx),
        (op::SERVICE_ACTION_IN_16, _) => block::get_lba_status(ctx),
        (op::MAINTENANCE_IN, Some(op::SA_REPORT_TARGET_PORT_GROUPS)) => {
            report_target_port_groups(ctx)
        }
        (op::MAINTENANCE_IN, _) => opcodes::report_supported_opcodes(ctx),
        (op::PERSISTENT_RESERVE_IN, _) => reservation_cmd::persistent_reserve_in(ctx),
        (op::PERSISTENT_RESERVE_OUT, _) => reservation_cmd::persistent_reserve_out(ctx),
        (op::RESERVE_6, _) => reservation_cmd::reserve_6(ctx),
        (op::RELEASE_6, _) => reservation_cmd::release_6(ctx),
        _ => Err(Sense::invalid_opcode().into()),
    }
}

/// REQUEST SENSE: the pending condition (a unit attention, or LOGICAL
/// UNIT NOT SUPPORTED for an incorrect LUN) as data, or NO SENSE.
fn request_sense(ctx: &Ctx<'_>, pending: Option<Sense>) -> CmdResult {
    let cdb = ctx.cdb;
    cdb.reserved(1, 0xFE)?;
    let desc = cdb.u8(1) & 1 != 0;
    let mut data = pending.unwrap_or_else(Sense::no_sense).to_bytes(desc);
    data.truncate(usize::from(cdb.u8(4)));
    Ok(data)
}

fn report_target_port_groups(ctx: &Ctx<'_>) -> CmdResult {
    let cdb = ctx.cdb;
    let format = cdb.u8(1) >> 5;
    if format > 1 {
        return Err(Sense::invalid_field_in_cdb(1, Some(7)).into());
    }
    let pe_index = match ctx.lu {
        Lu::Alu(i) => i,
        Lu::Slu(s) => s.pe,
        _ => return Err(Sense::lun_not_supported().into()),
    };
    let pe = ctx
        .target
        .pe(pe_index)
        .ok_or_else(Sense::lun_not_supported)?;
    // The states of this LU's conglomerate, per target port group.
    let mut groups = std::collections::BTreeMap::new();
    for (port, group) in &pe.ports {
        groups
            .entry(*group)
            .or_insert_with(|| {
                let state = ctx.target.pe_alua_state(pe.id, *group).unwrap_or_default();
                let changed = ctx.target.alua.changed(pe.id, *group)
                    || ctx.target.router.pe_failure_changes(pe.id) > 0;
                alua::GroupReport {
                    state,
                    status: if changed {
                        alua::STATUS_IMPLICIT
                    } else {
                        alua::STATUS_NONE
                    },
                    ports: Vec::new(),
                }
            })
            .ports
            .push(*port);
    }
    let mut out = alua::report_target_port_groups(&groups, format == 1);
    out.truncate(cdb.be(6, 4) as usize);
    Ok(out)
}
