//! Bind and unbind with VASA semantics.

use super::control_plane::ControlPlane;
use super::journal::Op;
use super::state::{BindingKey, State};
use super::{ControlError, PeCandidate};
use crate::model::{
    BindContext, BindHandle, ContainerId, HostId, PeId, PeState, UnbindContext, VvolId,
};
use crate::router::Router;

/// One result per vVol of a bind call, in call order.
pub type BindResults = Vec<Result<BindHandle, ControlError>>;

impl ControlPlane {
    /// Binds `vvols` (all of one container) for `host` (VASA
    /// `bindVirtualVolume`), returning one handle or per-item error each.
    ///
    /// With [`BindContext::Normal`] a host that already holds an active
    /// binding of the vVol gets the same handle and its count goes up; a host
    /// that sees a PE where the vVol is already bound shares that binding;
    /// otherwise the policy picks a PE and a new binding is made. With
    /// [`BindContext::RebindStart`] the host gets a handle other than the
    /// ones it holds, on an active PE (never a draining or failed one).
    ///
    /// # Errors
    /// Whole call: [`ControlError::EmptyBatch`],
    /// [`ControlError::BatchTooLarge`] (VASA TooMany with the limit),
    /// [`ControlError::HostNotFound`], [`ControlError::MixedContainers`],
    /// [`ControlError::NoEligiblePe`]. Per item:
    /// [`ControlError::VvolNotFound`],
    /// [`ControlError::SecondaryIdsExhausted`],
    /// [`ControlError::BindCountOverflow`].
    pub fn bind(
        &self,
        host: HostId,
        vvols: &[VvolId],
        context: BindContext,
    ) -> Result<BindResults, ControlError> {
        if vvols.is_empty() {
            return Err(ControlError::EmptyBatch);
        }
        if vvols.len() > self.limits.max_bind_batch {
            return Err(ControlError::BatchTooLarge {
                len: vvols.len(),
                max_batch: self.limits.max_bind_batch,
            });
        }
        let mut st = self.lock();
        st.host(host)?;
        let mut container: Option<ContainerId> = None;
        for v in vvols {
            if let Some(entry) = st.vvols.get(v) {
                match container {
                    None => container = Some(entry.container),
                    Some(first) if first != entry.container => {
                        return Err(ControlError::MixedContainers {
                            first,
                            other: entry.container,
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        let Some(container) = container else {
            return Ok(vvols
                .iter()
                .map(|v| Err(ControlError::VvolNotFound(*v)))
                .collect());
        };
        let eligible = eligible_pes(&st, host, container);
        if eligible.is_empty() {
            let c = &st.containers[&container];
            return Err(ControlError::NoEligiblePe {
                host,
                container,
                array: c.array,
                protocol: c.spec.protocol(),
            });
        }
        let rec = self.journal_begin(|| Op::Bind(host, vvols.to_vec(), context))?;
        let results = vvols
            .iter()
            .map(|&vvol| {
                if !st.vvols.contains_key(&vvol) {
                    return Err(ControlError::VvolNotFound(vvol));
                }
                let key = match context {
                    BindContext::RebindStart => self.bind_rebind(&mut st, host, vvol, &eligible)?,
                    _ => self.bind_normal(&mut st, host, vvol, &eligible)?,
                };
                Ok(st.handle(key))
            })
            .collect();
        self.journal_commit(&st, rec)?;
        Ok(results)
    }

    fn bind_normal(
        &self,
        st: &mut State,
        host: HostId,
        vvol: VvolId,
        eligible: &[PeId],
    ) -> Result<BindingKey, ControlError> {
        let existing = &st.vvols[&vvol].bindings;
        let active = |key: &BindingKey| st.pes[&key.0].state == PeState::Active;
        let held = existing
            .iter()
            .find(|k| active(k) && st.bindings[k].count_of(host).is_some());
        let shared = || {
            existing
                .iter()
                .find(|k| active(k) && eligible.contains(&k.0))
        };
        if let Some(&key) = held.or_else(shared) {
            st.attach(&self.router, host, key)?;
            return Ok(key);
        }
        self.bind_new(st, host, vvol, eligible)
    }

    fn bind_rebind(
        &self,
        st: &mut State,
        host: HostId,
        vvol: VvolId,
        eligible: &[PeId],
    ) -> Result<BindingKey, ControlError> {
        let held: Vec<PeId> = st.vvols[&vvol]
            .bindings
            .iter()
            .filter(|k| st.bindings[k].count_of(host).is_some())
            .map(|k| k.0)
            .collect();
        let others: Vec<PeId> = eligible
            .iter()
            .copied()
            .filter(|pe| !held.contains(pe))
            .collect();
        // Share another host's binding on a PE this host does not use yet.
        let shared = st.vvols[&vvol]
            .bindings
            .iter()
            .copied()
            .find(|k| others.contains(&k.0));
        if let Some(key) = shared {
            st.attach(&self.router, host, key)?;
            return Ok(key);
        }
        // A new binding, on a PE the host does not use for this vVol when one
        // has room, else on any eligible PE.
        let roomy: Vec<PeId> = others
            .into_iter()
            .filter(|pe| !st.pes[pe].ids.is_exhausted())
            .collect();
        let pool = if roomy.is_empty() { eligible } else { &roomy };
        self.bind_new(st, host, vvol, pool)
    }

    /// Makes a new binding on the PE the policy picks from `pool`.
    fn bind_new(
        &self,
        st: &mut State,
        host: HostId,
        vvol: VvolId,
        pool: &[PeId],
    ) -> Result<BindingKey, ControlError> {
        let candidates: Vec<PeCandidate> = pool
            .iter()
            .map(|pe| (pe, &st.pes[pe]))
            .filter(|(_, e)| !e.ids.is_exhausted())
            .map(|(pe, e)| PeCandidate {
                pe: *pe,
                bindings: e.bindings,
                queue_depth: e.spec.queue_depth(),
            })
            .collect();
        if candidates.is_empty() {
            return Err(ControlError::SecondaryIdsExhausted { vvol });
        }
        let at = self.policy.choose(host, vvol, &candidates);
        let pe = candidates.get(at).unwrap_or(&candidates[0]).pe;
        st.create_binding(&self.router, host, vvol, pe)
            .ok_or(ControlError::SecondaryIdsExhausted { vvol })
    }

    /// Releases one bind of `handle` by `host` (VASA `unbindVirtualVolume`).
    /// The host's access ends when its count reaches zero, and the binding
    /// goes away with its last host; a draining or failed PE goes away with
    /// its last binding. [`UnbindContext::RebindStart`] checks the handle and
    /// changes nothing.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::HandleNotFound`] when
    /// the host holds no binding with this PE, secondary id and generation.
    pub fn unbind(
        &self,
        host: HostId,
        handle: BindHandle,
        context: UnbindContext,
    ) -> Result<(), ControlError> {
        let mut st = self.lock();
        st.host(host)?;
        let key = (handle.pe, handle.secondary_id);
        let holds = st
            .bindings
            .get(&key)
            .is_some_and(|b| b.generation == handle.generation && b.count_of(host).is_some());
        if !holds {
            return Err(ControlError::HandleNotFound { host, handle });
        }
        if context != UnbindContext::RebindStart {
            let rec = self.journal_begin(|| Op::Unbind(host, handle, context))?;
            st.release(&self.router, host, key, false);
            self.journal_commit(&st, rec)?;
        }
        Ok(())
    }

    /// Drops every binding `host` holds, whatever its counts (VASA
    /// `unbindAllVirtualVolumesFromHost`). Returns how many it held.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`].
    pub fn unbind_all_from_host(&self, host: HostId) -> Result<usize, ControlError> {
        let mut st = self.lock();
        let mut keys: Vec<BindingKey> = st.host(host)?.bindings.iter().copied().collect();
        // In handle order, so the freed ids are reused in a predictable order.
        keys.sort_unstable();
        let rec = self.journal_begin(|| Op::UnbindAllFromHost(host))?;
        for &key in &keys {
            st.release(&self.router, host, key, true);
        }
        self.journal_commit(&st, rec)?;
        Ok(keys.len())
    }

    /// Drops every binding of `vvol` for every host (VASA
    /// `unbindVirtualVolumeFromAllHost`). Returns how many bindings it had.
    ///
    /// # Errors
    /// [`ControlError::VvolNotFound`].
    pub fn unbind_from_all_hosts(&self, vvol: VvolId) -> Result<usize, ControlError> {
        let mut st = self.lock();
        let keys: Vec<BindingKey> = st.vvol(vvol)?.bindings.to_vec();
        let rec = self.journal_begin(|| Op::UnbindFromAllHosts(vvol))?;
        for &key in &keys {
            release_all_hosts(&mut st, &self.router, key);
        }
        self.journal_commit(&st, rec)?;
        Ok(keys.len())
    }
}

fn release_all_hosts(st: &mut State, router: &Router, key: BindingKey) {
    let hosts: Vec<HostId> = st
        .bindings
        .get(&key)
        .map(|b| b.hosts.iter().map(|(h, _)| *h).collect())
        .unwrap_or_default();
    for host in hosts {
        st.release(router, host, key, true);
    }
}

/// Active PEs of the container's array with its protocol in the host's PE
/// context, in id order.
fn eligible_pes(st: &State, host: HostId, container: ContainerId) -> Vec<PeId> {
    let c = &st.containers[&container];
    let protocol = c.spec.protocol();
    st.hosts[&host]
        .pe_context
        .iter()
        .copied()
        .filter(|pe| {
            let e = &st.pes[pe];
            e.array == c.array
                && e.state == PeState::Active
                && e.spec.transport().protocol() == protocol
        })
        .collect()
}
