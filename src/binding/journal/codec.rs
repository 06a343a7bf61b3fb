//! Framing (length, CRC32C, payload) and a small byte codec.

use super::JournalError;

/// The CRC32C (Castagnoli) of `bytes`, as iSCSI and ext4 compute it
/// (hardware-accelerated where the CPU has it).
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    ::crc32c::crc32c(bytes)
}

/// Bytes of a frame header: payload length and CRC32C, little endian.
pub(crate) const FRAME_HEADER: usize = 8;

/// Frames `payload`.
///
/// # Errors
/// [`JournalError::RecordTooLarge`] for a payload whose length does not fit
/// the frame's 32-bit length field.
pub(crate) fn frame(payload: &[u8]) -> Result<Vec<u8>, JournalError> {
    let len = u32::try_from(payload.len()).map_err(|_| JournalError::RecordTooLarge {
        len: payload.len(),
        max: u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// The frames of a journal: each payload with its offset, and where the
/// valid bytes end (before a torn tail, if any).
#[derive(Debug)]
pub(crate) struct Frames<'a> {
    pub(crate) records: Vec<(u64, &'a [u8])>,
    pub(crate) valid_end: u64,
    pub(crate) torn: bool,
}

/// Splits `bytes` into frames. A frame that runs past the end, or whose
/// checksum fails and that ends exactly at the end, is a torn tail: dropped.
/// A bad frame with more bytes after it is corruption.
pub(crate) fn split(bytes: &[u8], max_record_bytes: usize) -> Result<Frames<'_>, JournalError> {
    let mut records = Vec::new();
    let mut at = 0usize;
    let mut torn = false;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < FRAME_HEADER {
            torn = true;
            break;
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len > rest.len() - FRAME_HEADER {
            torn = true;
            break;
        }
        let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
        let end = at + FRAME_HEADER + len;
        if crc32c(payload) != crc || len == 0 {
            if end == bytes.len() {
                torn = true;
                break;
            }
            return Err(JournalError::Corrupt {
                offset: at as u64,
                reason: if len == 0 {
                    "empty frame before the tail"
                } else {
                    "checksum mismatch before the tail"
                },
            });
        }
        if len > max_record_bytes {
            return Err(JournalError::RecordTooLarge {
                len,
                max: max_record_bytes,
            });
        }
        records.push((at as u64, payload));
        at = end;
    }
    Ok(Frames {
        records,
        valid_end: at as u64,
        torn,
    })
}

/// Appends little-endian fields.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u128(&mut self, v: u128) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn usize(&mut self, v: usize) {
        self.u64(v as u64);
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.usize(v.len());
        self.buf.extend_from_slice(v);
    }
    pub(crate) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

/// Reads what [`Writer`] wrote; every read is bounds-checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

fn short() -> JournalError {
    JournalError::Corrupt {
        offset: 0,
        reason: "record shorter than its fields",
    }
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], JournalError> {
        let end = self.at.checked_add(n).ok_or_else(short)?;
        let s = self.buf.get(self.at..end).ok_or_else(short)?;
        self.at = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, JournalError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u8s(&mut self, n: usize) -> Result<&'a [u8], JournalError> {
        self.take(n)
    }
    pub(crate) fn bool(&mut self) -> Result<bool, JournalError> {
        Ok(self.u8()? != 0)
    }
    pub(crate) fn u16(&mut self) -> Result<u16, JournalError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, JournalError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, JournalError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    pub(crate) fn u128(&mut self) -> Result<u128, JournalError> {
        Ok(u128::from_le_bytes(self.take(16)?.try_into().expect("16")))
    }
    /// A count of items that each take at least `min_item` bytes, checked
    /// against the bytes left so a corrupt count cannot allocate wildly.
    pub(crate) fn count(&mut self, min_item: usize) -> Result<usize, JournalError> {
        let n = usize::try_from(self.u64()?).map_err(|_| short())?;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() - self.at {
            return Err(short());
        }
        Ok(n)
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], JournalError> {
        let n = self.count(1)?;
        self.take(n)
    }
    pub(crate) fn string(&mut self) -> Result<String, JournalError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| JournalError::Corrupt {
            offset: 0,
            reason: "name is not UTF-8",
        })
    }
    /// Whether every byte has been read (optional trailing sections).
    pub(crate) fn at_end(&self) -> bool {
        self.at == self.buf.len()
    }
    pub(crate) fn finish(&self) -> Result<(), JournalError> {
        if self.at == self.buf.len() {
            Ok(())
        } else {
            Err(JournalError::Corrupt {
                offset: 0,
                reason: "trailing bytes in a record",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_rfc3720_vectors() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn torn_tail_is_dropped_and_middle_corruption_is_an_error() {
        let mut bytes = frame(b"one").unwrap();
        bytes.extend(frame(b"two").unwrap());
        let full = bytes.len();
        for cut in 0..full {
            let f = split(&bytes[..cut], 1 << 20).unwrap();
            assert!(f.records.len() <= 2);
            assert_eq!(f.torn, f.valid_end as usize != cut);
        }
        let mut bad = bytes.clone();
        bad[FRAME_HEADER] ^= 1;
        assert!(matches!(
            split(&bad, 1 << 20),
            Err(JournalError::Corrupt { .. })
        ));
        let mut tail = bytes;
        tail[full - 1] ^= 1;
        let f = split(&tail, 1 << 20).unwrap();
        assert!(f.torn);
        assert_eq!(f.records.len(), 1);
    }
}
