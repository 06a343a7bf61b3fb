//! Protocol endpoints: the I/O proxies that vVols are bound to.

use std::net::IpAddr;

use super::config_error::check_name;
use super::{ArrayId, ConfigError, Naa, PeId, Protocol, SecondaryIdSpace};

/// Default depth of a PE's array-side queue, shared by every host and
/// every vVol bound behind the PE (BUSY when it is full). Arrays limit
/// outstanding commands per front-end port (2048 for a typical FC port;
/// review S4), not per host, so the default leaves room for eight hosts at
/// their default [`DEFAULT_HOST_QUEUE_DEPTH`].
pub const DEFAULT_QUEUE_DEPTH: u32 = 2048;
/// Default per-(host, PE) queue depth: ESXi's `Scsi.ScsiVVolPESNRO`, the
/// host's outstanding-request limit for one PE device (its DSNRO), 256 from
/// ESXi 7.0U2 on (128 before; domain.md 3.6). One host's own commands fill
/// it (TASK SET FULL, SAM-5 5.3).
pub const DEFAULT_HOST_QUEUE_DEPTH: u32 = 256;
/// Smallest allowed PE queue depth (either limit; ESXi's range for
/// `Scsi.ScsiVVolPESNRO` is 32..=4096).
pub const MIN_QUEUE_DEPTH: u32 = 32;
/// Largest allowed PE queue depth (either limit).
pub const MAX_QUEUE_DEPTH: u32 = 4096;
/// Largest administrative LUN (14 bits: SAM-5 simple logical unit and flat
/// space addressing). PEs from 256 up are reported in flat space
/// addressing (`41xx...`), see `vvol::scsi::Lun::administrative`.
pub const MAX_ADMIN_LUN: u16 = 0x3FFF;
/// ESXi's default `Disk.MaxLUN`: a default host scans only LUN ids below
/// it (domain.md 3.6), so a PE at this administrative LUN or above is
/// valid SCSI but invisible to an ESXi host left at its defaults
/// ([`PeSpec::scanned_by_default_esxi`]).
pub const ESXI_DEFAULT_MAX_LUN: u16 = 1024;
/// Most paths (SCSI) or trunked server addresses (NFSv4.1) of one PE.
pub const MAX_PATHS_PER_PE: usize = 32;
/// Longest NFS export path in bytes.
pub const MAX_EXPORT_PATH_LEN: usize = 1024;
/// Longest DNS name of an NFS server in bytes.
pub const MAX_DNS_NAME_LEN: usize = 253;

/// One SCSI path to a PE, seen from the array: the target port it is reached
/// through and that port's ALUA target port group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScsiPath {
    /// Relative target port identifier (1..=65535; 0 is reserved).
    pub relative_target_port: u16,
    /// Target port group the port belongs to.
    pub target_port_group: u16,
}

impl ScsiPath {
    /// A path through `relative_target_port` in `target_port_group`.
    #[must_use]
    pub const fn new(relative_target_port: u16, target_port_group: u16) -> Self {
        Self {
            relative_target_port,
            target_port_group,
        }
    }
}

/// NFS protocol version of an NFS PE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NfsVersion {
    /// NFSv3: one server address, no multipathing.
    V3,
    /// NFSv4.1: may list trunked server addresses.
    V4_1,
}

/// How a PE is reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// A SCSI proxy LUN: the administrative logical unit of a conglomerate.
    Scsi {
        /// The PE's NAA 6 name (`naa.<32 hex>`).
        naa: Naa,
        /// The LUN of the PE (14-bit simple addressing).
        admin_lun: u16,
        /// Paths through target ports (at least one).
        paths: Vec<ScsiPath>,
    },
    /// An NFS mount point: a server plus an export.
    Nfs {
        /// Server IP addresses or DNS names: exactly one for NFSv3, one or
        /// more trunked addresses for NFSv4.1.
        servers: Vec<String>,
        /// Absolute export path.
        export: String,
        /// NFS version.
        version: NfsVersion,
    },
}

impl Transport {
    /// The protocol family, which must match a container's to serve it.
    #[must_use]
    pub const fn protocol(&self) -> Protocol {
        match self {
            Self::Scsi { .. } => Protocol::Scsi,
            Self::Nfs { .. } => Protocol::Nfs,
        }
    }

    /// The NAA name of a SCSI PE.
    #[must_use]
    pub const fn naa(&self) -> Option<Naa> {
        match self {
            Self::Scsi { naa, .. } => Some(*naa),
            Self::Nfs { .. } => None,
        }
    }
}

