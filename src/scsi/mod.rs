//! SCSI transport: PEs as administrative logical units (ALUs) of T10
//! logical unit conglomerates, each bound vVol a subsidiary logical unit
//! (SLU) reached at the LUN `PE admin element (bytes 0-1) + subsidiary
//! element (bytes 2-7)` (SAM-5 4.7, SPC-5).
//!
//! - [`Lun`], [`LunLevel`], [`ConglomerateLun`], [`SubsidiaryElement`] and
//!   [`VendorSecondaryId`]: the 8-byte LUN codec and vendor id text;
//! - [`ScsiTarget`]: executes CDBs for an [`ItNexus`] and a [`Lun`] through
//!   the [`Router`](crate::Router), returning a [`ScsiResponse`] (status,
//!   data-in, [`Sense`] bytes);
//! - [`AluaState`]: target port group states (REPORT TARGET PORT GROUPS,
//!   NOT READY on non-active ports, UNIT ATTENTION 2Ah/06h on change);
//! - [`Multipath`]: one host's paths to a PE with ALUA-aware failover and
//!   the Fixed, MRU and RoundRobin policies.
//!
//! Enabled by the default cargo feature `scsi`.
//!
//! # Example: discover the SLUs behind a PE
//! ```
//! use std::sync::Arc;
//! use vvol::BindContext;
//! use vvol::scsi::{ItNexus, ScsiTarget, Status};
//!
//! let (plane, topo) = vvol::testing::quickstart()?;
//! let plane = Arc::new(plane);
//! let target = ScsiTarget::new(plane.clone(), topo.arrays[0])?;
//! let host = topo.hosts[0];
//! let handle = plane.bind(host, &[topo.vms[0].data], BindContext::Normal)?.remove(0)?;
//! let pe_lun = target.admin_lun_of(handle.pe).unwrap();
//! // REPORT LUNS, SELECT REPORT 12h, sent to the PE.
//! let cdb = [0xA0, 0, 0x12, 0, 0, 0, 0, 0, 1, 0, 0, 0];
//! let r = target.execute(ItNexus::new(host, 1), pe_lun, &cdb, &[]);
//! assert_eq!(r.status, Status::Good);
//! assert_eq!(&r.data_in[..4], &[0, 0, 0, 16]); // the ALU and one SLU
//! assert_eq!(&r.data_in[16..24], &target.lun_of(handle).unwrap().to_bytes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod access;
mod alua;
mod block;
mod cdb;
mod dispatch;
mod error;
mod inquiry;
pub mod limits;
mod lun;
mod mode;
mod multipath;
mod opcodes;
mod report_luns;
mod sense;
mod target;
mod unit_attention;

pub use alua::AluaState;
pub use block::{ALU_BLOCK_SIZE, ALU_BLOCKS};
pub use cdb::{MAX_CDB_LEN, cdb_len};
pub use error::{LunError, ScsiError};
pub use inquiry::{
    PE_PRODUCT_ID, PRODUCT_REVISION, STANDARD_INQUIRY_LEN, TARGET_PRODUCT_ID, VENDOR_ID,
    VVOL_PRODUCT_ID, version_descriptor,
};
pub use lun::{
    ConglomerateLun, Lun, LunLevel, MAX_14_BIT, MAX_LUN_LEVELS, REPORT_LUNS_WLUN, SecondaryIdStyle,
    SubsidiaryElement, VendorSecondaryId, WLUN_REPORT_LUNS,
};
pub use mode::{ALL_PAGES, CACHING_PAGE, CONTROL_PAGE, MAX_MODE_SELECT_LEN};
pub use multipath::{
    DEFAULT_RR_IOPS, MAX_UA_RETRIES, Multipath, MultipathError, PathInfo, PathPolicy,
    RTPG_ALLOCATION,
};
pub use report_luns::MIN_REPORT_LUNS_ALLOCATION;
pub use sense::{FIXED_SENSE_LEN, FieldPointer, Sense, SenseKey, Status};
pub use target::{
    InitiatorPortId, ItNexus, ScsiResponse, ScsiTarget, WRITE_LOCK_STRIPES, derive_vvol_naa,
};
