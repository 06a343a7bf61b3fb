//! Durable bindings: an optional append-only journal behind a
//! [`ControlPlane`].
//!
//! Each acknowledged mutation is one checksummed record, synced before the
//! call returns; opening replays the records (after the latest snapshot)
//! through the ordinary API. See ARCHITECTURE.md, "Journal".

mod codec;
mod ops;
mod snapshot;
mod storage;

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use self::codec::{Reader, Writer, frame, split};
pub(crate) use self::ops::Op;
use self::ops::{TAG_HEADER, TAG_OP, TAG_SNAPSHOT};
pub use self::storage::{FileStorage, JournalStorage, MemStorage};
use super::control_plane::ControlPlane;
use super::state::State;
use super::{ControlError, FewestBindings, Limits, PeSelectionPolicy};
use crate::backend::BlockBackend;
use crate::model::VvolId;

/// Format version written in the header and every snapshot.
pub const JOURNAL_VERSION: u8 = 1;
/// Default [`JournalOptions::compact_every`]: records after which the
/// journal is compacted into one snapshot record.
pub const DEFAULT_COMPACT_EVERY: u64 = 4096;
/// Default [`JournalOptions::max_record_bytes`]: the largest record written
/// or read (a snapshot is one record).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 30;
/// Magic bytes at the start of the header record.
const MAGIC: &[u8; 8] = b"VVOLJNL\0";

/// Gives back the backend of a vVol that was created with an explicit
/// backend ([`VvolSpec::with_backend`](crate::VvolSpec::with_backend)) when
/// a durable control plane is reopened. vVols created without one get a
/// fresh, empty [`MemoryBackend`](crate::MemoryBackend): the journal keeps
/// the control plane's state, never volume data.
pub trait BackendProvider: Send + Sync + fmt::Debug {
    /// The backend of `vvol`, or `None` when it is not available (opening
    /// then fails with [`JournalError::BackendRequired`]).
    fn backend(
        &self,
        vvol: VvolId,
        capacity_bytes: u64,
        logical_block_size: u32,
    ) -> Option<Arc<dyn BlockBackend>>;
}

/// Options of a durable control plane.
#[derive(Debug)]
#[non_exhaustive]
pub struct JournalOptions {
    /// Records after which the journal is compacted into a snapshot.
    pub compact_every: u64,
    /// Largest record in bytes; a mutation whose record would be larger
    /// fails with [`JournalError::RecordTooLarge`] and changes nothing.
    pub max_record_bytes: usize,
    /// Restores vVols created with explicit backends.
    pub backend_provider: Option<Arc<dyn BackendProvider>>,
    /// The PE selection policy (must be deterministic: replay re-runs it).
    pub policy: Option<Box<dyn PeSelectionPolicy>>,
    skip_sync: bool,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            compact_every: DEFAULT_COMPACT_EVERY,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            backend_provider: None,
            policy: None,
            skip_sync: false,
        }
    }
}

impl JournalOptions {
    /// Sets [`compact_every`](Self::compact_every) (at least 1).
    #[must_use]
    pub fn with_compact_every(mut self, records: u64) -> Self {
        self.compact_every = records.max(1);
        self
    }

    /// Sets [`max_record_bytes`](Self::max_record_bytes).
    #[must_use]
    pub fn with_max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// Sets the [`BackendProvider`].
    #[must_use]
    pub fn with_backend_provider(mut self, provider: Arc<dyn BackendProvider>) -> Self {
        self.backend_provider = Some(provider);
        self
    }

