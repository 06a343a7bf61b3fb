//! The quickstart topology for examples, tests and benchmarks.
//!
//! [`quickstart`] builds the vSphere documentation's example (one array with
//! 2 containers and 3 PEs, where vVols of both containers can bind through
//! all 3 PEs) plus a second array with an NFS container and PE, 2 hosts
//! (each with an iSCSI initiator name) that every PE is mapped to and that
//! report every PE in their PE context, and three VMs' vVols. Everything is deterministic: the same
//! ids, NAA names, LUNs and vVol UUIDs on every run.

use crate::binding::{ControlError, ControlPlane, Limits};
use crate::model::{
    ArrayId, ArraySpec, ContainerId, ContainerSpec, HostId, InitiatorName, Naa, NfsVersion, PeId,
    PeSpec, Protocol, ScsiPath, VvolId, VvolSpec, VvolType,
};

/// IEEE company id used for the quickstart's SCSI array.
pub const QUICKSTART_COMPANY_ID: u32 = 0x00_1A_2B;
/// Administrative LUNs of the quickstart's three SCSI PEs.
pub const QUICKSTART_ADMIN_LUNS: [u16; 3] = [254, 255, 256];

/// The vVols of one VM.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Vm {
    /// The VM's name.
    pub name: String,
    /// The container holding its vVols.
    pub container: ContainerId,
    /// Its Config vVol (VM home).
    pub config: VvolId,
    /// Its Data vVol (one virtual disk).
    pub data: VvolId,
    /// Its Swap vVol, when it has been powered on.
    pub swap: Option<VvolId>,
}

impl Vm {
    /// All of the VM's vVols: config, data, then swap.
    #[must_use]
    pub fn vvols(&self) -> Vec<VvolId> {
        let mut all = vec![self.config, self.data];
        all.extend(self.swap);
        all
    }
}

/// The ids of a built topology.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Topology {
    /// `[scsi array, nfs array]`.
    pub arrays: Vec<ArrayId>,
    /// `[gold (SCSI), silver (SCSI), bronze (NFS)]`.
    pub containers: Vec<ContainerId>,
    /// `[3 SCSI PEs of the first array..., the NFS PE]`.
    pub pes: Vec<PeId>,
    /// `[esx-01, esx-02]`, each seeing every PE.
    pub hosts: Vec<HostId>,
    /// The hosts' names, in the order of [`hosts`](Self::hosts).
    pub host_names: Vec<String>,
    /// `vm-a` (gold), `vm-b` (silver), `vm-c` (bronze, NFS).
    pub vms: Vec<Vm>,
}

impl Topology {
    /// The index in [`hosts`](Self::hosts) of the host named by
    /// `index_or_name`: a 0-based index (`"0"` is `esx-01`) or a host name
    /// (`"esx-01"`). `None` when it names no host. This is how every example
    /// reads its `--host` argument.
    ///
    /// # Example
    /// ```
    /// let (_plane, topo) = vvol::testing::quickstart()?;
    /// assert_eq!(topo.host_index("0"), Some(0));
    /// assert_eq!(topo.host_index("esx-02"), Some(1));
    /// assert_eq!(topo.host_index("2"), None);
    /// assert_eq!(topo.host_index("esx-03"), None);
    /// # Ok::<(), vvol::ControlError>(())
    /// ```
    #[must_use]
    pub fn host_index(&self, index_or_name: &str) -> Option<usize> {
        if let Ok(index) = index_or_name.parse::<usize>() {
            return (index < self.hosts.len()).then_some(index);
        }
        self.host_names.iter().position(|n| n == index_or_name)
    }
}

/// Builds the quickstart topology on a new control plane with default limits.
///
/// # Errors
/// None in practice; the error type is the control plane's.
///
/// # Example
/// ```
/// let (plane, topo) = vvol::testing::quickstart()?;
/// assert_eq!(plane.pes_for_array(topo.arrays[0])?.len(), 3);
/// assert_eq!(topo.vms.len(), 3);
/// # Ok::<(), vvol::ControlError>(())
/// ```
pub fn quickstart() -> Result<(ControlPlane, Topology), ControlError> {
    quickstart_with(Limits::default())
}

/// The quickstart hosts' iSCSI initiator names are this prefix and the
/// host name (`iqn.1998-01.com.vmware:esx-01`, ESXi's own naming).
pub const QUICKSTART_IQN_PREFIX: &str = "iqn.1998-01.com.vmware:";

