//! Sparse in-RAM block storage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use super::op::push_extent;
use super::{
    AllocationExtent, AllocationState, BackendError, BackendOp, BlockBackend, check_range,
};

/// One chunk of backing memory, locked on its own so that I/O to different
/// chunks runs concurrently.
type Chunk = Arc<RwLock<Box<[u8]>>>;

/// Chunk size as a `usize`, for slicing.
const CHUNK: usize = MemoryBackend::CHUNK_SIZE as usize;

/// Sparse block storage in RAM.
///
/// Memory is held in chunks of [`CHUNK_SIZE`](Self::CHUNK_SIZE) bytes,
/// allocated on the first write that touches them; everything else reads as
/// zeros. An empty backend holds no chunk, whatever its capacity, so a
/// process can keep a great many large, mostly empty volumes.
/// [`discard`](BlockBackend::discard) and
/// [`write_zeroes`](BlockBackend::write_zeroes) free every chunk they cover
/// whole and zero the partial ones, so both read back as zeros.
///
/// All methods take `&self` and may be called from many threads: the chunk
/// map is locked only to find or insert a chunk, and each chunk has its own
/// lock, so I/O to different chunks runs in parallel. Memory is as durable as
/// the process, so FUA writes and [`flush`](BlockBackend::flush) do nothing
/// more.
///
/// # Examples
///
/// ```
/// use vvol::backend::{BlockBackend, MemoryBackend};
///
/// let backend = MemoryBackend::new(1 << 40, 4096)?; // 1 TiB, nothing allocated
/// assert_eq!(backend.allocated_bytes(), 0);
///
/// backend.write_at(8192, &[0xAB; 4096], false)?;
/// let mut buf = [0u8; 4096];
/// backend.read_at(8192, &mut buf)?;
/// assert_eq!(buf, [0xAB; 4096]);
/// assert_eq!(backend.allocated_bytes(), MemoryBackend::CHUNK_SIZE);
///
/// backend.discard(0, MemoryBackend::CHUNK_SIZE)?;
/// assert_eq!(backend.allocated_bytes(), 0);
/// # Ok::<(), vvol::backend::BackendError>(())
/// ```
#[derive(Debug)]
pub struct MemoryBackend {
    /// Allocated chunks by chunk index (byte offset / `CHUNK_SIZE`).
    chunks: RwLock<BTreeMap<u64, Chunk>>,
    /// Capacity in bytes; changed by `resize` under the map's write lock.
    capacity: AtomicU64,
    /// Logical block size in bytes.
    block_size: u32,
}

impl MemoryBackend {
    /// Bytes per chunk: the unit in which memory is allocated and freed.
    pub const CHUNK_SIZE: u64 = 64 * 1024;

    /// Largest capacity a memory backend accepts (1 PiB).
    pub const MAX_CAPACITY: u64 = 1 << 50;

    /// Creates an empty backend of `capacity_bytes` with the given logical
    /// block size. Nothing is allocated until the first write.
    ///
    /// # Errors
    /// [`BackendError::InvalidConfig`] when `logical_block_size` is not 512 or
    /// 4096, when `capacity_bytes` is not a multiple of it, or when
    /// `capacity_bytes` exceeds [`MAX_CAPACITY`](Self::MAX_CAPACITY).
    ///
    /// # Examples
    ///
    /// ```
    /// use vvol::backend::{BackendError, BlockBackend, MemoryBackend};
    ///
    /// let backend = MemoryBackend::new(1 << 20, 512)?;
    /// assert_eq!(backend.capacity_bytes(), 1 << 20);
    /// assert!(matches!(
    ///     MemoryBackend::new(1000, 512),
    ///     Err(BackendError::InvalidConfig { .. })
    /// ));
    /// # Ok::<(), BackendError>(())
    /// ```
    pub fn new(capacity_bytes: u64, logical_block_size: u32) -> Result<Self, BackendError> {
        if logical_block_size != 512 && logical_block_size != 4096 {
            return Err(BackendError::InvalidConfig {
                reason: "logical block size must be 512 or 4096",
            });
        }
        if !capacity_bytes.is_multiple_of(u64::from(logical_block_size)) {
            return Err(BackendError::InvalidConfig {
                reason: "capacity must be a multiple of the logical block size",
            });
        }
        if capacity_bytes > Self::MAX_CAPACITY {
            return Err(BackendError::InvalidConfig {
                reason: "capacity exceeds MemoryBackend::MAX_CAPACITY",
            });
        }
        Ok(Self {
            chunks: RwLock::new(BTreeMap::new()),
            capacity: AtomicU64::new(capacity_bytes),
            block_size: logical_block_size,
        })
    }

