//! [`ScsiTarget`]: executes CDBs for an I_T nexus and a LUN through the
//! [`Router`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::alua::{AluaState, AluaTable};
use super::cdb::Cdb;
use super::execute::{DataInSink, Outcome, OwnData};
use super::lun::{Lun, REPORT_LUNS_WLUN, SubsidiaryElement};
use super::mode::ModeTable;
use super::nexus_table::NexusTable;
use super::sense::{SenseKey, Status};
use super::unit_attention::{LuCache, LuKey, NexusState};
use super::{ScsiError, Sense};
use crate::model::{
    ArrayId, BindHandle, HostId, Naa, PeId, SubsidiaryAddressing, Transport, VvolId, VvolKey,
};
use crate::{BackendError, ControlPlane, RouteError, Router};

/// Lock stripes serializing COMPARE AND WRITE against writes to one vVol.
pub const WRITE_LOCK_STRIPES: usize = 64;

/// Identifies one initiator port of a host, as the transport that created
/// the nexus numbers them (an iSCSI transport gives each (initiator name,
/// ISID) its own id; in-process callers use [`InitiatorPortId::DEFAULT`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InitiatorPortId(pub u32);

impl InitiatorPortId {
    /// The initiator port [`ItNexus::new`] uses.
    pub const DEFAULT: Self = Self(0);
}

/// An I_T nexus (SAM-5 4.6.1): an initiator port of a host and the
/// relative target port it reaches the array through. One host with several
/// initiator ports or several paths has several nexuses; unit attentions,
/// mode parameters, task sets and reservation registrations are kept per
/// nexus (or per nexus and LU, as SPC-5 keys them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItNexus {
    /// The host the initiator port belongs to.
    pub host: HostId,
    /// The initiator port of that host.
    pub initiator: InitiatorPortId,
    /// The relative target port (as in [`ScsiPath`](crate::ScsiPath)).
    pub relative_target_port: u16,
}

impl ItNexus {
    /// The nexus of `host`'s default initiator port through
    /// `relative_target_port`.
    #[must_use]
    pub const fn new(host: HostId, relative_target_port: u16) -> Self {
        Self::with_initiator(host, InitiatorPortId::DEFAULT, relative_target_port)
    }

    /// The nexus of `host`'s initiator port `initiator` through
    /// `relative_target_port`.
    #[must_use]
    pub const fn with_initiator(
        host: HostId,
        initiator: InitiatorPortId,
        relative_target_port: u16,
    ) -> Self {
        Self {
            host,
            initiator,
            relative_target_port,
        }
    }
}

/// What a command returns: status, data-in and sense (empty unless the
/// status is CHECK CONDITION).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScsiResponse {
    /// The status.
    pub status: Status,
    /// Data-in bytes, already cut to the CDB's allocation length.
    pub data_in: Vec<u8>,
    /// Sense bytes (fixed 70h, or descriptor 72h when D_SENSE is set).
    pub sense: Vec<u8>,
}

/// A SCSI PE as the target serves it.
#[derive(Clone, Debug)]
pub(crate) struct PeInfo {
    pub(crate) id: PeId,
    pub(crate) naa: Naa,
    pub(crate) admin_lun: u16,
    pub(crate) ports: Ports,
    pub(crate) addressing: SubsidiaryAddressing,
}

/// A PE's (relative target port, target port group) pairs, shared so that
/// cloning a [`PeInfo`] on the command path does not allocate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ports(Arc<[(u16, u16)]>);

impl std::ops::Deref for Ports {
    type Target = [(u16, u16)];

    fn deref(&self) -> &[(u16, u16)] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Ports {
    type Item = &'a (u16, u16);
    type IntoIter = std::slice::Iter<'a, (u16, u16)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A bound SLU as one command sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slu {
    pub(crate) pe: usize,
    pub(crate) handle: BindHandle,
    pub(crate) key: VvolKey,
    pub(crate) capacity_bytes: u64,
    pub(crate) block_size: u32,
}

/// What a LUN names for one I_T nexus.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lu {
    /// The REPORT LUNS well-known logical unit.
    ReportLunsWlun,
    /// LUN 0 with no logical unit behind it.
    AbsentLun0,
    /// A PE (index into the target's PE list).
    Alu(usize),
    /// A bound vVol.
    Slu(Slu),
    /// No logical unit for this nexus.
    Unsupported,
}

