//! The command table: which commands each kind of logical unit supports,
//! with CDB usage data for REPORT SUPPORTED OPERATION CODES (A3h/0Ch).

use super::Sense;
use super::cdb::op;
use super::target::{CmdResult, Ctx, Lu};

/// One supported command.
#[derive(Debug)]
pub(crate) struct CommandInfo {
    pub(crate) opcode: u8,
    pub(crate) service_action: Option<u16>,
    /// CDB usage data (SPC-5 6.35.3, one_command parameter data): the
    /// opcode, then a mask of the bits the target evaluates, with the
    /// service action code itself in the SERVICE ACTION field's position.
    /// Protection fields (RDPROTECT, WRPROTECT) and ANCHOR are refused when
    /// non-zero, so their bits are clear; DPO and FUA are set wherever MODE
    /// SENSE reports DPOFUA=1.
    pub(crate) usage: &'static [u8],
    /// Only SLUs support it (writes and logical block provisioning). The
    /// ALU accepts every other entry: its one all-zero, read-only block
    /// (see `block.rs`) takes READ, READ CAPACITY and SYNCHRONIZE CACHE, so
    /// REPORT SUPPORTED OPERATION CODES sent to it lists exactly what it
    /// accepts (SPC-5 6.35: the commands "supported by the logical unit").
    pub(crate) slu_only: bool,
}

macro_rules! cmd {
    ($op:expr, $sa:expr, $slu:expr, [$($u:expr),*]) => {
        CommandInfo { opcode: $op, service_action: $sa, usage: &[$($u),*], slu_only: $slu }
    };
}

/// PERSISTENT RESERVE IN with service action `$sa` (SPC-5 6.16).
macro_rules! pr_in {
    ($sa:expr) => {
        cmd!(
            op::PERSISTENT_RESERVE_IN,
            Some($sa),
            false,
            [0x5E, $sa as u8, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04]
        )
    };
}

/// PERSISTENT RESERVE OUT with service action `$sa` (SPC-5 6.17); `$st`
/// is the usage of the SCOPE and TYPE byte.
macro_rules! pr_out {
    ($sa:expr, $st:expr) => {
        cmd!(
            op::PERSISTENT_RESERVE_OUT,
            Some($sa),
            false,
            [0x5F, $sa as u8, $st, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x04]
        )
    };
}

/// Every command, in opcode order.
pub(crate) const COMMANDS: &[CommandInfo] = &[
    cmd!(op::TEST_UNIT_READY, None, false, [0x00, 0, 0, 0, 0, 0x04]),
    cmd!(
        op::REQUEST_SENSE,
        None,
        false,
        [0x03, 0x01, 0, 0, 0xFF, 0x04]
    ),
    cmd!(
        op::READ_6,
        None,
        false,
        [0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0x04]
    ),
    cmd!(
        op::WRITE_6,
        None,
        true,
        [0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0x04]
    ),
    cmd!(
        op::INQUIRY,
        None,
        false,
        [0x12, 0x01, 0xFF, 0xFF, 0xFF, 0x04]
    ),
    cmd!(
        op::MODE_SELECT_6,
        None,
        false,
        [0x15, 0x11, 0, 0, 0xFF, 0x04]
    ),
    cmd!(op::RESERVE_6, None, false, [0x16, 0, 0, 0, 0, 0x04]),
    cmd!(op::RELEASE_6, None, false, [0x17, 0, 0, 0, 0, 0x04]),
    cmd!(
        op::MODE_SENSE_6,
        None,
        false,
        [0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0x04]
    ),
    cmd!(
        op::READ_CAPACITY_10,
        None,
        false,
        [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0x04]
    ),
    cmd!(
        op::READ_10,
        None,
        false,
        [0x28, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0x04]
    ),
    cmd!(
        op::WRITE_10,
        None,
        true,
        [0x2A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0x04]
    ),
    cmd!(
        op::SYNCHRONIZE_CACHE_10,
        None,
        false,
        [0x35, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0x04]
    ),
    cmd!(
        op::UNMAP,
        None,
        true,
        [0x42, 0x01, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04]
    ),
    cmd!(
        op::MODE_SELECT_10,
        None,
        false,
        [0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04]
    ),
    cmd!(
        op::MODE_SENSE_10,
        None,
        false,
        [0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0x04]
    ),
    pr_in!(op::SA_READ_KEYS),
    pr_in!(op::SA_READ_RESERVATION),
    pr_in!(op::SA_REPORT_CAPABILITIES),
    // REGISTER, CLEAR and REGISTER AND IGNORE EXISTING KEY ignore SCOPE
    // and TYPE (SPC-5 6.17.2); the others evaluate them.
    pr_out!(op::SA_REGISTER, 0x00),
    pr_out!(op::SA_RESERVE, 0xFF),
    pr_out!(op::SA_RELEASE, 0xFF),
    pr_out!(op::SA_CLEAR, 0x00),
    pr_out!(op::SA_PREEMPT, 0xFF),
    pr_out!(op::SA_PREEMPT_AND_ABORT, 0xFF),
    pr_out!(op::SA_REGISTER_AND_IGNORE, 0x00),
    cmd!(
        op::READ_16,
        None,
        false,
        [
            0x88, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            0x04
        ]
    ),
    cmd!(
        op::COMPARE_AND_WRITE,
        None,
        true,
        [
            0x89, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0, 0x04
        ]
    ),
    cmd!(
        op::WRITE_16,
        None,
        true,
        [
            0x8A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            0x04
        ]
    ),
    cmd!(
        op::SYNCHRONIZE_CACHE_16,
        None,
        false,
        [
            0x91, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            0x04
        ]
    ),
    cmd!(
        op::WRITE_SAME_16,
        None,
        true,
        [
            0x93, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            0x04
        ]
    ),
    cmd!(
        op::SERVICE_ACTION_IN_16,
        Some(op::SA_READ_CAPACITY_16),
        false,
        [
            0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x04
        ]
    ),
    cmd!(
        op::SERVICE_ACTION_IN_16,
        Some(op::SA_GET_LBA_STATUS),
        true,
        [
            0x9E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            0x04
        ]
    ),
    cmd!(
        op::REPORT_LUNS,
        None,
        false,
        [0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x04]
    ),
    cmd!(
        op::MAINTENANCE_IN,
        Some(op::SA_REPORT_TARGET_PORT_GROUPS),
        false,
        [0xA3, 0xEA, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x04]
    ),
    cmd!(
        op::MAINTENANCE_IN,
        Some(op::SA_REPORT_SUPPORTED_OPCODES),
        false,
        [
            0xA3, 0x0C, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x04
        ]
    ),
];

