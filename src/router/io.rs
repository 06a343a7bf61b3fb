//! Routed I/O: admission (PE state, queue depth, binding, host), range
//! checks, the backend call, and accounting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::stats::OpClass;
use super::table::{PeTable, TableState};
use super::volume::LiveBinding;
use super::{RouteError, Router};
use crate::backend::{AllocationExtent, BackendError};
use crate::model::{BindHandle, HostId};

/// Holds one place in a PE's queue; gives it back when dropped.
struct QueueSlot<'a>(&'a AtomicU32);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// An admitted I/O: the PE, the pinned binding and its places in the
/// host's queue and the PE's shared queue.
struct Admitted<'a> {
    table: &'a PeTable,
    binding: arc_swap::Guard<Option<Arc<LiveBinding>>>,
    _host_queue: Option<QueueSlot<'a>>,
    _queue: QueueSlot<'a>,
}

impl Admitted<'_> {
    fn binding(&self) -> &LiveBinding {
        self.binding
            .as_deref()
            .expect("admission only returns occupied slots")
    }

    /// Checks that `[offset, offset + len)` lies in the vVol and is aligned.
    fn check_range(&self, offset: u64, len: u64) -> Result<(), RouteError> {
        let volume = &self.binding().volume;
        let capacity_bytes = volume.capacity_bytes();
        let bs = u64::from(volume.block_size);
        // Block sizes are 512 or 4096 (`VvolSpec::validate`): a mask instead
        // of two 64-bit divisions (callgrind showed them; BENCHMARKS.md).
        debug_assert!(bs.is_power_of_two());
        if (offset | len) & (bs - 1) != 0 {
            return Err(RouteError::Misaligned {
                vvol: volume.id,
                offset,
                len,
                block_size: volume.block_size,
            });
        }
        match offset.checked_add(len) {
            Some(end) if end <= capacity_bytes => Ok(()),
            _ => Err(RouteError::OutOfRange {
                vvol: volume.id,
                offset,
                len,
                capacity_bytes,
            }),
        }
    }

    /// Accounts the outcome of the backend call.
    fn finish<T>(
        &self,
        class: OpClass,
        bytes: u64,
        result: Result<T, BackendError>,
    ) -> Result<T, RouteError> {
        let volume = &self.binding().volume;
        match result {
            Ok(value) => {
                self.table.counters.record(class, bytes);
                volume.counters.record(class, bytes);
                Ok(value)
            }
            Err(source) => Err(self.fail(RouteError::Backend {
                vvol: volume.id,
                source,
            })),
        }
    }

    fn fail(&self, error: RouteError) -> RouteError {
        self.table.counters.record_error();
        self.binding().volume.counters.record_error();
        error
    }

    fn checked(&self, offset: u64, len: u64) -> Result<(), RouteError> {
        self.check_range(offset, len).map_err(|e| self.fail(e))
    }
}