/// Why a command did not complete with GOOD.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fail {
    Check(Sense),
    Status(Status),
}

impl From<Sense> for Fail {
    fn from(s: Sense) -> Self {
        Self::Check(s)
    }
}

pub(crate) type CmdResult = Result<Vec<u8>, Fail>;

/// The nexus a command runs on: its state, found in the nexus table or
/// held by a session, and the session's LU cache.
pub(crate) struct On<'a> {
    pub(crate) nexus: ItNexus,
    pub(crate) state: &'a NexusState,
    pub(crate) lu_cache: Option<&'a LuCache>,
}

/// What one command is executing against.
pub(crate) struct Ctx<'a> {
    pub(crate) target: &'a ScsiTarget,
    pub(crate) nexus: ItNexus,
    pub(crate) state: &'a NexusState,
    pub(crate) cdb: Cdb<'a>,
    pub(crate) data_out: &'a [u8],
    pub(crate) lun: Lun,
    pub(crate) lu: Lu,
    /// The logical unit's key (mode parameters, unit attentions).
    pub(crate) key: Option<LuKey>,
    /// Where READ data-in goes (`execute_into`'s buffer, or its own).
    pub(crate) data_in: &'a dyn DataInSink,
    /// The session's last LU entry (`ScsiSession`), if a session runs it.
    pub(crate) lu_cache: Option<&'a LuCache>,
    /// The addressed LU's PE and the target port group of the nexus's
    /// port on it (read with the PE list when the LUN was resolved).
    pub(crate) port: Option<(PeId, u16)>,
}

impl Ctx<'_> {
    /// Maps a routed I/O failure to SCSI: `write` for writes, flushes,
    /// unmaps and zeroing.
    pub(crate) fn route(&self, error: RouteError, write: bool) -> Fail {
        match error {
            RouteError::OutOfRange { .. } => Sense::lba_out_of_range().into(),
            RouteError::Misaligned { .. } => Sense::invalid_field_in_cdb(2, None).into(),
            e @ (RouteError::QueueFull { .. } | RouteError::HostQueueFull { .. }) => {
                Fail::Status(super::access::queue_full_status(&e).unwrap_or(Status::Busy))
            }
            RouteError::Backend { source, .. } => backend_sense(&source, write).into(),
            // The PE failed after the ALUA check: what its LUs report now
            // (review S2; never 25h/00h, which ESXi reads as PDL).
            RouteError::PeFailed { .. } => AluaState::Unavailable
                .not_ready()
                .unwrap_or_else(Sense::lun_not_supported)
                .into(),
            _ => Sense::lun_not_supported().into(),
        }
    }
}

/// Sense for a backend failure.
pub(crate) fn backend_sense(error: &BackendError, write: bool) -> Sense {
    match error {
        BackendError::Gone { .. } => Sense::internal_target_failure(),
        BackendError::OutOfRange { .. } => Sense::lba_out_of_range(),
        BackendError::Unsupported { .. } => Sense::invalid_opcode(),
        BackendError::TooLarge { .. } => Sense::invalid_field_in_cdb(0, None),
        _ if write => Sense::new(SenseKey::MediumError, 0x0C, 0x00),
        _ => Sense::new(SenseKey::MediumError, 0x11, 0x00),
    }
}

