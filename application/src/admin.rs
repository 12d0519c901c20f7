//! Directory administration on behalf of an operator of the installation (the CLI, a host's
//! setup code): workspaces, tenants and API tokens. Each use case validates its input once,
//! here, so every edge refuses the same things with the same words.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use opsrun_domain::{Slug, Timestamp, WorkspaceId};

use crate::StoreError;
use crate::auth::PlainToken;
use crate::ports::{
    Clock, Directory, DirectoryAdmin, Entropy, NewToken, Role, SimulationSettings, Tenant,
    TenantScope, TenantSetup, TokenId, TokenRecord, Tokens,
};

/// Longest accepted e-mail address (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// Why an administration request was refused (nothing was changed) or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request is invalid; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// The thing named does not exist (or is not the caller's).
    #[error("{0}")]
    NotFound(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(message: impl Into<String>) -> AdminError {
    AdminError::Invalid(message.into())
}

/// Adds a tenant to a workspace (created if missing) and connects it to its provider.
#[derive(Clone)]
pub struct AddTenant {
    directory: Arc<dyn Directory>,
    admin: Arc<dyn DirectoryAdmin>,
    setup: Arc<dyn TenantSetup>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for AddTenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddTenant").finish_non_exhaustive()
    }
}

impl AddTenant {
    /// The use case over the directory, its administration and the provider setup.
    #[must_use]
    pub fn new(
        directory: Arc<dyn Directory>,
        admin: Arc<dyn DirectoryAdmin>,
        setup: Arc<dyn TenantSetup>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            directory,
            admin,
            setup,
            clock,
        }
    }

    /// Adds tenant `slug` to `workspace` with its simulated-provider `settings`; with
    /// `existing_ok`, an existing tenant of that slug is returned unchanged instead.
    ///
    /// # Errors
    ///
    /// [`AdminError::Invalid`] for a failure rate outside 0 to 1, negative counts, or a slug
    /// already taken (without `existing_ok`); [`AdminError::Store`].
    pub async fn execute(
        &self,
        workspace: &Slug,
        slug: &Slug,
        settings: SimulationSettings,
        existing_ok: bool,
    ) -> Result<Tenant, AdminError> {
        if !(0.0..=1.0).contains(&settings.failure_rate) {
            return Err(invalid("--failure-rate must be between 0 and 1"));
        }
        if settings.policies < 0 || settings.latency_ms < 0 {
            return Err(invalid("policies and latency must not be negative"));
        }
        let ws = self
            .admin
            .workspace(workspace, true, self.clock.now())
            .await?;
        match self.directory.tenant_by_slug(ws, slug).await {
            Ok(existing) if existing_ok => return Ok(existing),
            Ok(_) => {
                return Err(invalid(format!(
                    "tenant '{slug}' already exists in workspace '{workspace}'"
                )));
            }
            Err(StoreError::NotFound(_)) => {}
            Err(other) => return Err(other.into()),
        }
        let tenant = self.admin.add_tenant(ws, slug, self.clock.now()).await?;
        self.setup.configure(tenant.id, settings).await?;
        Ok(tenant)
    }
}

/// What a new API token is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The workspace.
    pub workspace: Slug,
    /// Whether a missing workspace is created.
    pub create_workspace: bool,
    /// The user's e-mail (the user is created if missing).
    pub email: String,
    /// The token's role.
    pub role: Role,
    /// The tenants it may see; empty: every tenant of the workspace.
    pub tenants: Vec<Slug>,
    /// How long it works; `None`: until revoked.
    pub expires_in: Option<std::time::Duration>,
}

/// The longest lifetime a token can be issued with (`--expires-in`).
pub const MAX_TOKEN_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(10 * 366 * 86_400);

/// A token just issued: its clear text is shown once.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// Its id (for `token list` and `token revoke`).
    pub id: TokenId,
    /// The clear text.
    pub token: PlainToken,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
}

/// Issues an API token: the clear text is returned once, only its hash is stored.
#[derive(Clone)]
pub struct IssueToken {
    directory: Arc<dyn Directory>,
    admin: Arc<dyn DirectoryAdmin>,
    tokens: Arc<dyn Tokens>,
    entropy: Arc<dyn Entropy>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for IssueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssueToken").finish_non_exhaustive()
    }
}

