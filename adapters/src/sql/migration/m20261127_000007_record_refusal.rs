//! PostgreSQL only: `opsrun_refuse_record()`, which a one-statement record calls when the run's
//! guarded `UPDATE` refused after the ledger insert entered rows. Raising makes PostgreSQL undo
//! the whole statement, so a record stays all or nothing without a transaction of its own.
//! SQLite records in a transaction and rolls back instead.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        // VOLATILE so the planner never folds the call: it runs only on the refusing branch.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE OR REPLACE FUNCTION opsrun_refuse_record() RETURNS bigint \
                 LANGUAGE plpgsql VOLATILE AS $$ \
                 BEGIN RAISE EXCEPTION 'opsrun.record_refused'; END; $$",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("DROP FUNCTION IF EXISTS opsrun_refuse_record()")
            .await?;
        Ok(())
    }
}
