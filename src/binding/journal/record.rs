//! Journal records: one per acknowledged control-plane mutation, holding
//! what the mutation *decided* (ids minted, the PE, secondary id and
//! generation of every new binding, per-item faults, PE state changes).
//! Replay applies records; it never runs a policy and never mints an id.

use super::JournalError;
use super::codec::{Reader, Writer};
use super::fields::{
    bad, get_array_spec, get_container_spec, get_initiator, get_pe_spec, pe_state_code,
    pe_state_from, put_array_spec, put_container_spec, put_initiator, put_pe_spec, vtype_code,
    vtype_from,
};
use super::reservation::{get_lu, get_lu_state, put_lu, put_lu_state};
use crate::model::{
    ArrayId, ArraySpec, BackendKey, ContainerId, ContainerSpec, DEFAULT_HOST_QUEUE_DEPTH,
    DEFAULT_OVERCOMMIT_PERCENT, Generation, HostId, InitiatorName, LuReservations, PeId, PeSpec,
    PeState, PrLu, SecondaryId, SecondaryIdScope, VvolId, VvolKey, VvolType,
};

/// One item of a bind call, as decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BindItem {
    /// A new binding of `vvol` at `(pe, sid)` with `generation`.
    New {
        vvol: VvolId,
        pe: PeId,
        sid: SecondaryId,
        generation: Generation,
    },
    /// One more bind of the existing binding at `(pe, sid)`.
    Attach { pe: PeId, sid: SecondaryId },
    /// The item failed with the fault of this code (nothing changed).
    Fault { vvol: VvolId, code: u8 },
}

/// One release of a binding by a host: one bind of it, or all (`whole`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Release {
    pub(crate) host: HostId,
    pub(crate) pe: PeId,
    pub(crate) sid: SecondaryId,
    pub(crate) whole: bool,
}

/// A mutation's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    AddArray {
        id: ArrayId,
        spec: ArraySpec,
    },
    AddContainer {
        id: ContainerId,
        array: ArrayId,
        spec: ContainerSpec,
    },
    RemoveContainer(ContainerId),
    AddPe {
        id: PeId,
        array: ArrayId,
        spec: PeSpec,
    },
    RemovePe(PeId),
    AddHost {
        id: HostId,
        name: String,
    },
    RemoveHost(HostId),
    SetPeContext {
        host: HostId,
        pes: Vec<PeId>,
    },
    CreateVvol {
        id: VvolId,
        key: VvolKey,
        container: ContainerId,
        vtype: VvolType,
        capacity_bytes: u64,
        logical_block_size: u32,
        backend_key: Option<BackendKey>,
        /// The seeded generator's state after minting `id` (deterministic
        /// planes only), so a reopened plane never rewinds it.
        id_seed: Option<u64>,
    },
    DeleteVvol(VvolId),
    ResizeVvol {
        id: VvolId,
        capacity_bytes: u64,
    },
    Bind {
        host: HostId,
        items: Vec<BindItem>,
    },
    Unbind(Vec<Release>),
    SetPeState {
        pe: PeId,
        state: PeState,
    },
    /// Switches the plane to deterministic ids from `seed` (or back to
    /// random ids with `None`).
    IdSeed(Option<u64>),
    /// The persistent reservation state of a logical unit after a
    /// PERSISTENT RESERVE OUT (an empty state drops it).
    SetReservations {
        lu: PrLu,
        state: LuReservations,
    },
    /// A power on of an array's logical units: APTPL=0 state is lost.
    PowerOnReservations(ArrayId),
    /// Gives `host` the initiator `name` (`add`), or takes it away.
    Initiator {
        host: HostId,
        name: InitiatorName,
        add: bool,
    },
    /// Maps `pe` to `host` (`mapped`: LUN masking lets the host's
    /// initiators see it), or unmaps it.
    MapPe {
        host: HostId,
        pe: PeId,
        mapped: bool,
    },
}

