//! A fan-out's child jobs, apart from its item counts: `operation_run_children` holds each
//! child job of a parent by its sequence number and whether it finished (so a job announced or
//! finished twice counts once), and `operation_runs` carries the two counts a run document
//! shows (`children_total`, `children_completed`), changed in the same transaction as the rows.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, boolean};

#[derive(DeriveMigrationName)]
pub struct Migration;

const COLUMNS: [&str; 2] = ["children_total", "children_completed"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // One column per statement: SQLite alters one at a time.
        for column in COLUMNS {
            db.execute_unprepared(&format!(
                "ALTER TABLE operation_runs ADD COLUMN {column} BIGINT"
            ))
            .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("operation_run_children")
                    .col(big_integer("run_id"))
                    .col(big_integer("job"))
                    .col(boolean("finished"))
                    .primary_key(Index::create().col("run_id").col("job"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("operation_run_children", "run_id")
                            .to("operation_runs", "id"),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("operation_run_children").to_owned())
            .await?;
        let db = manager.get_connection();
        for column in COLUMNS {
            db.execute_unprepared(&format!("ALTER TABLE operation_runs DROP COLUMN {column}"))
                .await?;
        }
        Ok(())
    }
}
