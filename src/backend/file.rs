//! A regular file or a block device as block storage.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rustix::fs::{FallocateFlags, OFlags, SeekFrom};
use rustix::io::{Errno, ReadWriteFlags};

use super::op::push_extent;
use super::{
    AllocationExtent, AllocationState, BackendError, BackendOp, BlockBackend, check_range,
};

/// How [`FileBackend::open`] opens its file.
///
/// The default opens an existing regular file or block device read-write
/// through the page cache, with a 512-byte logical block size for regular
/// files and the device's own for block devices.
///
/// # Examples
///
/// ```
/// use vvol::backend::FileBackendOptions;
///
/// let options = FileBackendOptions::default()
///     .with_logical_block_size(4096)
///     .with_create_capacity(1 << 20);
/// assert_eq!(options.logical_block_size(), Some(4096));
/// assert!(!options.direct());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileBackendOptions {
    direct: bool,
    logical_block_size: Option<u32>,
    create_capacity: Option<u64>,
    read_only: bool,
}

impl FileBackendOptions {
    /// Opens with `O_DIRECT`, bypassing the page cache. Every offset and
    /// length must then be a multiple of the logical block size; caller
    /// buffers may have any address (unaligned ones are bounced through an
    /// aligned buffer). The file system must support `O_DIRECT` (tmpfs does
    /// not).
    #[must_use]
    pub fn with_direct(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    /// Sets the logical block size (512 or 4096). For a block device it must
    /// be a multiple of the device's own logical block size.
    #[must_use]
    pub fn with_logical_block_size(mut self, logical_block_size: u32) -> Self {
        self.logical_block_size = Some(logical_block_size);
        self
    }

    /// Creates the regular file if it is missing and sets its length to
    /// `capacity_bytes` (an existing file is grown or truncated to it; grown
    /// space is sparse and reads as zeros).
    #[must_use]
    pub fn with_create_capacity(mut self, capacity_bytes: u64) -> Self {
        self.create_capacity = Some(capacity_bytes);
        self
    }

    /// Opens read-only: writes, discards, zeroing and resizing then return
    /// [`BackendError::Unsupported`].
    #[must_use]
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Whether `O_DIRECT` is requested.
    #[must_use]
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// The requested logical block size, if one was set.
    #[must_use]
    pub fn logical_block_size(&self) -> Option<u32> {
        self.logical_block_size
    }

    /// The capacity to create or size the file to, if one was set.
    #[must_use]
    pub fn create_capacity(&self) -> Option<u64> {
        self.create_capacity
    }

    /// Whether the file is opened read-only.
    #[must_use]
    pub fn read_only(&self) -> bool {
        self.read_only
    }
}

/// Block storage in a regular file or a block device, through positional
/// reads and writes (`pread`/`pwrite`).
///
/// - [`flush`](BlockBackend::flush) is `fdatasync`; a FUA write uses
///   `pwritev2(RWF_DSYNC)` (or a write followed by `fdatasync` where the
///   kernel lacks it).
/// - [`discard`](BlockBackend::discard) punches a hole and
///   [`write_zeroes`](BlockBackend::write_zeroes) zeroes the range with
///   `fallocate`; where the file system or device refuses, both write zeros
///   in pieces of [`ZERO_CHUNK_BYTES`](Self::ZERO_CHUNK_BYTES).
/// - [`allocation`](BlockBackend::allocation) maps data and holes of a
///   regular file with `SEEK_DATA`/`SEEK_HOLE`; a block device reports one
///   [`AllocationState::Unknown`] extent.
/// - [`resize`](BlockBackend::resize) sets a regular file's length; a block
///   device cannot be resized.
///
/// With [`with_direct`](FileBackendOptions::with_direct), offsets and lengths
/// must be multiples of the logical block size ([`BackendError::Misaligned`]
/// otherwise); buffers whose address is not a multiple of
/// [`MEMORY_ALIGNMENT`](Self::MEMORY_ALIGNMENT) are copied through an aligned
/// buffer of at most [`BOUNCE_BYTES`](Self::BOUNCE_BYTES).
///
/// All methods take `&self`; the backend is shared between threads through an
/// `Arc`.
///
/// # Examples
///
/// ```
/// use vvol::backend::{BlockBackend, FileBackend, FileBackendOptions};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("disk.img");
/// let backend = FileBackend::open(
///     &path,
///     FileBackendOptions::default().with_create_capacity(1 << 20),
/// )?;
/// assert_eq!(backend.capacity_bytes(), 1 << 20);
/// assert!(!backend.is_block_device());
///
/// backend.write_at(4096, b"hello", true)?;
/// let mut buf = [0u8; 5];
/// backend.read_at(4096, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// backend.flush()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileBackend {
    file: File,
    path: PathBuf,
    block_device: bool,
    direct: bool,
    read_only: bool,
    block_size: u32,
    capacity: AtomicU64,
    /// Serializes `resize` calls so the file length and `capacity` agree.
    resize_lock: Mutex<()>,
}

