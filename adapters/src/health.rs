//! Readiness probes of the backends: the store accepts a write, and this process's workers are
//! alive. Every check is bounded in time; one that does not answer in time has failed.

use std::time::Duration;

use async_trait::async_trait;
use opsrun_application::StoreError;
use opsrun_application::ports::{HealthCheck, HealthProbe, QueueGauge, WorkGauges};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::in_process::InProcessQueue;
use crate::queue::ApalisQueue;
use crate::sql::raw;

/// How long a check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

fn check(name: &'static str, ok: bool, detail: impl Into<String>) -> HealthCheck {
    HealthCheck {
        name,
        ok,
        detail: detail.into(),
    }
}

/// The probe of a SQL backend.
#[derive(Clone)]
pub struct SqlHealth {
    db: DatabaseConnection,
    queue: ApalisQueue,
}

impl std::fmt::Debug for SqlHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlHealth").finish_non_exhaustive()
    }
}

impl SqlHealth {
    /// The probe of a database and the queue whose workers this process runs.
    #[must_use]
    pub fn new(db: DatabaseConnection, queue: ApalisQueue) -> Self {
        Self { db, queue }
    }

    async fn store(&self) -> HealthCheck {
        // A real write of one row of its own (a full disk or a held lock fails it), in the
        // statement's own transaction.
        let stmt = raw::statement(
            self.db.get_database_backend(),
            "INSERT INTO opsrun_readiness (id, checked_at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
            vec![crate::clock::now_millis().into()],
        );
        match tokio::time::timeout(CHECK_TIMEOUT, self.db.execute_raw(stmt)).await {
            Ok(Ok(_)) => check("store", true, "accepts a write"),
            Ok(Err(e)) => check("store", false, format!("a write failed: {e}")),
            Err(_) => check(
                "store",
                false,
                format!(
                    "a write did not finish within {} s",
                    CHECK_TIMEOUT.as_secs()
                ),
            ),
        }
    }

    async fn workers(&self) -> HealthCheck {
        // SQLite measures last_seen in whole seconds: allow one more.
        let window = self.queue.settings().liveness_window() + Duration::from_secs(1);
        let ages = match tokio::time::timeout(CHECK_TIMEOUT, self.queue.worker_ages()).await {
            Ok(Ok(ages)) => ages,
            Ok(Err(e)) => return check("workers", false, format!("cannot read them: {e}")),
            Err(_) => return check("workers", false, "their table did not answer in time"),
        };
        if ages.is_empty() {
            return check("workers", false, "not started");
        }
        let dead: Vec<String> = ages
            .iter()
            .filter(|(_, age)| age.is_none_or(|a| a > window))
            .map(|(name, age)| match age {
                Some(a) => format!("{name} silent for {} s", a.as_secs()),
                None => format!("{name} not registered"),
            })
            .collect();
        if dead.is_empty() {
            check("workers", true, format!("{} alive", ages.len()))
        } else {
            check("workers", false, dead.join("; "))
        }
    }
}

#[async_trait]
impl HealthProbe for SqlHealth {
    async fn checks(&self) -> Vec<HealthCheck> {
        let (store, workers) = tokio::join!(self.store(), self.workers());
        vec![store, workers]
    }

    async fn gauges(&self) -> Result<WorkGauges, StoreError> {
        let backend = self.db.get_database_backend();
        let window = i64::try_from(self.queue.settings().liveness_window().as_secs())
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        // Due jobs no worker has fetched, per queue, and the age of the oldest: waiting ones
        // and failed ones with attempts left (apalis fetches both; `Queued` is fetched
        // already). apalis keeps `run_at` as timestamptz on PostgreSQL and as epoch seconds on
        // SQLite.
        let (due, alive) = match backend {
            sea_orm::DbBackend::Postgres => (
                "SELECT job_type, COUNT(*) AS due, \
                 CAST(EXTRACT(EPOCH FROM (now() - MIN(run_at))) * 1000 AS BIGINT) AS oldest_ms \
                 FROM apalis.jobs WHERE (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts)) \
                 AND run_at <= now() \
                 GROUP BY job_type",
                "SELECT COUNT(*) AS n FROM apalis.workers \
                 WHERE last_seen > now() - ($1 * interval '1 second')",
            ),
            _ => (
                "SELECT job_type, COUNT(*) AS due, \
                 (CAST(strftime('%s', 'now') AS INTEGER) - MIN(run_at)) * 1000 AS oldest_ms \
                 FROM Jobs WHERE (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts)) \
                 AND run_at <= CAST(strftime('%s', 'now') AS INTEGER) GROUP BY job_type",
                "SELECT COUNT(*) AS n FROM Workers \
                 WHERE last_seen > CAST(strftime('%s', 'now') AS INTEGER) - $1",
            ),
        };
        let fail = |e: sea_orm::DbErr| StoreError::Unavailable(e.to_string().into());
        let rows = self
            .db
            .query_all_raw(Statement::from_string(backend, due))
            .await
            .map_err(fail)?;
        let queues = rows
            .iter()
            .map(|row| QueueGauge {
                queue: row.try_get::<String>("", "job_type").unwrap_or_default(),
                due: u64::try_from(row.try_get::<i64>("", "due").unwrap_or(0)).unwrap_or(0),
                oldest_due_secs: row.try_get::<i64>("", "oldest_ms").unwrap_or(0).max(0) as f64
                    / 1_000.0,
            })
            .collect();
        let alive = self
            .db
            .query_all_raw(raw::statement(backend, alive, vec![window.into()]))
            .await
            .map_err(fail)?;
        let workers_alive = alive
            .first()
            .and_then(|r| r.try_get::<i64>("", "n").ok())
            .map_or(0, |n| u64::try_from(n).unwrap_or(0));
        Ok(WorkGauges {
            queues,
            workers_alive,
        })
    }
}

/// The probe of the in-memory backend: its store always accepts a write; its workers are alive
/// while their loop runs.
#[derive(Debug, Clone)]
pub struct MemoryHealth {
    queue: InProcessQueue,
}

impl MemoryHealth {
    /// The probe of an in-process queue.
    #[must_use]
    pub fn new(queue: InProcessQueue) -> Self {
        Self { queue }
    }
}

#[async_trait]
impl HealthProbe for MemoryHealth {
    async fn checks(&self) -> Vec<HealthCheck> {
        let running = self.queue.is_running();
        vec![
            check("store", true, "in memory"),
            check(
                "workers",
                running,
                if running { "running" } else { "not started" },
            ),
        ]
    }

    async fn gauges(&self) -> Result<WorkGauges, StoreError> {
        // The in-process queue keeps no rows to count: only whether its loop runs.
        Ok(WorkGauges {
            queues: Vec::new(),
            workers_alive: u64::from(self.queue.is_running()),
        })
    }
}
