//! Unit attention conditions per I_T_L nexus (SAM-5 5.14): each logical
//! unit keeps its own conditions for each I_T nexus, so the ALU of a PE and
//! every SLU behind it report each condition once, independently.
//!
//! Conditions are not queued as events: each LU of a nexus remembers the
//! counters it last reported (or was told through REPORT LUNS), and a
//! command compares them with the current ones, so establishing a
//! condition for every I_T_L nexus costs one atomic increment, and the
//! check takes no control-plane lock and scans no bindings:
//! - 29h/00h POWER ON, RESET, OR BUS DEVICE RESET OCCURRED: the first
//!   command of the nexus to the LU (the LU's power-on for that nexus), or
//!   after [`ScsiTarget::reset`];
//! - 29h/07h I_T NEXUS LOSS OCCURRED: after
//!   [`ScsiTarget::nexus_loss`] of this nexus;
//! - 2Ah/06h ASYMMETRIC ACCESS STATE CHANGED: the ALUA state of the LU's
//!   conglomerate changed on any target port group (SPC-5 5.16.2.x: an
//!   implicit transition establishes it for every I_T nexus), including a
//!   PE failing or being restored;
//! - 3Fh/0Eh REPORTED LUNS DATA HAS CHANGED (SPC-5 REPORT LUNS, review
//!   S6): on every LU of the nexus when the target's PE list changed
//!   ([`ScsiTarget::refresh`]) or PEs were mapped or unmapped for the host;
//!   on a PE's ALU when the host's bindings behind that PE changed (what
//!   REPORT LUNS SELECT REPORT 12h to it returns);
//! - 2Ah/01h MODE PARAMETERS CHANGED: another nexus changed the LU's mode
//!   parameters (shared per LU, SPC-5 MODE SELECT, see `mode.rs`);
//! - 2Ah/09h CAPACITY DATA HAS CHANGED: the SLU grew since this nexus last
//!   addressed it.
//!
//! Precedence (SAM-5 5.14): a pending 29h/xxh is reported first and clears
//! every other condition of that LU for the nexus (the initiator re-reads
//! everything after a reset); the others are reported one per command in
//! the order above.
//!
//! "Reporting clears it", per LU: a condition is cleared only on the LU
//! that reported it to this nexus (as CHECK CONDITION, or as REQUEST SENSE
//! data); the same condition stays pending on the nexus's other LUs and on
//! the other nexuses. The exception is 3Fh/0Eh: the Extended INQUIRY page
//! reports LUICLR=1 (SPC-5 7.7.7), so reporting it on one LU clears it on
//! every LU of that nexus. INQUIRY, REPORT LUNS and REQUEST SENSE never get a
//! unit attention. A REPORT LUNS whose whole list reached the initiator
//! tells the nexus the inventory it returned, which clears 3Fh/0Eh: 00h and
//! 02h on every LU of the nexus, 10h and 11h the PE-list part on every LU,
//! 12h the binding part on the ALU it was sent to.
//!
//! Bounds: a target keeps at most [`MAX_NEXUSES`](super::limits::MAX_NEXUSES)
//! nexuses, each at most [`MAX_LUS_PER_NEXUS`](super::limits::MAX_LUS_PER_NEXUS)
//! LUs. Past the latter the nexus forgets LUs of bindings that no longer
//! exist first, then an arbitrary LU; a forgotten LU reports 29h/00h again
//! when next addressed, which tells the initiator that anything may have
//! changed, so no condition is lost, only merged.

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::Sense;
use super::limits::MAX_LUS_PER_NEXUS;
use super::target::{ItNexus, Lu, ScsiTarget};
use crate::model::{BindHandle, PeId, VvolKey};

