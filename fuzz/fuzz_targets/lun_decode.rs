//! Arbitrary bytes through the SAM-5 LUN decoder and the vendor secondary-id
//! parser: never a panic, always a value or a typed error, and whatever
//! decodes encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vvol::scsi::{Lun, VendorSecondaryId};

fuzz_target!(|data: &[u8]| {
    if data.len() >= 8 {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&data[..8]);
        let lun = Lun(raw);
        if let Ok(levels) = lun.decode() {
            if let Ok(again) = Lun::from_levels(&levels) {
                assert_eq!(again.decode().ok(), Some(levels));
            }
        }
        if let Ok(cong) = lun.decode_conglomerate() {
            let _ = cong;
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = text.parse::<VendorSecondaryId>() {
            let printed = id.to_string();
            assert_eq!(printed.parse::<VendorSecondaryId>().ok(), Some(id));
        }
        let _ = text.parse::<Lun>();
    }
});
