//! MODE SENSE and MODE SELECT (6 and 10) for the caching (08h) and control
//! (0Ah) mode pages.
//!
//! Keying: per logical unit, shared by every I_T nexus. SPC-5 lets a
//! logical unit keep a mode page per I_T nexus only when its Mode Page
//! Policy VPD page (87h) says so (MODE PAGE POLICY 11b); without that page
//! the policy is shared (SPC-5 7.7 Mode Page Policy VPD page), and a MODE
//! SELECT that changes shared parameters establishes a unit attention
//! MODE PARAMETERS CHANGED (2Ah/01h) for every other I_T nexus of that
//! logical unit (SPC-5 MODE SELECT(6) / 5.14 unit attention conditions).
//! This target has no page 87h, so each LU (a PE's ALU, each SLU, i.e.
//! each binding) has one set of parameters for all nexuses, and the other
//! nexuses get 2Ah/01h (`unit_attention.rs`). A target reset returns every
//! LU to the defaults (no saved values: SP=1 is refused).

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::RwLock;

use super::Sense;
use super::cdb::be_at;
use super::limits::MAX_MODE_PARAMETER_LUS;
use super::sense::SenseKey;
use super::target::{CmdResult, Ctx, Lu, ScsiTarget};
use super::unit_attention::LuKey;

/// Caching mode page code.
pub const CACHING_PAGE: u8 = 0x08;
/// Control mode page code.
pub const CONTROL_PAGE: u8 = 0x0A;
/// Return-all-pages page code.
pub const ALL_PAGES: u8 = 0x3F;
/// Longest MODE SELECT parameter list accepted.
pub const MAX_MODE_SELECT_LEN: usize = 512;

/// The changeable mode parameters of one logical unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ModeParams {
    /// Caching page WCE: writes may sit in a volatile cache until flushed.
    pub(crate) wce: bool,
    /// Control page D_SENSE: descriptor-format sense data.
    pub(crate) d_sense: bool,
}

impl Default for ModeParams {
    fn default() -> Self {
        Self {
            wce: true,
            d_sense: false,
        }
    }
}

/// One LU's parameters that differ from the defaults, and the change that
/// set them.
#[derive(Clone, Copy, Debug)]
struct ModeEntry {
    params: ModeParams,
    change: u64,
}

/// The mode parameters of every LU of a target: only LUs whose parameters
/// were set are kept (at most [`MAX_MODE_PARAMETER_LUS`]).
#[derive(Debug, Default)]
pub(crate) struct ModeTable {
    map: RwLock<FxHashMap<LuKey, ModeEntry>>,
    /// Entries in `map`: the common case (none) takes no lock.
    len: AtomicUsize,
    /// Numbers every change (never reused, also across resets).
    changes: AtomicU64,
}

impl ModeTable {
    fn entry(&self, key: LuKey) -> Option<ModeEntry> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.map.read().get(&key).copied()
    }

    /// The current parameters of `key`.
    pub(crate) fn get(&self, key: Option<LuKey>) -> ModeParams {
        key.and_then(|k| self.entry(k))
            .map_or_else(ModeParams::default, |e| e.params)
    }

    /// The change that set `key`'s parameters (0: the defaults).
    pub(crate) fn changes(&self, key: LuKey) -> u64 {
        self.entry(key).map_or(0, |e| e.change)
    }

    /// Sets `key`'s parameters; returns (change before, change after), or
    /// `None` when [`MAX_MODE_PARAMETER_LUS`] LUs already have their own
    /// (after forgetting those of vVols that no longer exist).
    fn set(&self, target: &ScsiTarget, key: LuKey, params: ModeParams) -> Option<(u64, u64)> {
        let mut map = self.map.write();
        let before = map.get(&key).map_or(0, |e| e.change);
        let old = map.get(&key).map_or_else(ModeParams::default, |e| e.params);
        if old == params {
            return Some((before, before));
        }
        if !map.contains_key(&key) && map.len() >= MAX_MODE_PARAMETER_LUS {
            // Forget the LUs of vVols that no longer exist (on per-host PEs
            // no host-less lookup names the binding, so the vVol decides).
            map.retain(|k, _| match k {
                LuKey::Slu(_, vvol) => target.plane.vvol_by_key(*vvol).is_some(),
                _ => true,
            });
            if map.len() >= MAX_MODE_PARAMETER_LUS {
                return None;
            }
        }
        let change = self.changes.fetch_add(1, Ordering::AcqRel) + 1;
        map.insert(key, ModeEntry { params, change });
        self.len.store(map.len(), Ordering::Release);
        Some((before, change))
    }

    /// Every LU back to the defaults (a target reset).
    pub(crate) fn reset(&self) {
        let mut map = self.map.write();
        map.clear();
        self.len.store(0, Ordering::Release);
    }
}

