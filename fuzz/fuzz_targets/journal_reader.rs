//! A journal as a reader meets it after a bad disk, a bad copy or a bug:
//! opening either rebuilds a consistent plane or fails with a typed error;
//! it never panics, hangs or allocates without bound.
//!
//! The first byte picks how the rest is read, so that most inputs get past
//! the frames' CRC32C to the header, snapshot and record decoders:
//! - `0`: raw bytes, as they are on disk;
//! - `1`: payloads (each a little-endian `u16` length, then its bytes),
//!   framed with valid checksums after the sample journal's header frame;
//! - otherwise: the sample journal (a snapshot, then records of every
//!   kind) with `vvol::testing::journal::apply_edits` applied, re-framed
//!   with valid checksums.
//!
//! Every 2^16 executions it prints how far inputs got: refused by the
//! store's load (framing, header), reached snapshot restore (the header
//! names chunks), reached record apply (records after a snapshot that
//! restored, or after none), opened.
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;
use vvol::testing::journal::{apply_edits, frame_journal, journal_frames, sample_journal};
use vvol::{ControlPlane, DurableStore, JournalOptions, Limits, MemStore};

static EXECS: AtomicU64 = AtomicU64::new(0);
static REFUSED_AT_LOAD: AtomicU64 = AtomicU64::new(0);
static REACHED_RESTORE: AtomicU64 = AtomicU64::new(0);
static REACHED_APPLY: AtomicU64 = AtomicU64::new(0);
static OPENED: AtomicU64 = AtomicU64::new(0);

fn sample() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let bytes = sample_journal().expect("the sample journal builds");
        journal_frames(&bytes).expect("the sample journal is clean")
    })
}

fn payloads(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![sample()[0].clone()];
    while data.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 2);
        out.push(data[2..2 + len].to_vec());
        data = &data[2 + len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = match mode {
        0 => rest.to_vec(),
        1 => frame_journal(&payloads(rest)),
        _ => {
            let mut frames = sample().to_vec();
            apply_edits(&mut frames, rest);
            frame_journal(&frames)
        }
    };
    let options = || JournalOptions::default().with_max_record_bytes(1 << 20);
    let open = |bytes: Vec<u8>| {
        ControlPlane::with_store(
            Box::new(MemStore::from_bytes(bytes)),
            Limits::default(),
            options(),
        )
    };
    let info = MemStore::from_bytes(bytes.clone()).load();
    let opened = open(bytes.clone());
    if let Ok(plane) = &opened {
        plane.check_invariants();
    }
    count(&bytes, info.ok(), opened.is_ok(), open);
});

/// Counts how far one input got (see the module docs).
fn count(
    bytes: &[u8],
    info: Option<vvol::LogInfo>,
    opened: bool,
    open: impl Fn(Vec<u8>) -> Result<ControlPlane, vvol::JournalError>,
) {
    let n = EXECS.fetch_add(1, Relaxed) + 1;
    match info {
        None => {
            REFUSED_AT_LOAD.fetch_add(1, Relaxed);
        }
        Some(info) => {
            let chunks = info.snapshot_chunks as usize;
            if chunks > 0 {
                REACHED_RESTORE.fetch_add(1, Relaxed);
            }
            let records = info.next_index.saturating_sub(info.snapshot_index + 1);
            let restored = chunks == 0
                || opened
                || journal_frames(bytes).is_some_and(|f| {
                    f.len() > chunks && open(frame_journal(&f[..=chunks])).is_ok()
                });
            if records > 0 && restored {
                REACHED_APPLY.fetch_add(1, Relaxed);
            }
        }
    }
    if opened {
        OPENED.fetch_add(1, Relaxed);
    }
    if n % (1 << 16) == 0 {
        eprintln!(
            "journal_reader stats: execs={n} refused_at_load={} reached_restore={} \
             reached_apply={} opened={}",
            REFUSED_AT_LOAD.load(Relaxed),
            REACHED_RESTORE.load(Relaxed),
            REACHED_APPLY.load(Relaxed),
            OPENED.load(Relaxed),
        );
    }
}