/// The record tags, matched exhaustively both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Tag {
    AddArray = 1,
    AddContainer = 2,
    RemoveContainer = 3,
    AddPe = 4,
    RemovePe = 5,
    AddHost = 6,
    RemoveHost = 7,
    SetPeContext = 8,
    CreateVvol = 9,
    DeleteVvol = 10,
    ResizeVvol = 11,
    Bind = 12,
    Unbind = 13,
    SetPeState = 14,
    IdSeed = 15,
    /// [`Record::AddContainer`] of a container whose over-commit is not the
    /// default (tag 2 records restore with the default).
    AddContainerOvercommit = 16,
    /// [`Record::AddArray`] of an array whose secondary ids are not per PE
    /// (one more byte: the scope; tag 1 records restore as per PE).
    AddArrayScoped = 23,
    /// An LU's new persistent reservation state.
    SetReservations = 20,
    /// A power on of an array's reservations (APTPL=0 state dropped).
    PowerOnReservations = 21,
    /// [`Record::Initiator`].
    Initiator = 17,
    /// [`Record::MapPe`].
    MapPe = 18,
    /// [`Record::AddPe`] of a PE whose per-host queue depth is not the
    /// default (tag 4 records restore with the default).
    AddPeHostQueue = 19,
}

/// The journal code of a secondary-id scope (tag 23 records).
const SCOPE_PER_PE_AND_HOST: u8 = 1;

impl Tag {
    const ALL: [Self; 22] = [
        Self::AddArray,
        Self::AddContainer,
        Self::RemoveContainer,
        Self::AddPe,
        Self::RemovePe,
        Self::AddHost,
        Self::RemoveHost,
        Self::SetPeContext,
        Self::CreateVvol,
        Self::DeleteVvol,
        Self::ResizeVvol,
        Self::Bind,
        Self::Unbind,
        Self::SetPeState,
        Self::IdSeed,
        Self::AddContainerOvercommit,
        Self::AddArrayScoped,
        Self::SetReservations,
        Self::PowerOnReservations,
        Self::Initiator,
        Self::MapPe,
        Self::AddPeHostQueue,
    ];

    fn from_u8(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| *t as u8 == b)
    }
}

const ITEM_NEW: u8 = 0;
const ITEM_ATTACH: u8 = 1;
const ITEM_FAULT: u8 = 2;

fn put_opt_u64(w: &mut Writer, v: Option<u64>) {
    match v {
        None => w.u8(0),
        Some(v) => {
            w.u8(1);
            w.u64(v);
        }
    }
}

fn get_opt_u64(r: &mut Reader<'_>) -> Result<Option<u64>, JournalError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.u64()?)),
        _ => Err(bad("bad option tag")),
    }
}

pub(crate) fn put_backend_key(w: &mut Writer, key: Option<&BackendKey>) {
    match key {
        None => w.u8(0),
        Some(k) => {
            w.u8(1);
            w.str(k.as_str());
        }
    }
}

pub(crate) fn get_backend_key(r: &mut Reader<'_>) -> Result<Option<BackendKey>, JournalError> {
    match r.u8()? {
        0 => Ok(None),
        1 => BackendKey::new(r.string()?)
            .map(Some)
            .map_err(|_| bad("bad backend key")),
        _ => Err(bad("bad option tag")),
    }
}

impl Record {
    fn tag(&self) -> Tag {
        match self {
            Self::AddArray { spec, .. } => {
                if spec.secondary_id_scope() == SecondaryIdScope::PerPe {
                    Tag::AddArray
                } else {
                    Tag::AddArrayScoped
                }
            }
            Self::AddContainer { spec, .. } => {
                if spec.overcommit_percent() == DEFAULT_OVERCOMMIT_PERCENT {
                    Tag::AddContainer
                } else {
                    Tag::AddContainerOvercommit
                }
            }
            Self::RemoveContainer(_) => Tag::RemoveContainer,
            Self::AddPe { spec, .. } => {
                if spec.host_queue_depth() == DEFAULT_HOST_QUEUE_DEPTH {
                    Tag::AddPe
                } else {
                    Tag::AddPeHostQueue
                }
            }
            Self::RemovePe(_) => Tag::RemovePe,
            Self::AddHost { .. } => Tag::AddHost,
            Self::RemoveHost(_) => Tag::RemoveHost,
            Self::SetPeContext { .. } => Tag::SetPeContext,
            Self::CreateVvol { .. } => Tag::CreateVvol,
            Self::DeleteVvol(_) => Tag::DeleteVvol,
            Self::ResizeVvol { .. } => Tag::ResizeVvol,
            Self::Bind { .. } => Tag::Bind,
            Self::Unbind(_) => Tag::Unbind,
            Self::SetPeState { .. } => Tag::SetPeState,
            Self::IdSeed(_) => Tag::IdSeed,
            Self::SetReservations { .. } => Tag::SetReservations,
            Self::PowerOnReservations(_) => Tag::PowerOnReservations,
            Self::Initiator { .. } => Tag::Initiator,
            Self::MapPe { .. } => Tag::MapPe,
        }
    }