impl Ctx<'_> {
    /// The mode parameters of the addressed LU.
    pub(crate) fn mode(&self) -> ModeParams {
        self.target.mode.get(self.key)
    }
}

/// Page control values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pc {
    Current,
    Changeable,
    Default,
}

fn caching_page(p: ModeParams, pc: Pc) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0] = CACHING_PAGE;
    b[1] = 0x12;
    let wce = match pc {
        Pc::Current => p.wce,
        Pc::Changeable | Pc::Default => true,
    };
    if wce {
        b[2] |= 0x04;
    }
    b
}

fn control_page(p: ModeParams, pc: Pc) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0] = CONTROL_PAGE;
    b[1] = 0x0A;
    let d_sense = match pc {
        Pc::Current => p.d_sense,
        Pc::Changeable => true,
        Pc::Default => false,
    };
    if d_sense {
        b[2] |= 0x04;
    }
    if pc != Pc::Changeable {
        b[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
        b[8] = 0xFF; // BUSY TIMEOUT PERIOD: unlimited
        b[9] = 0xFF;
    }
    b
}

/// MODE SENSE (6) or (10).
pub(crate) fn mode_sense(ctx: &Ctx<'_>, ten: bool) -> CmdResult {
    let cdb = ctx.cdb;
    cdb.reserved(1, if ten { 0xE7 } else { 0xF7 })?;
    let dbd = cdb.u8(1) & 0x08 != 0;
    let pc = match cdb.u8(2) >> 6 {
        0 => Pc::Current,
        1 => Pc::Changeable,
        2 => Pc::Default,
        _ => return Err(Sense::new(SenseKey::IllegalRequest, 0x39, 0x00).into()),
    };
    let page = cdb.u8(2) & 0x3F;
    let subpage = cdb.u8(3);
    if subpage != 0 && !(page == ALL_PAGES && subpage == 0xFF) {
        return Err(Sense::invalid_field_in_cdb(3, Some(7)).into());
    }
    let params = ctx.mode();
    let mut pages = Vec::new();
    match page {
        CACHING_PAGE => pages.extend_from_slice(&caching_page(params, pc)),
        CONTROL_PAGE => pages.extend_from_slice(&control_page(params, pc)),
        ALL_PAGES => {
            pages.extend_from_slice(&caching_page(params, pc));
            pages.extend_from_slice(&control_page(params, pc));
        }
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(5)).into()),
    }
    let mut descriptor = Vec::new();
    if !dbd {
        let (blocks, block_size) = match ctx.lu {
            Lu::Slu(s) => (s.capacity_bytes / u64::from(s.block_size), s.block_size),
            Lu::Alu(_) => (super::block::ALU_BLOCKS, super::block::ALU_BLOCK_SIZE),
            _ => (0, 512),
        };
        descriptor.extend_from_slice(&u32::try_from(blocks).unwrap_or(u32::MAX).to_be_bytes());
        descriptor.push(0);
        descriptor.extend_from_slice(&block_size.to_be_bytes()[1..]);
    }
    // DPOFUA; WP on the ALU, whose one block is read only (SBC-4 6.5.1:
    // the write-protected medium a PE presents, see block.rs).
    let dsp = if matches!(ctx.lu, Lu::Alu(_)) {
        0x90
    } else {
        0x10
    };
    let mut out = if ten {
        let mut h = vec![0, 0, 0, dsp, 0, 0];
        h.extend_from_slice(&(descriptor.len() as u16).to_be_bytes());
        h
    } else {
        vec![0, 0, dsp, descriptor.len() as u8]
    };
    out.extend_from_slice(&descriptor);
    out.extend_from_slice(&pages);
    if ten {
        let len = (out.len() - 2) as u16;
        out[..2].copy_from_slice(&len.to_be_bytes());
    } else {
        out[0] = (out.len() - 1) as u8;
    }
    let alloc = if ten { cdb.be(7, 2) } else { cdb.be(4, 1) };
    out.truncate(alloc as usize);
    Ok(out)
}