impl FileBackend {
    /// Largest capacity a file backend accepts (1 EiB).
    pub const MAX_CAPACITY: u64 = 1 << 60;

    /// Address alignment of the buffers handed to the kernel with `O_DIRECT`.
    pub const MEMORY_ALIGNMENT: usize = 4096;

    /// Largest aligned bounce buffer an `O_DIRECT` read or write of an
    /// unaligned caller buffer allocates; larger requests go in pieces.
    pub const BOUNCE_BYTES: usize = 1 << 20;

    /// Largest zero buffer written at a time when `fallocate` cannot discard
    /// or zero a range.
    pub const ZERO_CHUNK_BYTES: usize = 1 << 20;

    /// Opens `path` as a block backend.
    ///
    /// A block device's capacity is its size and its logical block size is
    /// the device's (`BLKSSZGET`, 512 when the query fails) unless
    /// [`with_logical_block_size`](FileBackendOptions::with_logical_block_size)
    /// sets a larger multiple. A regular file's capacity is its length, after
    /// [`with_create_capacity`](FileBackendOptions::with_create_capacity) has
    /// created or sized it.
    ///
    /// # Errors
    /// [`BackendError::Open`] when the file cannot be opened or examined;
    /// [`BackendError::InvalidConfig`] when the block size is not 512 or 4096
    /// (or smaller than a device's), the capacity is not a multiple of it or
    /// exceeds [`MAX_CAPACITY`](Self::MAX_CAPACITY), the path is neither a
    /// regular file nor a block device, or a create capacity is given with
    /// read-only or for a block device.
    ///
    /// # Examples
    ///
    /// ```
    /// use vvol::backend::{BackendError, FileBackend, FileBackendOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let err = FileBackend::open(dir.path().join("missing"), FileBackendOptions::default())
    ///     .unwrap_err();
    /// assert!(matches!(err, BackendError::Open { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>, options: FileBackendOptions) -> Result<Self, BackendError> {
        let path = path.as_ref();
        let open_error = |source: io::Error| BackendError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(size) = options.logical_block_size
            && size != 512
            && size != 4096
        {
            return Err(invalid("logical block size must be 512 or 4096"));
        }
        if options.create_capacity.is_some() && options.read_only {
            return Err(invalid("a create capacity needs a writable file"));
        }

        let mut open = OpenOptions::new();
        open.read(true).write(!options.read_only);
        if options.create_capacity.is_some() {
            open.create(true);
        }
        if options.direct {
            open.custom_flags(OFlags::DIRECT.bits().cast_signed());
        }
        let file = open.open(path).map_err(open_error)?;
        let metadata = file.metadata().map_err(open_error)?;
        let file_type = metadata.file_type();
        let block_device = file_type.is_block_device();

