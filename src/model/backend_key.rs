//! The embedder's name for a vVol's backend.

use std::fmt;

use super::ConfigError;

/// Longest [`BackendKey`] in bytes.
pub const MAX_BACKEND_KEY_LEN: usize = 1024;

/// An embedder's key for the backend of a vVol (a file path, an object
/// name, a LUN id: whatever the embedder's
/// [`BackendProvider`](crate::BackendProvider) understands). It is journaled
/// with the vVol's creation, so a reopened durable plane asks the provider
/// for (vVol id, key) and never depends on the embedder's own bookkeeping.
///
/// # Example
/// ```
/// use vvol::BackendKey;
///
/// let key = BackendKey::new("/srv/vvols/disk-0.img")?;
/// assert_eq!(key.as_str(), "/srv/vvols/disk-0.img");
/// assert!(BackendKey::new("").is_err());
/// # Ok::<(), vvol::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendKey(String);

impl BackendKey {
    /// A key of 1 to [`MAX_BACKEND_KEY_LEN`] bytes.
    ///
    /// # Errors
    /// [`ConfigError::BadBackendKey`] for an empty or too long key.
    pub fn new(key: impl Into<String>) -> Result<Self, ConfigError> {
        let key = key.into();
        if key.is_empty() || key.len() > MAX_BACKEND_KEY_LEN {
            return Err(ConfigError::BadBackendKey {
                len: key.len(),
                max: MAX_BACKEND_KEY_LEN,
            });
        }
        Ok(Self(key))
    }

    /// The key's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BackendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}
