//! VASA `VirtualVolumeHandle`: the bind info ESXi keeps for a binding and
//! hands back on unbind (VASA 2.x schema: `uniqueIdentifier` (the vVol id),
//! `peInBandId` (`ProtocolEndpointInbandId`), `vvolSecondaryId` (a string)).
//!
//! The handle carries no generation: the plane resolves it to the binding
//! the host holds at that PE and secondary id now
//! ([`ControlPlane::resolve_vasa_handle`](crate::ControlPlane::resolve_vasa_handle)),
//! and checks that the binding is of the handle's vVol, as providers do
//! (Huawei's VP answers NotFound when the secondary id is not the one it
//! issued).

use std::fmt;

use super::parse_error::echo;
use super::{MAX_DNS_NAME_LEN, MAX_EXPORT_PATH_LEN, Naa, ParseError, Protocol, VvolId};

/// Longest `vvolSecondaryId` text accepted, in bytes. The SCSI form is 17
/// bytes; the NFS form is the container name (at most
/// [`Limits::max_name_len`](crate::Limits::max_name_len), 255 by default),
/// `/`, the 44-byte vVol id and an optional `/`. Longer text is refused
/// before it is looked at.
pub const MAX_VASA_SECONDARY_ID_LEN: usize = 512;

/// Length of the SCSI `vvolSecondaryId` text: 16 hex digits and `h`.
pub const SCSI_SECONDARY_ID_LEN: usize = 17;

/// VASA `ProtocolEndpointInbandId`: how a host names a PE in band.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeInBandId {
    /// `protocolEndpointType` `SCSI`: `lunId` is the PE's `naa.` name.
    Scsi {
        /// The PE's NAA name (`lunId`).
        lun_id: Naa,
    },
    /// `protocolEndpointType` `NFS` or `NFS4x`: the server address and the
    /// mounted export.
    Nfs {
        /// `ipAddress`: one of the PE's server addresses.
        ip_address: String,
        /// `serverMount`: the PE's export path.
        server_mount: String,
    },
}

impl PeInBandId {
    /// A SCSI in-band id from its `lunId` text (`naa.` and 32 hex digits).
    ///
    /// # Errors
    /// [`VasaHandleError::Parse`] when the text is not an NAA 6 name.
    pub fn scsi(lun_id: &str) -> Result<Self, VasaHandleError> {
        Ok(Self::Scsi {
            lun_id: lun_id.parse()?,
        })
    }

    /// An NFS in-band id.
    ///
    /// # Errors
    /// [`VasaHandleError::TooLong`] when the address passes
    /// [`MAX_DNS_NAME_LEN`] or the mount [`MAX_EXPORT_PATH_LEN`] bytes.
    pub fn nfs(
        ip_address: impl Into<String>,
        server_mount: impl Into<String>,
    ) -> Result<Self, VasaHandleError> {
        let (ip_address, server_mount) = (ip_address.into(), server_mount.into());
        check_len("ipAddress", &ip_address, MAX_DNS_NAME_LEN)?;
        check_len("serverMount", &server_mount, MAX_EXPORT_PATH_LEN)?;
        Ok(Self::Nfs {
            ip_address,
            server_mount,
        })
    }

    /// The protocol family of the PE it names.
    #[must_use]
    pub const fn protocol(&self) -> Protocol {
        match self {
            Self::Scsi { .. } => Protocol::Scsi,
            Self::Nfs { .. } => Protocol::Nfs,
        }
    }
}

impl fmt::Display for PeInBandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scsi { lun_id } => write!(f, "SCSI {lun_id}"),
            Self::Nfs {
                ip_address,
                server_mount,
            } => write!(f, "NFS {ip_address}:{server_mount}"),
        }
    }
}

/// VASA `VirtualVolumeHandle`.
///
/// # Example
/// ```
/// use vvol::{BindContext, UnbindContext};
///
/// let (plane, topo) = vvol::testing::quickstart()?;
/// let host = topo.hosts[0];
/// let handle = plane.bind(host, &[topo.vms[0].data], BindContext::Normal)?.remove(0)?;
/// let vasa = plane.vasa_handle(host, handle)?;
/// assert_eq!(vasa.secondary_id.len(), vvol::SCSI_SECONDARY_ID_LEN);
/// assert_eq!(plane.resolve_vasa_handle(host, &vasa)?, handle);
/// let results = plane.unbind_batch(host, &[vasa], UnbindContext::Normal)?;
/// assert_eq!(results[0].as_ref().ok(), Some(&handle));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct VasaHandle {
    /// `uniqueIdentifier`: the bound vVol.
    pub vvol: VvolId,
    /// `peInBandId`: the PE.
    pub pe_in_band_id: PeInBandId,
    /// `vvolSecondaryId`: on SCSI the 8-byte subsidiary LUN as 16 hex
    /// digits and `h`, on NFS `<container name>/rfc4122.<uuid>[/]`.
    pub secondary_id: String,
}