        let (block_size, capacity) = if block_device {
            if options.create_capacity.is_some() {
                return Err(invalid("a create capacity applies to regular files only"));
            }
            let device_size = rustix::fs::ioctl_blksszget(&file).unwrap_or(512);
            let block_size = options.logical_block_size.unwrap_or(device_size);
            if block_size != 512 && block_size != 4096 {
                return Err(invalid("device logical block size is not 512 or 4096"));
            }
            if device_size == 0 || !block_size.is_multiple_of(device_size) {
                return Err(invalid(
                    "logical block size is not a multiple of the device's",
                ));
            }
            let capacity = rustix::fs::seek(&file, SeekFrom::End(0))
                .map_err(|errno| open_error(errno.into()))?;
            (block_size, capacity)
        } else if file_type.is_file() {
            let block_size = options.logical_block_size.unwrap_or(512);
            let capacity = match options.create_capacity {
                Some(capacity) => {
                    check_capacity(capacity, block_size)?;
                    file.set_len(capacity).map_err(open_error)?;
                    capacity
                }
                None => metadata.len(),
            };
            (block_size, capacity)
        } else {
            return Err(invalid("not a regular file or a block device"));
        };
        check_capacity(capacity, block_size)?;

        Ok(Self {
            file,
            path: path.to_path_buf(),
            block_device,
            direct: options.direct,
            read_only: options.read_only,
            block_size,
            capacity: AtomicU64::new(capacity),
            resize_lock: Mutex::new(()),
        })
    }

    /// The path the backend was opened with.
    ///
    /// # Examples
    ///
    /// ```
    /// use vvol::backend::{FileBackend, FileBackendOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("a.img");
    /// let backend = FileBackend::open(&path, FileBackendOptions::default().with_create_capacity(4096))?;
    /// assert_eq!(backend.path(), path);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the backend is a block device (rather than a regular file).
    #[must_use]
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// Whether the file was opened with `O_DIRECT`.
    #[must_use]
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Refuses writes of any kind on a read-only backend.
    fn check_writable(&self, op: BackendOp) -> Result<(), BackendError> {
        if self.read_only {
            Err(BackendError::Unsupported { op })
        } else {
            Ok(())
        }
    }

    /// With `O_DIRECT`, refuses ranges that are not block multiples.
    fn check_aligned(&self, op: BackendOp, offset: u64, len: u64) -> Result<(), BackendError> {
        let alignment = u64::from(self.block_size);
        if self.direct && !(offset.is_multiple_of(alignment) && len.is_multiple_of(alignment)) {
            return Err(BackendError::Misaligned {
                op,
                offset,
                len,
                alignment: self.block_size,
            });
        }
        Ok(())
    }

    /// The range checks shared by every ranged operation.
    fn check(&self, op: BackendOp, offset: u64, len: u64) -> Result<(), BackendError> {
        check_range(op, offset, len, self.capacity_bytes())?;
        self.check_aligned(op, offset, len)
    }

    /// Whether `buf` can go to the kernel as it is.
    fn needs_bounce(&self, buf: &[u8]) -> bool {
        self.direct && buf.as_ptr().align_offset(Self::MEMORY_ALIGNMENT) != 0
    }

    /// Writes all of `data` at `offset`, durably when `fua`.
    fn write_all(&self, offset: u64, data: &[u8], fua: bool) -> io::Result<()> {
        if !fua {
            return self.file.write_all_at(data, offset);
        }
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            match rustix::io::pwritev2(
                &self.file,
                &[IoSlice::new(&data[done..])],
                at,
                ReadWriteFlags::DSYNC,
            ) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => done += written,
                Err(Errno::INTR) => {}
                Err(Errno::OPNOTSUPP | Errno::NOSYS) => {
                    self.file.write_all_at(&data[done..], at)?;
                    return self.file.sync_data();
                }
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(())
    }

    /// Writes `len` zero bytes at `offset`, in pieces of at most
    /// `ZERO_CHUNK_BYTES`.
    fn write_zero_bytes(&self, offset: u64, len: u64) -> io::Result<()> {
        let piece =
            usize::try_from(len.min(Self::ZERO_CHUNK_BYTES as u64)).map_err(io::Error::other)?;
        let mut zeros = AlignedBuf::new(piece)?;
        let zeros = zeros.get_mut(piece)?;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(piece as u64) as usize;
            self.file.write_all_at(&zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Tries each `fallocate` mode in turn, moving on while the file system
    /// or device says it does not support one, and writes zeros when none
    /// works.
    fn fallocate_or_zero(
        &self,
        op: BackendOp,
        modes: &[FallocateFlags],
        offset: u64,
        len: u64,
    ) -> Result<(), BackendError> {
        for &mode in modes {
            loop {
                match rustix::fs::fallocate(&self.file, mode, offset, len) {
                    Ok(()) => return Ok(()),
                    Err(Errno::INTR) => {}
                    Err(Errno::OPNOTSUPP | Errno::NOSYS) => break,
                    Err(errno) => return Err(io_error(op, offset)(errno.into())),
                }
            }
        }
        self.write_zero_bytes(offset, len)
            .map_err(io_error(op, offset))
    }

    /// `lseek(SEEK_DATA/SEEK_HOLE)`, retried on `EINTR`.
    fn seek(&self, pos: SeekFrom) -> Result<u64, Errno> {
        loop {
            match rustix::fs::seek(&self.file, pos) {
                Err(Errno::INTR) => {}
                other => return other,
            }
        }
    }
}

/// An `InvalidConfig` error.
fn invalid(reason: &'static str) -> BackendError {
    BackendError::InvalidConfig { reason }
}

/// Checks a capacity against the block size and `MAX_CAPACITY`.
fn check_capacity(capacity: u64, block_size: u32) -> Result<(), BackendError> {
    if !capacity.is_multiple_of(u64::from(block_size)) {
        return Err(invalid(
            "capacity is not a multiple of the logical block size",
        ));
    }
    if capacity > FileBackend::MAX_CAPACITY {
        return Err(invalid("capacity exceeds FileBackend::MAX_CAPACITY"));
    }
    Ok(())
}

/// Maps an I/O error to [`BackendError::Io`].
fn io_error(op: BackendOp, offset: u64) -> impl FnOnce(io::Error) -> BackendError {
    move |source| BackendError::Io { op, offset, source }
}

/// A heap buffer whose usable part starts at a `MEMORY_ALIGNMENT` boundary,
/// made by over-allocating a `Vec`.
struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
}

