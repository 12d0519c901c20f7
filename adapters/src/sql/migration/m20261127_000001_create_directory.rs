//! Workspaces, tenants (with their simulated-provider settings until migration 8 moves them to
//! `simulated_tenants`), users and API tokens.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, big_pk_auto, double, string, string_null, string_uniq,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("workspaces")
                    .col(big_pk_auto("id"))
                    .col(string_uniq("slug"))
                    .col(big_integer("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("tenants")
                    .col(big_pk_auto("id"))
                    .col(big_integer("workspace_id"))
                    .col(string("slug"))
                    .col(big_integer("policies"))
                    .col(big_integer("latency_ms"))
                    .col(double("failure_rate"))
                    .col(big_integer("seed"))
                    .col(big_integer("created_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("tenants", "workspace_id")
                            .to("workspaces", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("tenants_workspace_slug")
                    .table("tenants")
                    .col("workspace_id")
                    .col("slug")
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("users")
                    .col(big_pk_auto("id"))
                    .col(big_integer("workspace_id"))
                    .col(string("email"))
                    .col(big_integer("created_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("users", "workspace_id")
                            .to("workspaces", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_workspace_email")
                    .table("users")
                    .col("workspace_id")
                    .col("email")
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("api_tokens")
                    .col(big_pk_auto("id"))
                    .col(big_integer("user_id"))
                    // SHA-256 of the token, hex; the token itself is never stored.
                    .col(string_uniq("token_hash"))
                    .col(string("role"))
                    // JSON list of tenant ids the token may see; NULL means every tenant.
                    .col(string_null("tenant_ids"))
                    .col(big_integer("created_at"))
                    .col(big_integer_null("revoked_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("api_tokens", "user_id")
                            .to("users", "id"),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["api_tokens", "users", "tenants", "workspaces"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
