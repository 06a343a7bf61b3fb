//! Where journal bytes go: a small trait, a file implementation, and the
//! in-memory implementation tests use to simulate power cuts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// Append-only storage of journal bytes.
///
/// Contract: `append` may keep bytes in a volatile cache; only `sync` makes
/// every byte appended so far durable. `replace` atomically swaps the whole
/// content for `bytes` and is durable when it returns (the old content or
/// the new one survives a power cut, never a mix). `truncate` drops bytes
/// past `len` (used to cut a torn tail before appending again).
pub trait JournalStorage: Send + std::fmt::Debug {
    /// Everything stored, as the journal reader sees it on open.
    ///
    /// # Errors
    /// Any I/O error.
    fn read_all(&mut self) -> io::Result<Vec<u8>>;
    /// Appends `bytes` (not yet durable).
    ///
    /// # Errors
    /// Any I/O error.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes every appended byte durable.
    ///
    /// # Errors
    /// Any I/O error.
    fn sync(&mut self) -> io::Result<()>;
    /// Drops everything past `len` bytes, durably.
    ///
    /// # Errors
    /// Any I/O error.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Atomically and durably replaces the content with `bytes`.
    ///
    /// # Errors
    /// Any I/O error.
    fn replace(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// A journal in one file: appends with `write`, syncs with `fdatasync`,
/// replaces through a temporary file, `fsync`, `rename` and an `fsync` of
/// the directory.
#[derive(Debug)]
pub struct FileStorage {
    path: PathBuf,
    file: File,
}

impl FileStorage {
    /// Opens (creating if missing) the journal file at `path`.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        sync_dir(&path)?;
        Ok(Self { path, file })
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

impl JournalStorage for FileStorage {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(0))?;
        self.file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
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

/// What a [`MemStorage`] holds: bytes known durable and bytes appended but
/// not yet synced, kept apart.
#[derive(Debug, Default)]
struct MemInner {
    durable: Vec<u8>,
    pending: Vec<u8>,
    syncs: u64,
    fail_sync_at: Option<u64>,
}

/// In-memory storage for tests: appended bytes stay volatile until `sync`,
/// so [`MemStorage::power_cut`] can drop or tear them. Clones share the
/// same bytes, so a test keeps one handle while the journal owns another.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<MemInner>>,
}

impl MemStorage {
    /// Empty storage.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Storage whose durable content is `bytes` (what survived a cut).
    #[must_use]
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let s = Self::default();
        s.inner.lock().durable = bytes;
        s
    }

    /// Makes the `n`th `sync` from now (0 = the next) fail with an I/O
    /// error, leaving its bytes volatile: the write in flight at a cut.
    pub fn fail_sync_after(&self, n: u64) {
        let mut inner = self.inner.lock();
        inner.fail_sync_at = Some(inner.syncs + n);
    }

    /// The bytes a power cut leaves: everything durable, then the first
    /// `keep` volatile bytes (clamped), of which those from `garbage_from`
    /// on are flipped (a torn sector). `keep = 0` drops every unsynced byte.
    #[must_use]
    pub fn power_cut(&self, keep: usize, garbage_from: Option<usize>) -> Vec<u8> {
        let inner = self.inner.lock();
        let keep = keep.min(inner.pending.len());
        let mut out = inner.durable.clone();
        let start = out.len();
        out.extend_from_slice(&inner.pending[..keep]);
        if let Some(g) = garbage_from {
            for b in out.iter_mut().skip(start + g) {
                *b ^= 0xA5;
            }
        }
        out
    }

    /// Bytes appended but not synced.
    #[must_use]
    pub fn pending_len(&self) -> usize {
        self.inner.lock().pending.len()
    }
}

impl JournalStorage for MemStorage {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let inner = self.inner.lock();
        let mut out = inner.durable.clone();
        out.extend_from_slice(&inner.pending);
        Ok(out)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.lock().pending.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut inner = self.inner.lock();
        let n = inner.syncs;
        inner.syncs += 1;
        if inner.fail_sync_at == Some(n) {
            return Err(io::Error::other("simulated power cut during sync"));
        }
        let pending = std::mem::take(&mut inner.pending);
        inner.durable.extend_from_slice(&pending);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut inner = self.inner.lock();
        let mut all = std::mem::take(&mut inner.durable);
        all.append(&mut inner.pending);
        all.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        inner.durable = all;
        Ok(())
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut inner = self.inner.lock();
        inner.durable = bytes.to_vec();
        inner.pending.clear();
        Ok(())
    }
}
