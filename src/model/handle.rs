//! Bind handles and the bind and unbind contexts.

use std::fmt;

use super::{Generation, HostId, PeId, SecondaryId, VvolId};

/// What a bind returns and I/O carries: the PE, the secondary id within it,
/// and the generation of that slot when the binding was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BindHandle {
    /// The PE the vVol is bound through.
    pub pe: PeId,
    /// The slot within the PE.
    pub secondary_id: SecondaryId,
    /// The slot's generation when this binding was made.
    pub generation: Generation,
}

impl fmt::Display for BindHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}@{}", self.pe, self.secondary_id, self.generation)
    }
}

/// VASA `BindContextEnum`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BindContext {
    /// An ordinary bind: repeated binds by one host are counted.
    Normal,
    /// The first step of a rebind: always a new handle on an active PE.
    RebindStart,
}

/// VASA `UnbindContextEnum`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnbindContext {
    /// An ordinary unbind.
    Normal,
    /// Announces a rebind; succeeds and changes nothing.
    RebindStart,
    /// Ends a rebind by releasing the old handle.
    RebindEnd,
}

/// A binding as the queries report it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BindingInfo {
    /// The handle of the binding.
    pub handle: BindHandle,
    /// The bound vVol.
    pub vvol: VvolId,
    /// Each host holding the binding, with its bind count.
    pub hosts: Vec<(HostId, u32)>,
}
