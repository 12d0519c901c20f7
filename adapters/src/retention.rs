//! Retention on SQL: finished queue jobs, rows of workers long gone, and old notifications,
//! pruned in bounded batches. What waits, runs or may be retried is never touched.

use async_trait::async_trait;
use opsrun_application::StoreError;
use opsrun_application::ports::{Pruned, Retention};
use opsrun_domain::Timestamp;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};

use crate::sql::raw;

/// Retention over one database (its apalis tables and the outbox).
#[derive(Debug, Clone)]
pub struct SqlRetention {
    db: DatabaseConnection,
}

impl SqlRetention {
    /// Retention over an open, migrated database.
    #[must_use]
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    async fn delete(&self, sql: &str, before: Timestamp, batch: u32) -> Result<u64, StoreError> {
        let backend = self.db.get_database_backend();
        // apalis keeps epoch seconds on SQLite and timestamptz on PostgreSQL; the outbox keeps
        // milliseconds: each statement takes the form it needs from these three.
        let values = vec![
            before.as_millis().div_euclid(1000).into(),
            i64::from(batch).into(),
            before.as_millis().into(),
        ];
        Ok(self
            .db
            .execute_raw(raw::statement(backend, sql, values))
            .await
            .map_err(raw::sql::<StoreError>)?
            .rows_affected())
    }
}

#[async_trait]
impl Retention for SqlRetention {
    async fn prune(&self, before: Timestamp, batch: u32) -> Result<Pruned, StoreError> {
        let postgres = self.db.get_database_backend() == DbBackend::Postgres;
        let (jobs, workers) = if postgres {
            (
                "DELETE FROM apalis.jobs WHERE id IN (SELECT id FROM apalis.jobs \
                 WHERE status = 'Done' AND done_at < to_timestamp($1) LIMIT $2) AND $3 = $3",
                "DELETE FROM apalis.workers WHERE id IN (SELECT w.id FROM apalis.workers w \
                 WHERE w.last_seen < to_timestamp($1) AND NOT EXISTS \
                 (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id) LIMIT $2) AND $3 = $3",
            )
        } else {
            (
                "DELETE FROM Jobs WHERE rowid IN (SELECT rowid FROM Jobs \
                 WHERE status = 'Done' AND done_at < $1 LIMIT $2) AND $3 = $3",
                "DELETE FROM Workers WHERE rowid IN (SELECT w.rowid FROM Workers w \
                 WHERE w.last_seen < $1 AND NOT EXISTS \
                 (SELECT 1 FROM Jobs j WHERE j.lock_by = w.id) LIMIT $2) AND $3 = $3",
            )
        };
        let notifications = "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications \
             WHERE created_at < $3 LIMIT $2) AND $1 = $1";
        // Ended deliveries, and any left behind by an endpoint removed while its run completed.
        let deliveries = "DELETE FROM webhook_deliveries WHERE id IN (SELECT d.id FROM webhook_deliveries d \
             WHERE d.created_at < $3 AND (d.state <> 'pending' OR NOT EXISTS \
             (SELECT 1 FROM webhook_endpoints e WHERE e.id = d.endpoint_id)) LIMIT $2) AND $1 = $1";
        Ok(Pruned {
            jobs: self.delete(jobs, before, batch).await?,
            workers: self.delete(workers, before, batch).await?,
            notifications: self.delete(notifications, before, batch).await?,
            webhook_deliveries: self.delete(deliveries, before, batch).await?,
        })
    }
}
