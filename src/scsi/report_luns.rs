//! REPORT LUNS (A0h) with the SPC-5 SELECT REPORT values.
//!
//! Reading of SPC-5 (recorded in ARCHITECTURE.md):
//! - 00h: every logical unit accessible to the I_T nexus except well-known
//!   ones: the ALUs (PEs) the host sees through this port and the SLUs of
//!   the bindings it holds behind them;
//! - 01h: the well-known logical units: the REPORT LUNS W-LUN;
//! - 02h: 00h plus 01h;
//! - 10h: the administrative logical units only;
//! - 11h: the ALUs plus every logical unit outside a conglomerate (this
//!   target has none), i.e. the top level without SLUs;
//! - 12h: sent to an ALU, that ALU and its SLUs bound for the host; sent to
//!   anything else, INVALID FIELD IN CDB (byte 2).
//!
//! 10h and 11h must be sent to LUN 0 or the REPORT LUNS W-LUN (INVALID
//! FIELD IN CDB otherwise); other values are INVALID FIELD IN CDB.

use super::Sense;
use super::lun::{Lun, REPORT_LUNS_WLUN};
use super::target::{CmdResult, Ctx, Lu, PeInfo};
use super::unit_attention::{NexusState, ToldScope};

/// The allocation length SPC-5 asks REPORT LUNS initiators to give at
/// least ("should"): one header and one LUN. A shorter one is not an
/// error since SPC-4 r37 (only SPC-3 devices refuse it); the data is
/// truncated like any other, and the host is not counted as told.
pub const MIN_REPORT_LUNS_ALLOCATION: u64 = 16;

/// The ALUs `ctx`'s nexus sees: the PEs the array's access rules map to
/// the host (LUN masking, read from the router without the plane's lock),
/// reachable through the nexus's target port. The host's VASA PE context
/// plays no part: discovery comes before the host reports it (review S3).
fn visible_pes(ctx: &Ctx<'_>) -> Vec<PeInfo> {
    let mapped = ctx.target.router.mapped_pes(ctx.nexus.host);
    ctx.target
        .pes
        .read()
        .iter()
        .filter(|p| {
            mapped.binary_search(&p.id).is_ok()
                && p.ports
                    .iter()
                    .any(|(port, _)| *port == ctx.nexus.relative_target_port)
        })
        .cloned()
        .collect()
}

/// The SLUs behind `pe` bound for the nexus's host.
fn subsidiaries(ctx: &Ctx<'_>, pe: &PeInfo) -> Vec<Lun> {
    ctx.target
        .plane
        .bindings_for_pe(pe.id)
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b.hosts.iter().any(|(h, _)| *h == ctx.nexus.host))
        .filter_map(|b| ctx.target.lun_of(b.handle))
        .collect()
}

/// The ALU's LUN: single level, flat space addressing from 256
/// ([`Lun::administrative`]).
fn admin(pe: &PeInfo) -> Option<Lun> {
    Lun::administrative(pe.admin_lun).ok()
}

/// REPORT LUNS.
pub(crate) fn report_luns(ctx: &Ctx<'_>) -> CmdResult {
    let cdb = ctx.cdb;
    cdb.reserved(1, 0xFF)?;
    for at in [3, 4, 5, 10] {
        cdb.reserved(at, 0xFF)?;
    }
    let select = cdb.u8(2);
    let alloc = cdb.be(6, 4);
    let top = ctx.lun.is_zero() || matches!(ctx.lu, Lu::ReportLunsWlun);
    let mut luns = Vec::new();
    // What the list tells the nexus, read before it is built (see
    // unit_attention.rs: a whole list clears the 3Fh/0Eh it answers).
    let mut told = None;
    let tell = |scope, pes: &[PeInfo]| {
        NexusState::telling(ctx.target, ctx.nexus, scope, pes.iter().map(|p| p.id))
    };
    match select {
        0x00 | 0x02 => {
            let pes = visible_pes(ctx);
            told = Some(tell(ToldScope::All, &pes));
            for pe in pes {
                luns.extend(admin(&pe));
                luns.extend(subsidiaries(ctx, &pe));
            }
            if select == 0x02 {
                luns.push(REPORT_LUNS_WLUN);
            }
        }
        0x01 => luns.push(REPORT_LUNS_WLUN),
        0x10 | 0x11 if top => {
            let pes = visible_pes(ctx);
            told = Some(tell(ToldScope::Admin, &pes));
            luns.extend(pes.iter().filter_map(admin));
        }
        0x10 | 0x11 => return Err(Sense::invalid_field_in_cdb(2, Some(7)).into()),
        0x12 => {
            // SELECT REPORT 12h to a LU that is not an ALU: INVALID FIELD
            // IN CDB on the SELECT REPORT field, as for 10h/11h sent to
            // the wrong LU. REPORT LUNS is an SPC-5 command of every device
            // type, while T10's ASC table (asc-num.txt) lists 20h/0Dh NOT
            // AN ADMINISTRATIVE LOGICAL UNIT for direct-access devices
            // only, so it belongs to SBC commands, not to REPORT LUNS
            // (review S12).
            let Lu::Alu(index) = ctx.lu else {
                return Err(Sense::invalid_field_in_cdb(2, Some(7)).into());
            };
            let pe = ctx.target.pe(index).ok_or_else(Sense::lun_not_supported)?;
            told = Some(tell(
                ToldScope::Conglomerate(pe.id),
                std::slice::from_ref(&pe),
            ));
            luns.extend(admin(&pe));
            luns.extend(subsidiaries(ctx, &pe));
        }
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(7)).into()),
    }
    luns.sort_unstable();
    luns.dedup();
    // Only a host that received the whole list was told the inventory.
    let whole = 8 + 8 * luns.len() as u64 <= alloc;
    if let (Some(told), true) = (told, whole) {
        ctx.state.told(&told);
    }
    let mut out = Vec::with_capacity(8 + 8 * luns.len());
    out.extend_from_slice(
        &u32::try_from(8 * luns.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&[0; 4]);
    for lun in luns {
        out.extend_from_slice(&lun.to_bytes());
    }
    out.truncate(usize::try_from(alloc).unwrap_or(usize::MAX));
    Ok(out)
}
