//! Bind and unbind with VASA semantics. A bind is planned under the lock,
//! the policy chooses PEs without it, and the plan is re-validated and
//! committed under the lock again.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::control_plane::ControlPlane;
use super::journal::{BindItem, Record, Release};
use super::state::{BindingKey, State};
use super::{ControlError, PeCandidate};
use crate::model::{
    BindContext, BindHandle, ContainerId, HostId, PeId, PeState, UnbindContext, VvolId,
};

/// One result per vVol of a bind call, in call order.
pub type BindResults = Vec<Result<BindHandle, ControlError>>;

/// How often a bind is recomputed when the state moved while the policy
/// chose.
pub const MAX_POLICY_TRIES: u32 = 3;

/// What an item will do, decided before the policy runs.
#[derive(Debug)]
enum Plan {
    Fault(ControlError),
    Attach(BindingKey),
    /// One more bind of the binding an earlier item of the batch makes.
    AttachEarlier(usize),
    /// A new binding on a PE the policy picks from these.
    New(Vec<PeId>),
    /// [`BindContext::RebindStart`]: decided in batch order, as if the
    /// batch's earlier items of the same vVol had been applied.
    Rebind {
        /// The PEs where the host already holds a binding of the vVol.
        held: Vec<PeId>,
        /// The vVol's bindings.
        existing: Vec<BindingKey>,
    },
}

/// What the policy pass decided for an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// Nothing to decide, or no PE with a free secondary id.
    None,
    /// A new binding on this PE.
    Pe(PeId),
    /// One more bind of this existing binding (a rebind that found another
    /// host's binding on a PE this host does not use yet).
    Attach(BindingKey),
}

fn fault_code(e: &ControlError) -> u8 {
    match e {
        ControlError::VvolNotFound(_) => 1,
        ControlError::SecondaryIdsExhausted { .. } => 2,
        ControlError::BindCountOverflow { .. } => 3,
        _ => 0,
    }
}

