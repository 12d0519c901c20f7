//! PostgreSQL only: every change of a run row notifies channel `opsrun_runs` with the run id,
//! so live progress streams in every process see changes made by workers elsewhere. SQLite has
//! no cross-process notification; there a stream sees its own process's changes.

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
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE OR REPLACE FUNCTION opsrun_notify_run_change() RETURNS trigger AS $$ \
             BEGIN PERFORM pg_notify('opsrun_runs', NEW.id::text); RETURN NEW; END; \
             $$ LANGUAGE plpgsql",
        )
        .await?;
        db.execute_unprepared(
            "CREATE TRIGGER operation_runs_notify AFTER INSERT OR UPDATE ON operation_runs \
             FOR EACH ROW EXECUTE FUNCTION opsrun_notify_run_change()",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP TRIGGER IF EXISTS operation_runs_notify ON operation_runs")
            .await?;
        db.execute_unprepared("DROP FUNCTION IF EXISTS opsrun_notify_run_change()")
            .await?;
        Ok(())
    }
}
