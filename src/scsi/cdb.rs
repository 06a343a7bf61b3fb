//! CDB framing: operation codes, lengths by group code, and bounds-checked
//! field access. Nothing here panics on caller bytes.

use super::Sense;

/// Longest CDB accepted (SPC-5 variable-length CDBs top out at 260 bytes).
pub const MAX_CDB_LEN: usize = 260;

/// Operation codes (and service actions) the target implements.
pub(crate) mod op {
    pub(crate) const TEST_UNIT_READY: u8 = 0x00;
    pub(crate) const REQUEST_SENSE: u8 = 0x03;
    pub(crate) const READ_6: u8 = 0x08;
    pub(crate) const WRITE_6: u8 = 0x0A;
    pub(crate) const INQUIRY: u8 = 0x12;
    pub(crate) const MODE_SELECT_6: u8 = 0x15;
    pub(crate) const RESERVE_6: u8 = 0x16;
    pub(crate) const RELEASE_6: u8 = 0x17;
    pub(crate) const MODE_SENSE_6: u8 = 0x1A;
    pub(crate) const READ_CAPACITY_10: u8 = 0x25;
    pub(crate) const READ_10: u8 = 0x28;
    pub(crate) const WRITE_10: u8 = 0x2A;
    pub(crate) const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub(crate) const UNMAP: u8 = 0x42;
    pub(crate) const MODE_SELECT_10: u8 = 0x55;
    pub(crate) const MODE_SENSE_10: u8 = 0x5A;
    pub(crate) const PERSISTENT_RESERVE_IN: u8 = 0x5E;
    pub(crate) const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
    pub(crate) const READ_16: u8 = 0x88;
    pub(crate) const COMPARE_AND_WRITE: u8 = 0x89;
    pub(crate) const WRITE_16: u8 = 0x8A;
    pub(crate) const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub(crate) const WRITE_SAME_16: u8 = 0x93;
    pub(crate) const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub(crate) const REPORT_LUNS: u8 = 0xA0;
    pub(crate) const MAINTENANCE_IN: u8 = 0xA3;
    // SERVICE ACTION IN(16) service actions.
    pub(crate) const SA_READ_CAPACITY_16: u16 = 0x10;
    pub(crate) const SA_GET_LBA_STATUS: u16 = 0x12;
    // MAINTENANCE IN service actions.
    pub(crate) const SA_REPORT_TARGET_PORT_GROUPS: u16 = 0x0A;
    pub(crate) const SA_REPORT_SUPPORTED_OPCODES: u16 = 0x0C;
    // PERSISTENT RESERVE IN service actions (READ FULL STATUS, 03h, is not
    // implemented: it answers INVALID FIELD IN CDB, SPC-5 6.16.1).
    pub(crate) const SA_READ_KEYS: u16 = 0x00;
    pub(crate) const SA_READ_RESERVATION: u16 = 0x01;
    pub(crate) const SA_REPORT_CAPABILITIES: u16 = 0x02;
    // PERSISTENT RESERVE OUT service actions (REGISTER AND MOVE, 07h, is
    // not implemented).
    pub(crate) const SA_REGISTER: u16 = 0x00;
    pub(crate) const SA_RESERVE: u16 = 0x01;
    pub(crate) const SA_RELEASE: u16 = 0x02;
    pub(crate) const SA_CLEAR: u16 = 0x03;
    pub(crate) const SA_PREEMPT: u16 = 0x04;
    pub(crate) const SA_PREEMPT_AND_ABORT: u16 = 0x05;
    pub(crate) const SA_REGISTER_AND_IGNORE: u16 = 0x06;
}

/// CDB length implied by the group code of `opcode`; `None` for
/// variable-length and vendor-specific groups.
#[must_use]
pub const fn cdb_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

/// A CDB whose length has been checked against its group code.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cdb<'a> {
    bytes: &'a [u8],
}