impl ControlPlane {
    /// Binds `vvols` (all of one container) for `host` (VASA
    /// `bindVirtualVolume`), returning one handle or per-item error each.
    ///
    /// With [`BindContext::Normal`] a host that already holds an active
    /// binding of the vVol gets the same handle and its count goes up; a host
    /// that sees a PE where the vVol is already bound shares that binding;
    /// otherwise the policy picks an active PE and a new binding is made.
    /// With [`BindContext::RebindStart`] the host gets a handle other than
    /// the ones it holds, on an active PE.
    ///
    /// The policy runs without the plane's lock; when the state changed
    /// meanwhile the batch is recomputed (up to [`MAX_POLICY_TRIES`] times).
    /// A panicking policy binds nothing.
    ///
    /// # Errors
    /// Whole call: [`ControlError::EmptyBatch`],
    /// [`ControlError::BatchTooLarge`] (VASA TooMany with the limit),
    /// [`ControlError::HostNotFound`], [`ControlError::MixedContainers`],
    /// [`ControlError::NoEligiblePe`], [`ControlError::PolicyPanicked`],
    /// [`ControlError::PolicyContended`], [`ControlError::Journal`]. Per
    /// item: [`ControlError::VvolNotFound`],
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
        for _ in 0..MAX_POLICY_TRIES {
            let st = self.lock();
            let (plans, candidates, eligible) = plan(&st, host, vvols, context)?;
            let version = st.version;
            let needs_policy = plans
                .iter()
                .any(|p| matches!(p, Plan::New(_) | Plan::Rebind { .. }));
            let (st, choices) = if needs_policy {
                drop(st);
                let choices = self.choose(host, vvols, &plans, &candidates, &eligible)?;
                let st = self.lock();
                if st.version != version {
                    continue;
                }
                (st, choices)
            } else {
                (st, vec![Choice::None; plans.len()])
            };
            let (items, results) = finish(&st, host, vvols, plans, &choices);
            if items.iter().all(|i| matches!(i, BindItem::Fault { .. })) {
                return Ok(results);
            }
            self.commit(st, Record::Bind { host, items }, None)?;
            return Ok(results);
        }
        Err(ControlError::PolicyContended {
            tries: MAX_POLICY_TRIES,
        })
    }

    /// Runs the policy for every item that needs a new binding, unlocked;
    /// item i sees counts that include the choices for items before it.
    fn choose(
        &self,
        host: HostId,
        vvols: &[VvolId],
        plans: &[Plan],
        candidates: &Candidates,
        eligible: &[PeId],
    ) -> Result<Vec<Choice>, ControlError> {
        let mut extra: HashMap<PeId, u64> = HashMap::new();
        let mut out: Vec<Choice> = Vec::with_capacity(plans.len());
        for (i, p) in plans.iter().enumerate() {
            let pool: Vec<PeId> = match p {
                Plan::New(pool) => pool.clone(),
                Plan::Rebind { held, existing } => {
                    // The PEs the host holds the vVol on, counting what the
                    // batch's earlier items of this vVol decided.
                    let mut held = held.clone();
                    for (k, c) in out.iter().enumerate() {
                        if vvols[k] != vvols[i] {
                            continue;
                        }
                        match c {
                            Choice::Pe(pe) | Choice::Attach((pe, _, _)) => held.push(*pe),
                            Choice::None => {}
                        }
                    }
                    let others: Vec<PeId> = eligible
                        .iter()
                        .copied()
                        .filter(|pe| !held.contains(pe))
                        .collect();
                    if let Some(key) = existing.iter().find(|k| others.contains(&k.0)) {
                        out.push(Choice::Attach(*key));
                        continue;
                    }
                    let roomy: Vec<PeId> = others
                        .into_iter()
                        .filter(|pe| has_room(candidates, &extra, *pe))
                        .collect();
                    if roomy.is_empty() {
                        eligible.to_vec()
                    } else {
                        roomy
                    }
                }
                _ => {
                    out.push(Choice::None);
                    continue;
                }
            };
            let list: Vec<PeCandidate> = pool
                .iter()
                .filter(|pe| has_room(candidates, &extra, **pe))
                .filter_map(|pe| {
                    let (c, _) = candidates.get(pe)?;
                    let mut c = c.clone();
                    c.bindings += extra.get(pe).copied().unwrap_or(0);
                    Some(c)
                })
                .collect();
            if list.is_empty() {
                out.push(Choice::None);
                continue;
            }
            let policy = &self.policy;
            let at = catch_unwind(AssertUnwindSafe(|| policy.choose(host, vvols[i], &list)))
                .map_err(|_| ControlError::PolicyPanicked)?;
            let pe = list.get(at).unwrap_or(&list[0]).pe;
            *extra.entry(pe).or_default() += 1;
            out.push(Choice::Pe(pe));
        }
        Ok(out)
    }

    /// Releases one bind of `handle` by `host` (VASA `unbindVirtualVolume`).
    /// The host's access ends when its count reaches zero, and the binding
    /// goes away with its last host; a draining PE becomes drained with its
    /// last binding. [`UnbindContext::RebindStart`] checks the handle and
    /// changes nothing.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::HandleNotFound`] when
    /// the host holds no binding with this PE, secondary id and generation;
    /// [`ControlError::Journal`].
    pub fn unbind(
        &self,
        host: HostId,
        handle: BindHandle,
        context: UnbindContext,
    ) -> Result<(), ControlError> {
        let st = self.lock();
        st.host(host)?;
        let key = st.key_of(handle.pe, handle.secondary_id, host);
        let holds = st
            .bindings
            .get(&key)
            .is_some_and(|b| b.generation == handle.generation && b.count_of(host).is_some());
        if !holds {
            return Err(ControlError::HandleNotFound { host, handle });
        }
        if context == UnbindContext::RebindStart {
            return Ok(());
        }
        let rec = Record::Unbind(vec![Release {
            host,
            pe: key.0,
            sid: key.1,
            whole: false,
        }]);
        self.commit(st, rec, None)
    }

    /// Drops every binding `host` holds, whatever its counts (VASA
    /// `unbindAllVirtualVolumesFromHost`). Returns how many it held.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::Journal`].
    pub fn unbind_all_from_host(&self, host: HostId) -> Result<usize, ControlError> {
        let st = self.lock();
        let mut keys: Vec<BindingKey> = st.host(host)?.bindings.iter().copied().collect();
        if keys.is_empty() {
            return Ok(0);
        }
        // In handle order, so the freed ids are reused in a predictable order.
        keys.sort_unstable();
        let n = keys.len();
        let rec = Record::Unbind(
            keys.into_iter()
                .map(|(pe, sid, _)| Release {
                    host,
                    pe,
                    sid,
                    whole: true,
                })
                .collect(),
        );
        self.commit(st, rec, None)?;
        Ok(n)
    }

    /// Drops every binding of `vvol` for every host (VASA
    /// `unbindVirtualVolumeFromAllHost`). Returns how many bindings it had.
    ///
    /// # Errors
    /// [`ControlError::VvolNotFound`], [`ControlError::Journal`].
    pub fn unbind_from_all_hosts(&self, vvol: VvolId) -> Result<usize, ControlError> {
        let st = self.lock();
        let keys: Vec<BindingKey> = st.vvol(vvol)?.bindings.to_vec();
        if keys.is_empty() {
            return Ok(0);
        }
        let mut releases = Vec::new();
        for key in &keys {
            if let Some(b) = st.bindings.get(key) {
                releases.extend(b.hosts.iter().map(|(h, _)| Release {
                    host: *h,
                    pe: key.0,
                    sid: key.1,
                    whole: true,
                }));
            }
        }
        self.commit(st, Record::Unbind(releases), None)?;
        Ok(keys.len())
    }
}

