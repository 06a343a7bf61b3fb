//! Journals to damage: a sample journal with a snapshot and records of
//! every kind, its frames, and edits that keep every frame's checksum
//! valid, so that a fuzzer or a property test reaches the record and
//! snapshot decoders instead of stopping at the CRC.
//!
//! ```
//! use vvol::testing::journal::{apply_edits, frame_journal, journal_frames, sample_journal};
//! use vvol::{ControlPlane, JournalOptions, Limits, MemStore};
//!
//! let bytes = sample_journal()?;
//! let mut frames = journal_frames(&bytes).expect("a clean journal");
//! // Flip one byte of the first record after the header, then re-frame.
//! apply_edits(&mut frames, &[0, 1, 0, 0, 0x40]);
//! let damaged = frame_journal(&frames);
//! match ControlPlane::with_store(
//!     Box::new(MemStore::from_bytes(damaged)),
//!     Limits::default(),
//!     JournalOptions::default(),
//! ) {
//!     Ok(plane) => plane.check_invariants(),
//!     Err(e) => println!("refused: {e}"),
//! }
//! # Ok::<(), vvol::Error>(())
//! ```

use crate::binding::{ControlPlane, JournalOptions, Limits, MemStore, frame, split};
use crate::model::{
    ArraySpec, BindContext, ContainerSpec, HostId, InitiatorName, LuReservations, Naa, PeSpec,
    PrLu, PrNexus, PrRegistration, PrReservation, PrType, Protocol, SecondaryIdScope,
    UnbindContext, VvolSpec, VvolType,
};

/// Persistent reservation state of `hosts` registered with keys 1, 2, ...
/// and the first holding a `kind` reservation.
fn reservations(hosts: &[HostId], kind: PrType, aptpl: bool) -> LuReservations {
    let mut state = LuReservations {
        generation: hosts.len() as u32,
        aptpl,
        ..LuReservations::default()
    };
    for (i, host) in hosts.iter().enumerate() {
        state.registrations.push(PrRegistration {
            nexus: PrNexus {
                host: *host,
                initiator: i as u32,
                relative_target_port: 1,
            },
            key: i as u64 + 1,
        });
    }
    state.reservation = state.registrations.first().map(|r| PrReservation {
        holder: r.nexus,
        kind,
    });
    state
}

/// Most edits [`apply_edits`] applies from one input (the rest is ignored),
/// so one input costs bounded work.
pub const MAX_EDITS: usize = 64;
/// Bytes one edit consumes from its input.
pub const EDIT_BYTES: usize = 5;
/// Most frames [`apply_edits`] leaves (duplication stops there).
pub const MAX_FRAMES: usize = 4096;

/// The NAA of the PE [`sample_journal`] adds and removes (checked when
/// the crate builds).
const SPARE_PE_NAA: Naa = match Naa::from_parts(crate::testing::QUICKSTART_COMPANY_ID, 0x5A, 0x5A) {
    Some(naa) => naa,
    None => panic!("the spare PE's NAA fields fit"),
};

/// The NAA of the PE of [`sample_journal`]'s per-(PE, host) array.
const PER_HOST_PE_NAA: Naa =
    match Naa::from_parts(crate::testing::QUICKSTART_COMPANY_ID, 0x5B, 0x5B) {
        Some(naa) => naa,
        None => panic!("the per-host PE's NAA fields fit"),
    };
/// The NAA of the sample journal's PE with a narrow per-host queue.
const NARROW_PE_NAA: Naa = match Naa::from_parts(crate::testing::QUICKSTART_COMPANY_ID, 0x5C, 0x5C)
{
    Some(naa) => naa,
    None => panic!("the narrow PE's NAA fields fit"),
};