/// Everything needed to create a PE.
///
/// # Example
/// ```
/// use vvol::{Naa, NfsVersion, PeSpec, ScsiPath};
///
/// let naa = Naa::from_parts(0x00_1a_2b, 1, 1).unwrap();
/// let scsi = PeSpec::scsi(naa, 255)
///     .with_paths(vec![ScsiPath::new(1, 1), ScsiPath::new(2, 2)])
///     .with_queue_depth(512);
/// assert!(scsi.validate().is_ok());
/// let nfs = PeSpec::nfs("192.0.2.10", "/vvols", NfsVersion::V3);
/// assert!(nfs.validate().is_ok());
/// assert!(nfs.with_trunked_servers(["192.0.2.11"]).validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeSpec {
    transport: Transport,
    queue_depth: u32,
    host_queue_depth: u32,
    secondary_ids: SecondaryIdSpace,
}

impl PeSpec {
    /// A SCSI PE named `naa` at `admin_lun`, with one path through relative
    /// target port 1 in target port group 1.
    #[must_use]
    pub fn scsi(naa: Naa, admin_lun: u16) -> Self {
        Self::with_transport(Transport::Scsi {
            naa,
            admin_lun,
            paths: vec![ScsiPath::new(1, 1)],
        })
    }

    /// An NFS PE: `server` (IP address or DNS name) exporting `export`.
    #[must_use]
    pub fn nfs(server: impl Into<String>, export: impl Into<String>, version: NfsVersion) -> Self {
        Self::with_transport(Transport::Nfs {
            servers: vec![server.into()],
            export: export.into(),
            version,
        })
    }

    fn with_transport(transport: Transport) -> Self {
        Self {
            transport,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            host_queue_depth: DEFAULT_HOST_QUEUE_DEPTH,
            secondary_ids: SecondaryIdSpace::default(),
        }
    }

    /// Replaces the paths of a SCSI PE (no effect on NFS).
    #[must_use]
    pub fn with_paths(mut self, new_paths: Vec<ScsiPath>) -> Self {
        if let Transport::Scsi { paths, .. } = &mut self.transport {
            *paths = new_paths;
        }
        self
    }

    /// Adds trunked server addresses to an NFS PE (only valid for NFSv4.1;
    /// no effect on SCSI).
    #[must_use]
    pub fn with_trunked_servers<I, S>(mut self, more: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if let Transport::Nfs { servers, .. } = &mut self.transport {
            servers.extend(more.into_iter().map(Into::into));
        }
        self
    }

    /// Sets the depth of the PE's array-side queue, shared by every host
    /// and every vVol bound behind the PE (default
    /// [`DEFAULT_QUEUE_DEPTH`]).
    #[must_use]
    pub const fn with_queue_depth(mut self, depth: u32) -> Self {
        self.queue_depth = depth;
        self
    }

    /// Sets the per-(host, PE) queue depth: how many commands one host may
    /// have outstanding on the PE (ESXi `Scsi.ScsiVVolPESNRO`, default
    /// [`DEFAULT_HOST_QUEUE_DEPTH`]).
    #[must_use]
    pub const fn with_host_queue_depth(mut self, depth: u32) -> Self {
        self.host_queue_depth = depth;
        self
    }

    /// Sets the secondary ids the PE hands out: to all hosts together, or
    /// to each host on its own when the PE's array scopes ids per (PE,
    /// host) ([`SecondaryIdScope::PerPeAndHost`](crate::SecondaryIdScope::PerPeAndHost);
    /// Pure: `1..=16383` per host).
    #[must_use]
    pub const fn with_secondary_ids(mut self, space: SecondaryIdSpace) -> Self {
        self.secondary_ids = space;
        self
    }

    /// The transport.
    #[must_use]
    pub const fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The depth of the array-side queue shared by all hosts.
    #[must_use]
    pub const fn queue_depth(&self) -> u32 {
        self.queue_depth
    }

    /// The per-(host, PE) queue depth.
    #[must_use]
    pub const fn host_queue_depth(&self) -> u32 {
        self.host_queue_depth
    }

    /// The secondary-id space.
    #[must_use]
    pub const fn secondary_ids(&self) -> SecondaryIdSpace {
        self.secondary_ids
    }

    /// Whether an ESXi host at its default `Disk.MaxLUN`
    /// ([`ESXI_DEFAULT_MAX_LUN`]) discovers this PE: true for a SCSI PE
    /// whose administrative LUN is below it (and for NFS PEs, which are not
    /// scanned). [`validate`](Self::validate) accepts LUNs up to
    /// [`MAX_ADMIN_LUN`], so a caller modelling a default ESXi host checks
    /// this as well.
    ///
    /// ```
    /// use vvol::{Naa, PeSpec};
    ///
    /// let naa = Naa::from_parts(0x00_1a_2b, 1, 1).unwrap();
    /// assert!(PeSpec::scsi(naa, 1023).scanned_by_default_esxi());
    /// assert!(!PeSpec::scsi(naa, 1024).scanned_by_default_esxi());
    /// assert!(PeSpec::scsi(naa, 1024).validate().is_ok());
    /// ```
    #[must_use]
    pub const fn scanned_by_default_esxi(&self) -> bool {
        match &self.transport {
            Transport::Scsi { admin_lun, .. } => *admin_lun < ESXI_DEFAULT_MAX_LUN,
            Transport::Nfs { .. } => true,
        }
    }

