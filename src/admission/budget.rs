//! Byte budgets: reserved before request data is allocated, returned when
//! the request is answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A count of bytes that reservations take from and give back to.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    used: Mutex<u64>,
    room: Condvar,
    peak: AtomicU64,
}

/// How an [`Budget::acquire`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Taken at once.
    Now,
    /// Taken after waiting for room.
    AfterWait,
    /// No room within the wait.
    TimedOut,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            used: Mutex::new(0),
            room: Condvar::new(),
            peak: AtomicU64::new(0),
        }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes (at most the limit), waiting for room up to `wait`
    /// (`None`: as long as it takes); `on_wait` runs once when it must wait.
    pub(crate) fn acquire(&self, n: u64, wait: Option<Duration>, on_wait: &dyn Fn()) -> Acquired {
        assert!(n <= self.limit, "a reservation never passes its budget");
        let start = Instant::now();
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let mut waited = false;
        while self.limit - *used < n {
            if !waited {
                on_wait();
            }
            waited = true;
            match wait {
                None => used = self.room.wait(used).unwrap_or_else(PoisonError::into_inner),
                Some(wait) => {
                    let Some(left) = wait.checked_sub(start.elapsed()).filter(|l| !l.is_zero())
                    else {
                        return Acquired::TimedOut;
                    };
                    used = self
                        .room
                        .wait_timeout(used, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        *used += n;
        assert!(*used <= self.limit);
        self.peak.fetch_max(*used, Ordering::Relaxed);
        if waited {
            Acquired::AfterWait
        } else {
            Acquired::Now
        }
    }

    pub(crate) fn release(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(*used >= n, "released more than was reserved");
        *used -= n;
        drop(used);
        self.room.notify_all();
    }
}

/// Size of the buffers request data lives in: reservations are rounded up
/// to a multiple of it and budgets down.
pub const BUFFER_CHUNK_BYTES: usize = 128 << 10;

/// The buffers request data lives in, reused across requests and
/// connections. A chunk is allocated only when none is free and only under
/// a reservation, so the pool never holds more than the global budget: the
/// memory of request data stays bounded by it even after it is released
/// (the allocator's per-thread caches never see it).
#[derive(Debug, Default)]
pub(crate) struct ChunkPool {
    free: Mutex<Vec<Box<[u8]>>>,
    allocated: AtomicU64,
}

impl ChunkPool {
    fn take(&self, count: usize) -> Vec<Box<[u8]>> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let reused = free.len().min(count);
        let at = free.len() - reused;
        let mut chunks: Vec<Box<[u8]>> = free.drain(at..).collect();
        drop(free);
        while chunks.len() < count {
            chunks.push(vec![0u8; BUFFER_CHUNK_BYTES].into_boxed_slice());
            self.allocated
                .fetch_add(BUFFER_CHUNK_BYTES as u64, Ordering::Relaxed);
        }
        chunks
    }

    fn give(&self, chunks: &mut Vec<Box<[u8]>>) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(chunks);
    }

    pub(crate) fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }
}

/// Bytes reserved for one request from its connection's budget and the
/// global budget, with the buffers that hold them; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    len: usize,
    bytes: u64,
    chunks: Vec<Box<[u8]>>,
    connection: Arc<Budget>,
    global: Arc<Budget>,
    pool: Arc<ChunkPool>,
}

impl Reservation {
    /// Rounds `len` up to whole chunks.
    pub(crate) fn rounded(len: u64) -> u64 {
        len.div_ceil(BUFFER_CHUNK_BYTES as u64) * BUFFER_CHUNK_BYTES as u64
    }

    pub(crate) fn new(
        len: u64,
        connection: Arc<Budget>,
        global: Arc<Budget>,
        pool: Arc<ChunkPool>,
    ) -> Self {
        let bytes = Self::rounded(len);
        let chunks = pool.take((bytes / BUFFER_CHUNK_BYTES as u64) as usize);
        Self {
            len: usize::try_from(len).unwrap_or(usize::MAX),
            bytes,
            chunks,
            connection,
            global,
            pool,
        }
    }

    /// The bytes reserved (the request's length rounded up to whole
    /// [`BUFFER_CHUNK_BYTES`]).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The request's length.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the request has no data.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffers, cut to the request's length, in order.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> {
        let mut left = self.len;
        self.chunks.iter().map(move |c| {
            let n = left.min(c.len());
            left -= n;
            &c[..n]
        })
    }

    /// The buffers, cut to the request's length, in order, to fill.
    pub fn slices_mut(&mut self) -> impl Iterator<Item = &mut [u8]> {
        let mut left = self.len;
        self.chunks.iter_mut().map(move |c| {
            let n = left.min(c.len());
            left -= n;
            &mut c[..n]
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.give(&mut self.chunks);
        self.global.release(self.bytes);
        self.connection.release(self.bytes);
    }
}