/// A journal with a header, a snapshot (the quickstart topology with bound
/// VMs, a drained and a failed PE, and an array with per-(PE, host)
/// secondary ids: two hosts bound at the same id, one host space dropped
/// and made again) and, after it, records of every kind the
/// plane writes: add and remove of containers, PEs and hosts, PE contexts,
/// create, resize and delete of vVols, binds (new, repeated, faulted),
/// unbinds, PE state changes, persistent reservations (also in the
/// snapshot) and their power on, initiators, PE maps (host access rules)
/// and PEs with a per-host queue depth.
///
/// # Errors
/// Any error of the plane building it (none is expected).
pub fn sample_journal() -> Result<Vec<u8>, crate::Error> {
    let store = MemStore::new();
    let plane = ControlPlane::with_store(
        Box::new(store.clone()),
        Limits::default(),
        JournalOptions::default(),
    )?;
    let (plane, topo) = crate::testing::quickstart_on(plane)?;
    let (h0, h1) = (topo.hosts[0], topo.hosts[1]);
    let vm_a = topo.vms[0].vvols();
    let vm_c = topo.vms[2].vvols();
    plane.bind(h0, &vm_a, BindContext::Normal)?;
    plane.bind(h1, &topo.vms[1].vvols(), BindContext::Normal)?;
    plane.bind(h1, &vm_c, BindContext::Normal)?;
    plane.drain_pe(topo.pes[1])?;
    plane.fail_pe(topo.pes[2])?;
    // Persistent reservations in the snapshot (an SLU and an ALU).
    let none = LuReservations::default();
    let slu = PrLu::Slu(topo.vms[0].data);
    plane.set_reservations(
        slu,
        &none,
        reservations(&[h0, h1], PrType::WriteExclusiveRegistrantsOnly, false),
    )?;
    plane.set_reservations(
        PrLu::Alu(topo.pes[0]),
        &none,
        reservations(&[h1], PrType::ExclusiveAccess, true),
    )?;
    // A PE with its own per-host queue depth in the snapshot (tag 19 later).
    let narrow = plane.add_pe(
        topo.arrays[0],
        PeSpec::scsi(NARROW_PE_NAA, 301).with_host_queue_depth(64),
    )?;
    plane.map_pe(h1, narrow)?;
    // A thin container (over-commit) in the snapshot and one in a record.
    plane.add_container(
        topo.arrays[0],
        ContainerSpec::new("thin", Protocol::Scsi, 1 << 40).with_overcommit_percent(400),
    )?;
    // Per-(PE, host) secondary ids (tag 23 array; snapshot section 2).
    let pure = plane.add_array(
        ArraySpec::new("pure", crate::testing::QUICKSTART_COMPANY_ID)
            .with_secondary_id_scope(SecondaryIdScope::PerPeAndHost),
    )?;
    let pure_c = plane.add_container(pure, ContainerSpec::new("p", Protocol::Scsi, 1 << 40))?;
    let pure_pe = plane.add_pe(pure, PeSpec::scsi(PER_HOST_PE_NAA, 300))?;
    for h in [h0, h1] {
        plane.map_pe(h, pure_pe)?;
        let mut context = plane.host(h)?.pe_context;
        context.push(pure_pe);
        plane.set_pe_context(h, &context)?;
    }
    let spec = VvolSpec::new(VvolType::Data, 1 << 20);
    let p = [
        plane.create_vvol(pure_c, spec.clone())?,
        plane.create_vvol(pure_c, spec.clone())?,
        plane.create_vvol(pure_c, spec)?,
    ];
    plane.bind(h0, &p[..1], BindContext::Normal)?;
    for handle in plane
        .bind(h1, &p[1..2], BindContext::Normal)?
        .into_iter()
        .flatten()
    {
        plane.unbind(h1, handle, UnbindContext::Normal)?;
    }
    plane.bind(h1, &p[2..], BindContext::Normal)?;
    plane.compact_journal()?;
    plane.add_array(
        ArraySpec::new("pure-2", crate::testing::QUICKSTART_COMPANY_ID)
            .with_secondary_id_scope(SecondaryIdScope::PerPeAndHost),
    )?;
    plane.add_container(
        topo.arrays[1],
        ContainerSpec::new("thin-nfs", Protocol::Nfs, 1 << 40).with_overcommit_percent(250),
    )?;
    // Records after the snapshot: a reservation change, a power on.
    plane.set_reservations(
        slu,
        &plane.reservations(slu),
        reservations(&[h1], PrType::ExclusiveAccessAllRegistrants, false),
    )?;
    plane.power_on_reservations(topo.arrays[0])?;
    let handles = plane.bind(h0, &vm_a, BindContext::Normal)?;
    let mut vasa = Vec::new();
    for handle in handles.into_iter().flatten() {
        vasa.push(plane.vasa_handle(h0, handle)?);
    }
    // A batched unbind (VASA unbindVirtualVolume): one Unbind record.
    plane.unbind_batch(h0, &vasa, UnbindContext::Normal)?;
    plane.restore_pe(topo.pes[2])?;
    let extra = plane.add_host("esx-03")?;
    // Host access records: initiators added and removed, PEs mapped and
    // unmapped, a PE context that shrinks.
    let iqn: InitiatorName = "iqn.1998-01.com.vmware:esx-03".parse()?;
    let eui: InitiatorName = "eui.02004567A425678D".parse()?;
    plane.add_initiator(extra, iqn)?;
    plane.add_initiator(extra, eui.clone())?;
    plane.remove_initiator(extra, &eui)?;
    plane.map_pe(extra, topo.pes[0])?;
    plane.map_pe(extra, topo.pes[1])?;
    plane.unmap_pe(extra, topo.pes[1])?;
    plane.unmap_pe(h1, narrow)?;
    plane.set_pe_context(extra, &topo.pes[..2])?;
    plane.set_pe_context(extra, &topo.pes[..1])?;
    let scratch = plane.create_vvol(topo.containers[0], VvolSpec::new(VvolType::Other, 1 << 20))?;
    plane.resize_vvol(scratch, 2 << 20)?;
    plane.delete_vvol(scratch)?;
    // One item binds, one faults (its vVol is gone).
    plane.bind(extra, &[topo.vms[0].data, scratch], BindContext::Normal)?;
    plane.unbind_all_from_host(h1)?;
    let spare = plane.add_pe(
        topo.arrays[0],
        PeSpec::scsi(SPARE_PE_NAA, 300).with_host_queue_depth(32),
    )?;
    plane.map_pe(extra, spare)?;
    plane.remove_pe(spare)?;
    drop(plane);
    Ok(store.bytes())
}

