//! A backend whose reads wait at a gate: fills a PE's queues with commands
//! that stay in flight until the test opens it.

use std::sync::{Arc, Condvar, Mutex};

use vvol::backend::BackendOp;
use vvol::{AllocationExtent, BackendError, BlockBackend, MemoryBackend};

const MIB: u64 = 1 << 20;

/// A 4 MiB, 512-byte-block memory backend whose reads block until
/// [`open`](Self::open); writes and the rest pass through.
#[derive(Debug)]
pub(crate) struct Gate {
    inner: MemoryBackend,
    /// (reads inside the backend, open).
    state: Mutex<(u32, bool)>,
    cv: Condvar,
}

impl Gate {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryBackend::new(4 * MIB, 512).unwrap(),
            state: Mutex::new((0, false)),
            cv: Condvar::new(),
        })
    }

    /// Waits until `n` reads are inside the backend.
    pub(crate) fn wait_for(&self, n: u32) {
        let mut s = self.state.lock().unwrap();
        while s.0 < n {
            s = self.cv.wait(s).unwrap();
        }
    }

    /// Lets every waiting and later read through.
    pub(crate) fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

impl BlockBackend for Gate {
    fn capacity_bytes(&self) -> u64 {
        self.inner.capacity_bytes()
    }
    fn logical_block_size(&self) -> u32 {
        self.inner.logical_block_size()
    }
    fn supports(&self, op: BackendOp) -> bool {
        self.inner.supports(op)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let mut s = self.state.lock().unwrap();
        s.0 += 1;
        self.cv.notify_all();
        while !s.1 {
            s = self.cv.wait(s).unwrap();
        }
        drop(s);
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        self.inner.write_at(offset, data, fua)
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.inner.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.inner.discard(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.inner.write_zeroes(offset, len)
    }
    fn allocation(&self, offset: u64, len: u64) -> Result<Vec<AllocationExtent>, BackendError> {
        self.inner.allocation(offset, len)
    }
    fn resize(&self, new_capacity_bytes: u64) -> Result<(), BackendError> {
        self.inner.resize(new_capacity_bytes)
    }
}
