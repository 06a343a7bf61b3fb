//! Journal records: one per acknowledged control-plane mutation, replayed
//! through the public API on open.

use std::sync::Arc;

use super::codec::{Reader, Writer};
use super::{BackendProvider, JournalError};
use crate::backend::{BlockBackend, MemoryBackend};
use crate::binding::ControlPlane;
use crate::model::{
    ArrayId, ArraySpec, BindContext, BindHandle, ContainerId, ContainerSpec, Generation, HostId,
    Naa, NfsVersion, PeId, PeSpec, PeState, Protocol, ScsiPath, SecondaryId, SecondaryIdSpace,
    SubsidiaryAddressing, Transport, UnbindContext, VvolId, VvolSpec, VvolType,
};

pub(crate) const TAG_HEADER: u8 = 1;
pub(crate) const TAG_SNAPSHOT: u8 = 2;
pub(crate) const TAG_OP: u8 = 3;

/// One mutation as it was called (ids the call returned are kept to check
/// that replay reproduces them).
#[derive(Debug)]
pub(crate) enum Op {
    AddArray(ArraySpec),
    AddContainer(ArrayId, ContainerSpec),
    RemoveContainer(ContainerId),
    AddPe(ArrayId, PeSpec),
    RemovePe(PeId),
    AddHost(String),
    RemoveHost(HostId),
    SetPeContext(HostId, Vec<PeId>),
    CreateVvol {
        container: ContainerId,
        vtype: VvolType,
        capacity_bytes: u64,
        logical_block_size: u32,
        id: VvolId,
        generated: bool,
        explicit_backend: bool,
    },
    DeleteVvol(VvolId),
    ResizeVvol(VvolId, u64),
    Bind(HostId, Vec<VvolId>, BindContext),
    Unbind(HostId, BindHandle, UnbindContext),
    UnbindAllFromHost(HostId),
    UnbindFromAllHosts(VvolId),
    DrainPe(PeId),
    FailPe(PeId),
    Seed(u64),
}

fn bad(reason: &'static str) -> JournalError {
    JournalError::Corrupt { offset: 0, reason }
}

pub(crate) fn vtype_code(t: VvolType) -> u8 {
    match t {
        VvolType::Config => 0,
        VvolType::Data => 1,
        VvolType::Swap => 2,
        VvolType::Memory => 3,
        _ => 4,
    }
}

pub(crate) fn vtype_from(c: u8) -> Result<VvolType, JournalError> {
    Ok(match c {
        0 => VvolType::Config,
        1 => VvolType::Data,
        2 => VvolType::Swap,
        3 => VvolType::Memory,
        4 => VvolType::Other,
        _ => return Err(bad("unknown vVol type")),
    })
}

pub(crate) fn protocol_code(p: Protocol) -> u8 {
    match p {
        Protocol::Scsi => 0,
        _ => 1,
    }
}

pub(crate) fn protocol_from(c: u8) -> Result<Protocol, JournalError> {
    match c {
        0 => Ok(Protocol::Scsi),
        1 => Ok(Protocol::Nfs),
        _ => Err(bad("unknown protocol")),
    }
}

pub(crate) fn pe_state_code(s: PeState) -> u8 {
    match s {
        PeState::Active => 0,
        PeState::Draining => 1,
        _ => 2,
    }
}

pub(crate) fn pe_state_from(c: u8) -> Result<PeState, JournalError> {
    match c {
        0 => Ok(PeState::Active),
        1 => Ok(PeState::Draining),
        2 => Ok(PeState::Failed),
        _ => Err(bad("unknown PE state")),
    }
}

pub(crate) fn put_array_spec(w: &mut Writer, s: &ArraySpec) {
    w.str(s.name());
    w.u32(s.ieee_company_id());
}

pub(crate) fn get_array_spec(r: &mut Reader<'_>) -> Result<ArraySpec, JournalError> {
    let name = r.string()?;
    Ok(ArraySpec::new(name, r.u32()?))
}

pub(crate) fn put_container_spec(w: &mut Writer, s: &ContainerSpec) {
    w.str(s.name());
    w.u8(protocol_code(s.protocol()));
    w.u64(s.quota_bytes());
    w.u64(s.max_vvol_bytes());
}

pub(crate) fn get_container_spec(r: &mut Reader<'_>) -> Result<ContainerSpec, JournalError> {
    let name = r.string()?;
    let protocol = protocol_from(r.u8()?)?;
    let quota = r.u64()?;
    let max = r.u64()?;
    Ok(ContainerSpec::new(name, protocol, quota).with_max_vvol_bytes(max))
}

