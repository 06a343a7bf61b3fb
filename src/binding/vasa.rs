//! VASA `VirtualVolumeHandle`s: a binding's handle as VASA spells it, the
//! way back to the crate's [`BindHandle`], and the batched unbind of VASA
//! `unbindVirtualVolume` (one result per handle, `BatchReturnStatus[]`).

use std::collections::HashMap;

use super::ControlError;
use super::control_plane::ControlPlane;
use super::journal::{Record, Release};
use super::state::{BindingEntry, BindingKey, State};
use crate::model::{
    BindHandle, HostId, MAX_ECHOED_INPUT, PeId, PeInBandId, Transport, UnbindContext, VasaHandle,
    VasaSecondaryId, VvolType,
};

/// One result per handle of [`ControlPlane::unbind_batch`], in call order:
/// the released binding's handle or the item's error.
pub type UnbindResults = Vec<Result<BindHandle, ControlError>>;

/// The `vvolSecondaryId` text of the binding at `key`: on SCSI the 8-byte
/// subsidiary LUN as 16 uppercase hex digits and `h` (bytes 0-1 left to the
/// PE, the ONTAP form), on NFS `<container name>/rfc4122.<uuid>`, with a
/// trailing `/` for a Config vVol (a directory; Huawei's form).
pub(crate) fn secondary_id_text(st: &State, key: BindingKey, b: &BindingEntry) -> Option<String> {
    let pe = st.pes.get(&key.0)?;
    Some(match pe.spec.transport() {
        Transport::Scsi { .. } => {
            let lun = pe.spec.secondary_ids().addressing().subsidiary_lun(key.1)?;
            let mut text: String = lun.iter().map(|b| format!("{b:02X}")).collect();
            text.push('h');
            text
        }
        Transport::Nfs { .. } => {
            let v = st.vvols.get(&b.vvol)?;
            let container = st.containers.get(&v.container)?.spec.name();
            let dir = if v.vtype == VvolType::Config { "/" } else { "" };
            format!("{container}/{}{dir}", b.vvol)
        }
    })
}

/// The in-band id a host uses for `pe`: its NAA on SCSI; on NFS its first
/// server address and its export.
fn in_band_id(transport: &Transport) -> PeInBandId {
    match transport {
        Transport::Scsi { naa, .. } => PeInBandId::Scsi { lun_id: *naa },
        Transport::Nfs {
            servers, export, ..
        } => PeInBandId::Nfs {
            ip_address: servers.first().cloned().unwrap_or_default(),
            server_mount: export.clone(),
        },
    }
}

/// The PE an in-band id names: a SCSI PE by NAA; an NFS PE by one of its
/// server addresses (NFSv4.1 trunking lists several) and its export.
/// O(PEs), under the lock, as VASA calls are few.
fn pe_of(st: &State, id: &PeInBandId) -> Option<PeId> {
    st.pes.iter().find_map(|(pe, e)| {
        let hit = match (e.spec.transport(), id) {
            (Transport::Scsi { naa, .. }, PeInBandId::Scsi { lun_id }) => naa == lun_id,
            (
                Transport::Nfs {
                    servers, export, ..
                },
                PeInBandId::Nfs {
                    ip_address,
                    server_mount,
                },
            ) => export == server_mount && servers.iter().any(|s| s == ip_address),
            _ => false,
        };
        hit.then_some(*pe)
    })
}

/// The binding `host` holds that `handle` names, checked against the
/// handle's vVol.
fn resolve(st: &State, host: HostId, handle: &VasaHandle) -> Result<BindingKey, ControlError> {
    st.host(host)?;
    let pe = pe_of(st, &handle.pe_in_band_id)
        .ok_or_else(|| ControlError::UnknownPeInBandId(handle.pe_in_band_id.clone()))?;
    let entry = st.pe(pe)?;
    let parsed = VasaSecondaryId::parse(&handle.secondary_id, entry.spec.transport().protocol())?;
    let not_found = || ControlError::VasaHandleNotFound {
        host,
        vvol: handle.vvol,
        pe,
        secondary_id: handle.secondary_id.chars().take(MAX_ECHOED_INPUT).collect(),
    };
    let held = |key: &BindingKey| {
        st.bindings
            .get(key)
            .filter(|b| b.vvol == handle.vvol && b.count_of(host).is_some())
    };
    match parsed {
        VasaSecondaryId::Lun(lun) => {
            let sid = entry
                .spec
                .secondary_ids()
                .addressing()
                .secondary_id_of(lun)
                .ok_or_else(not_found)?;
            // VASA binds and unbinds per host, so the host names the space
            // in per-(PE, host) scope.
            let key = entry.key(pe, sid, host);
            held(&key).map(|_| key).ok_or_else(not_found)
        }
        VasaSecondaryId::Path { .. } => {
            // The path carries no slot: find the host's bindings of the vVol
            // on this PE whose path is exactly this one (Huawei checks the
            // path matches what it issued).
            let v = st.vvol(handle.vvol).map_err(|_| not_found())?;
            let matches: Vec<BindingKey> = v
                .bindings
                .iter()
                .copied()
                .filter(|k| k.0 == pe)
                .filter(|k| {
                    held(k).is_some_and(|b| {
                        secondary_id_text(st, *k, b).as_deref() == Some(&handle.secondary_id)
                    })
                })
                .collect();
            match matches.as_slice() {
                [] => Err(not_found()),
                [key] => Ok(*key),
                _ => Err(ControlError::AmbiguousVasaHandle {
                    host,
                    vvol: handle.vvol,
                    pe,
                    bindings: matches.len(),
                }),
            }
        }
    }
}

