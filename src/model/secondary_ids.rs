//! The secondary-id space of a PE and the SCSI subsidiary LUN encoding.

use super::{ConfigError, SecondaryId};

/// Largest secondary id in simple (14-bit) logical unit addressing.
pub const MAX_SIMPLE_SECONDARY_ID: u64 = 0x3FFF;
/// Largest secondary id in extended flat space addressing (D2h, 24 bits).
pub const MAX_EXTENDED_FLAT_24_ID: u64 = 0xFF_FFFF;
/// Largest secondary id in long extended flat space addressing (E2h, 40 bits).
pub const MAX_EXTENDED_FLAT_40_ID: u64 = 0xFF_FFFF_FFFF;
/// Most secondary ids (routing slots) one PE may be configured with. The
/// router's slot table for a PE (for each host of a PE whose ids are per
/// host) grows to at most this many 16-byte slots.
pub const MAX_SECONDARY_IDS_PER_PE: u64 = 1 << 22;

/// How the subsidiary element of a SCSI LUN carries the secondary id
/// (SAM-5 address methods).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubsidiaryAddressing {
    /// Simple logical unit addressing: 14 bits in bytes 2-3.
    Simple,
    /// Extended flat space, `D2h` + 24 bits in bytes 2-5.
    ExtendedFlat24,
    /// Long extended flat space, `E2h` + 40 bits in bytes 2-7.
    ExtendedFlat40,
}

impl SubsidiaryAddressing {
    /// The largest id this addressing can carry.
    #[must_use]
    pub const fn max_id(self) -> u64 {
        match self {
            Self::Simple => MAX_SIMPLE_SECONDARY_ID,
            Self::ExtendedFlat24 => MAX_EXTENDED_FLAT_24_ID,
            Self::ExtendedFlat40 => MAX_EXTENDED_FLAT_40_ID,
        }
    }

    /// The 8-byte LUN with bytes 0-1 left zero for the PE's administrative
    /// element and the secondary id in the subsidiary element; `None` when
    /// the id does not fit this addressing.
    #[must_use]
    pub const fn subsidiary_lun(self, id: SecondaryId) -> Option<[u8; 8]> {
        let v = id.0;
        if v > self.max_id() {
            return None;
        }
        let b = v.to_be_bytes();
        Some(match self {
            Self::Simple => [0, 0, b[6] & 0x3F, b[7], 0, 0, 0, 0],
            Self::ExtendedFlat24 => [0, 0, 0xD2, b[5], b[6], b[7], 0, 0],
            Self::ExtendedFlat40 => [0, 0, 0xE2, b[3], b[4], b[5], b[6], b[7]],
        })
    }
}

impl SubsidiaryAddressing {
    /// The inverse of [`subsidiary_lun`](Self::subsidiary_lun): the
    /// secondary id an 8-byte LUN with bytes 0-1 zero carries in this
    /// addressing (SAM-5 4.7.7: simple, `D2h` extended flat space, `E2h`
    /// long extended flat space). `None` for another address method, bytes
    /// beyond the element not zero, or id 0 (the administrative LU itself).
    #[must_use]
    pub const fn secondary_id_of(self, lun: [u8; 8]) -> Option<SecondaryId> {
        if lun[0] != 0 || lun[1] != 0 {
            return None;
        }
        let v = match self {
            Self::Simple => {
                if lun[2] >> 6 != 0 || lun[4] != 0 || lun[5] != 0 || lun[6] != 0 || lun[7] != 0 {
                    return None;
                }
                ((lun[2] as u64 & 0x3F) << 8) | lun[3] as u64
            }
            Self::ExtendedFlat24 => {
                if lun[2] != 0xD2 || lun[6] != 0 || lun[7] != 0 {
                    return None;
                }
                ((lun[3] as u64) << 16) | ((lun[4] as u64) << 8) | lun[5] as u64
            }
            Self::ExtendedFlat40 => {
                if lun[2] != 0xE2 {
                    return None;
                }
                ((lun[3] as u64) << 32)
                    | ((lun[4] as u64) << 24)
                    | ((lun[5] as u64) << 16)
                    | ((lun[6] as u64) << 8)
                    | lun[7] as u64
            }
        };
        if v == 0 { None } else { Some(SecondaryId(v)) }
    }
}

/// The range of secondary ids a PE hands out, and how SCSI encodes them.
/// It is the PE's one space, or in
/// [`SecondaryIdScope::PerPeAndHost`](crate::SecondaryIdScope::PerPeAndHost)
/// scope the range of each host's own space on the PE.
///
/// The default is ids `1..=16383` in simple addressing: 0 addresses the PE
/// (the administrative logical unit) itself.
///
/// # Example
/// ```
/// use vvol::{SecondaryIdSpace, SubsidiaryAddressing};
///
/// let space = SecondaryIdSpace::default();
/// assert_eq!((space.first(), space.last()), (1, 16383));
/// let wide = SecondaryIdSpace::new(SubsidiaryAddressing::ExtendedFlat24, 1, 100_000)?;
/// assert_eq!(wide.len(), 100_000);
/// assert!(SecondaryIdSpace::new(SubsidiaryAddressing::Simple, 0, 10).is_err());
/// # Ok::<(), vvol::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SecondaryIdSpace {
    addressing: SubsidiaryAddressing,
    first: u64,
    last: u64,
}

impl Default for SecondaryIdSpace {
    fn default() -> Self {
        Self {
            addressing: SubsidiaryAddressing::Simple,
            first: 1,
            last: MAX_SIMPLE_SECONDARY_ID,
        }
    }
}

impl SecondaryIdSpace {
    /// A range `first..=last` in the given addressing.
    ///
    /// # Errors
    /// [`ConfigError::BadSecondaryIdRange`] when the range is empty, starts at
    /// 0, passes the addressing's largest id, or holds more than
    /// [`MAX_SECONDARY_IDS_PER_PE`] ids.
    pub fn new(
        addressing: SubsidiaryAddressing,
        first: u64,
        last: u64,
    ) -> Result<Self, ConfigError> {
        let bad = |reason| ConfigError::BadSecondaryIdRange {
            first,
            last,
            reason,
        };
        if first == 0 {
            return Err(bad("id 0 addresses the PE itself"));
        }
        if last < first {
            return Err(bad("the range is empty"));
        }
        if last > addressing.max_id() {
            return Err(bad("the last id does not fit the subsidiary addressing"));
        }
        if last - first + 1 > MAX_SECONDARY_IDS_PER_PE {
            return Err(bad("more ids than MAX_SECONDARY_IDS_PER_PE"));
        }
        Ok(Self {
            addressing,
            first,
            last,
        })
    }

    /// How SCSI encodes the ids.
    #[must_use]
    pub const fn addressing(&self) -> SubsidiaryAddressing {
        self.addressing
    }

    /// The first id handed out.
    #[must_use]
    pub const fn first(&self) -> u64 {
        self.first
    }

    /// The last id handed out.
    #[must_use]
    pub const fn last(&self) -> u64 {
        self.last
    }

    /// How many ids the range holds (never 0).
    #[must_use]
    pub const fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Always false: a range holds at least one id.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Whether `id` lies in the range.
    #[must_use]
    pub const fn contains(&self, id: SecondaryId) -> bool {
        id.0 >= self.first && id.0 <= self.last
    }
}
