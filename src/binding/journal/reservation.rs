//! Codec of persistent reservation state, shared by records (tags 20 and
//! 21) and the snapshot's reservations section.

use super::JournalError;
use super::codec::{Reader, Writer};
use super::fields::bad;
use crate::model::{
    HostId, LuReservations, PeId, PrLu, PrNexus, PrRegistration, PrReservation, PrType, VvolId,
};

/// Smallest encoding of a registration (nexus 10 bytes, key 8).
const REGISTRATION_BYTES: usize = 18;
/// Smallest encoding of a logical unit and its state.
pub(crate) const LU_STATE_MIN_BYTES: usize = 5 + 4 + 1 + 8 + 1;

pub(crate) fn put_lu(w: &mut Writer, lu: PrLu) {
    match lu {
        PrLu::Alu(pe) => {
            w.u8(0);
            w.u32(pe.0);
        }
        PrLu::Slu(vvol) => {
            w.u8(1);
            w.u128(vvol.0);
        }
    }
}

pub(crate) fn get_lu(r: &mut Reader<'_>) -> Result<PrLu, JournalError> {
    match r.u8()? {
        0 => Ok(PrLu::Alu(PeId(r.u32()?))),
        1 => Ok(PrLu::Slu(VvolId(r.u128()?))),
        _ => Err(bad("unknown reservation logical unit")),
    }
}

fn put_nexus(w: &mut Writer, n: PrNexus) {
    w.u32(n.host.0);
    w.u32(n.initiator);
    w.u16(n.relative_target_port);
}

fn get_nexus(r: &mut Reader<'_>) -> Result<PrNexus, JournalError> {
    Ok(PrNexus {
        host: HostId(r.u32()?),
        initiator: r.u32()?,
        relative_target_port: r.u16()?,
    })
}

pub(crate) fn put_lu_state(w: &mut Writer, s: &LuReservations) {
    w.u32(s.generation);
    w.bool(s.aptpl);
    w.usize(s.registrations.len());
    for reg in &s.registrations {
        put_nexus(w, reg.nexus);
        w.u64(reg.key);
    }
    match s.reservation {
        None => w.u8(0),
        Some(r) => {
            w.u8(r.kind.code());
            put_nexus(w, r.holder);
        }
    }
}

pub(crate) fn get_lu_state(r: &mut Reader<'_>) -> Result<LuReservations, JournalError> {
    let mut s = LuReservations {
        generation: r.u32()?,
        aptpl: r.bool()?,
        ..LuReservations::default()
    };
    let n = r.count(REGISTRATION_BYTES)?;
    s.registrations.reserve(n);
    for _ in 0..n {
        s.registrations.push(PrRegistration {
            nexus: get_nexus(r)?,
            key: r.u64()?,
        });
    }
    s.reservation = match r.u8()? {
        0 => None,
        code => Some(PrReservation {
            kind: PrType::from_code(code).ok_or_else(|| bad("unknown reservation type"))?,
            holder: get_nexus(r)?,
        }),
    };
    s.check().map_err(bad)?;
    Ok(s)
}
