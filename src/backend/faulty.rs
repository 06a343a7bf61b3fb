//! A backend wrapper that fails chosen operations, for error-path tests.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{AllocationExtent, BackendError, BackendOp, BlockBackend};

/// When a [`Fault`] fires, counted over the calls that match its operation.
///
/// # Examples
///
/// ```
/// use vvol::backend::FaultTrigger;
///
/// let second_call = FaultTrigger::Nth(2);
/// let first_block = FaultTrigger::Range { offset: 0, len: 512 };
/// assert_ne!(second_call, first_block);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultTrigger {
    /// Every matching call fails.
    Always,
    /// The Nth matching call (1-based, counted from when the fault was added)
    /// fails, once; later calls succeed. `Nth(0)` is refused.
    Nth(u64),
    /// Every Nth matching call fails (the Nth, the 2Nth, ...). `EveryNth(0)`
    /// is refused.
    EveryNth(u64),
    /// Matching calls whose byte range overlaps `[offset, offset + len)`
    /// fail. Calls without a range (flush, resize) and empty ranges never
    /// overlap. A zero `len` is refused.
    Range {
        /// First byte of the faulty range.
        offset: u64,
        /// Length of the faulty range in bytes.
        len: u64,
    },
}

/// What a fired [`Fault`] returns.
///
/// # Examples
///
/// ```
/// use std::io::ErrorKind;
/// use vvol::backend::FaultKind;
///
/// let eio = FaultKind::Io(ErrorKind::Other);
/// assert_ne!(eio, FaultKind::Gone);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// [`BackendError::Io`] with an `io::Error` of this kind.
    Io(io::ErrorKind),
    /// [`BackendError::Gone`].
    Gone,
    /// [`BackendError::Unsupported`]. With [`FaultTrigger::Always`] the
    /// operation is also reported unsupported by
    /// [`supports`](BlockBackend::supports).
    Unsupported,
}

/// One rule of a [`FaultyBackend`]: which operation fails, when, and how.
///
/// # Examples
///
/// ```
/// use std::io::ErrorKind;
/// use vvol::backend::{BackendOp, Fault, FaultKind, FaultTrigger};
///
/// let fault = Fault::on(BackendOp::Write, FaultTrigger::Nth(3), FaultKind::Io(ErrorKind::Other));
/// assert_eq!(fault.op(), Some(BackendOp::Write));
/// let any = Fault::any(FaultTrigger::Always, FaultKind::Gone);
/// assert_eq!(any.op(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    op: Option<BackendOp>,
    trigger: FaultTrigger,
    kind: FaultKind,
}

impl Fault {
    /// A fault on `op` (`None`: every operation).
    #[must_use]
    pub fn new(op: Option<BackendOp>, trigger: FaultTrigger, kind: FaultKind) -> Self {
        Self { op, trigger, kind }
    }

    /// A fault on one operation.
    #[must_use]
    pub fn on(op: BackendOp, trigger: FaultTrigger, kind: FaultKind) -> Self {
        Self::new(Some(op), trigger, kind)
    }

    /// A fault on every operation.
    #[must_use]
    pub fn any(trigger: FaultTrigger, kind: FaultKind) -> Self {
        Self::new(None, trigger, kind)
    }

    /// The operation the fault applies to (`None`: every operation).
    #[must_use]
    pub fn op(&self) -> Option<BackendOp> {
        self.op
    }

    /// When the fault fires.
    #[must_use]
    pub fn trigger(&self) -> FaultTrigger {
        self.trigger
    }

    /// What the fault returns.
    #[must_use]
    pub fn kind(&self) -> FaultKind {
        self.kind
    }

    /// Whether the fault applies to `op`.
    fn matches(&self, op: BackendOp) -> bool {
        self.op.is_none_or(|own| own == op)
    }

    /// The error this fault returns for a call of `op` at `offset`.
    fn error(&self, op: BackendOp, offset: u64) -> BackendError {
        match self.kind {
            FaultKind::Io(kind) => BackendError::Io {
                op,
                offset,
                source: io::Error::new(kind, "injected fault"),
            },
            FaultKind::Gone => BackendError::Gone {
                reason: "injected fault".to_owned(),
            },
            FaultKind::Unsupported => BackendError::Unsupported { op },
        }
    }
}

