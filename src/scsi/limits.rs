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
/// Most I_T nexuses whose state (unit attentions, mode parameters) a
/// target keeps; commands from further nexuses run with fresh, unsaved
/// state (default mode parameters, no unit attentions but 3Fh/0Eh).
pub const MAX_NEXUSES: usize = 4096;
