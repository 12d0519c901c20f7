//! The simulated provider's settings move to a table of their own (`simulated_tenants`): the
//! directory's `tenants` table keeps only directory columns, and a host with a real provider
//! never sees simulator columns. Existing settings are copied over before the columns go.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, double};

#[derive(DeriveMigrationName)]
pub struct Migration;

const COLUMNS: [&str; 4] = ["policies", "latency_ms", "failure_rate", "seed"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("simulated_tenants")
                    .col(big_integer("tenant_id").primary_key())
                    .col(big_integer("policies"))
                    .col(big_integer("latency_ms"))
                    .col(double("failure_rate"))
                    .col(big_integer("seed"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("simulated_tenants", "tenant_id")
                            .to("tenants", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO simulated_tenants (tenant_id, policies, latency_ms, failure_rate, seed) \
             SELECT id, policies, latency_ms, failure_rate, seed FROM tenants",
        )
        .await?;
        for column in COLUMNS {
            // SQLite (3.35+) and PostgreSQL both drop a plain column in place.
            db.execute_unprepared(&format!("ALTER TABLE tenants DROP COLUMN {column}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE tenants ADD COLUMN policies BIGINT NOT NULL DEFAULT 40")
            .await?;
        db.execute_unprepared(
            "ALTER TABLE tenants ADD COLUMN latency_ms BIGINT NOT NULL DEFAULT 0",
        )
        .await?;
        db.execute_unprepared(
            "ALTER TABLE tenants ADD COLUMN failure_rate DOUBLE PRECISION NOT NULL DEFAULT 0",
        )
        .await?;
        db.execute_unprepared("ALTER TABLE tenants ADD COLUMN seed BIGINT NOT NULL DEFAULT 1")
            .await?;
        db.execute_unprepared(
            "UPDATE tenants SET policies = s.policies, latency_ms = s.latency_ms, \
             failure_rate = s.failure_rate, seed = s.seed \
             FROM simulated_tenants s WHERE s.tenant_id = tenants.id",
        )
        .await?;
        manager
            .drop_table(Table::drop().table("simulated_tenants").to_owned())
            .await
    }
}