type Candidates = HashMap<PeId, (PeCandidate, u64)>;

/// Whether `pe` still has a free secondary id after the batch's choices.
fn has_room(candidates: &Candidates, extra: &HashMap<PeId, u64>, pe: PeId) -> bool {
    candidates
        .get(&pe)
        .is_some_and(|(_, free)| extra.get(&pe).copied().unwrap_or(0) < *free)
}

/// Plans every item under the lock, with the candidates (and their free
/// secondary ids) the policy may choose from.
fn plan(
    st: &State,
    host: HostId,
    vvols: &[VvolId],
    context: BindContext,
) -> Result<(Vec<Plan>, Candidates, Vec<PeId>), ControlError> {
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
        let plans = vvols
            .iter()
            .map(|v| Plan::Fault(ControlError::VvolNotFound(*v)))
            .collect();
        return Ok((plans, HashMap::new(), Vec::new()));
    };
    let eligible = eligible_pes(st, host, container);
    if eligible.is_empty() {
        let c = st.container(container)?;
        return Err(ControlError::NoEligiblePe {
            host,
            container,
            array: c.array,
            protocol: c.spec.protocol(),
        });
    }
    let candidates: Candidates = eligible
        .iter()
        .filter_map(|pe| {
            let e = st.pes.get(pe)?;
            let c = PeCandidate::new(
                *pe,
                e.array,
                e.spec.transport().clone(),
                e.state,
                e.bindings,
                e.spec.queue_depth(),
            );
            Some((*pe, (c, e.available_for(host, st.max_host_spaces))))
        })
        .collect();
    let mut plans: Vec<Plan> = Vec::with_capacity(vvols.len());
    for (i, &vvol) in vvols.iter().enumerate() {
        let Some(v) = st.vvols.get(&vvol) else {
            plans.push(Plan::Fault(ControlError::VvolNotFound(vvol)));
            continue;
        };
        let holds = |key: &BindingKey| {
            st.bindings
                .get(key)
                .is_some_and(|b| b.count_of(host).is_some())
        };
        if context == BindContext::RebindStart {
            plans.push(Plan::Rebind {
                held: v
                    .bindings
                    .iter()
                    .filter(|k| holds(k))
                    .map(|k| k.0)
                    .collect(),
                // Another host's binding in a per-host space is not
                // shareable (its id names it only for that host).
                existing: v
                    .bindings
                    .iter()
                    .copied()
                    .filter(|k| k.2.is_none())
                    .collect(),
            });
            continue;
        }
        if let Some(j) = vvols[..i]
            .iter()
            .position(|w| *w == vvol)
            .filter(|j| matches!(plans[*j], Plan::New(_) | Plan::AttachEarlier(_)))
        {
            let j = match plans[j] {
                Plan::AttachEarlier(k) => k,
                _ => j,
            };
            plans.push(Plan::AttachEarlier(j));
            continue;
        }
        let active =
            |key: &BindingKey| st.pes.get(&key.0).map(|p| p.state) == Some(PeState::Active);
        // Only eligible PEs take binds: a binding the host holds on a PE
        // that left its context keeps serving, but is not bound again.
        let existing = v
            .bindings
            .iter()
            .copied()
            .find(|k| active(k) && holds(k) && eligible.contains(&k.0))
            .or_else(|| {
                v.bindings
                    .iter()
                    .copied()
                    .find(|k| active(k) && k.2.is_none() && eligible.contains(&k.0))
            });
        match existing {
            Some(key) => {
                let count = st.bindings.get(&key).and_then(|b| b.count_of(host));
                if count == Some(u32::MAX) {
                    plans.push(Plan::Fault(ControlError::BindCountOverflow {
                        host,
                        handle: st.handle(key),
                        count: u32::MAX,
                    }));
                } else {
                    plans.push(Plan::Attach(key));
                }
            }
            None => plans.push(Plan::New(eligible.clone())),
        }
    }
    Ok((plans, candidates, eligible))
}

