//! The target's read-mostly mirror of the control plane's persistent
//! reservations (SPC-5 5.14), the per-command RESERVATION CONFLICT check
//! (SPC-5 5.14.1 table "SPC commands that are allowed in the presence of
//! various reservations", SBC-4 4.17 table for block commands), SPC-2
//! RESERVE(6)/RELEASE(6) reservations, and the pending reservation unit
//! attentions per (I_T nexus, logical unit).
//!
//! The plane is the source of truth. The mirror holds the state of this
//! target's array and the plane's reservation version it reflects; a
//! command compares that with [`ControlPlane::reservations_version`]
//! (one atomic load, no lock) and reloads only after a change, so a target
//! built on a reopened plane, or one that shares its plane with another
//! target, sees every change. When no logical unit has a reservation the
//! check is three atomic loads.
//!
//! SPC-2 reservations are not persistent: they live in the target and a
//! [`reset`](super::ScsiTarget::reset) releases them (SPC-2 5.5.1).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use super::Sense;
use super::cdb::op;
use super::limits::MAX_PR_UNIT_ATTENTIONS;
use super::target::{CmdResult, Ctx, InitiatorPortId, ItNexus, ScsiTarget};
use super::unit_attention::LuKey;
use crate::model::{LuReservations, PeId, PrLu, PrNexus, VvolId, VvolKey};

/// A logical unit as the mirror keys it: SLUs by the vVol's key (what a
/// routed command knows without asking the plane).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum MirrorKey {
    Alu(PeId),
    Slu(VvolKey),
}

impl From<ItNexus> for PrNexus {
    fn from(n: ItNexus) -> Self {
        Self {
            host: n.host,
            initiator: n.initiator.0,
            relative_target_port: n.relative_target_port,
        }
    }
}

/// The I_T nexus a registration names.
pub(crate) fn it_nexus(n: PrNexus) -> ItNexus {
    ItNexus::with_initiator(n.host, InitiatorPortId(n.initiator), n.relative_target_port)
}

/// How a command is treated under a reservation another I_T nexus holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// Allowed under every type (INQUIRY, REPORT LUNS, REQUEST SENSE,
    /// TEST UNIT READY, READ CAPACITY, REPORT TARGET PORT GROUPS, the
    /// reservation commands themselves, which check on their own).
    Always,
    /// Allowed under the Write Exclusive types, a conflict under the
    /// Exclusive Access types: READ, GET LBA STATUS, MODE SENSE, REPORT
    /// SUPPORTED OPERATION CODES.
    Read,
    /// A conflict under every type: writes, UNMAP, WRITE SAME, COMPARE AND
    /// WRITE, SYNCHRONIZE CACHE, MODE SELECT.
    Write,
}

fn access(opcode: u8, sa: u16) -> Access {
    match (opcode, sa) {
        (
            op::INQUIRY
            | op::REPORT_LUNS
            | op::REQUEST_SENSE
            | op::TEST_UNIT_READY
            | op::READ_CAPACITY_10
            | op::PERSISTENT_RESERVE_IN
            | op::PERSISTENT_RESERVE_OUT
            | op::RESERVE_6
            | op::RELEASE_6,
            _,
        )
        | (op::SERVICE_ACTION_IN_16, op::SA_READ_CAPACITY_16)
        | (op::MAINTENANCE_IN, op::SA_REPORT_TARGET_PORT_GROUPS) => Access::Always,
        (
            op::READ_6
            | op::READ_10
            | op::READ_16
            | op::MODE_SENSE_6
            | op::MODE_SENSE_10
            | op::SERVICE_ACTION_IN_16
            | op::MAINTENANCE_IN,
            _,
        ) => Access::Read,
        _ => Access::Write,
    }
}

/// Commands an SPC-2 reservation held by another I_T nexus lets through
/// (SPC-2 5.5.1, 7.21; RELEASE completes without effect).
fn spc2_allowed(opcode: u8) -> bool {
    matches!(
        opcode,
        op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE | op::RELEASE_6
    )
}

