//! The tokens room: API tokens, stored as their SHA-256 only ([`Tokens`]).

use async_trait::async_trait;
use opsrun_application::StoreError;
use opsrun_application::auth::TokenHash;
use opsrun_application::ports::{NewToken, Role, TenantScope, TokenOwner, Tokens, User};
use opsrun_domain::{TenantId, UserId, WorkspaceId};

use super::SqlRunStore;

#[async_trait]
impl Tokens for SqlRunStore {
    async fn add_token(&self, token: NewToken) -> Result<(), StoreError> {
        // The scope is stored as a JSON list of tenant ids; NULL means every tenant.
        let tenant_ids = match &token.scope {
            TenantScope::All => None,
            TenantScope::Only(ids) => {
                let ids: Vec<String> = ids.iter().map(|t| t.value().to_string()).collect();
                Some(format!("[{}]", ids.join(",")))
            }
        };
        self.exec(
            self.connection(),
            "INSERT INTO api_tokens (user_id, token_hash, role, tenant_ids, created_at) VALUES ($1, $2, $3, $4, $5)",
            vec![
                token.user.value().into(),
                token.hash.as_str().into(),
                token.role.key().into(),
                tenant_ids.into(),
                token.at.as_millis().into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn token_owner(&self, hash: &TokenHash) -> Result<Option<TokenOwner>, StoreError> {
        use subtle::ConstantTimeEq;
        let rows = self
            .rows(
                self.connection(),
                "SELECT t.token_hash, t.role, t.tenant_ids, u.id, u.workspace_id, u.email \
                 FROM api_tokens t JOIN users u ON u.id = t.user_id \
                 WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
                vec![hash.as_str().into()],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let stored = Self::text(row, "token_hash")?;
        if !bool::from(stored.as_bytes().ct_eq(hash.as_str().as_bytes())) {
            return Ok(None);
        }
        let scope = match Self::opt_text(row, "tenant_ids")? {
            None => TenantScope::All,
            Some(json) => TenantScope::Only(
                serde_json::from_str::<Vec<i64>>(&json)
                    .map_err(|e| StoreError::Corrupt(format!("token tenant ids: {e}")))?
                    .into_iter()
                    .map(TenantId::new)
                    .collect(),
            ),
        };
        let role = Self::text(row, "role")?;
        let role = Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("a token has the unknown role '{role}'")))?;
        Ok(Some(TokenOwner {
            user: User {
                id: UserId::new(Self::int(row, "id")?),
                workspace: WorkspaceId::new(Self::int(row, "workspace_id")?),
                email: Self::text(row, "email")?,
            },
            role,
            scope,
        }))
    }
}