/// A SCSI target port set of one array: its SCSI PEs are administrative
/// logical units of conglomerates, each vVol bound through them a
/// subsidiary logical unit, reached at the LUN `admin element + subsidiary
/// element` by the hosts holding the binding.
///
/// The PE list and target ports are read when the target is built;
/// [`refresh`](Self::refresh) re-reads them.
///
/// # Example
/// ```
/// use vvol::BindContext;
/// use vvol::scsi::{ItNexus, ScsiTarget, Status};
///
/// let (plane, topo) = vvol::testing::quickstart()?;
/// let plane = std::sync::Arc::new(plane);
/// let target = ScsiTarget::new(plane.clone(), topo.arrays[0])?;
/// let host = topo.hosts[0];
/// let handle = plane.bind(host, &[topo.vms[0].data], BindContext::Normal)?.remove(0)?;
/// let lun = target.lun_of(handle).expect("a SCSI binding");
/// let nexus = ItNexus::new(host, 1);
/// // The first command of a nexus reports the power-on unit attention.
/// let tur = [0u8; 6];
/// assert_eq!(target.execute(nexus, lun, &tur, &[]).status, Status::CheckCondition);
/// assert_eq!(target.execute(nexus, lun, &tur, &[]).status, Status::Good);
/// let inquiry = [0x12, 0, 0, 0, 96, 0];
/// let data = target.execute(nexus, lun, &inquiry, &[]).data_in;
/// assert_eq!(data[1] & 0x40, 0x40); // LU_CONG
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ScsiTarget {
    pub(crate) plane: Arc<ControlPlane>,
    pub(crate) router: Arc<Router>,
    pub(crate) array: ArrayId,
    pub(crate) company_id: u32,
    pub(crate) pes: RwLock<Vec<PeInfo>>,
    pub(crate) alua: AluaTable,
    pub(crate) reset_generation: AtomicU64,
    /// Bumped when [`refresh`](Self::refresh) finds another PE list.
    pub(crate) inventory_generation: AtomicU64,
    pub(crate) mode: ModeTable,
    nexuses: NexusTable,
    pub(crate) write_locks: Box<[RwLock<()>]>,
    pub(crate) naas: Mutex<HashMap<Naa, VvolId>>,
    /// Persistent and SPC-2 reservations (`reservation.rs`).
    pub(crate) reservations: super::reservation::ReservationMirror,
}

impl ScsiTarget {
    /// A target for the SCSI PEs of `array`; every target port group starts
    /// active/optimized.
    ///
    /// # Errors
    /// [`ScsiError::Control`] when the array is unknown,
    /// [`ScsiError::DuplicateAdminLun`] when two PEs share a LUN.
    pub fn new(plane: Arc<ControlPlane>, array: ArrayId) -> Result<Self, ScsiError> {
        let company_id = plane.array(array)?.ieee_company_id;
        let target = Self {
            router: plane.router(),
            plane,
            array,
            company_id,
            pes: RwLock::new(Vec::new()),
            alua: AluaTable::default(),
            reset_generation: AtomicU64::new(0),
            inventory_generation: AtomicU64::new(0),
            mode: ModeTable::default(),
            nexuses: NexusTable::default(),
            write_locks: (0..WRITE_LOCK_STRIPES).map(|_| RwLock::new(())).collect(),
            naas: Mutex::new(HashMap::new()),
            reservations: Default::default(),
        };
        target.refresh()?;
        Ok(target)
    }