/// An SPC-2 reservation: its holder and, for an SLU, the vVol it was made
/// on (a vVol key is reused after a delete).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spc2 {
    pub(crate) holder: ItNexus,
    pub(crate) vvol: Option<VvolId>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct ReservationMirror {
    /// The plane's reservation version `map` reflects (`u64::MAX`: never
    /// loaded).
    seen: AtomicU64,
    /// Logical units with a persistent reservation in `map`, plus SPC-2
    /// reservations: 0 lets every command through without a lock.
    held: AtomicUsize,
    map: RwLock<FxHashMap<MirrorKey, (PrLu, Arc<LuReservations>)>>,
    pub(crate) spc2: Mutex<HashMap<MirrorKey, Spc2>>,
    /// `spc2.len()`, read without the lock.
    spc2_len: AtomicUsize,
    /// Pending 2Ah/03h, 04h, 05h per (I_T nexus, logical unit).
    ua: Mutex<HashMap<(ItNexus, MirrorKey), Vec<u8>>>,
    ua_pending: AtomicUsize,
    /// Serializes this target's PERSISTENT RESERVE OUT commands.
    pub(crate) out: Mutex<()>,
}

impl Default for ReservationMirror {
    fn default() -> Self {
        Self {
            seen: AtomicU64::new(u64::MAX),
            held: AtomicUsize::new(0),
            map: RwLock::new(FxHashMap::default()),
            spc2: Mutex::new(HashMap::new()),
            spc2_len: AtomicUsize::new(0),
            ua: Mutex::new(HashMap::new()),
            ua_pending: AtomicUsize::new(0),
            out: Mutex::new(()),
        }
    }
}

/// The mirror key of the logical unit a command addresses: from the LU
/// key the command already resolved (no look-up of the PE list).
pub(crate) fn mirror_key(ctx: &Ctx<'_>) -> Option<MirrorKey> {
    match ctx.key? {
        LuKey::Alu(pe) => Some(MirrorKey::Alu(pe)),
        LuKey::Slu(_, vvol) => Some(MirrorKey::Slu(vvol)),
        LuKey::Wlun => None,
    }
}

impl ReservationMirror {
    fn count_held(&self) -> usize {
        let map = self.map.read();
        let pr = map
            .values()
            .filter(|(_, r)| r.reservation.is_some())
            .count();
        let spc2 = self.spc2.lock().len();
        self.spc2_len.store(spc2, Ordering::Release);
        pr + spc2
    }

    fn recount(&self) {
        self.held.store(self.count_held(), Ordering::Release);
    }

    /// Reloads from the plane when its reservation version moved.
    pub(crate) fn sync(&self, target: &ScsiTarget) {
        if target.plane.reservations_version() != self.seen.load(Ordering::Acquire) {
            self.reload(target);
        }
    }

    /// Reloads the array's reservation state from the plane.
    pub(crate) fn reload(&self, target: &ScsiTarget) {
        let mut map = self.map.write();
        let (version, lus) = target.plane.reservations_of_array(target.array);
        map.clear();
        for (lu, key, state) in lus {
            let key = match (lu, key) {
                (PrLu::Alu(pe), _) => MirrorKey::Alu(pe),
                (PrLu::Slu(_), Some(k)) => MirrorKey::Slu(k),
                (PrLu::Slu(_), None) => continue,
            };
            map.insert(key, (lu, Arc::new(state)));
        }
        // SPC-2 reservations made on a vVol that is gone (the plane's
        // version moves when a vVol is deleted, so this runs before a
        // reused key is addressed).
        self.spc2.lock().retain(|key, r| match (key, r.vvol) {
            (MirrorKey::Slu(k), Some(vvol)) => target.plane.vvol_by_key(*k) == Some(vvol),
            _ => true,
        });
        self.seen.store(version, Ordering::Release);
        drop(map);
        self.recount();
    }

    /// The mirrored state of a logical unit (empty when it has none).
    pub(crate) fn state(&self, target: &ScsiTarget, key: MirrorKey) -> Arc<LuReservations> {
        self.sync(target);
        self.map
            .read()
            .get(&key)
            .map_or_else(Arc::default, |(_, r)| Arc::clone(r))
    }

