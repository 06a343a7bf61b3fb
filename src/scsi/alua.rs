//! ALUA: asymmetric access states of target port groups (SPC-5 5.16) and
//! REPORT TARGET PORT GROUPS data.

use std::collections::BTreeMap;

use super::Sense;
use super::sense::SenseKey;

/// Asymmetric access state of a target port group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AluaState {
    /// 0h: active/optimized.
    #[default]
    ActiveOptimized,
    /// 1h: active/non-optimized.
    ActiveNonOptimized,
    /// 2h: standby.
    Standby,
    /// 3h: unavailable.
    Unavailable,
    /// Eh: offline.
    Offline,
    /// Fh: transitioning between states.
    Transitioning,
}

impl AluaState {
    /// The 4-bit ASYMMETRIC ACCESS STATE code.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::ActiveOptimized => 0x0,
            Self::ActiveNonOptimized => 0x1,
            Self::Standby => 0x2,
            Self::Unavailable => 0x3,
            Self::Offline => 0xE,
            Self::Transitioning => 0xF,
        }
    }

    /// Whether media access is allowed (the active states).
    #[must_use]
    pub const fn is_active(self) -> bool {
        matches!(self, Self::ActiveOptimized | Self::ActiveNonOptimized)
    }

    /// The NOT READY sense a command that this state refuses gets:
    /// 04h/0Ah transitioning, 0Bh standby, 0Ch unavailable, 12h offline.
    #[must_use]
    pub const fn not_ready(self) -> Option<Sense> {
        let ascq = match self {
            Self::ActiveOptimized | Self::ActiveNonOptimized => return None,
            Self::Transitioning => 0x0A,
            Self::Standby => 0x0B,
            Self::Unavailable => 0x0C,
            Self::Offline => 0x12,
        };
        Some(Sense::new(SenseKey::NotReady, 0x04, ascq))
    }
}

/// REPORT TARGET PORT GROUPS parameter data for the groups in `groups`
/// (group id → (state, relative target ports)); `extended` selects
/// parameter data format 001b.
pub(crate) fn report_target_port_groups(
    groups: &BTreeMap<u16, (AluaState, Vec<u16>)>,
    extended: bool,
) -> Vec<u8> {
    let mut out = vec![0u8; if extended { 8 } else { 4 }];
    if extended {
        out[4] = 0x10; // FORMAT TYPE 001b
        out[5] = 0; // IMPLICIT TRANSITION TIME: none announced
    }
    for (tpg, (state, ports)) in groups {
        // T_SUP, O_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP (no LBA-dependent).
        out.extend_from_slice(&[state.code(), 0xCF]);
        out.extend_from_slice(&tpg.to_be_bytes());
        // Status code 02h: state changed implicitly by the target.
        out.extend_from_slice(&[0, 0x02, 0, ports.len().min(255) as u8]);
        for port in ports.iter().take(255) {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&port.to_be_bytes());
        }
    }
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}