    /// Re-reads the array's SCSI PEs and their target ports (after
    /// [`ControlPlane::add_pe`] or `remove_pe`). New target port groups
    /// start active/optimized. When the PE list changed, every I_T nexus
    /// then sees UNIT ATTENTION 3Fh/0Eh REPORTED LUNS DATA HAS CHANGED once
    /// on each of its LUs (SPC-5 REPORT LUNS; review S6).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn refresh(&self) -> Result<(), ScsiError> {
        let mut pes = Vec::new();
        for id in self.plane.pes_for_array(self.array)? {
            let pe = self.plane.pe(id)?;
            if let Transport::Scsi {
                naa,
                admin_lun,
                paths,
            } = &pe.transport
            {
                if let Some(other) = pes.iter().find(|p: &&PeInfo| p.admin_lun == *admin_lun) {
                    return Err(ScsiError::DuplicateAdminLun {
                        array: self.array,
                        pe: id,
                        other: other.id,
                        lun: *admin_lun,
                    });
                }
                pes.push(PeInfo {
                    id,
                    naa: *naa,
                    admin_lun: *admin_lun,
                    ports: Ports(
                        paths
                            .iter()
                            .map(|p| (p.relative_target_port, p.target_port_group))
                            .collect(),
                    ),
                    addressing: pe.secondary_ids.addressing(),
                });
            }
        }
        self.alua
            .add_groups(pes.iter().flat_map(|p| p.ports.iter().map(|(_, g)| *g)));
        let mut current = self.pes.write();
        let same = current.len() == pes.len()
            && current
                .iter()
                .zip(&pes)
                .all(|(a, b)| a.id == b.id && a.admin_lun == b.admin_lun && a.ports == b.ports);
        *current = pes;
        drop(current);
        if !same {
            self.inventory_generation.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// The array served.
    #[must_use]
    pub const fn array(&self) -> ArrayId {
        self.array
    }

    /// Sets the asymmetric access state of a whole target port group (a
    /// controller): every PE's LUs on it take `state`, replacing any
    /// [`set_pe_alua_state`](Self::set_pe_alua_state). Each LU whose state
    /// changed then reports UNIT ATTENTION 2Ah/06h once to every I_T nexus
    /// (SPC-5 5.16.2.x: an implicit transition establishes it for every
    /// I_T nexus), and REPORT TARGET PORT GROUPS shows STATUS CODE 02h.
    ///
    /// # Errors
    /// [`ScsiError::UnknownTargetPortGroup`].
    pub fn set_alua_state(
        &self,
        target_port_group: u16,
        state: AluaState,
    ) -> Result<(), ScsiError> {
        let pes: Vec<PeId> = self
            .pes
            .read()
            .iter()
            .filter(|p| p.ports.iter().any(|(_, g)| *g == target_port_group))
            .map(|p| p.id)
            .collect();
        if self.alua.set_group(target_port_group, state, &pes) {
            Ok(())
        } else {
            Err(ScsiError::UnknownTargetPortGroup(target_port_group))
        }
    }

    /// Sets the asymmetric access state of one PE's LUs (its ALU and the
    /// SLUs behind it) on one target port group, leaving the other PEs on
    /// that group as they are; UNIT ATTENTION 2Ah/06h on those LUs only.
    ///
    /// # Errors
    /// [`ScsiError::UnknownTargetPortGroup`],
    /// [`ScsiError::PeNotInPortGroup`] when this target does not serve
    /// `pe` through that group.
    pub fn set_pe_alua_state(
        &self,
        pe: PeId,
        target_port_group: u16,
        state: AluaState,
    ) -> Result<(), ScsiError> {
        if self.alua.group(target_port_group).is_none() {
            return Err(ScsiError::UnknownTargetPortGroup(target_port_group));
        }
        let served = self
            .pes
            .read()
            .iter()
            .any(|p| p.id == pe && p.ports.iter().any(|(_, g)| *g == target_port_group));
        if !served || !self.alua.set_pe(pe, target_port_group, state) {
            return Err(ScsiError::PeNotInPortGroup {
                pe,
                target_port_group,
            });
        }
        Ok(())
    }

    /// The asymmetric access state configured for a whole target port
    /// group ([`set_alua_state`](Self::set_alua_state)).
    #[must_use]
    pub fn alua_state(&self, target_port_group: u16) -> Option<AluaState> {
        self.alua.group(target_port_group)
    }

    /// The asymmetric access state `pe`'s LUs report on a target port
    /// group: Unavailable while the PE is failed
    /// ([`ControlPlane::fail_pe`]), else its own state from
    /// [`set_pe_alua_state`](Self::set_pe_alua_state) or the group's.
    /// `None` for an unknown group.
    ///
    /// # Example
    /// ```
    /// use std::sync::Arc;
    /// use vvol::scsi::{AluaState, ScsiTarget};
    ///
    /// let (plane, topo) = vvol::testing::quickstart()?;
    /// let plane = Arc::new(plane);
    /// let target = ScsiTarget::new(plane.clone(), topo.arrays[0])?;
    /// let [a, b] = [topo.pes[0], topo.pes[1]];
    /// // A controller setting covers every PE on the group ...
    /// target.set_alua_state(2, AluaState::Standby)?;
    /// assert_eq!(target.pe_alua_state(b, 2), Some(AluaState::Standby));
    /// // ... a per-PE one only that PE, and a failed PE is Unavailable.
    /// target.set_pe_alua_state(a, 2, AluaState::ActiveNonOptimized)?;
    /// plane.fail_pe(b)?;
    /// assert_eq!(target.pe_alua_state(a, 2), Some(AluaState::ActiveNonOptimized));
    /// assert_eq!(target.pe_alua_state(b, 1), Some(AluaState::Unavailable));
    /// assert_eq!(target.pe_alua_state(topo.pes[2], 1), Some(AluaState::ActiveOptimized));
    /// plane.restore_pe(b)?;
    /// assert_eq!(target.pe_alua_state(b, 2), Some(AluaState::Standby));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn pe_alua_state(&self, pe: PeId, target_port_group: u16) -> Option<AluaState> {
        let configured = self.alua.state(pe, target_port_group)?;
        Some(if self.router.pe_failed(pe) {
            AluaState::Unavailable
        } else {
            configured
        })
    }

