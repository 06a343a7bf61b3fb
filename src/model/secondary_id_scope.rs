//! Whose secondary-id space a binding's id comes from: one per PE, or one
//! per (PE, host).

/// How an array scopes the secondary ids of its PEs.
///
/// A LUN names a logical unit only within one I_T nexus (SAM-5 4.6.1, 4.7),
/// so an array may hand out the same subsidiary LUN to different hosts for
/// different vVols behind one PE. ONTAP keeps one id space per PE LUN for
/// all hosts ([`PerPe`](Self::PerPe)); Pure allows 16,383 bound vVols *per
/// host* per PE ([`PerPeAndHost`](Self::PerPeAndHost)). The PE's
/// [`SecondaryIdSpace`](crate::SecondaryIdSpace) is the range of each space:
/// the whole PE's in `PerPe` scope, each host's in `PerPeAndHost` scope.
///
/// # Example
/// ```
/// use vvol::{ArraySpec, SecondaryIdScope};
///
/// assert_eq!(ArraySpec::new("ontap", 0x00_a0_98).secondary_id_scope(), SecondaryIdScope::PerPe);
/// let pure = ArraySpec::new("pure", 0x24_a9_37).with_secondary_id_scope(SecondaryIdScope::PerPeAndHost);
/// assert_eq!(pure.secondary_id_scope(), SecondaryIdScope::PerPeAndHost);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecondaryIdScope {
    /// One space per PE shared by every host: a secondary id names one
    /// binding on the PE, whichever host uses it (ONTAP).
    #[default]
    PerPe,
    /// One space per (PE, host): each host binding a vVol through the PE
    /// gets its own binding and id, and the same id may name different
    /// vVols for different hosts (Pure, Element).
    PerPeAndHost,
}

impl SecondaryIdScope {
    /// Whether ids are scoped per host.
    #[must_use]
    pub const fn is_per_host(self) -> bool {
        matches!(self, Self::PerPeAndHost)
    }
}
