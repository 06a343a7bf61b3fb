//! INQUIRY: standard data (LU_CONG, version descriptors) and the VPD pages
//! 00h, 80h, 83h, 86h, B0h, B1h and (SLUs) B2h.

use super::Sense;
use super::block::{ALU_BLOCK_SIZE, lbprz};
use super::limits::{
    MAX_COMPARE_AND_WRITE_BLOCKS, MAX_TRANSFER_BYTES, MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS,
    MAX_WRITE_SAME_BLOCKS,
};
use super::target::{CmdResult, Ctx, Fail, Lu, PeInfo, Slu};

/// Length of the standard INQUIRY data this target returns: through the
/// eight VERSION DESCRIPTOR fields (bytes 58-73, SPC-5 6.7.2).
pub const STANDARD_INQUIRY_LEN: usize = 74;
/// T10 vendor identification (8 bytes).
pub const VENDOR_ID: &[u8; 8] = b"VVOL    ";
/// Product identification of a PE (16 bytes).
pub const PE_PRODUCT_ID: &[u8; 16] = b"PROTOCOL ENDPT  ";
/// Product identification of a vVol (16 bytes).
pub const VVOL_PRODUCT_ID: &[u8; 16] = b"VIRTUAL VOLUME  ";
/// Product identification of the REPORT LUNS well-known logical unit and
/// of the data returned for a LUN with no logical unit (16 bytes).
pub const TARGET_PRODUCT_ID: &[u8; 16] = b"VVOL TARGET     ";
/// Product revision level (4 bytes).
pub const PRODUCT_REVISION: &[u8; 4] = b"0001";

/// T10 version descriptor codes (SPC-5 table "Version descriptor values";
/// the "no version claimed" code of each standard).
pub mod version_descriptor {
    /// SAM-5 (no version claimed).
    pub const SAM_5: u16 = 0x00A0;
    /// SPC-5 (no version claimed).
    pub const SPC_5: u16 = 0x05C0;
    /// SBC-4 (no version claimed).
    pub const SBC_4: u16 = 0x0600;
}

/// The standards claimed by a direct-access LU (ALU or SLU), in the order
/// SPC-5 6.7.2 asks for: architecture model, command set, device type's
/// command set. No transport descriptor: the target is transport neutral
/// (an iSCSI front end would add iSCSI, 0960h).
const DISK_VERSIONS: [u16; 3] = [
    version_descriptor::SAM_5,
    version_descriptor::SPC_5,
    version_descriptor::SBC_4,
];
/// The standards claimed by the REPORT LUNS well-known LU and for a LUN
/// with no LU (neither is a direct-access device).
const WLUN_VERSIONS: [u16; 2] = [version_descriptor::SAM_5, version_descriptor::SPC_5];

/// VPD pages of an SLU.
const SLU_VPD_PAGES: [u8; 7] = [0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2];
/// VPD pages of an ALU: no Logical Block Provisioning page, since it is
/// fully provisioned (LBPME=0; SBC-4 6.6.6 ties the page to LBPME=1).
const ALU_VPD_PAGES: [u8; 6] = [0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1];

/// INQUIRY (12h).
pub(crate) fn inquiry(ctx: &Ctx<'_>) -> CmdResult {
    let cdb = ctx.cdb;
    cdb.reserved(1, 0xFE)?;
    let evpd = cdb.u8(1) & 1 != 0;
    let page = cdb.u8(2);
    let alloc = cdb.be(3, 2) as usize;
    let mut data = if evpd {
        vpd(ctx, page)?
    } else if page != 0 {
        return Err(Sense::invalid_field_in_cdb(2, Some(7)).into());
    } else {
        standard(ctx)
    };
    data.truncate(alloc);
    Ok(data)
}

