//! The durable record of a control plane: outcome records, snapshots,
//! their codecs, and the stores they go to. Depends on `model` only; the
//! glue that opens, replays and applies lives in `binding/durable.rs`.
//! See ARCHITECTURE.md, "Journal".

mod codec;
mod fields;
mod record;
mod reservation;
mod snapshot;
mod store;

use std::io;
use std::path::PathBuf;

use parking_lot::{Condvar, Mutex};

#[cfg(feature = "testing")]
pub(crate) use self::codec::{frame, split};
pub(crate) use self::record::{BindItem, Record, Release};
pub(crate) use self::snapshot::{BindingData, HostData, PeData, PoolData, Snapshot, VvolData};
#[cfg(feature = "testing")]
pub use self::store::MemStore;
pub use self::store::{
    DurableStore, FileStore, LogInfo, MAX_SNAPSHOT_CHUNKS, SNAPSHOT_CHUNK_BYTES,
};
use crate::model::{BackendKey, VvolId};

/// Format version of the header and every snapshot. This pre-release reads
/// only its own version.
pub const JOURNAL_VERSION: u8 = 2;
/// Default [`JournalOptions::compact_every`](crate::JournalOptions::compact_every): records after which the
/// journal is compacted into a snapshot.
pub const DEFAULT_COMPACT_EVERY: u64 = 4096;
/// Default [`JournalOptions::max_record_bytes`](crate::JournalOptions::max_record_bytes): the largest record written
/// or read (snapshots are written in chunks of
/// [`SNAPSHOT_CHUNK_BYTES`]).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 << 20;
/// The largest [`JournalOptions::max_record_bytes`](crate::JournalOptions::max_record_bytes) (a frame's length field
/// is 32 bits).
pub const MAX_RECORD_BYTES: usize = u32::MAX as usize;

/// An error of the journal or its store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Reading, writing or syncing failed.
    #[error("journal I/O: {0}")]
    Io(#[from] io::Error),
    /// A bad frame before the tail, or a record or snapshot that does not
    /// decode or does not fit the state it applies to.
    #[error("journal corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// Byte offset of the frame (0 when not known), or the index of the
        /// record for a record that does not apply.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A record is larger than [`JournalOptions::max_record_bytes`](crate::JournalOptions::max_record_bytes).
    #[error("journal record of {len} bytes exceeds the limit of {max}")]
    RecordTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The journal is of another format version.
    #[error("journal format version {0} is not supported (this build reads {JOURNAL_VERSION})")]
    UnsupportedVersion(u8),
    /// Another open store holds the journal's lock.
    #[error("journal {path} is locked by another open control plane")]
    Locked {
        /// The journal's path.
        path: PathBuf,
    },
    /// An append named another index than the log's next.
    #[error("journal append at index {expected}, but the log's next index is {found}")]
    Conflict {
        /// The index the writer asked for.
        expected: u64,
        /// The log's next index.
        found: u64,
    },
    /// Another writer took the log over; this one may not write again.
    #[error("journal writer fenced: another writer holds the log")]
    Fenced,
    /// The state holds more of something than the limits opening it allow.
    #[error("the journal holds {count} {limit}, more than the limit of {value}")]
    LimitBelowState {
        /// Which limit (`Limits` field).
        limit: &'static str,
        /// The limit given.
        value: u64,
        /// What the state holds (for ids never reused: how many were issued).
        count: u64,
    },
    /// A limit above its cap.
    #[error("limit {limit} = {value} exceeds its cap {cap}")]
    LimitAboveCap {
        /// Which limit.
        limit: &'static str,
        /// The limit given.
        value: u64,
        /// The cap.
        cap: u64,
    },
    /// A vVol was created with an embedder's backend and no
    /// [`BackendProvider`](crate::BackendProvider) gave it back.
    #[error("vVol {vvol} needs its backend {key} from a BackendProvider")]
    BackendRequired {
        /// The vVol.
        vvol: VvolId,
        /// Its backend key.
        key: BackendKey,
    },
    /// An earlier append or sync failed, so memory may be ahead of the
    /// journal; reopen to continue.
    #[error("journal failed earlier; reopen the control plane")]
    Poisoned,
}

/// Runtime of an attached journal: record tickets, group syncs and the
/// order in which synced records are published to the router.
#[derive(Debug)]
pub(crate) struct Journal {
    pub(crate) store: Box<dyn DurableStore>,
    pub(crate) max_record_bytes: usize,
    pub(crate) compact_every: u64,
    pub(crate) skip_sync: bool,
    inner: Mutex<Progress>,
    cv: Condvar,
}

