//! Named limits on every size a command's input drives.

/// Largest READ or WRITE transfer in bytes (VPD B0h MAXIMUM TRANSFER
/// LENGTH is this divided by the block size).
pub const MAX_TRANSFER_BYTES: u64 = 8 << 20;
/// Largest COMPARE AND WRITE in logical blocks (VPD B0h).
pub const MAX_COMPARE_AND_WRITE_BLOCKS: u32 = 64;
/// Largest number of blocks one UNMAP command may name, summed over its
/// block descriptors (VPD B0h MAXIMUM UNMAP LBA COUNT).
pub const MAX_UNMAP_BLOCKS: u32 = 1 << 22;
/// Most block descriptors in one UNMAP parameter list (VPD B0h).
pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;
/// Largest WRITE SAME in logical blocks (VPD B0h MAXIMUM WRITE SAME LENGTH).
pub const MAX_WRITE_SAME_BLOCKS: u64 = 1 << 16;
/// Blocks written per backend call while WRITE SAME replicates a pattern.
pub const WRITE_SAME_CHUNK_BLOCKS: u64 = 256;
/// Most LBA status descriptors one GET LBA STATUS returns.
pub const MAX_LBA_STATUS_DESCRIPTORS: usize = 1024;
/// Most I_T nexuses whose state (unit attentions per LU, nexus loss count) a
/// target keeps; commands from further nexuses run with fresh, unsaved
/// state and get no unit attentions (which they could never clear).
pub const MAX_NEXUSES: usize = 4096;
/// Tries of one PERSISTENT RESERVE OUT when another target changes the
/// same logical unit's reservations meanwhile (the plane's compare-and-set
/// fails); past them the command gets BUSY.
pub const MAX_PR_OUT_TRIES: usize = 8;
/// Most pending reservation unit attentions (2Ah/03h, 2Ah/04h, 2Ah/05h)
/// a target keeps over all (I_T nexus, logical unit) pairs; further ones
/// are not established.
pub const MAX_PR_UNIT_ATTENTIONS: usize = 1 << 16;
/// Most SPC-2 RESERVE(6) reservations a target keeps (one per logical
/// unit); past it RESERVE(6) gets 55h/00h SYSTEM RESOURCE FAILURE.
pub const MAX_SPC2_RESERVATIONS: usize = 1 << 16;
/// Most logical units whose unit attention state one I_T nexus keeps (the
/// ALUs, SLUs and W-LUN it addressed). Past it the nexus forgets the LUs of
/// bindings that no longer exist first, then any one; a forgotten LU
/// reports 29h/00h POWER ON, RESET again when next addressed (SAM-5 5.14:
/// a reset condition supersedes the others), so conditions merge, none is
/// lost.
pub const MAX_LUS_PER_NEXUS: usize = 1024;
/// Most logical units with mode parameters of their own (set by MODE
/// SELECT; the others use the defaults). Past it, after forgetting those
/// of vVols that no longer exist, MODE SELECT for a further LU fails
/// with ILLEGAL REQUEST, INSUFFICIENT RESOURCES (55h/03h).
pub const MAX_MODE_PARAMETER_LUS: usize = 65_536;
