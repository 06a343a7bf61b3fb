//! Newtype identifiers.
//!
//! Every id is a fixed-width integer: `Copy`, ordered and hashable, printed in
//! decimal. [`VvolId`] is the exception in form, not in kind: a 128-bit UUID
//! whose text form is VASA's `rfc4122.<uuid>`.

use std::fmt;
use std::str::FromStr;

use super::ParseError;

macro_rules! int_id {
    ($(#[$meta:meta])* $name:ident($int:ty), $label:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $int);

        impl $name {
            /// The raw integer value.
            #[must_use]
            pub const fn get(self) -> $int {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, "{}"), self.0)
            }
        }

        impl From<$int> for $name {
            fn from(value: $int) -> Self {
                Self(value)
            }
        }
    };
}

int_id!(
    /// Identifies a storage array (the VASA-visible storage system).
    ArrayId(u32),
    "array-"
);
int_id!(
    /// Identifies a storage container (one vVol datastore).
    ContainerId(u32),
    "container-"
);
int_id!(
    /// Identifies a protocol endpoint. PE ids are never reused within one
    /// [`ControlPlane`](crate::ControlPlane), so a handle naming a removed PE
    /// can never reach a newer one.
    PeId(u32),
    "pe-"
);
int_id!(
    /// Identifies a host (an ESXi host, an initiator set, a test client).
    HostId(u32),
    "host-"
);
int_id!(
    /// The data-path slot of a binding within its PE: on SCSI the subsidiary
    /// logical unit number, on NFS an internal slot behind the file path.
    SecondaryId(u64),
    ""
);
int_id!(
    /// Counts how often a (PE, secondary id) slot has been bound. A handle
    /// carries the generation it was issued with, so I/O with a handle from
    /// before an unbind never reaches a vVol bound to the slot later.
    Generation(u32),
    "g"
);
int_id!(
    /// The dense index of a vVol inside its control plane, as the router's
    /// slot tables store it. Reused only after the vVol is deleted.
    VvolKey(u32),
    "vvol#"
);
int_id!(
    /// Identifies an event in the control plane's event log; ids increase.
    EventId(u64),
    "event-"
);

/// The prefix of a vVol id's text form.
pub const VVOL_ID_PREFIX: &str = "rfc4122.";

/// A vVol's 128-bit UUID. Its text form is `rfc4122.` followed by the
/// 36-character hyphenated UUID (44 characters in all); any other form is
/// rejected.
///
/// # Example
/// ```
/// use vvol::VvolId;
///
/// let id: VvolId = "rfc4122.6f1c2a4e-0d3b-4c8e-9a7f-1b2c3d4e5f60".parse()?;
/// assert_eq!(id.to_string(), "rfc4122.6f1c2a4e-0d3b-4c8e-9a7f-1b2c3d4e5f60");
/// assert!("6f1c2a4e-0d3b-4c8e-9a7f-1b2c3d4e5f60".parse::<VvolId>().is_err());
/// # Ok::<(), vvol::ParseError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VvolId(pub u128);

impl VvolId {
    /// Builds a version-4 style id from 16 random (or seeded) bytes.
    #[must_use]
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        Self(
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .as_u128(),
        )
    }

    /// The raw 128-bit value.
    #[must_use]
    pub const fn get(self) -> u128 {
        self.0
    }

    /// The 16 bytes of the UUID in network order.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for VvolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{VVOL_ID_PREFIX}{}",
            uuid::Uuid::from_u128(self.0).hyphenated()
        )
    }
}

impl fmt::Debug for VvolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for VvolId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseError::vvol_id(s, reason);
        let rest = s
            .strip_prefix(VVOL_ID_PREFIX)
            .ok_or_else(|| err("missing the `rfc4122.` prefix"))?;
        // Only the 36-character hyphenated form is VASA's; uuid also accepts
        // simple, braced and urn forms, which must not pass here.
        if rest.len() != 36 {
            return Err(err("the UUID must be 36 characters, hyphenated"));
        }
        let uuid = uuid::Uuid::try_parse(rest).map_err(|_| err("not a hyphenated UUID"))?;
        Ok(Self(uuid.as_u128()))
    }
}
