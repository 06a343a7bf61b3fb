//! Virtual volumes and their specifications.

use std::fmt;

use super::{BackendKey, ConfigError, ContainerId, MIB, VvolId, VvolKey};

/// The VASA vVol types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum VvolType {
    /// The VM home (.vmx, descriptors, logs); a directory on NFS.
    Config,
    /// One virtual disk.
    Data,
    /// The VM's swap file.
    Swap,
    /// VM memory for a snapshot.
    Memory,
    /// Anything else (for example a CBRC digest).
    Other,
}

impl fmt::Display for VvolType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Config => "Config",
            Self::Data => "Data",
            Self::Swap => "Swap",
            Self::Memory => "Memory",
            Self::Other => "Other",
        })
    }
}

/// Everything needed to create a vVol: plain data. The control plane gives
/// it a sparse [`MemoryBackend`](crate::MemoryBackend) unless it is created
/// with [`ControlPlane::create_vvol_with_backend`](crate::ControlPlane::create_vvol_with_backend);
/// without an explicit id it gets a random (v4) one, or the next of the
/// plane's seeded generator when the plane opted into deterministic ids.
///
/// # Example
/// ```
/// use vvol::{VvolSpec, VvolType};
///
/// let spec = VvolSpec::new(VvolType::Data, 16 << 20).with_logical_block_size(4096);
/// assert!(spec.validate().is_ok());
/// assert!(VvolSpec::new(VvolType::Data, 1000).validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VvolSpec {
    pub(crate) vtype: VvolType,
    pub(crate) capacity_bytes: u64,
    pub(crate) logical_block_size: u32,
    pub(crate) id: Option<VvolId>,
}

impl VvolSpec {
    /// A vVol of `vtype` and `capacity_bytes` with 512-byte blocks.
    #[must_use]
    pub fn new(vtype: VvolType, capacity_bytes: u64) -> Self {
        Self {
            vtype,
            capacity_bytes,
            logical_block_size: 512,
            id: None,
        }
    }

    /// Sets the logical block size (512 or 4096).
    #[must_use]
    pub const fn with_logical_block_size(mut self, bytes: u32) -> Self {
        self.logical_block_size = bytes;
        self
    }

    /// Uses `id` instead of a generated one.
    #[must_use]
    pub const fn with_id(mut self, id: VvolId) -> Self {
        self.id = Some(id);
        self
    }

    /// The type.
    #[must_use]
    pub const fn vtype(&self) -> VvolType {
        self.vtype
    }

    /// The capacity in bytes.
    #[must_use]
    pub const fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// The logical block size in bytes.
    #[must_use]
    pub const fn logical_block_size(&self) -> u32 {
        self.logical_block_size
    }

    /// The caller-chosen id, if any.
    #[must_use]
    pub const fn id(&self) -> Option<VvolId> {
        self.id
    }

    /// Checks capacity (a positive multiple of 1 MiB) and block size.
    ///
    /// # Errors
    /// [`ConfigError::BadCapacity`], [`ConfigError::BadBlockSize`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_capacity(self.capacity_bytes)?;
        if !matches!(self.logical_block_size, 512 | 4096) {
            return Err(ConfigError::BadBlockSize(self.logical_block_size));
        }
        Ok(())
    }
}

/// Checks that a vVol capacity is a positive multiple of 1 MiB.
pub(crate) fn check_capacity(capacity_bytes: u64) -> Result<(), ConfigError> {
    if capacity_bytes == 0 || !capacity_bytes.is_multiple_of(MIB) {
        return Err(ConfigError::BadCapacity { capacity_bytes });
    }
    Ok(())
}

/// A snapshot of a virtual volume (plain data; its backend is reachable
/// through [`ControlPlane::backend`](crate::ControlPlane::backend)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VirtualVolume {
    /// Its id.
    pub id: VvolId,
    /// Its dense index in the control plane, as routing resolves to it.
    pub key: VvolKey,
    /// The container that holds it.
    pub container: ContainerId,
    /// Its type.
    pub vtype: VvolType,
    /// Capacity in bytes.
    pub capacity_bytes: u64,
    /// Logical block size in bytes.
    pub logical_block_size: u32,
    /// The embedder's key of its backend, when it was created with one
    /// ([`ControlPlane::create_vvol_with_backend`](crate::ControlPlane::create_vvol_with_backend)).
    pub backend_key: Option<BackendKey>,
    /// How many bindings it has.
    pub bindings: usize,
}
