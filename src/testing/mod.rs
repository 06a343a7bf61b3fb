//! Test fixtures, behind the non-default cargo feature `testing`.
//!
//! Nothing here is needed to embed the crate; these are the pieces the
//! crate's own examples, tests, benches and fuzz targets share, offered to
//! embedders for their tests too:
//!
//! - [`quickstart`]: the deterministic example topology (the vSphere
//!   documentation's array with 2 containers and 3 PEs, an NFS array, 2
//!   hosts and three VMs' vVols), with its ids in a [`Topology`];
//! - [`journal`]: a sample journal and checksum-preserving edits, for
//!   fuzzing and property tests of the journal reader;
//! - [`backend_conformance`]: the conformance suite every
//!   [`BlockBackend`](crate::BlockBackend) of the crate passes, to run on
//!   your own backend;
//! - with the `nbd` feature, [`nbd::Gateway`](crate::nbd::Gateway): the
//!   quickstart topology served over NBD as one host.
//!
//! Enable it for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! vvol = { version = "0.1", features = ["testing"] }
//! ```

pub mod backend_conformance;
pub mod journal;
mod topology;

pub use topology::{
    QUICKSTART_ADMIN_LUNS, QUICKSTART_COMPANY_ID, QUICKSTART_ID_SEED, QUICKSTART_IQN_PREFIX,
    Topology, Vm, quickstart, quickstart_on, quickstart_with,
};
