//! Host-side multipathing for a SCSI PE: the paths (target ports) one host
//! reaches a PE through, their ALUA states as REPORT TARGET PORT GROUPS
//! reports them, and a path selection policy (VMware's `VMW_PSP_FIXED`,
//! `VMW_PSP_MRU`, `VMW_PSP_RR`). The SLUs behind a PE use the PE's paths.
//!
//! A command goes down the selected path. When the path is down, or the
//! target answers NOT READY for a non-active ALUA state (04h/0Ah, 0Bh, 0Ch,
//! 12h), the device refreshes the ALUA states and retries on another active
//! path, so the caller sees no error while an active path remains. Unit
//! attentions are consumed and the command retried (2Ah/06h also refreshes
//! the ALUA states; 3Fh/0Eh is remembered for
//! [`take_rescan_needed`](Multipath::take_rescan_needed)).

use std::collections::BTreeMap;

use parking_lot::Mutex;

use super::cdb::be_at;
use super::sense::{SenseKey, Status};
use super::target::{ItNexus, ScsiResponse, ScsiTarget};
use super::{AluaState, Lun};
use crate::model::{HostId, MAX_PATHS_PER_PE};

/// Default number of I/Os RoundRobin sends down a path before switching
/// (ESXi `iops=1000`).
pub const DEFAULT_RR_IOPS: u32 = 1000;
/// Most unit attentions consumed for one command before it is returned to
/// the caller as is.
pub const MAX_UA_RETRIES: usize = 8;
/// Allocation length of the REPORT TARGET PORT GROUPS the device sends.
pub const RTPG_ALLOCATION: u32 = 4096;

/// How the next path is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathPolicy {
    /// `VMW_PSP_FIXED`: the preferred path whenever it is usable (fail-back);
    /// without an explicit preference, the first active/optimized path.
    Fixed {
        /// The preferred target port, if set explicitly.
        preferred: Option<u16>,
    },
    /// `VMW_PSP_MRU`: keep the path in use until it fails; no fail-back.
    MostRecentlyUsed,
    /// `VMW_PSP_RR`: rotate over the active/optimized paths (all active
    /// paths when none is optimized), switching every `iops` commands.
    RoundRobin {
        /// Commands per path before switching (at least 1).
        iops: u32,
    },
}

impl PathPolicy {
    /// RoundRobin switching every [`DEFAULT_RR_IOPS`] commands.
    #[must_use]
    pub const fn round_robin() -> Self {
        Self::RoundRobin {
            iops: DEFAULT_RR_IOPS,
        }
    }
}

/// Why a multipath device was not built or a command not sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MultipathError {
    /// No paths, more than [`MAX_PATHS_PER_PE`], or a port listed twice.
    #[error("bad path list for {host}: {reason}")]
    BadPaths {
        /// The host.
        host: HostId,
        /// What is wrong.
        reason: &'static str,
    },
    /// The port is not one of the device's paths.
    #[error("target port {0} is not a path of this device")]
    UnknownPath(u16),
    /// Every path is down or in a non-active ALUA state.
    #[error("no active path to LUN {lun} for {host}")]
    NoActivePath {
        /// The host.
        host: HostId,
        /// The LUN addressed.
        lun: Lun,
    },
}

/// One path as the host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PathInfo {
    /// The relative target port.
    pub target_port: u16,
    /// Its target port group, from REPORT TARGET PORT GROUPS (0 until known).
    pub target_port_group: u16,
    /// The group's asymmetric access state as last reported.
    pub state: AluaState,
    /// Whether the link is up.
    pub link_up: bool,
    /// Commands that completed on this path.
    pub commands: u64,
}

#[derive(Debug)]
struct Inner {
    paths: Vec<PathInfo>,
    policy: PathPolicy,
    current: Option<usize>,
    sent_on_current: u32,
    rescan: bool,
}

