//! Where the journal goes: the [`DurableStore`] trait a replicated store
//! can implement, and the framed log both local stores share: a file
//! ([`FileStore`], locked with `flock`) and memory ([`MemStore`], for tests
//! that cut the power).
//!
//! The framed log is one byte stream of frames (length, CRC32C, payload):
//! a header (magic, format version, the snapshot's index and chunk count),
//! the snapshot's chunks, then one frame per record, records numbered on
//! from the snapshot's index.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::codec::{Reader, Writer, frame, split};
use super::{JOURNAL_VERSION, JournalError};

/// Magic bytes of the header frame.
const MAGIC: &[u8; 8] = b"VVOLJNL\0";
/// Largest snapshot chunk in bytes (below etcd's 1.5 MiB request limit).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Most chunks of one snapshot (4 GiB of state).
pub const MAX_SNAPSHOT_CHUNKS: u32 = 4096;

/// Where a durable log stands when it is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogInfo {
    /// Index of the last record the snapshot covers (0: no snapshot).
    pub snapshot_index: u64,
    /// Chunks of the snapshot (0: none, the state starts empty).
    pub snapshot_chunks: u32,
    /// Index the next appended record gets (records are numbered from 1).
    pub next_index: u64,
}

/// A durable, append-only log of records with snapshots, as a
/// [`ControlPlane`](crate::ControlPlane) journals to it.
///
/// Contract:
/// - `append(index, ..)` succeeds only when `index` is the log's next index
///   ([`JournalError::Conflict`] otherwise, naming both) and only while this
///   writer holds the log ([`JournalError::Fenced`] once another writer took
///   over). An appended record may stay volatile until `sync`.
/// - `sync(through)` makes every record up to `through` durable. It may be
///   called from several threads while others append.
/// - `write_snapshot(index, chunks)` durably and atomically replaces every
///   record up to `index` with the snapshot (records after `index` stay);
///   chunks are at most [`SNAPSHOT_CHUNK_BYTES`].
/// - `read_snapshot_chunk` and `read_from` read back in bounded pieces, so a
///   follower can tail the log.
pub trait DurableStore: Send + Sync + fmt::Debug {
    /// Opens the log: where its snapshot and records stand.
    ///
    /// # Errors
    /// [`JournalError::Io`], [`JournalError::Corrupt`],
    /// [`JournalError::UnsupportedVersion`].
    fn load(&self) -> Result<LogInfo, JournalError>;
    /// Chunk `n` (from 0) of the latest snapshot.
    ///
    /// # Errors
    /// As [`load`](Self::load); [`JournalError::Corrupt`] past the last chunk.
    fn read_snapshot_chunk(&self, n: u32) -> Result<Vec<u8>, JournalError>;
    /// Records from `index` on, with their indexes, up to about
    /// `max_bytes` (at least one record when there is one).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    fn read_from(&self, index: u64, max_bytes: usize) -> Result<Vec<(u64, Vec<u8>)>, JournalError>;
    /// Appends `record` as record `index`.
    ///
    /// # Errors
    /// [`JournalError::Conflict`], [`JournalError::Fenced`],
    /// [`JournalError::Io`].
    fn append(&self, index: u64, record: &[u8]) -> Result<(), JournalError>;
    /// Makes every record up to `through` durable.
    ///
    /// # Errors
    /// [`JournalError::Io`], [`JournalError::Fenced`].
    fn sync(&self, through: u64) -> Result<(), JournalError>;
    /// Replaces the records up to `index` with a snapshot.
    ///
    /// # Errors
    /// [`JournalError::Io`], [`JournalError::Fenced`],
    /// [`JournalError::RecordTooLarge`] for a chunk over
    /// [`SNAPSHOT_CHUNK_BYTES`] or more than [`MAX_SNAPSHOT_CHUNKS`].
    fn write_snapshot(&self, index: u64, chunks: &[&[u8]]) -> Result<(), JournalError>;
}

