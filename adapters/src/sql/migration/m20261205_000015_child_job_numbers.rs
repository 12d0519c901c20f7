//! A fan-out's child job numbers are reserved before its jobs are enqueued:
//! `operation_runs.children_next` is the first number no dispatch has reserved (NULL: none
//! yet), so a dispatch retried after it stored jobs but died before announcing them numbers its
//! new jobs apart from the lost ones.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE operation_runs ADD COLUMN children_next BIGINT")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE operation_runs DROP COLUMN children_next")
            .await?;
        Ok(())
    }
}