/// A logical unit as the per-LU tables key it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LuKey {
    /// The REPORT LUNS well-known logical unit.
    Wlun,
    /// A PE's administrative logical unit.
    Alu(PeId),
    /// A subsidiary logical unit: one binding (a rebind at the same
    /// secondary id is another LU) of one vVol. The vVol is part of the key
    /// because on a PE with per-(PE, host) secondary ids two hosts' handles
    /// may be equal for different vVols, and the per-LU tables shared by
    /// all nexuses (mode parameters) must not mix them.
    Slu(BindHandle, VvolKey),
}

impl LuKey {
    /// The key of `lu`; `None` for LUNs without a logical unit.
    pub(crate) fn of(target: &ScsiTarget, lu: &Lu) -> Option<Self> {
        match lu {
            Lu::ReportLunsWlun => Some(Self::Wlun),
            Lu::Alu(index) => target.pe_id(*index).map(Self::Alu),
            Lu::Slu(s) => Some(Self::Slu(s.handle, s.key)),
            Lu::AbsentLun0 | Lu::Unsupported => None,
        }
    }

    fn pe(self) -> Option<PeId> {
        match self {
            Self::Wlun => None,
            Self::Alu(pe) => Some(pe),
            Self::Slu(h, _) => Some(h.pe),
        }
    }
}

/// The counters one LU of one nexus compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    reset: u64,
    loss: u64,
    alua: u64,
    /// PE list of the target and PEs mapped for the host.
    topology: u64,
    /// The host's bindings behind the ALU's PE (ALU only).
    bindings: u64,
    /// The SLU's capacity (SLU only).
    capacity: u64,
    mode: u64,
}

#[derive(Debug)]
pub(crate) struct LuUa {
    /// The power-on condition of this LU for the nexus.
    power_on: bool,
    seen: Seen,
}

/// What REPORT LUNS told a nexus, read before the list was built.
#[derive(Debug)]
pub(crate) struct Told {
    topology: u64,
    /// Binding counters of the PEs whose SLUs the list named.
    bindings: Vec<(PeId, u64)>,
    /// Whether the list named every LU (00h/02h) or only the ALUs.
    scope: ToldScope,
}

/// Which part of the inventory a REPORT LUNS returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ToldScope {
    /// SELECT REPORT 00h/02h: every LU.
    All,
    /// 10h/11h: the ALUs.
    Admin,
    /// 12h: one conglomerate.
    Conglomerate(PeId),
}

/// The last LU a [`ScsiSession`](super::ScsiSession) addressed, with its
/// unit attention entry: a session's next command to the same LU finds it
/// without the nexus's LU table. An entry the table forgot past
/// `MAX_LUS_PER_NEXUS` stays in use here (it keeps its counters, so no
/// condition is lost; a REPORT LUNS that clears 3Fh/0Eh on the table's
/// LUs may leave this one to report it once more).
pub(crate) type LuCache = std::cell::Cell<Option<(LuKey, Arc<Mutex<LuUa>>)>>;

/// The state of one I_T nexus.
#[derive(Debug)]
pub(crate) struct NexusState {
    /// Bumped by [`ScsiTarget::nexus_loss`].
    pub(crate) loss: AtomicU64,
    /// Past `MAX_NEXUSES`: not kept, so it reports no unit attentions.
    transient: bool,
    lus: RwLock<FxHashMap<LuKey, Arc<Mutex<LuUa>>>>,
}

impl NexusState {
    pub(crate) fn new() -> Self {
        Self {
            loss: AtomicU64::new(0),
            transient: false,
            lus: RwLock::new(FxHashMap::default()),
        }
    }

    /// State for a nexus past [`MAX_NEXUSES`](super::limits::MAX_NEXUSES):
    /// not kept, so it has no unit attentions it could never clear.
    pub(crate) fn transient() -> Self {
        Self {
            transient: true,
            ..Self::new()
        }
    }

