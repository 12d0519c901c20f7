//! Run control: `operation_runs` gains `retry_of` (the run whose failed items a run retries),
//! `paused_at` (set while an operator holds the run) and `waiting` (why a queued run has not
//! started: its tenant's slots are taken); `tenant_limits` holds a tenant's own concurrency
//! limit, when it has one.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, integer};

#[derive(DeriveMigrationName)]
pub struct Migration;

const COLUMNS: [(&str, &str); 3] = [
    ("retry_of", "BIGINT"),
    ("paused_at", "BIGINT"),
    ("waiting", "TEXT"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // One column per statement: SQLite alters one at a time.
        for (column, kind) in COLUMNS {
            db.execute_unprepared(&format!(
                "ALTER TABLE operation_runs ADD COLUMN {column} {kind}"
            ))
            .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("operation_runs_retry_of")
                    .table("operation_runs")
                    .col("retry_of")
                    .to_owned(),
            )
            .await?;
        // Admission counts a tenant's running runs through `operation_runs_tenant_status`
        // (migration 2).
        manager
            .create_table(
                Table::create()
                    .table("tenant_limits")
                    .col(big_integer("tenant_id").primary_key())
                    .col(integer("max_running"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("tenant_limits", "tenant_id")
                            .to("tenants", "id"),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("tenant_limits").to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("operation_runs_retry_of")
                    .table("operation_runs")
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for (column, _) in COLUMNS {
            db.execute_unprepared(&format!("ALTER TABLE operation_runs DROP COLUMN {column}"))
                .await?;
        }
        Ok(())
    }
}