    /// Bytes of chunk memory currently held: the number of allocated chunks
    /// times [`CHUNK_SIZE`](Self::CHUNK_SIZE).
    ///
    /// # Examples
    ///
    /// ```
    /// use vvol::backend::{BlockBackend, MemoryBackend};
    ///
    /// let backend = MemoryBackend::new(1 << 20, 512)?;
    /// backend.write_at(0, &[1; 512], false)?;
    /// assert_eq!(backend.allocated_bytes(), MemoryBackend::CHUNK_SIZE);
    /// backend.write_zeroes(0, 1 << 20)?;
    /// assert_eq!(backend.allocated_bytes(), 0);
    /// # Ok::<(), vvol::backend::BackendError>(())
    /// ```
    #[must_use]
    pub fn allocated_bytes(&self) -> u64 {
        let chunks = self.chunks.read().len() as u64;
        chunks.saturating_mul(Self::CHUNK_SIZE)
    }

    /// The chunk with index `index`, if allocated. The map lock is released
    /// before returning.
    fn chunk(&self, index: u64) -> Option<Chunk> {
        self.chunks.read().get(&index).cloned()
    }

    /// The chunk with index `index`, allocated (zeroed) if absent. Refuses to
    /// allocate a chunk wholly or partly for a range past the capacity, so a
    /// write racing with a shrinking `resize` cannot leave a chunk beyond the
    /// end.
    fn chunk_for_write(&self, op: BackendOp, index: u64, end: u64) -> Result<Chunk, BackendError> {
        if let Some(chunk) = self.chunk(index) {
            return Ok(chunk);
        }
        let mut map = self.chunks.write();
        let capacity = self.capacity.load(Ordering::SeqCst);
        if end > capacity {
            return Err(out_of_range(op, index * Self::CHUNK_SIZE, end, capacity));
        }
        Ok(Arc::clone(map.entry(index).or_insert_with(|| {
            Arc::new(RwLock::new(vec![0u8; CHUNK].into_boxed_slice()))
        })))
    }

    /// Zeroes `[start, end)` in chunks that are allocated; absent chunks
    /// already read as zeros. Meant for ranges of at most two chunks.
    fn zero_within(&self, op: BackendOp, start: u64, end: u64) -> Result<(), BackendError> {
        let mut pos = start;
        while pos < end {
            let index = pos / Self::CHUNK_SIZE;
            let chunk_end = ((index + 1) * Self::CHUNK_SIZE).min(end);
            if let Some(chunk) = self.chunk(index) {
                let mut data = chunk.write();
                let capacity = self.capacity.load(Ordering::SeqCst);
                if chunk_end > capacity {
                    return Err(out_of_range(op, pos, chunk_end - pos, capacity));
                }
                let from = (pos % Self::CHUNK_SIZE) as usize;
                let to = from + (chunk_end - pos) as usize;
                data[from..to].fill(0);
            }
            pos = chunk_end;
        }
        Ok(())
    }

    /// Shared body of `discard` and `write_zeroes`: frees whole chunks and
    /// zeroes the partial ones at either end.
    fn zero_range(&self, op: BackendOp, offset: u64, len: u64) -> Result<(), BackendError> {
        check_range(op, offset, len, self.capacity_bytes())?;
        if len == 0 {
            return Ok(());
        }
        let end = offset + len;
        let first_whole = offset.div_ceil(Self::CHUNK_SIZE);
        let end_whole = end / Self::CHUNK_SIZE;
        if first_whole < end_whole {
            {
                let mut map = self.chunks.write();
                let mut covered = map.split_off(&first_whole);
                let mut after = covered.split_off(&end_whole);
                map.append(&mut after);
                // Drop the freed chunks after releasing the map lock.
                drop(map);
                drop(covered);
            }
            self.zero_within(op, offset, first_whole * Self::CHUNK_SIZE)?;
            self.zero_within(op, end_whole * Self::CHUNK_SIZE, end)
        } else {
            self.zero_within(op, offset, end)
        }
    }
}

/// An `OutOfRange` error for `[offset, end)`.
fn out_of_range(op: BackendOp, offset: u64, end: u64, capacity: u64) -> BackendError {
    BackendError::OutOfRange {
        op,
        offset,
        len: end.saturating_sub(offset),
        capacity,
    }
}

impl BlockBackend for MemoryBackend {
    fn capacity_bytes(&self) -> u64 {
        self.capacity.load(Ordering::SeqCst)
    }

    fn logical_block_size(&self) -> u32 {
        self.block_size
    }

    fn supports(&self, _op: BackendOp) -> bool {
        true
    }

    /// Discard frees whole chunks and zeroes the partial ones at either
    /// end, so a discarded range always reads as zeros.
    fn discard_zeroes(&self) -> bool {
        true
    }

