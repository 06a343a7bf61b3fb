//! What an [`NbdServer`](super::NbdServer) serves: a catalog of named
//! exports, each a router binding or a plain backend.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::backend::{AllocationExtent, AllocationState, BackendError, BlockBackend};
use crate::binding::ControlPlane;
use crate::model::{BindHandle, HostId};
use crate::router::{RouteError, Router};

use super::proto::{EINVAL, EIO, ENOSPC, ENOTSUP};

/// Names the exports a server offers and opens them by name.
///
/// The server asks on every `NBD_OPT_LIST`, `NBD_OPT_INFO` and `NBD_OPT_GO`,
/// so a catalog may change what it offers over time.
pub trait ExportCatalog: Send + Sync + std::fmt::Debug + 'static {
    /// The export names, in the order to list them (the server sends at most
    /// [`MAX_LIST_EXPORTS`](super::proto::MAX_LIST_EXPORTS)).
    fn list(&self) -> Vec<String>;

    /// Opens the export `name`; `None` when there is none.
    fn open(&self, name: &str) -> Option<Export>;
}

/// An opened export: where a connection's I/O goes.
#[derive(Clone, Debug)]
pub struct Export {
    target: Target,
}

#[derive(Clone, Debug)]
enum Target {
    Routed {
        router: Arc<Router>,
        host: HostId,
        handle: BindHandle,
    },
    Backend(Arc<dyn BlockBackend>),
}

/// Which transmission command an I/O error happened in, for errno choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

impl Export {
    /// I/O through `router` as `host` with `handle`: once the slot's
    /// generation moves on (unbind, rebind), every request fails with `EIO`.
    #[must_use]
    pub fn routed(router: Arc<Router>, host: HostId, handle: BindHandle) -> Self {
        Self {
            target: Target::Routed {
                router,
                host,
                handle,
            },
        }
    }

    /// I/O straight to `backend`.
    #[must_use]
    pub fn backend(backend: Arc<dyn BlockBackend>) -> Self {
        Self {
            target: Target::Backend(backend),
        }
    }

    /// The bind handle of a routed export.
    #[must_use]
    pub fn handle(&self) -> Option<BindHandle> {
        match &self.target {
            Target::Routed { handle, .. } => Some(*handle),
            Target::Backend(_) => None,
        }
    }

    /// The host a routed export serves, which the server's admission
    /// layer counts sessions against.
    #[must_use]
    pub fn host(&self) -> Option<HostId> {
        match &self.target {
            Target::Routed { host, .. } => Some(*host),
            Target::Backend(_) => None,
        }
    }

    /// Size and logical block size, or an NBD error code.
    pub(crate) fn geometry(&self) -> Result<(u64, u32), u32> {
        match &self.target {
            Target::Routed {
                router,
                host,
                handle,
            } => router
                .geometry(*host, *handle)
                .map_err(|e| route_errno(&e, Access::Read)),
            Target::Backend(b) => Ok((b.capacity_bytes(), b.logical_block_size())),
        }
    }

    pub(crate) fn can_trim(&self) -> bool {
        match &self.target {
            Target::Routed { .. } => true,
            Target::Backend(b) => b.supports(crate::BackendOp::Discard),
        }
    }

