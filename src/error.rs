//! The crate-level error.

/// Any error of this crate, for callers that do not need to tell the
/// families apart.
///
/// Every module's error converts into it with `From`, so `?` works in a
/// function returning `Result<_, vvol::Error>` whatever the call:
///
/// ```
/// use vvol::{ArraySpec, ControlPlane, Limits, MemoryBackend, VvolId};
///
/// fn setup() -> Result<(), vvol::Error> {
///     let plane = ControlPlane::new(Limits::default());
///     plane.add_array(ArraySpec::new("array-1", 0x00_1A_2B))?; // ControlError
///     let _id: VvolId = "rfc4122.6f1c4a52-2a5b-4c3e-9c1d-0d6b3b1f2a10".parse()?; // ParseError
///     let _disk = MemoryBackend::new(1 << 20, 512)?; // BackendError
///     Ok(())
/// }
/// setup()?;
/// # Ok::<(), vvol::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A control-plane call failed.
    #[error(transparent)]
    Control(#[from] crate::ControlError),
    /// Opening, replaying or writing the durable journal failed.
    #[error(transparent)]
    Journal(#[from] crate::JournalError),
    /// A routed I/O failed.
    #[error(transparent)]
    Route(#[from] crate::RouteError),
    /// A backend call failed.
    #[error(transparent)]
    Backend(#[from] crate::BackendError),
    /// A specification broke a model rule.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// A text form did not parse.
    #[error(transparent)]
    Parse(#[from] crate::ParseError),
    /// A transport's admission layer refused or closed a connection.
    #[error(transparent)]
    Admission(#[from] crate::admission::AdmissionError),
    /// A SCSI LUN did not decode or encode.
    #[cfg(feature = "scsi")]
    #[cfg_attr(docsrs, doc(cfg(feature = "scsi")))]
    #[error(transparent)]
    Lun(#[from] crate::scsi::LunError),
    /// Building or running a SCSI target failed.
    #[cfg(feature = "scsi")]
    #[cfg_attr(docsrs, doc(cfg(feature = "scsi")))]
    #[error(transparent)]
    Scsi(#[from] crate::scsi::ScsiError),
    /// The NBD client failed.
    #[cfg(feature = "nbd")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nbd")))]
    #[error(transparent)]
    Nbd(#[from] crate::nbd::NbdError),
    /// The NBD server could not start or serve.
    #[cfg(feature = "nbd")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nbd")))]
    #[error(transparent)]
    NbdServer(#[from] crate::nbd::ServerError),
    /// One NBD server connection failed.
    #[cfg(feature = "nbd")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nbd")))]
    #[error(transparent)]
    NbdConnection(#[from] crate::nbd::ConnectionError),
    /// The quickstart NBD gateway could not start.
    #[cfg(all(feature = "nbd", feature = "testing"))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "nbd", feature = "testing"))))]
    #[error(transparent)]
    Gateway(#[from] crate::nbd::GatewayError),
    /// A backend failed the conformance kit.
    #[cfg(feature = "testing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
    #[error(transparent)]
    Conformance(#[from] crate::testing::backend_conformance::ConformanceError),
}