    /// Checks the spec against the PE rules.
    ///
    /// # Errors
    /// [`ConfigError::BadQueueDepth`], [`ConfigError::BadAdminLun`],
    /// [`ConfigError::NoPaths`], [`ConfigError::TooManyPaths`],
    /// [`ConfigError::DuplicatePath`], [`ConfigError::BadTargetPort`],
    /// [`ConfigError::NfsV3NeedsOnePath`], [`ConfigError::BadNfsServer`],
    /// [`ConfigError::BadExportPath`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        for value in [self.queue_depth, self.host_queue_depth] {
            if !(MIN_QUEUE_DEPTH..=MAX_QUEUE_DEPTH).contains(&value) {
                return Err(ConfigError::BadQueueDepth {
                    value,
                    min: MIN_QUEUE_DEPTH,
                    max: MAX_QUEUE_DEPTH,
                });
            }
        }
        match &self.transport {
            Transport::Scsi {
                admin_lun, paths, ..
            } => {
                if *admin_lun > MAX_ADMIN_LUN {
                    return Err(ConfigError::BadAdminLun(*admin_lun));
                }
                check_path_count(paths.len())?;
                let mut ports: Vec<u16> = paths.iter().map(|p| p.relative_target_port).collect();
                ports.sort_unstable();
                if ports.first() == Some(&0) {
                    return Err(ConfigError::BadTargetPort);
                }
                if let Some(w) = ports.windows(2).find(|w| w[0] == w[1]) {
                    return Err(ConfigError::DuplicatePath(w[0]));
                }
            }
            Transport::Nfs {
                servers,
                export,
                version,
            } => {
                if *version == NfsVersion::V3 && servers.len() != 1 {
                    return Err(ConfigError::NfsV3NeedsOnePath {
                        count: servers.len(),
                    });
                }
                check_path_count(servers.len())?;
                for server in servers {
                    check_server(server)?;
                }
                if !export.starts_with('/')
                    || export.len() > MAX_EXPORT_PATH_LEN
                    || export.contains('\0')
                {
                    return Err(ConfigError::BadExportPath {
                        limit: MAX_EXPORT_PATH_LEN,
                    });
                }
            }
        }
        Ok(())
    }
}

fn check_path_count(count: usize) -> Result<(), ConfigError> {
    if count == 0 {
        return Err(ConfigError::NoPaths);
    }
    if count > MAX_PATHS_PER_PE {
        return Err(ConfigError::TooManyPaths {
            count,
            limit: MAX_PATHS_PER_PE,
        });
    }
    Ok(())
}

/// Accepts an IP address or an RFC 1123 DNS name.
fn check_server(server: &str) -> Result<(), ConfigError> {
    if server.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let name = server.strip_suffix('.').unwrap_or(server);
    let all_numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if check_name("NFS server", name, MAX_DNS_NAME_LEN).is_ok()
        && name.split('.').all(label_ok)
        && !all_numeric
    {
        return Ok(());
    }
    Err(ConfigError::BadNfsServer {
        server: server.chars().take(64).collect(),
    })
}

/// Whether a PE accepts new binds and I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeState {
    /// Serving I/O and accepting binds.
    Active,
    /// Serving I/O for its bindings, refusing new binds; becomes
    /// [`Drained`](Self::Drained) with its last binding.
    Draining,
    /// Drained: no bindings, refusing new binds, kept (with its stats) until
    /// restored or removed.
    Drained,
    /// Failed: refusing I/O and new binds, kept (with its stats and any
    /// bindings hosts have not released yet) until restored or removed.
    Failed,
}

/// A snapshot of a protocol endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProtocolEndpoint {
    /// The PE's id.
    pub id: PeId,
    /// The array the PE belongs to; it serves every container of that array
    /// with a matching protocol.
    pub array: ArrayId,
    /// How the PE is reached.
    pub transport: Transport,
    /// Depth of its array-side queue, shared by every host and vVol.
    pub queue_depth: u32,
    /// How many commands one host may have outstanding on it (ESXi
    /// `Scsi.ScsiVVolPESNRO`).
    pub host_queue_depth: u32,
    /// The secondary ids it hands out.
    pub secondary_ids: SecondaryIdSpace,
    /// Its state.
    pub state: PeState,
    /// Bindings currently made through it.
    pub bindings: u64,
}
