//! The access policy: who may see and do what (DESIGN §9). What a caller may not see is
//! `NotFound`, exactly like what does not exist.

use opsrun_domain::{OperationRun, Slug, WorkspaceId};

use crate::StoreError;
use crate::auth::TokenHash;
use crate::ports::{Directory, Role, RunQueries, Tenant, TenantScope, TokenId, User};

/// An authenticated caller: a user of a workspace with a role and the tenants it may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user: User,
    /// Its role.
    pub role: Role,
    /// The tenants it may see.
    pub scope: TenantScope,
    /// How it proved who it is (what a long-lived stream re-checks).
    pub via: Via,
}

/// How a caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// In-process (the CLI, the demo, a host's own code): nothing to re-check.
    Local,
    /// An API token (`Authorization: Bearer`).
    Token(TokenId),
    /// A page session opened with a token.
    Session {
        /// The token the session was opened with.
        token: TokenId,
        /// The hash of the session secret.
        session: TokenHash,
    },
}

impl Caller {
    /// The caller's workspace.
    #[must_use]
    pub fn workspace(&self) -> WorkspaceId {
        self.user.workspace
    }
}

/// Why access was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Absent, or not visible to the caller (the two are indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(String),
    /// Visible, but the caller's role is too low.
    #[error("this needs the {needed} role; you have {has}")]
    Forbidden {
        /// The role needed.
        needed: &'static str,
        /// The caller's role.
        has: &'static str,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AccessError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::RunNotFound(id) => Self::NotFound(format!("operation {id}")),
            StoreError::NotFound(what) => Self::NotFound(what),
            other => Self::Store(other),
        }
    }
}

/// The one access policy every read model and use case goes through.
#[derive(Debug, Clone, Copy)]
pub struct AccessPolicy;

impl AccessPolicy {
    /// Whether the caller may see the tenant.
    #[must_use]
    pub fn can_see_tenant(caller: &Caller, tenant: &Tenant) -> bool {
        tenant.workspace == caller.workspace() && caller.scope.allows(tenant.id)
    }

    /// Whether the caller may see the run.
    #[must_use]
    pub fn can_see_run(caller: &Caller, run: &OperationRun) -> bool {
        run.workspace() == caller.workspace() && caller.scope.allows(run.tenant())
    }

    /// Whether the caller may see a notification about a run of `tenant`: notifications
    /// belong to the user, but a token scoped to some tenants sees only theirs.
    #[must_use]
    pub fn can_see_notification(caller: &Caller, tenant: opsrun_domain::TenantId) -> bool {
        caller.scope.allows(tenant)
    }

    /// Refuses unless the caller has at least `needed`.
    ///
    /// # Errors
    ///
    /// [`AccessError::Forbidden`].
    pub fn require(caller: &Caller, needed: Role) -> Result<(), AccessError> {
        if caller.role >= needed {
            Ok(())
        } else {
            Err(AccessError::Forbidden {
                needed: needed.key(),
                has: caller.role.key(),
            })
        }
    }

    /// The tenant `slug` of the caller's workspace, if the caller may see it.
    ///
    /// # Errors
    ///
    /// [`AccessError::NotFound`] when absent or not visible; [`AccessError::Store`].
    pub async fn visible_tenant(
        caller: &Caller,
        directory: &dyn Directory,
        slug: &Slug,
    ) -> Result<Tenant, AccessError> {
        let tenant = directory.tenant_by_slug(caller.workspace(), slug).await?;
        if Self::can_see_tenant(caller, &tenant) {
            Ok(tenant)
        } else {
            Err(AccessError::NotFound(format!("tenant '{slug}'")))
        }
    }

    /// The run `id`, if the caller may see it.
    ///
    /// # Errors
    ///
    /// [`AccessError::NotFound`] when absent or not visible; [`AccessError::Store`].
    pub async fn visible_run(
        caller: &Caller,
        store: &dyn RunQueries,
        id: opsrun_domain::RunId,
    ) -> Result<OperationRun, AccessError> {
        store
            .visible_run(id, caller.workspace(), &caller.scope)
            .await?
            .ok_or_else(|| AccessError::NotFound(format!("operation {id}")))
    }
}