/// Identifies a fault added to a [`FaultyBackend`], for
/// [`remove_fault`](FaultyBackend::remove_fault).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use vvol::backend::{Fault, FaultKind, FaultTrigger, FaultyBackend, MemoryBackend};
///
/// let backend = FaultyBackend::new(Arc::new(MemoryBackend::new(4096, 512)?));
/// let id = backend.add_fault(Fault::any(FaultTrigger::Always, FaultKind::Gone))?;
/// assert!(backend.remove_fault(id));
/// assert!(!backend.remove_fault(id));
/// # Ok::<(), vvol::backend::BackendError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultId(u64);

/// A fault and how many matching calls it has seen.
#[derive(Debug)]
struct Rule {
    id: FaultId,
    fault: Fault,
    matched: u64,
}

impl Rule {
    /// Counts a matching call and says whether the fault fires for it.
    fn fires(&mut self, offset: u64, len: u64) -> bool {
        self.matched = self.matched.saturating_add(1);
        match self.fault.trigger {
            FaultTrigger::Always => true,
            FaultTrigger::Nth(n) => self.matched == n,
            FaultTrigger::EveryNth(n) => n != 0 && self.matched.is_multiple_of(n),
            FaultTrigger::Range {
                offset: start,
                len: size,
            } => {
                let call_end = offset.saturating_add(len);
                let end = start.saturating_add(size);
                len != 0 && offset < end && start < call_end
            }
        }
    }
}

/// The fault rules and the next id to hand out.
#[derive(Debug, Default)]
struct Rules {
    rules: Vec<Rule>,
    next_id: u64,
}

/// Wraps another backend and fails chosen operations, for testing the error
/// paths of the layers above.
///
/// Each call is first counted (see [`calls`](Self::calls)), then checked
/// against the fault rules in the order they were added; every rule whose
/// operation matches counts the call, and the first that fires decides the
/// error. A call that fails never reaches the inner backend, so a failed write
/// leaves the stored data unchanged. Calls no rule fails pass through.
///
/// # Examples
///
/// ```
/// use std::io::ErrorKind;
/// use std::sync::Arc;
/// use vvol::backend::{
///     BackendError, BackendOp, BlockBackend, Fault, FaultKind, FaultTrigger, FaultyBackend,
///     MemoryBackend,
/// };
///
/// let backend = FaultyBackend::new(Arc::new(MemoryBackend::new(1 << 20, 512)?));
/// backend.add_fault(Fault::on(
///     BackendOp::Write,
///     FaultTrigger::Nth(2),
///     FaultKind::Io(ErrorKind::Other),
/// ))?;
///
/// backend.write_at(0, &[1; 512], false)?;
/// assert!(matches!(
///     backend.write_at(512, &[2; 512], false),
///     Err(BackendError::Io { op: BackendOp::Write, .. })
/// ));
/// backend.write_at(512, &[2; 512], false)?;
/// assert_eq!(backend.calls(BackendOp::Write), 3);
/// # Ok::<(), BackendError>(())
/// ```
#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn BlockBackend>,
    rules: Mutex<Rules>,
    calls: [AtomicU64; BackendOp::ALL.len()],
}

impl FaultyBackend {
    /// Most fault rules a backend holds at once.
    pub const MAX_FAULTS: usize = 64;