impl Router {
    /// Admits one I/O from `host` with `handle`, or says why not.
    fn admit(&self, host: HostId, handle: BindHandle) -> Result<Admitted<'_>, RouteError> {
        let pe = handle.pe;
        let table = self.table(pe).ok_or(RouteError::UnknownPe { pe })?;
        let fail = |error| {
            table.counters.record_error();
            error
        };
        match table.state() {
            TableState::Active | TableState::Draining => {}
            TableState::Failed => return Err(fail(RouteError::PeFailed { pe })),
            TableState::Removed => return Err(fail(RouteError::UnknownPe { pe })),
        }
        // Two limits, one atomic each (review S4): the host's own queue on
        // the PE (ESXi `Scsi.ScsiVVolPESNRO`, a host-side DSNRO), then the
        // array-side queue all hosts share.
        let mut host_before = 0;
        let host_queue = table.host_in_flight(host).map(|counter| {
            host_before = counter.fetch_add(1, Ordering::Acquire);
            QueueSlot(counter)
        });
        if host_before >= table.host_queue_depth {
            return Err(fail(RouteError::HostQueueFull {
                host,
                pe,
                queue_depth: table.host_queue_depth,
            }));
        }
        let previous = table.in_flight.fetch_add(1, Ordering::Acquire);
        let queue = QueueSlot(&table.in_flight);
        if previous >= table.queue_depth {
            return Err(fail(RouteError::QueueFull {
                pe,
                queue_depth: table.queue_depth,
                host_in_flight: host_before,
            }));
        }
        let not_bound = || RouteError::NotBound {
            pe,
            secondary_id: handle.secondary_id,
            generation: handle.generation,
        };
        // In per-host scope the host's own space (SAM-5 4.6.1: a LUN is
        // per I_T nexus); in per-PE scope the PE's.
        let binding = table
            .slots(Some(host))
            .and_then(|s| s.binding(handle.secondary_id))
            .ok_or_else(|| fail(not_bound()))?;
        match binding.as_deref() {
            Some(b) if b.generation == handle.generation => {
                if !b.admits(host) {
                    b.volume.counters.record_error();
                    return Err(fail(RouteError::AccessDenied {
                        host,
                        pe,
                        secondary_id: handle.secondary_id,
                    }));
                }
            }
            _ => return Err(fail(not_bound())),
        }
        Ok(Admitted {
            table,
            binding,
            _host_queue: host_queue,
            _queue: queue,
        })
    }

    /// Reads `buf.len()` bytes at `offset` of the vVol bound at `handle`.
    ///
    /// # Errors
    /// [`RouteError::UnknownPe`], [`RouteError::PeFailed`],
    /// [`RouteError::HostQueueFull`], [`RouteError::QueueFull`],
    /// [`RouteError::NotBound`],
    /// [`RouteError::AccessDenied`], [`RouteError::Misaligned`],
    /// [`RouteError::OutOfRange`], [`RouteError::Backend`].
    pub fn read(
        &self,
        host: HostId,
        handle: BindHandle,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), RouteError> {
        let io = self.admit(host, handle)?;
        let len = buf.len() as u64;
        io.checked(offset, len)?;
        let result = io.binding().volume.backend.read_at(offset, buf);
        io.finish(OpClass::Read, len, result)
    }

    /// Writes `data` at `offset`; with `fua` it is durable on return.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn write(
        &self,
        host: HostId,
        handle: BindHandle,
        offset: u64,
        data: &[u8],
        fua: bool,
    ) -> Result<(), RouteError> {
        let io = self.admit(host, handle)?;
        let len = data.len() as u64;
        io.checked(offset, len)?;
        let result = io.binding().volume.backend.write_at(offset, data, fua);
        io.finish(OpClass::Write, len, result)
    }

    /// Makes every completed write to the vVol durable.
    ///
    /// # Errors
    /// As [`read`](Self::read), without the range errors.
    pub fn flush(&self, host: HostId, handle: BindHandle) -> Result<(), RouteError> {
        let io = self.admit(host, handle)?;
        let result = io.binding().volume.backend.flush();
        io.finish(OpClass::Other, 0, result)
    }

    /// Discards `len` bytes at `offset` (they may read as zeros or as before).
    ///
    /// # Errors
    /// As [`read`](Self::read); a backend without discard gives
    /// [`RouteError::Backend`] with [`BackendError::Unsupported`].
    pub fn discard(
        &self,
        host: HostId,
        handle: BindHandle,
        offset: u64,
        len: u64,
    ) -> Result<(), RouteError> {
        let io = self.admit(host, handle)?;
        io.checked(offset, len)?;
        let result = io.binding().volume.backend.discard(offset, len);
        io.finish(OpClass::Other, 0, result)
    }

    /// Makes `len` bytes at `offset` read as zeros.
    ///
    /// # Errors
    /// As [`discard`](Self::discard).
    pub fn write_zeroes(
        &self,
        host: HostId,
        handle: BindHandle,
        offset: u64,
        len: u64,
    ) -> Result<(), RouteError> {
        let io = self.admit(host, handle)?;
        io.checked(offset, len)?;
        let result = io.binding().volume.backend.write_zeroes(offset, len);
        io.finish(OpClass::Other, 0, result)
    }

    /// The allocation state of `len` bytes at `offset`, as extents (see
    /// [`BlockBackend::allocation`](crate::BlockBackend::allocation)).
    ///
    /// # Errors
    /// As [`discard`](Self::discard).
    pub fn allocation(
        &self,
        host: HostId,
        handle: BindHandle,
        offset: u64,
        len: u64,
    ) -> Result<Vec<AllocationExtent>, RouteError> {
        let io = self.admit(host, handle)?;
        io.checked(offset, len)?;
        let result = io.binding().volume.backend.allocation(offset, len);
        io.finish(OpClass::Other, 0, result)
    }

    /// The capacity and logical block size of the vVol at `handle`, checked
    /// like an I/O (counts against the queue only for the call).
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub fn geometry(&self, host: HostId, handle: BindHandle) -> Result<(u64, u32), RouteError> {
        let io = self.admit(host, handle)?;
        let volume = &io.binding().volume;
        Ok((volume.capacity_bytes(), volume.block_size))
    }

    /// Whether a [`discard`](Self::discard) of the vVol at `handle` leaves
    /// zeros behind ([`BlockBackend::discard_zeroes`](crate::BlockBackend::discard_zeroes)),
    /// checked like [`geometry`](Self::geometry).
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub fn discard_zeroes(&self, host: HostId, handle: BindHandle) -> Result<bool, RouteError> {
        let io = self.admit(host, handle)?;
        Ok(io.binding().volume.backend.discard_zeroes())
    }
}
