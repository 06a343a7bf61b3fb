//! The 8-byte SCSI LUN (SAM-5 4.7): address methods, hierarchical levels,
//! the logical unit conglomerate structure, and vendor secondary-id text.

use std::fmt;
use std::str::FromStr;

use super::LunError;
use crate::model::{SecondaryId, SubsidiaryAddressing};

/// Most levels in a hierarchical LUN (SAM-5: first to fourth level).
pub const MAX_LUN_LEVELS: usize = 4;
/// Largest 14-bit value (flat space and simple logical unit addressing).
pub const MAX_14_BIT: u16 = 0x3FFF;
/// Well-known LUN number of the REPORT LUNS well-known logical unit.
pub const WLUN_REPORT_LUNS: u8 = 0x01;

/// One level of a hierarchical LUN, by SAM-5 address method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LunLevel {
    /// 00b: peripheral device addressing (bus identifier, target or LUN).
    /// Inside a conglomerate the same bytes are simple logical unit
    /// addressing with a 14-bit value.
    Peripheral {
        /// Bus identifier (6 bits); 0 means the LUN is at this level.
        bus: u8,
        /// Target or LUN (8 bits).
        target: u8,
    },
    /// 01b: flat space addressing (14 bits).
    Flat(u16),
    /// 10b: logical unit addressing.
    LogicalUnit {
        /// Target (6 bits).
        target: u8,
        /// Bus (3 bits).
        bus: u8,
        /// LUN (5 bits).
        lun: u8,
    },
    /// C1h: a well-known logical unit (`C101h`: REPORT LUNS).
    WellKnown(u8),
    /// D2h: extended flat space addressing (24 bits).
    ExtendedFlat(u32),
    /// E2h: long extended flat space addressing (40 bits).
    LongExtendedFlat(u64),
    /// FFh...: logical unit not specified (all 8 bytes FFh).
    NotSpecified,
}

impl LunLevel {
    /// Bytes this level takes.
    #[must_use]
    pub const fn len(&self) -> usize {
        match self {
            Self::ExtendedFlat(_) => 4,
            Self::LongExtendedFlat(_) => 6,
            Self::NotSpecified => 8,
            _ => 2,
        }
    }

    /// Always false: a level has at least 2 bytes.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        false
    }

    fn write(&self, out: &mut [u8]) -> Result<(), LunError> {
        let too_large =
            |method, value: u64, max: u64| LunError::ValueTooLarge { method, value, max };
        match *self {
            Self::Peripheral { bus, target } => {
                if bus > 0x3F {
                    return Err(too_large("peripheral bus", bus.into(), 0x3F));
                }
                out[0] = bus;
                out[1] = target;
            }
            Self::Flat(v) => {
                if v > MAX_14_BIT {
                    return Err(too_large("flat space", v.into(), MAX_14_BIT.into()));
                }
                out[..2].copy_from_slice(&(0x4000 | v).to_be_bytes());
            }
            Self::LogicalUnit { target, bus, lun } => {
                if target > 0x3F || bus > 7 || lun > 0x1F {
                    let packed = (u64::from(target) << 8) | (u64::from(bus) << 5) | u64::from(lun);
                    return Err(too_large("logical unit", packed, 0x3FFF));
                }
                out[0] = 0x80 | target;
                out[1] = (bus << 5) | lun;
            }
            Self::WellKnown(v) => {
                out[0] = 0xC1;
                out[1] = v;
            }
            Self::ExtendedFlat(v) => {
                if v > 0xFF_FFFF {
                    return Err(too_large("extended flat space", v.into(), 0xFF_FFFF));
                }
                out[0] = 0xD2;
                out[1..4].copy_from_slice(&v.to_be_bytes()[1..]);
            }
            Self::LongExtendedFlat(v) => {
                if v > 0xFF_FFFF_FFFF {
                    return Err(too_large("long extended flat space", v, 0xFF_FFFF_FFFF));
                }
                out[0] = 0xE2;
                out[1..6].copy_from_slice(&v.to_be_bytes()[3..]);
            }
            Self::NotSpecified => out[..8].fill(0xFF),
        }
        Ok(())
    }

    /// Reads the level at `offset` of `lun`.
    fn read(lun: &[u8; 8], offset: usize) -> Result<Self, LunError> {
        let b0 = lun[offset];
        let need = |len: usize| {
            if offset + len > 8 {
                Err(LunError::Truncated { offset, len })
            } else {
                Ok(())
            }
        };
        need(2)?;
        let b1 = lun[offset + 1];
        Ok(match b0 >> 6 {
            0 => Self::Peripheral {
                bus: b0 & 0x3F,
                target: b1,
            },
            1 => Self::Flat(u16::from_be_bytes([b0 & 0x3F, b1])),
            2 => Self::LogicalUnit {
                target: b0 & 0x3F,
                bus: b1 >> 5,
                lun: b1 & 0x1F,
            },
            _ => match b0 {
                0xC1 => Self::WellKnown(b1),
                0xD2 => {
                    need(4)?;
                    Self::ExtendedFlat(u32::from_be_bytes([
                        0,
                        b1,
                        lun[offset + 2],
                        lun[offset + 3],
                    ]))
                }
                0xE2 => {
                    need(6)?;
                    let mut v = [0u8; 8];
                    v[3..].copy_from_slice(&lun[offset + 1..offset + 6]);
                    Self::LongExtendedFlat(u64::from_be_bytes(v))
                }
                0xFF if offset == 0 && lun.iter().all(|&b| b == 0xFF) => Self::NotSpecified,
                _ => return Err(LunError::ReservedAddressMethod { byte: b0, offset }),
            },
        })
    }
}