    /// A target reset (or power cycle): every LU reports UNIT ATTENTION
    /// 29h/00h once to every I_T nexus on its next command (SAM-5 5.14),
    /// and every LU's mode parameters return to their defaults. It is a power on of the array's logical units for their
    /// reservations: SPC-2 reservations are released, persistent
    /// reservation state registered with APTPL=0 is lost and state with
    /// APTPL=1 kept, every PRgeneration returns to 0 (SPC-5 5.14.5; see
    /// [`ControlPlane::power_on_reservations`]). A reopen of a durable
    /// plane (a controller restart or failover) is not a power on: a target
    /// built on it serves every reservation as it was. When the plane
    /// cannot journal the power on, see [`try_reset`](Self::try_reset).
    pub fn reset(&self) {
        // A journal failure poisons a durable plane, which reports it to
        // the next mutation; the rest of the reset is done.
        let _ = self.try_reset();
    }

    /// [`reset`](Self::reset), reporting when the persistent reservations'
    /// power on could not be stored.
    ///
    /// # Errors
    /// [`ScsiError::Control`] when the plane could not journal it.
    pub fn try_reset(&self) -> Result<(), ScsiError> {
        self.reservations.reset();
        self.mode.reset();
        self.reset_generation.fetch_add(1, Ordering::Release);
        let stored = self.plane.power_on_reservations(self.array);
        self.reservations.reload(self);
        stored.map_err(ScsiError::from)
    }

    /// The transport lost `nexus` (an iSCSI session or FC login ended):
    /// every LU reports UNIT ATTENTION 29h/07h I_T NEXUS LOSS OCCURRED
    /// once to it (SAM-5 5.14, 6.3.4). Mode parameters are kept (they
    /// belong to the LUs, shared by all nexuses).
    pub fn nexus_loss(&self, nexus: ItNexus) {
        self.nexuses.get(nexus).loss.fetch_add(1, Ordering::Release);
    }

    /// The LUN a host uses for a SCSI binding: the PE's administrative
    /// element and the secondary id's subsidiary element. `None` for a PE
    /// this target does not serve.
    #[must_use]
    pub fn lun_of(&self, handle: BindHandle) -> Option<Lun> {
        let pes = self.pes.read();
        let pe = pes.iter().find(|p| p.id == handle.pe)?;
        let element = SubsidiaryElement::new(pe.addressing, handle.secondary_id)?;
        Lun::conglomerate(pe.admin_lun, Some(element)).ok()
    }

    /// The LUN of a PE (its administrative logical unit), in the form
    /// REPORT LUNS reports it ([`Lun::administrative`]).
    #[must_use]
    pub fn admin_lun_of(&self, pe: PeId) -> Option<Lun> {
        let pes = self.pes.read();
        let info = pes.iter().find(|p| p.id == pe)?;
        Lun::administrative(info.admin_lun).ok()
    }

