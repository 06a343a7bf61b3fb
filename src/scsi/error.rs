//! Errors of the SCSI layer that are not SCSI status (those are
//! [`Sense`](super::Sense) data): malformed LUNs, vendor id strings and
//! target configuration.

use crate::model::{ArrayId, Naa, PeId, VvolId};

/// Why 8 LUN bytes or a vendor secondary-id string were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LunError {
    /// An extended logical unit addressing form that SAM-5 reserves (or
    /// assigns to T11 / FC-SB-5).
    #[error("LUN byte {byte:#04x} at offset {offset} uses a reserved extended address method")]
    ReservedAddressMethod {
        /// The first byte of the level.
        byte: u8,
        /// Its offset in the 8-byte LUN.
        offset: usize,
    },
    /// A level is longer than the bytes left in the LUN.
    #[error("a {len}-byte LUN level at offset {offset} does not fit in 8 bytes")]
    Truncated {
        /// Where the level starts.
        offset: usize,
        /// Its length.
        len: usize,
    },
    /// A form that must be alone (well-known LUN, LUN not specified, or an
    /// extended flat space LUN) is followed by non-zero bytes, or placed
    /// below the first level.
    #[error("LUN level at offset {offset} must be the only level")]
    NotSingleLevel {
        /// Where the offending level starts.
        offset: usize,
    },
    /// More than four levels, or levels whose bus identifier says no next
    /// level follows but non-zero bytes do.
    #[error("non-zero LUN bytes follow the last level at offset {offset}")]
    TrailingBytes {
        /// The first non-zero byte after the last level.
        offset: usize,
    },
    /// A value does not fit the field of its address method.
    #[error("value {value:#x} does not fit {method} (max {max:#x})")]
    ValueTooLarge {
        /// The address method.
        method: &'static str,
        /// The value.
        value: u64,
        /// The largest value the method carries.
        max: u64,
    },
    /// More levels than the 8 bytes hold.
    #[error("{levels} LUN levels need {bytes} bytes; a LUN has 8")]
    TooLong {
        /// How many levels were given.
        levels: usize,
        /// How many bytes they need.
        bytes: usize,
    },
    /// Not a conglomerate LUN: bytes 0-1 are not simple logical unit
    /// addressing, or bytes 2-7 are not a subsidiary element.
    #[error("not a conglomerate LUN: {reason}")]
    NotConglomerate {
        /// What is wrong.
        reason: &'static str,
    },
    /// A vendor secondary-id string is malformed.
    #[error("bad secondary id text {text:?}: {reason}")]
    BadText {
        /// The text (at most 64 characters of it).
        text: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl LunError {
    pub(crate) fn text(text: &str, reason: &'static str) -> Self {
        Self::BadText {
            text: text.chars().take(64).collect(),
            reason,
        }
    }
}

/// Why a [`ScsiTarget`](super::ScsiTarget) could not be built or asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScsiError {
    /// The control plane does not know the array.
    #[error(transparent)]
    Control(#[from] crate::ControlError),
    /// Two vVols of one array derive the same NAA designator (their UUIDs
    /// share the low 100 bits), or a vVol's equals a PE's.
    #[error("{vvol} and {other} of {array} derive the same designator {naa}")]
    NaaCollision {
        /// The array.
        array: ArrayId,
        /// The vVol whose designator was asked for.
        vvol: VvolId,
        /// The vVol (or PE NAA owner, printed as its vVol-less form) it collides with.
        other: String,
        /// The colliding designator.
        naa: Naa,
    },
    /// Two SCSI PEs of the array use the same administrative LUN.
    #[error("{pe} and {other} of {array} both use administrative LUN {lun}")]
    DuplicateAdminLun {
        /// The array.
        array: ArrayId,
        /// One PE.
        pe: PeId,
        /// The other PE.
        other: PeId,
        /// The LUN.
        lun: u16,
    },
    /// No target port group has this id.
    #[error("target port group {0} does not exist")]
    UnknownTargetPortGroup(u16),
    /// The target port does not exist on the array.
    #[error("relative target port {0} does not exist")]
    UnknownTargetPort(u16),
    /// The PE is not a SCSI PE this target serves through the target port
    /// group (see [`ScsiTarget::set_pe_alua_state`](super::ScsiTarget::set_pe_alua_state)).
    #[error("{pe} is not served through target port group {target_port_group}")]
    PeNotInPortGroup {
        /// The PE.
        pe: PeId,
        /// The target port group.
        target_port_group: u16,
    },
}