/// The subsidiary element of a conglomerate LUN (bytes 2-7): the SLU's
/// number in one of the three forms SAM-5 allows there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubsidiaryElement {
    /// Simple logical unit addressing, 14 bits in bytes 2-3.
    Simple(u16),
    /// Extended flat space, `D2h` + 24 bits in bytes 2-5.
    ExtendedFlat(u32),
    /// Long extended flat space, `E2h` + 40 bits in bytes 2-7.
    LongExtendedFlat(u64),
}

impl SubsidiaryElement {
    /// The element for `id` in `addressing`; `None` when it does not fit.
    #[must_use]
    pub fn new(addressing: SubsidiaryAddressing, id: SecondaryId) -> Option<Self> {
        if id.0 > addressing.max_id() {
            return None;
        }
        Some(match addressing {
            SubsidiaryAddressing::Simple => Self::Simple(id.0 as u16),
            SubsidiaryAddressing::ExtendedFlat24 => Self::ExtendedFlat(id.0 as u32),
            _ => Self::LongExtendedFlat(id.0),
        })
    }

    /// The addressing the element uses.
    #[must_use]
    pub const fn addressing(self) -> SubsidiaryAddressing {
        match self {
            Self::Simple(_) => SubsidiaryAddressing::Simple,
            Self::ExtendedFlat(_) => SubsidiaryAddressing::ExtendedFlat24,
            Self::LongExtendedFlat(_) => SubsidiaryAddressing::ExtendedFlat40,
        }
    }

    /// The secondary id it carries.
    #[must_use]
    pub const fn secondary_id(self) -> SecondaryId {
        SecondaryId(match self {
            Self::Simple(v) => v as u64,
            Self::ExtendedFlat(v) => v as u64,
            Self::LongExtendedFlat(v) => v,
        })
    }
}

/// A conglomerate LUN: the administrative element (the ALU's 14-bit LUN in
/// simple addressing) and, for an SLU, the subsidiary element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConglomerateLun {
    /// The ALU's LUN (bytes 0-1, 14 bits).
    pub admin: u16,
    /// The SLU in bytes 2-7; `None` (all zero) addresses the ALU itself.
    pub subsidiary: Option<SubsidiaryElement>,
}