    /// The NAA designator of a vVol of this array: NAA 6, the array's IEEE
    /// company id, and the low 100 bits of the vVol's UUID.
    ///
    /// # Errors
    /// [`ScsiError::NaaCollision`] when another vVol of the array (or a PE)
    /// already derived the same designator.
    pub fn vvol_naa(&self, vvol: VvolId) -> Result<Naa, ScsiError> {
        let naa = derive_vvol_naa(self.company_id, vvol);
        if let Some(pe) = self.pes.read().iter().find(|p| p.naa == naa) {
            return Err(ScsiError::NaaCollision {
                array: self.array,
                vvol,
                other: pe.id.to_string(),
                naa,
            });
        }
        let mut naas = self.naas.lock();
        match naas.get(&naa) {
            Some(other) if *other != vvol => {
                // The other vVol may have been deleted since.
                if self.plane.vvol(*other).is_ok() {
                    return Err(ScsiError::NaaCollision {
                        array: self.array,
                        vvol,
                        other: other.to_string(),
                        naa,
                    });
                }
                naas.insert(naa, vvol);
            }
            Some(_) => {}
            None => {
                naas.insert(naa, vvol);
            }
        }
        Ok(naa)
    }

    /// Checks every vVol of the array's containers for designator
    /// collisions, registering each designator.
    ///
    /// # Errors
    /// [`ScsiError::NaaCollision`] for the first collision found.
    pub fn check_vvol_naas(&self) -> Result<(), ScsiError> {
        for container in self.plane.array(self.array)?.containers {
            for vvol in self.plane.vvols_in(container)? {
                self.vvol_naa(vvol)?;
            }
        }
        Ok(())
    }

    pub(crate) fn nexus(&self, nexus: ItNexus) -> Arc<NexusState> {
        self.nexuses.get(nexus)
    }

    /// Resolves `lun` for `nexus`: the logical unit, and when the LUN names
    /// a PE's conglomerate on the nexus's port, the PE and the port's target
    /// port group. Takes no queue place (review S17): the READ or WRITE
    /// that follows is admitted once by the router.
    pub(crate) fn resolve_lu(&self, nexus: ItNexus, lun: Lun) -> (Lu, Option<(PeId, u16)>) {
        if lun == REPORT_LUNS_WLUN {
            return (Lu::ReportLunsWlun, None);
        }
        let absent = if lun.is_zero() {
            Lu::AbsentLun0
        } else {
            Lu::Unsupported
        };
        // Either form of the administrative element (SAM-5 4.7.3; see
        // `Lun::decode_addressed`).
        let Ok(c) = lun.decode_addressed() else {
            return (Lu::Unsupported, None);
        };
        let pes = self.pes.read();
        let found = pes.iter().enumerate().find_map(|(index, pe)| {
            if pe.admin_lun != c.admin {
                return None;
            }
            let (_, group) = pe
                .ports
                .iter()
                .find(|(p, _)| *p == nexus.relative_target_port)?;
            Some((index, pe, *group))
        });
        let Some((index, pe, group)) = found else {
            return (absent, None);
        };
        let lu = match c.subsidiary {
            None if super::access::alu_visible(&self.router, nexus.host, pe.id) => Lu::Alu(index),
            None => absent,
            // A binding on a failed PE is still that SLU: it answers with
            // the Unavailable ALUA state while its I/O fails (review S2).
            // Only a LUN naming no binding is 25h/00h.
            Some(element) if element.addressing() == pe.addressing => {
                let sid = element.secondary_id();
                match self.router.bound_volume(pe.id, nexus.host, sid) {
                    Some(bound) => Lu::Slu(Slu {
                        pe: index,
                        handle: BindHandle {
                            pe: pe.id,
                            secondary_id: sid,
                            generation: bound.resolved.generation,
                        },
                        key: bound.resolved.vvol,
                        capacity_bytes: bound.capacity_bytes,
                        block_size: bound.block_size,
                    }),
                    None => Lu::Unsupported,
                }
            }
            Some(_) => Lu::Unsupported,
        };
        (lu, Some((pe.id, group)))
    }