    /// Runs one request on the export: `routed` through the router as the
    /// export's host and handle, `direct` on a plain backend; errors become
    /// NBD codes chosen by `access`.
    fn call<T>(
        &self,
        access: Access,
        routed: impl FnOnce(&Router, HostId, BindHandle) -> Result<T, RouteError>,
        direct: impl FnOnce(&dyn BlockBackend) -> Result<T, BackendError>,
    ) -> Result<T, u32> {
        match &self.target {
            Target::Routed {
                router,
                host,
                handle,
            } => routed(router, *host, *handle).map_err(|e| route_errno(&e, access)),
            Target::Backend(b) => direct(b.as_ref()).map_err(|e| backend_errno(&e, access)),
        }
    }

    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), u32> {
        // Both closures would borrow `buf` mutably, so this one matches itself.
        match &self.target {
            Target::Routed {
                router,
                host,
                handle,
            } => router
                .read(*host, *handle, offset, buf)
                .map_err(|e| route_errno(&e, Access::Read)),
            Target::Backend(b) => b
                .read_at(offset, buf)
                .map_err(|e| backend_errno(&e, Access::Read)),
        }
    }

    pub(crate) fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), u32> {
        self.call(
            Access::Write,
            |r, h, k| r.write(h, k, offset, data, fua),
            |b| b.write_at(offset, data, fua),
        )
    }

    pub(crate) fn flush(&self) -> Result<(), u32> {
        self.call(Access::Write, |r, h, k| r.flush(h, k), |b| b.flush())
    }

    /// NBD_CMD_TRIM. Trimming is advisory: an export whose backend cannot
    /// discard keeps the data and answers success.
    pub(crate) fn trim(&self, offset: u64, len: u64) -> Result<(), u32> {
        let result = self.call(
            Access::Write,
            |r, h, k| r.discard(h, k, offset, len),
            |b| b.discard(offset, len),
        );
        // ENOTSUP comes only from BackendError::Unsupported (backend_errno).
        match result {
            Err(ENOTSUP) => Ok(()),
            other => other,
        }
    }

    /// NBD_CMD_WRITE_ZEROES. A backend without write-zeroes gets the zeros
    /// written in pieces of [`WRITE_ZEROES_FALLBACK_BYTES`].
    pub(crate) fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), u32> {
        let result = self.call(
            Access::Write,
            |r, h, k| r.write_zeroes(h, k, offset, len),
            |b| b.write_zeroes(offset, len),
        );
        if result != Err(ENOTSUP) {
            return result;
        }
        let zeros = vec![0u8; len.min(WRITE_ZEROES_FALLBACK_BYTES) as usize];
        let mut done = 0u64;
        while done < len {
            let now = (len - done).min(WRITE_ZEROES_FALLBACK_BYTES);
            self.write(offset + done, &zeros[..now as usize], false)?;
            done += now;
        }
        Ok(())
    }

    /// NBD_CMD_BLOCK_STATUS for `base:allocation`. A backend without
    /// allocation status reports the whole range allocated (flags 0), which
    /// is always true to the protocol.
    pub(crate) fn allocation(&self, offset: u64, len: u64) -> Result<Vec<AllocationExtent>, u32> {
        let result = self.call(
            Access::Read,
            |r, h, k| r.allocation(h, k, offset, len),
            |b| b.allocation(offset, len),
        );
        match result {
            Err(ENOTSUP) if len > 0 => Ok(vec![AllocationExtent {
                offset,
                len,
                state: AllocationState::Allocated,
            }]),
            other => other,
        }
    }
}

/// Piece size of the write-zeroes fallback for backends without
/// write-zeroes.
const WRITE_ZEROES_FALLBACK_BYTES: u64 = 1 << 20;

/// The NBD error code for a routed I/O failure: a stale or refused handle is
/// `EIO` (the client must reconnect), a range past the end is `ENOSPC` for
/// writes and `EINVAL` for reads, misalignment is `EINVAL`.
pub(crate) fn route_errno(e: &RouteError, access: Access) -> u32 {
    match e {
        RouteError::OutOfRange { .. } => range_errno(access),
        RouteError::Misaligned { .. } => EINVAL,
        RouteError::Backend { source, .. } => backend_errno(source, access),
        _ => EIO,
    }
}

fn range_errno(access: Access) -> u32 {
    match access {
        Access::Write => ENOSPC,
        Access::Read => EINVAL,
    }
}

