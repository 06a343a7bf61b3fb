//! SCSI transport: PEs as administrative logical units (ALUs) of T10
//! logical unit conglomerates, each bound vVol a subsidiary logical unit
//! (SLU) reached at the LUN `PE admin element (bytes 0-1) + subsidiary
//! element (bytes 2-7)` (SAM-5 4.7, SPC-5).
//!
//! - [`Lun`], [`LunLevel`], [`ConglomerateLun`], [`SubsidiaryElement`] and
//!   [`VendorSecondaryId`]: the 8-byte LUN codec and vendor id text;
//! - [`ScsiTarget`]: executes CDBs for an [`ItNexus`] and a [`Lun`] through
//!   the [`Router`](crate::Router), returning a [`ScsiResponse`] (status,
//!   data-in, [`Sense`] bytes), or with
//!   [`execute_into`](ScsiTarget::execute_into) into the caller's buffer;
//! - [`ScsiSession`]: one nexus's commands as a transport connection issues
//!   them, holding the nexus's state between commands;
//! - [`AluaState`]: target port group states (REPORT TARGET PORT GROUPS,
//!   NOT READY on non-active ports, UNIT ATTENTION 2Ah/06h on change);
//! - [`Multipath`]: one host's paths to a PE with ALUA-aware failover and
//!   the Fixed, MRU and RoundRobin policies.
//!
//! Enabled by the default cargo feature `scsi`.
//!
//! # How ESXi reads failures: APD and PDL
//!
//! ESXi tells two kinds of device loss apart (`shared/reference/domain.md`,
//! corrections note and §3.7; review `domain.md` S2 and D1):
//! - **PDL, permanent device loss**: the device answers with sense data
//!   that says it is gone. VMware KB 2004684 lists 05h/25h/00h LOGICAL UNIT
//!   NOT SUPPORTED among the PDL codes (the review also recalls 04h/4Ch/00h
//!   and 02h/3Eh/01h from that KB, unverified). After a PDL, VMCP/HA may
//!   kill and restart the VM and the device has to be reclaimed. This
//!   target answers 05h/25h/00h only for a LUN that names no logical unit
//!   for the nexus: an SLU whose binding was unbound or deleted (or never
//!   made for that host), a PE not visible to it.
//! - **APD, all paths down**: the device stops answering on every path, or
//!   answers that it is only temporarily unreachable, e.g. NOT READY with
//!   an ALUA state (04h/0Ah transitioning, 04h/0Bh standby, 04h/0Ch
//!   unavailable, 04h/12h offline); ESXi keeps retrying and fails over to
//!   another path. A PE or controller failure
//!   ([`ControlPlane::fail_pe`](crate::ControlPlane::fail_pe)) is rendered
//!   this way: the PE's ALU and its SLUs keep resolving and report the
//!   Unavailable state on all the PE's target port groups (UNIT ATTENTION
//!   2Ah/06h first, then 04h/0Ch; REPORT TARGET PORT GROUPS shows 3h),
//!   while the other PEs on the same groups keep serving; the Rebind event
//!   then moves the vVols, whose old bindings are unbound (and only then
//!   answer 05h/25h/00h).
//!
//! # Unit attentions
//!
//! Unit attentions are kept per I_T_L nexus (SAM-5 5.14): every logical
//! unit (the REPORT LUNS W-LUN, each PE's ALU, each SLU) keeps its own
//! conditions for each I_T nexus, and reporting one (CHECK CONDITION, or
//! REQUEST SENSE data) clears it on that LU for that nexus only; the
//! nexus's other LUs and the other nexuses still report it once each.
//! 29h/00h (first command of a nexus to a LU, [`ScsiTarget::reset`]) and
//! 29h/07h ([`ScsiTarget::nexus_loss`]) supersede the rest; then 2Ah/06h
//! (ALUA change of the LU), 3Fh/0Eh (PE list or PE mapping changed: every
//! LU; the host's bindings behind a PE changed: that PE's ALU), 2Ah/01h
//! (another nexus changed the LU's mode parameters, which are per LU and
//! shared by all nexuses) and 2Ah/09h (the SLU grew). A REPORT LUNS whose
//! whole list reached the initiator clears the 3Fh/0Eh it answers. ALUA
//! states are kept per (PE, target port group).
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
mod execute;
mod inquiry;
pub mod limits;
mod lun;
mod mode;
mod multipath;
mod nexus_table;
mod opcodes;
mod report_luns;
mod reservation;
mod reservation_cmd;
mod reservation_out;
mod sense;
mod session;
mod target;
mod unit_attention;

pub use alua::AluaState;
pub use block::{ALU_BLOCK_SIZE, ALU_BLOCKS};
pub use cdb::{MAX_CDB_LEN, cdb_len};
pub use error::{LunError, ScsiError};
pub use execute::{Residual, ScsiCompletion};
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
pub use sense::{
    FIXED_SENSE_LEN, FieldPointer, MAX_SENSE_LEN, Sense, SenseBuffer, SenseKey, Status,
};
pub use session::ScsiSession;
pub use target::{
    InitiatorPortId, ItNexus, ScsiResponse, ScsiTarget, WRITE_LOCK_STRIPES, derive_vvol_naa,
};