    /// Discard frees whole chunks of [`CHUNK_SIZE`](Self::CHUNK_SIZE).
    fn discard_granularity(&self) -> u64 {
        Self::CHUNK_SIZE
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        check_range(
            BackendOp::Read,
            offset,
            buf.len() as u64,
            self.capacity_bytes(),
        )?;
        let mut pos = offset;
        let mut done = 0;
        while done < buf.len() {
            let index = pos / Self::CHUNK_SIZE;
            let from = (pos % Self::CHUNK_SIZE) as usize;
            let n = (CHUNK - from).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match self.chunk(index) {
                Some(chunk) => dst.copy_from_slice(&chunk.read()[from..from + n]),
                None => dst.fill(0),
            }
            done += n;
            pos += n as u64;
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8], _fua: bool) -> Result<(), BackendError> {
        let op = BackendOp::Write;
        check_range(op, offset, data.len() as u64, self.capacity_bytes())?;
        let mut pos = offset;
        let mut done = 0;
        while done < data.len() {
            let index = pos / Self::CHUNK_SIZE;
            let from = (pos % Self::CHUNK_SIZE) as usize;
            let n = (CHUNK - from).min(data.len() - done);
            let end = pos + n as u64;
            let chunk = self.chunk_for_write(op, index, end)?;
            let mut bytes = chunk.write();
            // Re-check under the chunk lock: a shrinking resize zeroes the
            // tail of its last chunk under this lock after lowering the
            // capacity, so a write that passes here lands before that zeroing.
            let capacity = self.capacity.load(Ordering::SeqCst);
            if end > capacity {
                return Err(out_of_range(op, pos, end, capacity));
            }
            bytes[from..from + n].copy_from_slice(&data[done..done + n]);
            done += n;
            pos = end;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.zero_range(BackendOp::Discard, offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.zero_range(BackendOp::WriteZeroes, offset, len)
    }

    fn allocation(&self, offset: u64, len: u64) -> Result<Vec<AllocationExtent>, BackendError> {
        check_range(BackendOp::Allocation, offset, len, self.capacity_bytes())?;
        let mut extents = Vec::new();
        if len == 0 {
            return Ok(extents);
        }
        let end = offset + len;
        let mut cursor = offset;
        let map = self.chunks.read();
        let first = offset / Self::CHUNK_SIZE;
        let last = (end - 1) / Self::CHUNK_SIZE;
        for &index in map.range(first..=last).map(|(index, _)| index) {
            let start = (index * Self::CHUNK_SIZE).max(offset);
            let stop = ((index + 1) * Self::CHUNK_SIZE).min(end);
            let zero = AllocationExtent {
                offset: cursor,
                len: start - cursor,
                state: AllocationState::Zero,
            };
            let data = AllocationExtent {
                offset: start,
                len: stop - start,
                state: AllocationState::Allocated,
            };
            if !push_extent(&mut extents, zero) || !push_extent(&mut extents, data) {
                return Ok(extents);
            }
            cursor = stop;
        }
        drop(map);
        push_extent(
            &mut extents,
            AllocationExtent {
                offset: cursor,
                len: end - cursor,
                state: AllocationState::Zero,
            },
        );
        Ok(extents)
    }

    fn allocated_bytes(&self) -> Option<u64> {
        Some(Self::allocated_bytes(self))
    }

    fn resize(&self, new_capacity_bytes: u64) -> Result<(), BackendError> {
        if !new_capacity_bytes.is_multiple_of(u64::from(self.block_size)) {
            return Err(BackendError::Misaligned {
                op: BackendOp::Resize,
                offset: new_capacity_bytes,
                len: 0,
                alignment: self.block_size,
            });
        }
        if new_capacity_bytes > Self::MAX_CAPACITY {
            return Err(BackendError::TooLarge {
                op: BackendOp::Resize,
                len: new_capacity_bytes,
                limit: Self::MAX_CAPACITY,
            });
        }
        let mut map = self.chunks.write();
        let old = self.capacity.swap(new_capacity_bytes, Ordering::SeqCst);
        if new_capacity_bytes >= old {
            return Ok(());
        }
        // Shrink: free every chunk wholly past the new end, and zero the tail
        // of a partial last chunk so that a later grow reads zeros there.
        let first_gone = new_capacity_bytes.div_ceil(Self::CHUNK_SIZE);
        let gone = map.split_off(&first_gone);
        let partial = new_capacity_bytes % Self::CHUNK_SIZE;
        if partial != 0
            && let Some(chunk) = map.get(&(new_capacity_bytes / Self::CHUNK_SIZE))
        {
            chunk.write()[partial as usize..].fill(0);
        }
        drop(map);
        drop(gone);
        Ok(())
    }
}
