//! Shared helpers for the integration tests.

use vvol::{BindContext, BindHandle, ControlPlane, HostId, VvolId};

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

/// A 512-byte block holding `tag` at its start.
pub(crate) fn tagged_block(tag: &str) -> Vec<u8> {
    let mut block = vec![0u8; 512];
    block[..tag.len()].copy_from_slice(tag.as_bytes());
    block
}