/// The byte medium under a framed log.
trait Medium: Send + fmt::Debug {
    fn read_all(&mut self) -> io::Result<Vec<u8>>;
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// A sync to run without holding the log's lock (`None`: done already).
    fn sync_detached(&mut self) -> io::Result<Option<File>>;
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Atomically and durably replaces the whole content.
    fn replace(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// A parsed framed log.
#[derive(Clone, Debug)]
struct Parsed {
    snapshot_index: u64,
    chunks: Vec<Vec<u8>>,
    records: Vec<Vec<u8>>,
}

fn header(snapshot_index: u64, chunks: u32) -> Vec<u8> {
    let mut w = Writer::default();
    w.buf.extend_from_slice(MAGIC);
    w.u8(JOURNAL_VERSION);
    w.u64(snapshot_index);
    w.u32(chunks);
    w.buf
}

fn corrupt(offset: u64, reason: &'static str) -> JournalError {
    JournalError::Corrupt { offset, reason }
}

/// Parses the bytes of a framed log; cuts a torn tail (reported as the
/// length to keep).
fn parse(bytes: &[u8], max_record_bytes: usize) -> Result<(Parsed, Option<u64>), JournalError> {
    let frames = split(bytes, max_record_bytes)?;
    let cut = frames.torn.then_some(frames.valid_end);
    let mut it = frames.records.into_iter();
    let Some((offset, head)) = it.next() else {
        return Ok((
            Parsed {
                snapshot_index: 0,
                chunks: Vec::new(),
                records: Vec::new(),
            },
            cut,
        ));
    };
    let mut r = Reader::new(head);
    if r.u8s(MAGIC.len())
        .map_err(|_| corrupt(offset, "not a vvol journal"))?
        != MAGIC
    {
        return Err(corrupt(offset, "not a vvol journal"));
    }
    let version = r.u8().map_err(|_| corrupt(offset, "short header"))?;
    if version != JOURNAL_VERSION {
        return Err(JournalError::UnsupportedVersion(version));
    }
    let snapshot_index = r.u64().map_err(|_| corrupt(offset, "short header"))?;
    let n = r.u32().map_err(|_| corrupt(offset, "short header"))?;
    r.finish().map_err(|_| corrupt(offset, "long header"))?;
    if n > MAX_SNAPSHOT_CHUNKS {
        return Err(corrupt(offset, "too many snapshot chunks"));
    }
    let mut chunks = Vec::new();
    for _ in 0..n {
        let (_, c) = it
            .next()
            .ok_or_else(|| corrupt(offset, "snapshot chunks missing"))?;
        chunks.push(c.to_vec());
    }
    if cut.is_some() && chunks.len() < n as usize {
        return Err(corrupt(offset, "torn snapshot"));
    }
    let records: Vec<Vec<u8>> = it.map(|(_, p)| p.to_vec()).collect();
    // Record indexes run on from the snapshot's: they must not wrap.
    if snapshot_index
        .checked_add(records.len() as u64 + 1)
        .is_none()
    {
        return Err(corrupt(offset, "snapshot index leaves no room for records"));
    }
    Ok((
        Parsed {
            snapshot_index,
            chunks,
            records,
        },
        cut,
    ))
}

#[derive(Debug)]
struct LogInner<M> {
    medium: M,
    /// The log as read by `load`, dropped at the first write.
    cache: Option<Parsed>,
    snapshot_index: u64,
    next_index: u64,
    synced: u64,
    fenced: bool,
    loaded: bool,
}

/// The framed log over a medium.
#[derive(Debug)]
struct FramedLog<M> {
    inner: Mutex<LogInner<M>>,
    max_record_bytes: usize,
}

impl<M: Medium> FramedLog<M> {
    fn new(medium: M, max_record_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(LogInner {
                medium,
                cache: None,
                snapshot_index: 0,
                next_index: 1,
                synced: 0,
                fenced: false,
                loaded: false,
            }),
            max_record_bytes,
        }
    }

    fn read_parsed(&self, inner: &mut LogInner<M>) -> Result<Parsed, JournalError> {
        if let Some(parsed) = &inner.cache {
            return Ok(parsed.clone());
        }
        let bytes = inner.medium.read_all()?;
        let (parsed, cut) = parse(&bytes, self.max_record_bytes)?;
        if let Some(len) = cut {
            inner.medium.truncate(len)?;
        }
        Ok(parsed)
    }

    fn load(&self) -> Result<LogInfo, JournalError> {
        let mut inner = self.inner.lock();
        let bytes = inner.medium.read_all()?;
        let (parsed, cut) = parse(&bytes, self.max_record_bytes)?;
        if bytes.is_empty() || (cut == Some(0)) {
            // A new (or torn-at-birth) log: write its header durably.
            inner.medium.replace(&frame(&header(0, 0))?)?;
        } else if let Some(len) = cut {
            inner.medium.truncate(len)?;
        }
        let n = parsed.records.len() as u64;
        inner.snapshot_index = parsed.snapshot_index;
        inner.next_index = parsed.snapshot_index + n + 1;
        inner.synced = inner.next_index - 1;
        inner.loaded = true;
        let info = LogInfo {
            snapshot_index: parsed.snapshot_index,
            snapshot_chunks: u32::try_from(parsed.chunks.len()).unwrap_or(u32::MAX),
            next_index: inner.next_index,
        };
        inner.cache = Some(parsed);
        Ok(info)
    }

    fn read_snapshot_chunk(&self, n: u32) -> Result<Vec<u8>, JournalError> {
        let mut inner = self.inner.lock();
        let parsed = self.read_parsed(&mut inner)?;
        parsed
            .chunks
            .into_iter()
            .nth(n as usize)
            .ok_or_else(|| corrupt(0, "no such snapshot chunk"))
    }

    fn read_from(&self, index: u64, max_bytes: usize) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        let mut inner = self.inner.lock();
        let parsed = self.read_parsed(&mut inner)?;
        let first = parsed.snapshot_index + 1;
        let skip = index.saturating_sub(first);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (i, rec) in parsed.records.into_iter().enumerate().skip(skip as usize) {
            if !out.is_empty() && bytes + rec.len() > max_bytes {
                break;
            }
            bytes += rec.len();
            out.push((first + i as u64, rec));
        }
        Ok(out)
    }