    pub(crate) fn pe(&self, index: usize) -> Option<PeInfo> {
        self.pes.read().get(index).cloned()
    }

    pub(crate) fn pe_id(&self, index: usize) -> Option<PeId> {
        self.pes.read().get(index).map(|p| p.id)
    }

    /// The target port group of a relative target port, if any PE uses it.
    pub(crate) fn port_group(&self, port: u16) -> Option<u16> {
        self.pes
            .read()
            .iter()
            .flat_map(|p| p.ports.iter())
            .find(|(p, _)| *p == port)
            .map(|(_, g)| *g)
    }

    /// Executes one CDB from `nexus` addressed to `lun`, with `data_out` as
    /// the data-out buffer. Never panics on caller bytes: anything malformed
    /// becomes CHECK CONDITION with ILLEGAL REQUEST sense.
    ///
    /// A convenience over the same path as
    /// [`execute_into`](Self::execute_into), which transports use: this
    /// one returns the data-in and sense in `Vec`s.
    pub fn execute(&self, nexus: ItNexus, lun: Lun, cdb: &[u8], data_out: &[u8]) -> ScsiResponse {
        match self.execute_with(nexus, lun, cdb, data_out, &OwnData) {
            Outcome::Good(data_in) => ScsiResponse {
                status: Status::Good,
                data_in,
                sense: Vec::new(),
            },
            Outcome::Check(sense) => ScsiResponse {
                status: Status::CheckCondition,
                data_in: Vec::new(),
                sense: sense.to_vec(),
            },
            Outcome::Status(status) => ScsiResponse {
                status,
                data_in: Vec::new(),
                sense: Vec::new(),
            },
        }
    }

    /// Runs one command in the nexus's task set, READ data-in going where
    /// `data_in` says.
    pub(crate) fn execute_with(
        &self,
        nexus: ItNexus,
        lun: Lun,
        cdb: &[u8],
        data_out: &[u8],
        data_in: &dyn DataInSink,
    ) -> Outcome {
        let state = self.nexus(nexus);
        let on = On {
            nexus,
            state: &state,
            lu_cache: None,
        };
        self.execute_on(&on, lun, cdb, data_out, data_in)
    }

    /// Runs one command of the nexus `on` names (a session's, or one found
    /// in the nexus table).
    pub(crate) fn execute_on(
        &self,
        on: &On<'_>,
        lun: Lun,
        cdb: &[u8],
        data_out: &[u8],
        data_in: &dyn DataInSink,
    ) -> Outcome {
        let (result, key) = self.run(on, lun, cdb, data_out, data_in);
        Outcome::of(result, || self.mode.get(key).d_sense)
    }

    fn run(
        &self,
        on: &On<'_>,
        lun: Lun,
        cdb: &[u8],
        data_out: &[u8],
        data_in: &dyn DataInSink,
    ) -> (CmdResult, Option<LuKey>) {
        let nexus = on.nexus;
        let (lu, port) = self.resolve_lu(nexus, lun);
        let key = LuKey::of(self, &lu);
        let cdb = match Cdb::parse(cdb) {
            Ok(cdb) => cdb,
            Err(e) => return (Err(e.into()), key),
        };
        let ctx = Ctx {
            target: self,
            nexus,
            state: on.state,
            cdb,
            data_out,
            lun,
            lu,
            key,
            data_in,
            lu_cache: on.lu_cache,
            port,
        };
        (super::dispatch::dispatch(&ctx), key)
    }
}

/// NAA 6 with `company_id` and the low 100 bits of the vVol's UUID
/// (36-bit vendor-specific identifier + 64-bit extension).
#[must_use]
pub fn derive_vvol_naa(company_id: u32, vvol: VvolId) -> Naa {
    let low = vvol.get() & ((1u128 << 100) - 1);
    Naa::from_parts(company_id & 0xFF_FFFF, (low >> 64) as u64, low as u64)
        .expect("masked fields fit NAA 6")
}

/// Index of the write-lock stripe of a vVol.
pub(crate) fn stripe(key: VvolKey) -> usize {
    key.0 as usize % WRITE_LOCK_STRIPES
}
