//! [`ScsiTarget`]: executes CDBs for an I_T nexus and a LUN through the
//! [`Router`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::alua::AluaState;
use super::cdb::Cdb;
use super::limits::MAX_NEXUSES;
use super::lun::{Lun, REPORT_LUNS_WLUN, SubsidiaryElement};
use super::sense::{SenseKey, Status};
use super::unit_attention::NexusState;
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
    pub(crate) ports: Vec<(u16, u16)>,
    pub(crate) addressing: SubsidiaryAddressing,
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

/// What one command is executing against.
pub(crate) struct Ctx<'a> {
    pub(crate) target: &'a ScsiTarget,
    pub(crate) nexus: ItNexus,
    pub(crate) state: &'a NexusState,
    pub(crate) cdb: Cdb<'a>,
    pub(crate) data_out: &'a [u8],
    pub(crate) lun: Lun,
    pub(crate) lu: Lu,
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
            _ => Sense::lun_not_supported().into(),
        }
    }
}

/// Sense for a backend failure.
pub(crate) fn backend_sense(error: &BackendError, write: bool) -> Sense {
    match error {
        BackendError::Gone { .. } => Sense::new(SenseKey::HardwareError, 0x44, 0x00),
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
    pub(crate) alua: Mutex<BTreeMap<u16, AluaState>>,
    pub(crate) alua_generation: AtomicU64,
    pub(crate) reset_generation: AtomicU64,
    nexuses: Mutex<HashMap<ItNexus, Arc<NexusState>>>,
    pub(crate) write_locks: Box<[RwLock<()>]>,
    pub(crate) naas: Mutex<HashMap<Naa, VvolId>>,
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
            alua: Mutex::new(BTreeMap::new()),
            alua_generation: AtomicU64::new(0),
            reset_generation: AtomicU64::new(0),
            nexuses: Mutex::new(HashMap::new()),
            write_locks: (0..WRITE_LOCK_STRIPES).map(|_| RwLock::new(())).collect(),
            naas: Mutex::new(HashMap::new()),
        };
        target.refresh()?;
        Ok(target)
    }

    /// Re-reads the array's SCSI PEs and their target ports (after
    /// [`ControlPlane::add_pe`] or `remove_pe`). New target port groups
    /// start active/optimized.
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
                    ports: paths
                        .iter()
                        .map(|p| (p.relative_target_port, p.target_port_group))
                        .collect(),
                    addressing: pe.secondary_ids.addressing(),
                });
            }
        }
        let mut alua = self.alua.lock();
        for pe in &pes {
            for (_, tpg) in &pe.ports {
                alua.entry(*tpg).or_default();
            }
        }
        *self.pes.write() = pes;
        Ok(())
    }

    /// The array served.
    #[must_use]
    pub const fn array(&self) -> ArrayId {
        self.array
    }

    /// Sets the asymmetric access state of a target port group; every I_T
    /// nexus then sees UNIT ATTENTION 2Ah/06h once.
    ///
    /// # Errors
    /// [`ScsiError::UnknownTargetPortGroup`].
    pub fn set_alua_state(
        &self,
        target_port_group: u16,
        state: AluaState,
    ) -> Result<(), ScsiError> {
        let mut alua = self.alua.lock();
        let slot = alua
            .get_mut(&target_port_group)
            .ok_or(ScsiError::UnknownTargetPortGroup(target_port_group))?;
        if *slot != state {
            *slot = state;
            self.alua_generation.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// The asymmetric access state of a target port group.
    #[must_use]
    pub fn alua_state(&self, target_port_group: u16) -> Option<AluaState> {
        self.alua.lock().get(&target_port_group).copied()
    }

    /// A target reset (or power cycle): every I_T nexus sees UNIT ATTENTION
    /// 29h/00h on its next command, and its mode parameters return to their
    /// defaults.
    pub fn reset(&self) {
        self.reset_generation.fetch_add(1, Ordering::Release);
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
        let mut fresh = false;
        let state = {
            let mut map = self.nexuses.lock();
            if map.len() >= MAX_NEXUSES && !map.contains_key(&nexus) {
                // Past the limit a nexus runs with fresh, unsaved state and
                // without the power-on unit attention it could never clear.
                let state = Arc::new(NexusState::transient(self));
                drop(map);
                state.baseline(self, nexus, None);
                return state;
            }
            Arc::clone(map.entry(nexus).or_insert_with(|| {
                fresh = true;
                Arc::new(NexusState::new(self))
            }))
        };
        if fresh {
            state.baseline(self, nexus, None);
        }
        state
    }

    /// Resolves `lun` for `nexus`; `Err` when a queue-full status must be
    /// returned instead.
    pub(crate) fn resolve_lu(&self, nexus: ItNexus, lun: Lun) -> Result<Lu, RouteError> {
        if lun == REPORT_LUNS_WLUN {
            return Ok(Lu::ReportLunsWlun);
        }
        // Either form of the administrative element (SAM-5 4.7.3; see
        // `Lun::decode_addressed`).
        let Ok(c) = lun.decode_addressed() else {
            return Ok(Lu::Unsupported);
        };
        let pes = self.pes.read();
        let found = pes.iter().enumerate().find(|(_, p)| {
            p.admin_lun == c.admin
                && p.ports
                    .iter()
                    .any(|(port, _)| *port == nexus.relative_target_port)
        });
        let Some((index, pe)) = found else {
            return Ok(if lun.is_zero() {
                Lu::AbsentLun0
            } else {
                Lu::Unsupported
            });
        };
        match c.subsidiary {
            None => {
                let visible = super::access::alu_visible(&self.router, nexus.host, pe.id);
                Ok(if visible {
                    Lu::Alu(index)
                } else if lun.is_zero() {
                    Lu::AbsentLun0
                } else {
                    Lu::Unsupported
                })
            }
            Some(element) if element.addressing() == pe.addressing => {
                let sid = element.secondary_id();
                let Some(resolved) = self.router.resolve(pe.id, sid) else {
                    return Ok(Lu::Unsupported);
                };
                let handle = BindHandle {
                    pe: pe.id,
                    secondary_id: sid,
                    generation: resolved.generation,
                };
                match self.router.geometry(nexus.host, handle) {
                    Ok((capacity_bytes, block_size)) => Ok(Lu::Slu(Slu {
                        pe: index,
                        handle,
                        key: resolved.vvol,
                        capacity_bytes,
                        block_size,
                    })),
                    Err(e @ (RouteError::QueueFull { .. } | RouteError::HostQueueFull { .. })) => {
                        Err(e)
                    }
                    Err(_) => Ok(Lu::Unsupported),
                }
            }
            Some(_) => Ok(Lu::Unsupported),
        }
    }

    pub(crate) fn pe(&self, index: usize) -> Option<PeInfo> {
        self.pes.read().get(index).cloned()
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
    pub fn execute(&self, nexus: ItNexus, lun: Lun, cdb: &[u8], data_out: &[u8]) -> ScsiResponse {
        let state = self.nexus(nexus);
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        let _guard = InFlight(&state.in_flight);
        let result = self.run(nexus, &state, lun, cdb, data_out);
        match result {
            Ok(data_in) => ScsiResponse {
                status: Status::Good,
                data_in,
                sense: Vec::new(),
            },
            Err(Fail::Check(sense)) => ScsiResponse {
                status: Status::CheckCondition,
                data_in: Vec::new(),
                sense: sense.to_bytes(state.d_sense(self)),
            },
            Err(Fail::Status(status)) => ScsiResponse {
                status,
                data_in: Vec::new(),
                sense: Vec::new(),
            },
        }
    }

    fn run(
        &self,
        nexus: ItNexus,
        state: &NexusState,
        lun: Lun,
        cdb: &[u8],
        data_out: &[u8],
    ) -> CmdResult {
        let lu = self.resolve_lu(nexus, lun).map_err(|e| {
            Fail::Status(super::access::queue_full_status(&e).unwrap_or(Status::Busy))
        })?;
        let cdb = Cdb::parse(cdb)?;
        let ctx = Ctx {
            target: self,
            nexus,
            state,
            cdb,
            data_out,
            lun,
            lu,
        };
        super::dispatch::dispatch(&ctx)
    }
}

struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