    fn append(&self, index: u64, record: &[u8]) -> Result<(), JournalError> {
        if record.len() > self.max_record_bytes {
            return Err(JournalError::RecordTooLarge {
                len: record.len(),
                max: self.max_record_bytes,
            });
        }
        let mut inner = self.inner.lock();
        if inner.fenced {
            return Err(JournalError::Fenced);
        }
        if !inner.loaded {
            return Err(corrupt(0, "append before load"));
        }
        if index != inner.next_index {
            return Err(JournalError::Conflict {
                expected: index,
                found: inner.next_index,
            });
        }
        inner.cache = None;
        inner.medium.append(&frame(record)?)?;
        inner.next_index += 1;
        Ok(())
    }

    fn sync(&self, through: u64) -> Result<(), JournalError> {
        let (file, target) = {
            let mut inner = self.inner.lock();
            if inner.fenced {
                return Err(JournalError::Fenced);
            }
            if inner.synced >= through {
                return Ok(());
            }
            let target = inner.next_index - 1;
            (inner.medium.sync_detached()?, target)
        };
        // The lock is not held across the sync: appends go on meanwhile.
        if let Some(f) = file {
            f.sync_data()?;
        }
        let mut inner = self.inner.lock();
        inner.synced = inner.synced.max(target);
        Ok(())
    }

    fn write_snapshot(&self, index: u64, chunks: &[&[u8]]) -> Result<(), JournalError> {
        if chunks.len() > MAX_SNAPSHOT_CHUNKS as usize {
            return Err(JournalError::RecordTooLarge {
                len: chunks.len(),
                max: MAX_SNAPSHOT_CHUNKS as usize,
            });
        }
        if let Some(c) = chunks.iter().find(|c| c.len() > SNAPSHOT_CHUNK_BYTES) {
            return Err(JournalError::RecordTooLarge {
                len: c.len(),
                max: SNAPSHOT_CHUNK_BYTES,
            });
        }
        let mut inner = self.inner.lock();
        if inner.fenced {
            return Err(JournalError::Fenced);
        }
        let parsed = self.read_parsed(&mut inner)?;
        let first = parsed.snapshot_index + 1;
        if index < parsed.snapshot_index || index >= inner.next_index {
            return Err(corrupt(0, "snapshot index outside the log"));
        }
        let keep_from = usize::try_from(index + 1 - first).unwrap_or(usize::MAX);
        let n = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        let mut out = frame(&header(index, n))?;
        for c in chunks {
            out.extend_from_slice(&frame(c)?);
        }
        for rec in parsed.records.iter().skip(keep_from) {
            out.extend_from_slice(&frame(rec)?);
        }
        inner.cache = None;
        inner.medium.replace(&out)?;
        inner.snapshot_index = index;
        // Everything kept was rewritten durably.
        inner.synced = inner.next_index - 1;
        Ok(())
    }
}

