//! Storage containers: capacity pools that hold vVols of one protocol family.

use super::config_error::check_name;
use super::{ArrayId, ConfigError, ContainerId, MIB};

/// The over-commit a container allows unless told otherwise: 100 %, so the
/// vVols' provisioned bytes may not pass the capacity (the behaviour before
/// over-commit existed, and what a journal without the setting restores).
pub const DEFAULT_OVERCOMMIT_PERCENT: u32 = 100;
/// The smallest over-commit: 100 % (a container cannot promise less than
/// its capacity).
pub const MIN_OVERCOMMIT_PERCENT: u32 = 100;
/// The largest over-commit: 100x the capacity. Pure documents containers
/// whose provisioned size is 8x the physical space; 100x leaves room while
/// keeping `capacity x ratio` far from overflow.
pub const MAX_OVERCOMMIT_PERCENT: u32 = 10_000;

/// The protocol family of a container or PE; a container never mixes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Protocol {
    /// SCSI (FC, iSCSI, ...): PEs are proxy LUNs.
    Scsi,
    /// NFS (v3 or v4.1): PEs are mount points.
    Nfs,
}

/// Everything needed to create a container.
///
/// # Example
/// ```
/// use vvol::{ContainerSpec, Protocol};
///
/// const GIB: u64 = 1 << 30;
/// let spec = ContainerSpec::new("gold", Protocol::Scsi, 100 * GIB).with_max_vvol_bytes(10 * GIB);
/// assert!(spec.validate(255).is_ok());
/// // Thin vVols may provision up to 4x the capacity.
/// let thin = spec.clone().with_overcommit_percent(400);
/// assert_eq!(thin.provisioning_limit_bytes(), 400 * GIB);
/// assert!(spec.with_overcommit_percent(50).validate(255).is_err());
/// ```
///
/// The quota is a logical one, as on vVol datastores: vVols are thin (SBC-4
/// provisioning type 010b), so the bytes they provision may pass the
/// capacity by the over-commit ratio, while the bytes their backends
/// allocate are reported beside them
/// ([`Container::allocated_bytes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    name: String,
    protocol: Protocol,
    quota_bytes: u64,
    max_vvol_bytes: u64,
    overcommit_percent: u32,
}

impl ContainerSpec {
    /// A container of `quota_bytes` whose largest vVol may take the whole quota.
    #[must_use]
    pub fn new(name: impl Into<String>, protocol: Protocol, quota_bytes: u64) -> Self {
        Self {
            name: name.into(),
            protocol,
            quota_bytes,
            max_vvol_bytes: quota_bytes,
            overcommit_percent: DEFAULT_OVERCOMMIT_PERCENT,
        }
    }

    /// Sets how far the vVols' provisioned bytes may pass the capacity, in
    /// percent of it ([`MIN_OVERCOMMIT_PERCENT`]..=[`MAX_OVERCOMMIT_PERCENT`];
    /// default [`DEFAULT_OVERCOMMIT_PERCENT`]).
    #[must_use]
    pub const fn with_overcommit_percent(mut self, overcommit_percent: u32) -> Self {
        self.overcommit_percent = overcommit_percent;
        self
    }

    /// The over-commit ratio in percent of the capacity.
    #[must_use]
    pub const fn overcommit_percent(&self) -> u32 {
        self.overcommit_percent
    }

    /// The most bytes the container's vVols may provision together:
    /// `quota_bytes x overcommit_percent / 100`, saturating.
    #[must_use]
    pub fn provisioning_limit_bytes(&self) -> u64 {
        let limit = u128::from(self.quota_bytes) * u128::from(self.overcommit_percent) / 100;
        u64::try_from(limit).unwrap_or(u64::MAX)
    }

    /// Sets the largest vVol the container accepts (VASA `maxVvolSizeMB`).
    #[must_use]
    pub const fn with_max_vvol_bytes(mut self, max_vvol_bytes: u64) -> Self {
        self.max_vvol_bytes = max_vvol_bytes;
        self
    }

    /// The name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The protocol family.
    #[must_use]
    pub const fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The capacity quota in bytes.
    #[must_use]
    pub const fn quota_bytes(&self) -> u64 {
        self.quota_bytes
    }

    /// The largest vVol in bytes.
    #[must_use]
    pub const fn max_vvol_bytes(&self) -> u64 {
        self.max_vvol_bytes
    }

    /// Checks the name length (at most `max_name_len` bytes) and sizes.
    ///
    /// # Errors
    /// [`ConfigError::BadName`], [`ConfigError::BadMaxVvolSize`],
    /// [`ConfigError::BadOvercommit`].
    pub fn validate(&self, max_name_len: usize) -> Result<(), ConfigError> {
        check_name("container", &self.name, max_name_len)?;
        if !(MIN_OVERCOMMIT_PERCENT..=MAX_OVERCOMMIT_PERCENT).contains(&self.overcommit_percent) {
            return Err(ConfigError::BadOvercommit {
                percent: self.overcommit_percent,
                min: MIN_OVERCOMMIT_PERCENT,
                max: MAX_OVERCOMMIT_PERCENT,
            });
        }
        if self.max_vvol_bytes == 0
            || !self.max_vvol_bytes.is_multiple_of(MIB)
            || self.max_vvol_bytes > self.quota_bytes
        {
            return Err(ConfigError::BadMaxVvolSize {
                quota_bytes: self.quota_bytes,
                max_vvol_bytes: self.max_vvol_bytes,
            });
        }
        Ok(())
    }
}

/// A snapshot of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Container {
    /// The container's id.
    pub id: ContainerId,
    /// The array it belongs to.
    pub array: ArrayId,
    /// Its name (for NFS, the first element of every vVol's path).
    pub name: String,
    /// Its protocol family.
    pub protocol: Protocol,
    /// Capacity quota in bytes.
    pub quota_bytes: u64,
    /// Largest vVol in bytes.
    pub max_vvol_bytes: u64,
    /// Capacity given to its vVols, in bytes: the same figure as
    /// [`provisioned_bytes`](Self::provisioned_bytes), kept for callers
    /// written before over-commit.
    pub used_bytes: u64,
    /// The sum of its vVols' capacities (what vSphere shows as provisioned
    /// space); at most [`provisioning_limit_bytes`](Self::provisioning_limit_bytes).
    pub provisioned_bytes: u64,
    /// The bytes its vVols' backends hold
    /// ([`BlockBackend::allocated_bytes`](crate::backend::BlockBackend::allocated_bytes));
    /// a backend that cannot tell counts with its vVol's whole capacity.
    pub allocated_bytes: u64,
    /// The over-commit ratio in percent of `quota_bytes`.
    pub overcommit_percent: u32,
    /// `quota_bytes x overcommit_percent / 100`: the most its vVols may
    /// provision together.
    pub provisioning_limit_bytes: u64,
    /// How many vVols it holds.
    pub vvols: u64,
}