/// An 8-byte SCSI LUN as it travels in a CDB's nexus or REPORT LUNS data.
///
/// # Example
/// ```
/// use vvol::scsi::{ConglomerateLun, Lun, SubsidiaryElement};
///
/// // PE at LUN 255, SLU 1 in simple addressing.
/// let lun = Lun::conglomerate(255, Some(SubsidiaryElement::Simple(1)))?;
/// assert_eq!(lun.to_string(), "00ff000100000000");
/// assert_eq!(
///     lun.decode_conglomerate()?,
///     ConglomerateLun { admin: 255, subsidiary: Some(SubsidiaryElement::Simple(1)) }
/// );
/// assert!("c101000000000000".parse::<Lun>()?.is_report_luns_wlun());
/// # Ok::<(), vvol::scsi::LunError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lun(pub [u8; 8]);

/// The REPORT LUNS well-known logical unit, `C101000000000000h`.
pub const REPORT_LUNS_WLUN: Lun = Lun([0xC1, WLUN_REPORT_LUNS, 0, 0, 0, 0, 0, 0]);

impl Lun {
    /// The raw bytes.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// Whether this is the REPORT LUNS well-known LUN.
    #[must_use]
    pub fn is_report_luns_wlun(self) -> bool {
        self == REPORT_LUNS_WLUN
    }

    /// Whether this is LUN 0 (all bytes zero).
    #[must_use]
    pub fn is_zero(self) -> bool {
        self.0 == [0; 8]
    }

    /// Builds a LUN from up to four levels (SAM-5 hierarchical addressing);
    /// unused bytes are zero.
    ///
    /// # Errors
    /// [`LunError::TooLong`], [`LunError::ValueTooLarge`],
    /// [`LunError::NotSingleLevel`] for a well-known, not-specified or
    /// extended flat space level that is not alone.
    pub fn from_levels(levels: &[LunLevel]) -> Result<Self, LunError> {
        let bytes: usize = levels.iter().map(LunLevel::len).sum();
        if bytes > 8 || levels.len() > MAX_LUN_LEVELS {
            return Err(LunError::TooLong {
                levels: levels.len(),
                bytes,
            });
        }
        let mut out = [0u8; 8];
        let mut at = 0;
        for level in levels {
            let alone = matches!(level, LunLevel::WellKnown(_) | LunLevel::NotSpecified);
            if alone && levels.len() > 1 {
                return Err(LunError::NotSingleLevel { offset: at });
            }
            level.write(&mut out[at..])?;
            at += level.len();
        }
        Ok(Self(out))
    }

    /// Decodes the levels (SAM-5 4.7, as sg3_utils' `decode_lun` walks
    /// them): a level follows while non-zero bytes remain.
    ///
    /// # Errors
    /// [`LunError::ReservedAddressMethod`], [`LunError::Truncated`],
    /// [`LunError::NotSingleLevel`], [`LunError::TrailingBytes`].
    pub fn decode(self) -> Result<Vec<LunLevel>, LunError> {
        let mut levels = Vec::with_capacity(MAX_LUN_LEVELS);
        let mut at = 0;
        loop {
            let level = LunLevel::read(&self.0, at)?;
            let alone = matches!(level, LunLevel::WellKnown(_) | LunLevel::NotSpecified);
            if alone && at != 0 {
                return Err(LunError::NotSingleLevel { offset: at });
            }
            at += level.len();
            levels.push(level);
            match self.0[at.min(8)..].iter().position(|&b| b != 0) {
                None => return Ok(levels),
                Some(_) if alone => return Err(LunError::NotSingleLevel { offset: 0 }),
                Some(p) if levels.len() == MAX_LUN_LEVELS => {
                    return Err(LunError::TrailingBytes { offset: at + p });
                }
                Some(_) => {}
            }
        }
    }

