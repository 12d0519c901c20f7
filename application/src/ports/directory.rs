//! Tenants and users: who and what a caller may see.

use std::collections::BTreeSet;

use async_trait::async_trait;
use opsrun_domain::{Slug, TenantId, UserId, WorkspaceId};

use crate::StoreError;

/// A tenant of a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Id.
    pub id: TenantId,
    /// Owning workspace.
    pub workspace: WorkspaceId,
    /// Slug, unique inside the workspace.
    pub slug: Slug,
}

/// A user's role in its workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// May read what its tenants show.
    Readonly,
    /// May also start operations.
    Operator,
    /// May also cancel operations and manage tokens.
    Owner,
}

impl Role {
    /// The wire key.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Readonly => "readonly",
            Self::Operator => "operator",
            Self::Owner => "owner",
        }
    }

    /// Parses a wire key.
    #[must_use]
    pub fn parse(key: &str) -> Option<Self> {
        [Self::Readonly, Self::Operator, Self::Owner]
            .into_iter()
            .find(|r| r.key() == key)
    }
}

/// Which tenants of its workspace a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant of the workspace.
    All,
    /// Only these.
    Only(BTreeSet<TenantId>),
}

impl TenantScope {
    /// Whether `tenant` is in scope.
    #[must_use]
    pub fn allows(&self, tenant: TenantId) -> bool {
        match self {
            Self::All => true,
            Self::Only(set) => set.contains(&tenant),
        }
    }
}

/// A user of a workspace, as resolved from an API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Workspace.
    pub workspace: WorkspaceId,
    /// E-mail address (shown as a run's initiator).
    pub email: String,
}

/// Looks up tenants and users.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Directory: Send + Sync {
    /// The tenant `slug` of `workspace`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the workspace has no such tenant;
    /// [`StoreError::Unavailable`] on storage failure.
    async fn tenant_by_slug(
        &self,
        workspace: WorkspaceId,
        slug: &Slug,
    ) -> Result<Tenant, StoreError>;

    /// The tenant with this id.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when no tenant has this id; [`StoreError::Unavailable`].
    async fn tenant(&self, id: TenantId) -> Result<Tenant, StoreError>;

    /// The user with this id.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when no user has this id; [`StoreError::Unavailable`].
    async fn user(&self, id: UserId) -> Result<User, StoreError>;
}
