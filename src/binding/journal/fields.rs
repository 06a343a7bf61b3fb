//! Field codecs shared by records and snapshots: specs and enums, each
//! matched exhaustively.

use super::JournalError;
use super::codec::{Reader, Writer};
use crate::model::{
    ArraySpec, ContainerSpec, InitiatorKind, InitiatorName, Naa, NfsVersion, PeSpec, PeState,
    Protocol, ScsiPath, SecondaryIdSpace, SubsidiaryAddressing, Transport, VvolType,
};

pub(crate) fn bad(reason: &'static str) -> JournalError {
    JournalError::Corrupt { offset: 0, reason }
}

pub(crate) fn vtype_code(t: VvolType) -> u8 {
    match t {
        VvolType::Config => 0,
        VvolType::Data => 1,
        VvolType::Swap => 2,
        VvolType::Memory => 3,
        VvolType::Other => 4,
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
        Protocol::Nfs => 1,
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
        PeState::Failed => 2,
        PeState::Drained => 3,
    }
}

pub(crate) fn pe_state_from(c: u8) -> Result<PeState, JournalError> {
    match c {
        0 => Ok(PeState::Active),
        1 => Ok(PeState::Draining),
        2 => Ok(PeState::Failed),
        3 => Ok(PeState::Drained),
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
            w.u8(match version {
                NfsVersion::V3 => 0,
                NfsVersion::V4_1 => 1,
            });
        }
    }
    w.u32(s.queue_depth());
    let space = s.secondary_ids();
    w.u8(match space.addressing() {
        SubsidiaryAddressing::Simple => 0,
        SubsidiaryAddressing::ExtendedFlat24 => 1,
        SubsidiaryAddressing::ExtendedFlat40 => 2,
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
            let version = match r.u8()? {
                0 => NfsVersion::V3,
                1 => NfsVersion::V4_1,
                _ => return Err(bad("unknown NFS version")),
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

/// An initiator name: a kind code (0: an iSCSI name, whose own prefix
/// tells iqn./eui./naa.; WWPNs will take another code) and the name.
pub(crate) fn put_initiator(w: &mut Writer, name: &InitiatorName) {
    w.u8(match name.kind() {
        InitiatorKind::Iqn | InitiatorKind::Eui | InitiatorKind::Naa => 0,
    });
    w.str(name.as_str());
}

pub(crate) fn get_initiator(r: &mut Reader<'_>) -> Result<InitiatorName, JournalError> {
    match r.u8()? {
        0 => InitiatorName::iscsi(&r.string()?).map_err(|_| bad("bad initiator name")),
        _ => Err(bad("unknown initiator kind")),
    }
}
