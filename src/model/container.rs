//! Storage containers: capacity pools that hold vVols of one protocol family.

use super::config_error::check_name;
use super::{ArrayId, ConfigError, ContainerId, MIB};

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
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    name: String,
    protocol: Protocol,
    quota_bytes: u64,
    max_vvol_bytes: u64,
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
        }
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
    /// [`ConfigError::BadName`], [`ConfigError::BadMaxVvolSize`].
    pub fn validate(&self, max_name_len: usize) -> Result<(), ConfigError> {
        check_name("container", &self.name, max_name_len)?;
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
    /// Capacity given to its vVols, in bytes.
    pub used_bytes: u64,
    /// How many vVols it holds.
    pub vvols: u64,
}