    /// The LUN of a conglomerate member: `admin` in simple addressing in
    /// bytes 0-1, `subsidiary` in bytes 2-7 (all zero for the ALU).
    ///
    /// # Errors
    /// [`LunError::ValueTooLarge`] when a value passes its field.
    pub fn conglomerate(
        admin: u16,
        subsidiary: Option<SubsidiaryElement>,
    ) -> Result<Self, LunError> {
        if admin > MAX_14_BIT {
            return Err(LunError::ValueTooLarge {
                method: "simple logical unit (administrative element)",
                value: admin.into(),
                max: MAX_14_BIT.into(),
            });
        }
        let mut out = [0u8; 8];
        out[..2].copy_from_slice(&admin.to_be_bytes());
        match subsidiary {
            None => {}
            Some(SubsidiaryElement::Simple(v)) => {
                if v > MAX_14_BIT {
                    return Err(LunError::ValueTooLarge {
                        method: "simple logical unit (subsidiary element)",
                        value: v.into(),
                        max: MAX_14_BIT.into(),
                    });
                }
                out[2..4].copy_from_slice(&v.to_be_bytes());
            }
            Some(SubsidiaryElement::ExtendedFlat(v)) => {
                LunLevel::ExtendedFlat(v).write(&mut out[2..])?;
            }
            Some(SubsidiaryElement::LongExtendedFlat(v)) => {
                LunLevel::LongExtendedFlat(v).write(&mut out[2..])?;
            }
        }
        Ok(Self(out))
    }

    /// The LUN an administrative logical unit (a PE) is reported at and
    /// addressed by: a single-level LUN, in peripheral device addressing
    /// (00b, bus 0) up to 255 and in flat space addressing (01b) from 256
    /// to 16383, as SAM-5 4.7.3 lays out single-level LUNs and as hosts
    /// build them from a LUN id (ESXi: `40xxh` for ids of 256 and above;
    /// `sg_luns` without `--lu_cong` decodes it as "Flat space addressing:
    /// lun=256" where the simple form `0100h` reads as bus 1, target 0).
    /// The conglomerate form of [`conglomerate`](Self::conglomerate)
    /// (`admin, None`) names the same LU and is accepted too (see
    /// [`decode_addressed`](Self::decode_addressed)).
    ///
    /// # Errors
    /// [`LunError::ValueTooLarge`] past 14 bits.
    ///
    /// # Example
    /// ```
    /// use vvol::scsi::Lun;
    ///
    /// assert_eq!(Lun::administrative(255)?.to_string(), "00ff000000000000");
    /// assert_eq!(Lun::administrative(256)?.to_string(), "4100000000000000");
    /// # Ok::<(), vvol::scsi::LunError>(())
    /// ```
    pub fn administrative(admin: u16) -> Result<Self, LunError> {
        if admin <= 0xFF {
            return Self::conglomerate(admin, None);
        }
        Self::from_levels(&[LunLevel::Flat(admin)]).map_err(|_| LunError::ValueTooLarge {
            method: "flat space (administrative logical unit)",
            value: admin.into(),
            max: MAX_14_BIT.into(),
        })
    }

    /// Reads the LUN the way the target resolves it: as
    /// [`decode_conglomerate`](Self::decode_conglomerate) does, except that
    /// the administrative element may also be in flat space addressing
    /// (01b), which carries the same 14-bit LU number (SAM-5 4.7.3: flat
    /// space addressing is the single-level form for LUNs 256-16383, and
    /// the form ESXi uses), for the ALU alone and with a subsidiary element.
    ///
    /// # Errors
    /// As [`decode_conglomerate`](Self::decode_conglomerate).
    pub fn decode_addressed(self) -> Result<ConglomerateLun, LunError> {
        let mut b = self.0;
        if b[0] >> 6 == 1 {
            b[0] &= 0x3F;
        }
        Self(b).decode_conglomerate()
    }