/// MODE SELECT (6) or (10).
pub(crate) fn mode_select(ctx: &Ctx<'_>, ten: bool) -> CmdResult {
    let cdb = ctx.cdb;
    if cdb.u8(1) & 0x01 != 0 {
        return Err(Sense::invalid_field_in_cdb(1, Some(0)).into());
    }
    cdb.reserved(1, 0xEE)?;
    let len = if ten { cdb.be(7, 2) } else { cdb.be(4, 1) } as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    if len > MAX_MODE_SELECT_LEN {
        return Err(Sense::invalid_field_in_cdb(if ten { 7 } else { 4 }, None).into());
    }
    let Some(data) = ctx.data_out.get(..len) else {
        return Err(Sense::parameter_list_length_error().into());
    };
    let header = if ten { 8 } else { 4 };
    if len < header {
        return Err(Sense::parameter_list_length_error().into());
    }
    let bd_len = if ten {
        be_at(data, 6, 2) as usize
    } else {
        usize::from(data[3])
    };
    let bad = |byte: usize, bit| Sense::invalid_field_in_parameter_list(byte as u16, bit);
    if bd_len != 0 && bd_len != 8 {
        return Err(bad(if ten { 6 } else { 3 }, None).into());
    }
    if header + bd_len > len {
        return Err(Sense::parameter_list_length_error().into());
    }
    if bd_len == 8 {
        let block_size = match ctx.lu {
            Lu::Slu(s) => s.block_size,
            _ => 512,
        };
        if be_at(data, header + 5, 3) != u64::from(block_size) {
            return Err(bad(header + 5, None).into());
        }
    }
    let current = ctx.mode();
    let mut next = current;
    let mut at = header + bd_len;
    while at < len {
        let code = data[at] & 0x3F;
        if data[at] & 0x40 != 0 {
            return Err(bad(at, Some(6)).into());
        }
        let Some(&plen) = data.get(at + 1) else {
            return Err(Sense::parameter_list_length_error().into());
        };
        let end = at + 2 + usize::from(plen);
        if end > len {
            return Err(Sense::parameter_list_length_error().into());
        }
        let page = &data[at..end];
        let (expect, changeable): (Vec<u8>, Vec<u8>) = match code {
            CACHING_PAGE => (
                caching_page(current, Pc::Current).to_vec(),
                caching_page(current, Pc::Changeable).to_vec(),
            ),
            CONTROL_PAGE => (
                control_page(current, Pc::Current).to_vec(),
                control_page(current, Pc::Changeable).to_vec(),
            ),
            _ => return Err(bad(at, Some(5)).into()),
        };
        if page.len() != expect.len() {
            return Err(bad(at + 1, None).into());
        }
        for i in 2..page.len() {
            let fixed = !changeable[i];
            if (page[i] ^ expect[i]) & fixed != 0 {
                return Err(bad(at + i, None).into());
            }
        }
        match code {
            CACHING_PAGE => next.wce = page[2] & 0x04 != 0,
            _ => next.d_sense = page[2] & 0x04 != 0,
        }
        at = end;
    }
    let Some(key) = ctx.key else {
        return Err(Sense::invalid_opcode().into());
    };
    // SPC-5 5.14 / MODE SELECT: 2Ah/01h for the other I_T nexuses.
    let (before, after) = ctx
        .target
        .mode
        .set(ctx.target, key, next)
        // INSUFFICIENT RESOURCES: no room for this LU's own parameters.
        .ok_or_else(|| Sense::new(SenseKey::IllegalRequest, 0x55, 0x03))?;
    ctx.state.mode_changed_here(key, before, after);
    Ok(Vec::new())
}