impl ControlPlane {
    /// The VASA `VirtualVolumeHandle` of a binding `host` holds: the vVol
    /// id, the PE's in-band id (SCSI: its NAA; NFS: its first server
    /// address and its export) and the `vvolSecondaryId` text
    /// ([`vasa_secondary_id`](Self::vasa_secondary_id)).
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::PeNotFound`],
    /// [`ControlError::BindingNotFound`] when the slot is empty,
    /// [`ControlError::StaleGeneration`] when the slot is bound under
    /// another generation, [`ControlError::HandleNotFound`] when the host
    /// does not hold the binding.
    pub fn vasa_handle(
        &self,
        host: HostId,
        handle: BindHandle,
    ) -> Result<VasaHandle, ControlError> {
        let st = self.lock();
        st.host(host)?;
        let pe = st.pe(handle.pe)?;
        let key = pe.key(handle.pe, handle.secondary_id, host);
        let b = st
            .bindings
            .get(&key)
            .ok_or(ControlError::BindingNotFound(handle))?;
        if b.generation != handle.generation {
            return Err(ControlError::StaleGeneration {
                handle,
                current: b.generation,
            });
        }
        if b.count_of(host).is_none() {
            return Err(ControlError::HandleNotFound { host, handle });
        }
        let text = secondary_id_text(&st, key, b).ok_or(ControlError::Internal {
            reason: "a bound secondary id outside its PE's addressing",
        })?;
        Ok(VasaHandle::new(
            b.vvol,
            in_band_id(pe.spec.transport()),
            text,
        )?)
    }

    /// The crate's handle (with the slot's current generation) of the
    /// binding a VASA handle names, which `host` holds.
    ///
    /// VASA's bind and unbind calls are made per host, so the host is part
    /// of the question: on a PE of a
    /// [`SecondaryIdScope::PerPeAndHost`](crate::SecondaryIdScope::PerPeAndHost)
    /// array the handle's `vvolSecondaryId` is looked up in `host`'s own
    /// space (the same text may name another vVol for another host).
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::UnknownPeInBandId`],
    /// [`ControlError::VasaHandle`] for a malformed `vvolSecondaryId`,
    /// [`ControlError::VasaHandleNotFound`] when it names no binding of
    /// the handle's vVol held by the host, [`ControlError::AmbiguousVasaHandle`].
    pub fn resolve_vasa_handle(
        &self,
        host: HostId,
        handle: &VasaHandle,
    ) -> Result<BindHandle, ControlError> {
        let st = self.lock();
        let key = resolve(&st, host, handle)?;
        Ok(st.handle(key))
    }

    /// Releases one bind per handle (VASA `unbindVirtualVolume`): every
    /// handle that resolves ([`resolve_vasa_handle`](Self::resolve_vasa_handle))
    /// is released in one journal record; the others report their error in
    /// their place, and the call fails only as a whole for an empty or too
    /// large batch or an unknown host. A handle given more often than the
    /// host has bound it fails for the extra items.
    /// [`UnbindContext::RebindStart`] resolves the handles and changes
    /// nothing (Huawei's VP answers it with success).
    ///
    /// # Errors
    /// Whole call: [`ControlError::EmptyBatch`], [`ControlError::BatchTooLarge`]
    /// (the same `maxBatchSize` as bind, [`Limits::max_bind_batch`](crate::Limits::max_bind_batch)),
    /// [`ControlError::HostNotFound`], [`ControlError::Journal`]. Per item:
    /// the errors of [`resolve_vasa_handle`](Self::resolve_vasa_handle),
    /// [`ControlError::HandleNotFound`] for a release beyond the host's count.
    pub fn unbind_batch(
        &self,
        host: HostId,
        handles: &[VasaHandle],
        context: UnbindContext,
    ) -> Result<UnbindResults, ControlError> {
        if handles.is_empty() {
            return Err(ControlError::EmptyBatch);
        }
        if handles.len() > self.limits.max_bind_batch {
            return Err(ControlError::BatchTooLarge {
                len: handles.len(),
                max_batch: self.limits.max_bind_batch,
            });
        }
        let st = self.lock();
        st.host(host)?;
        let mut planned: HashMap<BindingKey, u32> = HashMap::new();
        let mut releases = Vec::new();
        let mut results: UnbindResults = Vec::with_capacity(handles.len());
        for handle in handles {
            let item = resolve(&st, host, handle).and_then(|key| {
                let bind = st.handle(key);
                let count = st
                    .bindings
                    .get(&key)
                    .and_then(|b| b.count_of(host))
                    .unwrap_or(0);
                let n = planned.entry(key).or_default();
                if *n >= count {
                    return Err(ControlError::HandleNotFound { host, handle: bind });
                }
                *n += 1;
                releases.push(Release {
                    host,
                    pe: key.0,
                    sid: key.1,
                    whole: false,
                });
                Ok(bind)
            });
            results.push(item);
        }
        if context != UnbindContext::RebindStart && !releases.is_empty() {
            self.commit(st, Record::Unbind(releases), None)?;
        }
        Ok(results)
    }
}