// ---- the file medium ----------------------------------------------------

#[derive(Debug)]
struct FileMedium {
    path: PathBuf,
    file: File,
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

impl Medium for FileMedium {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(0))?;
        self.file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync_detached(&mut self) -> io::Result<Option<File>> {
        self.file.try_clone().map(Some)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut tmp_name = self.path.clone().into_os_string();
        tmp_name.push(".compact");
        let tmp = PathBuf::from(tmp_name);
        {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        sync_dir(&self.path)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        Ok(())
    }
}

/// The journal in one file, appended with `write`, synced with
/// `fdatasync`, compacted through a temporary file, `fsync`, `rename` and a
/// directory `fsync`. One writer at a time: opening takes an exclusive
/// `flock` on the sidecar `<path>.lock` (never renamed), held until the
/// store is dropped; the kernel releases it when the process dies.
#[derive(Debug)]
pub struct FileStore {
    log: FramedLog<FileMedium>,
    // Held for the lock; closing it releases the flock.
    _lock: File,
    path: PathBuf,
}

impl FileStore {
    /// Opens (creating if missing) the journal at `path` and locks it.
    ///
    /// # Errors
    /// [`JournalError::Locked`] when another open store holds it (in this
    /// process or another), [`JournalError::Io`].
    pub fn open(path: impl AsRef<Path>, max_record_bytes: usize) -> Result<Self, JournalError> {
        let path = path.as_ref().to_path_buf();
        let mut lock_name = path.clone().into_os_string();
        lock_name.push(".lock");
        let lock_path = PathBuf::from(lock_name);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(JournalError::Locked { path });
            }
            Err(e) => return Err(JournalError::Io(e.into())),
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        sync_dir(&path)?;
        Ok(Self {
            log: FramedLog::new(
                FileMedium {
                    path: path.clone(),
                    file,
                },
                max_record_bytes,
            ),
            _lock: lock,
            path,
        })
    }

    /// The journal's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

macro_rules! delegate_store {
    ($ty:ty) => {
        impl DurableStore for $ty {
            fn load(&self) -> Result<LogInfo, JournalError> {
                self.log.load()
            }
            fn read_snapshot_chunk(&self, n: u32) -> Result<Vec<u8>, JournalError> {
                self.log.read_snapshot_chunk(n)
            }
            fn read_from(
                &self,
                index: u64,
                max_bytes: usize,
            ) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
                self.log.read_from(index, max_bytes)
            }
            fn append(&self, index: u64, record: &[u8]) -> Result<(), JournalError> {
                self.log.append(index, record)
            }
            fn sync(&self, through: u64) -> Result<(), JournalError> {
                self.log.sync(through)
            }
            fn write_snapshot(&self, index: u64, chunks: &[&[u8]]) -> Result<(), JournalError> {
                self.log.write_snapshot(index, chunks)
            }
        }
    };
}

delegate_store!(FileStore);

// ---- the memory medium --------------------------------------------------

#[cfg(feature = "testing")]
pub use self::mem::MemStore;

#[cfg(feature = "testing")]
mod mem {
    use std::sync::Arc;

    use super::*;

    /// Bytes known durable and bytes appended but not yet synced, apart.
    #[derive(Debug, Default)]
    pub(super) struct MemBytes {
        durable: Vec<u8>,
        pending: Vec<u8>,
        syncs: u64,
        fail_sync_at: Option<u64>,
        fenced: bool,
    }

    #[derive(Clone, Debug, Default)]
    pub(super) struct MemMedium(Arc<Mutex<MemBytes>>);

    impl Medium for MemMedium {
        fn read_all(&mut self) -> io::Result<Vec<u8>> {
            let b = self.0.lock();
            let mut out = b.durable.clone();
            out.extend_from_slice(&b.pending);
            Ok(out)
        }

        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.0.lock().pending.extend_from_slice(bytes);
            Ok(())
        }

        fn sync_detached(&mut self) -> io::Result<Option<File>> {
            let mut b = self.0.lock();
            let n = b.syncs;
            b.syncs += 1;
            if b.fail_sync_at == Some(n) {
                return Err(io::Error::other("simulated power cut during sync"));
            }
            let pending = std::mem::take(&mut b.pending);
            b.durable.extend_from_slice(&pending);
            Ok(None)
        }

