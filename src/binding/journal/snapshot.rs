//! Snapshots: the whole control-plane state as plain data, and its codec.
//! Decoding checks every count against the bytes left and every enum
//! exhaustively; the cross-references are checked where the snapshot is
//! turned back into a plane (`binding/durable.rs`).

use super::JournalError;
use super::codec::{Reader, Writer};
use super::fields::{
    get_array_spec, get_container_spec, get_initiator, get_pe_spec, pe_state_code, pe_state_from,
    put_array_spec, put_container_spec, put_initiator, put_pe_spec, vtype_code, vtype_from,
};
use super::record::{get_backend_key, put_backend_key};
use super::reservation::{LU_STATE_MIN_BYTES, get_lu, get_lu_state, put_lu, put_lu_state};
use crate::model::{
    ArrayId, ArraySpec, BackendKey, ContainerId, ContainerSpec, DEFAULT_HOST_QUEUE_DEPTH,
    DEFAULT_OVERCOMMIT_PERCENT, Generation, HostId, InitiatorName, LuReservations, PeId, PeSpec,
    PeState, PrLu, SecondaryId, SecondaryIdScope, VvolId, VvolKey, VvolType,
};

/// Tag of the optional snapshot section with the containers' over-commit.
const SECTION_OVERCOMMIT: u8 = 1;
/// Tag of the optional snapshot section with per-(PE, host) secondary-id
/// spaces: the arrays in [`SecondaryIdScope::PerPeAndHost`] scope, and per
/// PE of theirs the generation floor and each host's id pool.
const SECTION_HOST_SPACES: u8 = 2;
/// Tag of the optional snapshot section with persistent reservations.
const SECTION_RESERVATIONS: u8 = 3;
/// Tag of the optional section with the hosts' initiator names (the
/// section tags of host access take the numbers of their record tags).
const SECTION_INITIATORS: u8 = 17;
/// Tag of the optional section with the hosts' access rules (PE maps).
const SECTION_ACCESS: u8 = 18;
/// Tag of the optional section with PEs' per-host queue depths that are
/// not the default.
const SECTION_HOST_QUEUE: u8 = 19;

/// Magic bytes opening a snapshot.
const SNAPSHOT_MAGIC: &[u8; 8] = b"VVOLSNP\0";

