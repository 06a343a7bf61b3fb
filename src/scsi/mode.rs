//! MODE SENSE and MODE SELECT (6 and 10) for the caching (08h) and control
//! (0Ah) mode pages. Parameters are kept per I_T nexus (SPC-5 allows it),
//! so one host setting D_SENSE changes no other host's sense format.

use super::Sense;
use super::cdb::be_at;
use super::sense::SenseKey;
use super::target::{CmdResult, Ctx, Lu};

/// Caching mode page code.
pub const CACHING_PAGE: u8 = 0x08;
/// Control mode page code.
pub const CONTROL_PAGE: u8 = 0x0A;
/// Return-all-pages page code.
pub const ALL_PAGES: u8 = 0x3F;
/// Longest MODE SELECT parameter list accepted.
pub const MAX_MODE_SELECT_LEN: usize = 512;

/// The changeable mode parameters of one I_T nexus.
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
    let params = ctx.state.mode();
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
    let current = ctx.state.mode();
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
    ctx.state.set_mode(next);
    Ok(Vec::new())
}