        fn truncate(&mut self, len: u64) -> io::Result<()> {
            let mut b = self.0.lock();
            let mut all = std::mem::take(&mut b.durable);
            all.append(&mut b.pending);
            all.truncate(usize::try_from(len).unwrap_or(usize::MAX));
            b.durable = all;
            Ok(())
        }

        fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
            let mut b = self.0.lock();
            b.durable = bytes.to_vec();
            b.pending.clear();
            Ok(())
        }
    }

    /// An in-memory [`DurableStore`] for tests (feature `testing`):
    /// appended records stay volatile until synced, so
    /// [`power_cut`](Self::power_cut) can drop or tear them; clones share
    /// the same bytes, so a test keeps one handle while a plane owns
    /// another. [`fence`](Self::fence) deposes this writer as a replicated
    /// store would.
    #[derive(Clone, Debug)]
    pub struct MemStore {
        bytes: MemMedium,
        log: Arc<FramedLog<MemMedium>>,
    }

    impl Default for MemStore {
        fn default() -> Self {
            Self::from_bytes(Vec::new())
        }
    }

    impl MemStore {
        /// An empty store.
        #[must_use]
        pub fn new() -> Self {
            Self::default()
        }

        /// A store whose durable content is `bytes` (what survived a cut).
        #[must_use]
        pub fn from_bytes(bytes: Vec<u8>) -> Self {
            let medium = MemMedium::default();
            medium.0.lock().durable = bytes;
            Self {
                bytes: medium.clone(),
                log: Arc::new(FramedLog::new(
                    medium,
                    super::super::DEFAULT_MAX_RECORD_BYTES,
                )),
            }
        }

        /// Makes the `n`th sync from now (0 = the next) fail with an I/O
        /// error, leaving its bytes volatile: the write in flight at a cut.
        pub fn fail_sync_after(&self, n: u64) {
            let mut b = self.bytes.0.lock();
            b.fail_sync_at = Some(b.syncs + n);
        }

        /// Deposes this writer: every later append, sync and snapshot fails
        /// with [`JournalError::Fenced`], as when another node took over.
        pub fn fence(&self) {
            self.bytes.0.lock().fenced = true;
            self.log.inner.lock().fenced = true;
        }

        /// The bytes a power cut leaves: everything durable, then the first
        /// `keep` volatile bytes (clamped), of which those from
        /// `garbage_from` on are flipped (a torn sector). `keep = 0` drops
        /// every unsynced byte.
        #[must_use]
        pub fn power_cut(&self, keep: usize, garbage_from: Option<usize>) -> Vec<u8> {
            let b = self.bytes.0.lock();
            let keep = keep.min(b.pending.len());
            let mut out = b.durable.clone();
            let start = out.len();
            out.extend_from_slice(&b.pending[..keep]);
            if let Some(g) = garbage_from {
                for byte in out.iter_mut().skip(start + g) {
                    *byte ^= 0xA5;
                }
            }
            out
        }

        /// Every byte, durable or not.
        #[must_use]
        pub fn bytes(&self) -> Vec<u8> {
            self.power_cut(usize::MAX, None)
        }

        /// Bytes appended but not synced.
        #[must_use]
        pub fn pending_len(&self) -> usize {
            self.bytes.0.lock().pending.len()
        }
    }

    impl DurableStore for MemStore {
        fn load(&self) -> Result<LogInfo, JournalError> {
            self.log.load()
        }
        fn read_snapshot_chunk(&self, n: u32) -> Result<Vec<u8>, JournalError> {
            self.log.read_snapshot_chunk(n)
        }
        fn read_from(
            &self,
            index: u64,
            max_bytes: usize,
        ) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
            self.log.read_from(index, max_bytes)
        }
        fn append(&self, index: u64, record: &[u8]) -> Result<(), JournalError> {
            self.log.append(index, record)
        }
        fn sync(&self, through: u64) -> Result<(), JournalError> {
            self.log.sync(through)
        }
        fn write_snapshot(&self, index: u64, chunks: &[&[u8]]) -> Result<(), JournalError> {
            self.log.write_snapshot(index, chunks)
        }
    }
}
