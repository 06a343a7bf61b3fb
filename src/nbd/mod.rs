//! NBD (Network Block Device) client and server, per the protocol document
//! of the NetworkBlockDevice/nbd project (`doc/proto.md`).
//!
//! - [`NbdBackend`] is a [`BlockBackend`](crate::BlockBackend) whose bytes
//!   live on any NBD server (qemu-nbd, nbdkit, nbd-server, [`NbdServer`]).
//!   Plain `std` threads, no async runtime.
//! - [`NbdServer`] serves an [`ExportCatalog`]: [`HostExports`] exports the
//!   bindings one host holds, all I/O going through the
//!   [`Router`](crate::Router) with the handle recorded at `NBD_OPT_GO`;
//!   [`BackendExports`] serves plain backends.
//!
//! Every size or count a peer drives is bounded by a named limit (the
//! `MAX_*` constants here and in [`proto`]); a peer that passes one gets a
//! typed error ([`NbdError`] on the client) or has its connection closed
//! (on the server).
//!
//! Compiled with the default-on cargo feature `nbd`; the quickstart
//! `Gateway` also needs the `testing` feature.

mod client;
mod error;
mod exports;
#[cfg(feature = "testing")]
mod gateway;
mod handshake;
pub mod proto;
mod server;
mod session;
mod stream;

pub use client::{
    MAX_BLOCK_STATUS_BYTES, MAX_CONNECTIONS, MAX_RECONNECT_ATTEMPTS, NbdBackend, NbdConfig,
};
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use error::GatewayError;
pub use error::{ConnectionError, NbdError, ServerError};
pub use exports::{BackendExports, Export, ExportCatalog, HostExports};
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use gateway::Gateway;
pub use server::{
    DEFAULT_REPLY_TIMEOUT, MAX_SERVER_CONNECTIONS, MAX_WORKERS_PER_CONNECTION, NbdServer,
    ServerConfig, ServerStats,
};
pub use stream::NbdAddress;
