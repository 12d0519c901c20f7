//! `operation_runs`: one row per run, one nullable integer column per summary key (the schema
//! is the whitelist), and the indexes of the feed, the collection and dedupe.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, big_pk_auto, string, string_null, text, text_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The ten summary keys, named exactly as the keys.
const SUMMARY_COLUMNS: [&str; 10] = [
    "total",
    "processed",
    "succeeded",
    "failed",
    "skipped",
    "created",
    "updated",
    "deleted",
    "items",
    "tenants",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut table = Table::create();
        table
            .table("operation_runs")
            .col(big_pk_auto("id"))
            .col(big_integer("workspace_id"))
            .col(big_integer("tenant_id"))
            .col(string("operation_type"))
            .col(string("target"))
            // tenant/type/target: at most one active run per identity (partial index below).
            .col(string("identity"))
            .col(big_integer_null("initiator_id"))
            .col(big_integer_null("parent_id"))
            .col(string("status"))
            .col(string("outcome"));
        for column in SUMMARY_COLUMNS {
            table.col(big_integer_null(column));
        }
        table
            // Where the total came from; set exactly when the work set is frozen.
            .col(string_null("basis"))
            // JSON: the family parameters, declared phases and components, failure lines.
            .col(text("params"))
            .col(text_null("phases"))
            .col(text_null("components"))
            .col(text("failures"))
            // Instants in milliseconds since the Unix epoch (UTC).
            .col(big_integer("created_at"))
            .col(big_integer_null("started_at"))
            .col(big_integer_null("completed_at"))
            .col(big_integer_null("heartbeat_at"))
            .foreign_key(
                ForeignKey::create()
                    .from("operation_runs", "tenant_id")
                    .to("tenants", "id"),
            );
        manager.create_table(table.to_owned()).await?;
        manager
            .create_index(
                Index::create()
                    .name("operation_runs_active_identity")
                    .table("operation_runs")
                    .col("identity")
                    .unique()
                    .and_where(Expr::col("status").ne("completed"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("operation_runs_tenant_status")
                    .table("operation_runs")
                    .col("tenant_id")
                    .col("status")
                    .col("completed_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("operation_runs_tenant_id")
                    .table("operation_runs")
                    .col("tenant_id")
                    .col((Alias::new("id"), IndexOrder::Desc))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("operation_runs_workspace_id")
                    .table("operation_runs")
                    .col("workspace_id")
                    .col((Alias::new("id"), IndexOrder::Desc))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("operation_runs_parent")
                    .table("operation_runs")
                    .col("parent_id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("operation_runs_active")
                    .table("operation_runs")
                    .col("status")
                    .col("id")
                    .and_where(Expr::col("status").ne("completed"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("operation_runs").to_owned())
            .await
    }
}