pub(crate) fn put_pe_spec(w: &mut Writer, s: &PeSpec) {
    match s.transport() {
        Transport::Scsi {
            naa,
            admin_lun,
            paths,
        } => {
            w.u8(0);
            w.buf.extend_from_slice(&naa.to_bytes());
            w.u16(*admin_lun);
            w.usize(paths.len());
            for p in paths {
                w.u16(p.relative_target_port);
                w.u16(p.target_port_group);
            }
        }
        Transport::Nfs {
            servers,
            export,
            version,
        } => {
            w.u8(1);
            w.usize(servers.len());
            for s in servers {
                w.str(s);
            }
            w.str(export);
            w.u8(u8::from(*version != NfsVersion::V3));
        }
    }
    w.u32(s.queue_depth());
    let space = s.secondary_ids();
    w.u8(match space.addressing() {
        SubsidiaryAddressing::Simple => 0,
        SubsidiaryAddressing::ExtendedFlat24 => 1,
        _ => 2,
    });
    w.u64(space.first());
    w.u64(space.last());
}

pub(crate) fn get_pe_spec(r: &mut Reader<'_>) -> Result<PeSpec, JournalError> {
    let spec = match r.u8()? {
        0 => {
            let mut naa = [0u8; 16];
            for b in &mut naa {
                *b = r.u8()?;
            }
            let naa = Naa::from_bytes(naa).ok_or_else(|| bad("bad NAA"))?;
            let lun = r.u16()?;
            let n = r.count(4)?;
            let mut paths = Vec::with_capacity(n);
            for _ in 0..n {
                paths.push(ScsiPath::new(r.u16()?, r.u16()?));
            }
            PeSpec::scsi(naa, lun).with_paths(paths)
        }
        1 => {
            let n = r.count(8)?;
            let mut servers = Vec::with_capacity(n);
            for _ in 0..n {
                servers.push(r.string()?);
            }
            let export = r.string()?;
            let version = if r.u8()? == 0 {
                NfsVersion::V3
            } else {
                NfsVersion::V4_1
            };
            let mut servers = servers.into_iter();
            let first = servers.next().ok_or_else(|| bad("NFS PE without server"))?;
            PeSpec::nfs(first, export, version).with_trunked_servers(servers)
        }
        _ => return Err(bad("unknown transport")),
    };
    let depth = r.u32()?;
    let addressing = match r.u8()? {
        0 => SubsidiaryAddressing::Simple,
        1 => SubsidiaryAddressing::ExtendedFlat24,
        2 => SubsidiaryAddressing::ExtendedFlat40,
        _ => return Err(bad("unknown addressing")),
    };
    let space = SecondaryIdSpace::new(addressing, r.u64()?, r.u64()?)
        .map_err(|_| bad("bad secondary-id space"))?;
    Ok(spec.with_queue_depth(depth).with_secondary_ids(space))
}

fn bind_ctx(c: BindContext) -> u8 {
    u8::from(c == BindContext::RebindStart)
}

fn unbind_ctx(c: UnbindContext) -> u8 {
    match c {
        UnbindContext::Normal => 0,
        UnbindContext::RebindStart => 1,
        _ => 2,
    }
}