/// One host's multipath device for a SCSI PE (and every SLU behind it).
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use vvol::BindContext;
/// use vvol::scsi::{Multipath, PathPolicy, ScsiTarget, Status};
///
/// let (plane, topo) = vvol::testing::quickstart()?;
/// let plane = Arc::new(plane);
/// let target = Arc::new(ScsiTarget::new(plane.clone(), topo.arrays[0])?);
/// let host = topo.hosts[0];
/// let handle = plane.bind(host, &[topo.vms[0].data], BindContext::Normal)?.remove(0)?;
/// let pe_lun = target.admin_lun_of(handle.pe).unwrap();
/// let device = Multipath::new(target.clone(), host, pe_lun, &[1, 2], PathPolicy::MostRecentlyUsed)?;
/// let lun = target.lun_of(handle).unwrap();
/// let read = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
/// assert_eq!(device.execute(lun, &read, &[])?.status, Status::Good);
/// device.set_link(device.current_path().unwrap(), false)?; // the path dies
/// assert_eq!(device.execute(lun, &read, &[])?.status, Status::Good);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Multipath {
    target: std::sync::Arc<ScsiTarget>,
    host: HostId,
    pe_lun: Lun,
    inner: Mutex<Inner>,
}

impl Multipath {
    /// A device for the PE at `pe_lun`, reached by `host` through
    /// `target_ports`, with ALUA states read by REPORT TARGET PORT GROUPS.
    ///
    /// # Errors
    /// [`MultipathError::BadPaths`] for an empty list, more than
    /// [`MAX_PATHS_PER_PE`] ports, or a repeated port.
    pub fn new(
        target: std::sync::Arc<ScsiTarget>,
        host: HostId,
        pe_lun: Lun,
        target_ports: &[u16],
        policy: PathPolicy,
    ) -> Result<Self, MultipathError> {
        let bad = |reason| MultipathError::BadPaths { host, reason };
        if target_ports.is_empty() {
            return Err(bad("no paths"));
        }
        if target_ports.len() > MAX_PATHS_PER_PE {
            return Err(bad("more paths than MAX_PATHS_PER_PE"));
        }
        let mut sorted = target_ports.to_vec();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad("a target port is listed twice"));
        }
        let paths = target_ports
            .iter()
            .map(|&p| PathInfo {
                target_port: p,
                target_port_group: 0,
                state: AluaState::ActiveOptimized,
                link_up: true,
                commands: 0,
            })
            .collect();
        let device = Self {
            target,
            host,
            pe_lun,
            inner: Mutex::new(Inner {
                paths,
                policy: match policy {
                    PathPolicy::RoundRobin { iops } => PathPolicy::RoundRobin { iops: iops.max(1) },
                    other => other,
                },
                current: None,
                sent_on_current: 0,
                rescan: false,
            }),
        };
        device.refresh_alua();
        Ok(device)
    }

    /// Brings a path's link up or down (a cable pull, a switch failure).
    ///
    /// # Errors
    /// [`MultipathError::UnknownPath`].
    pub fn set_link(&self, target_port: u16, up: bool) -> Result<(), MultipathError> {
        {
            let mut inner = self.inner.lock();
            let path = inner
                .paths
                .iter_mut()
                .find(|p| p.target_port == target_port)
                .ok_or(MultipathError::UnknownPath(target_port))?;
            path.link_up = up;
        }
        if up {
            self.refresh_alua();
        }
        Ok(())
    }

    /// Sets the preferred path of a Fixed policy (switching to Fixed).
    ///
    /// # Errors
    /// [`MultipathError::UnknownPath`].
    pub fn set_preferred(&self, target_port: u16) -> Result<(), MultipathError> {
        let mut inner = self.inner.lock();
        if !inner.paths.iter().any(|p| p.target_port == target_port) {
            return Err(MultipathError::UnknownPath(target_port));
        }
        inner.policy = PathPolicy::Fixed {
            preferred: Some(target_port),
        };
        Ok(())
    }

    /// The path the last command went down.
    #[must_use]
    pub fn current_path(&self) -> Option<u16> {
        let inner = self.inner.lock();
        inner.current.map(|i| inner.paths[i].target_port)
    }

    /// Every path, in the order given.
    #[must_use]
    pub fn paths(&self) -> Vec<PathInfo> {
        self.inner.lock().paths.clone()
    }

    /// Whether a REPORTED LUNS DATA HAS CHANGED unit attention arrived since
    /// the last call (the host should send REPORT LUNS to the PE).
    pub fn take_rescan_needed(&self) -> bool {
        std::mem::take(&mut self.inner.lock().rescan)
    }

    /// Reads the ALUA states through the first path whose link is up.
    fn refresh_alua(&self) {
        let ports: Vec<u16> = self
            .inner
            .lock()
            .paths
            .iter()
            .filter(|p| p.link_up)
            .map(|p| p.target_port)
            .collect();
        let mut cdb = [0u8; 12];
        cdb[0] = 0xA3;
        cdb[1] = 0x0A;
        cdb[6..10].copy_from_slice(&RTPG_ALLOCATION.to_be_bytes());
        for port in ports {
            let nexus = ItNexus::new(self.host, port);
            for _ in 0..MAX_UA_RETRIES {
                let r = self.target.execute(nexus, self.pe_lun, &cdb, &[]);
                if r.status == Status::Good {
                    self.apply_rtpg(&r.data_in);
                    return;
                }
                if sense_key(&r) != Some(SenseKey::UnitAttention.code()) {
                    break;
                }
            }
        }
    }

    fn apply_rtpg(&self, data: &[u8]) {
        let mut groups: BTreeMap<u16, AluaState> = BTreeMap::new();
        let mut port_group: BTreeMap<u16, u16> = BTreeMap::new();
        let end = (be_at(data, 0, 4) as usize)
            .saturating_add(4)
            .min(data.len());
        let mut at = 4;
        while at + 8 <= end {
            let state = match data[at] & 0x0F {
                0x0 => AluaState::ActiveOptimized,
                0x1 => AluaState::ActiveNonOptimized,
                0x2 => AluaState::Standby,
                0x3 => AluaState::Unavailable,
                0xE => AluaState::Offline,
                _ => AluaState::Transitioning,
            };
            let group = be_at(data, at + 2, 2) as u16;
            let count = usize::from(data[at + 7]);
            groups.insert(group, state);
            for i in 0..count {
                let p = at + 8 + 4 * i;
                if p + 4 <= end {
                    port_group.insert(be_at(data, p + 2, 2) as u16, group);
                }
            }
            at += 8 + 4 * count;
        }
        let mut inner = self.inner.lock();
        for path in &mut inner.paths {
            if let Some(group) = port_group.get(&path.target_port) {
                path.target_port_group = *group;
                path.state = groups.get(group).copied().unwrap_or(AluaState::Offline);
            } else {
                path.state = AluaState::Offline;
            }
        }
    }

    /// Picks the path for the next command.
    fn select(inner: &mut Inner) -> Option<usize> {
        let usable = |p: &PathInfo| p.link_up && p.state.is_active();
        let best: Vec<usize> = {
            let optimized: Vec<usize> = (0..inner.paths.len())
                .filter(|&i| {
                    usable(&inner.paths[i]) && inner.paths[i].state == AluaState::ActiveOptimized
                })
                .collect();
            if optimized.is_empty() {
                (0..inner.paths.len())
                    .filter(|&i| usable(&inner.paths[i]))
                    .collect()
            } else {
                optimized
            }
        };
        let first = *best.first()?;
        let current_ok = inner.current.filter(|&i| usable(&inner.paths[i]));
        let choice = match inner.policy {
            PathPolicy::Fixed { preferred } => match preferred
                .and_then(|p| inner.paths.iter().position(|x| x.target_port == p))
                .filter(|&i| usable(&inner.paths[i]))
            {
                Some(i) => i,
                None if preferred.is_some() => current_ok.unwrap_or(first),
                None => first,
            },
            PathPolicy::MostRecentlyUsed => current_ok.unwrap_or(first),
            PathPolicy::RoundRobin { iops } => match current_ok {
                Some(i) if inner.sent_on_current < iops && best.contains(&i) => i,
                Some(i) => best.iter().copied().find(|&j| j > i).unwrap_or(first),
                None => first,
            },
        };
        if inner.current != Some(choice) {
            inner.current = Some(choice);
            inner.sent_on_current = 0;
        }
        Some(choice)
    }

    /// Sends a command to `lun` (the PE or an SLU behind it) down the
    /// selected path, failing over as the module docs describe.
    ///
    /// # Errors
    /// [`MultipathError::NoActivePath`] when every path is down or not in an
    /// active ALUA state. SCSI errors are in the returned response.
    pub fn execute(
        &self,
        lun: Lun,
        cdb: &[u8],
        data_out: &[u8],
    ) -> Result<ScsiResponse, MultipathError> {
        let no_path = || MultipathError::NoActivePath {
            host: self.host,
            lun,
        };
        let path_count = self.inner.lock().paths.len();
        let mut last = None;
        // Each path can fail once, each refresh can follow one UA per path.
        for _ in 0..(path_count + 1) * MAX_UA_RETRIES {
            let (index, port) = {
                let mut inner = self.inner.lock();
                let Some(i) = Self::select(&mut inner) else {
                    return Err(no_path());
                };
                (i, inner.paths[i].target_port)
            };
            let r = self
                .target
                .execute(ItNexus::new(self.host, port), lun, cdb, data_out);
            if r.status == Status::CheckCondition {
                let (key, asc, ascq) = sense_kcq(&r);
                if key == SenseKey::UnitAttention.code() {
                    if (asc, ascq) == (0x2A, 0x06) {
                        self.refresh_alua();
                    }
                    if (asc, ascq) == (0x3F, 0x0E) {
                        self.inner.lock().rescan = true;
                    }
                    last = Some(r);
                    continue;
                }
                if key == SenseKey::NotReady.code()
                    && asc == 0x04
                    && matches!(ascq, 0x0A | 0x0B | 0x0C | 0x12)
                {
                    {
                        let mut inner = self.inner.lock();
                        inner.paths[index].state = match ascq {
                            0x0A => AluaState::Transitioning,
                            0x0B => AluaState::Standby,
                            0x0C => AluaState::Unavailable,
                            _ => AluaState::Offline,
                        };
                    }
                    self.refresh_alua();
                    last = Some(r);
                    continue;
                }
            }
            let mut inner = self.inner.lock();
            inner.paths[index].commands += 1;
            if inner.current == Some(index) {
                inner.sent_on_current = inner.sent_on_current.saturating_add(1);
            }
            return Ok(r);
        }
        // Out of retries: hand back the last answer as it is.
        last.ok_or_else(no_path)
    }
}

fn sense_kcq(r: &ScsiResponse) -> (u8, u8, u8) {
    let s = &r.sense;
    match s.first().map(|b| b & 0x7F) {
        Some(0x72) => (
            s.get(1).map_or(0, |b| b & 0x0F),
            s.get(2).copied().unwrap_or(0),
            s.get(3).copied().unwrap_or(0),
        ),
        Some(_) => (
            s.get(2).map_or(0, |b| b & 0x0F),
            s.get(12).copied().unwrap_or(0),
            s.get(13).copied().unwrap_or(0),
        ),
        None => (0, 0, 0),
    }
}

fn sense_key(r: &ScsiResponse) -> Option<u8> {
    (r.status == Status::CheckCondition).then(|| sense_kcq(r).0)
}