    /// Sets the PE selection policy.
    #[must_use]
    pub fn with_policy(mut self, policy: Box<dyn PeSelectionPolicy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// TEST ONLY: acknowledge without syncing. Breaks durability on power
    /// loss; exists so tests can prove they catch a missing sync.
    #[doc(hidden)]
    #[must_use]
    pub fn test_only_skip_sync(mut self, skip: bool) -> Self {
        self.skip_sync = skip;
        self
    }
}

/// An error of the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Reading, writing or syncing failed.
    #[error("journal I/O: {0}")]
    Io(#[from] io::Error),
    /// A bad record before the tail, or a record that does not decode.
    #[error("journal corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// Byte offset of the record (0 when inside a record).
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A record is larger than [`JournalOptions::max_record_bytes`].
    #[error("journal record of {len} bytes exceeds the limit of {max}")]
    RecordTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The journal was written with other [`Limits`].
    #[error("journal written with limits {stored:?}, opened with {given:?}")]
    LimitsMismatch {
        /// The limits in the journal.
        stored: Box<Limits>,
        /// The limits given to open.
        given: Box<Limits>,
    },
    /// The journal is of another format version.
    #[error("journal format version {0} is not supported")]
    UnsupportedVersion(u8),
    /// A record did not replay as it ran (another policy, limits, or a bug).
    #[error("journal replay diverged: {reason}")]
    Replay {
        /// What differed.
        reason: String,
    },
    /// A vVol was created with an explicit backend and no
    /// [`BackendProvider`] gave it back.
    #[error("vVol {0} needs its backend from a BackendProvider")]
    BackendRequired(VvolId),
    /// An earlier write or sync failed, so the state in memory may be ahead
    /// of the journal; reopen to continue.
    #[error("journal failed earlier; reopen the control plane")]
    Poisoned,
}

/// The journal attached to a durable [`ControlPlane`].
#[derive(Debug)]
pub(crate) struct Journal {
    storage: Box<dyn JournalStorage>,
    compact_every: u64,
    max_record_bytes: usize,
    skip_sync: bool,
    since_snapshot: u64,
    poisoned: bool,
    explicit: HashSet<VvolId>,
}

pub(crate) fn put_limits(w: &mut Writer, l: &Limits) {
    w.u8(JOURNAL_VERSION);
    w.usize(l.max_bind_batch);
    w.u32(l.max_arrays);
    w.u32(l.max_containers);
    w.u32(l.max_pes);
    w.u32(l.max_hosts);
    w.u32(l.max_vvols);
    w.usize(l.event_window);
    w.usize(l.max_name_len);
}

pub(crate) fn get_limits(r: &mut Reader<'_>) -> Result<Limits, JournalError> {
    let version = r.u8()?;
    if version != JOURNAL_VERSION {
        return Err(JournalError::UnsupportedVersion(version));
    }
    let big = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Ok(Limits::default()
        .with_max_bind_batch(big(r.u64()?))
        .with_max_arrays(r.u32()?)
        .with_max_containers(r.u32()?)
        .with_max_pes(r.u32()?)
        .with_max_hosts(r.u32()?)
        .with_max_vvols(r.u32()?)
        .with_event_window(big(r.u64()?))
        .with_max_name_len(big(r.u64()?)))
}

fn header(limits: &Limits) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(TAG_HEADER);
    w.buf.extend_from_slice(MAGIC);
    put_limits(&mut w, limits);
    w.buf
}

