//! The named limits of a control plane.

/// Every count that callers can drive has a limit here. Build with
/// [`Limits::default`] and the `with_*` setters.
///
/// # Example
/// ```
/// use vvol::Limits;
///
/// let limits = Limits::default().with_max_bind_batch(64).with_max_pes(16);
/// assert_eq!(limits.max_bind_batch, 64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most vVols in one bind call (VASA `maxBatchSize`; default 16, as ESXi
    /// and common VASA providers batch).
    pub max_bind_batch: usize,
    /// Most arrays.
    pub max_arrays: u32,
    /// Most containers over all arrays.
    pub max_containers: u32,
    /// Most PEs ever created (PE ids are never reused; the router keeps one
    /// table pointer per id).
    pub max_pes: u32,
    /// Most hosts.
    pub max_hosts: u32,
    /// Most vVols at once.
    pub max_vvols: u32,
    /// Events kept for [`events_since`](crate::ControlPlane::events_since);
    /// a caller further behind gets a lost-event error.
    pub event_window: usize,
    /// Longest array, container or host name in bytes.
    pub max_name_len: usize,
    /// Most host secondary-id spaces one PE of a
    /// [`SecondaryIdScope::PerPeAndHost`](crate::SecondaryIdScope::PerPeAndHost)
    /// array keeps at once (a host has one only while it holds a binding
    /// there). Default 128: a vSphere 8 cluster has at most 96 hosts. A
    /// host beyond it gets [`SecondaryIdsExhausted`](crate::ControlError::SecondaryIdsExhausted)
    /// on that PE.
    pub max_host_spaces_per_pe: u32,
    /// Most persistent reservation registrations (I_T nexuses) of one
    /// logical unit; past it PERSISTENT RESERVE OUT answers INSUFFICIENT
    /// REGISTRATION RESOURCES (SPC-5 5.14.7).
    pub max_pr_registrations_per_lu: usize,
    /// Most logical units with persistent reservation registrations.
    pub max_pr_lus: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bind_batch: 16,
            max_arrays: 64,
            max_containers: 1024,
            max_pes: 1024,
            max_hosts: 4096,
            max_vvols: 1 << 22,
            event_window: 4096,
            max_name_len: 255,
            max_host_spaces_per_pe: 128,
            max_pr_registrations_per_lu: 64,
            max_pr_lus: 16384,
        }
    }
}

macro_rules! setter {
    ($name:ident, $field:ident, $ty:ty) => {
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        #[must_use]
        pub const fn $name(mut self, value: $ty) -> Self {
            self.$field = value;
            self
        }
    };
}

impl Limits {
    setter!(with_max_bind_batch, max_bind_batch, usize);
    setter!(with_max_arrays, max_arrays, u32);
    setter!(with_max_containers, max_containers, u32);
    setter!(with_max_pes, max_pes, u32);
    setter!(with_max_hosts, max_hosts, u32);
    setter!(with_max_vvols, max_vvols, u32);
    setter!(with_event_window, event_window, usize);
    setter!(with_max_name_len, max_name_len, usize);
    setter!(with_max_host_spaces_per_pe, max_host_spaces_per_pe, u32);
    setter!(
        with_max_pr_registrations_per_lu,
        max_pr_registrations_per_lu,
        usize
    );
    setter!(with_max_pr_lus, max_pr_lus, usize);
}
