//! The frozen work set, the item ledger and the applied run-level increments of each run.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_integer_null, string, string_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Auxiliary keys whose deltas ride on an item or an increment (recount needs them).
const DELTA_COLUMNS: [&str; 5] = ["created", "updated", "deleted", "items", "tenants"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("operation_run_units")
                    .col(big_integer("run_id"))
                    .col(string("item_key"))
                    .col(big_integer("position"))
                    .primary_key(Index::create().col("run_id").col("item_key"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("operation_run_units", "run_id")
                            .to("operation_runs", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        let mut items = Table::create();
        items
            .table("operation_run_items")
            .col(big_integer("run_id"))
            .col(string("item_key"))
            .col(string("outcome"))
            .col(string_null("reason"))
            .col(big_integer("recorded_at"));
        for column in DELTA_COLUMNS {
            items.col(big_integer_null(column));
        }
        items
            .primary_key(Index::create().col("run_id").col("item_key"))
            .foreign_key(
                ForeignKey::create()
                    .from("operation_run_items", "run_id")
                    .to("operation_runs", "id"),
            );
        manager.create_table(items.to_owned()).await?;
        manager
            .create_index(
                Index::create()
                    .name("operation_run_items_outcome")
                    .table("operation_run_items")
                    .col("run_id")
                    .col("outcome")
                    .col("item_key")
                    .to_owned(),
            )
            .await?;
        let mut increments = Table::create();
        increments
            .table("operation_run_increments")
            .col(big_integer("run_id"))
            .col(string("increment_key"));
        for column in DELTA_COLUMNS {
            increments.col(big_integer_null(column));
        }
        increments
            .primary_key(Index::create().col("run_id").col("increment_key"))
            .foreign_key(
                ForeignKey::create()
                    .from("operation_run_increments", "run_id")
                    .to("operation_runs", "id"),
            );
        manager.create_table(increments.to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "operation_run_increments",
            "operation_run_items",
            "operation_run_units",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
