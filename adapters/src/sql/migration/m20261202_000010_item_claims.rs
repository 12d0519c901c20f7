//! `operation_run_claims`: the items a worker is about to hand to the provider. A cancel counts
//! the claimed, unrecorded ones as in flight in its own transaction (a completed run takes no
//! late record), so provider side effects and counts agree. Rows live only while the run is
//! open: the completing transaction deletes them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("operation_run_claims")
                    .col(big_integer("run_id"))
                    .col(string("item_key"))
                    .col(big_integer("claimed_at"))
                    .primary_key(Index::create().col("run_id").col("item_key"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("operation_run_claims", "run_id")
                            .to("operation_runs", "id"),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("operation_run_claims").to_owned())
            .await
    }
}