/// The ports [`IssueToken`] works with.
#[derive(Clone)]
pub struct IssueTokenPorts {
    /// Tenant lookups.
    pub directory: Arc<dyn Directory>,
    /// Workspaces and users.
    pub admin: Arc<dyn DirectoryAdmin>,
    /// Where the hash goes.
    pub tokens: Arc<dyn Tokens>,
    /// Randomness.
    pub entropy: Arc<dyn Entropy>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

impl IssueToken {
    /// The use case over its ports.
    #[must_use]
    pub fn new(ports: IssueTokenPorts) -> Self {
        Self {
            directory: ports.directory,
            admin: ports.admin,
            tokens: ports.tokens,
            entropy: ports.entropy,
            clock: ports.clock,
        }
    }

    /// Validates the request and issues the token.
    ///
    /// # Errors
    ///
    /// [`AdminError::Invalid`] for a malformed e-mail or a tenant the workspace does not have;
    /// [`AdminError::Store`].
    pub async fn execute(&self, request: TokenRequest) -> Result<IssuedToken, AdminError> {
        let expires_in = match request.expires_in {
            Some(d) if d.is_zero() || d > MAX_TOKEN_LIFETIME => {
                return Err(invalid(
                    "the token lifetime must be between 1 second and 10 years",
                ));
            }
            other => other,
        };
        let email = request.email.trim();
        if email.is_empty()
            || email.len() > MAX_EMAIL_LEN
            || !email.contains('@')
            || email.chars().any(char::is_whitespace)
        {
            return Err(invalid("--email must be an e-mail address"));
        }
        let ws = self
            .admin
            .workspace(
                &request.workspace,
                request.create_workspace,
                self.clock.now(),
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => {
                    invalid(format!("workspace '{}' does not exist", request.workspace))
                }
                other => other.into(),
            })?;
        let mut tenants = BTreeSet::new();
        for slug in &request.tenants {
            let tenant = self
                .directory
                .tenant_by_slug(ws, slug)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound(_) => invalid(format!(
                        "tenant '{slug}' does not exist in workspace '{}'",
                        request.workspace
                    )),
                    other => other.into(),
                })?;
            tenants.insert(tenant.id);
        }
        let user = self.admin.ensure_user(ws, email, self.clock.now()).await?;
        let token = PlainToken::generate(self.entropy.bytes()?);
        let scope = if tenants.is_empty() {
            TenantScope::All
        } else {
            TenantScope::Only(tenants)
        };
        let now = self.clock.now();
        let expires_at = expires_in.map(|d| {
            Timestamp::from_millis(
                now.as_millis()
                    .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            )
        });
        let id = self
            .tokens
            .add_token(NewToken {
                user: user.id,
                hash: token.hash(),
                role: request.role,
                scope,
                at: now,
                expires_at,
            })
            .await?;
        Ok(IssuedToken {
            id,
            token,
            expires_at,
        })
    }
}

/// Lists and revokes API tokens: from the CLI (every workspace) or for a workspace owner.
#[derive(Clone)]
pub struct ManageTokens {
    tokens: Arc<dyn Tokens>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for ManageTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManageTokens").finish_non_exhaustive()
    }
}

impl ManageTokens {
    /// The use case over the token store.
    #[must_use]
    pub fn new(tokens: Arc<dyn Tokens>, clock: Arc<dyn Clock>) -> Self {
        Self { tokens, clock }
    }

    /// The tokens of `workspace` (every workspace's for `None`), newest first.
    ///
    /// # Errors
    ///
    /// [`AdminError::Store`].
    pub async fn list(
        &self,
        workspace: Option<WorkspaceId>,
    ) -> Result<Vec<TokenRecord>, AdminError> {
        Ok(self.tokens.tokens(workspace).await?)
    }

    /// Every value [`ManageTokens::status`] answers.
    pub const STATUSES: [&'static str; 3] = ["active", "expired", "revoked"];

    /// What a listed token is now: `revoked`, `expired` or `active` (the one rule the CLI, the
    /// API and the pages show).
    #[must_use]
    pub fn status(&self, record: &TokenRecord) -> &'static str {
        if record.revoked_at.is_some() {
            "revoked"
        } else if crate::auth::unexpired(record.expires_at, self.clock.now()) {
            "active"
        } else {
            "expired"
        }
    }

    /// Revokes token `id` (of `workspace`, when given): it fails at once on the API, its page
    /// sessions end, and open streams end at their next check. Revoking twice keeps the first
    /// time.
    ///
    /// # Errors
    ///
    /// [`AdminError::NotFound`] when there is no such token; [`AdminError::Store`].
    pub async fn revoke(
        &self,
        workspace: Option<WorkspaceId>,
        id: TokenId,
    ) -> Result<TokenRecord, AdminError> {
        self.tokens
            .revoke_token(workspace, id, self.clock.now())
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("token {id} not found")))
    }
}
