//! The crate-level error.

/// Any error of this crate, for callers that do not need to tell the
/// families apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A control-plane call failed.
    #[error(transparent)]
    Control(#[from] crate::ControlError),
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
}
