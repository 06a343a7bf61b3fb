//! SCSI status and sense data (SPC-5 4.4): fixed format (70h) and
//! descriptor format (72h).

/// Bytes of fixed-format sense data this crate produces.
pub const FIXED_SENSE_LEN: usize = 18;

/// SAM-5 status codes a [`ScsiTarget`](super::ScsiTarget) returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// 00h GOOD.
    Good,
    /// 02h CHECK CONDITION: sense data says why.
    CheckCondition,
    /// 08h BUSY: the logical unit cannot accept the command now.
    Busy,
    /// 18h RESERVATION CONFLICT: a reservation held by another I_T nexus
    /// does not allow the command (SPC-5 5.14.1).
    ReservationConflict,
    /// 28h TASK SET FULL: the I_T nexus already has commands in the task
    /// set and the task set is full.
    TaskSetFull,
}

impl Status {
    /// The status byte.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Good => 0x00,
            Self::CheckCondition => 0x02,
            Self::Busy => 0x08,
            Self::ReservationConflict => 0x18,
            Self::TaskSetFull => 0x28,
        }
    }
}

/// SPC-5 sense keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SenseKey {
    /// 0h NO SENSE.
    NoSense,
    /// 2h NOT READY.
    NotReady,
    /// 3h MEDIUM ERROR.
    MediumError,
    /// 4h HARDWARE ERROR.
    HardwareError,
    /// 5h ILLEGAL REQUEST.
    IllegalRequest,
    /// 6h UNIT ATTENTION.
    UnitAttention,
    /// Eh MISCOMPARE.
    Miscompare,
}

impl SenseKey {
    /// The 4-bit code.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::NoSense => 0x0,
            Self::NotReady => 0x2,
            Self::MediumError => 0x3,
            Self::HardwareError => 0x4,
            Self::IllegalRequest => 0x5,
            Self::UnitAttention => 0x6,
            Self::Miscompare => 0xE,
        }
    }
}

/// The sense-key-specific field pointer of ILLEGAL REQUEST: which byte (and
/// bit) of the CDB or parameter list is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldPointer {
    /// True for the CDB (C/D = 1), false for the parameter list.
    pub in_cdb: bool,
    /// The byte.
    pub byte: u16,
    /// The most significant bit of the field, when known (0..=7).
    pub bit: Option<u8>,
}

impl FieldPointer {
    fn bytes(self) -> [u8; 3] {
        let mut b0 = 0x80; // SKSV
        if self.in_cdb {
            b0 |= 0x40;
        }
        if let Some(bit) = self.bit {
            b0 |= 0x08 | (bit & 7);
        }
        let [hi, lo] = self.byte.to_be_bytes();
        [b0, hi, lo]
    }
}

/// One sense condition: key, additional sense code and qualifier, and the
/// optional INFORMATION and field pointer.
///
/// # Example
/// ```
/// use vvol::scsi::Sense;
///
/// let sense = Sense::invalid_field_in_cdb(2, None);
/// let fixed = sense.to_bytes(false);
/// assert_eq!(&fixed[..3], &[0x70, 0x00, 0x05]);
/// assert_eq!((fixed[12], fixed[13]), (0x24, 0x00));
/// assert_eq!(&fixed[15..18], &[0xC0, 0x00, 0x02]);
/// assert_eq!(&sense.to_bytes(true)[..4], &[0x72, 0x05, 0x24, 0x00]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Sense {
    /// The sense key.
    pub key: SenseKey,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// The INFORMATION field (for MISCOMPARE: the offset of the first
    /// differing byte).
    pub information: Option<u64>,
    /// The sense-key-specific field pointer.
    pub field_pointer: Option<FieldPointer>,
}

impl Sense {
    /// A condition without INFORMATION or field pointer.
    #[must_use]
    pub const fn new(key: SenseKey, asc: u8, ascq: u8) -> Self {
        Self {
            key,
            asc,
            ascq,
            information: None,
            field_pointer: None,
        }
    }

    /// NO SENSE, 00h/00h.
    #[must_use]
    pub const fn no_sense() -> Self {
        Self::new(SenseKey::NoSense, 0, 0)
    }

    /// HARDWARE ERROR, 44h/00h INTERNAL TARGET FAILURE.
    #[must_use]
    pub const fn internal_target_failure() -> Self {
        Self::new(SenseKey::HardwareError, 0x44, 0x00)
    }

