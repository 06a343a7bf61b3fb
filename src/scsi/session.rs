//! [`ScsiSession`]: one I_T nexus's command entry point, as a transport
//! connection holds it.

use std::sync::Arc;

use super::execute::{ScsiCompletion, into_buffer};
use super::lun::Lun;
use super::target::{ItNexus, On, ScsiTarget};
use super::unit_attention::{LuCache, NexusState};

/// The commands of one I_T nexus, as a transport connection (an iSCSI
/// session, an FC login) issues them: [`execute_into`](Self::execute_into)
/// behaves exactly as [`ScsiTarget::execute_into`] with the session's
/// nexus, but the session holds the nexus's state and the unit attention
/// entry of the LU it last addressed, so a command does not look them up
/// (no lock of the nexus table, no lookup in the LU table while the
/// session keeps addressing one LU).
///
/// Sessions of one nexus share its state: unit attentions, mode
/// parameters and reservations are the same through any of them and
/// through `ScsiTarget::execute_into`. A session runs one command at a
/// time (`&mut self`); a transport with several commands in flight on one
/// nexus opens a session per worker.
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
/// let mut session = target.session(ItNexus::new(host, 1));
/// let read = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
/// let mut buf = [0u8; 512];
/// // The power-on unit attention, then the data.
/// assert_eq!(session.execute_into(lun, &read, &[], &mut buf).status, Status::CheckCondition);
/// assert_eq!(session.execute_into(lun, &read, &[], &mut buf).status, Status::Good);
/// // The same nexus through the target: the condition was reported.
/// let nexus = session.nexus();
/// assert_eq!(target.execute_into(nexus, lun, &read, &[], &mut buf).status, Status::Good);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ScsiSession<'t> {
    target: &'t ScsiTarget,
    nexus: ItNexus,
    state: Arc<NexusState>,
    last_lu: LuCache,
}

impl std::fmt::Debug for ScsiSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScsiSession")
            .field("nexus", &self.nexus)
            .finish_non_exhaustive()
    }
}

impl ScsiTarget {
    /// A session for `nexus` (its state is made if the nexus is new, as
    /// by its first command).
    #[must_use]
    pub fn session(&self, nexus: ItNexus) -> ScsiSession<'_> {
        ScsiSession {
            target: self,
            nexus,
            state: self.nexus(nexus),
            last_lu: LuCache::new(None),
        }
    }
}

impl ScsiSession<'_> {
    /// The session's I_T nexus.
    #[must_use]
    pub const fn nexus(&self) -> ItNexus {
        self.nexus
    }

    /// Executes one CDB as [`ScsiTarget::execute_into`] does for this
    /// session's nexus.
    pub fn execute_into(
        &mut self,
        lun: Lun,
        cdb: &[u8],
        data_out: &[u8],
        data_in: &mut [u8],
    ) -> ScsiCompletion {
        let on = On {
            nexus: self.nexus,
            state: &self.state,
            lu_cache: Some(&self.last_lu),
        };
        into_buffer(data_in, |sink| {
            self.target.execute_on(&on, lun, cdb, data_out, sink)
        })
    }
}
