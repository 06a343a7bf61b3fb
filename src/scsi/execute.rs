//! [`ScsiTarget::execute_into`]: the command entry point for transports,
//! writing data-in into the caller's buffer and returning a
//! [`ScsiCompletion`] with the sense inline, so READ, WRITE and TEST UNIT
//! READY allocate nothing per command.

use std::cell::Cell;

use super::Lun;
use super::sense::{SenseBuffer, Status};
use super::target::{Fail, ItNexus, ScsiTarget};

/// How the data-in of a command compares with the caller's buffer (the
/// Data-In Buffer Size of SAM-5 5.1 "Execute Command"; in iSCSI the
/// Expected Data Transfer Length, whose residual a transport reports as
/// RFC 7143 11.4.5 says).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Residual {
    /// The data-in filled the buffer exactly (or both are empty).
    None,
    /// The command produced fewer bytes than the buffer holds: this many
    /// bytes at the end of the buffer were not written (iSCSI: residual
    /// underflow, the U bit).
    Underflow(usize),
    /// The command produced more bytes than the buffer holds: this many
    /// bytes were not transferred (iSCSI: residual overflow, the O bit).
    Overflow(usize),
}

impl Residual {
    /// The residual of `produced` data-in bytes against a buffer of
    /// `buffer` bytes.
    #[must_use]
    pub const fn of(produced: usize, buffer: usize) -> Self {
        if produced < buffer {
            Self::Underflow(buffer - produced)
        } else if produced > buffer {
            Self::Overflow(produced - buffer)
        } else {
            Self::None
        }
    }
}

/// How a command executed by [`ScsiTarget::execute_into`] completed.
/// `Copy` and heap-free: the sense bytes are held inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScsiCompletion {
    /// The status.
    pub status: Status,
    /// Data-in bytes written at the start of the caller's buffer: the
    /// command's data-in (already cut to its allocation or transfer
    /// length) cut to the buffer. 0 unless the status is GOOD (a READ
    /// that failed may have left part of its data in the buffer).
    pub data_in_len: usize,
    /// The data-in against the caller's buffer: what the transport
    /// reports as the residual.
    pub residual: Residual,
    /// Sense bytes (fixed 70h, or descriptor 72h when D_SENSE is set);
    /// empty unless the status is CHECK CONDITION.
    pub sense: SenseBuffer,
}

/// Where a READ puts its data-in: the caller's buffer
/// ([`ScsiTarget::execute_into`]) or a buffer of its own
/// ([`ScsiTarget::execute`]). A trait object so that the command context
/// stays covariant in its one lifetime.
pub(crate) trait DataInSink {
    /// Runs `read` on the caller's buffer cut to `len` bytes, when there is
    /// one and it holds all of them; `None` (and the command builds its
    /// data-in itself) otherwise. At most once per command.
    fn fill(
        &self,
        len: usize,
        read: &mut dyn FnMut(&mut [u8]) -> Result<(), Fail>,
    ) -> Option<Result<(), Fail>>;
}

/// No caller buffer: commands build their data-in.
pub(crate) struct OwnData;

impl DataInSink for OwnData {
    fn fill(
        &self,
        _len: usize,
        _read: &mut dyn FnMut(&mut [u8]) -> Result<(), Fail>,
    ) -> Option<Result<(), Fail>> {
        None
    }
}

/// The caller's buffer, lent to the command once.
struct CallerBuffer<'b> {
    buffer: Cell<Option<&'b mut [u8]>>,
    /// Bytes a command wrote straight into the buffer.
    filled: Cell<Option<usize>>,
}

impl DataInSink for CallerBuffer<'_> {
    fn fill(
        &self,
        len: usize,
        read: &mut dyn FnMut(&mut [u8]) -> Result<(), Fail>,
    ) -> Option<Result<(), Fail>> {
        let buffer = self.buffer.take()?;
        if buffer.len() < len {
            // An overflow: the command reads into its own buffer and the
            // part that fits is copied (SAM-5 5.1: data beyond the Data-In
            // Buffer Size is not transferred).
            self.buffer.set(Some(buffer));
            return None;
        }
        self.filled.set(Some(len));
        Some(read(&mut buffer[..len]))
    }
}

/// What one command came to, before it is shaped for a caller.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// GOOD, with the data-in the command built (empty when it wrote its
    /// data-in into the caller's buffer).
    Good(Vec<u8>),
    /// CHECK CONDITION with the sense bytes.
    Check(SenseBuffer),
    /// Another status, without sense.
    Status(Status),
}