impl VasaHandle {
    /// A handle from its three parts.
    ///
    /// # Errors
    /// [`VasaHandleError::TooLong`] when `secondary_id` passes
    /// [`MAX_VASA_SECONDARY_ID_LEN`] bytes.
    pub fn new(
        vvol: VvolId,
        pe_in_band_id: PeInBandId,
        secondary_id: impl Into<String>,
    ) -> Result<Self, VasaHandleError> {
        let secondary_id = secondary_id.into();
        check_len("vvolSecondaryId", &secondary_id, MAX_VASA_SECONDARY_ID_LEN)?;
        Ok(Self {
            vvol,
            pe_in_band_id,
            secondary_id,
        })
    }

    /// A handle from the text of its `uniqueIdentifier` (`rfc4122.<uuid>`).
    ///
    /// # Errors
    /// [`VasaHandleError::Parse`] for a malformed vVol id, and the errors
    /// of [`new`](Self::new).
    pub fn parse(
        unique_identifier: &str,
        pe_in_band_id: PeInBandId,
        secondary_id: &str,
    ) -> Result<Self, VasaHandleError> {
        Self::new(unique_identifier.parse()?, pe_in_band_id, secondary_id)
    }
}

/// A `vvolSecondaryId` text, parsed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VasaSecondaryId {
    /// SCSI: the 8-byte LUN whose bytes 0-1 are left to the PE's
    /// administrative element (SAM-5 conglomerate LUN; the ONTAP form,
    /// e.g. `0000D20000010000h`).
    Lun([u8; 8]),
    /// NFS: a path relative to the PE's mount (Huawei's form
    /// `<fileSystemName>/<path>`, a trailing `/` for a directory).
    Path {
        /// The container's name (the first path element).
        container: String,
        /// The vVol the path names.
        vvol: VvolId,
        /// Whether the path ends in `/` (a Config vVol, a directory).
        directory: bool,
    },
}

impl VasaSecondaryId {
    /// Parses `text` in the form of `protocol`. Total: any input gives a
    /// value or an error, never a panic, and input longer than
    /// [`MAX_VASA_SECONDARY_ID_LEN`] is refused unread.
    ///
    /// # Errors
    /// [`VasaHandleError::TooLong`], [`VasaHandleError::Malformed`],
    /// [`VasaHandleError::Parse`] (the vVol id of an NFS path).
    pub fn parse(text: &str, protocol: Protocol) -> Result<Self, VasaHandleError> {
        check_len("vvolSecondaryId", text, MAX_VASA_SECONDARY_ID_LEN)?;
        let bad = |reason| VasaHandleError::Malformed {
            input: echo(text),
            reason,
        };
        match protocol {
            Protocol::Scsi => {
                let hex = text
                    .strip_suffix('h')
                    .or_else(|| text.strip_suffix('H'))
                    .ok_or_else(|| bad("a SCSI secondary id ends in `h`"))?;
                if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("a SCSI secondary id is 16 hex digits and `h`"));
                }
                let v = u64::from_str_radix(hex, 16)
                    .map_err(|_| bad("a SCSI secondary id is 16 hex digits and `h`"))?;
                Ok(Self::Lun(v.to_be_bytes()))
            }
            Protocol::Nfs => {
                let (path, directory) = match text.strip_suffix('/') {
                    Some(p) => (p, true),
                    None => (text, false),
                };
                let (container, id) = path
                    .rsplit_once('/')
                    .ok_or_else(|| bad("an NFS secondary id is `<container>/<vVol id>`"))?;
                if container.is_empty() {
                    return Err(bad("an NFS secondary id starts with the container name"));
                }
                Ok(Self::Path {
                    container: container.to_owned(),
                    vvol: id.parse()?,
                    directory,
                })
            }
        }
    }
}

fn check_len(what: &'static str, text: &str, max: usize) -> Result<(), VasaHandleError> {
    if text.len() > max {
        return Err(VasaHandleError::TooLong {
            what,
            len: text.len(),
            max,
        });
    }
    Ok(())
}

/// A VASA handle part that is malformed or too long.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VasaHandleError {
    /// A text part longer than its limit.
    #[error("{what} of {len} bytes passes the limit of {max}")]
    TooLong {
        /// Which part.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A `vvolSecondaryId` that is not in its protocol's form.
    #[error("malformed vvolSecondaryId {input:?}: {reason}")]
    Malformed {
        /// The input, cut to [`MAX_ECHOED_INPUT`](crate::MAX_ECHOED_INPUT) characters.
        input: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A vVol id or NAA name that does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
}
