//! What the run families produce: inventory, backup sets and their items, restore results,
//! review packs, evidence snapshots, baselines and comparison findings. Tables keyed by
//! `(run_id, item_key)` make each family write idempotent per work key.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, big_pk_auto, string, string_null, text,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn run_item_key(table: &mut TableCreateStatement) -> &mut TableCreateStatement {
    table
        .col(big_integer("run_id"))
        .col(string("item_key"))
        .primary_key(Index::create().col("run_id").col("item_key"))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("inventory_items")
                    .col(big_integer("tenant_id"))
                    .col(string("policy_id"))
                    .col(string("policy_type"))
                    .col(string("name"))
                    .col(big_integer("synced_at"))
                    .primary_key(Index::create().col("tenant_id").col("policy_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                run_item_key(Table::create().table("inventory_writes"))
                    .col(big_integer("created"))
                    .col(big_integer("updated"))
                    .col(big_integer("deleted"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("backup_sets")
                    .col(big_pk_auto("id"))
                    .col(big_integer("tenant_id"))
                    .col(string("name"))
                    .col(big_integer("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("backup_items")
                    .col(big_pk_auto("id"))
                    .col(big_integer("backup_set_id"))
                    .col(string("policy_id"))
                    .col(string("policy_type"))
                    .col(string("name"))
                    .col(text("body"))
                    .col(big_integer_null("added_by_run"))
                    .col(big_integer("created_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("backup_items", "backup_set_id")
                            .to("backup_sets", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("backup_items_set_policy")
                    .table("backup_items")
                    .col("backup_set_id")
                    .col("policy_id")
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                run_item_key(Table::create().table("restore_results"))
                    .col(big_integer("backup_item_id"))
                    .col(big_integer("restored_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                run_item_key(Table::create().table("review_pack_sections"))
                    .col(text("content"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("review_packs")
                    .col(big_pk_auto("id"))
                    .col(big_integer("run_id").unique_key())
                    .col(big_integer("tenant_id"))
                    .col(string("location"))
                    .col(string("sha256"))
                    .col(big_integer("bytes"))
                    .col(big_integer("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                run_item_key(Table::create().table("evidence_dimensions"))
                    .col(text("content"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("evidence_snapshots")
                    .col(big_pk_auto("id"))
                    .col(big_integer("run_id").unique_key())
                    .col(big_integer("tenant_id"))
                    .col(string("content_hash"))
                    .col(big_integer("dimensions"))
                    .col(big_integer("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("baselines")
                    .col(big_pk_auto("id"))
                    .col(big_integer("run_id").unique_key())
                    .col(big_integer("tenant_id"))
                    .col(big_integer("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("baseline_items")
                    .col(big_integer("baseline_id"))
                    .col(string("policy_id"))
                    .col(string("policy_type"))
                    .col(string("name"))
                    .col(text("body"))
                    .primary_key(Index::create().col("baseline_id").col("policy_id"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("baseline_items", "baseline_id")
                            .to("baselines", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                run_item_key(Table::create().table("baseline_findings"))
                    .col(big_integer("baseline_id"))
                    .col(string("policy_id"))
                    .col(string("kind"))
                    .col(string_null("detail"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "baseline_findings",
            "baseline_items",
            "baselines",
            "evidence_snapshots",
            "evidence_dimensions",
            "review_packs",
            "review_pack_sections",
            "restore_results",
            "backup_items",
            "backup_sets",
            "inventory_writes",
            "inventory_items",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