impl<'a> Cdb<'a> {
    /// Checks the length and the CONTROL byte (NACA is not supported).
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, Sense> {
        let Some(&opcode) = bytes.first() else {
            return Err(Sense::invalid_field_in_cdb(0, None));
        };
        let Some(len) = cdb_len(opcode) else {
            return Err(Sense::invalid_opcode());
        };
        if bytes.len() < len || bytes.len() > MAX_CDB_LEN {
            return Err(Sense::invalid_field_in_cdb(0, None));
        }
        let bytes = &bytes[..len];
        if bytes[len - 1] & 0x04 != 0 {
            return Err(Sense::invalid_field_in_cdb((len - 1) as u16, Some(2)));
        }
        Ok(Self { bytes })
    }

    pub(crate) fn opcode(&self) -> u8 {
        self.bytes[0]
    }

    /// The service action (byte 1, bits 4-0) of 12- and 16-byte CDBs.
    pub(crate) fn service_action(&self) -> u16 {
        u16::from(self.u8(1) & 0x1F)
    }

    pub(crate) fn u8(&self, at: usize) -> u8 {
        self.bytes.get(at).copied().unwrap_or(0)
    }

    pub(crate) fn be(&self, at: usize, width: usize) -> u64 {
        (0..width).fold(0u64, |acc, i| (acc << 8) | u64::from(self.u8(at + i)))
    }

    /// Fails with INVALID FIELD IN CDB when any bit of `mask` is set in
    /// byte `at`, pointing at the highest such bit.
    pub(crate) fn reserved(&self, at: usize, mask: u8) -> Result<(), Sense> {
        let bits = self.u8(at) & mask;
        if bits == 0 {
            Ok(())
        } else {
            Err(Sense::invalid_field_in_cdb(
                at as u16,
                Some(7 - bits.leading_zeros() as u8),
            ))
        }
    }
}

/// Big-endian read from a byte slice; missing bytes read as 0.
pub(crate) fn be_at(bytes: &[u8], at: usize, width: usize) -> u64 {
    (0..width).fold(0u64, |acc, i| {
        (acc << 8) | u64::from(bytes.get(at + i).copied().unwrap_or(0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_follow_the_group_code() {
        assert_eq!(cdb_len(op::INQUIRY), Some(6));
        assert_eq!(cdb_len(op::READ_10), Some(10));
        assert_eq!(cdb_len(op::MODE_SENSE_10), Some(10));
        assert_eq!(cdb_len(op::READ_16), Some(16));
        assert_eq!(cdb_len(op::REPORT_LUNS), Some(12));
        assert_eq!(cdb_len(0x7F), None);
        assert_eq!(cdb_len(0xC0), None);
    }

    #[test]
    fn reserved_points_at_the_highest_set_bit() {
        let bytes = [0x28, 0x24, 0, 0, 0, 0, 0, 0, 0, 0];
        let cdb = Cdb::parse(&bytes).unwrap();
        let sense = cdb.reserved(1, 0xE4).unwrap_err();
        let fp = sense.field_pointer.unwrap();
        assert_eq!((fp.byte, fp.bit), (1, Some(5)));
        assert!(cdb.reserved(1, 0x03).is_ok());
        // Missing bytes read as zero instead of panicking.
        assert_eq!(cdb.be(8, 8), 0);
        assert_eq!(be_at(&[1, 2], 1, 3), 0x02_0000);
    }

    #[test]
    fn short_long_and_naca_cdbs_are_refused() {
        assert!(Cdb::parse(&[0x28, 0, 0]).is_err());
        assert!(Cdb::parse(&[0u8; MAX_CDB_LEN + 1]).is_err());
        assert!(Cdb::parse(&[0, 0, 0, 0, 0, 0x04]).is_err());
        assert!(Cdb::parse(&[0, 0, 0, 0, 0, 0, 0xFF]).is_ok());
    }
}
