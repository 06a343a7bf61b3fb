//! The error for text forms that do not parse.

/// Longest input echoed back inside a [`ParseError`]; longer input is cut.
pub const MAX_ECHOED_INPUT: usize = 64;

/// A text form (vVol id, NAA name, secondary id) that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not a vVol id of the form `rfc4122.<uuid>`.
    #[error("invalid vVol id {input:?}: {reason}")]
    VvolId {
        /// The input, cut to [`MAX_ECHOED_INPUT`] characters.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not an NAA 6 name of the form `naa.<32 hex digits>`.
    #[error("invalid NAA name {input:?}: {reason}")]
    Naa {
        /// The input, cut to [`MAX_ECHOED_INPUT`] characters.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not an iSCSI name (RFC 7143 4.2.7): `iqn.`, `eui.` or `naa.`.
    #[error("invalid initiator name {input:?}: {reason}")]
    InitiatorName {
        /// The input, cut to [`MAX_ECHOED_INPUT`] characters.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ParseError {
    pub(crate) fn vvol_id(input: &str, reason: &'static str) -> Self {
        Self::VvolId {
            input: echo(input),
            reason,
        }
    }

    pub(crate) fn initiator_name(input: &str, reason: &'static str) -> Self {
        Self::InitiatorName {
            input: echo(input),
            reason,
        }
    }

    pub(crate) fn naa(input: &str, reason: &'static str) -> Self {
        Self::Naa {
            input: echo(input),
            reason,
        }
    }
}

pub(crate) fn echo(input: &str) -> String {
    input.chars().take(MAX_ECHOED_INPUT).collect()
}