/// The id seed of the quickstart plane: its vVol ids (and so its NAAs and
/// export names) are the same on every run.
pub const QUICKSTART_ID_SEED: u64 = 0x7676_6f6c_5f69_6473;

/// Builds the quickstart topology with `limits`, on a plane with
/// deterministic ids ([`QUICKSTART_ID_SEED`]).
///
/// # Errors
/// [`ControlError::TooMany`] when `limits` are too small for it.
pub fn quickstart_with(limits: Limits) -> Result<(ControlPlane, Topology), ControlError> {
    quickstart_on(ControlPlane::new(limits).with_id_seed(QUICKSTART_ID_SEED)?)
}

/// Builds the quickstart topology on `plane` (empty, any id source; a
/// durable one, say).
///
/// # Errors
/// [`ControlError::TooMany`] when its limits are too small for it,
/// [`ControlError::DuplicateName`] when it is not empty.
pub fn quickstart_on(plane: ControlPlane) -> Result<(ControlPlane, Topology), ControlError> {
    const GIB: u64 = 1 << 30;
    const TIB: u64 = 1 << 40;
    let scsi = plane.add_array(ArraySpec::new("array-a", QUICKSTART_COMPANY_ID))?;
    let nfs = plane.add_array(ArraySpec::new("array-b", 0x00_3C_4D))?;
    let gold = plane.add_container(scsi, ContainerSpec::new("gold", Protocol::Scsi, 4 * TIB))?;
    let silver = plane.add_container(
        scsi,
        ContainerSpec::new("silver", Protocol::Scsi, 2 * TIB).with_max_vvol_bytes(TIB),
    )?;
    let bronze = plane.add_container(nfs, ContainerSpec::new("bronze", Protocol::Nfs, TIB))?;
    let mut pes = Vec::new();
    for (i, lun) in QUICKSTART_ADMIN_LUNS.into_iter().enumerate() {
        let n = i as u64 + 1;
        let naa = Naa::from_parts(
            QUICKSTART_COMPANY_ID,
            0x0_5EED_0000 + n,
            0xC0FF_EE00_0000_0000 + n,
        )
        .expect("fixed fields fit");
        let spec =
            PeSpec::scsi(naa, lun).with_paths(vec![ScsiPath::new(1, 1), ScsiPath::new(2, 2)]);
        pes.push(plane.add_pe(scsi, spec)?);
    }
    pes.push(plane.add_pe(nfs, PeSpec::nfs("192.0.2.10", "/vvol-pe", NfsVersion::V3))?);
    let host_names = vec!["esx-01".to_owned(), "esx-02".to_owned()];
    let mut hosts = Vec::new();
    for name in &host_names {
        hosts.push(plane.add_host(name)?);
    }
    // The real bring-up order: each host's iSCSI initiator, the array's
    // access rules (LUN masking: every PE mapped to every host), then each
    // host reports the PEs it discovered (VASA setPEContext).
    for (host, name) in hosts.iter().zip(&host_names) {
        let iqn = InitiatorName::iscsi(&format!("{QUICKSTART_IQN_PREFIX}{name}"))
            .expect("the quickstart initiator names are valid");
        plane.add_initiator(*host, iqn)?;
        for pe in &pes {
            plane.map_pe(*host, *pe)?;
        }
        plane.set_pe_context(*host, &pes)?;
    }
    let mut vms = Vec::new();
    for (name, container, disk) in [
        ("vm-a", gold, 40 * GIB),
        ("vm-b", silver, 100 * GIB),
        ("vm-c", bronze, 20 * GIB),
    ] {
        let config = plane.create_vvol(container, VvolSpec::new(VvolType::Config, 4 * GIB))?;
        let data = plane.create_vvol(
            container,
            VvolSpec::new(VvolType::Data, disk).with_logical_block_size(512),
        )?;
        let swap = plane.create_vvol(container, VvolSpec::new(VvolType::Swap, 8 * GIB))?;
        vms.push(Vm {
            name: name.to_owned(),
            container,
            config,
            data,
            swap: Some(swap),
        });
    }
    let topology = Topology {
        arrays: vec![scsi, nfs],
        containers: vec![gold, silver, bronze],
        pes,
        hosts,
        host_names,
        vms,
    };
    Ok((plane, topology))
}
