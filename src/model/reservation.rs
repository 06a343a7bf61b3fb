//! Persistent reservation state of one logical unit (SPC-5 5.14) as plain
//! data: registrations per I_T nexus, the reservation, PRgeneration and
//! APTPL. The control plane keeps it durable; the SCSI target decides it.

use super::{HostId, PeId, VvolId};

/// The logical unit a persistent reservation belongs to: a PE's
/// administrative logical unit, or a vVol (the vVol is the subsidiary
/// logical unit whatever PE it is reached through: its designator is the
/// vVol's NAA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PrLu {
    /// The administrative logical unit of a SCSI PE.
    Alu(PeId),
    /// The subsidiary logical unit of a vVol.
    Slu(VvolId),
}

/// An I_T nexus as a registration names it (the SCSI layer's `ItNexus`
/// in plain fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrNexus {
    /// The host of the initiator port.
    pub host: HostId,
    /// The initiator port number of that host.
    pub initiator: u32,
    /// The relative target port.
    pub relative_target_port: u16,
}

/// Persistent reservation types (SPC-5 6.17.3, TYPE field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrType {
    /// 1h Write Exclusive.
    WriteExclusive,
    /// 3h Exclusive Access.
    ExclusiveAccess,
    /// 5h Write Exclusive – Registrants Only.
    WriteExclusiveRegistrantsOnly,
    /// 6h Exclusive Access – Registrants Only.
    ExclusiveAccessRegistrantsOnly,
    /// 7h Write Exclusive – All Registrants.
    WriteExclusiveAllRegistrants,
    /// 8h Exclusive Access – All Registrants.
    ExclusiveAccessAllRegistrants,
}

impl PrType {
    /// Every type, in code order.
    pub const ALL: [Self; 6] = [
        Self::WriteExclusive,
        Self::ExclusiveAccess,
        Self::WriteExclusiveRegistrantsOnly,
        Self::ExclusiveAccessRegistrantsOnly,
        Self::WriteExclusiveAllRegistrants,
        Self::ExclusiveAccessAllRegistrants,
    ];

    /// The TYPE code.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::WriteExclusive => 1,
            Self::ExclusiveAccess => 3,
            Self::WriteExclusiveRegistrantsOnly => 5,
            Self::ExclusiveAccessRegistrantsOnly => 6,
            Self::WriteExclusiveAllRegistrants => 7,
            Self::ExclusiveAccessAllRegistrants => 8,
        }
    }

    /// The type of a TYPE code; `None` for reserved codes.
    #[must_use]
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Whether every registrant is a reservation holder (SPC-5 5.14.10).
    #[must_use]
    pub const fn all_registrants(self) -> bool {
        matches!(
            self,
            Self::WriteExclusiveAllRegistrants | Self::ExclusiveAccessAllRegistrants
        )
    }

    /// Whether registered I_T nexuses share the access (the Registrants
    /// Only and All Registrants types).
    #[must_use]
    pub const fn registrants_share(self) -> bool {
        !matches!(self, Self::WriteExclusive | Self::ExclusiveAccess)
    }

    /// Whether reads by non-holders conflict too (the Exclusive Access
    /// types), not only writes.
    #[must_use]
    pub const fn exclusive_access(self) -> bool {
        matches!(
            self,
            Self::ExclusiveAccess
                | Self::ExclusiveAccessRegistrantsOnly
                | Self::ExclusiveAccessAllRegistrants
        )
    }
}

/// One registration: an I_T nexus and its reservation key (never 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrRegistration {
    /// The registered I_T nexus.
    pub nexus: PrNexus,
    /// Its reservation key.
    pub key: u64,
}

/// A persistent reservation (scope LU_SCOPE, the only one SPC-5 keeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrReservation {
    /// The I_T nexus that reserved (for the All Registrants types every
    /// registrant holds it; this is the one that established it, or a
    /// remaining registrant once that one left).
    pub holder: PrNexus,
    /// The type.
    pub kind: PrType,
}

/// The persistent reservation state of one logical unit.
///
/// # Example
/// ```
/// use vvol::{HostId, LuReservations, PrNexus, PrRegistration, PrReservation, PrType};
///
/// let a = PrNexus { host: HostId(0), initiator: 0, relative_target_port: 1 };
/// let mut lu = LuReservations::default();
/// lu.registrations.push(PrRegistration { nexus: a, key: 0xAA });
/// lu.reservation = Some(PrReservation { holder: a, kind: PrType::WriteExclusive });
/// assert_eq!(lu.key_of(a), Some(0xAA));
/// assert!(lu.is_holder(a));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LuReservations {
    /// PRgeneration (SPC-5 6.16.2): bumped by every successful REGISTER,
    /// REGISTER AND IGNORE EXISTING KEY, CLEAR, PREEMPT and PREEMPT AND
    /// ABORT; set to 0 by a power on.
    pub generation: u32,
    /// APTPL of the last REGISTER: whether the state persists through a
    /// power loss (SPC-5 5.14.5).
    pub aptpl: bool,
    /// The registrations, oldest first, one per I_T nexus.
    pub registrations: Vec<PrRegistration>,
    /// The reservation, if any.
    pub reservation: Option<PrReservation>,
}

impl LuReservations {
    /// The reservation key `nexus` is registered with.
    #[must_use]
    pub fn key_of(&self, nexus: PrNexus) -> Option<u64> {
        self.registrations
            .iter()
            .find(|r| r.nexus == nexus)
            .map(|r| r.key)
    }

    /// Whether `nexus` holds the reservation (SPC-5 5.14.10: for the All
    /// Registrants types, every registered I_T nexus does).
    #[must_use]
    pub fn is_holder(&self, nexus: PrNexus) -> bool {
        match self.reservation {
            None => false,
            Some(r) if r.kind.all_registrants() => self.key_of(nexus).is_some(),
            Some(r) => r.holder == nexus,
        }
    }

    /// Whether nothing is kept: no registration, no reservation, APTPL 0
    /// and PRgeneration 0.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.registrations.is_empty()
            && self.reservation.is_none()
            && !self.aptpl
            && self.generation == 0
    }

    /// Checks the state's own rules: keys are non-zero, one registration
    /// per I_T nexus, a reservation is held by a registrant.
    ///
    /// # Errors
    /// What is wrong.
    pub fn check(&self) -> Result<(), &'static str> {
        let mut nexuses = std::collections::BTreeSet::new();
        for r in &self.registrations {
            if r.key == 0 {
                return Err("registration with reservation key 0");
            }
            // A set, not a scan per entry: a journal record may list many.
            if !nexuses.insert(r.nexus) {
                return Err("I_T nexus registered twice");
            }
        }
        if let Some(r) = self.reservation
            && self.key_of(r.holder).is_none()
        {
            return Err("reservation holder is not registered");
        }
        Ok(())
    }
}