impl Op {
    /// The record payload (tag first).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(TAG_OP);
        match self {
            Self::AddArray(s) => {
                w.u8(0);
                put_array_spec(&mut w, s);
            }
            Self::AddContainer(a, s) => {
                w.u8(1);
                w.u32(a.0);
                put_container_spec(&mut w, s);
            }
            Self::RemoveContainer(c) => {
                w.u8(2);
                w.u32(c.0);
            }
            Self::AddPe(a, s) => {
                w.u8(3);
                w.u32(a.0);
                put_pe_spec(&mut w, s);
            }
            Self::RemovePe(p) => {
                w.u8(4);
                w.u32(p.0);
            }
            Self::AddHost(n) => {
                w.u8(5);
                w.str(n);
            }
            Self::RemoveHost(h) => {
                w.u8(6);
                w.u32(h.0);
            }
            Self::SetPeContext(h, pes) => {
                w.u8(7);
                w.u32(h.0);
                w.usize(pes.len());
                for p in pes {
                    w.u32(p.0);
                }
            }
            Self::CreateVvol {
                container,
                vtype,
                capacity_bytes,
                logical_block_size,
                id,
                generated,
                explicit_backend,
            } => {
                w.u8(8);
                w.u32(container.0);
                w.u8(vtype_code(*vtype));
                w.u64(*capacity_bytes);
                w.u32(*logical_block_size);
                w.u128(id.0);
                w.bool(*generated);
                w.bool(*explicit_backend);
            }
            Self::DeleteVvol(v) => {
                w.u8(9);
                w.u128(v.0);
            }
            Self::ResizeVvol(v, c) => {
                w.u8(10);
                w.u128(v.0);
                w.u64(*c);
            }
            Self::Bind(h, vvols, ctx) => {
                w.u8(11);
                w.u32(h.0);
                w.u8(bind_ctx(*ctx));
                w.usize(vvols.len());
                for v in vvols {
                    w.u128(v.0);
                }
            }
            Self::Unbind(h, handle, ctx) => {
                w.u8(12);
                w.u32(h.0);
                w.u32(handle.pe.0);
                w.u64(handle.secondary_id.0);
                w.u32(handle.generation.0);
                w.u8(unbind_ctx(*ctx));
            }
            Self::UnbindAllFromHost(h) => {
                w.u8(13);
                w.u32(h.0);
            }
            Self::UnbindFromAllHosts(v) => {
                w.u8(14);
                w.u128(v.0);
            }
            Self::DrainPe(p) => {
                w.u8(15);
                w.u32(p.0);
            }
            Self::FailPe(p) => {
                w.u8(16);
                w.u32(p.0);
            }
            Self::Seed(s) => {
                w.u8(17);
                w.u64(*s);
            }
        }
        w.buf
    }

    /// Decodes a payload after its tag.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, JournalError> {
        let op = match r.u8()? {
            0 => Self::AddArray(get_array_spec(r)?),
            1 => Self::AddContainer(ArrayId(r.u32()?), get_container_spec(r)?),
            2 => Self::RemoveContainer(ContainerId(r.u32()?)),
            3 => Self::AddPe(ArrayId(r.u32()?), get_pe_spec(r)?),
            4 => Self::RemovePe(PeId(r.u32()?)),
            5 => Self::AddHost(r.string()?),
            6 => Self::RemoveHost(HostId(r.u32()?)),
            7 => {
                let h = HostId(r.u32()?);
                let n = r.count(4)?;
                let mut pes = Vec::with_capacity(n);
                for _ in 0..n {
                    pes.push(PeId(r.u32()?));
                }
                Self::SetPeContext(h, pes)
            }
            8 => Self::CreateVvol {
                container: ContainerId(r.u32()?),
                vtype: vtype_from(r.u8()?)?,
                capacity_bytes: r.u64()?,
                logical_block_size: r.u32()?,
                id: VvolId(r.u128()?),
                generated: r.bool()?,
                explicit_backend: r.bool()?,
            },
            9 => Self::DeleteVvol(VvolId(r.u128()?)),
            10 => Self::ResizeVvol(VvolId(r.u128()?), r.u64()?),
            11 => {
                let h = HostId(r.u32()?);
                let ctx = if r.u8()? == 0 {
                    BindContext::Normal
                } else {
                    BindContext::RebindStart
                };
                let n = r.count(16)?;
                let mut vvols = Vec::with_capacity(n);
                for _ in 0..n {
                    vvols.push(VvolId(r.u128()?));
                }
                Self::Bind(h, vvols, ctx)
            }
            12 => {
                let h = HostId(r.u32()?);
                let handle = BindHandle {
                    pe: PeId(r.u32()?),
                    secondary_id: SecondaryId(r.u64()?),
                    generation: Generation(r.u32()?),
                };
                let ctx = match r.u8()? {
                    0 => UnbindContext::Normal,
                    1 => UnbindContext::RebindStart,
                    _ => UnbindContext::RebindEnd,
                };
                Self::Unbind(h, handle, ctx)
            }
            13 => Self::UnbindAllFromHost(HostId(r.u32()?)),
            14 => Self::UnbindFromAllHosts(VvolId(r.u128()?)),
            15 => Self::DrainPe(PeId(r.u32()?)),
            16 => Self::FailPe(PeId(r.u32()?)),
            17 => Self::Seed(r.u64()?),
            _ => return Err(bad("unknown operation")),
        };
        r.finish()?;
        Ok(op)
    }

    /// Applies the operation to `plane` (which has no journal attached) as
    /// the original call did; an outcome other than the recorded one is a
    /// replay error.
    pub(crate) fn apply(
        self,
        plane: &ControlPlane,
        provider: Option<&Arc<dyn BackendProvider>>,
    ) -> Result<(), JournalError> {
        let fail = |what: &str, e: crate::binding::ControlError| JournalError::Replay {
            reason: format!("{what}: {e}"),
        };
        match self {
            Self::AddArray(s) => drop(plane.add_array(s).map_err(|e| fail("add_array", e))?),
            Self::AddContainer(a, s) => drop(
                plane
                    .add_container(a, s)
                    .map_err(|e| fail("add_container", e))?,
            ),
            Self::RemoveContainer(c) => plane
                .remove_container(c)
                .map_err(|e| fail("remove_container", e))?,
            Self::AddPe(a, s) => drop(plane.add_pe(a, s).map_err(|e| fail("add_pe", e))?),
            Self::RemovePe(p) => plane.remove_pe(p).map_err(|e| fail("remove_pe", e))?,
            Self::AddHost(n) => drop(plane.add_host(&n).map_err(|e| fail("add_host", e))?),
            Self::RemoveHost(h) => plane.remove_host(h).map_err(|e| fail("remove_host", e))?,
            Self::SetPeContext(h, pes) => plane
                .set_pe_context(h, &pes)
                .map_err(|e| fail("set_pe_context", e))?,
            Self::CreateVvol {
                container,
                vtype,
                capacity_bytes,
                logical_block_size,
                id,
                generated,
                explicit_backend,
            } => {
                let mut spec = VvolSpec::new(vtype, capacity_bytes)
                    .with_logical_block_size(logical_block_size);
                if !generated {
                    spec = spec.with_id(id);
                }
                spec = spec.with_backend(restore_backend(
                    provider,
                    id,
                    explicit_backend,
                    capacity_bytes,
                    logical_block_size,
                )?);
                let got = plane
                    .create_vvol(container, spec)
                    .map_err(|e| fail("create_vvol", e))?;
                if got != id {
                    return Err(JournalError::Replay {
                        reason: format!("create_vvol made {got}, the journal says {id}"),
                    });
                }
            }
            Self::DeleteVvol(v) => plane.delete_vvol(v).map_err(|e| fail("delete_vvol", e))?,
            Self::ResizeVvol(v, c) => plane
                .resize_vvol(v, c)
                .map_err(|e| fail("resize_vvol", e))?,
            Self::Bind(h, vvols, ctx) => {
                drop(plane.bind(h, &vvols, ctx).map_err(|e| fail("bind", e))?);
            }
            Self::Unbind(h, handle, ctx) => plane
                .unbind(h, handle, ctx)
                .map_err(|e| fail("unbind", e))?,
            Self::UnbindAllFromHost(h) => drop(
                plane
                    .unbind_all_from_host(h)
                    .map_err(|e| fail("unbind_all_from_host", e))?,
            ),
            Self::UnbindFromAllHosts(v) => drop(
                plane
                    .unbind_from_all_hosts(v)
                    .map_err(|e| fail("unbind_from_all_hosts", e))?,
            ),
            Self::DrainPe(p) => drop(plane.drain_pe(p).map_err(|e| fail("drain_pe", e))?),
            Self::FailPe(p) => drop(plane.fail_pe(p).map_err(|e| fail("fail_pe", e))?),
            Self::Seed(s) => plane.lock().rng = s,
        }
        Ok(())
    }
}

/// The backend of a restored vVol: the provider's for one created with an
/// explicit backend (an error without a provider), else a fresh
/// [`MemoryBackend`].
pub(crate) fn restore_backend(
    provider: Option<&Arc<dyn BackendProvider>>,
    id: VvolId,
    explicit: bool,
    capacity_bytes: u64,
    logical_block_size: u32,
) -> Result<Arc<dyn BlockBackend>, JournalError> {
    if explicit {
        let p = provider.ok_or(JournalError::BackendRequired(id))?;
        return p
            .backend(id, capacity_bytes, logical_block_size)
            .ok_or(JournalError::BackendRequired(id));
    }
    MemoryBackend::new(capacity_bytes, logical_block_size)
        .map(|b| Arc::new(b) as Arc<dyn BlockBackend>)
        .map_err(|e| JournalError::Replay {
            reason: format!("memory backend: {e}"),
        })
}