    /// Reads the LUN as a conglomerate LUN (how a host that saw LU_CONG=1
    /// reads it).
    ///
    /// # Errors
    /// [`LunError::NotConglomerate`] when bytes 0-1 are not simple
    /// addressing or bytes 2-7 are no subsidiary element;
    /// [`LunError::TrailingBytes`] when non-zero bytes follow the element.
    pub fn decode_conglomerate(self) -> Result<ConglomerateLun, LunError> {
        let b = self.0;
        if b[0] >> 6 != 0 {
            return Err(LunError::NotConglomerate {
                reason: "the administrative element is not simple logical unit addressing",
            });
        }
        let admin = u16::from_be_bytes([b[0], b[1]]);
        let trailing = |from: usize| match b[from..].iter().position(|&x| x != 0) {
            Some(p) => Err(LunError::TrailingBytes { offset: from + p }),
            None => Ok(()),
        };
        if b[2..].iter().all(|&x| x == 0) {
            return Ok(ConglomerateLun {
                admin,
                subsidiary: None,
            });
        }
        let subsidiary = match b[2] {
            x if x >> 6 == 0 => {
                trailing(4)?;
                SubsidiaryElement::Simple(u16::from_be_bytes([b[2], b[3]]))
            }
            0xD2 => {
                trailing(6)?;
                SubsidiaryElement::ExtendedFlat(u32::from_be_bytes([0, b[3], b[4], b[5]]))
            }
            0xE2 => SubsidiaryElement::LongExtendedFlat(u64::from_be_bytes([
                0, 0, 0, b[3], b[4], b[5], b[6], b[7],
            ])),
            _ => {
                return Err(LunError::NotConglomerate {
                    reason: "the subsidiary element is not simple or extended flat space addressing",
                });
            }
        };
        Ok(ConglomerateLun {
            admin,
            subsidiary: Some(subsidiary),
        })
    }
}

impl From<u64> for Lun {
    fn from(v: u64) -> Self {
        Self(v.to_be_bytes())
    }
}

impl From<Lun> for u64 {
    fn from(lun: Lun) -> Self {
        u64::from_be_bytes(lun.0)
    }
}

impl fmt::Display for Lun {
    /// 16 lowercase hex digits, byte 0 first.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl FromStr for Lun {
    type Err = LunError;

    /// Exactly 16 hex digits, byte 0 first.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex::<8>(s)
            .map(Self)
            .ok_or_else(|| LunError::text(s, "expected 16 hex digits"))
    }
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// How a vendor prints a secondary id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecondaryIdStyle {
    /// The whole 8-byte LUN as 16 uppercase hex digits and `h`, bytes 0-1
    /// zero (ONTAP `0000D20000010000h`, this crate's
    /// [`vasa_secondary_id`](crate::ControlPlane::vasa_secondary_id)).
    LunHex,
    /// `0x` and the subsidiary element's bytes (from byte 2), lowercase,
    /// trailing zero bytes optional (Element `0xe200000000a6`, Huawei
    /// `0xD2LLLLLL...`). Holds the number of bytes printed (1..=6).
    ElementHex(u8),
}

/// A vendor's `vvolSecondaryId` text, parsed: the subsidiary element the
/// host puts behind the PE's administrative element.
///
/// # Example
/// ```
/// use vvol::scsi::{SubsidiaryElement, VendorSecondaryId};
///
/// let ontap: VendorSecondaryId = "0000D20000010000h".parse()?;
/// assert_eq!(ontap.subsidiary(), SubsidiaryElement::ExtendedFlat(1));
/// let element: VendorSecondaryId = "0xe200000000a6".parse()?;
/// assert_eq!(element.subsidiary(), SubsidiaryElement::LongExtendedFlat(166));
/// assert_eq!(element.to_string(), "0xe200000000a6");
/// assert_eq!(element.lun_behind(255)?.to_string(), "00ffe200000000a6");
/// assert!("0000C10100000000h".parse::<VendorSecondaryId>().is_err());
/// # Ok::<(), vvol::scsi::LunError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VendorSecondaryId {
    element: SubsidiaryElement,
    style: SecondaryIdStyle,
}

