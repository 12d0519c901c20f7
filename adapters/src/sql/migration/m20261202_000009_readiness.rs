//! `opsrun_readiness`: one row that the readiness check writes, so `/readyz` proves the store
//! accepts a write (a full disk or a held lock fails it) without touching any real data.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::big_integer;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("opsrun_readiness")
                    .col(big_integer("id").primary_key())
                    .col(big_integer("checked_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("opsrun_readiness").to_owned())
            .await
    }
}
