//! Compaction: the whole control-plane state in one record, and rebuilding
//! a plane (and its router) from it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use smallvec::SmallVec;

use super::codec::{Reader, Writer};
use super::ops::{
    TAG_SNAPSHOT, get_array_spec, get_container_spec, get_pe_spec, pe_state_code, pe_state_from,
    put_array_spec, put_container_spec, put_pe_spec, restore_backend, vtype_code, vtype_from,
};
use super::{BackendProvider, JournalError, get_limits, put_limits};
use crate::binding::control_plane::ControlPlane;
use crate::binding::id_pool::IdPool;
use crate::binding::state::{
    ArrayState, BindingEntry, ContainerState, HostState, PeEntry, State, VvolEntry,
};
use crate::binding::{Limits, PeSelectionPolicy};
use crate::model::{ArrayId, ContainerId, Generation, HostId, PeId, SecondaryId, VvolId, VvolKey};
use crate::router::{TableState, VolumeCore};

fn put_pool(w: &mut Writer, p: &IdPool) {
    let (next_fresh, last, fresh_left, freed) = p.parts();
    w.u64(next_fresh);
    w.u64(last);
    w.bool(fresh_left);
    w.usize(freed.len());
    for id in freed {
        w.u64(*id);
    }
}

fn get_pool(r: &mut Reader<'_>) -> Result<IdPool, JournalError> {
    let next_fresh = r.u64()?;
    let last = r.u64()?;
    let fresh_left = r.bool()?;
    let n = r.count(8)?;
    let mut freed = Vec::with_capacity(n);
    for _ in 0..n {
        freed.push(r.u64()?);
    }
    Ok(IdPool::from_parts(next_fresh, last, fresh_left, freed))
}

/// The snapshot record payload of `st`.
pub(crate) fn encode(plane: &ControlPlane, st: &State, explicit: &HashSet<VvolId>) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(TAG_SNAPSHOT);
    put_limits(&mut w, &plane.limits);
    w.u64(st.rng);
    w.u32(st.next_array);
    w.u32(st.next_container);
    w.u32(st.next_pe);
    w.u32(st.next_host);
    w.u64(st.events.last_id().0);
    put_pool(&mut w, &st.vvol_keys);
    w.usize(st.arrays.len());
    for (id, a) in &st.arrays {
        w.u32(id.0);
        put_array_spec(&mut w, &a.spec);
    }
    w.usize(st.containers.len());
    for (id, c) in &st.containers {
        w.u32(id.0);
        w.u32(c.array.0);
        put_container_spec(&mut w, &c.spec);
    }
    w.usize(st.pes.len());
    for (id, p) in &st.pes {
        w.u32(id.0);
        w.u32(p.array.0);
        put_pe_spec(&mut w, &p.spec);
        w.u8(pe_state_code(p.state));
        put_pool(&mut w, &p.ids);
        // The generations of retired slots, so reused ids keep growing.
        let (_, _, _, freed) = p.ids.parts();
        for sid in freed {
            w.u32(plane.router.slot_generation(*id, SecondaryId(*sid)).0);
        }
    }
    w.usize(st.hosts.len());
    for (id, h) in &st.hosts {
        w.u32(id.0);
        w.str(&h.name);
        w.usize(h.pe_context.len());
        for pe in &h.pe_context {
            w.u32(pe.0);
        }
    }
    let mut vvols: Vec<_> = st.vvols.iter().collect();
    vvols.sort_unstable_by_key(|(id, _)| **id);
    w.usize(vvols.len());
    for (id, v) in vvols {
        w.u128(id.0);
        w.u32(v.core.key.0);
        w.u32(v.container.0);
        w.u8(vtype_code(v.vtype));
        w.u32(v.core.block_size);
        w.u64(v.core.capacity_bytes());
        w.bool(explicit.contains(id));
        // Bindings in the vVol's own order (bind picks the first match).
        w.usize(v.bindings.len());
        for key in &v.bindings {
            let b = &st.bindings[key];
            w.u32(key.0.0);
            w.u64(key.1.0);
            w.u32(b.generation.0);
            w.usize(b.hosts.len());
            for (h, count) in &b.hosts {
                w.u32(h.0);
                w.u32(*count);
            }
        }
    }
    w.buf
}

