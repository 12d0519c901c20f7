//! What a tenant holds besides its runs, as a caller may see it: backup sets, baselines and
//! the provider's policies, and creating a backup set. Every call checks the tenant is visible
//! to the caller first (an invisible tenant is not found).

use std::fmt;
use std::sync::Arc;

use opsrun_domain::Slug;

use crate::access::{AccessError, AccessPolicy, Caller};
use crate::ports::{
    BackupItem, BackupSet, BackupSetStore, Baseline, BaselineStore, Directory, Policy,
    PolicyProvider, Role, Tenant,
};
use crate::{FamilyStoreError, ProviderError};

/// Longest backup-set name, in characters.
pub const MAX_BACKUP_SET_NAME: usize = 100;

/// Why a catalog call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Access refused (not found, or role too low).
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The input is invalid.
    #[error("{message}")]
    Invalid {
        /// Stable snake_case code.
        code: &'static str,
        /// Human sentence.
        message: String,
    },
    /// A family store failed.
    #[error(transparent)]
    FamilyStore(#[from] FamilyStoreError),
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// The tenant catalog: reads and the one write (a new backup set).
#[derive(Clone)]
pub struct TenantCatalog {
    directory: Arc<dyn Directory>,
    backup_sets: Arc<dyn BackupSetStore>,
    baselines: Arc<dyn BaselineStore>,
    provider: Arc<dyn PolicyProvider>,
}

impl fmt::Debug for TenantCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantCatalog").finish_non_exhaustive()
    }
}

/// A backup-set name as the rule allows it: trimmed, 1 to [`MAX_BACKUP_SET_NAME`] characters
/// without control characters.
///
/// # Errors
///
/// [`CatalogError::Invalid`] with code `invalid_name`.
pub fn backup_set_name(name: &str) -> Result<String, CatalogError> {
    use unicode_normalization::UnicodeNormalization;
    // The rule is checked on the name as given (trimmed), so the API document's pattern can
    // say it exactly; the stored name is then composed (NFC).
    let given = name.trim();
    if given.is_empty()
        || given.chars().count() > MAX_BACKUP_SET_NAME
        || given.chars().any(|c| c.is_control() || invisible_format(c))
    {
        return Err(CatalogError::Invalid {
            code: "invalid_name",
            message: format!(
                "name must be 1 to {MAX_BACKUP_SET_NAME} characters of visible text \
                 (no control, bidirectional-override or zero-width characters)"
            ),
        });
    }
    Ok(given.nfc().collect())
}

/// Bidirectional controls and zero-width characters: they make a name read differently from
/// what it is (Trojan Source, CVE-2021-42574), so names refuse them.
fn invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

impl TenantCatalog {
    /// The catalog over the directory, the family stores and the provider.
    #[must_use]
    pub fn new(
        directory: Arc<dyn Directory>,
        backup_sets: Arc<dyn BackupSetStore>,
        baselines: Arc<dyn BaselineStore>,
        provider: Arc<dyn PolicyProvider>,
    ) -> Self {
        Self {
            directory,
            backup_sets,
            baselines,
            provider,
        }
    }

    async fn tenant(&self, caller: &Caller, slug: &Slug) -> Result<Tenant, CatalogError> {
        Ok(AccessPolicy::visible_tenant(caller, self.directory.as_ref(), slug).await?)
    }

    /// The tenants of the caller's workspace it may see, by slug.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Access`] when storage fails.
    pub async fn tenants(&self, caller: &Caller) -> Result<Vec<Tenant>, CatalogError> {
        let all = self
            .directory
            .tenants_of(caller.workspace())
            .await
            .map_err(AccessError::from)?;
        Ok(all
            .into_iter()
            .filter(|t| AccessPolicy::can_see_tenant(caller, t))
            .collect())
    }

    /// Creates an empty backup set (needs `operator`).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Access`], [`CatalogError::Invalid`] (`invalid_name`), or a failure.
    pub async fn create_backup_set(
        &self,
        caller: &Caller,
        slug: &Slug,
        name: &str,
    ) -> Result<BackupSet, CatalogError> {
        let tenant = self.tenant(caller, slug).await?;
        AccessPolicy::require(caller, Role::Operator)?;
        let name = backup_set_name(name)?;
        Ok(self.backup_sets.create_backup_set(tenant.id, &name).await?)
    }

    /// The tenant's backup sets, oldest first.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Access`], or a failure.
    pub async fn backup_sets(
        &self,
        caller: &Caller,
        slug: &Slug,
    ) -> Result<Vec<BackupSet>, CatalogError> {
        let tenant = self.tenant(caller, slug).await?;
        Ok(self.backup_sets.backup_sets(tenant.id).await?)
    }

    /// The items of the tenant's backup set `id`, by id (what `item_ids` of a restore name).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Access`] (`NotFound` also for a set of another tenant), or a failure.
    pub async fn backup_set_items(
        &self,
        caller: &Caller,
        slug: &Slug,
        id: i64,
    ) -> Result<Vec<BackupItem>, CatalogError> {
        let tenant = self.tenant(caller, slug).await?;
        if self.backup_sets.backup_set(tenant.id, id).await?.is_none() {
            return Err(AccessError::NotFound(format!("backup set {id}")).into());
        }
        Ok(self.backup_sets.items(id).await?)
    }

    /// The tenant's baselines, oldest first.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Access`], or a failure.
    pub async fn baselines(
        &self,
        caller: &Caller,
        slug: &Slug,
    ) -> Result<Vec<Baseline>, CatalogError> {
        let tenant = self.tenant(caller, slug).await?;
        Ok(self.baselines.baselines(tenant.id).await?)
    }

    /// The tenant's policies at its provider.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Access`], or a failure.
    pub async fn policies(
        &self,
        caller: &Caller,
        slug: &Slug,
    ) -> Result<Vec<Policy>, CatalogError> {
        let tenant = self.tenant(caller, slug).await?;
        Ok(self.provider.all_policies(tenant.id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_set_names_are_trimmed_text_of_bounded_length() {
        let long = "n".repeat(MAX_BACKUP_SET_NAME + 1);

        assert_eq!(backup_set_name("  nightly ").unwrap(), "nightly");
        // A decomposed "é" is kept composed (NFC).
        assert_eq!(backup_set_name("caf\u{65}\u{301}").unwrap(), "caf\u{e9}");
        for bad in [
            "",
            "  ",
            "a\u{7}b",
            long.as_str(),
            "evil\u{202E}gnp.exe",
            "zero\u{200B}width",
            "\u{2066}isolate\u{2069}",
            "bom\u{FEFF}",
        ] {
            assert!(matches!(
                backup_set_name(bad),
                Err(CatalogError::Invalid {
                    code: "invalid_name",
                    ..
                })
            ));
        }
    }
}