    /// The current counters of `key` for `nexus`: atomic loads and the
    /// `arc-swap` ALUA snapshot, no lock.
    fn now(&self, target: &ScsiTarget, nexus: ItNexus, key: LuKey, lu: &Lu) -> Seen {
        let router = &target.router;
        let alua = key.pe().map_or(0, |pe| {
            target
                .alua
                .generation(pe)
                .wrapping_add(router.pe_failure_changes(pe))
        });
        let bindings = match key {
            LuKey::Alu(pe) => router.host_pe_binding_changes(nexus.host, pe),
            _ => 0,
        };
        let capacity = match lu {
            Lu::Slu(s) => s.capacity_bytes,
            _ => 0,
        };
        Seen {
            reset: target.reset_generation.load(Ordering::Acquire),
            loss: self.loss.load(Ordering::Acquire),
            alua,
            topology: topology(target, nexus.host),
            bindings,
            capacity,
            mode: target.mode.changes(key),
        }
    }

    /// The entry of `key`, made (with its power-on condition) if new.
    fn entry(
        &self,
        target: &ScsiTarget,
        nexus: ItNexus,
        key: LuKey,
        now: Seen,
    ) -> Arc<Mutex<LuUa>> {
        if let Some(e) = self.lus.read().get(&key) {
            return Arc::clone(e);
        }
        let mut lus = self.lus.write();
        if !lus.contains_key(&key) && lus.len() >= MAX_LUS_PER_NEXUS {
            evict(&mut lus, target, nexus);
        }
        Arc::clone(lus.entry(key).or_insert_with(|| {
            Arc::new(Mutex::new(LuUa {
                power_on: true,
                seen: now,
            }))
        }))
    }

    /// Takes the highest-priority pending unit attention of `lu` for this
    /// nexus, clearing it on that LU only.
    ///
    /// With `cache` (a session's), the entry of the LU the session last
    /// addressed is reused without the LU table's lock, and this one is
    /// kept there.
    pub(crate) fn take(
        &self,
        target: &ScsiTarget,
        nexus: ItNexus,
        key: Option<LuKey>,
        lu: &Lu,
        cache: Option<&LuCache>,
    ) -> Option<Sense> {
        if self.transient {
            return None;
        }
        let key = key?;
        let now = self.now(target, nexus, key, lu);
        let cached = cache
            .and_then(std::cell::Cell::take)
            .filter(|(k, _)| *k == key)
            .map(|(_, entry)| entry);
        let entry = cached.unwrap_or_else(|| self.entry(target, nexus, key, now));
        let sense = Self::take_from(&mut entry.lock(), now);
        if let Some(cache) = cache {
            cache.set(Some((key, entry)));
        }
        let sense = sense?;
        if (sense.asc, sense.ascq) == (0x3F, 0x0E) {
            // LUICLR=1 (SPC-5 7.7.7, Extended INQUIRY Data VPD page: "shall
            // be set to one"): reporting REPORTED LUNS DATA HAS CHANGED on
            // one LU clears it on every LU of this I_T nexus. Done after
            // this LU's lock is dropped, so two LUs never wait on each other.
            self.inventory_reported(target, nexus);
        }
        Some(sense)
    }

    /// The highest-priority condition of one LU whose counters are now
    /// `now`, cleared.
    fn take_from(ua: &mut LuUa, now: Seen) -> Option<Sense> {
        // SAM-5 5.14: 29h/xxh first; it supersedes the others.
        if ua.power_on || ua.seen.reset != now.reset {
            ua.power_on = false;
            ua.seen = now;
            return Some(Sense::unit_attention(0x29, 0x00));
        }
        if ua.seen.loss != now.loss {
            ua.seen = now;
            return Some(Sense::unit_attention(0x29, 0x07));
        }
        let seen = &mut ua.seen;
        if seen.alua != now.alua {
            seen.alua = now.alua;
            return Some(Sense::unit_attention(0x2A, 0x06));
        }
        if seen.topology != now.topology {
            seen.topology = now.topology;
            seen.bindings = now.bindings;
            return Some(Sense::unit_attention(0x3F, 0x0E));
        }
        if seen.bindings != now.bindings {
            seen.bindings = now.bindings;
            return Some(Sense::unit_attention(0x3F, 0x0E));
        }
        if seen.mode != now.mode {
            seen.mode = now.mode;
            return Some(Sense::unit_attention(0x2A, 0x01));
        }
        let grew = now.capacity > seen.capacity;
        seen.capacity = now.capacity;
        grew.then(|| Sense::unit_attention(0x2A, 0x09))
    }