    /// ILLEGAL REQUEST, 25h/00h LOGICAL UNIT NOT SUPPORTED.
    #[must_use]
    pub const fn lun_not_supported() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x25, 0x00)
    }

    /// ILLEGAL REQUEST, 21h/00h LOGICAL BLOCK ADDRESS OUT OF RANGE.
    #[must_use]
    pub const fn lba_out_of_range() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x21, 0x00)
    }

    /// ILLEGAL REQUEST, 20h/00h INVALID COMMAND OPERATION CODE.
    #[must_use]
    pub const fn invalid_opcode() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x20, 0x00)
    }

    /// ILLEGAL REQUEST, 24h/00h INVALID FIELD IN CDB, pointing at `byte`
    /// (and `bit`) of the CDB.
    #[must_use]
    pub const fn invalid_field_in_cdb(byte: u16, bit: Option<u8>) -> Self {
        let mut s = Self::new(SenseKey::IllegalRequest, 0x24, 0x00);
        s.field_pointer = Some(FieldPointer {
            in_cdb: true,
            byte,
            bit,
        });
        s
    }

    /// ILLEGAL REQUEST, 26h/00h INVALID FIELD IN PARAMETER LIST, pointing
    /// at `byte` (and `bit`) of the parameter list.
    #[must_use]
    pub const fn invalid_field_in_parameter_list(byte: u16, bit: Option<u8>) -> Self {
        let mut s = Self::new(SenseKey::IllegalRequest, 0x26, 0x00);
        s.field_pointer = Some(FieldPointer {
            in_cdb: false,
            byte,
            bit,
        });
        s
    }

    /// ILLEGAL REQUEST, 1Ah/00h PARAMETER LIST LENGTH ERROR.
    #[must_use]
    pub const fn parameter_list_length_error() -> Self {
        Self::new(SenseKey::IllegalRequest, 0x1A, 0x00)
    }

    /// UNIT ATTENTION with `asc`/`ascq`.
    #[must_use]
    pub const fn unit_attention(asc: u8, ascq: u8) -> Self {
        Self::new(SenseKey::UnitAttention, asc, ascq)
    }

    /// The sense bytes: descriptor format (72h) when `descriptor`, else
    /// fixed format (70h, 18 bytes).
    #[must_use]
    pub fn to_bytes(&self, descriptor: bool) -> Vec<u8> {
        self.encode(descriptor).as_bytes().to_vec()
    }

    /// The sense bytes as [`to_bytes`](Self::to_bytes) gives them, in an
    /// inline buffer (no heap).
    #[must_use]
    pub fn encode(&self, descriptor: bool) -> SenseBuffer {
        if descriptor {
            self.descriptor()
        } else {
            self.fixed()
        }
    }

    fn fixed(&self) -> SenseBuffer {
        let mut out = SenseBuffer::EMPTY;
        let b = &mut out.bytes;
        b[0] = 0x70;
        b[2] = self.key.code();
        if let Some(info) = self.information.and_then(|i| u32::try_from(i).ok()) {
            b[0] |= 0x80;
            b[3..7].copy_from_slice(&info.to_be_bytes());
        }
        b[7] = (FIXED_SENSE_LEN - 8) as u8;
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some(fp) = self.field_pointer {
            b[15..18].copy_from_slice(&fp.bytes());
        }
        out.len = FIXED_SENSE_LEN as u8;
        out
    }

    /// Descriptor format (SPC-5 4.4.2): the header, then an information
    /// descriptor (00h, 12 bytes) and a sense key specific descriptor (02h,
    /// 8 bytes) when present: at most 28 bytes.
    fn descriptor(&self) -> SenseBuffer {
        let mut out = SenseBuffer::EMPTY;
        out.push(&[0x72, self.key.code(), self.asc, self.ascq, 0, 0, 0, 0]);
        if let Some(info) = self.information {
            out.push(&[0x00, 0x0A, 0x80, 0x00]);
            out.push(&info.to_be_bytes());
        }
        if let Some(fp) = self.field_pointer {
            out.push(&[0x02, 0x06, 0x00, 0x00]);
            out.push(&fp.bytes());
            out.push(&[0]);
        }
        out.bytes[7] = out.len - 8;
        out
    }
}

/// Most sense bytes a [`SenseBuffer`] holds. The largest sense this crate
/// produces is 28 bytes (descriptor format with information and field
/// pointer); SPC-5 4.4 allows up to 252, transports commonly carry 96
/// (SCSI_SENSE_BUFFERSIZE) or less.
pub const MAX_SENSE_LEN: usize = 32;

/// Sense bytes held inline (no heap): what
/// [`ScsiCompletion`](super::ScsiCompletion) carries.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SenseBuffer {
    len: u8,
    bytes: [u8; MAX_SENSE_LEN],
}

impl SenseBuffer {
    /// No sense bytes.
    pub const EMPTY: Self = Self {
        len: 0,
        bytes: [0; MAX_SENSE_LEN],
    };

    /// The sense bytes (empty when there is no sense).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The number of sense bytes.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether there are no sense bytes.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, data: &[u8]) {
        let at = usize::from(self.len);
        self.bytes[at..at + data.len()].copy_from_slice(data);
        self.len += data.len() as u8;
    }
}

impl Default for SenseBuffer {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl std::ops::Deref for SenseBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for SenseBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SenseBuffer")
            .field(&self.as_bytes())
            .finish()
    }
}