/// Rebuilds a plane (no journal attached) from a snapshot payload after its
/// tag; returns it with the ids of vVols that had explicit backends.
pub(crate) fn restore(
    r: &mut Reader<'_>,
    limits: Limits,
    policy: Box<dyn PeSelectionPolicy>,
    provider: Option<&Arc<dyn BackendProvider>>,
) -> Result<(ControlPlane, HashSet<VvolId>), JournalError> {
    let stored = get_limits(r)?;
    if stored != limits {
        return Err(JournalError::LimitsMismatch {
            stored: Box::new(stored),
            given: Box::new(limits),
        });
    }
    let plane = ControlPlane::with_policy(limits, policy);
    let router = Arc::clone(&plane.router);
    let mut explicit = HashSet::new();
    {
        let mut st = plane.lock();
        let st: &mut State = &mut st;
        st.rng = r.u64()?;
        st.next_array = r.u32()?;
        st.next_container = r.u32()?;
        st.next_pe = r.u32()?;
        st.next_host = r.u32()?;
        st.events.resume(r.u64()?);
        st.vvol_keys = get_pool(r)?;
        for _ in 0..r.count(4)? {
            let id = ArrayId(r.u32()?);
            let spec = get_array_spec(r)?;
            st.arrays.insert(
                id,
                ArrayState {
                    spec,
                    containers: BTreeSet::new(),
                    pes: BTreeSet::new(),
                },
            );
        }
        for _ in 0..r.count(8)? {
            let id = ContainerId(r.u32()?);
            let array = ArrayId(r.u32()?);
            let spec = get_container_spec(r)?;
            st.arrays
                .get_mut(&array)
                .ok_or_else(|| dangling("container of an unknown array"))?
                .containers
                .insert(id);
            st.containers.insert(id, ContainerState::empty(array, spec));
        }
        for _ in 0..r.count(8)? {
            let id = PeId(r.u32()?);
            let array = ArrayId(r.u32()?);
            let spec = get_pe_spec(r)?;
            let state = pe_state_from(r.u8()?)?;
            let ids = get_pool(r)?;
            if id.0 >= limits.max_pes {
                return Err(dangling("PE id past max_pes"));
            }
            router.add_pe(id, spec.secondary_ids(), spec.queue_depth());
            router.set_pe_state(id, TableState::from(state));
            for sid in ids.parts().3 {
                router.restore_retired(id, SecondaryId(*sid), Generation(r.u32()?));
            }
            st.arrays
                .get_mut(&array)
                .ok_or_else(|| dangling("PE of an unknown array"))?
                .pes
                .insert(id);
            st.pes.insert(
                id,
                PeEntry {
                    array,
                    spec,
                    state,
                    ids,
                    bindings: 0,
                },
            );
        }
        for _ in 0..r.count(4)? {
            let id = HostId(r.u32()?);
            let name = r.string()?;
            let mut pe_context = BTreeSet::new();
            for _ in 0..r.count(4)? {
                pe_context.insert(PeId(r.u32()?));
            }
            st.hosts.insert(
                id,
                HostState {
                    name,
                    pe_context,
                    bindings: HashSet::new(),
                },
            );
        }
        let mut keys = HashMap::new();
        for _ in 0..r.count(16)? {
            let id = VvolId(r.u128()?);
            let key = VvolKey(r.u32()?);
            let container = ContainerId(r.u32()?);
            let vtype = vtype_from(r.u8()?)?;
            let block_size = r.u32()?;
            let capacity = r.u64()?;
            let is_explicit = r.bool()?;
            let backend = restore_backend(provider, id, is_explicit, capacity, block_size)?;
            if is_explicit {
                explicit.insert(id);
            }
            let c = st
                .containers
                .get_mut(&container)
                .ok_or_else(|| dangling("vVol of an unknown container"))?;
            c.used_bytes += capacity;
            c.vvols += 1;
            let core = Arc::new(VolumeCore::new(id, key, backend, block_size, capacity));
            keys.insert(key, id);
            let mut bindings = SmallVec::new();
            for _ in 0..r.count(16)? {
                let k = (PeId(r.u32()?), SecondaryId(r.u64()?));
                let generation = Generation(r.u32()?);
                let mut hosts = SmallVec::new();
                for _ in 0..r.count(8)? {
                    let h = HostId(r.u32()?);
                    hosts.push((h, r.u32()?));
                    st.hosts
                        .get_mut(&h)
                        .ok_or_else(|| dangling("binding of an unknown host"))?
                        .bindings
                        .insert(k);
                }
                st.pes
                    .get_mut(&k.0)
                    .ok_or_else(|| dangling("binding on an unknown PE"))?
                    .bindings += 1;
                st.bindings.insert(
                    k,
                    BindingEntry {
                        vvol: id,
                        generation,
                        hosts,
                    },
                );
                bindings.push(k);
            }
            st.vvols.insert(
                id,
                VvolEntry {
                    container,
                    vtype,
                    core,
                    bindings,
                },
            );
        }
        st.keys = keys;
        r.finish()?;
        let keys: Vec<_> = st.bindings.keys().copied().collect();
        for k in keys {
            st.republish(&router, k);
        }
    }
    Ok((plane, explicit))
}

fn dangling(reason: &'static str) -> JournalError {
    JournalError::Corrupt { offset: 0, reason }
}
