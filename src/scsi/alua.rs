//! ALUA: asymmetric access states (SPC-5 5.16), kept per (logical unit,
//! target port group), the commands each state serves, and REPORT TARGET
//! PORT GROUPS data.
//!
//! Keying: arrays report ALUA states per device, so the state is kept per
//! (LU, target port group). The LUs of one conglomerate (a PE's ALU and the
//! SLUs bound behind it) are one device to ESXi (one NAA, one set of
//! paths) and share their states, so the table is keyed by (PE, target
//! port group): [`ScsiTarget::set_alua_state`](super::ScsiTarget::set_alua_state)
//! sets a whole target port group (a controller: every PE on it),
//! [`ScsiTarget::set_pe_alua_state`](super::ScsiTarget::set_pe_alua_state)
//! one PE's LUs on it. A failed PE (`ControlPlane::fail_pe`) reports
//! Unavailable on all its target port groups whatever is configured, and
//! its configured state again once restored (review S2).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use super::Sense;
use super::cdb::op;
use super::sense::SenseKey;
use crate::model::PeId;

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

    /// Whether this state serves the command with operation code
    /// `opcode` / `service_action` (the 5-bit field of CDB byte 1); `true`
    /// when the state serves the command.
    ///
    /// The sets follow SPC-5 5.16.2.4.4-5.16.2.4.6 (standby, unavailable,
    /// transitioning; SPC-4 5.11.2.4.x) as Linux LIO encodes them
    /// (`drivers/target/target_core_alua.c`, `core_alua_state_standby`,
    /// `_unavailable`, `_transition`, citing spc4r17 5.9.2.4.4; review S11):
    /// - Standby: INQUIRY, LOG SELECT/SENSE, MODE SELECT/SENSE, REPORT
    ///   LUNS, RECEIVE/SEND DIAGNOSTIC, READ CAPACITY (10) and (16),
    ///   REPORT TARGET PORT GROUPS, SET TARGET PORT GROUPS, REQUEST SENSE,
    ///   PERSISTENT RESERVE IN/OUT, READ/WRITE BUFFER;
    /// - Unavailable: INQUIRY, REPORT LUNS, REPORT and SET TARGET PORT
    ///   GROUPS, REQUEST SENSE, READ/WRITE BUFFER (no MODE SENSE, no
    ///   REPORT SUPPORTED OPERATION CODES);
    /// - Transitioning: as Unavailable without SET TARGET PORT GROUPS;
    /// - Offline: as Unavailable. SPC-5 describes offline ports as unable
    ///   to process commands at all; a port this in-process target still
    ///   reaches answers like an unavailable one (the crate's inference).
    ///
    /// Commands this target does not implement are refused as unsupported
    /// before the state is consulted; the sets name them so that a command
    /// added later lands in the right place.
    #[must_use]
    pub const fn allows(self, opcode: u8, service_action: u16) -> bool {
        const LOG_SELECT: u8 = 0x4C;
        const LOG_SENSE: u8 = 0x4D;
        const SEND_DIAGNOSTIC: u8 = 0x1D;
        const RECEIVE_DIAGNOSTIC: u8 = 0x1C;
        const READ_BUFFER: u8 = 0x3C;
        const WRITE_BUFFER: u8 = 0x3B;
        const PERSISTENT_RESERVE_IN: u8 = 0x5E;
        const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
        const MAINTENANCE_OUT: u8 = 0xA4;
        const SA_SET_TARGET_PORT_GROUPS: u16 = 0x0A;
        let rtpg =
            opcode == op::MAINTENANCE_IN && service_action == op::SA_REPORT_TARGET_PORT_GROUPS;
        let stpg = opcode == MAINTENANCE_OUT && service_action == SA_SET_TARGET_PORT_GROUPS;
        let always = matches!(
            opcode,
            op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE | READ_BUFFER | WRITE_BUFFER
        ) || rtpg;
        match self {
            Self::ActiveOptimized | Self::ActiveNonOptimized => true,
            Self::Standby => {
                always
                    || stpg
                    || matches!(
                        opcode,
                        LOG_SELECT
                            | LOG_SENSE
                            | op::MODE_SELECT_6
                            | op::MODE_SELECT_10
                            | op::MODE_SENSE_6
                            | op::MODE_SENSE_10
                            | RECEIVE_DIAGNOSTIC
                            | SEND_DIAGNOSTIC
                            | op::READ_CAPACITY_10
                            | PERSISTENT_RESERVE_IN
                            | PERSISTENT_RESERVE_OUT
                    )
                    || (opcode == op::SERVICE_ACTION_IN_16
                        && service_action == op::SA_READ_CAPACITY_16)
            }
            Self::Unavailable | Self::Offline => always || stpg,
            Self::Transitioning => always,
        }
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

/// RTPG STATUS CODE (SPC-5 6.36, REPORT TARGET PORT GROUPS): 00h "no
/// status available" until the array changes the group's state, then 02h
/// "altered by implicit asymmetric logical unit access behavior". Every
/// change this target makes is the array's own (a controller or PE
/// failure, or the embedder's `set_alua_state`): the target supports only
/// implicit ALUA (TPGS 01b, no SET TARGET PORT GROUPS), so 01h "altered by
/// SET TARGET PORT GROUPS" never applies.
pub(crate) const STATUS_NONE: u8 = 0x00;
/// See [`STATUS_NONE`].
pub(crate) const STATUS_IMPLICIT: u8 = 0x02;

/// One immutable version of the configured states.
#[derive(Clone, Debug, Default)]
struct AluaSnapshot {
    /// Whole-group (controller) states.
    groups: BTreeMap<u16, AluaState>,
    /// Per-PE states that differ from their group's.
    pes: FxHashMap<(PeId, u16), AluaState>,
    /// Per PE: how often the configured state of any of its groups changed.
    generations: FxHashMap<PeId, u64>,
    /// (PE, group) pairs whose state the array ever changed (RTPG STATUS
    /// CODE 02h); a whole-group change marks the group.
    changed_groups: BTreeSet<u16>,
    changed_pes: BTreeSet<(PeId, u16)>,
}

/// The configured ALUA states of one target: read without a lock
/// (`arc-swap`) on every command, written (rarely) under a mutex.
#[derive(Debug, Default)]
pub(crate) struct AluaTable {
    current: ArcSwap<AluaSnapshot>,
    write: Mutex<()>,
}

impl AluaTable {
    /// Adds the groups not known yet, active/optimized.
    pub(crate) fn add_groups(&self, groups: impl IntoIterator<Item = u16>) {
        let _w = self.write.lock();
        let mut next = AluaSnapshot::clone(&self.current.load());
        for g in groups {
            next.groups.entry(g).or_default();
        }
        self.current.store(Arc::new(next));
    }

    /// Sets a whole group: every PE in `pes` (those on the group) gets
    /// `state` there; returns `false` for an unknown group.
    pub(crate) fn set_group(&self, group: u16, state: AluaState, pes: &[PeId]) -> bool {
        let _w = self.write.lock();
        let now = self.current.load();
        let Some(&old) = now.groups.get(&group) else {
            return false;
        };
        let mut next = AluaSnapshot::clone(&now);
        for pe in pes {
            let before = next.pes.remove(&(*pe, group)).unwrap_or(old);
            if before != state {
                *next.generations.entry(*pe).or_default() += 1;
            }
            next.changed_pes.remove(&(*pe, group));
        }
        if old != state {
            next.changed_groups.insert(group);
        }
        next.groups.insert(group, state);
        self.current.store(Arc::new(next));
        true
    }

    /// Sets one PE's state on a known group; returns `false` for an
    /// unknown group.
    pub(crate) fn set_pe(&self, pe: PeId, group: u16, state: AluaState) -> bool {
        let _w = self.write.lock();
        let now = self.current.load();
        let Some(&group_state) = now.groups.get(&group) else {
            return false;
        };
        let before = now.pes.get(&(pe, group)).copied().unwrap_or(group_state);
        if before == state {
            return true;
        }
        let mut next = AluaSnapshot::clone(&now);
        if state == group_state {
            next.pes.remove(&(pe, group));
        } else {
            next.pes.insert((pe, group), state);
        }
        *next.generations.entry(pe).or_default() += 1;
        next.changed_pes.insert((pe, group));
        self.current.store(Arc::new(next));
        true
    }

    /// The configured state of a group as a whole.
    pub(crate) fn group(&self, group: u16) -> Option<AluaState> {
        self.current.load().groups.get(&group).copied()
    }

    /// The configured state of `pe`'s LUs on `group` (the group's, unless
    /// set per PE).
    pub(crate) fn state(&self, pe: PeId, group: u16) -> Option<AluaState> {
        let now = self.current.load();
        let group_state = *now.groups.get(&group)?;
        Some(now.pes.get(&(pe, group)).copied().unwrap_or(group_state))
    }

    /// How often the configured state of any of `pe`'s groups changed.
    pub(crate) fn generation(&self, pe: PeId) -> u64 {
        self.current
            .load()
            .generations
            .get(&pe)
            .copied()
            .unwrap_or(0)
    }

    /// Whether the array ever changed `pe`'s state on `group`.
    pub(crate) fn changed(&self, pe: PeId, group: u16) -> bool {
        let now = self.current.load();
        now.changed_groups.contains(&group) || now.changed_pes.contains(&(pe, group))
    }
}

/// One target port group as REPORT TARGET PORT GROUPS describes it.
#[derive(Debug)]
pub(crate) struct GroupReport {
    pub(crate) state: AluaState,
    /// [`STATUS_NONE`] or [`STATUS_IMPLICIT`].
    pub(crate) status: u8,
    pub(crate) ports: Vec<u16>,
}

/// REPORT TARGET PORT GROUPS parameter data for the groups in `groups`;
/// `extended` selects parameter data format 001b.
pub(crate) fn report_target_port_groups(
    groups: &BTreeMap<u16, GroupReport>,
    extended: bool,
) -> Vec<u8> {
    let mut out = vec![0u8; if extended { 8 } else { 4 }];
    if extended {
        out[4] = 0x10; // FORMAT TYPE 001b
        out[5] = 0; // IMPLICIT TRANSITION TIME: none announced
    }
    for (tpg, group) in groups {
        // PREF 0; T_SUP, O_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP (no
        // LBA-dependent).
        out.extend_from_slice(&[group.state.code(), 0xCF]);
        out.extend_from_slice(&tpg.to_be_bytes());
        out.extend_from_slice(&[0, group.status, 0, group.ports.len().min(255) as u8]);
        for port in group.ports.iter().take(255) {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&port.to_be_bytes());
        }
    }
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}