/// Whether `opcode` has service actions in the table.
pub(crate) fn has_service_actions(opcode: u8) -> bool {
    COMMANDS
        .iter()
        .any(|c| c.opcode == opcode && c.service_action.is_some())
}

/// The table entry of `opcode` (and its service action in `cdb_sa`).
pub(crate) fn lookup(opcode: u8, cdb_sa: u16) -> Option<&'static CommandInfo> {
    COMMANDS
        .iter()
        .find(|c| c.opcode == opcode && c.service_action.is_none_or(|sa| sa == cdb_sa))
}

fn applies(c: &CommandInfo, lu: &Lu) -> bool {
    !c.slu_only || matches!(lu, Lu::Slu(_))
}

fn timeouts() -> [u8; 12] {
    // Length 0Ah; no nominal or recommended timeout announced.
    [0x00, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// REPORT SUPPORTED OPERATION CODES.
pub(crate) fn report_supported_opcodes(ctx: &Ctx<'_>) -> CmdResult {
    let cdb = ctx.cdb;
    cdb.reserved(2, 0x78)?;
    let rctd = cdb.u8(2) & 0x80 != 0;
    let options = cdb.u8(2) & 0x07;
    let opcode = cdb.u8(3);
    let sa = cdb.be(4, 2) as u16;
    let alloc = cdb.be(6, 4) as usize;
    let mut out = Vec::new();
    if options == 0 {
        out.extend_from_slice(&[0; 4]);
        for c in COMMANDS.iter().filter(|c| applies(c, &ctx.lu)) {
            let sa = c.service_action.unwrap_or(0);
            let mut flags = u8::from(c.service_action.is_some());
            if rctd {
                flags |= 0x02;
            }
            out.extend_from_slice(&[c.opcode, 0]);
            out.extend_from_slice(&sa.to_be_bytes());
            out.extend_from_slice(&[0, flags]);
            out.extend_from_slice(&(c.usage.len() as u16).to_be_bytes());
            if rctd {
                out.extend_from_slice(&timeouts());
            }
        }
        let len = (out.len() - 4) as u32;
        out[..4].copy_from_slice(&len.to_be_bytes());
    } else {
        let with_sa = match options {
            1 if has_service_actions(opcode) => {
                return Err(Sense::invalid_field_in_cdb(3, None).into());
            }
            1 => false,
            2 if !has_service_actions(opcode) => {
                return Err(Sense::invalid_field_in_cdb(3, None).into());
            }
            2 => true,
            3 => has_service_actions(opcode),
            _ => return Err(Sense::invalid_field_in_cdb(2, Some(2)).into()),
        };
        let found = COMMANDS.iter().find(|c| {
            c.opcode == opcode && (!with_sa || c.service_action == Some(sa)) && applies(c, &ctx.lu)
        });
        let ctdp = if rctd { 0x80 } else { 0 };
        match found {
            Some(c) => {
                out.extend_from_slice(&[0, ctdp | 0x03]);
                out.extend_from_slice(&(c.usage.len() as u16).to_be_bytes());
                out.extend_from_slice(c.usage);
            }
            None => out.extend_from_slice(&[0, ctdp | 0x01, 0, 0]),
        }
        if rctd {
            out.extend_from_slice(&timeouts());
        }
    }
    out.truncate(alloc);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_data_carries_the_service_action_where_the_cdb_has_it() {
        for c in COMMANDS {
            assert_eq!(c.usage[0], c.opcode);
            assert_eq!(
                c.usage.last(),
                Some(&0x04),
                "{:#04x}: CONTROL byte",
                c.opcode
            );
            if let Some(sa) = c.service_action {
                // 9Eh and A3h keep the service action in byte 1, bits 4-0.
                assert_eq!(
                    u16::from(c.usage[1] & 0x1F),
                    sa,
                    "{:#04x}/{sa:#x}",
                    c.opcode
                );
            }
        }
    }
}
