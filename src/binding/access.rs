//! Host access: initiator names and access rules (array LUN masking), and
//! the VASA PE context the host reports. The bring-up order of a real
//! array (domain.md corrections, review S3): the administrator maps the PE
//! LUN to the host's initiator group ([`ControlPlane::map_pe`]), the host
//! scans and finds the PE (REPORT LUNS, INQUIRY LU_CONG), then reports it
//! with `setPEContext` ([`ControlPlane::set_pe_context`]). Binds choose
//! among PEs that are both mapped and reported.

use std::collections::BTreeSet;

use super::ControlError;
use super::control_plane::{ControlPlane, too_many};
use super::journal::Record;
use crate::model::{HostId, InitiatorName, MAX_INITIATORS_PER_HOST, PeId};

impl ControlPlane {
    /// Gives `host` the initiator `name` (an iSCSI initiator node now, a
    /// Fibre Channel WWPN later). Adding a name the host already has
    /// changes nothing.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::InitiatorInUse`]
    /// when another host has the name, [`ControlError::TooMany`] past
    /// [`MAX_INITIATORS_PER_HOST`], [`ControlError::Journal`].
    ///
    /// # Example
    /// ```
    /// use vvol::{ControlError, ControlPlane, InitiatorName, Limits};
    ///
    /// let plane = ControlPlane::new(Limits::default());
    /// let esx1 = plane.add_host("esx-01")?;
    /// let esx2 = plane.add_host("esx-02")?;
    /// let iqn: InitiatorName = "iqn.1998-01.com.vmware:esx-01".parse()?;
    /// plane.add_initiator(esx1, iqn.clone())?;
    /// assert_eq!(plane.host_for_initiator(&iqn), Some(esx1));
    /// assert!(matches!(
    ///     plane.add_initiator(esx2, iqn.clone()),
    ///     Err(ControlError::InitiatorInUse { owner, .. }) if owner == esx1
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_initiator(&self, host: HostId, name: InitiatorName) -> Result<(), ControlError> {
        let st = self.lock();
        let h = st.host(host)?;
        match st.initiators.get(&name) {
            Some(owner) if *owner == host => return Ok(()),
            Some(owner) => {
                return Err(ControlError::InitiatorInUse {
                    name,
                    host,
                    owner: *owner,
                });
            }
            None => {}
        }
        if h.initiators.len() >= MAX_INITIATORS_PER_HOST {
            return Err(too_many(
                "initiators of a host",
                MAX_INITIATORS_PER_HOST as u32,
            ));
        }
        let rec = Record::Initiator {
            host,
            name,
            add: true,
        };
        self.commit(st, rec, None)
    }

    /// Takes the initiator `name` away from `host`.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::InitiatorNotFound`],
    /// [`ControlError::Journal`].
    pub fn remove_initiator(&self, host: HostId, name: &InitiatorName) -> Result<(), ControlError> {
        let st = self.lock();
        if !st.host(host)?.initiators.contains(name) {
            return Err(ControlError::InitiatorNotFound {
                host,
                name: name.clone(),
            });
        }
        let rec = Record::Initiator {
            host,
            name: name.clone(),
            add: false,
        };
        self.commit(st, rec, None)
    }

    /// The host that has the initiator `name`, if any: what a transport
    /// asks once per login to turn an initiator into a host (it takes the
    /// plane's lock, briefly; the per-command checks read the router).
    #[must_use]
    pub fn host_for_initiator(&self, name: &InitiatorName) -> Option<HostId> {
        self.lock().initiators.get(name).copied()
    }

    /// Maps `pe` to `host`: the array's access rules (LUN masking, one
    /// initiator group per host) let the host's initiators discover the
    /// PE in-band. Masking is explicit, as on an array: a host sees no PE
    /// until one is mapped to it. Mapping a mapped PE changes nothing.
    /// Every change bumps
    /// [`Router::host_inventory_changes`](crate::Router::host_inventory_changes).
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::PeNotFound`],
    /// [`ControlError::Journal`].
    pub fn map_pe(&self, host: HostId, pe: PeId) -> Result<(), ControlError> {
        let st = self.lock();
        let h = st.host(host)?;
        st.pe(pe)?;
        if h.mapped.contains(&pe) {
            return Ok(());
        }
        let rec = Record::MapPe {
            host,
            pe,
            mapped: true,
        };
        self.commit(st, rec, None)
    }

    /// Unmaps `pe` from `host`. Refused while the host holds bindings on
    /// the PE: its subsidiary LUs would vanish behind its back, which a
    /// host reads as permanent device loss (05h/25h/00h, domain.md 3.7);
    /// unbind or rebind them first. Unmapping a PE that is not mapped
    /// changes nothing.
    ///
    /// # Errors
    /// [`ControlError::HostNotFound`], [`ControlError::PeNotFound`],
    /// [`ControlError::HostBoundOnPe`], [`ControlError::Journal`].
    pub fn unmap_pe(&self, host: HostId, pe: PeId) -> Result<(), ControlError> {
        let st = self.lock();
        let h = st.host(host)?;
        st.pe(pe)?;
        if !h.mapped.contains(&pe) {
            return Ok(());
        }
        if h.bindings.iter().any(|k| k.0 == pe) {
            return Err(ControlError::HostBoundOnPe { host, pe });
        }
        let rec = Record::MapPe {
            host,
            pe,
            mapped: false,
        };
        self.commit(st, rec, None)
    }

    /// Records the PEs `host` reports it can see (VASA `setPEContext`),
    /// replacing its previous report; duplicates are ignored. It records
    /// what the host discovered after the PEs were mapped to it
    /// ([`map_pe`](Self::map_pe)) and changes no access: a smaller list is
    /// accepted, and bindings the host holds on a PE that left the list
    /// keep working (the PE just receives no new binds for the host). New
    /// binds choose among active PEs that are both mapped to the host and
    /// in its context.
    ///
    /// # Errors
    /// Only the faults VASA declares for setPEContext (domain.md 2.2):
    /// [`ControlError::UnknownSessionHost`] (InvalidSession) for an unknown
    /// host, [`ControlError::UnknownReportedPe`] (StorageFault) for a PE
    /// this provider does not have, [`ControlError::Journal`]
    /// (StorageFault).
    pub fn set_pe_context(&self, host: HostId, pes: &[PeId]) -> Result<(), ControlError> {
        let st = self.lock();
        let Some(h) = st.hosts.get(&host) else {
            return Err(ControlError::UnknownSessionHost(host));
        };
        // Checked before anything is copied: the list then holds only PEs
        // that exist, so its set is bounded by `max_pes`.
        if let Some(pe) = pes.iter().find(|pe| !st.pes.contains_key(pe)) {
            return Err(ControlError::UnknownReportedPe { host, pe: *pe });
        }
        let new: BTreeSet<PeId> = pes.iter().copied().collect();
        if h.pe_context == new {
            return Ok(());
        }
        let rec = Record::SetPeContext {
            host,
            pes: new.into_iter().collect(),
        };
        self.commit(st, rec, None)
    }
}
