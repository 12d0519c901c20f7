//! The tokens room: API tokens and page sessions, stored as the SHA-256 of their secrets only
//! ([`Tokens`]). A revoked token finds no owner, and its sessions are deleted with it.

use async_trait::async_trait;
use opsrun_application::StoreError;
use opsrun_application::auth::TokenHash;
use opsrun_application::ports::{
    NewSession, NewToken, Role, SessionOwner, TenantScope, TokenId, TokenOwner, TokenRecord,
    Tokens, User,
};
use opsrun_domain::{TenantId, Timestamp, UserId, WorkspaceId};
use sea_orm::QueryResult;

use super::SqlRunStore;

/// The columns a token's owner is read from (`t` is `api_tokens`, `u` is `users`).
const OWNER_COLUMNS: &str = "t.id AS token_id, t.token_hash, t.role, t.tenant_ids, t.created_at, \
    t.expires_at, t.last_used_at, t.revoked_at, u.id AS user_id, u.workspace_id, u.email";

fn scope_of(json: Option<String>) -> Result<TenantScope, StoreError> {
    Ok(match json {
        None => TenantScope::All,
        Some(json) => TenantScope::Only(
            serde_json::from_str::<Vec<i64>>(&json)
                .map_err(|e| StoreError::Corrupt(format!("token tenant ids: {e}")))?
                .into_iter()
                .map(TenantId::new)
                .collect(),
        ),
    })
}

fn at(value: Option<i64>) -> Option<Timestamp> {
    value.map(Timestamp::from_millis)
}

impl SqlRunStore {
    fn owner_of(row: &QueryResult) -> Result<TokenOwner, StoreError> {
        let role = Self::text(row, "role")?;
        let role = Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("a token has the unknown role '{role}'")))?;
        Ok(TokenOwner {
            token: TokenId(Self::int(row, "token_id")?),
            user: User {
                id: UserId::new(Self::int(row, "user_id")?),
                workspace: WorkspaceId::new(Self::int(row, "workspace_id")?),
                email: Self::text(row, "email")?,
            },
            role,
            scope: scope_of(Self::opt_text(row, "tenant_ids")?)?,
            expires_at: at(Self::opt_int(row, "expires_at")?),
            last_used_at: at(Self::opt_int(row, "last_used_at")?),
        })
    }

    fn record_of(row: &QueryResult) -> Result<TokenRecord, StoreError> {
        let owner = Self::owner_of(row)?;
        Ok(TokenRecord {
            id: owner.token,
            workspace: owner.user.workspace,
            email: owner.user.email,
            role: owner.role,
            scope: owner.scope,
            created_at: Timestamp::from_millis(Self::int(row, "created_at")?),
            expires_at: owner.expires_at,
            last_used_at: owner.last_used_at,
            revoked_at: at(Self::opt_int(row, "revoked_at")?),
        })
    }

    async fn owners(
        &self,
        filter: &str,
        values: Vec<sea_orm::Value>,
    ) -> Result<Vec<QueryResult>, StoreError> {
        let sql = format!(
            "SELECT {OWNER_COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE {filter}"
        );
        self.rows(self.connection(), &sql, values).await
    }
}