impl ControlPlane {
    /// Opens (or creates) a durable control plane journaled in the file at
    /// `path`. Every acknowledged mutation is synced to the file before the
    /// call returns; reopening rebuilds the same topology, bindings,
    /// reference counts, free secondary ids, generations and event-id high
    /// mark, and the router with them. Events before the reopen are not
    /// kept: [`events_since`](Self::events_since) an older id answers
    /// [`ControlError::LostEvent`]. vVol data is not journaled.
    ///
    /// # Errors
    /// [`JournalError`]: I/O, corruption before the tail (a torn or corrupt
    /// last record is dropped), other limits, a replay divergence, or a
    /// vVol whose explicit backend no provider gives back.
    ///
    /// # Example
    /// ```
    /// use vvol::*;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("vasa.journal");
    /// let plane = ControlPlane::open_durable(&path, Limits::default(), JournalOptions::default())?;
    /// let array = plane.add_array(ArraySpec::new("array-a", 0x00_1a_2b))?;
    /// drop(plane);
    /// let plane = ControlPlane::open_durable(&path, Limits::default(), JournalOptions::default())?;
    /// assert_eq!(plane.arrays(), vec![array]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_durable(
        path: impl AsRef<Path>,
        limits: Limits,
        options: JournalOptions,
    ) -> Result<Self, JournalError> {
        Self::with_journal(Box::new(FileStorage::open(path)?), limits, options)
    }

    /// As [`open_durable`](Self::open_durable) over any [`JournalStorage`].
    ///
    /// # Errors
    /// As [`open_durable`](Self::open_durable).
    pub fn with_journal(
        mut storage: Box<dyn JournalStorage>,
        limits: Limits,
        options: JournalOptions,
    ) -> Result<Self, JournalError> {
        let bytes = storage.read_all()?;
        let frames = split(&bytes, options.max_record_bytes)?;
        if frames.torn {
            storage.truncate(frames.valid_end)?;
        }
        let policy = options.policy.unwrap_or_else(|| Box::new(FewestBindings));
        let provider = options.backend_provider;
        let mut records = frames.records.into_iter();
        let (plane, mut explicit) = match records.next() {
            None => {
                storage.truncate(0)?;
                storage.append(&frame(&header(&limits)))?;
                storage.sync()?;
                (Self::with_policy(limits, policy), HashSet::new())
            }
            Some((offset, payload)) => {
                let mut r = Reader::new(payload);
                match r.u8()? {
                    TAG_HEADER => {
                        let magic = r.u8s(MAGIC.len())?;
                        if magic != MAGIC {
                            return Err(JournalError::Corrupt {
                                offset,
                                reason: "not a vvol journal",
                            });
                        }
                        let stored = get_limits(&mut r)?;
                        r.finish()?;
                        if stored != limits {
                            return Err(JournalError::LimitsMismatch {
                                stored: Box::new(stored),
                                given: Box::new(limits),
                            });
                        }
                        (Self::with_policy(limits, policy), HashSet::new())
                    }
                    TAG_SNAPSHOT => snapshot::restore(&mut r, limits, policy, provider.as_ref())?,
                    _ => {
                        return Err(JournalError::Corrupt {
                            offset,
                            reason: "journal does not start with a header or snapshot",
                        });
                    }
                }
            }
        };
        let mut since_snapshot = 0;
        for (offset, payload) in records {
            let mut r = Reader::new(payload);
            if r.u8()? != TAG_OP {
                return Err(JournalError::Corrupt {
                    offset,
                    reason: "a header or snapshot after the first record",
                });
            }
            let op = Op::decode(&mut r).map_err(|e| match e {
                JournalError::Corrupt { reason, .. } => JournalError::Corrupt { offset, reason },
                other => other,
            })?;
            match &op {
                Op::CreateVvol {
                    id,
                    explicit_backend: true,
                    ..
                } => {
                    explicit.insert(*id);
                }
                Op::DeleteVvol(id) => {
                    explicit.remove(id);
                }
                _ => {}
            }
            op.apply(&plane, provider.as_ref())?;
            since_snapshot += 1;
        }
        {
            let mut st = plane.lock();
            let last = st.events.last_id().0;
            st.events.resume(last);
        }
        let mut plane = plane;
        plane.journal = Some(Mutex::new(Journal {
            storage,
            compact_every: options.compact_every.max(1),
            max_record_bytes: options.max_record_bytes,
            skip_sync: options.skip_sync,
            since_snapshot,
            poisoned: false,
            explicit,
        }));
        if since_snapshot >= options.compact_every.max(1) {
            let st = plane.lock();
            plane.compact(&st)?;
        }
        Ok(plane)
    }

    /// Whether this plane writes a journal.
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.journal.is_some()
    }

    /// Compacts the journal into one snapshot record now.
    ///
    /// # Errors
    /// [`JournalError`] (none when the plane has no journal).
    pub fn compact_journal(&self) -> Result<(), JournalError> {
        let st = self.lock();
        self.compact(&st)
    }

    fn compact(&self, st: &State) -> Result<(), JournalError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let mut j = journal.lock();
        if j.poisoned {
            return Err(JournalError::Poisoned);
        }
        let payload = snapshot::encode(self, st, &j.explicit);
        j.since_snapshot = 0;
        if payload.len() > j.max_record_bytes {
            return Err(JournalError::RecordTooLarge {
                len: payload.len(),
                max: j.max_record_bytes,
            });
        }
        if let Err(e) = j.storage.replace(&frame(&payload)) {
            j.poisoned = true;
            return Err(e.into());
        }
        Ok(())
    }

    /// Hook before a mutation: the framed record of `op`, or `None` when
    /// the plane has no journal. Fails (changing nothing) when the journal
    /// is poisoned or the record is too large.
    #[inline]
    pub(super) fn journal_begin(
        &self,
        op: impl FnOnce() -> Op,
    ) -> Result<Option<Vec<u8>>, ControlError> {
        let Some(journal) = &self.journal else {
            return Ok(None);
        };
        let j = journal.lock();
        if j.poisoned {
            return Err(JournalError::Poisoned.into());
        }
        let payload = op().encode();
        if payload.len() > j.max_record_bytes {
            return Err(JournalError::RecordTooLarge {
                len: payload.len(),
                max: j.max_record_bytes,
            }
            .into());
        }
        Ok(Some(frame(&payload)))
    }

    /// Hook after a mutation, under the state lock: appends and syncs the
    /// record, so the call is acknowledged only once it is durable; then
    /// compacts when due. A failed write or sync poisons the journal.
    #[inline]
    pub(super) fn journal_commit(
        &self,
        st: &State,
        record: Option<Vec<u8>>,
    ) -> Result<(), ControlError> {
        let (Some(record), Some(journal)) = (record, &self.journal) else {
            return Ok(());
        };
        let due = {
            let mut j = journal.lock();
            track_explicit(&mut j, &record);
            let written = j.storage.append(&record).and_then(|()| {
                if j.skip_sync {
                    Ok(())
                } else {
                    j.storage.sync()
                }
            });
            if let Err(e) = written {
                j.poisoned = true;
                return Err(JournalError::Io(e).into());
            }
            j.since_snapshot += 1;
            j.since_snapshot >= j.compact_every
        };
        if due {
            // The record is durable: a failed compaction leaves the journal
            // as it was (an oversized snapshot is skipped until next time).
            let _ = self.compact(st);
        }
        Ok(())
    }
}

/// Keeps the set of vVols with explicit backends current from the records.
fn track_explicit(j: &mut Journal, record: &[u8]) {
    let payload = &record[codec::FRAME_HEADER..];
    // Only vVol creation and deletion matter; skip decoding anything else.
    if payload.first() != Some(&TAG_OP) || !matches!(payload.get(1), Some(8 | 9)) {
        return;
    }
    let mut r = Reader::new(&payload[1..]);
    match Op::decode(&mut r) {
        Ok(Op::CreateVvol {
            id,
            explicit_backend: true,
            ..
        }) => {
            j.explicit.insert(id);
        }
        Ok(Op::DeleteVvol(id)) => {
            j.explicit.remove(&id);
        }
        _ => {}
    }
}
