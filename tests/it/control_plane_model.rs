//! Model-based test of the control plane and the router.
//!
//! A `proptest-state-machine` test drives one [`ControlPlane`] and a simple
//! reference model side by side. The model re-implements the documented
//! semantics (VASA bind/unbind with per-host counts, FIFO secondary ids,
//! fewest-bindings PE choice, drain/fail with PE removal, events, routed I/O)
//! with plain `BTreeMap`s. After every step the test compares every binding,
//! PE, host, vVol, event and router slot with the model.
//!
//! Topology per case: array 0 has two SCSI containers and three SCSI PEs, one
//! of them with a tiny secondary-id range (so ids are reused and run out);
//! array 1 has an NFS container and an NFS PE. Three hosts start with
//! different PE contexts; seven vVols of 1 MiB have fixed ids.
//!
//! One thing the model cannot predict: `unbind_all_from_host` frees several
//! secondary ids in one call, and the documents do not fix their order
//! (the control plane walks a hash set). The model keeps the ids freed by
//! one call as an unordered batch in the FIFO free list, predicts the
//! smallest, and accepts any id of that batch; the test then keeps a
//! per-PE bijection between model ids and real ids. Generations are checked
//! per real slot: every bind of a slot gets the slot's previous generation
//! plus one.
//!
//! The odd-numbered vVols sit on a [`FaultyBackend`]; a `Fault` transition
//! makes every operation of one of them fail or clears that. Routed I/O to a
//! faulty vVol must fail with [`RouteError::Backend`] and change nothing, and
//! every invariant is checked after each injected or cleared fault.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::ErrorKind;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::Config;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use vvol::backend::{
    BlockBackend, Fault, FaultId, FaultKind, FaultTrigger, FaultyBackend, MemoryBackend,
};
use vvol::{
    ArraySpec, BindContext, BindHandle, ContainerId, ContainerSpec, ControlError, ControlPlane,
    EventId, EventKind, Generation, HostId, Limits, MIB, Naa, NfsVersion, PeId, PeSpec, PeState,
    Protocol, RebindReason, Resolved, RouteError, Router, SecondaryId, SecondaryIdSpace,
    SubsidiaryAddressing, UnbindContext, VasaFault, VvolId, VvolKey, VvolSpec, VvolType,
};

// ---------------------------------------------------------------------------
// Fixed topology
// ---------------------------------------------------------------------------

const HOSTS: usize = 3;
const PES: usize = 4;
const VVOLS: usize = 7;
const CONTAINERS: usize = 3;
/// Array of each PE: three SCSI PEs on array 0, the NFS PE on array 1.
const PE_ARRAY: [usize; PES] = [0, 0, 0, 1];
/// Array of each container: gold and silver (SCSI) on array 0, bronze (NFS)
/// on array 1.
const CONTAINER_ARRAY: [usize; CONTAINERS] = [0, 0, 1];
const PE_PROTOCOL: [Protocol; PES] = [
    Protocol::Scsi,
    Protocol::Scsi,
    Protocol::Scsi,
    Protocol::Nfs,
];
const CONTAINER_PROTOCOL: [Protocol; CONTAINERS] = [Protocol::Scsi, Protocol::Scsi, Protocol::Nfs];
/// Container of each vVol.
const CONTAINER_OF: [usize; VVOLS] = [0, 0, 0, 1, 1, 2, 2];
/// The default secondary-id range of a PE.
const DEFAULT_FIRST_SID: u64 = 1;
const DEFAULT_LAST_SID: u64 = 16_383;
/// Blocks of each vVol the I/O steps touch (and the checks read back).
const BLOCKS: u64 = 4;
const BLOCK: usize = 512;
const COMPANY: u32 = 0x00_1A_2B;

fn vvol_id(v: usize) -> VvolId {
    VvolId(0x6f1c_2a4e_0d3b_4c8e_9a7f_1b2c_3d4e_0000 + v as u128)
}

fn vvol_type(v: usize) -> VvolType {
    [VvolType::Config, VvolType::Data, VvolType::Swap][v % 3]
}

fn members(container: usize) -> Vec<usize> {
    (0..VVOLS)
        .filter(|v| CONTAINER_OF[*v] == container)
        .collect()
}

/// The block an I/O step writes: the vVol the handle was issued for, the
/// writing host and a step counter, then a non-zero fill.
fn payload(vvol: usize, host: usize, counter: u64) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..16].copy_from_slice(&vvol_id(vvol).0.to_be_bytes());
    b[16..24].copy_from_slice(&counter.to_le_bytes());
    b[24] = host as u8 + 1;
    for (i, x) in b[25..].iter_mut().enumerate() {
        *x = (counter as usize).wrapping_mul(31).wrapping_add(i * 7) as u8 | 1;
    }
    b
}

// ---------------------------------------------------------------------------
// Reference model
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeSt {
    Active,
    Draining,
    Drained,
    Failed,
    Removed,
}

/// A PE's secondary ids: fresh ids in order, then freed ids first in, first
/// out. Ids freed by one call whose order is unspecified form one batch.
#[derive(Clone, Debug)]
struct PeModel {
    state: PeSt,
    first: u64,
    last: u64,
    next_fresh: u64,
    freed: VecDeque<Vec<u64>>,
}

impl PeModel {
    fn new(first: u64, last: u64) -> Self {
        Self {
            state: PeSt::Active,
            first,
            last,
            next_fresh: first,
            freed: VecDeque::new(),
        }
    }

    fn exhausted(&self) -> bool {
        self.next_fresh > self.last && self.freed.is_empty()
    }

    /// The next id and the other ids of its batch (any of which the plane
    /// may hand out instead).
    fn allocate(&mut self) -> Option<(u64, Vec<u64>)> {
        if self.next_fresh <= self.last {
            let id = self.next_fresh;
            self.next_fresh += 1;
            return Some((id, Vec::new()));
        }
        let batch = self.freed.front_mut()?;
        let id = batch.remove(0);
        let others = batch.clone();
        if batch.is_empty() {
            self.freed.pop_front();
        }
        Some((id, others))
    }

    fn free_batch(&mut self, mut ids: Vec<u64>) {
        if !ids.is_empty() {
            ids.sort_unstable();
            self.freed.push_back(ids);
        }
    }
}

#[derive(Clone, Debug)]
struct BindingModel {
    vvol: usize,
    pe: usize,
    /// Secondary id in the model's numbering (see the module docs).
    sid: u64,
    /// Hosts with their bind counts.
    hosts: Vec<(usize, u32)>,
}

impl BindingModel {
    fn holds(&self, host: usize) -> bool {
        self.hosts.iter().any(|(h, _)| *h == host)
    }
}

#[derive(Clone, Debug)]
struct VvolModel {
    key: u32,
    /// Written blocks: block index -> (host, counter) of the payload.
    blocks: BTreeMap<u64, (usize, u64)>,
    /// Every backend operation fails (odd-numbered vVols only).
    faulty: bool,
}

/// Whether vVol `v` sits on a [`FaultyBackend`].
fn on_faulty_backend(v: usize) -> bool {
    v % 2 == 1
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Rebind {
        pe: usize,
        failure: bool,
        vvols: Vec<usize>,
    },
    PeDraining {
        pe: usize,
    },
    PeDrained {
        pe: usize,
    },
    PeFailed {
        pe: usize,
    },
    PeRestored {
        pe: usize,
    },
    PeRemoved {
        pe: usize,
    },
    PeAdded {
        pe: usize,
    },
}

/// An expected control-plane error.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fail {
    VvolNotFound(usize),
    Mixed {
        first: usize,
        other: usize,
    },
    NoEligiblePe {
        host: usize,
        container: usize,
    },
    Exhausted(usize),
    HandleNotFound {
        host: usize,
        binding: u64,
    },
    PeNotFound(usize),
    /// setPEContext reported a PE the provider does not have (StorageFault).
    UnknownReportedPe {
        host: usize,
        pe: usize,
    },
    /// Any of `pes` may be reported (the plane scans a hash set).
    HostBoundOnPe {
        host: usize,
        pes: Vec<usize>,
    },
    VvolBound {
        vvol: usize,
        bindings: usize,
    },
    DuplicateVvol(usize),
    /// The PE is not in a state the action applies to.
    PeStateConflict {
        pe: usize,
        state: PeSt,
    },
    PeBound {
        pe: usize,
        bindings: usize,
    },
}

