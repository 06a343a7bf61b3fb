//! Storage arrays: the owners of containers and protocol endpoints.

use super::config_error::check_name;
use super::{ArrayId, ConfigError, ContainerId, MAX_IEEE_COMPANY_ID, PeId, SecondaryIdScope};

/// Everything needed to create an array.
///
/// # Example
/// ```
/// use vvol::ArraySpec;
///
/// assert!(ArraySpec::new("array-a", 0x00_1a_2b).validate(255).is_ok());
/// assert!(ArraySpec::new("array-a", 0x1_00_00_00).validate(255).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArraySpec {
    name: String,
    ieee_company_id: u32,
    secondary_id_scope: SecondaryIdScope,
}

impl ArraySpec {
    /// An array named `name` whose NAA names carry `ieee_company_id` (24 bits).
    #[must_use]
    pub fn new(name: impl Into<String>, ieee_company_id: u32) -> Self {
        Self {
            name: name.into(),
            ieee_company_id,
            secondary_id_scope: SecondaryIdScope::PerPe,
        }
    }

    /// The same spec with its PEs' secondary ids scoped as `scope`
    /// ([`SecondaryIdScope::PerPe`] by default).
    #[must_use]
    pub fn with_secondary_id_scope(mut self, scope: SecondaryIdScope) -> Self {
        self.secondary_id_scope = scope;
        self
    }

    /// How the array scopes its PEs' secondary ids.
    #[must_use]
    pub const fn secondary_id_scope(&self) -> SecondaryIdScope {
        self.secondary_id_scope
    }

    /// The name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The IEEE company id.
    #[must_use]
    pub const fn ieee_company_id(&self) -> u32 {
        self.ieee_company_id
    }

    /// Checks the name length and the company id.
    ///
    /// # Errors
    /// [`ConfigError::BadName`], [`ConfigError::BadIeeeCompanyId`].
    pub fn validate(&self, max_name_len: usize) -> Result<(), ConfigError> {
        check_name("array", &self.name, max_name_len)?;
        if self.ieee_company_id > MAX_IEEE_COMPANY_ID {
            return Err(ConfigError::BadIeeeCompanyId(self.ieee_company_id));
        }
        Ok(())
    }
}

/// A snapshot of an array. Every PE of the array serves every container of
/// the array whose protocol matches its own.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Array {
    /// Its id.
    pub id: ArrayId,
    /// Its name.
    pub name: String,
    /// The IEEE company id in its NAA names.
    pub ieee_company_id: u32,
    /// How its PEs scope secondary ids.
    pub secondary_id_scope: SecondaryIdScope,
    /// Its containers, in id order.
    pub containers: Vec<ContainerId>,
    /// Its PEs, in id order.
    pub pes: Vec<PeId>,
}