    /// The record's payload.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(self.tag() as u8);
        match self {
            Self::AddArray { id, spec } => {
                w.u32(id.0);
                put_array_spec(&mut w, spec);
                match spec.secondary_id_scope() {
                    SecondaryIdScope::PerPeAndHost => w.u8(SCOPE_PER_PE_AND_HOST),
                    // Tag 1 carries no scope byte.
                    SecondaryIdScope::PerPe => {}
                }
            }
            Self::AddContainer { id, array, spec } => {
                w.u32(id.0);
                w.u32(array.0);
                put_container_spec(&mut w, spec);
                if spec.overcommit_percent() != DEFAULT_OVERCOMMIT_PERCENT {
                    w.u32(spec.overcommit_percent());
                }
            }
            Self::RemoveContainer(id) => w.u32(id.0),
            Self::AddPe { id, array, spec } => {
                w.u32(id.0);
                w.u32(array.0);
                put_pe_spec(&mut w, spec);
                if spec.host_queue_depth() != DEFAULT_HOST_QUEUE_DEPTH {
                    w.u32(spec.host_queue_depth());
                }
            }
            Self::RemovePe(id) => w.u32(id.0),
            Self::AddHost { id, name } => {
                w.u32(id.0);
                w.str(name);
            }
            Self::RemoveHost(id) => w.u32(id.0),
            Self::SetPeContext { host, pes } => {
                w.u32(host.0);
                w.usize(pes.len());
                for p in pes {
                    w.u32(p.0);
                }
            }
            Self::CreateVvol {
                id,
                key,
                container,
                vtype,
                capacity_bytes,
                logical_block_size,
                backend_key,
                id_seed,
            } => {
                w.u128(id.0);
                w.u32(key.0);
                w.u32(container.0);
                w.u8(vtype_code(*vtype));
                w.u64(*capacity_bytes);
                w.u32(*logical_block_size);
                put_backend_key(&mut w, backend_key.as_ref());
                put_opt_u64(&mut w, *id_seed);
            }
            Self::DeleteVvol(id) => w.u128(id.0),
            Self::ResizeVvol { id, capacity_bytes } => {
                w.u128(id.0);
                w.u64(*capacity_bytes);
            }
            Self::Bind { host, items } => {
                w.u32(host.0);
                w.usize(items.len());
                for item in items {
                    match item {
                        BindItem::New {
                            vvol,
                            pe,
                            sid,
                            generation,
                        } => {
                            w.u8(ITEM_NEW);
                            w.u128(vvol.0);
                            w.u32(pe.0);
                            w.u64(sid.0);
                            w.u32(generation.0);
                        }
                        BindItem::Attach { pe, sid } => {
                            w.u8(ITEM_ATTACH);
                            w.u32(pe.0);
                            w.u64(sid.0);
                        }
                        BindItem::Fault { vvol, code } => {
                            w.u8(ITEM_FAULT);
                            w.u128(vvol.0);
                            w.u8(*code);
                        }
                    }
                }
            }
            Self::Unbind(items) => {
                w.usize(items.len());
                for r in items {
                    w.u32(r.host.0);
                    w.u32(r.pe.0);
                    w.u64(r.sid.0);
                    w.bool(r.whole);
                }
            }
            Self::SetPeState { pe, state } => {
                w.u32(pe.0);
                w.u8(pe_state_code(*state));
            }
            Self::IdSeed(seed) => put_opt_u64(&mut w, *seed),
            Self::SetReservations { lu, state } => {
                put_lu(&mut w, *lu);
                put_lu_state(&mut w, state);
            }
            Self::PowerOnReservations(array) => w.u32(array.0),
            Self::Initiator { host, name, add } => {
                w.u32(host.0);
                put_initiator(&mut w, name);
                w.bool(*add);
            }
            Self::MapPe { host, pe, mapped } => {
                w.u32(host.0);
                w.u32(pe.0);
                w.bool(*mapped);
            }
        }
        w.buf
    }

    /// Decodes a whole payload. Counts are checked against the bytes left,
    /// so no input allocates more than its own size allows.
    ///
    /// # Errors
    /// [`JournalError::Corrupt`] (offset 0: the caller knows the record's).
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, JournalError> {
        let mut r = Reader::new(payload);
        let tag = Tag::from_u8(r.u8()?).ok_or_else(|| bad("unknown record tag"))?;
        let rec = match tag {
            Tag::AddArray => Self::AddArray {
                id: ArrayId(r.u32()?),
                spec: get_array_spec(&mut r)?,
            },
            Tag::AddArrayScoped => {
                let id = ArrayId(r.u32()?);
                let spec = get_array_spec(&mut r)?;
                let scope = match r.u8()? {
                    SCOPE_PER_PE_AND_HOST => SecondaryIdScope::PerPeAndHost,
                    _ => return Err(bad("bad secondary-id scope")),
                };
                Self::AddArray {
                    id,
                    spec: spec.with_secondary_id_scope(scope),
                }
            }
            Tag::AddContainer => Self::AddContainer {
                id: ContainerId(r.u32()?),
                array: ArrayId(r.u32()?),
                spec: get_container_spec(&mut r)?,
            },
            Tag::AddContainerOvercommit => Self::AddContainer {
                id: ContainerId(r.u32()?),
                array: ArrayId(r.u32()?),
                spec: get_container_spec(&mut r)?.with_overcommit_percent(r.u32()?),
            },
            Tag::RemoveContainer => Self::RemoveContainer(ContainerId(r.u32()?)),
            Tag::AddPe => Self::AddPe {
                id: PeId(r.u32()?),
                array: ArrayId(r.u32()?),
                spec: get_pe_spec(&mut r)?,
            },
            Tag::AddPeHostQueue => Self::AddPe {
                id: PeId(r.u32()?),
                array: ArrayId(r.u32()?),
                spec: get_pe_spec(&mut r)?.with_host_queue_depth(r.u32()?),
            },
            Tag::RemovePe => Self::RemovePe(PeId(r.u32()?)),
            Tag::AddHost => Self::AddHost {
                id: HostId(r.u32()?),
                name: r.string()?,
            },
            Tag::RemoveHost => Self::RemoveHost(HostId(r.u32()?)),
            Tag::SetPeContext => {
                let host = HostId(r.u32()?);
                let n = r.count(4)?;
                let mut pes = Vec::with_capacity(n);
                for _ in 0..n {
                    pes.push(PeId(r.u32()?));
                }
                Self::SetPeContext { host, pes }
            }
            Tag::CreateVvol => Self::CreateVvol {
                id: VvolId(r.u128()?),
                key: VvolKey(r.u32()?),
                container: ContainerId(r.u32()?),
                vtype: vtype_from(r.u8()?)?,
                capacity_bytes: r.u64()?,
                logical_block_size: r.u32()?,
                backend_key: get_backend_key(&mut r)?,
                id_seed: get_opt_u64(&mut r)?,
            },
            Tag::DeleteVvol => Self::DeleteVvol(VvolId(r.u128()?)),
            Tag::ResizeVvol => Self::ResizeVvol {
                id: VvolId(r.u128()?),
                capacity_bytes: r.u64()?,
            },
            Tag::Bind => {
                let host = HostId(r.u32()?);
                let n = r.count(13)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(match r.u8()? {
                        ITEM_NEW => BindItem::New {
                            vvol: VvolId(r.u128()?),
                            pe: PeId(r.u32()?),
                            sid: SecondaryId(r.u64()?),
                            generation: Generation(r.u32()?),
                        },
                        ITEM_ATTACH => BindItem::Attach {
                            pe: PeId(r.u32()?),
                            sid: SecondaryId(r.u64()?),
                        },
                        ITEM_FAULT => BindItem::Fault {
                            vvol: VvolId(r.u128()?),
                            code: r.u8()?,
                        },
                        _ => return Err(bad("unknown bind item")),
                    });
                }
                Self::Bind { host, items }
            }
            Tag::Unbind => {
                let n = r.count(17)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(Release {
                        host: HostId(r.u32()?),
                        pe: PeId(r.u32()?),
                        sid: SecondaryId(r.u64()?),
                        whole: r.bool()?,
                    });
                }
                Self::Unbind(items)
            }
            Tag::SetPeState => Self::SetPeState {
                pe: PeId(r.u32()?),
                state: pe_state_from(r.u8()?)?,
            },
            Tag::IdSeed => Self::IdSeed(get_opt_u64(&mut r)?),
            Tag::SetReservations => Self::SetReservations {
                lu: get_lu(&mut r)?,
                state: get_lu_state(&mut r)?,
            },
            Tag::PowerOnReservations => Self::PowerOnReservations(ArrayId(r.u32()?)),
            Tag::Initiator => Self::Initiator {
                host: HostId(r.u32()?),
                name: get_initiator(&mut r)?,
                add: r.bool()?,
            },
            Tag::MapPe => Self::MapPe {
                host: HostId(r.u32()?),
                pe: PeId(r.u32()?),
                mapped: r.bool()?,
            },
        };
        r.finish()?;
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Naa, Protocol};

    #[test]
    fn every_tag_round_trips() {
        let naa = Naa::from_parts(0x00_1a_2b, 1, 0).unwrap();
        let records = vec![
            Record::AddArray {
                id: ArrayId(1),
                spec: ArraySpec::new("a", 0x00_1a_2b),
            },
            Record::AddContainer {
                id: ContainerId(2),
                array: ArrayId(1),
                spec: ContainerSpec::new("gold", Protocol::Scsi, 1 << 30),
            },
            Record::RemoveContainer(ContainerId(2)),
            Record::AddPe {
                id: PeId(3),
                array: ArrayId(1),
                spec: PeSpec::scsi(naa, 255),
            },
            Record::RemovePe(PeId(3)),
            Record::AddHost {
                id: HostId(4),
                name: "esx-01".into(),
            },
            Record::RemoveHost(HostId(4)),
            Record::SetPeContext {
                host: HostId(4),
                pes: vec![PeId(3), PeId(5)],
            },
            Record::CreateVvol {
                id: VvolId(7),
                key: VvolKey(8),
                container: ContainerId(2),
                vtype: VvolType::Swap,
                capacity_bytes: 1 << 20,
                logical_block_size: 4096,
                backend_key: Some(BackendKey::new("k").unwrap()),
                id_seed: Some(9),
            },
            Record::DeleteVvol(VvolId(7)),
            Record::ResizeVvol {
                id: VvolId(7),
                capacity_bytes: 2 << 20,
            },
            Record::Bind {
                host: HostId(4),
                items: vec![
                    BindItem::New {
                        vvol: VvolId(7),
                        pe: PeId(3),
                        sid: SecondaryId(1),
                        generation: Generation(2),
                    },
                    BindItem::Attach {
                        pe: PeId(3),
                        sid: SecondaryId(1),
                    },
                    BindItem::Fault {
                        vvol: VvolId(9),
                        code: 1,
                    },
                ],
            },
            Record::Unbind(vec![Release {
                host: HostId(4),
                pe: PeId(3),
                sid: SecondaryId(1),
                whole: true,
            }]),
            Record::SetPeState {
                pe: PeId(3),
                state: PeState::Drained,
            },
            Record::IdSeed(None),
            Record::AddContainer {
                id: ContainerId(3),
                array: ArrayId(1),
                spec: ContainerSpec::new("thin", Protocol::Nfs, 1 << 30)
                    .with_overcommit_percent(400),
            },
            Record::SetReservations {
                lu: PrLu::Slu(VvolId(7)),
                state: {
                    let a = crate::model::PrNexus {
                        host: HostId(4),
                        initiator: 2,
                        relative_target_port: 3,
                    };
                    let mut s = LuReservations {
                        generation: 5,
                        aptpl: true,
                        ..LuReservations::default()
                    };
                    s.registrations
                        .push(crate::model::PrRegistration { nexus: a, key: 9 });
                    s.reservation = Some(crate::model::PrReservation {
                        holder: a,
                        kind: crate::model::PrType::ExclusiveAccessRegistrantsOnly,
                    });
                    s
                },
            },
            Record::PowerOnReservations(ArrayId(1)),
            Record::Initiator {
                host: HostId(4),
                name: "iqn.1998-01.com.vmware:esx-01".parse().unwrap(),
                add: true,
            },
            Record::MapPe {
                host: HostId(4),
                pe: PeId(3),
                mapped: false,
            },
            Record::AddPe {
                id: PeId(6),
                array: ArrayId(1),
                spec: PeSpec::scsi(naa, 254).with_host_queue_depth(64),
            },
            Record::AddArray {
                id: ArrayId(2),
                spec: ArraySpec::new("pure", 0x24_a9_37)
                    .with_secondary_id_scope(SecondaryIdScope::PerPeAndHost),
            },
        ];
        assert_eq!(records.len(), Tag::ALL.len());
        let per_host = records.last().unwrap().encode();
        assert_eq!(per_host[0], 23);
        let mut bad_scope = per_host.clone();
        *bad_scope.last_mut().unwrap() = 9;
        assert!(Record::decode(&bad_scope).is_err());
        for rec in records {
            let bytes = rec.encode();
            assert_eq!(Record::decode(&bytes).unwrap(), rec);
            for cut in 0..bytes.len() {
                assert!(Record::decode(&bytes[..cut]).is_err());
            }
        }
    }
}
