//! Initiator names: how an array's LUN masking names a host's initiator
//! ports (iSCSI names now; Fibre Channel WWPNs are a future
//! [`InitiatorKind`]).

use std::fmt;
use std::str::FromStr;

use super::ParseError;

/// Longest iSCSI name in bytes (RFC 7143 4.2.7.1: "iSCSI names ... shall
/// not be larger than 223 bytes").
pub const MAX_INITIATOR_NAME_LEN: usize = 223;

/// Most initiator names one host carries (a named limit: the names come
/// from an administrator or an inventory feed, not from the data path).
/// 32 covers an ESXi host's iSCSI software adapter plus dependent or
/// independent hardware adapters, each with its own name.
pub const MAX_INITIATORS_PER_HOST: usize = 32;

/// The format of an [`InitiatorName`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum InitiatorKind {
    /// `iqn.YYYY-MM.<reversed domain name>[:<unique name>]` (RFC 7143
    /// 4.2.7.2, "iqn." type).
    Iqn,
    /// `eui.` and 16 hex digits: an IEEE EUI-64 (RFC 7143 4.2.7.2, "eui."
    /// type).
    Eui,
    /// `naa.` and 16 or 32 hex digits: a T11 NAA name (RFC 7143 4.2.7.2,
    /// "naa." type, from RFC 3980).
    Naa,
}

/// The name of one initiator (an iSCSI initiator node; WWPNs later), in
/// normal form: iSCSI names are case-insensitive and compared after the
/// RFC 3722 stringprep profile folds them to lower case, so the stored
/// form is lower case. This crate accepts the ASCII subset of iSCSI names
/// (letters, digits, `-`, `.`, `:`), which is what initiators generate.
///
/// # Example
/// ```
/// use vvol::{InitiatorKind, InitiatorName};
///
/// let iqn: InitiatorName = "iqn.1998-01.com.VMware:esx-01-5f3c".parse()?;
/// assert_eq!(iqn.kind(), InitiatorKind::Iqn);
/// assert_eq!(iqn.as_str(), "iqn.1998-01.com.vmware:esx-01-5f3c");
/// assert_eq!("EUI.02004567A425678D".parse::<InitiatorName>()?.as_str(), "eui.02004567a425678d");
/// assert!("iqn.1998-13.com.vmware".parse::<InitiatorName>().is_err()); // month 13
/// assert!("naa.1234".parse::<InitiatorName>().is_err()); // 16 or 32 hex digits
/// # Ok::<(), vvol::ParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InitiatorName {
    kind: InitiatorKind,
    name: String,
}

impl InitiatorName {
    /// Parses and normalizes an iSCSI name (RFC 7143 4.2.7).
    ///
    /// # Errors
    /// [`ParseError::InitiatorName`] when it is longer than
    /// [`MAX_INITIATOR_NAME_LEN`] bytes, has a character outside the
    /// accepted set, an unknown type designator, or breaks the rules of
    /// its type.
    pub fn iscsi(input: &str) -> Result<Self, ParseError> {
        let fail = |reason| ParseError::initiator_name(input, reason);
        if input.len() > MAX_INITIATOR_NAME_LEN {
            return Err(fail("longer than 223 bytes (RFC 7143 4.2.7.1)"));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'))
        {
            return Err(fail("only letters, digits, '-', '.' and ':' are accepted"));
        }
        let name = input.to_ascii_lowercase();
        let kind = if let Some(rest) = name.strip_prefix("iqn.") {
            check_iqn(rest).map_err(fail)?;
            InitiatorKind::Iqn
        } else if let Some(hex) = name.strip_prefix("eui.") {
            check_hex(hex, &[16]).map_err(fail)?;
            InitiatorKind::Eui
        } else if let Some(hex) = name.strip_prefix("naa.") {
            check_hex(hex, &[16, 32]).map_err(fail)?;
            InitiatorKind::Naa
        } else {
            return Err(fail("the type designator must be iqn., eui. or naa."));
        };
        Ok(Self { kind, name })
    }

    /// The name's format.
    #[must_use]
    pub const fn kind(&self) -> InitiatorKind {
        self.kind
    }

    /// The normalized name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

/// `YYYY-MM.<reversed domain>[:<anything>]` after `iqn.`.
fn check_iqn(rest: &str) -> Result<(), &'static str> {
    let b = rest.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !digits(0..4) || b.get(4) != Some(&b'-') || !digits(5..7) || b.get(7) != Some(&b'.') {
        return Err("an iqn. name continues with a date YYYY-MM and '.'");
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    if !(1..=12).contains(&month) {
        return Err("the month of an iqn. date is 01 to 12");
    }
    let after = &rest[8..];
    let authority = after.split_once(':').map_or(after, |(a, _)| a);
    if authority.is_empty()
        || authority
            .split('.')
            .any(|label| label.is_empty() || label.starts_with('-') || label.ends_with('-'))
    {
        return Err("an iqn. name needs a reversed domain name after its date");
    }
    Ok(())
}

fn check_hex(hex: &str, lens: &[usize]) -> Result<(), &'static str> {
    if !lens.contains(&hex.len()) {
        return Err(if lens.len() == 1 {
            "an eui. name has exactly 16 hex digits"
        } else {
            "a naa. name has 16 or 32 hex digits"
        });
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("only hex digits may follow eui. or naa.");
    }
    Ok(())
}

/// In name order (the kind follows from the name's prefix).
impl Ord for InitiatorName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

impl PartialOrd for InitiatorName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for InitiatorName {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::iscsi(s)
    }
}

impl fmt::Display for InitiatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}
