//! T10 NAA 6 designators (IEEE Registered Extended), the names of SCSI PEs.

use std::fmt;
use std::str::FromStr;

use super::ParseError;

/// Largest IEEE company id (24 bits).
pub const MAX_IEEE_COMPANY_ID: u32 = 0x00FF_FFFF;

/// A 16-byte NAA 6 designator, printed as `naa.<32 lowercase hex digits>`.
///
/// Layout: NAA (4 bits, always 6), IEEE company id (24 bits), vendor-specific
/// identifier (36 bits), vendor-specific extension (64 bits).
///
/// # Example
/// ```
/// use vvol::Naa;
///
/// let naa: Naa = "naa.624a937076a1e05df05441ba000253a3".parse()?;
/// assert_eq!(naa.ieee_company_id(), 0x24a937);
/// assert_eq!(naa.to_string(), "naa.624a937076a1e05df05441ba000253a3");
/// assert_eq!(Naa::from_parts(0x24a937, 0x076a1e05d, 0xf05441ba000253a3), Some(naa));
/// # Ok::<(), vvol::ParseError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Naa([u8; 16]);

impl Naa {
    /// Builds a designator from its fields; `None` when the company id has more
    /// than 24 bits or the vendor id more than 36 bits.
    #[must_use]
    pub const fn from_parts(ieee_company_id: u32, vendor_id: u64, extension: u64) -> Option<Self> {
        if ieee_company_id > MAX_IEEE_COMPANY_ID || vendor_id >> 36 != 0 {
            return None;
        }
        let high: u64 = (6u64 << 60) | ((ieee_company_id as u64) << 36) | vendor_id;
        let value = ((high as u128) << 64) | extension as u128;
        Some(Self(value.to_be_bytes()))
    }

    /// Accepts 16 raw bytes when they carry NAA 6.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        if bytes[0] >> 4 == 6 {
            Some(Self(bytes))
        } else {
            None
        }
    }

    /// The 16 designator bytes as VPD page 83h carries them.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// The 24-bit IEEE company id.
    #[must_use]
    pub const fn ieee_company_id(self) -> u32 {
        ((self.0[0] as u32 & 0x0F) << 20)
            | ((self.0[1] as u32) << 12)
            | ((self.0[2] as u32) << 4)
            | (self.0[3] as u32 >> 4)
    }
}

impl fmt::Display for Naa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("naa.")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Naa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Naa {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("naa.")
            .ok_or_else(|| ParseError::naa(s, "missing the `naa.` prefix"))?;
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseError::naa(s, "expected 32 hex digits"));
        }
        let value = u128::from_str_radix(hex, 16)
            .map_err(|_| ParseError::naa(s, "expected 32 hex digits"))?;
        Self::from_bytes(value.to_be_bytes())
            .ok_or_else(|| ParseError::naa(s, "not an NAA 6 (IEEE Registered Extended) name"))
    }
}
