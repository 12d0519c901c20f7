//! The schema, as migrations: the only source of schema for production and tests. One
//! migration per file; a file's name is its version, so it is never renamed.

mod m20261127_000001_create_directory;
mod m20261127_000002_create_operation_runs;
mod m20261127_000003_create_ledger;
mod m20261127_000004_create_outbox;
mod m20261127_000005_create_family_tables;
mod m20261127_000006_notify_run_changes;
mod m20261127_000007_record_refusal;
mod m20261202_000008_simulated_tenants;
mod m20261202_000009_readiness;
mod m20261202_000010_item_claims;
mod m20261202_000011_token_lifecycle;
mod m20261203_000012_run_control;
mod m20261205_000013_webhooks;
mod m20261205_000014_child_jobs;
mod m20261205_000015_child_job_numbers;
mod m20261205_000016_outcome_index;

use sea_orm_migration::{MigrationTrait, MigratorTrait};

/// Every migration, in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_create_directory::Migration),
            Box::new(m20261127_000002_create_operation_runs::Migration),
            Box::new(m20261127_000003_create_ledger::Migration),
            Box::new(m20261127_000004_create_outbox::Migration),
            Box::new(m20261127_000005_create_family_tables::Migration),
            Box::new(m20261127_000006_notify_run_changes::Migration),
            Box::new(m20261127_000007_record_refusal::Migration),
            Box::new(m20261202_000008_simulated_tenants::Migration),
            Box::new(m20261202_000009_readiness::Migration),
            Box::new(m20261202_000010_item_claims::Migration),
            Box::new(m20261202_000011_token_lifecycle::Migration),
            Box::new(m20261203_000012_run_control::Migration),
            Box::new(m20261205_000013_webhooks::Migration),
            Box::new(m20261205_000014_child_jobs::Migration),
            Box::new(m20261205_000015_child_job_numbers::Migration),
            Box::new(m20261205_000016_outcome_index::Migration),
        ]
    }
}