    /// 3Fh/0Eh was reported to this nexus on one LU: no other LU of the
    /// nexus reports it for the changes made so far (LUICLR).
    fn inventory_reported(&self, target: &ScsiTarget, nexus: ItNexus) {
        let topology = topology(target, nexus.host);
        let lus = self.lus.read();
        for (key, entry) in lus.iter() {
            let mut ua = entry.lock();
            if ua.power_on {
                continue;
            }
            ua.seen.topology = topology;
            if let LuKey::Alu(pe) = key {
                ua.seen.bindings = target.router.host_pe_binding_changes(nexus.host, *pe);
            }
        }
    }

    /// What a REPORT LUNS of `scope` is about to tell this nexus: the
    /// counters read before the list is built, so a change made while it
    /// is built is reported later.
    pub(crate) fn telling(
        target: &ScsiTarget,
        nexus: ItNexus,
        scope: ToldScope,
        pes: impl IntoIterator<Item = PeId>,
    ) -> Told {
        let topology = topology(target, nexus.host);
        let bindings = pes
            .into_iter()
            .map(|pe| (pe, target.router.host_pe_binding_changes(nexus.host, pe)))
            .collect();
        Told {
            topology,
            bindings,
            scope,
        }
    }

    /// The initiator received the whole list `told` describes: clears the
    /// 3Fh/0Eh conditions it answers.
    pub(crate) fn told(&self, told: &Told) {
        let lus = self.lus.read();
        for (key, entry) in lus.iter() {
            let mut ua = entry.lock();
            if ua.power_on {
                continue;
            }
            if matches!(told.scope, ToldScope::All | ToldScope::Admin) {
                ua.seen.topology = told.topology;
            }
            let pe = match (told.scope, key) {
                (ToldScope::All, LuKey::Alu(pe)) => Some(*pe),
                (ToldScope::Conglomerate(p), LuKey::Alu(pe)) if p == *pe => Some(p),
                _ => None,
            };
            if let Some((_, b)) = pe.and_then(|pe| told.bindings.iter().find(|(p, _)| *p == pe)) {
                ua.seen.bindings = *b;
            }
        }
    }

    /// This nexus changed `key`'s mode parameters from change `before` to
    /// `after`: it is not told of its own change (SPC-5 MODE SELECT
    /// establishes 2Ah/01h for the other I_T nexuses only), unless an
    /// earlier change by another nexus is still pending for it.
    pub(crate) fn mode_changed_here(&self, key: LuKey, before: u64, after: u64) {
        if let Some(entry) = self.lus.read().get(&key) {
            let mut ua = entry.lock();
            if ua.seen.mode == before {
                ua.seen.mode = after;
            }
        }
    }
}

/// The counter of what the PE list shows `host`: the target's PE list
/// (`ScsiTarget::refresh`) and the PEs mapped to the host.
fn topology(target: &ScsiTarget, host: crate::model::HostId) -> u64 {
    target
        .inventory_generation
        .load(Ordering::Acquire)
        .wrapping_add(target.router.host_mapping_changes(host))
}

/// Makes room for one LU: LUs of bindings that no longer exist first, then
/// any one.
fn evict(lus: &mut FxHashMap<LuKey, Arc<Mutex<LuUa>>>, target: &ScsiTarget, nexus: ItNexus) {
    let gone = lus.keys().copied().find(|k| match k {
        LuKey::Slu(h, _) => target
            .router
            .resolve_for_host(h.pe, nexus.host, h.secondary_id)
            .is_none_or(|r| r.generation != h.generation),
        _ => false,
    });
    if let Some(k) = gone.or_else(|| lus.keys().next().copied()) {
        lus.remove(&k);
    }
}