/// An id pool's parts: the next fresh id, the last id, whether fresh ids
/// are left, and the freed ids (oldest first) with the generation each
/// slot last had.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PoolData {
    pub(crate) next_fresh: u64,
    pub(crate) last: u64,
    pub(crate) fresh_left: bool,
    pub(crate) freed: Vec<(u64, u32)>,
    /// The tag of fresh ids (0 but in a re-made host space; encoded only
    /// in the host-spaces section).
    pub(crate) fresh_tag: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeData {
    pub(crate) id: PeId,
    pub(crate) array: ArrayId,
    pub(crate) spec: PeSpec,
    pub(crate) state: PeState,
    pub(crate) ids: PoolData,
    /// Per-(PE, host) scope: the generation floor of new host spaces.
    pub(crate) host_floor: u32,
    /// Per-(PE, host) scope: each host's pool, in host order.
    pub(crate) host_pools: Vec<(HostId, PoolData)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostData {
    pub(crate) id: HostId,
    pub(crate) name: String,
    pub(crate) initiators: Vec<InitiatorName>,
    pub(crate) mapped: Vec<PeId>,
    pub(crate) pe_context: Vec<PeId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BindingData {
    pub(crate) pe: PeId,
    pub(crate) sid: SecondaryId,
    pub(crate) generation: Generation,
    pub(crate) hosts: Vec<(HostId, u32)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VvolData {
    pub(crate) id: VvolId,
    pub(crate) key: VvolKey,
    pub(crate) container: ContainerId,
    pub(crate) vtype: VvolType,
    pub(crate) block_size: u32,
    pub(crate) capacity_bytes: u64,
    pub(crate) backend_key: Option<BackendKey>,
    /// In the vVol's own order (bind picks the first match).
    pub(crate) bindings: Vec<BindingData>,
}

/// The state of a plane after the record at `index`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) index: u64,
    pub(crate) id_seed: Option<u64>,
    pub(crate) next_array: u32,
    pub(crate) next_container: u32,
    pub(crate) next_pe: u32,
    pub(crate) next_host: u32,
    pub(crate) last_event: u64,
    pub(crate) vvol_keys: PoolData,
    pub(crate) arrays: Vec<(ArrayId, ArraySpec)>,
    pub(crate) containers: Vec<(ContainerId, ArrayId, ContainerSpec)>,
    pub(crate) pes: Vec<PeData>,
    pub(crate) hosts: Vec<HostData>,
    pub(crate) vvols: Vec<VvolData>,
    /// Persistent reservation state per logical unit (optional section).
    pub(crate) reservations: Vec<(PrLu, LuReservations)>,
}

fn put_pool(w: &mut Writer, p: &PoolData) {
    w.u64(p.next_fresh);
    w.u64(p.last);
    w.bool(p.fresh_left);
    w.usize(p.freed.len());
    for (id, generation) in &p.freed {
        w.u64(*id);
        w.u32(*generation);
    }
}

fn get_pool(r: &mut Reader<'_>) -> Result<PoolData, JournalError> {
    let next_fresh = r.u64()?;
    let last = r.u64()?;
    let fresh_left = r.bool()?;
    let n = r.count(12)?;
    let mut freed = Vec::with_capacity(n);
    for _ in 0..n {
        freed.push((r.u64()?, r.u32()?));
    }
    Ok(PoolData {
        next_fresh,
        last,
        fresh_left,
        freed,
        fresh_tag: 0,
    })
}

fn put_opt_u64(w: &mut Writer, v: Option<u64>) {
    match v {
        None => w.u8(0),
        Some(v) => {
            w.u8(1);
            w.u64(v);
        }
    }
}

impl Snapshot {
    /// The host `id` of a snapshot being decoded.
    /// Hosts are written in id order, so this is a binary search (a
    /// section entry per (host, PE) must not cost a scan of every host).
    fn host_mut(&mut self, id: HostId) -> Result<&mut HostData, JournalError> {
        match self.hosts.binary_search_by_key(&id, |h| h.id) {
            Ok(i) => Ok(&mut self.hosts[i]),
            Err(_) => Err(super::fields::bad("host section names an unknown host")),
        }
    }

    /// The PE `id` of a snapshot being decoded (PEs are written in id order).
    fn pe_mut(&mut self, id: PeId, what: &'static str) -> Result<&mut PeData, JournalError> {
        match self.pes.binary_search_by_key(&id, |p| p.id) {
            Ok(i) => Ok(&mut self.pes[i]),
            Err(_) => Err(super::fields::bad(what)),
        }
    }

    /// The snapshot's bytes (split into chunks by the caller).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.buf.extend_from_slice(SNAPSHOT_MAGIC);
        w.u8(super::JOURNAL_VERSION);
        w.u64(self.index);
        put_opt_u64(&mut w, self.id_seed);
        w.u32(self.next_array);
        w.u32(self.next_container);
        w.u32(self.next_pe);
        w.u32(self.next_host);
        w.u64(self.last_event);
        put_pool(&mut w, &self.vvol_keys);
        w.usize(self.arrays.len());
        for (id, spec) in &self.arrays {
            w.u32(id.0);
            put_array_spec(&mut w, spec);
        }
        w.usize(self.containers.len());
        for (id, array, spec) in &self.containers {
            w.u32(id.0);
            w.u32(array.0);
            put_container_spec(&mut w, spec);
        }
        w.usize(self.pes.len());
        for p in &self.pes {
            w.u32(p.id.0);
            w.u32(p.array.0);
            put_pe_spec(&mut w, &p.spec);
            w.u8(pe_state_code(p.state));
            put_pool(&mut w, &p.ids);
        }
        w.usize(self.hosts.len());
        for h in &self.hosts {
            w.u32(h.id.0);
            w.str(&h.name);
            w.usize(h.pe_context.len());
            for pe in &h.pe_context {
                w.u32(pe.0);
            }
        }
        w.usize(self.vvols.len());
        for v in &self.vvols {
            w.u128(v.id.0);
            w.u32(v.key.0);
            w.u32(v.container.0);
            w.u8(vtype_code(v.vtype));
            w.u32(v.block_size);
            w.u64(v.capacity_bytes);
            put_backend_key(&mut w, v.backend_key.as_ref());
            w.usize(v.bindings.len());
            for b in &v.bindings {
                w.u32(b.pe.0);
                w.u64(b.sid.0);
                w.u32(b.generation.0);
                w.usize(b.hosts.len());
                for (h, count) in &b.hosts {
                    w.u32(h.0);
                    w.u32(*count);
                }
            }
        }
        // Optional trailing section (absent in older snapshots): the
        // over-commit of every container whose ratio is not the default.
        let thin: Vec<(ContainerId, u32)> = self
            .containers
            .iter()
            .filter(|(_, _, spec)| spec.overcommit_percent() != DEFAULT_OVERCOMMIT_PERCENT)
            .map(|(id, _, spec)| (*id, spec.overcommit_percent()))
            .collect();
        if !thin.is_empty() {
            w.u8(SECTION_OVERCOMMIT);
            w.usize(thin.len());
            for (id, percent) in thin {
                w.u32(id.0);
                w.u32(percent);
            }
        }
        // Optional section (absent when every array is per PE, as in
        // older snapshots).
        let per_host: Vec<ArrayId> = self
            .arrays
            .iter()
            .filter(|(_, spec)| spec.secondary_id_scope() == SecondaryIdScope::PerPeAndHost)
            .map(|(id, _)| *id)
            .collect();
        if !per_host.is_empty() {
            w.u8(SECTION_HOST_SPACES);
            w.usize(per_host.len());
            for id in &per_host {
                w.u32(id.0);
            }
            let pes: Vec<&PeData> = self
                .pes
                .iter()
                .filter(|p| per_host.contains(&p.array))
                .collect();
            w.usize(pes.len());
            for p in pes {
                w.u32(p.id.0);
                w.u32(p.host_floor);
                w.usize(p.host_pools.len());
                for (h, pool) in &p.host_pools {
                    w.u32(h.0);
                    w.u32(pool.fresh_tag);
                    put_pool(&mut w, pool);
                }
            }
        }
        // Optional section (absent when no LU has reservation state).
        if !self.reservations.is_empty() {
            w.u8(SECTION_RESERVATIONS);
            w.usize(self.reservations.len());
            for (lu, state) in &self.reservations {
                put_lu(&mut w, *lu);
                put_lu_state(&mut w, state);
            }
        }
        // Host access (optional sections, absent when empty).
        let names: Vec<(HostId, &InitiatorName)> = self
            .hosts
            .iter()
            .flat_map(|h| h.initiators.iter().map(move |n| (h.id, n)))
            .collect();
        if !names.is_empty() {
            w.u8(SECTION_INITIATORS);
            w.usize(names.len());
            for (host, name) in names {
                w.u32(host.0);
                put_initiator(&mut w, name);
            }
        }
        let maps: Vec<(HostId, PeId)> = self
            .hosts
            .iter()
            .flat_map(|h| h.mapped.iter().map(move |pe| (h.id, *pe)))
            .collect();
        if !maps.is_empty() {
            w.u8(SECTION_ACCESS);
            w.usize(maps.len());
            for (host, pe) in maps {
                w.u32(host.0);
                w.u32(pe.0);
            }
        }
        let depths: Vec<(PeId, u32)> = self
            .pes
            .iter()
            .filter(|p| p.spec.host_queue_depth() != DEFAULT_HOST_QUEUE_DEPTH)
            .map(|p| (p.id, p.spec.host_queue_depth()))
            .collect();
        if !depths.is_empty() {
            w.u8(SECTION_HOST_QUEUE);
            w.usize(depths.len());
            for (pe, depth) in depths {
                w.u32(pe.0);
                w.u32(depth);
            }
        }
        w.buf
    }

    /// Decodes a snapshot's bytes.
    ///
    /// # Errors
    /// [`JournalError::Corrupt`], [`JournalError::UnsupportedVersion`].
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, JournalError> {
        let mut r = Reader::new(bytes);
        if r.u8s(SNAPSHOT_MAGIC.len())? != SNAPSHOT_MAGIC {
            return Err(super::fields::bad("not a vvol snapshot"));
        }
        let version = r.u8()?;
        if version != super::JOURNAL_VERSION {
            return Err(JournalError::UnsupportedVersion(version));
        }
        let index = r.u64()?;
        let id_seed = match r.u8()? {
            0 => None,
            1 => Some(r.u64()?),
            _ => return Err(super::fields::bad("bad option tag")),
        };
        let mut s = Self {
            index,
            id_seed,
            next_array: r.u32()?,
            next_container: r.u32()?,
            next_pe: r.u32()?,
            next_host: r.u32()?,
            last_event: r.u64()?,
            vvol_keys: get_pool(&mut r)?,
            ..Self::default()
        };
        for _ in 0..r.count(12)? {
            let id = ArrayId(r.u32()?);
            s.arrays.push((id, get_array_spec(&mut r)?));
        }
        for _ in 0..r.count(33)? {
            let id = ContainerId(r.u32()?);
            let array = ArrayId(r.u32()?);
            s.containers.push((id, array, get_container_spec(&mut r)?));
        }
        for _ in 0..r.count(40)? {
            let id = PeId(r.u32()?);
            let array = ArrayId(r.u32()?);
            let spec = get_pe_spec(&mut r)?;
            let state = pe_state_from(r.u8()?)?;
            let ids = get_pool(&mut r)?;
            s.pes.push(PeData {
                id,
                array,
                spec,
                state,
                ids,
                host_floor: 0,
                host_pools: Vec::new(),
            });
        }
        for _ in 0..r.count(20)? {
            let id = HostId(r.u32()?);
            let name = r.string()?;
            let n = r.count(4)?;
            let mut pe_context = Vec::with_capacity(n);
            for _ in 0..n {
                pe_context.push(PeId(r.u32()?));
            }
            s.hosts.push(HostData {
                id,
                name,
                initiators: Vec::new(),
                mapped: Vec::new(),
                pe_context,
            });
        }
        for _ in 0..r.count(46)? {
            let id = VvolId(r.u128()?);
            let key = VvolKey(r.u32()?);
            let container = ContainerId(r.u32()?);
            let vtype = vtype_from(r.u8()?)?;
            let block_size = r.u32()?;
            let capacity_bytes = r.u64()?;
            let backend_key = get_backend_key(&mut r)?;
            let n = r.count(24)?;
            let mut bindings = Vec::with_capacity(n);
            for _ in 0..n {
                let pe = PeId(r.u32()?);
                let sid = SecondaryId(r.u64()?);
                let generation = Generation(r.u32()?);
                let h = r.count(8)?;
                let mut hosts = Vec::with_capacity(h);
                for _ in 0..h {
                    hosts.push((HostId(r.u32()?), r.u32()?));
                }
                bindings.push(BindingData {
                    pe,
                    sid,
                    generation,
                    hosts,
                });
            }
            s.vvols.push(VvolData {
                id,
                key,
                container,
                vtype,
                block_size,
                capacity_bytes,
                backend_key,
                bindings,
            });
        }
        // Optional sections, each at most once, in the order written.
        let mut last_section = 0u8;
        while !r.at_end() {
            let section = r.u8()?;
            if section <= last_section {
                return Err(super::fields::bad(
                    "snapshot section repeated or out of order",
                ));
            }
            last_section = section;
            match section {
                SECTION_OVERCOMMIT => s.decode_overcommit(&mut r)?,
                SECTION_HOST_SPACES => s.decode_host_spaces(&mut r)?,
                SECTION_RESERVATIONS => {
                    for _ in 0..r.count(LU_STATE_MIN_BYTES)? {
                        let lu = get_lu(&mut r)?;
                        let state = get_lu_state(&mut r)?;
                        s.reservations.push((lu, state));
                    }
                }
                SECTION_INITIATORS => {
                    for _ in 0..r.count(9)? {
                        let host = HostId(r.u32()?);
                        let name = get_initiator(&mut r)?;
                        s.host_mut(host)?.initiators.push(name);
                    }
                }
                SECTION_ACCESS => {
                    for _ in 0..r.count(8)? {
                        let host = HostId(r.u32()?);
                        let pe = PeId(r.u32()?);
                        s.host_mut(host)?.mapped.push(pe);
                    }
                }
                SECTION_HOST_QUEUE => {
                    for _ in 0..r.count(8)? {
                        let id = PeId(r.u32()?);
                        let depth = r.u32()?;
                        let p = s.pe_mut(id, "host queue depth of an unknown PE")?;
                        p.spec = p.spec.clone().with_host_queue_depth(depth);
                    }
                }
                _ => return Err(super::fields::bad("unknown snapshot section")),
            }
        }
        r.finish()?;
        Ok(s)
    }

    fn decode_overcommit(&mut self, r: &mut Reader<'_>) -> Result<(), JournalError> {
        for _ in 0..r.count(8)? {
            let id = ContainerId(r.u32()?);
            let percent = r.u32()?;
            let (_, _, spec) = self
                .containers
                .iter_mut()
                .find(|(c, _, _)| *c == id)
                .ok_or_else(|| super::fields::bad("over-commit of an unknown container"))?;
            *spec = spec.clone().with_overcommit_percent(percent);
        }
        Ok(())
    }

    fn decode_host_spaces(&mut self, r: &mut Reader<'_>) -> Result<(), JournalError> {
        for _ in 0..r.count(4)? {
            let id = ArrayId(r.u32()?);
            let (_, spec) = self
                .arrays
                .iter_mut()
                .find(|(a, _)| *a == id)
                .ok_or_else(|| super::fields::bad("host spaces of an unknown array"))?;
            *spec = spec
                .clone()
                .with_secondary_id_scope(SecondaryIdScope::PerPeAndHost);
        }
        for _ in 0..r.count(16)? {
            let id = PeId(r.u32()?);
            let floor = r.u32()?;
            let n = r.count(33)?;
            let mut pools = Vec::with_capacity(n);
            for _ in 0..n {
                let host = HostId(r.u32()?);
                let fresh_tag = r.u32()?;
                let mut pool = get_pool(r)?;
                pool.fresh_tag = fresh_tag;
                pools.push((host, pool));
            }
            let pe = self.pe_mut(id, "host spaces of an unknown PE")?;
            if pe.host_floor != 0 || !pe.host_pools.is_empty() {
                return Err(super::fields::bad("host spaces of a PE twice"));
            }
            pe.host_floor = floor;
            pe.host_pools = pools;
        }
        Ok(())
    }
}
