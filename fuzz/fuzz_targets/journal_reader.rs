//! Arbitrary bytes as a binding journal: opening either rebuilds a plane or
//! fails with a typed error; it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vvol::{ControlPlane, JournalOptions, Limits, MemStorage};

fuzz_target!(|data: &[u8]| {
    let storage = MemStorage::from_bytes(data.to_vec());
    let options = JournalOptions::default().with_max_record_bytes(1 << 20);
    if let Ok(plane) = ControlPlane::with_journal(Box::new(storage), Limits::default(), options) {
        plane.check_invariants();
    }
});
