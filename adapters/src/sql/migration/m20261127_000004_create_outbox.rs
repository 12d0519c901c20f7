//! Audit events and notifications: written in the same transaction as the completion that
//! wins, so a completed run always has exactly one of each.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_integer_null, big_pk_auto, string};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("audit_events")
                    .col(big_pk_auto("id"))
                    .col(big_integer("run_id"))
                    .col(string("action"))
                    .col(big_integer_null("actor_id"))
                    .col(string("outcome"))
                    .col(big_integer("at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("audit_events", "run_id")
                            .to("operation_runs", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_events_run")
                    .table("audit_events")
                    .col("run_id")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("notifications")
                    .col(big_pk_auto("id"))
                    .col(big_integer("user_id"))
                    .col(big_integer("run_id"))
                    .col(string("operation_type"))
                    .col(big_integer("tenant_id"))
                    .col(string("outcome"))
                    .col(big_integer("created_at"))
                    .col(big_integer_null("read_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("notifications", "run_id")
                            .to("operation_runs", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        // One terminal notification per run and user, enforced by the schema too.
        manager
            .create_index(
                Index::create()
                    .name("notifications_run_user")
                    .table("notifications")
                    .col("run_id")
                    .col("user_id")
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("notifications_user")
                    .table("notifications")
                    .col("user_id")
                    .col("id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["notifications", "audit_events"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