/// The NBD error code for a backend failure.
pub(crate) fn backend_errno(e: &BackendError, access: Access) -> u32 {
    match e {
        BackendError::Unsupported { .. } => ENOTSUP,
        BackendError::OutOfRange { .. } => range_errno(access),
        BackendError::Misaligned { .. }
        | BackendError::TooLarge { .. }
        | BackendError::InvalidConfig { .. } => EINVAL,
        BackendError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            ENOSPC
        }
        _ => EIO,
    }
}

/// A fixed set of named backends.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use vvol::MemoryBackend;
/// use vvol::nbd::{BackendExports, ExportCatalog};
///
/// let exports = BackendExports::new().with("disk", Arc::new(MemoryBackend::new(1 << 20, 512)?));
/// assert_eq!(exports.list(), ["disk"]);
/// # Ok::<(), vvol::BackendError>(())
/// ```
#[derive(Debug, Default)]
pub struct BackendExports {
    exports: BTreeMap<String, Arc<dyn BlockBackend>>,
}

impl BackendExports {
    /// No exports.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) export `name`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, backend: Arc<dyn BlockBackend>) -> Self {
        self.exports.insert(name.into(), backend);
        self
    }
}

impl ExportCatalog for BackendExports {
    fn list(&self) -> Vec<String> {
        self.exports.keys().cloned().collect()
    }

    fn open(&self, name: &str) -> Option<Export> {
        self.exports
            .get(name)
            .map(|b| Export::backend(Arc::clone(b)))
    }
}

/// The bindings one host holds on a control plane, each exported as
/// `<pe-id>:<secondary-id>` in decimal (`0:1`).
///
/// Opening an export looks the binding up anew, so a client that reconnects
/// after an unbind and rebind gets the new generation; a connection opened
/// before keeps the old handle and its I/O fails with `EIO`.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use vvol::BindContext;
/// use vvol::nbd::{ExportCatalog, HostExports};
///
/// let (plane, topo) = vvol::testing::quickstart()?;
/// let plane = Arc::new(plane);
/// let h = plane.bind(topo.hosts[0], &[topo.vms[0].data], BindContext::Normal)?.remove(0)?;
/// let exports = HostExports::new(Arc::clone(&plane), topo.hosts[0]);
/// let name = HostExports::export_name(h);
/// assert_eq!(exports.list(), [name.clone()]);
/// assert_eq!(exports.open(&name).and_then(|e| e.handle()), Some(h));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct HostExports {
    plane: Arc<ControlPlane>,
    host: HostId,
}

impl HostExports {
    /// The bindings of `host` on `plane`.
    #[must_use]
    pub fn new(plane: Arc<ControlPlane>, host: HostId) -> Self {
        Self { plane, host }
    }

    /// The export name of a handle: `<pe-id>:<secondary-id>`. Names are per
    /// host (one catalog serves one host, as one NBD listener per host
    /// does), and within one host's catalog they are unambiguous in either
    /// [`SecondaryIdScope`](crate::SecondaryIdScope): a host holds at most
    /// one binding per (PE, secondary id). In per-(PE, host) scope another
    /// host's catalog may list the same name for its own, different vVol;
    /// opening it there routes to that host's binding.
    #[must_use]
    pub fn export_name(handle: BindHandle) -> String {
        format!("{}:{}", handle.pe.0, handle.secondary_id.0)
    }

    fn handles(&self) -> Vec<BindHandle> {
        self.plane
            .bindings_for_host(self.host)
            .map(|b| b.into_iter().map(|b| b.handle).collect())
            .unwrap_or_default()
    }
}

impl ExportCatalog for HostExports {
    fn list(&self) -> Vec<String> {
        self.handles().into_iter().map(Self::export_name).collect()
    }

    fn open(&self, name: &str) -> Option<Export> {
        let (pe, sid) = name.split_once(':')?;
        let pe: u32 = pe.parse().ok()?;
        let sid: u64 = sid.parse().ok()?;
        let handle = self
            .handles()
            .into_iter()
            .find(|h| h.pe.0 == pe && h.secondary_id.0 == sid)?;
        Some(Export::routed(self.plane.router(), self.host, handle))
    }
}