/// Turns the plans and the policy's choices into the record's items and
/// the call's results, assigning secondary ids and generations.
fn finish(
    st: &State,
    host: HostId,
    vvols: &[VvolId],
    plans: Vec<Plan>,
    choices: &[Choice],
) -> (Vec<BindItem>, BindResults) {
    let mut taken: HashMap<PeId, u64> = HashMap::new();
    let mut keys: Vec<Option<BindingKey>> = Vec::with_capacity(plans.len());
    let mut items = Vec::with_capacity(plans.len());
    let mut results: BindResults = Vec::with_capacity(plans.len());
    for (i, p) in plans.into_iter().enumerate() {
        let vvol = vvols[i];
        let outcome: Result<(BindItem, BindHandle), ControlError> = match (p, choices[i]) {
            (Plan::Fault(e), _) => Err(e),
            (Plan::Attach(key), _) | (Plan::New(_) | Plan::Rebind { .. }, Choice::Attach(key)) => {
                Ok((
                    BindItem::Attach {
                        pe: key.0,
                        sid: key.1,
                    },
                    st.handle(key),
                ))
            }
            (Plan::AttachEarlier(j), _) => match (keys.get(j).copied().flatten(), &results[j]) {
                (Some(key), Ok(h)) => Ok((
                    BindItem::Attach {
                        pe: key.0,
                        sid: key.1,
                    },
                    *h,
                )),
                _ => Err(ControlError::SecondaryIdsExhausted { vvol }),
            },
            (Plan::New(_) | Plan::Rebind { .. }, choice) => {
                let chosen = match choice {
                    Choice::Pe(pe) => Some(pe),
                    Choice::None | Choice::Attach(_) => None,
                };
                let next = chosen.and_then(|pe| {
                    let n = taken.entry(pe).or_default();
                    let (sid, last) = st.pes.get(&pe)?.peek_for(host, *n, st.max_host_spaces)?;
                    *n += 1;
                    Some((pe, sid, last))
                });
                match next {
                    Some((pe, sid, last)) => {
                        let generation = super::apply::next_generation(last);
                        let sid = crate::model::SecondaryId(sid);
                        Ok((
                            BindItem::New {
                                vvol,
                                pe,
                                sid,
                                generation,
                            },
                            BindHandle {
                                pe,
                                secondary_id: sid,
                                generation,
                            },
                        ))
                    }
                    None => Err(ControlError::SecondaryIdsExhausted { vvol }),
                }
            }
        };
        match outcome {
            Ok((item, handle)) => {
                keys.push(Some(st.key_of(handle.pe, handle.secondary_id, host)));
                items.push(item);
                results.push(Ok(handle));
            }
            Err(e) => {
                keys.push(None);
                items.push(BindItem::Fault {
                    vvol,
                    code: fault_code(&e),
                });
                results.push(Err(e));
            }
        }
    }
    (items, results)
}

/// Active PEs of the container's array with its protocol that are both
/// mapped to the host (access rules) and in its PE context (what it
/// reported), in id order.
fn eligible_pes(st: &State, host: HostId, container: ContainerId) -> Vec<PeId> {
    let (Some(c), Some(h)) = (st.containers.get(&container), st.hosts.get(&host)) else {
        return Vec::new();
    };
    let protocol = c.spec.protocol();
    h.pe_context
        .intersection(&h.mapped)
        .copied()
        .filter(|pe| {
            st.pes.get(pe).is_some_and(|e| {
                e.array == c.array
                    && e.state == PeState::Active
                    && e.spec.transport().protocol() == protocol
            })
        })
        .collect()
}
