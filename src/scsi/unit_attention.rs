//! Per-I_T-nexus state: unit attention conditions and mode parameters.
//!
//! Conditions are computed when a command arrives, from generation
//! counters the target and router bump, so establishing a condition for
//! every nexus costs one atomic increment:
//! - 29h/00h POWER ON, RESET: the nexus is new or the target was reset;
//! - 2Ah/06h ASYMMETRIC ACCESS STATE CHANGED: an ALUA state changed;
//! - 3Fh/0Eh REPORTED LUNS DATA HAS CHANGED: the (secondary id, generation)
//!   set this host holds behind the addressed PE differs from the last one
//!   it was told about (when the nexus started, by REPORT LUNS, or by an
//!   earlier 3Fh/0Eh);
//! - 2Ah/09h CAPACITY DATA HAS CHANGED: the addressed SLU grew since this
//!   nexus last addressed it.
//!
//! One condition is reported per command, in that order; reporting clears it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use super::Sense;
use super::mode::ModeParams;
use super::target::{ItNexus, Lu, ScsiTarget};
use crate::model::{BindHandle, Generation, PeId, SecondaryId};

/// What the host was last told about one PE.
#[derive(Debug, Default)]
struct PeView {
    changes: u64,
    luns: BTreeSet<(SecondaryId, Generation)>,
}

#[derive(Debug)]
struct Inner {
    power_on: bool,
    reset_seen: u64,
    alua_seen: u64,
    pes: HashMap<PeId, PeView>,
    capacity: HashMap<BindHandle, u64>,
    mode: ModeParams,
}

/// The state of one I_T nexus.
#[derive(Debug)]
pub(crate) struct NexusState {
    /// Commands of this nexus in the task set.
    pub(crate) in_flight: AtomicU32,
    inner: Mutex<Inner>,
}

/// The (secondary id, generation) pairs `host` holds behind `pe`.
fn view(target: &ScsiTarget, nexus: ItNexus, pe: PeId) -> PeView {
    let changes = target.router.binding_changes(pe).unwrap_or(0);
    let luns = target
        .plane
        .bindings_for_pe(pe)
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b.hosts.iter().any(|(h, _)| *h == nexus.host))
        .map(|b| (b.handle.secondary_id, b.handle.generation))
        .collect();
    PeView { changes, luns }
}

impl NexusState {
    pub(crate) fn new(target: &ScsiTarget) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            inner: Mutex::new(Inner {
                power_on: true,
                reset_seen: target.reset_generation.load(Ordering::Acquire),
                alua_seen: target.alua_generation.load(Ordering::Acquire),
                pes: HashMap::new(),
                capacity: HashMap::new(),
                mode: ModeParams::default(),
            }),
        }
    }

    /// State for a nexus past [`MAX_NEXUSES`](super::limits::MAX_NEXUSES):
    /// not kept, so it starts without the power-on condition.
    pub(crate) fn transient(target: &ScsiTarget) -> Self {
        let state = Self::new(target);
        state.inner.lock().power_on = false;
        state
    }

    /// Records what the host now knows about `pes` (every PE when `None`).
    pub(crate) fn baseline(&self, target: &ScsiTarget, nexus: ItNexus, pes: Option<PeId>) {
        let ids: Vec<PeId> = match pes {
            Some(pe) => vec![pe],
            None => target.pes.read().iter().map(|p| p.id).collect(),
        };
        let views: Vec<(PeId, PeView)> = ids
            .into_iter()
            .map(|pe| (pe, view(target, nexus, pe)))
            .collect();
        let mut inner = self.inner.lock();
        for (pe, v) in views {
            inner.pes.insert(pe, v);
        }
    }

    fn reset_pending(inner: &Inner, target: &ScsiTarget) -> bool {
        inner.power_on || inner.reset_seen != target.reset_generation.load(Ordering::Acquire)
    }

    /// Takes the highest-priority pending unit attention for a command to
    /// `lu`, clearing it.
    pub(crate) fn take(&self, target: &ScsiTarget, nexus: ItNexus, lu: &Lu) -> Option<Sense> {
        let mut inner = self.inner.lock();
        if Self::reset_pending(&inner, target) {
            inner.power_on = false;
            inner.reset_seen = target.reset_generation.load(Ordering::Acquire);
            inner.alua_seen = target.alua_generation.load(Ordering::Acquire);
            inner.capacity.clear();
            inner.mode = ModeParams::default();
            return Some(Sense::unit_attention(0x29, 0x00));
        }
        let alua = target.alua_generation.load(Ordering::Acquire);
        if inner.alua_seen != alua {
            inner.alua_seen = alua;
            return Some(Sense::unit_attention(0x2A, 0x06));
        }
        let pe_index = match lu {
            Lu::Alu(i) => Some(*i),
            Lu::Slu(s) => Some(s.pe),
            _ => None,
        };
        if let Some(pe) = pe_index.and_then(|i| target.pe(i)).map(|p| p.id) {
            let changes = target.router.binding_changes(pe).unwrap_or(0);
            if inner.pes.get(&pe).is_none_or(|v| v.changes != changes) {
                let fresh = view(target, nexus, pe);
                let changed = inner.pes.get(&pe).is_some_and(|v| v.luns != fresh.luns);
                inner.pes.insert(pe, fresh);
                if changed {
                    return Some(Sense::unit_attention(0x3F, 0x0E));
                }
            }
        }
        if let Lu::Slu(slu) = lu {
            let now = slu.capacity_bytes;
            let before = inner.capacity.insert(slu.handle, now);
            if before.is_some_and(|b| now > b) {
                return Some(Sense::unit_attention(0x2A, 0x09));
            }
        }
        None
    }

    /// Whether sense data goes out in descriptor format.
    pub(crate) fn d_sense(&self, target: &ScsiTarget) -> bool {
        let inner = self.inner.lock();
        !Self::reset_pending(&inner, target) && inner.mode.d_sense
    }

    /// The current mode parameters.
    pub(crate) fn mode(&self) -> ModeParams {
        self.inner.lock().mode
    }

    /// Replaces the mode parameters.
    pub(crate) fn set_mode(&self, mode: ModeParams) {
        self.inner.lock().mode = mode;
    }
}