#[async_trait]
impl Tokens for SqlRunStore {
    async fn add_token(&self, token: NewToken) -> Result<TokenId, StoreError> {
        // The scope is stored as a JSON list of tenant ids; NULL means every tenant.
        let tenant_ids = match &token.scope {
            TenantScope::All => None,
            TenantScope::Only(ids) => {
                let ids: Vec<String> = ids.iter().map(|t| t.value().to_string()).collect();
                Some(format!("[{}]", ids.join(",")))
            }
        };
        let rows = self
            .rows(
                self.connection(),
                "INSERT INTO api_tokens (user_id, token_hash, role, tenant_ids, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                vec![
                    token.user.value().into(),
                    token.hash.as_str().into(),
                    token.role.key().into(),
                    tenant_ids.into(),
                    token.at.as_millis().into(),
                    token.expires_at.map(Timestamp::as_millis).into(),
                ],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Unavailable("the token insert returned no id".into()))?;
        Ok(TokenId(Self::int(row, "id")?))
    }

    async fn token_owner(&self, hash: &TokenHash) -> Result<Option<TokenOwner>, StoreError> {
        use subtle::ConstantTimeEq;
        let rows = self
            .owners(
                "t.token_hash = $1 AND t.revoked_at IS NULL",
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
        Ok(Some(Self::owner_of(row)?))
    }

    async fn token_by_id(&self, id: TokenId) -> Result<Option<TokenOwner>, StoreError> {
        let rows = self
            .owners("t.id = $1 AND t.revoked_at IS NULL", vec![id.0.into()])
            .await?;
        rows.first().map(Self::owner_of).transpose()
    }

    async fn touch_token(&self, id: TokenId, at: Timestamp) -> Result<(), StoreError> {
        self.exec(
            self.connection(),
            "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1",
            vec![id.0.into(), at.as_millis().into()],
        )
        .await?;
        Ok(())
    }

    async fn tokens(&self, workspace: Option<WorkspaceId>) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = match workspace {
            Some(ws) => {
                self.owners(
                    "u.workspace_id = $1 ORDER BY t.id DESC",
                    vec![ws.value().into()],
                )
                .await?
            }
            None => self.owners("1 = 1 ORDER BY t.id DESC", vec![]).await?,
        };
        rows.iter().map(Self::record_of).collect()
    }

    async fn revoke_token(
        &self,
        workspace: Option<WorkspaceId>,
        id: TokenId,
        at: Timestamp,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let rows = self.owners("t.id = $1", vec![id.0.into()]).await?;
        let Some(record) = rows.first().map(Self::record_of).transpose()? else {
            return Ok(None);
        };
        if workspace.is_some_and(|w| w != record.workspace) {
            return Ok(None);
        }
        self.exec(
            self.connection(),
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
            vec![id.0.into(), at.as_millis().into()],
        )
        .await?;
        self.exec(
            self.connection(),
            "DELETE FROM page_sessions WHERE token_id = $1",
            vec![id.0.into()],
        )
        .await?;
        let rows = self.owners("t.id = $1", vec![id.0.into()]).await?;
        rows.first().map(Self::record_of).transpose()
    }

    async fn add_session(&self, session: NewSession) -> Result<(), StoreError> {
        self.exec(
            self.connection(),
            "INSERT INTO page_sessions (session_hash, token_id, created_at, last_seen_at) VALUES ($1, $2, $3, $3)",
            vec![
                session.hash.as_str().into(),
                session.token.0.into(),
                session.at.as_millis().into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn session_owner(&self, hash: &TokenHash) -> Result<Option<SessionOwner>, StoreError> {
        let sql = format!(
            "SELECT {OWNER_COLUMNS}, s.created_at AS session_created_at, s.last_seen_at \
             FROM page_sessions s JOIN api_tokens t ON t.id = s.token_id JOIN users u ON u.id = t.user_id \
             WHERE s.session_hash = $1 AND t.revoked_at IS NULL"
        );
        let rows = self
            .rows(self.connection(), &sql, vec![hash.as_str().into()])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(SessionOwner {
            created_at: Timestamp::from_millis(Self::int(row, "session_created_at")?),
            last_seen_at: Timestamp::from_millis(Self::int(row, "last_seen_at")?),
            owner: Self::owner_of(row)?,
        }))
    }

    async fn touch_session(&self, hash: &TokenHash, at: Timestamp) -> Result<(), StoreError> {
        self.exec(
            self.connection(),
            "UPDATE page_sessions SET last_seen_at = $2 WHERE session_hash = $1",
            vec![hash.as_str().into(), at.as_millis().into()],
        )
        .await?;
        Ok(())
    }

    async fn delete_session(&self, hash: &TokenHash) -> Result<(), StoreError> {
        self.exec(
            self.connection(),
            "DELETE FROM page_sessions WHERE session_hash = $1",
            vec![hash.as_str().into()],
        )
        .await?;
        Ok(())
    }
}