    /// Wraps `inner` with no faults: every call passes through.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use vvol::backend::{BlockBackend, FaultyBackend, MemoryBackend};
    ///
    /// let backend = FaultyBackend::new(Arc::new(MemoryBackend::new(4096, 512)?));
    /// assert_eq!(backend.capacity_bytes(), 4096);
    /// # Ok::<(), vvol::backend::BackendError>(())
    /// ```
    #[must_use]
    pub fn new(inner: Arc<dyn BlockBackend>) -> Self {
        Self {
            inner,
            rules: Mutex::new(Rules::default()),
            calls: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Adds a fault rule; it sees calls made from now on.
    ///
    /// # Errors
    /// [`BackendError::InvalidConfig`] when [`MAX_FAULTS`](Self::MAX_FAULTS)
    /// rules are already held, or for a trigger that can never fire as meant
    /// (`Nth(0)`, `EveryNth(0)`, an empty `Range`).
    pub fn add_fault(&self, fault: Fault) -> Result<FaultId, BackendError> {
        match fault.trigger {
            FaultTrigger::Nth(0) => {
                return Err(BackendError::InvalidConfig {
                    reason: "FaultTrigger::Nth counts from 1",
                });
            }
            FaultTrigger::EveryNth(0) => {
                return Err(BackendError::InvalidConfig {
                    reason: "FaultTrigger::EveryNth needs a period of at least 1",
                });
            }
            FaultTrigger::Range { len: 0, .. } => {
                return Err(BackendError::InvalidConfig {
                    reason: "FaultTrigger::Range needs a non-empty range",
                });
            }
            _ => {}
        }
        let mut rules = self.rules.lock();
        if rules.rules.len() >= Self::MAX_FAULTS {
            return Err(BackendError::InvalidConfig {
                reason: "too many faults (FaultyBackend::MAX_FAULTS)",
            });
        }
        let id = FaultId(rules.next_id);
        rules.next_id += 1;
        rules.rules.push(Rule {
            id,
            fault,
            matched: 0,
        });
        Ok(id)
    }

    /// Removes a fault rule. Returns whether it was present.
    #[must_use = "false means the id was unknown or already removed"]
    pub fn remove_fault(&self, id: FaultId) -> bool {
        let mut rules = self.rules.lock();
        let before = rules.rules.len();
        rules.rules.retain(|rule| rule.id != id);
        rules.rules.len() != before
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.rules.lock().rules.clear();
    }

    /// How many calls of `op` this backend has received, failed ones
    /// included.
    #[must_use]
    pub fn calls(&self, op: BackendOp) -> u64 {
        self.calls[op_index(op)].load(Ordering::Relaxed)
    }

    /// The wrapped backend.
    #[must_use]
    pub fn inner(&self) -> &Arc<dyn BlockBackend> {
        &self.inner
    }

    /// Counts a call and returns the error of the first fault that fires.
    fn check(&self, op: BackendOp, offset: u64, len: u64) -> Result<(), BackendError> {
        self.calls[op_index(op)].fetch_add(1, Ordering::Relaxed);
        let mut rules = self.rules.lock();
        let mut fired = None;
        for rule in rules.rules.iter_mut().filter(|rule| rule.fault.matches(op)) {
            if rule.fires(offset, len) && fired.is_none() {
                fired = Some(rule.fault);
            }
        }
        drop(rules);
        match fired {
            Some(fault) => Err(fault.error(op, offset)),
            None => Ok(()),
        }
    }
}

/// Position of `op` in [`BackendOp::ALL`].
fn op_index(op: BackendOp) -> usize {
    match op {
        BackendOp::Read => 0,
        BackendOp::Write => 1,
        BackendOp::Flush => 2,
        BackendOp::Discard => 3,
        BackendOp::WriteZeroes => 4,
        BackendOp::Allocation => 5,
        BackendOp::Resize => 6,
    }
}

impl BlockBackend for FaultyBackend {
    fn capacity_bytes(&self) -> u64 {
        self.inner.capacity_bytes()
    }

    fn logical_block_size(&self) -> u32 {
        self.inner.logical_block_size()
    }

    fn supports(&self, op: BackendOp) -> bool {
        let always_unsupported = self.rules.lock().rules.iter().any(|rule| {
            rule.fault.matches(op)
                && rule.fault.kind == FaultKind::Unsupported
                && rule.fault.trigger == FaultTrigger::Always
        });
        !always_unsupported && self.inner.supports(op)
    }

    /// The inner backend's guarantee, while discard is not switched off by
    /// an always-unsupported rule.
    fn discard_zeroes(&self) -> bool {
        self.supports(BackendOp::Discard) && self.inner.discard_zeroes()
    }

    /// The inner backend's, while discard is not switched off.
    fn discard_granularity(&self) -> u64 {
        if self.supports(BackendOp::Discard) {
            self.inner.discard_granularity()
        } else {
            0
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.check(BackendOp::Read, offset, buf.len() as u64)?;
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        self.check(BackendOp::Write, offset, data.len() as u64)?;
        self.inner.write_at(offset, data, fua)
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.check(BackendOp::Flush, 0, 0)?;
        self.inner.flush()
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.check(BackendOp::Discard, offset, len)?;
        self.inner.discard(offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.check(BackendOp::WriteZeroes, offset, len)?;
        self.inner.write_zeroes(offset, len)
    }

    fn allocation(&self, offset: u64, len: u64) -> Result<Vec<AllocationExtent>, BackendError> {
        self.check(BackendOp::Allocation, offset, len)?;
        self.inner.allocation(offset, len)
    }

    fn allocated_bytes(&self) -> Option<u64> {
        self.inner.allocated_bytes()
    }

    fn resize(&self, new_capacity_bytes: u64) -> Result<(), BackendError> {
        self.check(BackendOp::Resize, new_capacity_bytes, 0)?;
        self.inner.resize(new_capacity_bytes)
    }
}