impl AlignedBuf {
    /// A zeroed buffer with at least `len` aligned bytes.
    fn new(len: usize) -> io::Result<Self> {
        let storage = vec![0u8; len.saturating_add(FileBackend::MEMORY_ALIGNMENT)];
        let start = storage.as_ptr().align_offset(FileBackend::MEMORY_ALIGNMENT);
        if start >= FileBackend::MEMORY_ALIGNMENT {
            return Err(io::Error::other("cannot align a bounce buffer"));
        }
        Ok(Self { storage, start })
    }

    /// The first `len` aligned bytes.
    fn get_mut(&mut self, len: usize) -> io::Result<&mut [u8]> {
        self.storage
            .get_mut(self.start..self.start.saturating_add(len))
            .ok_or_else(|| io::Error::other("bounce buffer too small"))
    }
}

impl BlockBackend for FileBackend {
    fn capacity_bytes(&self) -> u64 {
        self.capacity.load(Ordering::SeqCst)
    }

    fn logical_block_size(&self) -> u32 {
        self.block_size
    }

    fn supports(&self, op: BackendOp) -> bool {
        match op {
            BackendOp::Read | BackendOp::Flush | BackendOp::Allocation => true,
            BackendOp::Write | BackendOp::Discard | BackendOp::WriteZeroes => !self.read_only,
            BackendOp::Resize => !self.read_only && !self.block_device,
        }
    }

