//! Errors returned by block backends.

use std::io;
use std::path::PathBuf;

use super::BackendOp;

/// An error from a [`BlockBackend`](super::BlockBackend) operation.
///
/// Every variant names the operation and, where one exists, the byte range
/// involved, so a caller can map it to a transport status (SCSI sense data,
/// an NBD error code) without guessing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The range does not fit inside the backend's capacity.
    #[error("{op} of {len} bytes at offset {offset} is past capacity {capacity}")]
    OutOfRange {
        /// The operation that was refused.
        op: BackendOp,
        /// First byte of the requested range.
        offset: u64,
        /// Length of the requested range in bytes.
        len: u64,
        /// Capacity of the backend in bytes when the request was checked.
        capacity: u64,
    },
    /// The range or buffer is not aligned as the backend requires
    /// (for example O_DIRECT on a 4096-byte device).
    #[error("{op} of {len} bytes at offset {offset} is not aligned to {alignment} bytes")]
    Misaligned {
        /// The operation that was refused.
        op: BackendOp,
        /// First byte of the requested range.
        offset: u64,
        /// Length of the requested range in bytes.
        len: u64,
        /// Required alignment in bytes.
        alignment: u32,
    },
    /// The backend does not offer this optional capability.
    #[error("{op} is not supported by this backend")]
    Unsupported {
        /// The operation that is not supported.
        op: BackendOp,
    },
    /// A request that is larger than the backend accepts in one call.
    #[error("{op} of {len} bytes exceeds the limit of {limit} bytes per request")]
    TooLarge {
        /// The operation that was refused.
        op: BackendOp,
        /// Requested length in bytes.
        len: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The storage behind the backend failed.
    #[error("{op} at offset {offset} failed: {source}")]
    Io {
        /// The operation that failed.
        op: BackendOp,
        /// First byte of the range the operation addressed (0 for flush).
        offset: u64,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A backend could not be created with the given configuration (an
    /// unsupported block size, a capacity that is not a multiple of it or
    /// past a named limit, a file that is neither regular nor a block device,
    /// too many fault rules, ...).
    #[error("invalid backend configuration: {reason}")]
    InvalidConfig {
        /// What is wrong with the configuration.
        reason: &'static str,
    },
    /// Opening the file or device behind a backend failed.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The path that was opened.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The storage behind the backend is gone (device removed, connection
    /// closed for good); no further request can succeed.
    #[error("backend is gone: {reason}")]
    Gone {
        /// Why the backend is gone.
        reason: String,
    },
}

impl BackendError {
    /// The operation this error belongs to, when it names one.
    #[must_use]
    pub fn op(&self) -> Option<BackendOp> {
        match self {
            Self::OutOfRange { op, .. }
            | Self::Misaligned { op, .. }
            | Self::Unsupported { op }
            | Self::TooLarge { op, .. }
            | Self::Io { op, .. } => Some(*op),
            Self::Gone { .. } | Self::InvalidConfig { .. } | Self::Open { .. } => None,
        }
    }
}