impl Fail {
    fn fault(&self) -> VasaFault {
        match self {
            Self::VvolNotFound(_) | Self::HandleNotFound { .. } | Self::PeNotFound(_) => {
                VasaFault::NotFound
            }
            Self::Mixed { .. } | Self::DuplicateVvol(_) | Self::PeStateConflict { .. } => {
                VasaFault::InvalidArgument
            }
            Self::NoEligiblePe { .. } | Self::UnknownReportedPe { .. } => VasaFault::StorageFault,
            Self::Exhausted(_) => VasaFault::OutOfResource,
            Self::HostBoundOnPe { .. } | Self::VvolBound { .. } | Self::PeBound { .. } => {
                VasaFault::ResourceInUse
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IoFail {
    UnknownPe,
    PeFailed,
    NotBound,
    AccessDenied,
    Backend,
}

/// One successful bind item.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    binding: u64,
    /// A new binding (else an existing one whose count went up).
    new: bool,
    pe: usize,
    sid: u64,
    /// Model ids of the same free batch the plane may have used instead.
    alternatives: Vec<u64>,
}

/// What the last transition must have returned.
#[derive(Clone, Debug)]
enum Expect {
    Nothing,
    Bind(Result<Vec<Result<Item, Fail>>, Fail>),
    Unit(Result<(), Fail>),
    Count(Result<usize, Fail>),
    Event(Result<u64, Fail>),
    Io(Result<(), IoFail>),
}

#[derive(Clone, Debug)]
struct Model {
    small_pe: usize,
    small_last: u64,
    initial_contexts: [u8; HOSTS],
    pes: Vec<PeModel>,
    contexts: Vec<BTreeSet<usize>>,
    /// The PEs mapped to each host (access rules; all of them at start).
    mapped: Vec<BTreeSet<usize>>,
    vvols: Vec<Option<VvolModel>>,
    bindings: BTreeMap<u64, BindingModel>,
    /// (PE, vVol) of every binding ever made, by binding number.
    history: Vec<(usize, usize)>,
    next_key: u32,
    /// Events in batches of one call; `false` marks a batch whose order is
    /// unspecified.
    events: Vec<(Vec<Ev>, bool)>,
    io_counter: u64,
    expect: Expect,
}

fn mask_to_pes(mask: u8) -> BTreeSet<usize> {
    (0..PES).filter(|p| mask & (1 << p) != 0).collect()
}

impl Model {
    fn new(small_pe: usize, small_last: u64, initial_contexts: [u8; HOSTS]) -> Self {
        let pes = (0..PES)
            .map(|p| {
                if p == small_pe {
                    PeModel::new(1, small_last)
                } else {
                    PeModel::new(DEFAULT_FIRST_SID, DEFAULT_LAST_SID)
                }
            })
            .collect();
        Self {
            small_pe,
            small_last,
            initial_contexts,
            pes,
            contexts: initial_contexts.iter().map(|m| mask_to_pes(*m)).collect(),
            mapped: vec![(0..PES).collect(); HOSTS],
            vvols: (0..VVOLS)
                .map(|v| {
                    Some(VvolModel {
                        key: v as u32,
                        blocks: BTreeMap::new(),
                        faulty: false,
                    })
                })
                .collect(),
            bindings: BTreeMap::new(),
            history: Vec::new(),
            next_key: VVOLS as u32,
            // The setup adds the PEs in index order: ConfigProtocolEndpoint
            // "New" events come first.
            events: vec![((0..PES).map(|pe| Ev::PeAdded { pe }).collect(), true)],
            io_counter: 0,
            expect: Expect::Nothing,
        }
    }

    fn event_count(&self) -> u64 {
        self.events.iter().map(|(b, _)| b.len() as u64).sum()
    }

    fn push_events(&mut self, batch: Vec<Ev>, ordered: bool) {
        if !batch.is_empty() {
            self.events.push((batch, ordered));
        }
    }

    fn pe_bindings(&self, pe: usize) -> usize {
        self.bindings.values().filter(|b| b.pe == pe).count()
    }

    /// Live bindings of `vvol`, oldest first.
    fn bindings_of(&self, vvol: usize) -> Vec<u64> {
        self.bindings
            .iter()
            .filter(|(_, b)| b.vvol == vvol)
            .map(|(n, _)| *n)
            .collect()
    }

    /// Active PEs of the container's array and protocol, mapped to the host
    /// and in its PE context.
    fn eligible(&self, host: usize, container: usize) -> Vec<usize> {
        self.contexts[host]
            .intersection(&self.mapped[host])
            .copied()
            .filter(|&p| {
                PE_ARRAY[p] == CONTAINER_ARRAY[container]
                    && PE_PROTOCOL[p] == CONTAINER_PROTOCOL[container]
                    && self.pes[p].state == PeSt::Active
            })
            .collect()
    }

    fn bind(&mut self, host: usize, vvols: &[usize], rebind: bool) -> Expect {
        let mut container = None;
        for &v in vvols {
            if self.vvols[v].is_some() {
                let c = CONTAINER_OF[v];
                match container {
                    None => container = Some(c),
                    Some(first) if first != c => {
                        return Expect::Bind(Err(Fail::Mixed { first, other: c }));
                    }
                    Some(_) => {}
                }
            }
        }
        let Some(container) = container else {
            return Expect::Bind(Ok(vvols
                .iter()
                .map(|v| Err(Fail::VvolNotFound(*v)))
                .collect()));
        };
        let eligible = self.eligible(host, container);
        if eligible.is_empty() {
            return Expect::Bind(Err(Fail::NoEligiblePe { host, container }));
        }
        let mut items = Vec::new();
        for &v in vvols {
            items.push(if self.vvols[v].is_none() {
                Err(Fail::VvolNotFound(v))
            } else if rebind {
                self.bind_rebind(host, v, &eligible)
            } else {
                self.bind_normal(host, v, &eligible)
            });
        }
        Expect::Bind(Ok(items))
    }

    fn attach(&mut self, host: usize, n: u64) -> Item {
        let b = self.bindings.get_mut(&n).expect("live binding");
        match b.hosts.iter_mut().find(|(h, _)| *h == host) {
            Some((_, count)) => *count += 1,
            None => b.hosts.push((host, 1)),
        }
        Item {
            binding: n,
            new: false,
            pe: b.pe,
            sid: b.sid,
            alternatives: Vec::new(),
        }
    }

    /// Normal: the host's own active binding on an eligible PE, else
    /// another host's active binding on a PE the host sees, else a new one.
    /// (A binding the host holds on a PE that left its context is not bound
    /// again.)
    fn bind_normal(&mut self, host: usize, vvol: usize, eligible: &[usize]) -> Result<Item, Fail> {
        let live = self.bindings_of(vvol);
        let active = |n: &u64| self.pes[self.bindings[n].pe].state == PeSt::Active;
        let held = live.iter().find(|n| {
            active(n) && self.bindings[*n].holds(host) && eligible.contains(&self.bindings[*n].pe)
        });
        let shared = live
            .iter()
            .find(|n| active(n) && eligible.contains(&self.bindings[*n].pe));
        if let Some(&n) = held.or(shared) {
            return Ok(self.attach(host, n));
        }
        self.bind_new(host, vvol, eligible)
    }

    /// RebindStart: a handle the host does not hold, on an active PE,
    /// preferring the PEs the host does not use for this vVol yet.
    fn bind_rebind(&mut self, host: usize, vvol: usize, eligible: &[usize]) -> Result<Item, Fail> {
        let live = self.bindings_of(vvol);
        let held: BTreeSet<usize> = live
            .iter()
            .map(|n| &self.bindings[n])
            .filter(|b| b.holds(host))
            .map(|b| b.pe)
            .collect();
        let others: Vec<usize> = eligible
            .iter()
            .copied()
            .filter(|p| !held.contains(p))
            .collect();
        if let Some(&n) = live.iter().find(|n| others.contains(&self.bindings[*n].pe)) {
            return Ok(self.attach(host, n));
        }
        if !others.is_empty() {
            // Fall back to any eligible PE when the unused ones are full.
            if let Ok(item) = self.bind_new(host, vvol, &others) {
                return Ok(item);
            }
        }
        self.bind_new(host, vvol, eligible)
    }

    fn bind_new(&mut self, host: usize, vvol: usize, pool: &[usize]) -> Result<Item, Fail> {
        let pe = pool
            .iter()
            .copied()
            .filter(|p| !self.pes[*p].exhausted())
            .min_by_key(|p| (self.pe_bindings(*p), *p))
            .ok_or(Fail::Exhausted(vvol))?;
        let (sid, alternatives) = self.pes[pe].allocate().expect("not exhausted");
        let n = self.history.len() as u64;
        self.history.push((pe, vvol));
        self.bindings.insert(
            n,
            BindingModel {
                vvol,
                pe,
                sid,
                hosts: vec![(host, 1)],
            },
        );
        Ok(Item {
            binding: n,
            new: true,
            pe,
            sid,
            alternatives,
        })
    }

    /// One unbind (all of the host's binds when `whole`). Returns the freed
    /// (PE, sid) when the binding went away; a draining PE is drained by its
    /// last binding (a failed one stays failed).
    fn release(
        &mut self,
        host: usize,
        n: u64,
        whole: bool,
        events: &mut Vec<Ev>,
    ) -> Option<(usize, u64)> {
        let b = self.bindings.get_mut(&n)?;
        let at = b.hosts.iter().position(|(h, _)| *h == host)?;
        if !whole && b.hosts[at].1 > 1 {
            b.hosts[at].1 -= 1;
            return None;
        }
        b.hosts.remove(at);
        if !b.hosts.is_empty() {
            return None;
        }
        let b = self.bindings.remove(&n).expect("present");
        if self.pe_bindings(b.pe) == 0 && self.pes[b.pe].state == PeSt::Draining {
            self.pes[b.pe].state = PeSt::Drained;
            events.push(Ev::PeDrained { pe: b.pe });
        }
        Some((b.pe, b.sid))
    }

    fn remove_pe(&mut self, pe: usize) -> Expect {
        if self.pes[pe].state == PeSt::Removed {
            return Expect::Unit(Err(Fail::PeNotFound(pe)));
        }
        let bindings = self.pe_bindings(pe);
        if bindings > 0 {
            return Expect::Unit(Err(Fail::PeBound { pe, bindings }));
        }
        self.pes[pe].state = PeSt::Removed;
        for ctx in self.contexts.iter_mut().chain(self.mapped.iter_mut()) {
            ctx.remove(&pe);
        }
        self.push_events(vec![Ev::PeRemoved { pe }], true);
        Expect::Unit(Ok(()))
    }

    fn restore_pe(&mut self, pe: usize) -> Expect {
        let state = self.pes[pe].state;
        match state {
            PeSt::Removed => Expect::Event(Err(Fail::PeNotFound(pe))),
            PeSt::Drained | PeSt::Failed => {
                self.pes[pe].state = PeSt::Active;
                let id = self.event_count() + 1;
                self.push_events(vec![Ev::PeRestored { pe }], true);
                Expect::Event(Ok(id))
            }
            PeSt::Active | PeSt::Draining => {
                Expect::Event(Err(Fail::PeStateConflict { pe, state }))
            }
        }
    }

    fn unbind(&mut self, host: usize, n: u64, ctx: Ctx) -> Expect {
        let holds = self.bindings.get(&n).is_some_and(|b| b.holds(host));
        if !holds {
            return Expect::Unit(Err(Fail::HandleNotFound { host, binding: n }));
        }
        if ctx != Ctx::RebindStart {
            let mut events = Vec::new();
            if let Some((pe, sid)) = self.release(host, n, false, &mut events) {
                self.pes[pe].free_batch(vec![sid]);
            }
            self.push_events(events, true);
        }
        Expect::Unit(Ok(()))
    }

    fn unbind_all_from_host(&mut self, host: usize) -> Expect {
        let held: Vec<u64> = self
            .bindings
            .iter()
            .filter(|(_, b)| b.holds(host))
            .map(|(n, _)| *n)
            .collect();
        let mut events = Vec::new();
        let mut freed: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for &n in &held {
            if let Some((pe, sid)) = self.release(host, n, true, &mut events) {
                freed.entry(pe).or_default().push(sid);
            }
        }
        for (pe, sids) in freed {
            self.pes[pe].free_batch(sids);
        }
        self.push_events(events, false);
        Expect::Count(Ok(held.len()))
    }

    fn unbind_from_all_hosts(&mut self, vvol: usize) -> Expect {
        if self.vvols[vvol].is_none() {
            return Expect::Count(Err(Fail::VvolNotFound(vvol)));
        }
        let live = self.bindings_of(vvol);
        let mut events = Vec::new();
        for &n in &live {
            let hosts: Vec<usize> = self.bindings[&n].hosts.iter().map(|(h, _)| *h).collect();
            for h in hosts {
                if let Some((pe, sid)) = self.release(h, n, true, &mut events) {
                    self.pes[pe].free_batch(vec![sid]);
                }
            }
        }
        self.push_events(events, true);
        Expect::Count(Ok(live.len()))
    }

    /// Map (`mapped`) or unmap a PE for a host: unknown PE NotFound;
    /// unmapping under the host's bindings ResourceInUse; a repeat changes
    /// nothing.
    fn map_pe(&mut self, host: usize, pe: usize, mapped: bool) -> Expect {
        if self.pes[pe].state == PeSt::Removed {
            return Expect::Unit(Err(Fail::PeNotFound(pe)));
        }
        if mapped {
            self.mapped[host].insert(pe);
        } else {
            if self.bindings.values().any(|b| b.pe == pe && b.holds(host)) {
                return Expect::Unit(Err(Fail::HostBoundOnPe {
                    host,
                    pes: vec![pe],
                }));
            }
            self.mapped[host].remove(&pe);
        }
        Expect::Unit(Ok(()))
    }

    /// VASA setPEContext: recorded as reported (it may shrink under live
    /// bindings, which keep working); a removed PE is a StorageFault.
    fn set_pe_context(&mut self, host: usize, pes: &BTreeSet<usize>) -> Expect {
        if let Some(&pe) = pes.iter().find(|p| self.pes[**p].state == PeSt::Removed) {
            return Expect::Unit(Err(Fail::UnknownReportedPe { host, pe }));
        }
        self.contexts[host] = pes.clone();
        Expect::Unit(Ok(()))
    }

    /// Drain (`failure` false) or fail an active PE: Rebind and then the
    /// state event when it has bindings, only the state event (Drained at
    /// once for a drain) when it has none.
    fn stop_pe(&mut self, pe: usize, failure: bool) -> Expect {
        let state = self.pes[pe].state;
        if state == PeSt::Removed {
            return Expect::Event(Err(Fail::PeNotFound(pe)));
        }
        let conflict = if failure {
            state == PeSt::Failed
        } else {
            state != PeSt::Active
        };
        if conflict {
            return Expect::Event(Err(Fail::PeStateConflict { pe, state }));
        }
        let vvols: BTreeSet<usize> = self
            .bindings
            .values()
            .filter(|b| b.pe == pe)
            .map(|b| b.vvol)
            .collect();
        let id = self.event_count() + 1;
        let mut events = Vec::new();
        if !vvols.is_empty() {
            events.push(Ev::Rebind {
                pe,
                failure,
                vvols: vvols.iter().copied().collect(),
            });
        }
        let (next, event) = match (failure, vvols.is_empty()) {
            (true, _) => (PeSt::Failed, Ev::PeFailed { pe }),
            (false, false) => (PeSt::Draining, Ev::PeDraining { pe }),
            (false, true) => (PeSt::Drained, Ev::PeDrained { pe }),
        };
        self.pes[pe].state = next;
        events.push(event);
        self.push_events(events, true);
        Expect::Event(Ok(id))
    }

    fn delete_vvol(&mut self, vvol: usize) -> Expect {
        if self.vvols[vvol].is_none() {
            return Expect::Unit(Err(Fail::VvolNotFound(vvol)));
        }
        let bindings = self.bindings_of(vvol).len();
        if bindings > 0 {
            return Expect::Unit(Err(Fail::VvolBound { vvol, bindings }));
        }
        self.vvols[vvol] = None;
        Expect::Unit(Ok(()))
    }

    fn create_vvol(&mut self, vvol: usize) -> Expect {
        if self.vvols[vvol].is_some() {
            return Expect::Unit(Err(Fail::DuplicateVvol(vvol)));
        }
        self.vvols[vvol] = Some(VvolModel {
            key: self.next_key,
            blocks: BTreeMap::new(),
            faulty: false,
        });
        self.next_key += 1;
        Expect::Unit(Ok(()))
    }

    fn io(&mut self, host: usize, n: u64, block: u64) -> Expect {
        let counter = self.io_counter;
        self.io_counter += 1;
        let (pe, _) = self.history[n as usize];
        let result = match self.pes[pe].state {
            PeSt::Removed => Err(IoFail::UnknownPe),
            PeSt::Failed => Err(IoFail::PeFailed),
            PeSt::Active | PeSt::Draining | PeSt::Drained => match self.bindings.get(&n) {
                None => Err(IoFail::NotBound),
                Some(b) if !b.holds(host) => Err(IoFail::AccessDenied),
                Some(b) => {
                    let vm = self.vvols[b.vvol].as_mut().expect("a bound vVol exists");
                    if vm.faulty {
                        Err(IoFail::Backend)
                    } else {
                        vm.blocks.insert(block, (host, counter));
                        Ok(())
                    }
                }
            },
        };
        Expect::Io(result)
    }
}

// ---------------------------------------------------------------------------
// Transitions
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    Normal,
    RebindStart,
    RebindEnd,
}

impl Ctx {
    fn to_vvol(self) -> UnbindContext {
        match self {
            Self::Normal => UnbindContext::Normal,
            Self::RebindStart => UnbindContext::RebindStart,
            Self::RebindEnd => UnbindContext::RebindEnd,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Bind {
        host: usize,
        vvols: Vec<usize>,
        rebind: bool,
    },
    /// Unbind the handle of binding number `binding` (live or stale).
    Unbind {
        host: usize,
        binding: u64,
        ctx: Ctx,
    },
    SetPeContext {
        host: usize,
        pes: BTreeSet<usize>,
    },
    /// Map (`mapped`) or unmap a PE for a host (LUN masking).
    MapPe {
        host: usize,
        pe: usize,
        mapped: bool,
    },
    DrainPe(usize),
    FailPe(usize),
    RestorePe(usize),
    RemovePe(usize),
    UnbindAllFromHost(usize),
    UnbindFromAllHosts(usize),
    DeleteVvol(usize),
    CreateVvol(usize),
    /// Write a tagged block with the handle of `binding`, read it back.
    Io {
        host: usize,
        binding: u64,
        block: u64,
    },
    /// Inject (`on`) or clear a fault failing every operation of a vVol on
    /// a faulty backend.
    Fault {
        vvol: usize,
        on: bool,
    },
}

/// (host, binding number): mostly a live binding with one of its hosts,
/// sometimes any handle ever issued with any host.
fn handle_strategy(state: &Model) -> Option<BoxedStrategy<(usize, u64)>> {
    let issued = state.history.len() as u64;
    if issued == 0 {
        return None;
    }
    let any = (0..HOSTS, 0..issued).boxed();
    let live: Vec<(u64, Vec<usize>)> = state
        .bindings
        .iter()
        .map(|(n, b)| (*n, b.hosts.iter().map(|(h, _)| *h).collect()))
        .collect();
    if live.is_empty() {
        return Some(any);
    }
    let held = (
        prop::sample::select(live),
        0..HOSTS,
        prop::bool::weighted(0.85),
    )
        .prop_map(|((n, hosts), h, own)| {
            let host = if own { hosts[h % hosts.len()] } else { h };
            (host, n)
        });
    Some(prop_oneof![3 => any, 7 => held].boxed())
}

impl ReferenceStateMachine for Model {
    type State = Self;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Self> {
        (0..3usize, 2..=4u64, 1..16u8, 0..16u8)
            .prop_map(|(small_pe, small_last, m1, m2)| {
                // Host 1 always sees the small PE, so it fills up and its
                // ids are reused.
                Self::new(small_pe, small_last, [0b1111, m1 | 1 << small_pe, m2])
            })
            .boxed()
    }

    fn transitions(state: &Self) -> BoxedStrategy<Op> {
        let bind = (
            0..HOSTS,
            0..CONTAINERS,
            prop::collection::vec(0..3usize, 1..=3),
            prop::bool::weighted(0.25),
            prop::option::weighted(0.1, 0..VVOLS),
        )
            .prop_map(|(host, c, picks, rebind, extra)| {
                let m = members(c);
                let mut vvols: Vec<usize> = picks.iter().map(|i| m[i % m.len()]).collect();
                vvols.extend(extra);
                Op::Bind {
                    host,
                    vvols,
                    rebind,
                }
            });
        let held_pes: Vec<BTreeSet<usize>> = (0..HOSTS)
            .map(|h| {
                state
                    .bindings
                    .values()
                    .filter(|b| b.holds(h))
                    .map(|b| b.pe)
                    .collect()
            })
            .collect();
        let set_context = (0..HOSTS, 0..16u8, prop::bool::weighted(0.7)).prop_map(
            move |(host, mask, keep_held)| {
                let mut pes = mask_to_pes(mask);
                if keep_held {
                    pes.extend(held_pes[host].iter().copied());
                }
                Op::SetPeContext { host, pes }
            },
        );
        let common = prop_oneof![
            30 => bind,
            5 => set_context,
            3 => (0..HOSTS, 0..PES, prop::bool::weighted(0.6))
                .prop_map(|(host, pe, mapped)| Op::MapPe { host, pe, mapped }),
            2 => (0..PES).prop_map(Op::DrainPe),
            1 => (0..PES).prop_map(Op::FailPe),
            2 => (0..PES).prop_map(Op::RestorePe),
            1 => (0..PES).prop_map(Op::RemovePe),
            6 => (0..HOSTS).prop_map(Op::UnbindAllFromHost),
            3 => (0..VVOLS).prop_map(Op::UnbindFromAllHosts),
            5 => (0..VVOLS).prop_map(Op::DeleteVvol),
            5 => (0..VVOLS).prop_map(Op::CreateVvol),
            4 => (0..VVOLS / 2, prop::bool::weighted(0.6))
                .prop_map(|(i, on)| Op::Fault { vvol: 2 * i + 1, on }),
        ];
        let Some(handles) = handle_strategy(state) else {
            return common.boxed();
        };
        let ctx = prop_oneof![
            6 => Just(Ctx::Normal),
            1 => Just(Ctx::RebindStart),
            3 => Just(Ctx::RebindEnd),
        ];
        let unbind = (handles.clone(), ctx).prop_map(|((host, binding), ctx)| Op::Unbind {
            host,
            binding,
            ctx,
        });
        let io = (handles, 0..BLOCKS).prop_map(|((host, binding), block)| Op::Io {
            host,
            binding,
            block,
        });
        prop_oneof![54 => common, 22 => unbind, 20 => io].boxed()
    }

    fn preconditions(state: &Self, op: &Op) -> bool {
        match op {
            Op::Unbind { binding, .. } | Op::Io { binding, .. } => {
                (*binding as usize) < state.history.len()
            }
            _ => true,
        }
    }

    fn apply(mut state: Self, op: &Op) -> Self {
        state.expect = match op {
            Op::Bind {
                host,
                vvols,
                rebind,
            } => state.bind(*host, vvols, *rebind),
            Op::Unbind { host, binding, ctx } => state.unbind(*host, *binding, *ctx),
            Op::SetPeContext { host, pes } => state.set_pe_context(*host, pes),
            Op::MapPe { host, pe, mapped } => state.map_pe(*host, *pe, *mapped),
            Op::DrainPe(pe) => state.stop_pe(*pe, false),
            Op::FailPe(pe) => state.stop_pe(*pe, true),
            Op::RestorePe(pe) => state.restore_pe(*pe),
            Op::RemovePe(pe) => state.remove_pe(*pe),
            Op::UnbindAllFromHost(host) => state.unbind_all_from_host(*host),
            Op::UnbindFromAllHosts(vvol) => state.unbind_from_all_hosts(*vvol),
            Op::DeleteVvol(vvol) => state.delete_vvol(*vvol),
            Op::CreateVvol(vvol) => state.create_vvol(*vvol),
            Op::Io {
                host,
                binding,
                block,
            } => state.io(*host, *binding, *block),
            Op::Fault { vvol, on } => {
                if let Some(vm) = state.vvols[*vvol].as_mut() {
                    vm.faulty = *on;
                }
                Expect::Nothing
            }
        };
        state
    }
}

// ---------------------------------------------------------------------------
// System under test
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Sut {
    plane: ControlPlane,
    router: Arc<Router>,
    containers: [ContainerId; CONTAINERS],
    pes: [PeId; PES],
    hosts: [HostId; HOSTS],
    /// Real handle of every binding number the model issued.
    handles: BTreeMap<u64, BindHandle>,
    /// Per PE: model secondary id -> real one, where they differ.
    sid_map: [BTreeMap<u64, u64>; PES],
    /// Last generation of every real slot ever bound.
    last_gen: BTreeMap<(usize, u64), u32>,
    /// The faulty backend of each odd-numbered vVol, the memory under it,
    /// and its injected fault.
    faulty: BTreeMap<usize, FaultyVvol>,
}

#[derive(Debug)]
struct FaultyVvol {
    backend: Arc<FaultyBackend>,
    memory: Arc<MemoryBackend>,
    fault: Option<FaultId>,
}

/// The spec of vVol `v`, with its faulty backend for odd `v`.
fn vvol_spec(v: usize) -> (VvolSpec, Option<FaultyVvol>) {
    let spec = VvolSpec::new(vvol_type(v), MIB).with_id(vvol_id(v));
    if !on_faulty_backend(v) {
        return (spec, None);
    }
    let memory = Arc::new(MemoryBackend::new(MIB, BLOCK as u32).unwrap());
    let backend = Arc::new(FaultyBackend::new(Arc::clone(&memory) as _));
    (
        spec,
        Some(FaultyVvol {
            backend,
            memory,
            fault: None,
        }),
    )
}

/// Creates vVol `v` from [`vvol_spec`]: on its faulty backend when it has one.
fn create(
    plane: &ControlPlane,
    container: ContainerId,
    spec: VvolSpec,
    faulty: Option<&FaultyVvol>,
) -> Result<VvolId, ControlError> {
    match faulty {
        None => plane.create_vvol(container, spec),
        Some(f) => plane.create_vvol_with_backend(
            container,
            spec,
            Arc::clone(&f.backend) as _,
            vvol::BackendKey::new("faulty").unwrap(),
        ),
    }
}

fn build(model: &Model) -> Sut {
    const GIB: u64 = 1 << 30;
    let plane = ControlPlane::new(Limits::default());
    let a0 = plane
        .add_array(ArraySpec::new("array-scsi", COMPANY))
        .unwrap();
    let a1 = plane
        .add_array(ArraySpec::new("array-nfs", 0x00_3C_4D))
        .unwrap();
    let containers = [
        plane
            .add_container(a0, ContainerSpec::new("gold", Protocol::Scsi, GIB))
            .unwrap(),
        plane
            .add_container(a0, ContainerSpec::new("silver", Protocol::Scsi, GIB))
            .unwrap(),
        plane
            .add_container(a1, ContainerSpec::new("bronze", Protocol::Nfs, GIB))
            .unwrap(),
    ];
    let mut pes = Vec::new();
    for i in 0..3u16 {
        let naa = Naa::from_parts(COMPANY, 0x5EED_0000 + u64::from(i), 1).unwrap();
        let mut spec = PeSpec::scsi(naa, 254 + i);
        if usize::from(i) == model.small_pe {
            let space =
                SecondaryIdSpace::new(SubsidiaryAddressing::Simple, 1, model.small_last).unwrap();
            spec = spec.with_secondary_ids(space);
        }
        pes.push(plane.add_pe(a0, spec).unwrap());
    }
    pes.push(
        plane
            .add_pe(a1, PeSpec::nfs("192.0.2.10", "/vvol-pe", NfsVersion::V3))
            .unwrap(),
    );
    let pes: [PeId; PES] = pes.try_into().unwrap();
    let mut hosts = Vec::new();
    for (h, mask) in model.initial_contexts.iter().enumerate() {
        let host = plane.add_host(&format!("esx-{h:02}")).unwrap();
        let ctx: Vec<PeId> = mask_to_pes(*mask).iter().map(|p| pes[*p]).collect();
        // Every PE is mapped to every host (LUN masking lets each see all);
        // the PE context decides which ones take its binds.
        for pe in &pes {
            plane.map_pe(host, *pe).unwrap();
        }
        plane.set_pe_context(host, &ctx).unwrap();
        hosts.push(host);
    }
    let mut faulty = BTreeMap::new();
    for v in 0..VVOLS {
        let (spec, backend) = vvol_spec(v);
        let id = create(&plane, containers[CONTAINER_OF[v]], spec, backend.as_ref()).unwrap();
        assert_eq!(id, vvol_id(v));
        if let Some(backend) = backend {
            faulty.insert(v, backend);
        }
    }
    Sut {
        router: plane.router(),
        plane,
        containers,
        pes,
        hosts: hosts.try_into().unwrap(),
        handles: BTreeMap::new(),
        sid_map: Default::default(),
        last_gen: BTreeMap::new(),
        faulty,
    }
}

impl Sut {
    fn pe_index(&self, pe: PeId) -> usize {
        self.pes.iter().position(|p| *p == pe).expect("known PE")
    }

    fn real_sid(&self, pe: usize, sid: u64) -> u64 {
        self.sid_map[pe].get(&sid).copied().unwrap_or(sid)
    }

    /// Checks a successful bind item against the model and learns its handle.
    fn accept(&mut self, item: &Item, got: BindHandle) {
        if !item.new {
            assert_eq!(
                got, self.handles[&item.binding],
                "bind should return the existing handle of binding #{}",
                item.binding
            );
            return;
        }
        assert_eq!(
            got.pe, self.pes[item.pe],
            "PE of new binding #{}",
            item.binding
        );
        let expected = self.real_sid(item.pe, item.sid);
        if got.secondary_id.0 != expected {
            let other = item
                .alternatives
                .iter()
                .copied()
                .find(|m| self.real_sid(item.pe, *m) == got.secondary_id.0)
                .unwrap_or_else(|| {
                    panic!(
                        "new binding #{} got secondary id {} on PE {}, expected {} \
                         (or one of model ids {:?} freed in the same call)",
                        item.binding, got.secondary_id, item.pe, expected, item.alternatives
                    )
                });
            // The two ids were freed together: swap their real slots.
            let map = &mut self.sid_map[item.pe];
            map.insert(item.sid, got.secondary_id.0);
            map.insert(other, expected);
        }
        let slot = (item.pe, got.secondary_id.0);
        let last = self.last_gen.get(&slot).copied().unwrap_or(0);
        assert_eq!(
            got.generation,
            Generation(last + 1),
            "generation of slot {slot:?} counts its binds"
        );
        self.last_gen.insert(slot, got.generation.0);
        self.handles.insert(item.binding, got);
    }

    fn check_error(&self, got: &ControlError, want: &Fail) {
        let v = vvol_id;
        match (want, got) {
            (Fail::VvolNotFound(a), ControlError::VvolNotFound(b)) => assert_eq!(v(*a), *b),
            (
                Fail::Mixed { first, other },
                ControlError::MixedContainers { first: f, other: o },
            ) => {
                assert_eq!((self.containers[*first], self.containers[*other]), (*f, *o));
            }
            (
                Fail::NoEligiblePe { host, container },
                ControlError::NoEligiblePe {
                    host: h,
                    container: c,
                    ..
                },
            ) => assert_eq!((self.hosts[*host], self.containers[*container]), (*h, *c)),
            (Fail::Exhausted(a), ControlError::SecondaryIdsExhausted { vvol }) => {
                assert_eq!(v(*a), *vvol);
            }
            (
                Fail::HandleNotFound { host, binding },
                ControlError::HandleNotFound { host: h, handle },
            ) => {
                assert_eq!((self.hosts[*host], self.handles[binding]), (*h, *handle));
            }
            (Fail::PeNotFound(a), ControlError::PeNotFound(b)) => assert_eq!(self.pes[*a], *b),
            (
                Fail::UnknownReportedPe { host, pe },
                ControlError::UnknownReportedPe { host: h, pe: p },
            ) => {
                assert_eq!((self.hosts[*host], self.pes[*pe]), (*h, *p));
            }
            (Fail::HostBoundOnPe { host, pes }, ControlError::HostBoundOnPe { host: h, pe }) => {
                assert_eq!(self.hosts[*host], *h);
                assert!(
                    pes.contains(&self.pe_index(*pe)),
                    "{pe} is not one of {pes:?}"
                );
            }
            (
                Fail::VvolBound { vvol, bindings },
                ControlError::VvolBound {
                    vvol: a,
                    bindings: b,
                },
            ) => {
                assert_eq!((v(*vvol), *bindings), (*a, *b));
            }
            (Fail::DuplicateVvol(a), ControlError::DuplicateVvol(b)) => assert_eq!(v(*a), *b),
            (
                Fail::PeStateConflict { pe, state },
                ControlError::PeStateConflict {
                    pe: p, state: s, ..
                },
            ) => assert_eq!((self.pes[*pe], pe_state(*state)), (*p, *s)),
            (Fail::PeBound { pe, bindings }, ControlError::PeBound { pe: p, bindings: b }) => {
                assert_eq!((self.pes[*pe], *bindings as u64), (*p, *b))
            }
            _ => panic!("expected {want:?}, got {got:?} ({got})"),
        }
        assert_eq!(got.fault(), want.fault(), "VASA fault of {got}");
    }

    fn check_unit<T: std::fmt::Debug>(
        &self,
        what: &str,
        got: Result<T, ControlError>,
        want: &Expect,
    ) -> Option<T> {
        let want = match want {
            Expect::Unit(r) => r.as_ref().map(|_| ()),
            Expect::Count(r) => r.as_ref().map(|_| ()),
            Expect::Event(r) => r.as_ref().map(|_| ()),
            other => panic!("{what}: model expectation {other:?}"),
        };
        match (want, got) {
            (Ok(()), Ok(value)) => Some(value),
            (Err(fail), Err(e)) => {
                self.check_error(&e, fail);
                None
            }
            (Ok(()), Err(e)) => panic!("{what}: expected success, got {e:?} ({e})"),
            (Err(fail), Ok(value)) => panic!("{what}: expected {fail:?}, got Ok({value:?})"),
        }
    }
}

/// The plane's state for a model state of a PE that exists.
fn pe_state(state: PeSt) -> PeState {
    match state {
        PeSt::Active => PeState::Active,
        PeSt::Draining => PeState::Draining,
        PeSt::Drained => PeState::Drained,
        PeSt::Failed => PeState::Failed,
        PeSt::Removed => panic!("a removed PE has no state"),
    }
}

fn io_fail(e: &RouteError) -> IoFail {
    match e {
        RouteError::UnknownPe { .. } => IoFail::UnknownPe,
        RouteError::PeFailed { .. } => IoFail::PeFailed,
        RouteError::NotBound { .. } => IoFail::NotBound,
        RouteError::AccessDenied { .. } => IoFail::AccessDenied,
        RouteError::Backend { .. } => IoFail::Backend,
        other => panic!("unexpected route error {other:?} ({other})"),
    }
}

fn event_of(sut: &Sut, kind: &EventKind) -> Ev {
    match kind {
        EventKind::Rebind {
            array,
            pe,
            reason,
            vvols,
        } => {
            let p = sut.pe_index(*pe);
            assert_eq!(array.0 as usize, PE_ARRAY[p], "array of {pe}");
            let vvols: Vec<usize> = vvols
                .iter()
                .map(|id| (0..VVOLS).find(|v| vvol_id(*v) == *id).expect("known vVol"))
                .collect();
            Ev::Rebind {
                pe: p,
                failure: *reason == RebindReason::Failure,
                vvols,
            }
        }
        EventKind::PeDraining { array, pe }
        | EventKind::PeDrained { array, pe }
        | EventKind::PeFailed { array, pe }
        | EventKind::PeRestored { array, pe }
        | EventKind::PeRemoved { array, pe }
        | EventKind::PeAdded { array, pe } => {
            let p = sut.pe_index(*pe);
            assert_eq!(array.0 as usize, PE_ARRAY[p], "array of {pe}");
            match kind {
                EventKind::PeDraining { .. } => Ev::PeDraining { pe: p },
                EventKind::PeDrained { .. } => Ev::PeDrained { pe: p },
                EventKind::PeFailed { .. } => Ev::PeFailed { pe: p },
                EventKind::PeRestored { .. } => Ev::PeRestored { pe: p },
                EventKind::PeAdded { .. } => Ev::PeAdded { pe: p },
                _ => Ev::PeRemoved { pe: p },
            }
        }
        other => panic!("unexpected event {other:?}"),
    }
}

struct ControlPlaneModel;

impl StateMachineTest for ControlPlaneModel {
    type SystemUnderTest = Sut;
    type Reference = Model;

    fn init_test(model: &Model) -> Sut {
        build(model)
    }

    fn apply(mut sut: Sut, model: &Model, op: Op) -> Sut {
        let want = &model.expect;
        match op {
            Op::Bind {
                host,
                vvols,
                rebind,
            } => {
                let ids: Vec<VvolId> = vvols.iter().map(|v| vvol_id(*v)).collect();
                let context = if rebind {
                    BindContext::RebindStart
                } else {
                    BindContext::Normal
                };
                let got = sut.plane.bind(sut.hosts[host], &ids, context);
                let Expect::Bind(want) = want else {
                    panic!("bind: model expectation {want:?}");
                };
                match (want, got) {
                    (Err(fail), Err(e)) => sut.check_error(&e, fail),
                    (Err(fail), Ok(items)) => panic!("bind: expected {fail:?}, got {items:?}"),
                    (Ok(_), Err(e)) => panic!("bind: expected per-item results, got {e:?} ({e})"),
                    (Ok(want_items), Ok(items)) => {
                        assert_eq!(items.len(), want_items.len());
                        for (i, (w, g)) in want_items.iter().zip(items).enumerate() {
                            match (w, g) {
                                (Ok(item), Ok(handle)) => sut.accept(item, handle),
                                (Err(fail), Err(e)) => sut.check_error(&e, fail),
                                (Ok(item), Err(e)) => {
                                    panic!("bind item {i}: expected {item:?}, got {e:?} ({e})")
                                }
                                (Err(fail), Ok(h)) => {
                                    panic!("bind item {i}: expected {fail:?}, got handle {h}")
                                }
                            }
                        }
                    }
                }
            }
            Op::Unbind { host, binding, ctx } => {
                let handle = sut.handles[&binding];
                let got = sut.plane.unbind(sut.hosts[host], handle, ctx.to_vvol());
                sut.check_unit("unbind", got, want);
            }
            Op::SetPeContext { host, pes } => {
                let ids: Vec<PeId> = pes.iter().map(|p| sut.pes[*p]).collect();
                let got = sut.plane.set_pe_context(sut.hosts[host], &ids);
                sut.check_unit("set_pe_context", got, want);
            }
            Op::MapPe { host, pe, mapped } => {
                let (h, p) = (sut.hosts[host], sut.pes[pe]);
                let got = if mapped {
                    sut.plane.map_pe(h, p)
                } else {
                    sut.plane.unmap_pe(h, p)
                };
                sut.check_unit("map_pe/unmap_pe", got, want);
                assert_eq!(
                    sut.plane.router().is_mapped(h, p),
                    sut.plane.host(h).unwrap().mapped_pes.contains(&p),
                    "the router publishes the access rule"
                );
            }
            Op::DrainPe(pe) | Op::FailPe(pe) => {
                let got = if matches!(op, Op::DrainPe(_)) {
                    sut.plane.drain_pe(sut.pes[pe])
                } else {
                    sut.plane.fail_pe(sut.pes[pe])
                };
                if let (Some(id), Expect::Event(Ok(want_id))) =
                    (sut.check_unit("drain/fail", got, want), want)
                {
                    assert_eq!(id, EventId(*want_id), "id of the Rebind event");
                }
            }
            Op::RestorePe(pe) => {
                let got = sut.plane.restore_pe(sut.pes[pe]);
                if let (Some(id), Expect::Event(Ok(want_id))) =
                    (sut.check_unit("restore_pe", got, want), want)
                {
                    assert_eq!(id, EventId(*want_id), "id of the PeRestored event");
                }
            }
            Op::RemovePe(pe) => {
                let got = sut.plane.remove_pe(sut.pes[pe]);
                sut.check_unit("remove_pe", got, want);
            }
            Op::UnbindAllFromHost(host) => {
                let got = sut.plane.unbind_all_from_host(sut.hosts[host]);
                if let (Some(n), Expect::Count(Ok(want_n))) =
                    (sut.check_unit("unbind_all_from_host", got, want), want)
                {
                    assert_eq!(n, *want_n, "bindings the host held");
                }
            }
            Op::UnbindFromAllHosts(vvol) => {
                let got = sut.plane.unbind_from_all_hosts(vvol_id(vvol));
                if let (Some(n), Expect::Count(Ok(want_n))) =
                    (sut.check_unit("unbind_from_all_hosts", got, want), want)
                {
                    assert_eq!(n, *want_n, "bindings the vVol had");
                }
            }
            Op::DeleteVvol(vvol) => {
                let got = sut.plane.delete_vvol(vvol_id(vvol));
                sut.check_unit("delete_vvol", got, want);
            }
            Op::CreateVvol(vvol) => {
                let (spec, backend) = vvol_spec(vvol);
                let got = create(
                    &sut.plane,
                    sut.containers[CONTAINER_OF[vvol]],
                    spec,
                    backend.as_ref(),
                );
                if let Some(id) = sut.check_unit("create_vvol", got, want) {
                    assert_eq!(id, vvol_id(vvol));
                    if let Some(backend) = backend {
                        sut.faulty.insert(vvol, backend);
                    }
                }
            }
            Op::Fault { vvol, on } => {
                let want_on = model.vvols[vvol].as_ref().is_some_and(|vm| vm.faulty);
                assert_eq!(want_on, on && model.vvols[vvol].is_some());
                let f = sut.faulty.get_mut(&vvol).expect("odd vVols are faulty");
                if model.vvols[vvol].is_some() {
                    match (f.fault, on) {
                        (None, true) => {
                            let fault =
                                Fault::any(FaultTrigger::Always, FaultKind::Io(ErrorKind::Other));
                            f.fault = Some(f.backend.add_fault(fault).unwrap());
                        }
                        (Some(id), false) => {
                            assert!(f.backend.remove_fault(id));
                            f.fault = None;
                        }
                        _ => {}
                    }
                }
            }
            Op::Io {
                host,
                binding,
                block,
            } => {
                let Expect::Io(want) = want else {
                    panic!("io: model expectation {want:?}");
                };
                let handle = sut.handles[&binding];
                let (_, vvol) = model.history[binding as usize];
                let data = payload(vvol, host, model.io_counter - 1);
                let offset = block * BLOCK as u64;
                let h = sut.hosts[host];
                let got = sut.router.write(h, handle, offset, &data, false);
                match (want, got) {
                    (Ok(()), Ok(())) => {
                        let mut back = [0u8; BLOCK];
                        sut.router
                            .read(h, handle, offset, &mut back)
                            .expect("read back through the same handle");
                        assert_eq!(back, data, "read back what was written");
                    }
                    (Err(fail), Err(e)) => {
                        assert_eq!(io_fail(&e), *fail, "{e}");
                        if let RouteError::Backend { vvol: failed, .. } = e {
                            assert_eq!(failed, vvol_id(vvol), "the failing vVol");
                        }
                    }
                    (Ok(()), Err(e)) => panic!("io: expected success, got {e:?} ({e})"),
                    (Err(fail), Ok(())) => panic!("io: expected {fail:?}, write succeeded"),
                }
            }
        }
        sut
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        sut.plane.check_invariants();
        check_pes(sut, model);
        check_hosts(sut, model);
        check_vvols(sut, model);
        check_router(sut, model);
        check_events(sut, model);
    }
}

/// (handle, vVol, hosts sorted) of one binding, as the queries report it.
type Row = (BindHandle, VvolId, Vec<(HostId, u32)>);

fn model_rows<'a>(
    sut: &Sut,
    model: &'a Model,
    keep: impl Fn(&BindingModel) -> bool + 'a,
) -> Vec<Row> {
    let mut rows: Vec<Row> = model
        .bindings
        .iter()
        .filter(|(_, b)| keep(b))
        .map(|(n, b)| {
            let mut hosts: Vec<(HostId, u32)> =
                b.hosts.iter().map(|(h, c)| (sut.hosts[*h], *c)).collect();
            hosts.sort_unstable();
            (sut.handles[n], vvol_id(b.vvol), hosts)
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    rows
}

fn real_rows(infos: Vec<vvol::BindingInfo>) -> Vec<Row> {
    let rows: Vec<Row> = infos
        .into_iter()
        .map(|b| {
            let mut hosts = b.hosts;
            hosts.sort_unstable();
            (b.handle, b.vvol, hosts)
        })
        .collect();
    assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "sorted by handle");
    rows
}

fn check_pes(sut: &Sut, model: &Model) {
    for (p, pm) in model.pes.iter().enumerate() {
        let id = sut.pes[p];
        if pm.state == PeSt::Removed {
            assert!(matches!(sut.plane.pe(id), Err(ControlError::PeNotFound(x)) if x == id));
            assert!(matches!(
                sut.plane.bindings_for_pe(id),
                Err(ControlError::PeNotFound(_))
            ));
            continue;
        }
        let pe = sut.plane.pe(id).unwrap();
        assert_eq!(pe.state, pe_state(pm.state), "state of {id}");
        assert_eq!(pe.array.0 as usize, PE_ARRAY[p]);
        assert_eq!(
            (pe.secondary_ids.first(), pe.secondary_ids.last()),
            (pm.first, pm.last)
        );
        assert_eq!(pe.bindings, model.pe_bindings(p) as u64, "bindings of {id}");
        let infos = sut.plane.bindings_for_pe(id).unwrap();
        let slots: BTreeSet<(PeId, SecondaryId)> = infos
            .iter()
            .map(|b| (b.handle.pe, b.handle.secondary_id))
            .collect();
        assert_eq!(
            slots.len(),
            infos.len(),
            "(PE, secondary id) unique on {id}"
        );
        for b in &infos {
            assert_eq!(b.handle.pe, id);
            assert!(pe.secondary_ids.contains(b.handle.secondary_id));
            let vv = sut.plane.vvol(b.vvol).unwrap();
            let container = sut.plane.container(vv.container).unwrap();
            assert_eq!(container.array, pe.array, "binding PE in the vVol's array");
            assert_eq!(container.protocol, pe.transport.protocol());
            for (h, count) in &b.hosts {
                assert!(*count > 0);
                let host = sut.plane.host(*h).unwrap();
                assert!(host.mapped_pes.contains(&id), "{id} mapped to {h}");
            }
        }
        assert_eq!(real_rows(infos), model_rows(sut, model, |b| b.pe == p));
    }
    for a in 0..2 {
        let want: Vec<PeId> = (0..PES)
            .filter(|p| PE_ARRAY[*p] == a && model.pes[*p].state != PeSt::Removed)
            .map(|p| sut.pes[p])
            .collect();
        assert_eq!(
            sut.plane.pes_for_array(vvol::ArrayId(a as u32)).unwrap(),
            want
        );
    }
}

fn check_hosts(sut: &Sut, model: &Model) {
    for h in 0..HOSTS {
        let host = sut.plane.host(sut.hosts[h]).unwrap();
        let ctx: Vec<PeId> = model.contexts[h].iter().map(|p| sut.pes[*p]).collect();
        assert_eq!(host.pe_context, ctx, "PE context of host {h}");
        let mapped: Vec<PeId> = model.mapped[h].iter().map(|p| sut.pes[*p]).collect();
        assert_eq!(host.mapped_pes, mapped, "PEs mapped to host {h}");
        assert_eq!(
            *sut.plane.router().mapped_pes(sut.hosts[h]),
            mapped,
            "router's access rules of host {h}"
        );
        let rows = real_rows(sut.plane.bindings_for_host(sut.hosts[h]).unwrap());
        assert_eq!(host.bindings, rows.len());
        assert_eq!(
            rows,
            model_rows(sut, model, |b| b.holds(h)),
            "bindings of host {h}"
        );
    }
}

fn check_vvols(sut: &Sut, model: &Model) {
    for (v, vm) in model.vvols.iter().enumerate() {
        let id = vvol_id(v);
        let Some(vm) = vm else {
            assert!(matches!(
                sut.plane.vvol(id),
                Err(ControlError::VvolNotFound(_))
            ));
            continue;
        };
        let vv = sut.plane.vvol(id).unwrap();
        assert_eq!(vv.key, VvolKey(vm.key), "router key of vVol {v}");
        assert_eq!(sut.plane.vvol_by_key(vv.key), Some(id));
        assert_eq!(vv.container, sut.containers[CONTAINER_OF[v]]);
        let rows = real_rows(sut.plane.bindings_for_vvol(id).unwrap());
        assert_eq!(vv.bindings, rows.len());
        assert_eq!(
            rows,
            model_rows(sut, model, |b| b.vvol == v),
            "bindings of vVol {v}"
        );
        // Every routed write landed on the vVol its handle was issued for.
        for block in 0..BLOCKS {
            let mut got = [0u8; BLOCK];
            let offset = block * BLOCK as u64;
            match sut.faulty.get(&v) {
                // Under the fault: what the failed writes left behind.
                Some(f) => f.memory.read_at(offset, &mut got).unwrap(),
                None => sut
                    .plane
                    .backend(id)
                    .unwrap()
                    .read_at(offset, &mut got)
                    .unwrap(),
            }
            let want = vm
                .blocks
                .get(&block)
                .map_or([0u8; BLOCK], |(host, counter)| payload(v, *host, *counter));
            if got != want {
                let tag = u128::from_be_bytes(got[..16].try_into().unwrap());
                panic!(
                    "block {block} of vVol {v} holds a write tagged {:?} (counter {}), expected {:?}",
                    VvolId(tag),
                    u64::from_le_bytes(got[16..24].try_into().unwrap()),
                    vm.blocks.get(&block)
                );
            }
        }
    }
}

fn check_router(sut: &Sut, model: &Model) {
    let mut live: BTreeMap<(usize, u64), (u64, &BindingModel)> = BTreeMap::new();
    for (n, b) in &model.bindings {
        let handle = sut.handles[n];
        assert_eq!(
            handle.secondary_id.0,
            sut.real_sid(b.pe, b.sid),
            "model id {} of binding #{n} maps to its real id",
            b.sid
        );
        live.insert((b.pe, handle.secondary_id.0), (*n, b));
    }
    for &(p, sid) in sut.last_gen.keys() {
        let got = sut.router.resolve(sut.pes[p], SecondaryId(sid));
        let want = match (live.get(&(p, sid)), model.pes[p].state) {
            (Some((n, b)), PeSt::Active | PeSt::Draining) => {
                let key = model.vvols[b.vvol].as_ref().expect("bound vVol exists").key;
                Some(Resolved {
                    vvol: VvolKey(key),
                    generation: sut.handles[n].generation,
                })
            }
            _ => None,
        };
        assert_eq!(got, want, "resolve(PE {p}, {sid})");
    }
    // Slots never handed out and ids outside the range resolve to nothing.
    for (p, pm) in model.pes.iter().enumerate() {
        let never = pm.next_fresh.min(pm.last + 1);
        for sid in [0, never, pm.last + 1] {
            if !sut.last_gen.contains_key(&(p, sid)) {
                assert_eq!(sut.router.resolve(sut.pes[p], SecondaryId(sid)), None);
            }
        }
    }
}

fn check_events(sut: &Sut, model: &Model) {
    let events = sut.plane.events_since(EventId(0)).unwrap();
    assert_eq!(sut.plane.last_event_id(), EventId(events.len() as u64));
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.id, EventId(i as u64 + 1), "event ids count from 1");
    }
    let mut got = events.iter().map(|e| event_of(sut, &e.kind));
    for (batch, ordered) in &model.events {
        let mut real: Vec<Ev> = got.by_ref().take(batch.len()).collect();
        let mut want = batch.clone();
        if !ordered {
            real.sort();
            want.sort();
        }
        assert_eq!(real, want, "events");
    }
    let extra: Vec<Ev> = got.collect();
    assert!(extra.is_empty(), "unexpected events {extra:?}");
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512)
}

prop_state_machine! {
    #![proptest_config(Config {
        cases: cases(),
        // Failures print the minimal sequence; do not write regression files
        // into the source tree.
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn control_plane_matches_model(sequential 1..=64 => ControlPlaneModel);
}

/// Regression test for a disagreement between `ControlPlane::bind` and its
/// documentation, found by the model above.
///
/// A host holds vVol A through PE 0 (plenty of free ids). The only other
/// eligible PE, PE 1, has a single secondary id, already used by vVol C.
/// `bind(host, [A], RebindStart)` should give the host a new handle on an
/// active PE; PE 0 can provide one (a new secondary id). The plane instead
/// tries only the PEs the host does not use yet (`bind_rebind` in
/// `src/binding/bind.rs` passes `others` as the whole pool to `bind_new`) and
/// fails the item with `SecondaryIdsExhausted`, whose documentation says
/// "every eligible PE is out of secondary ids" - PE 0 is eligible and is not.
#[test]
fn rebind_start_falls_back_to_a_held_pe_when_the_other_pes_are_full() {
    let plane = ControlPlane::new(Limits::default());
    let array = plane.add_array(ArraySpec::new("array-a", COMPANY)).unwrap();
    let gold = plane
        .add_container(array, ContainerSpec::new("gold", Protocol::Scsi, 1 << 30))
        .unwrap();
    let roomy = plane
        .add_pe(
            array,
            PeSpec::scsi(Naa::from_parts(COMPANY, 1, 1).unwrap(), 254),
        )
        .unwrap();
    let one_id = SecondaryIdSpace::new(SubsidiaryAddressing::Simple, 1, 1).unwrap();
    let tiny = plane
        .add_pe(
            array,
            PeSpec::scsi(Naa::from_parts(COMPANY, 2, 1).unwrap(), 255).with_secondary_ids(one_id),
        )
        .unwrap();
    let host = plane.add_host("esx-01").unwrap();
    for pe in [roomy, tiny].iter() {
        plane.map_pe(host, *pe).unwrap();
    }
    plane.set_pe_context(host, &[roomy, tiny]).unwrap();
    let a = plane
        .create_vvol(gold, VvolSpec::new(VvolType::Data, MIB))
        .unwrap();
    let c = plane
        .create_vvol(gold, VvolSpec::new(VvolType::Data, MIB))
        .unwrap();

    // Fewest bindings, lowest PE id on a tie: A goes to PE 0, C to PE 1,
    // which is then out of ids.
    let old = plane
        .bind(host, &[a], BindContext::Normal)
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(old.pe, roomy);
    let other = plane
        .bind(host, &[c], BindContext::Normal)
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(other.pe, tiny);

    let rebound = plane
        .bind(host, &[a], BindContext::RebindStart)
        .unwrap()
        .remove(0);
    let new = rebound.unwrap_or_else(|e| {
        panic!(
            "RebindStart should give a new handle on PE {roomy}, which has free ids; \
             got {e:?} ({e})"
        )
    });
    assert_ne!(new, old, "a handle other than the one the host holds");
    assert_eq!(new.pe, roomy);
    assert_eq!(plane.pe(roomy).unwrap().state, PeState::Active);
    plane.unbind(host, old, UnbindContext::RebindEnd).unwrap();
    let router = plane.router();
    router.write(host, new, 0, &[0x5A; BLOCK], false).unwrap();
    assert!(router.write(host, old, 0, &[0x5A; BLOCK], false).is_err());
    plane.check_invariants();
}