    /// Discard punches a hole (`FALLOC_FL_PUNCH_HOLE`: later reads of a
    /// regular file return zeros; on a block device Linux zeroes the range
    /// without falling back to writes), or writes zeros itself when the
    /// file system cannot punch, so a discarded range reads as zeros.
    fn discard_zeroes(&self) -> bool {
        !self.read_only
    }

    /// A regular file's preferred I/O block (`st_blksize`, POSIX `stat`):
    /// the unit in which Linux file systems punch holes. `0` for a block
    /// device, a read-only backend, or a size that is not a multiple of the
    /// logical block.
    fn discard_granularity(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        if self.block_device || self.read_only {
            return 0;
        }
        match self.file.metadata() {
            Ok(m) if m.blksize() > 0 && m.blksize().is_multiple_of(u64::from(self.block_size)) => {
                m.blksize()
            }
            _ => 0,
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let op = BackendOp::Read;
        self.check(op, offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        if !self.needs_bounce(buf) {
            return self
                .file
                .read_exact_at(buf, offset)
                .map_err(io_error(op, offset));
        }
        let mut bounce =
            AlignedBuf::new(buf.len().min(Self::BOUNCE_BYTES)).map_err(io_error(op, offset))?;
        let mut at = offset;
        for piece in buf.chunks_mut(Self::BOUNCE_BYTES) {
            let aligned = bounce.get_mut(piece.len()).map_err(io_error(op, offset))?;
            self.file
                .read_exact_at(aligned, at)
                .map_err(io_error(op, offset))?;
            piece.copy_from_slice(aligned);
            at += piece.len() as u64;
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        let op = BackendOp::Write;
        self.check_writable(op)?;
        self.check(op, offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        if !self.needs_bounce(data) {
            return self
                .write_all(offset, data, fua)
                .map_err(io_error(op, offset));
        }
        let mut bounce =
            AlignedBuf::new(data.len().min(Self::BOUNCE_BYTES)).map_err(io_error(op, offset))?;
        let mut at = offset;
        for piece in data.chunks(Self::BOUNCE_BYTES) {
            let aligned = bounce.get_mut(piece.len()).map_err(io_error(op, offset))?;
            aligned.copy_from_slice(piece);
            self.write_all(at, aligned, fua)
                .map_err(io_error(op, offset))?;
            at += piece.len() as u64;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.file.sync_data().map_err(io_error(BackendOp::Flush, 0))
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        let op = BackendOp::Discard;
        self.check_writable(op)?;
        self.check(op, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        self.fallocate_or_zero(
            op,
            &[FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE],
            offset,
            len,
        )
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        let op = BackendOp::WriteZeroes;
        self.check_writable(op)?;
        self.check(op, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let zero_range = FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE;
        let punch_hole = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        // Punching a hole in a block device zeroes without falling back to
        // writes (BLKDEV_ZERO_NOFALLBACK); ZERO_RANGE may write zeros itself.
        let modes = if self.block_device {
            [punch_hole, zero_range]
        } else {
            [zero_range, punch_hole]
        };
        self.fallocate_or_zero(op, &modes, offset, len)
    }

    /// The file's allocated blocks (`st_blocks` x 512, POSIX `stat`), at
    /// most the capacity; `None` for a block device or when `fstat` fails.
    fn allocated_bytes(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        if self.block_device {
            return None;
        }
        let blocks = self.file.metadata().ok()?.blocks();
        Some(blocks.saturating_mul(512).min(self.capacity_bytes()))
    }

    fn allocation(&self, offset: u64, len: u64) -> Result<Vec<AllocationExtent>, BackendError> {
        let op = BackendOp::Allocation;
        check_range(op, offset, len, self.capacity_bytes())?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let unknown = vec![AllocationExtent {
            offset,
            len,
            state: AllocationState::Unknown,
        }];
        if self.block_device {
            return Ok(unknown);
        }
        let end = offset + len;
        let mut extents = Vec::new();
        let mut cursor = offset;
        while cursor < end {
            let data = match self.seek(SeekFrom::Data(cursor)) {
                Ok(data) => data,
                // No data at or after `cursor`.
                Err(Errno::NXIO) => end,
                Err(Errno::INVAL | Errno::OPNOTSUPP) if extents.is_empty() => return Ok(unknown),
                Err(errno) => return Err(io_error(op, cursor)(errno.into())),
            };
            let (stop, state) = if data > cursor {
                (data.min(end), AllocationState::Zero)
            } else {
                let hole = match self.seek(SeekFrom::Hole(cursor)) {
                    Ok(hole) => hole,
                    Err(Errno::NXIO) => end,
                    Err(errno) => return Err(io_error(op, cursor)(errno.into())),
                };
                // SEEK_HOLE never returns `cursor` itself here (it is data),
                // but guard against a file changing underneath.
                (hole.clamp(cursor + 1, end), AllocationState::Allocated)
            };
            let extent = AllocationExtent {
                offset: cursor,
                len: stop - cursor,
                state,
            };
            if !push_extent(&mut extents, extent) {
                break;
            }
            cursor = stop;
        }
        Ok(extents)
    }

    fn resize(&self, new_capacity_bytes: u64) -> Result<(), BackendError> {
        let op = BackendOp::Resize;
        if self.read_only || self.block_device {
            return Err(BackendError::Unsupported { op });
        }
        if !new_capacity_bytes.is_multiple_of(u64::from(self.block_size)) {
            return Err(BackendError::Misaligned {
                op,
                offset: new_capacity_bytes,
                len: 0,
                alignment: self.block_size,
            });
        }
        if new_capacity_bytes > Self::MAX_CAPACITY {
            return Err(BackendError::TooLarge {
                op,
                len: new_capacity_bytes,
                limit: Self::MAX_CAPACITY,
            });
        }
        let _serial = self.resize_lock.lock();
        let old = self.capacity_bytes();
        if new_capacity_bytes < old {
            // Lower the capacity first so no new request lands past the end.
            self.capacity.store(new_capacity_bytes, Ordering::SeqCst);
        }
        if let Err(source) = self.file.set_len(new_capacity_bytes) {
            self.capacity.store(old, Ordering::SeqCst);
            return Err(BackendError::Io {
                op,
                offset: new_capacity_bytes,
                source,
            });
        }
        self.capacity.store(new_capacity_bytes, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_are_aligned() {
        for len in [1, 512, 4096, FileBackend::BOUNCE_BYTES] {
            let mut buf = AlignedBuf::new(len).expect("buffer");
            let slice = buf.get_mut(len).expect("slice");
            assert_eq!(slice.len(), len);
            assert_eq!(
                slice.as_ptr().align_offset(FileBackend::MEMORY_ALIGNMENT),
                0
            );
            assert!(slice.iter().all(|&b| b == 0));
        }
    }

    /// The zero-writing fallback, which file systems that support
    /// `fallocate` never reach through the public methods.
    #[test]
    fn zero_writing_fallback_spans_several_pieces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let capacity = 4 << 20;
        let backend = FileBackend::open(
            dir.path().join("z.img"),
            FileBackendOptions::default().with_create_capacity(capacity),
        )
        .expect("open");
        backend
            .write_at(0, &vec![0xAA; capacity as usize], false)
            .expect("fill");
        let (offset, len) = (512, (5 << 19) + 1024); // 2.5 MiB + 1 KiB
        backend.write_zero_bytes(offset, len).expect("write zeros");
        let mut buf = vec![0u8; capacity as usize];
        backend.read_at(0, &mut buf).expect("read");
        let (start, end) = (offset as usize, (offset + len) as usize);
        assert!(buf[..start].iter().all(|&b| b == 0xAA));
        assert!(buf[start..end].iter().all(|&b| b == 0));
        assert!(buf[end..].iter().all(|&b| b == 0xAA));
    }
}