#[derive(Debug)]
struct Progress {
    next: u64,
    synced: u64,
    syncing: bool,
    published: u64,
    poisoned: bool,
    snapshot_index: u64,
}

impl Journal {
    /// A journal whose log's next index is `next` (everything before it
    /// durable and published).
    pub(crate) fn new(
        store: Box<dyn DurableStore>,
        next: u64,
        snapshot_index: u64,
        max_record_bytes: usize,
        compact_every: u64,
        skip_sync: bool,
    ) -> Self {
        Self {
            store,
            max_record_bytes,
            compact_every: compact_every.max(1),
            skip_sync,
            inner: Mutex::new(Progress {
                next,
                synced: next - 1,
                syncing: false,
                published: next - 1,
                poisoned: false,
                snapshot_index,
            }),
            cv: Condvar::new(),
        }
    }

    /// Fails when poisoned or when `payload` is too large; changes nothing.
    pub(crate) fn check(&self, payload: &[u8]) -> Result<(), JournalError> {
        if self.inner.lock().poisoned {
            return Err(JournalError::Poisoned);
        }
        if payload.len() > self.max_record_bytes {
            return Err(JournalError::RecordTooLarge {
                len: payload.len(),
                max: self.max_record_bytes,
            });
        }
        Ok(())
    }

    /// Appends a record (called under the plane's lock, so records are in
    /// state order) and returns its index. A failed append poisons.
    pub(crate) fn append(&self, payload: &[u8]) -> Result<u64, JournalError> {
        let p = self.inner.lock();
        if p.poisoned {
            return Err(JournalError::Poisoned);
        }
        let index = p.next;
        drop(p);
        if let Err(e) = self.store.append(index, payload) {
            self.poison();
            return Err(e);
        }
        let mut p = self.inner.lock();
        p.next = index + 1;
        Ok(index)
    }

    pub(crate) fn poison(&self) {
        self.inner.lock().poisoned = true;
        self.cv.notify_all();
    }

    /// Waits until record `index` is durable; one caller syncs for every
    /// record appended so far while the others wait (group commit).
    pub(crate) fn sync_through(&self, index: u64) -> Result<(), JournalError> {
        let mut p = self.inner.lock();
        loop {
            if p.poisoned {
                return Err(JournalError::Poisoned);
            }
            if p.synced >= index {
                return Ok(());
            }
            if p.syncing {
                self.cv.wait(&mut p);
                continue;
            }
            p.syncing = true;
            let target = p.next - 1;
            drop(p);
            let result = if self.skip_sync {
                Ok(())
            } else {
                self.store.sync(target)
            };
            p = self.inner.lock();
            p.syncing = false;
            match result {
                Ok(()) => p.synced = p.synced.max(target),
                Err(e) => {
                    p.poisoned = true;
                    self.cv.notify_all();
                    return Err(e);
                }
            }
            self.cv.notify_all();
        }
    }

    /// Runs `publish` for record `index` once every earlier record was
    /// published (so the router sees changes in log order); skips it when
    /// `durable` is false. Always advances the turn.
    pub(crate) fn publish_in_order(&self, index: u64, durable: bool, publish: impl FnOnce()) {
        let mut p = self.inner.lock();
        while p.published + 1 < index {
            self.cv.wait(&mut p);
        }
        if durable && !p.poisoned {
            publish();
        }
        p.published = p.published.max(index);
        drop(p);
        self.cv.notify_all();
    }

    /// Whether a compaction is due.
    pub(crate) fn compaction_due(&self) -> bool {
        let p = self.inner.lock();
        !p.poisoned && p.next - 1 - p.snapshot_index >= self.compact_every
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.inner.lock().poisoned
    }

    /// Writes `snapshot` (of the state after record `index`) in chunks.
    pub(crate) fn write_snapshot(&self, index: u64, bytes: &[u8]) -> Result<(), JournalError> {
        if self.is_poisoned() {
            return Err(JournalError::Poisoned);
        }
        let chunks: Vec<&[u8]> = bytes.chunks(SNAPSHOT_CHUNK_BYTES).collect();
        match self.store.write_snapshot(index, &chunks) {
            Ok(()) => {
                let mut p = self.inner.lock();
                p.snapshot_index = p.snapshot_index.max(index);
                Ok(())
            }
            Err(e @ (JournalError::RecordTooLarge { .. } | JournalError::Corrupt { .. })) => Err(e),
            Err(e) => {
                self.poison();
                Err(e)
            }
        }
    }
}