impl Outcome {
    pub(crate) fn of(result: Result<Vec<u8>, Fail>, d_sense: impl FnOnce() -> bool) -> Self {
        match result {
            Ok(data) => Self::Good(data),
            Err(Fail::Check(sense)) => Self::Check(sense.encode(d_sense())),
            Err(Fail::Status(status)) => Self::Status(status),
        }
    }
}

impl ScsiTarget {
    /// Executes one CDB from `nexus` addressed to `lun`, with `data_out`
    /// as the data-out buffer, writing the data-in into `data_in`. Never
    /// panics on caller bytes: anything malformed becomes CHECK CONDITION
    /// with ILLEGAL REQUEST sense.
    ///
    /// READ (6/10/16) reads from the router straight into `data_in` (cut to
    /// the CDB's transfer length) and WRITE takes `data_out` as it is, so
    /// READ, WRITE and TEST UNIT READY allocate nothing; the completion
    /// carries its sense inline. Data-in longer than `data_in` is cut to
    /// it and reported as [`Residual::Overflow`] (a READ then reads into a
    /// buffer of its own and copies what fits); shorter data-in leaves the
    /// rest of the buffer untouched and is [`Residual::Underflow`]. Other
    /// commands (INQUIRY, MODE SENSE, REPORT LUNS, ...) build their data-in
    /// as [`execute`](Self::execute) does and it is copied into `data_in`.
    ///
    /// The routed I/O of a READ or WRITE is admitted once (it takes one
    /// place in the PE's queue); commands without I/O take none.
    ///
    /// # Example
    /// ```
    /// use vvol::BindContext;
    /// use vvol::scsi::{ItNexus, Residual, ScsiTarget, Status};
    ///
    /// let (plane, topo) = vvol::testing::quickstart()?;
    /// let plane = std::sync::Arc::new(plane);
    /// let target = ScsiTarget::new(plane.clone(), topo.arrays[0])?;
    /// let host = topo.hosts[0];
    /// let handle = plane.bind(host, &[topo.vms[0].data], BindContext::Normal)?.remove(0)?;
    /// let lun = target.lun_of(handle).expect("a SCSI binding");
    /// let nexus = ItNexus::new(host, 1);
    /// let mut buf = [0u8; 4096];
    /// // The power-on unit attention, with its sense inline.
    /// let c = target.execute_into(nexus, lun, &[0; 6], &[], &mut []);
    /// assert_eq!(c.status, Status::CheckCondition);
    /// assert_eq!((c.sense[2], c.sense[12]), (0x06, 0x29));
    /// // WRITE(10) of one 512-byte block, then READ(10) of it.
    /// let write = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    /// let c = target.execute_into(nexus, lun, &write, &[7; 512], &mut []);
    /// assert_eq!(c.status, Status::Good);
    /// let read = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    /// let c = target.execute_into(nexus, lun, &read, &[], &mut buf);
    /// assert_eq!((c.status, c.data_in_len), (Status::Good, 512));
    /// assert_eq!(c.residual, Residual::Underflow(4096 - 512));
    /// assert!(buf[..512].iter().all(|&b| b == 7));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_into(
        &self,
        nexus: ItNexus,
        lun: Lun,
        cdb: &[u8],
        data_out: &[u8],
        data_in: &mut [u8],
    ) -> ScsiCompletion {
        into_buffer(data_in, |sink| {
            self.execute_with(nexus, lun, cdb, data_out, sink)
        })
    }
}

/// Runs `command` with `data_in` as its READ sink and completes it: data-in
/// of other commands copied in, length and residual.
pub(crate) fn into_buffer(
    data_in: &mut [u8],
    command: impl FnOnce(&dyn DataInSink) -> Outcome,
) -> ScsiCompletion {
    let capacity = data_in.len();
    let sink = CallerBuffer {
        buffer: Cell::new(Some(&mut *data_in)),
        filled: Cell::new(None),
    };
    let outcome = command(&sink);
    // The sink's last use: `data_in` is the caller's again below.
    let filled = sink.filled.get();
    let (status, produced, sense) = match outcome {
        Outcome::Good(data) => {
            let produced = match filled {
                Some(len) => len,
                None => {
                    let n = data.len().min(capacity);
                    data_in[..n].copy_from_slice(&data[..n]);
                    data.len()
                }
            };
            (Status::Good, produced, SenseBuffer::EMPTY)
        }
        Outcome::Check(sense) => (Status::CheckCondition, 0, sense),
        Outcome::Status(status) => (status, 0, SenseBuffer::EMPTY),
    };
    ScsiCompletion {
        status,
        data_in_len: produced.min(capacity),
        residual: Residual::of(produced, capacity),
        sense,
    }
}