    /// The SPC-2 reservation of a logical unit. No control-plane lock: a
    /// reservation of a deleted vVol is dropped by [`reload`](Self::reload),
    /// which the deletion triggers.
    pub(crate) fn spc2_of(&self, key: MirrorKey) -> Option<Spc2> {
        if self.spc2_len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.spc2.lock().get(&key).copied()
    }

    /// Adds or removes an SPC-2 reservation.
    pub(crate) fn set_spc2(&self, key: MirrorKey, r: Option<Spc2>) {
        {
            let mut spc2 = self.spc2.lock();
            match r {
                Some(r) => spc2.insert(key, r),
                None => spc2.remove(&key),
            };
        }
        self.recount();
    }

    /// Whether `ctx`'s command conflicts with a reservation of the
    /// addressed logical unit (SPC-5 5.14.1; SPC-2 5.5.1).
    pub(crate) fn check(&self, ctx: &Ctx<'_>) -> CmdResult {
        self.sync(ctx.target);
        if self.held.load(Ordering::Acquire) == 0 {
            return Ok(Vec::new());
        }
        let Some(key) = mirror_key(ctx) else {
            return Ok(Vec::new());
        };
        let opcode = ctx.cdb.opcode();
        let conflict = Err(super::reservation_out::conflict());
        if let Some(r) = self.spc2_of(key) {
            // SPC-3 5.6.3 / SPC-4 5.9.3 (CRH=0): while an SPC-2
            // reservation is held, every PERSISTENT RESERVE IN and OUT
            // conflicts, whoever sends it.
            if matches!(
                opcode,
                op::PERSISTENT_RESERVE_IN | op::PERSISTENT_RESERVE_OUT
            ) {
                return conflict;
            }
            if r.holder != ctx.nexus && !spc2_allowed(opcode) {
                return conflict;
            }
        }
        // Decided under the read lock: no clone of the state per command.
        let map = self.map.read();
        let Some((_, state)) = map.get(&key) else {
            return Ok(Vec::new());
        };
        let Some(res) = state.reservation else {
            return Ok(Vec::new());
        };
        let me = PrNexus::from(ctx.nexus);
        let shares = if res.kind.registrants_share() {
            state.key_of(me).is_some()
        } else {
            res.holder == me
        };
        drop(map);
        if shares {
            return Ok(Vec::new());
        }
        match access(opcode, ctx.cdb.service_action()) {
            Access::Always => Ok(Vec::new()),
            Access::Read if !res.kind.exclusive_access() => Ok(Vec::new()),
            Access::Read | Access::Write => conflict,
        }
    }

    /// Establishes UNIT ATTENTION 2Ah/`ascq` for `nexus` on `key`.
    pub(crate) fn add_ua(&self, nexus: ItNexus, key: MirrorKey, ascq: u8) {
        let mut ua = self.ua.lock();
        if ua.len() >= MAX_PR_UNIT_ATTENTIONS && !ua.contains_key(&(nexus, key)) {
            return;
        }
        let pending = ua.entry((nexus, key)).or_default();
        if !pending.contains(&ascq) {
            pending.push(ascq);
        }
        self.ua_pending.store(ua.len(), Ordering::Release);
    }

    /// Takes the oldest pending reservation unit attention of `nexus` for
    /// the addressed logical unit.
    pub(crate) fn take_ua(&self, ctx: &Ctx<'_>) -> Option<Sense> {
        if self.ua_pending.load(Ordering::Acquire) == 0 {
            return None;
        }
        let key = mirror_key(ctx)?;
        let mut ua = self.ua.lock();
        let pending = ua.get_mut(&(ctx.nexus, key))?;
        let ascq = pending.remove(0);
        if pending.is_empty() {
            ua.remove(&(ctx.nexus, key));
        }
        self.ua_pending.store(ua.len(), Ordering::Release);
        Some(Sense::unit_attention(0x2A, ascq))
    }

    /// A target reset: SPC-2 reservations are released and pending
    /// reservation unit attentions give way to 29h/00h.
    pub(crate) fn reset(&self) {
        self.spc2.lock().clear();
        self.ua.lock().clear();
        self.ua_pending.store(0, Ordering::Release);
        self.recount();
    }
}