impl VendorSecondaryId {
    /// The id of `element` printed in `style`.
    #[must_use]
    pub const fn new(element: SubsidiaryElement, style: SecondaryIdStyle) -> Self {
        Self { element, style }
    }

    /// The subsidiary element.
    #[must_use]
    pub const fn subsidiary(&self) -> SubsidiaryElement {
        self.element
    }

    /// How it is printed.
    #[must_use]
    pub const fn style(&self) -> SecondaryIdStyle {
        self.style
    }

    /// The full LUN behind the PE at administrative LUN `admin`.
    ///
    /// # Errors
    /// [`LunError::ValueTooLarge`] when `admin` passes 14 bits.
    pub fn lun_behind(&self, admin: u16) -> Result<Lun, LunError> {
        Lun::conglomerate(admin, Some(self.element))
    }

    fn element_bytes(&self) -> [u8; 6] {
        // Only an element whose value passes its field fails to encode.
        let lun = Lun::conglomerate(0, Some(self.element))
            .unwrap_or_default()
            .0;
        let mut out = [0u8; 6];
        out.copy_from_slice(&lun[2..]);
        out
    }
}

impl fmt::Display for VendorSecondaryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.element_bytes();
        match self.style {
            SecondaryIdStyle::LunHex => {
                f.write_str("0000")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02X}"))?;
                f.write_str("h")
            }
            SecondaryIdStyle::ElementHex(n) => {
                f.write_str("0x")?;
                let n = usize::from(n.max(element_width(self.element))).min(6);
                bytes[..n].iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// Bytes a subsidiary element occupies: 2 (simple), 4 (D2h) or 6 (E2h).
const fn element_width(element: SubsidiaryElement) -> u8 {
    match element {
        SubsidiaryElement::Simple(_) => 2,
        SubsidiaryElement::ExtendedFlat(_) => 4,
        SubsidiaryElement::LongExtendedFlat(_) => 6,
    }
}

impl FromStr for VendorSecondaryId {
    type Err = LunError;

    /// Accepts `<16 hex digits>h` (bytes 0-1 must be zero) and
    /// `0x<2..=12 hex digits, even count>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| LunError::text(s, reason);
        let (lun, style) = if let Some(hex) = s.strip_suffix(['h', 'H']) {
            let bytes =
                parse_hex::<8>(hex).ok_or_else(|| err("expected 16 hex digits before `h`"))?;
            if bytes[..2] != [0, 0] {
                return Err(err("bytes 0-1 belong to the PE and must be 0000"));
            }
            (Lun(bytes), SecondaryIdStyle::LunHex)
        } else if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            let n = hex.len() / 2;
            if !hex.len().is_multiple_of(2) || !(1..=6).contains(&n) {
                return Err(err("expected 2 to 12 hex digits (whole bytes) after `0x`"));
            }
            let mut padded = [b'0'; 12];
            padded[..hex.len()].copy_from_slice(hex.as_bytes());
            let text = std::str::from_utf8(&padded).map_err(|_| err("not ASCII"))?;
            let bytes = parse_hex::<6>(text).ok_or_else(|| err("not hex digits"))?;
            let mut lun = [0u8; 8];
            lun[2..].copy_from_slice(&bytes);
            (Lun(lun), SecondaryIdStyle::ElementHex(n as u8))
        } else {
            return Err(err("expected `<16 hex digits>h` or `0x<hex>`"));
        };
        let element = lun
            .decode_conglomerate()
            .map_err(|_| err("not a subsidiary element (simple, D2h or E2h addressing)"))?
            .subsidiary
            .ok_or_else(|| err("0000h addresses the PE itself, not a vVol"))?;
        // An element needs at least its own bytes printed (`0x06` is the
        // simple element 0600h and prints as `0x0600`): record the width that
        // printing uses, so parse and print round-trip.
        let style = match style {
            SecondaryIdStyle::ElementHex(n) => {
                SecondaryIdStyle::ElementHex(n.max(element_width(element)))
            }
            other => other,
        };
        Ok(Self { element, style })
    }
}