/// The payloads of a journal's frames in order (header, snapshot chunks,
/// records); `None` when a frame is torn or fails its checksum.
#[must_use]
pub fn journal_frames(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let frames = split(bytes, usize::MAX).ok()?;
    if frames.torn {
        return None;
    }
    Some(frames.records.iter().map(|(_, p)| p.to_vec()).collect())
}

/// Frames `payloads` as a journal's bytes, each with its length and a valid
/// CRC32C. An empty payload (a frame the reader refuses) is kept as an
/// empty frame; a payload over 4 GiB, which no frame can hold, is left out.
#[must_use]
pub fn frame_journal(payloads: &[Vec<u8>]) -> Vec<u8> {
    payloads
        .iter()
        .filter_map(|p| frame(p).ok())
        .flatten()
        .collect()
}

/// Applies edits read from `edits` to `frames`, [`EDIT_BYTES`] bytes each
/// (at most [`MAX_EDITS`]): `[op, frame, pos_lo, pos_hi, value]`, where
/// `frame` picks a frame (modulo their count), `pos` a byte of it (modulo
/// its length + 1) and `op % 8` is one of: xor the byte with `value` (0
/// counts as 0x01), set it to `value`, write the 8-byte little-endian
/// numbers `0`, `u64::MAX`, `value`, `value << 32`, `2^63` or `2^32 - 1`
/// (picked by `value % 6`) at `pos`, truncate the frame at `pos`, insert
/// `value % 16` copies of `value` at `pos`, remove the frame, duplicate it,
/// swap it with the frame `pos` picks. A trailing partial edit is ignored.
pub fn apply_edits(frames: &mut Vec<Vec<u8>>, edits: &[u8]) {
    for e in edits.chunks_exact(EDIT_BYTES).take(MAX_EDITS) {
        if frames.is_empty() {
            return;
        }
        let (op, value) = (e[0] % 8, e[4]);
        let f = usize::from(e[1]) % frames.len();
        let pos16 = usize::from(u16::from_le_bytes([e[2], e[3]]));
        let pos = pos16 % (frames[f].len() + 1);
        match op {
            0 => {
                if let Some(b) = frames[f].get_mut(pos) {
                    *b ^= value.max(1);
                }
            }
            1 => {
                if let Some(b) = frames[f].get_mut(pos) {
                    *b = value;
                }
            }
            2 => {
                let v = u64::from(value);
                let n: u64 = match value % 6 {
                    0 => 0,
                    1 => u64::MAX,
                    2 => v,
                    3 => v << 32,
                    4 => 1 << 63,
                    _ => u64::from(u32::MAX),
                };
                for (i, b) in n.to_le_bytes().into_iter().enumerate() {
                    if let Some(slot) = frames[f].get_mut(pos + i) {
                        *slot = b;
                    }
                }
            }
            3 => frames[f].truncate(pos),
            4 => {
                let n = usize::from(value % 16);
                frames[f].splice(pos..pos, std::iter::repeat_n(value, n));
            }
            5 => {
                frames.remove(f);
            }
            6 => {
                if frames.len() < MAX_FRAMES {
                    let copy = frames[f].clone();
                    frames.insert(f + 1, copy);
                }
            }
            _ => {
                let g = pos16 % frames.len();
                frames.swap(f, g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_journal_reopens_and_its_frames_round_trip() {
        let bytes = sample_journal().unwrap();
        let frames = journal_frames(&bytes).unwrap();
        // Header, at least one snapshot chunk, the records after it.
        assert!(frames.len() > 10, "{} frames", frames.len());
        assert_eq!(frame_journal(&frames), bytes);
        let plane = ControlPlane::with_store(
            Box::new(MemStore::from_bytes(bytes)),
            Limits::default(),
            JournalOptions::default(),
        )
        .unwrap();
        plane.check_invariants();
        let arrays = plane.arrays();
        let pes = plane.pes_for_array(arrays[0]).unwrap();
        assert_eq!(
            pes.len(),
            4,
            "the spare PE was removed, the narrow one kept"
        );
        assert_eq!(plane.pe(pes[3]).unwrap().host_queue_depth, 64);
        // The power on kept the APTPL=1 ALU state (PRgeneration 0) and
        // dropped the SLU's.
        let alu = plane.reservations(PrLu::Alu(pes[0]));
        assert_eq!(
            (alu.registrations.len(), alu.generation, alu.aptpl),
            (1, 0, true)
        );
        assert_eq!(
            alu.reservation.map(|r| r.kind),
            Some(PrType::ExclusiveAccess)
        );
        let extra = crate::model::HostId(2); // esx-03, the third host added
        let host = plane.host(extra).unwrap();
        assert_eq!(host.initiators.len(), 1);
        assert_eq!(host.mapped_pes, vec![pes[0]]);
    }

    #[test]
    fn edits_keep_checksums_valid_and_change_what_they_say() {
        let bytes = sample_journal().unwrap();
        let clean = journal_frames(&bytes).unwrap();
        let mut frames = clean.clone();
        // xor byte 0 of frame 1; remove frame 2; duplicate frame 0.
        apply_edits(
            &mut frames,
            &[0, 1, 0, 0, 0x40, 5, 2, 0, 0, 0, 6, 0, 0, 0, 0],
        );
        assert_eq!(frames[0], clean[0]);
        assert_eq!(frames[1], clean[0]);
        assert_eq!(frames[2][0], clean[1][0] ^ 0x40);
        assert_eq!(frames.len(), clean.len());
        assert_eq!(frames[3], clean[3]);
        let reframed = frame_journal(&frames);
        assert_eq!(journal_frames(&reframed).unwrap(), frames);
    }
}
