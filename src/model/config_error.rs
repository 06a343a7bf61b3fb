//! The error for specifications that break the vVol rules.

/// A specification (array, container, PE, vVol) that breaks a rule of the
/// model. Each variant names the rule and the value that broke it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A name is empty or longer than the limit.
    #[error("{what} name must be 1..={limit} bytes, got {len}")]
    BadName {
        /// What is being named.
        what: &'static str,
        /// Length of the given name in bytes.
        len: usize,
        /// The longest allowed name in bytes.
        limit: usize,
    },
    /// An IEEE company id wider than 24 bits.
    #[error("IEEE company id {0:#x} does not fit in 24 bits")]
    BadIeeeCompanyId(u32),
    /// A vVol capacity that is zero or not a multiple of 1 MiB.
    #[error("capacity {capacity_bytes} is not a positive multiple of 1 MiB")]
    BadCapacity {
        /// The rejected capacity in bytes.
        capacity_bytes: u64,
    },
    /// A logical block size other than 512 or 4096.
    #[error("logical block size {0} is not 512 or 4096")]
    BadBlockSize(u32),
    /// A queue depth outside the allowed range.
    #[error("queue depth {value} is outside {min}..={max}")]
    BadQueueDepth {
        /// The rejected depth.
        value: u32,
        /// Smallest allowed depth.
        min: u32,
        /// Largest allowed depth.
        max: u32,
    },
    /// An administrative LUN that does not fit in 14 bits.
    #[error("administrative LUN {0} does not fit in 14 bits")]
    BadAdminLun(u16),
    /// A PE without any path.
    #[error("a SCSI PE needs at least one path")]
    NoPaths,
    /// More paths than the limit.
    #[error("{count} paths exceed the limit of {limit}")]
    TooManyPaths {
        /// Paths given.
        count: usize,
        /// Paths allowed.
        limit: usize,
    },
    /// The same path listed twice.
    #[error("path through relative target port {0} is listed twice")]
    DuplicatePath(u16),
    /// Relative target port 0 is reserved by SPC.
    #[error("relative target port 0 is reserved")]
    BadTargetPort,
    /// An NFSv3 PE with more or fewer than one server address (NFSv3 has no
    /// multipathing; only NFSv4.1 may list trunked addresses).
    #[error("an NFSv3 PE has exactly one server address, got {count}")]
    NfsV3NeedsOnePath {
        /// Server addresses given.
        count: usize,
    },
    /// An NFS server that is neither an IP address nor a DNS name.
    #[error("NFS server {server:?} is neither an IP address nor a DNS name")]
    BadNfsServer {
        /// The rejected server text (cut to 64 characters).
        server: String,
    },
    /// An NFS export path that is not absolute, too long, or holds NUL.
    #[error("NFS export path is not an absolute path of at most {limit} bytes")]
    BadExportPath {
        /// The longest allowed export path in bytes.
        limit: usize,
    },
    /// A secondary-id range that is empty, includes 0 (the PE itself), does
    /// not fit the subsidiary addressing, or is larger than the slot limit.
    #[error("secondary-id range {first}..={last} is invalid: {reason}")]
    BadSecondaryIdRange {
        /// First id of the range.
        first: u64,
        /// Last id of the range.
        last: u64,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A container whose largest vVol is not a positive multiple of 1 MiB or
    /// exceeds its quota.
    #[error(
        "max vVol size {max_vvol_bytes} must be a positive multiple of 1 MiB within quota {quota_bytes}"
    )]
    BadMaxVvolSize {
        /// The container quota in bytes.
        quota_bytes: u64,
        /// The rejected maximum vVol size in bytes.
        max_vvol_bytes: u64,
    },
    /// A container over-commit ratio outside its range.
    #[error("over-commit {percent} % is outside {min}..={max} %")]
    BadOvercommit {
        /// The ratio given, in percent.
        percent: u32,
        /// The smallest allowed.
        min: u32,
        /// The largest allowed.
        max: u32,
    },
    /// A backend key that is empty or too long.
    #[error("a backend key must be 1 to {max} bytes, got {len}")]
    BadBackendKey {
        /// Its length in bytes.
        len: usize,
        /// [`MAX_BACKEND_KEY_LEN`](crate::MAX_BACKEND_KEY_LEN).
        max: usize,
    },
}

/// Checks a name against the length limit.
pub(crate) fn check_name(what: &'static str, name: &str, limit: usize) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > limit {
        return Err(ConfigError::BadName {
            what,
            len: name.len(),
            limit,
        });
    }
    Ok(())
}
