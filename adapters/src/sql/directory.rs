//! The directory room: workspaces, tenants and users ([`Directory`] and [`DirectoryAdmin`]).

use async_trait::async_trait;
use opsrun_application::StoreError;
use opsrun_application::ports::{Directory, DirectoryAdmin, Tenant, User};
use opsrun_domain::{Slug, TenantId, Timestamp, UserId, WorkspaceId};
use sea_orm::QueryResult;

use super::SqlRunStore;

fn tenant_of(row: &QueryResult, workspace: WorkspaceId) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: TenantId::new(SqlRunStore::int(row, "id")?),
        workspace,
        slug: Slug::parse(&SqlRunStore::text(row, "slug")?)?,
    })
}

#[async_trait]
impl Directory for SqlRunStore {
    async fn tenant_by_slug(
        &self,
        workspace: WorkspaceId,
        slug: &Slug,
    ) -> Result<Tenant, StoreError> {
        let rows = self
            .rows(
                self.connection(),
                "SELECT id, slug FROM tenants WHERE workspace_id = $1 AND slug = $2",
                vec![workspace.value().into(), slug.as_str().into()],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::NotFound(format!("tenant '{slug}'")))?;
        tenant_of(row, workspace)
    }

    async fn tenant(&self, id: TenantId) -> Result<Tenant, StoreError> {
        let rows = self
            .rows(
                self.connection(),
                "SELECT id, workspace_id, slug FROM tenants WHERE id = $1",
                vec![id.value().into()],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::NotFound(format!("tenant {id}")))?;
        tenant_of(row, WorkspaceId::new(Self::int(row, "workspace_id")?))
    }

    async fn user(&self, id: UserId) -> Result<User, StoreError> {
        let rows = self
            .rows(
                self.connection(),
                "SELECT workspace_id, email FROM users WHERE id = $1",
                vec![id.value().into()],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
        Ok(User {
            id,
            workspace: WorkspaceId::new(Self::int(row, "workspace_id")?),
            email: Self::text(row, "email")?,
        })
    }

    async fn tenants_of(&self, workspace: WorkspaceId) -> Result<Vec<Tenant>, StoreError> {
        let rows = self
            .rows(
                self.connection(),
                "SELECT id, slug FROM tenants WHERE workspace_id = $1 ORDER BY slug",
                vec![workspace.value().into()],
            )
            .await?;
        rows.iter().map(|r| tenant_of(r, workspace)).collect()
    }
}

#[async_trait]
impl DirectoryAdmin for SqlRunStore {
    async fn workspace(
        &self,
        slug: &Slug,
        create: bool,
        at: Timestamp,
    ) -> Result<WorkspaceId, StoreError> {
        if create {
            self.exec(
                self.connection(),
                "INSERT INTO workspaces (slug, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                vec![slug.as_str().into(), at.as_millis().into()],
            )
            .await?;
        }
        let rows = self
            .rows(
                self.connection(),
                "SELECT id FROM workspaces WHERE slug = $1",
                vec![slug.as_str().into()],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::NotFound(format!("workspace '{slug}'")))?;
        Ok(WorkspaceId::new(Self::int(row, "id")?))
    }

    async fn workspaces(&self) -> Result<Vec<(WorkspaceId, Slug)>, StoreError> {
        let rows = self
            .rows(
                self.connection(),
                "SELECT id, slug FROM workspaces ORDER BY id",
                Vec::new(),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    WorkspaceId::new(Self::int(r, "id")?),
                    Slug::parse(&Self::text(r, "slug")?)?,
                ))
            })
            .collect()
    }

    async fn add_tenant(
        &self,
        workspace: WorkspaceId,
        slug: &Slug,
        at: Timestamp,
    ) -> Result<Tenant, StoreError> {
        let rows = self
            .rows(
                self.connection(),
                "INSERT INTO tenants (workspace_id, slug, created_at) VALUES ($1, $2, $3) \
                 RETURNING id, slug",
                vec![
                    workspace.value().into(),
                    slug.as_str().into(),
                    at.as_millis().into(),
                ],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("tenant insert returned no id".into()))?;
        tenant_of(row, workspace)
    }

    async fn ensure_user(
        &self,
        workspace: WorkspaceId,
        email: &str,
        at: Timestamp,
    ) -> Result<User, StoreError> {
        self.exec(
            self.connection(),
            "INSERT INTO users (workspace_id, email, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            vec![workspace.value().into(), email.into(), at.as_millis().into()],
        )
        .await?;
        let rows = self
            .rows(
                self.connection(),
                "SELECT id FROM users WHERE workspace_id = $1 AND email = $2",
                vec![workspace.value().into(), email.into()],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::NotFound(format!("user '{email}'")))?;
        Ok(User {
            id: UserId::new(Self::int(row, "id")?),
            workspace,
            email: email.to_owned(),
        })
    }
}
