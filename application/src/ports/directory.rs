//! Tenants and users: who and what a caller may see.

use std::collections::BTreeSet;

use async_trait::async_trait;
use opsrun_domain::{Slug, TenantId, Timestamp, UserId, WorkspaceId};

use crate::StoreError;
use crate::auth::TokenHash;

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
    /// Every role, lowest first.
    pub const ALL: [Self; 3] = [Self::Readonly, Self::Operator, Self::Owner];

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
        Self::ALL.into_iter().find(|r| r.key() == key)
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

    /// The tenants of a workspace, by slug.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn tenants_of(&self, workspace: WorkspaceId) -> Result<Vec<Tenant>, StoreError>;

    /// The user with this id.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when no user has this id; [`StoreError::Unavailable`].
    async fn user(&self, id: UserId) -> Result<User, StoreError>;
}

/// The id of a stored API token (what `token list` shows and `token revoke` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenId(pub i64);

impl std::fmt::Display for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who an API token stands for: its user, role and tenant scope, and its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    /// The token.
    pub token: TokenId,
    /// The user.
    pub user: User,
    /// The token's role.
    pub role: Role,
    /// The tenants the token may see.
    pub scope: TenantScope,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was last used (kept to the minute).
    pub last_used_at: Option<Timestamp>,
}

/// A token to store: only its hash, never its clear text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// The user it stands for.
    pub user: UserId,
    /// Its hash.
    pub hash: TokenHash,
    /// Its role.
    pub role: Role,
    /// The tenants it may see.
    pub scope: TenantScope,
    /// When it was issued.
    pub at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
}

/// A stored token as its owners see it in a list (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Its id.
    pub id: TokenId,
    /// The workspace of its user.
    pub workspace: WorkspaceId,
    /// The e-mail of the user it stands for.
    pub email: String,
    /// Its role.
    pub role: Role,
    /// The tenants it may see.
    pub scope: TenantScope,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was last used (to the minute).
    pub last_used_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// A page session to store: the hash of its secret and the token it was opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The hash of the session secret (the cookie value).
    pub hash: TokenHash,
    /// The token the user logged in with: revoking it ends the session.
    pub token: TokenId,
    /// When it was opened.
    pub at: Timestamp,
}

/// A stored page session and the owner of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    /// When the session was opened.
    pub created_at: Timestamp,
    /// When it was last used (kept to the minute).
    pub last_seen_at: Timestamp,
    /// The token behind it (unknown or revoked tokens have no sessions to find).
    pub owner: TokenOwner,
}

/// API tokens and page sessions, stored hashed.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Tokens: Send + Sync {
    /// Stores a new token.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn add_token(&self, token: NewToken) -> Result<TokenId, StoreError>;

    /// The owner of the token whose hash is `hash`; `None` for an unknown or revoked token
    /// (expiry is the caller's rule). The stored hash is compared in constant time.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn token_owner(&self, hash: &TokenHash) -> Result<Option<TokenOwner>, StoreError>;

    /// The owner of token `id`, as [`Self::token_owner`] (a stream re-checks its token so).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn token_by_id(&self, id: TokenId) -> Result<Option<TokenOwner>, StoreError>;

    /// Notes that token `id` was used at `at`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn touch_token(&self, id: TokenId, at: Timestamp) -> Result<(), StoreError>;

    /// The tokens of a workspace's users (every workspace's for `None`), newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn tokens(&self, workspace: Option<WorkspaceId>) -> Result<Vec<TokenRecord>, StoreError>;

    /// Revokes token `id` (of `workspace`, when given) at `at` (a revoked token keeps its
    /// first revocation time) and deletes its sessions; `None` when there is no such token.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn revoke_token(
        &self,
        workspace: Option<WorkspaceId>,
        id: TokenId,
        at: Timestamp,
    ) -> Result<Option<TokenRecord>, StoreError>;

    /// Stores a new page session.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn add_session(&self, session: NewSession) -> Result<(), StoreError>;

    /// The session whose secret hashes to `hash`, with its token's owner; `None` when there is
    /// no such session or its token is revoked (expiry is the caller's rule).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn session_owner(&self, hash: &TokenHash) -> Result<Option<SessionOwner>, StoreError>;

    /// Notes that session `hash` was used at `at`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn touch_session(&self, hash: &TokenHash, at: Timestamp) -> Result<(), StoreError>;

    /// Deletes session `hash` (logout, expiry); deleting an absent one is no error.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn delete_session(&self, hash: &TokenHash) -> Result<(), StoreError>;
}

/// Adds workspaces, tenants and users (the write side of [`Directory`]).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait DirectoryAdmin: Send + Sync {
    /// The workspace `slug`, created if `create` and missing.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when it is missing and `create` is false;
    /// [`StoreError::Unavailable`].
    async fn workspace(
        &self,
        slug: &Slug,
        create: bool,
        at: Timestamp,
    ) -> Result<WorkspaceId, StoreError>;

    /// Every workspace, by id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn workspaces(&self) -> Result<Vec<(WorkspaceId, Slug)>, StoreError>;

    /// Adds a tenant.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], also when the slug is taken in the workspace.
    async fn add_tenant(
        &self,
        workspace: WorkspaceId,
        slug: &Slug,
        at: Timestamp,
    ) -> Result<Tenant, StoreError>;

    /// The user with this e-mail in the workspace, created if missing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn ensure_user(
        &self,
        workspace: WorkspaceId,
        email: &str,
        at: Timestamp,
    ) -> Result<User, StoreError>;
}

/// How the shipped simulated provider behaves for one tenant (deterministic: the same settings
/// give the same policies and the same failures every time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulationSettings {
    /// How many policies the tenant has.
    pub policies: i64,
    /// Milliseconds each provider call sleeps.
    pub latency_ms: i64,
    /// Fraction of items that fail, 0 to 1.
    pub failure_rate: f64,
    /// Seed choosing which items fail.
    pub seed: i64,
}

impl Default for SimulationSettings {
    fn default() -> Self {
        Self {
            policies: 40,
            latency_ms: 0,
            failure_rate: 0.0,
            seed: 1,
        }
    }
}

/// Connects a new tenant to its provider. The shipped provider is the simulated tenant, so
/// what it takes is its [`SimulationSettings`]; a host with a real provider configures its
/// own connection there.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TenantSetup: Send + Sync {
    /// Stores how the tenant's provider behaves.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn configure(
        &self,
        tenant: TenantId,
        settings: SimulationSettings,
    ) -> Result<(), StoreError>;
}

/// A source of secure randomness (for tokens).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Entropy: Send + Sync {
    /// 32 bytes from a secure random source.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the system has no randomness to give.
    fn bytes(&self) -> Result<[u8; 32], StoreError>;
}