fn standard(ctx: &Ctx<'_>) -> Vec<u8> {
    let mut b = vec![0u8; STANDARD_INQUIRY_LEN];
    let (byte0, cong, product, multi) = match ctx.lu {
        Lu::Alu(i) | Lu::Slu(super::target::Slu { pe: i, .. }) => {
            let multi = ctx.target.pe(i).is_some_and(|p| p.ports.len() > 1);
            let product = if matches!(ctx.lu, Lu::Alu(_)) {
                PE_PRODUCT_ID
            } else {
                VVOL_PRODUCT_ID
            };
            (0x00, 0x40, product, multi)
        }
        Lu::ReportLunsWlun => (0x1E, 0, TARGET_PRODUCT_ID, false),
        Lu::AbsentLun0 | Lu::Unsupported => (0x7F, 0, TARGET_PRODUCT_ID, false),
    };
    let versions: &[u16] = if cong != 0 {
        &DISK_VERSIONS
    } else {
        &WLUN_VERSIONS
    };
    b[0] = byte0;
    b[1] = cong; // LU_CONG
    b[2] = 0x07; // SPC-5
    b[3] = 0x12; // HISUP, RESPONSE DATA FORMAT 2
    b[4] = (STANDARD_INQUIRY_LEN - 5) as u8;
    if cong != 0 {
        b[5] = 0x10; // TPGS 01b: implicit ALUA
    }
    if multi {
        b[6] = 0x10; // MULTIP
    }
    b[7] = 0x02; // CMDQUE
    b[8..16].copy_from_slice(VENDOR_ID);
    b[16..32].copy_from_slice(product);
    b[32..36].copy_from_slice(PRODUCT_REVISION);
    for (i, v) in versions.iter().enumerate() {
        b[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    b
}

fn page(code: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![0x00, code];
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend_from_slice(body);
    b
}

fn designator(code_set: u8, assoc_type: u8, value: &[u8]) -> Vec<u8> {
    let mut d = vec![code_set, assoc_type, 0, value.len() as u8];
    d.extend_from_slice(value);
    d
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The backend's discard granularity in logical blocks (0 when unknown or
/// not a whole number of blocks), capped to the field's 32 bits.
fn unmap_granularity_blocks(ctx: &Ctx<'_>, s: &Slu) -> Result<u32, Fail> {
    let bytes = super::block::backend_property(ctx, s, |b| b.discard_granularity())?;
    let block = u64::from(s.block_size);
    if bytes == 0 || !bytes.is_multiple_of(block) {
        return Ok(0);
    }
    Ok(u32::try_from(bytes / block).unwrap_or(0))
}

fn vpd(ctx: &Ctx<'_>, code: u8) -> CmdResult {
    let (pe, slu): (PeInfo, Option<_>) = match ctx.lu {
        Lu::Alu(i) => (ctx.target.pe(i).ok_or_else(Sense::lun_not_supported)?, None),
        Lu::Slu(s) => (
            ctx.target.pe(s.pe).ok_or_else(Sense::lun_not_supported)?,
            Some(s),
        ),
        Lu::ReportLunsWlun if code == 0 => return Ok(page(0x00, &[0x00])),
        Lu::ReportLunsWlun => return Err(Sense::invalid_field_in_cdb(2, Some(7)).into()),
        Lu::AbsentLun0 | Lu::Unsupported => return Err(Sense::lun_not_supported().into()),
    };
    let vvol = match slu {
        Some(s) => Some(
            ctx.target
                .plane
                .vvol_by_key(s.key)
                .ok_or_else(Sense::lun_not_supported)?,
        ),
        None => None,
    };
    let block_size = slu.map_or(ALU_BLOCK_SIZE, |s| s.block_size);
    Ok(match code {
        0x00 if slu.is_some() => page(0x00, &SLU_VPD_PAGES),
        0x00 => page(0x00, &ALU_VPD_PAGES),
        0x80 => {
            let serial = match vvol {
                Some(v) => hex(&v.to_bytes()),
                None => hex(&pe.naa.to_bytes()),
            };
            page(0x80, serial.as_bytes())
        }
        0x83 => {
            let naa = match vvol {
                Some(v) => ctx
                    .target
                    .vvol_naa(v)
                    .map_err(|_| Sense::internal_target_failure())?,
                None => pe.naa,
            };
            let port = ctx.nexus.relative_target_port;
            let group = ctx.target.port_group(port).unwrap_or(0);
            let mut body = designator(0x01, 0x03, &naa.to_bytes());
            body.extend(designator(
                0x01,
                0x14,
                &[0, 0, (port >> 8) as u8, port as u8],
            ));
            body.extend(designator(
                0x01,
                0x15,
                &[0, 0, (group >> 8) as u8, group as u8],
            ));
            page(0x83, &body)
        }
        0x86 => {
            let mut body = [0u8; 0x3C];
            body[1] = 0x01; // SIMPSUP
            // V_SUP (SPC-5 7.7.7, byte 6 bit 0): the caching mode page
            // reports a volatile write cache (WCE=1) that SYNCHRONIZE CACHE
            // flushes.
            body[2] = 0x01;
            // LUICLR (byte 7 bit 0; SPC-5 7.7.7 requires it set): reporting
            // 3Fh/0Eh on one LU clears it on every LU of the I_T nexus
            // (`unit_attention.rs`).
            body[3] = 0x01;
            body[4] = 0x20; // LU_COLL_TYPE 001b: conglomerate
            page(0x86, &body)
        }
        0xB0 => {
            let mut body = [0u8; 0x3C];
            let max_transfer = (MAX_TRANSFER_BYTES / u64::from(block_size)) as u32;
            body[4..8].copy_from_slice(&max_transfer.to_be_bytes());
            // The ALU takes no COMPARE AND WRITE, UNMAP or WRITE SAME: their
            // limits stay 0 (SBC-4 6.6.4: 0 = not supported / no limit
            // reported).
            if let Some(s) = slu {
                body[0] = 0x01; // WSNZ
                body[1] = MAX_COMPARE_AND_WRITE_BLOCKS as u8;
                body[16..20].copy_from_slice(&MAX_UNMAP_BLOCKS.to_be_bytes());
                body[20..24].copy_from_slice(&MAX_UNMAP_DESCRIPTORS.to_be_bytes());
                // OPTIMAL UNMAP GRANULARITY and UNMAP GRANULARITY ALIGNMENT
                // (SBC-4 6.6.4, page bytes 28-35): the unit in which the
                // backend frees storage, aligned from LBA 0 (UGAVALID=1), so
                // that an UNMAP of whole units shows as deallocated in GET
                // LBA STATUS. 1 block, alignment not reported, when unknown.
                let units = unmap_granularity_blocks(ctx, &s)?;
                body[24..28].copy_from_slice(&units.max(1).to_be_bytes());
                if units > 1 {
                    body[28] = 0x80; // UGAVALID, alignment 0
                }
                body[32..40].copy_from_slice(&MAX_WRITE_SAME_BLOCKS.to_be_bytes());
            }
            page(0xB0, &body)
        }
        0xB1 => {
            let mut body = [0u8; 0x3C];
            body[1] = 0x01; // MEDIUM ROTATION RATE: non-rotating
            page(0xB1, &body)
        }
        0xB2 => {
            let Some(s) = slu else {
                return Err(Sense::invalid_field_in_cdb(2, Some(7)).into());
            };
            // LBPU (UNMAP), LBPWS (WRITE SAME(16) with UNMAP); LBPRZ 001b
            // when unmapped blocks read as zeros (SBC-4 6.6.6: byte 1 bits
            // 4-2), 000b when they may keep old data; thin provisioned.
            let mut flags = 0xC0;
            if lbprz(ctx, &s)? {
                flags |= 0x04;
            }
            page(0xB2, &[0x00, flags, 0x02, 0x00])
        }
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(7)).into()),
    })
}
