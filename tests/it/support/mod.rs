//! Shared helpers for the integration tests.

pub(crate) mod gate;

use vvol::{BindContext, BindHandle, BlockBackend, ControlPlane, HostId, VvolId};

/// Binds one vVol and returns its handle, panicking with context otherwise.
#[track_caller]
pub(crate) fn bind_one(
    plane: &ControlPlane,
    host: HostId,
    vvol: VvolId,
    ctx: BindContext,
) -> BindHandle {
    let mut results = plane
        .bind(host, &[vvol], ctx)
        .unwrap_or_else(|e| panic!("bind of {vvol} for {host} failed: {e}"));
    assert_eq!(results.len(), 1);
    results
        .remove(0)
        .unwrap_or_else(|e| panic!("bind of {vvol} for {host} failed per item: {e}"))
}

/// Brings `pes` up for `host` as an array and a host do: the array maps
/// them (LUN masking), then the host reports them as its PE context.
#[track_caller]
pub(crate) fn expose(plane: &ControlPlane, host: HostId, pes: &[vvol::PeId]) {
    for pe in pes {
        plane
            .map_pe(host, *pe)
            .unwrap_or_else(|e| panic!("map of {pe} for {host} failed: {e}"));
    }
    plane
        .set_pe_context(host, pes)
        .unwrap_or_else(|e| panic!("PE context of {host} failed: {e}"));
}

/// A 512-byte block holding `tag` at its start.
pub(crate) fn tagged_block(tag: &str) -> Vec<u8> {
    let mut block = vec![0u8; 512];
    block[..tag.len()].copy_from_slice(tag.as_bytes());
    block
}

/// A backend with only the five required `BlockBackend` methods: a flat byte
/// vector. Every optional operation falls to the trait's default
/// (`Unsupported`).
#[derive(Debug)]
pub(crate) struct MinimalBackend {
    bytes: parking_lot::RwLock<Vec<u8>>,
    block_size: u32,
}

impl MinimalBackend {
    pub(crate) fn new(capacity: u64, block_size: u32) -> Self {
        Self {
            bytes: parking_lot::RwLock::new(vec![0; capacity as usize]),
            block_size,
        }
    }

    fn range(
        &self,
        op: vvol::BackendOp,
        offset: u64,
        len: usize,
    ) -> Result<std::ops::Range<usize>, vvol::BackendError> {
        let capacity = self.capacity_bytes();
        match offset.checked_add(len as u64) {
            Some(end) if end <= capacity => Ok(offset as usize..end as usize),
            _ => Err(vvol::BackendError::OutOfRange {
                op,
                offset,
                len: len as u64,
                capacity,
            }),
        }
    }
}

impl BlockBackend for MinimalBackend {
    fn capacity_bytes(&self) -> u64 {
        self.bytes.read().len() as u64
    }

    fn logical_block_size(&self) -> u32 {
        self.block_size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), vvol::BackendError> {
        let range = self.range(vvol::BackendOp::Read, offset, buf.len())?;
        buf.copy_from_slice(&self.bytes.read()[range]);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8], _fua: bool) -> Result<(), vvol::BackendError> {
        let range = self.range(vvol::BackendOp::Write, offset, data.len())?;
        self.bytes.write()[range].copy_from_slice(data);
        Ok(())
    }

    fn flush(&self) -> Result<(), vvol::BackendError> {
        Ok(())
    }
}

/// Creates a vVol of `spec` on the caller's `backend`, journalled under the
/// backend key `key`.
pub(crate) fn create_on(
    plane: &vvol::ControlPlane,
    container: vvol::ContainerId,
    spec: vvol::VvolSpec,
    backend: std::sync::Arc<dyn vvol::BlockBackend>,
    key: &str,
) -> vvol::VvolId {
    plane
        .create_vvol_with_backend(
            container,
            spec,
            backend,
            vvol::BackendKey::new(key).unwrap(),
        )
        .unwrap()
}
