//! The durable job queue on apalis 1.0: `apalis-sqlite` (embedded default) or
//! `apalis-postgres` (many workers on many machines), sharing SeaORM's sqlx pool.
//!
//! Two queues with explicit names: `opsrun.runs` (one job per run) and `opsrun.children`
//! (one job per chunk of a fan-out's items, see [`crate::chunk`]). Delivery is at-least-once:
//! a job finished but not yet acknowledged runs again after a crash, and the item ledger makes
//! that harmless.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::layers::retry::HasherRng;
use apalis::layers::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
use apalis::prelude::{
    Attempt as ApalisAttempt, BackendExt, BoxDynError, Data, Monitor, RetryPolicy, TaskBuilder,
    TaskSink, WorkerBuilder, WorkerBuilderExt,
};
use apalis_postgres::{Config as PgConfig, PostgresStorage};
use apalis_sqlite::{Config as SqliteConfig, SqliteStorage};
use async_trait::async_trait;
use opsrun_application::QueueError;
use opsrun_application::ports::{Job, JobQueue};
use opsrun_application::writers::Writers;
use opsrun_domain::{ItemKey, RunId};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use serde::{Deserialize, Serialize};

use opsrun_application::worker::{Attempt, attempt};

use crate::sql::Backend;

/// Name of the queue of run jobs.
pub const RUNS_QUEUE: &str = "opsrun.runs";
/// Name of the queue of fan-out child jobs.
pub const CHILDREN_QUEUE: &str = "opsrun.children";

/// Planner statistics for apalis-sqlite's `Jobs` table: (index, `sqlite_stat1` row). They
/// describe the table at the scale a fan-out reaches (ids unique; thousands of jobs per worker,
/// per status and per queue; few pending jobs per ordering key).
const SQLITE_JOBS_STATS: [(&str, &str); 10] = [
    ("sqlite_autoindex_Jobs_1", "100000 1"),
    ("LIdx", "100000 10000"),
    ("idx_jobs_status_run_at", "100000 25000 10"),
    ("idx_jobs_job_type_status_run_at", "100000 50000 25000 10"),
    ("idx_jobs_completed_done_at", "100000 50000 10 10"),
    ("idx_jobs_running", "1000 10"),
    ("idx_jobs_idempotency_key", "100000 50000 1"),
    ("idx_jobs_pending", "10000 5000 5000 10 1"),
    ("idx_jobs_failed", "1000 500 500 10 1"),
    ("idx_jobs_claimable", "100000 30000 10000"),
];

/// apalis-sqlite acknowledges and locks tasks with `UPDATE Jobs .. FROM json_each(?)` /
/// `WHERE id IN (SELECT value FROM json_each(?))`. Without statistics SQLite's planner walks
/// every job the worker ever locked (ack, through the `lock_by` index) or every pending job
/// (lock, through the status index) per batch instead of looking the listed ids up, so a
/// fan-out costs O(children²): 10,000 children ran at 58/s, slowing as they went (measured,
/// docs/performance.md). Hand-written `sqlite_stat1` rows, as SQLite documents for exactly
/// this, make it look the ids up; `ANALYZE sqlite_schema` loads them. A later `ANALYZE`
/// replaces them with measured statistics, which lead to the same plans at scale.
async fn plan_sqlite_jobs_at_scale(
    pool: &sea_orm::sqlx::SqlitePool,
) -> Result<(), sea_orm::sqlx::Error> {
    use sea_orm::sqlx::query;

    // Creates `sqlite_stat1` if it is missing (Workers is tiny).
    query("ANALYZE Workers").execute(pool).await?;
    let mut tx = pool.begin().await?;
    query("DELETE FROM sqlite_stat1 WHERE tbl = 'Jobs'")
        .execute(&mut *tx)
        .await?;
    for (index, stat) in SQLITE_JOBS_STATS {
        query("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('Jobs', ?1, ?2)")
            .bind(index)
            .bind(stat)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    query("ANALYZE sqlite_schema").execute(pool).await?;
    Ok(())
}

/// The payload of a run job: ids only; everything else is read from storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunJob {
    /// The run.
    pub run: i64,
    /// The W3C `traceparent` of the span that enqueued it (see [`crate::trace`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// The payload of a fan-out child job: a chunk of the parent's items (see
/// [`opsrun_domain::chunk_size`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildJob {
    /// The parent run.
    pub parent: i64,
    /// One item (the payload of jobs enqueued before chunks existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// The items of the parent's work set this job carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    /// The W3C `traceparent` of the span that fanned it out (see [`crate::trace`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// Its sequence number among the parent's child jobs (jobs enqueued before child jobs
    /// were counted have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<u64>,
}

/// Queue and worker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Jobs each worker runs at once (per queue).
    pub concurrency: usize,
    /// Jobs a worker fetches per poll.
    pub batch_size: usize,
    /// How often a worker says it is alive.
    pub heartbeat: Duration,
    /// A worker silent for `heartbeat × missed_heartbeats` is dead: its jobs run again.
    pub missed_heartbeats: u32,
    /// How often an idle worker looks for new jobs (PostgreSQL also listens for them).
    pub poll_interval: Duration,
    /// Attempts per job before its run (or child item) ends `failed`.
    pub max_attempts: u32,
    /// First retry delay (doubling up to 30 s, with jitter).
    pub retry_delay: Duration,
    /// How long the queue may stay unusable (workers failing and restarting) before the
    /// workers give up and the process exits non-zero.
    pub give_up_after: Duration,
}

/// How long in-flight jobs may take to finish once a worker stopped on an error.
const FAILED_SHUTDOWN: Duration = Duration::from_secs(15);

/// A monitor run that lasted this long was healthy: a failure after it starts a new backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The shortest worker liveness window (heartbeat × missed heartbeats) a SQLite queue can
/// measure: apalis-sqlite compares `last_seen` in whole seconds, so a shorter window marks
/// live workers dead and runs their jobs a second time.
pub const MIN_LIVENESS_SQLITE: Duration = Duration::from_secs(3);
/// The shortest liveness window on PostgreSQL (its timestamps are precise; below a second a
/// busy worker's heartbeat can miss its window under load).
pub const MIN_LIVENESS_POSTGRES: Duration = Duration::from_secs(1);

impl QueueSettings {
    /// How long a silent worker stays alive: heartbeat × missed heartbeats.
    #[must_use]
    pub fn liveness_window(&self) -> Duration {
        self.heartbeat.saturating_mul(self.missed_heartbeats.max(1))
    }

    /// Whether the settings are safe on `backend`.
    ///
    /// # Errors
    ///
    /// A sentence for the operator when the liveness window is shorter than the backend can
    /// measure ([`MIN_LIVENESS_SQLITE`], [`MIN_LIVENESS_POSTGRES`]).
    pub fn check(&self, backend: Backend) -> Result<(), String> {
        let least = match backend {
            Backend::Sqlite => MIN_LIVENESS_SQLITE,
            Backend::Postgres => MIN_LIVENESS_POSTGRES,
        };
        let window = self.liveness_window();
        if window < least {
            return Err(format!(
                "--heartbeat-ms x --missed-heartbeats is {} ms; on {} it must be at least {} ms \
                 (a shorter window marks live workers dead and runs their jobs twice)",
                window.as_millis(),
                match backend {
                    Backend::Sqlite => "SQLite",
                    Backend::Postgres => "PostgreSQL",
                },
                least.as_millis()
            ));
        }
        Ok(())
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            batch_size: 8,
            heartbeat: Duration::from_secs(5),
            missed_heartbeats: 3,
            poll_interval: Duration::from_millis(100),
            max_attempts: 5,
            retry_delay: Duration::from_millis(500),
            give_up_after: Duration::from_secs(600),
        }
    }
}

/// Why the queue could not be set up or the workers stopped.
#[derive(Debug, thiserror::Error)]
pub enum QueueRunError {
    /// Creating the queue tables failed.
    #[error("could not set up the job queue: {0}")]
    Setup(String),
    /// A worker stopped with an error.
    #[error("a worker stopped: {0}")]
    Worker(String),
}

#[derive(Clone)]
enum Storages {
    Sqlite {
        runs: SqliteStorage<RunJob>,
        children: SqliteStorage<ChildJob>,
    },
    Postgres {
        runs: PostgresStorage<RunJob>,
        children: PostgresStorage<ChildJob>,
    },
}

/// The [`JobQueue`] on apalis, and the runner of its workers.
#[derive(Clone)]
pub struct ApalisQueue {
    storages: Storages,
    settings: QueueSettings,
    db: DatabaseConnection,
    // The names of the workers this process runs (set when they start), for readiness.
    workers: Arc<std::sync::Mutex<Vec<String>>>,
}

impl std::fmt::Debug for ApalisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApalisQueue")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn sqlite_config(queue: &str, s: &QueueSettings) -> SqliteConfig {
    SqliteConfig::default()
        .queue(queue)
        .batch_size(s.batch_size.max(1))
        .heartbeat_interval(s.heartbeat)
        .missed_heartbeats(usize::try_from(s.missed_heartbeats.max(1)).unwrap_or(3))
}

fn postgres_config(queue: &str, s: &QueueSettings) -> PgConfig {
    PgConfig::default()
        .queue(queue)
        .batch_size(s.batch_size.max(1))
        .heartbeat_interval(s.heartbeat)
        .missed_heartbeats(usize::try_from(s.missed_heartbeats.max(1)).unwrap_or(3))
}

fn unavailable(error: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(error.to_string().into())
}

/// A worker name unique to this process: host, pid and a nonce. Reusing a name after a crash
/// would leave the old worker's jobs stuck on PostgreSQL.
fn worker_name(kind: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("opsrun-{kind}-{host}-{}-{nonce:08x}", std::process::id())
}

/// Priority of the `index`-th child of a fan-out: workers take higher priorities first, and
/// every fan-out's first `per_round` children share the top priority, the next `per_round` the
/// one below, and so on. So a fan-out started behind a large one gets workers at once (its early
/// children outrank the large one's late ones) instead of waiting for all of them: each fan-out,
/// and so each tenant, advances round by round, and a lone fan-out still uses every worker.
fn child_priority(index: usize, per_round: usize) -> usize {
    CHILD_TOP_PRIORITY.saturating_sub(index / per_round.max(1))
}

/// The priority of a fan-out's first round of children.
const CHILD_TOP_PRIORITY: usize = 1_000_000;

#[derive(Clone)]
struct WorkerState {
    writers: Writers,
    max_attempts: u32,
    retry_delay: Duration,
    queue: Arc<dyn JobQueue>,
}

async fn handle(job: Job, current: usize, state: &WorkerState) -> Result<(), BoxDynError> {
    let current = u32::try_from(current).unwrap_or(u32::MAX);
    match attempt(&state.writers, &job, current, state.max_attempts).await? {
        Attempt::Done(_) | Attempt::GaveUp(_) => Ok(()),
        Attempt::Retry(error) => Err(Box::new(error)),
        // The run waits for its tenant's slot: a new job that runs after `delay` replaces
        // this one, so no worker is held while it waits. If that job cannot be stored, this
        // one is retried instead (the run is never left without a job).
        Attempt::Wait(delay) => Ok(state.queue.enqueue_after(job, delay).await?),
    }
}

/// Runs a job's work on a task of its own and waits for it. apalis polls a worker's jobs inside
/// the worker's own task, so every wake-up of a running job (each database reply) also polls
/// the worker's queue, and with a slot free that is a fetch: measured on PostgreSQL, about 1,150
/// fetches a second while one run ran, half a core of the server. On its own task a job wakes
/// the worker once, when it ends. Dropping the wait aborts the task, as dropping the job did.
async fn on_own_task(
    work: impl std::future::Future<Output = Result<(), BoxDynError>> + Send + 'static,
) -> Result<(), BoxDynError> {
    use tracing::Instrument as _;
    struct AbortOnDrop(tokio::task::JoinHandle<Result<(), BoxDynError>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(work.in_current_span()));
    match (&mut task.0).await {
        Ok(result) => result,
        // The job panicked: a failed attempt, retried like any other.
        Err(error) => Err(Box::new(error)),
    }
}

async fn handle_run(
    job: RunJob,
    current: ApalisAttempt,
    state: Data<WorkerState>,
) -> Result<(), BoxDynError> {
    use tracing::Instrument as _;
    // One span per attempt, a child of the request that started the run; the run service
    // records the family, tenant and outcome on it.
    let span = tracing::info_span!(
        target: "opsrun::jobs",
        "opsrun.run",
        otel.name = "opsrun.run",
        otel.kind = "consumer",
        opsrun.run_id = job.run,
        opsrun.attempt = current.current(),
        opsrun.family = tracing::field::Empty,
        opsrun.tenant = tracing::field::Empty,
        opsrun.outcome = tracing::field::Empty,
    );
    crate::trace::continue_from(&span, job.trace.as_deref());
    let state = (*state).clone();
    let work = async move {
        handle(
            Job::Run {
                run: RunId::new(job.run),
            },
            current.current(),
            &state,
        )
        .await
    };
    on_own_task(work).instrument(span).await
}

async fn handle_child(
    job: ChildJob,
    current: ApalisAttempt,
    state: Data<WorkerState>,
) -> Result<(), BoxDynError> {
    let state = (*state).clone();
    on_own_task(async move { run_child(job, current.current(), &state).await }).await
}

async fn run_child(job: ChildJob, current: usize, state: &WorkerState) -> Result<(), BoxDynError> {
    // A malformed item can never succeed: it is skipped rather than retried forever.
    let items: Vec<ItemKey> = job
        .item
        .iter()
        .chain(job.items.iter())
        .filter_map(|key| ItemKey::parse(key).ok())
        .collect();
    let retries = crate::chunk::ItemRetries {
        max_attempts: state.max_attempts,
        first_delay: state.retry_delay,
    };
    let parent = RunId::new(job.parent);
    let boxed = |error| Box::new(error) as BoxDynError;
    if let Err(error) =
        crate::chunk::run_chunk(&state.writers, parent, items, retries, job.trace.as_deref()).await
    {
        // Out of attempts, the queue gives the job up: it ends here, and is counted so.
        if let Some(number) = job.job
            && current >= state.max_attempts as usize
        {
            let _ = state.writers.child_job_finished(parent, number).await;
        }
        return Err(boxed(error));
    }
    // Every item was tried and recorded (or the run stopped): this job will not run again.
    if let Some(number) = job.job {
        state
            .writers
            .child_job_finished(parent, number)
            .await
            .map_err(boxed)?;
    }
    Ok(())
}

impl ApalisQueue {
    /// Creates the queue tables if needed (apalis's own migrations) and opens both queues on
    /// the pool of `db`.
    ///
    /// # Errors
    ///
    /// [`QueueRunError::Setup`].
    pub async fn setup(
        db: &DatabaseConnection,
        settings: QueueSettings,
    ) -> Result<Self, QueueRunError> {
        let setup = |e: &dyn std::fmt::Display| QueueRunError::Setup(e.to_string());
        let backend = match db.get_database_backend() {
            DbBackend::Postgres => Backend::Postgres,
            _ => Backend::Sqlite,
        };
        settings.check(backend).map_err(|e| setup(&e))?;
        let storages = match db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                PostgresStorage::setup(pool).await.map_err(|e| setup(&e))?;
                Storages::Postgres {
                    runs: PostgresStorage::new(pool)
                        .with_config(postgres_config(RUNS_QUEUE, &settings)),
                    children: PostgresStorage::new(pool)
                        .with_config(postgres_config(CHILDREN_QUEUE, &settings)),
                }
            }
            _ => {
                let pool = db.get_sqlite_connection_pool();
                // `SqliteStorage::setup` would also set `synchronous=OFF` on whichever pooled
                // connection it got; run only its migrations (WAL is set by our pool).
                SqliteStorage::<()>::migrations()
                    .run(pool)
                    .await
                    .map_err(|e| setup(&e))?;
                plan_sqlite_jobs_at_scale(pool)
                    .await
                    .map_err(|e| setup(&e))?;
                Storages::Sqlite {
                    runs: SqliteStorage::new(pool)
                        .with_config(sqlite_config(RUNS_QUEUE, &settings)),
                    children: SqliteStorage::new(pool)
                        .with_config(sqlite_config(CHILDREN_QUEUE, &settings)),
                }
            }
        };
        Ok(Self {
            storages,
            settings,
            db: db.clone(),
            workers: Arc::default(),
        })
    }

    /// Whether this process's workers are alive: each has said so (its `last_seen` in the
    /// queue's worker table) within its liveness window. An empty answer means they have not
    /// started.
    ///
    /// # Errors
    ///
    /// [`QueueError::Unavailable`] when the worker table cannot be read.
    pub async fn worker_ages(&self) -> Result<Vec<(String, Option<Duration>)>, QueueError> {
        let names = self
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let sql = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                "SELECT CAST(EXTRACT(EPOCH FROM (now() - last_seen)) * 1000 AS BIGINT) AS age_ms \
                 FROM apalis.workers WHERE id = $1"
            }
            _ => {
                "SELECT (CAST(strftime('%s', 'now') AS INTEGER) - last_seen) * 1000 AS age_ms \
                 FROM Workers WHERE id = $1"
            }
        };
        let mut ages = Vec::with_capacity(names.len());
        for name in names {
            let rows = self
                .db
                .query_all_raw(crate::sql::raw::statement(
                    self.db.get_database_backend(),
                    sql,
                    vec![name.clone().into()],
                ))
                .await
                .map_err(unavailable)?;
            let age = rows
                .first()
                .and_then(|r| r.try_get::<i64>("", "age_ms").ok())
                .map(|ms| Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0)));
            ages.push((name, age));
        }
        Ok(ages)
    }

    /// Puts the jobs that this process's (now stopped) workers had fetched or were running
    /// back to `Pending`, so the restarted workers take them at once. Safe: the writers resume
    /// from the ledger, so a job that had half run counts nothing twice.
    async fn release_jobs_of_stopped_workers(&self) -> Result<u64, QueueError> {
        let names = self
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let sql = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                "UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL \
                 WHERE lock_by = $1 AND status IN ('Queued', 'Running')"
            }
            _ => {
                "UPDATE Jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL \
                 WHERE lock_by = $1 AND status IN ('Queued', 'Running')"
            }
        };
        let mut released = 0;
        for name in names {
            released += self
                .db
                .execute_raw(crate::sql::raw::statement(
                    self.db.get_database_backend(),
                    sql,
                    vec![name.into()],
                ))
                .await
                .map_err(unavailable)?
                .rows_affected();
        }
        Ok(released)
    }

    /// The settings the workers run with.
    #[must_use]
    pub fn settings(&self) -> QueueSettings {
        self.settings
    }

    fn max_attempts(&self) -> usize {
        usize::try_from(self.settings.max_attempts.max(1)).unwrap_or(5)
    }

    /// Runs the workers of both queues until `shutdown` resolves, then lets in-flight jobs
    /// finish (fetched but unstarted jobs go back to the queue) and returns.
    ///
    /// The workers are supervised: when one stops on a backend error (a poll or a heartbeat
    /// that failed, e.g. behind another process's long write lock, or while PostgreSQL
    /// restarts), every worker of this process is stopped and started again after a backoff
    /// (1 s doubling to 30 s), for as long as it takes, each restart logged. Only when the
    /// queue stays unusable for [`QueueSettings::give_up_after`] do they give up, so that
    /// the process exits non-zero and its service manager restarts it.
    ///
    /// # Errors
    ///
    /// [`QueueRunError::Worker`] when the queue stayed unusable past the limit.
    pub async fn run_workers<S>(&self, writers: Writers, shutdown: S) -> Result<(), QueueRunError>
    where
        S: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let forward = tokio::spawn(async move {
            // A failed signal handler stops the workers too: nothing could stop them later.
            let _ = shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = || *stop_rx.borrow();
        let mut backoff = Duration::from_secs(1);
        let mut failing_since: Option<tokio::time::Instant> = None;
        let result = loop {
            let began = tokio::time::Instant::now();
            let ended = self.run_monitor(writers.clone(), stop_rx.clone()).await;
            if stopped() {
                break Ok(());
            }
            let error = match ended {
                Ok(None) => "the workers ended".to_owned(),
                Ok(Some(error)) => error,
                Err(error) => error.to_string(),
            };
            // A run that lasted a while was healthy: the failure is a new one.
            if began.elapsed() > HEALTHY_RUN {
                failing_since = None;
                backoff = Duration::from_secs(1);
            }
            // The stopped workers' in-flight jobs are orphans now: hand them back at once
            // instead of waiting for another worker to notice their silence.
            match self.release_jobs_of_stopped_workers().await {
                Ok(0) => {}
                Ok(released) => tracing::info!(released, "jobs of the stopped workers handed back"),
                Err(error) => {
                    tracing::warn!(%error, "could not hand back the stopped workers' jobs yet")
                }
            }
            let since = *failing_since.get_or_insert(began);
            if since.elapsed() >= self.settings.give_up_after {
                break Err(QueueRunError::Worker(format!(
                    "the queue stayed unusable for {} s: {error}",
                    since.elapsed().as_secs()
                )));
            }
            tracing::warn!(%error, retry_in_ms = backoff.as_millis(), "workers stopped; restarting them");
            let mut stop = stop_rx.clone();
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => break Ok(()),
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        };
        forward.abort();
        result
    }

    /// One run of the monitor with both workers, until `stop` or until a worker stops on an
    /// error (then every worker is stopped, and the error is the answer).
    async fn run_monitor(
        &self,
        writers: Writers,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Option<String>, QueueRunError> {
        let state = WorkerState {
            writers,
            max_attempts: self.settings.max_attempts.max(1),
            retry_delay: self.settings.retry_delay,
            queue: Arc::new(self.clone()),
        };
        let settings = self.settings;
        let retries = self.max_attempts().saturating_sub(1);
        let backoff = ExponentialBackoffMaker::new(
            settings.retry_delay,
            Duration::from_secs(30).max(settings.retry_delay),
            0.5,
            HasherRng::default(),
        )
        .map_err(|e| QueueRunError::Setup(e.to_string()))?
        .make_backoff();
        let concurrency = settings.concurrency.max(1);
        // The same two workers on either backend; a macro because the two storages are
        // different types behind apalis's generic worker builder.
        macro_rules! monitor {
            ($runs:expr, $children:expr) => {{
                let (runs, children) = ($runs, $children);
                let (s1, s2, b1, b2) = (state.clone(), state, backoff.clone(), backoff);
                let (n1, n2) = (worker_name("runs"), worker_name("children"));
                *self
                    .workers
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    vec![n1.clone(), n2.clone()];
                Monitor::new()
                    .register(move |_| {
                        WorkerBuilder::new(n1.clone())
                            .backend(runs.clone())
                            .data(s1.clone())
                            .concurrency(concurrency)
                            .retry(RetryPolicy::retries(retries).with_backoff(b1.clone()))
                            .build(handle_run)
                    })
                    .register(move |_| {
                        WorkerBuilder::new(n2.clone())
                            .backend(children.clone())
                            .data(s2.clone())
                            .concurrency(concurrency)
                            .retry(RetryPolicy::retries(retries).with_backoff(b2.clone()))
                            .build(handle_child)
                    })
            }};
        }
        let poll = settings.poll_interval;
        let monitor = match self.storages.clone() {
            Storages::Sqlite { runs, children } => monitor!(
                runs.poll_with_interval(poll),
                children.poll_with_interval(poll)
            ),
            Storages::Postgres { runs, children } => monitor!(
                runs.with_pubsub().poll_with_interval(poll),
                children.with_pubsub().poll_with_interval(poll)
            ),
        };
        // A worker that stops on an error stops the whole monitor: its sibling would otherwise
        // go on alone, and nothing would ever restart the dead one.
        let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let failed = Arc::new(tokio::sync::Notify::new());
        let seen = failure.clone();
        let signal = failed.clone();
        let context = monitor.context();
        let monitor = monitor.should_restart(move |worker, error| {
            tracing::warn!(worker = worker.name(), %error, "a worker stopped on an error");
            seen.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_or_insert_with(|| format!("{}: {error}", worker.name()));
            let _ = context.shutdown();
            signal.notify_one();
            false
        });
        let mut stop = stop;
        let run = monitor
            .shutdown_timeout(Duration::from_secs(60))
            .run_with_signal(async move {
                let _ = stop.wait_for(|s| *s).await;
                Ok(())
            });
        tokio::pin!(run);
        let ended = tokio::select! {
            ended = &mut run => ended,
            () = failed.notified() => {
                // The monitor shuts down after a worker's error, but a job parked in a retry
                // backoff then never finishes (apalis's lifecycle service stays pending while
                // shutting down) and holds that shutdown for ever: the other worker's jobs would
                // wait with nobody polling. In-flight jobs get FAILED_SHUTDOWN to finish; then
                // they are dropped, and the supervisor hands their rows back.
                match tokio::time::timeout(FAILED_SHUTDOWN, &mut run).await {
                    Ok(ended) => ended,
                    Err(_) => {
                        tracing::warn!(
                            after_secs = FAILED_SHUTDOWN.as_secs(),
                            "workers did not stop after an error; dropping their in-flight jobs"
                        );
                        Ok(())
                    }
                }
            }
        };
        ended.map_err(|e| QueueRunError::Worker(e.to_string()))?;
        Ok(failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take())
    }

    /// The database the queue lives in.
    #[must_use]
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}

impl ApalisQueue {
    /// Stores `items` of fan-out `parent` as chunk jobs in one transaction, numbered from
    /// `first_job` when they are a dispatch's (see [`JobQueue::enqueue_children`]); how many.
    async fn push_children(
        &self,
        parent: RunId,
        first_job: Option<u64>,
        items: Vec<ItemKey>,
    ) -> Result<u64, QueueError> {
        let max = self.max_attempts();
        let per_round = self.settings.concurrency.max(1);
        let trace = crate::trace::current();
        // Chunks: ~100 durable jobs for 10,000 items, one per item for a small fan-out.
        let size = opsrun_domain::chunk_size(items.len(), per_round);
        let chunks: Vec<Vec<String>> = items
            .chunks(size)
            .map(|chunk| chunk.iter().map(|k| k.as_str().to_owned()).collect())
            .collect();
        let count = chunks.len() as u64;
        let tasks = chunks.into_iter().enumerate().map(move |(i, items)| {
            TaskBuilder::new(ChildJob {
                parent: parent.value(),
                item: None,
                items,
                trace: trace.clone(),
                job: first_job.map(|first| first + i as u64),
            })
            .max_attempts(max)
            .priority(child_priority(i, per_round))
            .build()
        });
        // One call: apalis buffers the tasks and writes them in one transaction.
        match self.storages.clone() {
            Storages::Sqlite { mut children, .. } => children
                .push_all(futures::stream::iter(tasks.collect::<Vec<_>>()))
                .await
                .map_err(unavailable)?,
            Storages::Postgres { mut children, .. } => children
                .push_all(futures::stream::iter(tasks.collect::<Vec<_>>()))
                .await
                .map_err(unavailable)?,
        }
        Ok(count)
    }
}

#[async_trait]
impl JobQueue for ApalisQueue {
    async fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        let max = self.max_attempts();
        match (job, self.storages.clone()) {
            (Job::Run { run }, Storages::Sqlite { mut runs, .. }) => {
                let task = TaskBuilder::new(RunJob {
                    run: run.value(),
                    trace: crate::trace::current(),
                })
                .max_attempts(max)
                .build();
                runs.push_task(task).await.map_err(unavailable)
            }
            (Job::Run { run }, Storages::Postgres { mut runs, .. }) => {
                let task = TaskBuilder::new(RunJob {
                    run: run.value(),
                    trace: crate::trace::current(),
                })
                .max_attempts(max)
                .build();
                runs.push_task(task).await.map_err(unavailable)
            }
            // A single child is not one of a dispatch's numbered jobs.
            (Job::RestoreChild { parent, item }, _) => {
                self.push_children(parent, None, vec![item]).await.map(drop)
            }
        }
    }

    async fn enqueue_after(&self, job: Job, delay: Duration) -> Result<(), QueueError> {
        let max = self.max_attempts();
        let Job::Run { run } = job else {
            return self.enqueue(job).await;
        };
        let task = || {
            TaskBuilder::new(RunJob {
                run: run.value(),
                trace: crate::trace::current(),
            })
            .max_attempts(max)
            .run_after(delay)
            .build()
        };
        match self.storages.clone() {
            Storages::Sqlite { mut runs, .. } => runs.push_task(task()).await.map_err(unavailable),
            Storages::Postgres { mut runs, .. } => {
                runs.push_task(task()).await.map_err(unavailable)
            }
        }
    }

    async fn enqueue_children(
        &self,
        parent: RunId,
        first_job: u64,
        items: Vec<ItemKey>,
    ) -> Result<u64, QueueError> {
        self.push_children(parent, Some(first_job), items).await
    }

    async fn live_run_jobs(
        &self,
        runs: &[RunId],
    ) -> Result<std::collections::BTreeSet<RunId>, QueueError> {
        // A job lives while it waits, runs, or failed an attempt with attempts left; `Done`,
        // `Killed` and a `Failed` job out of attempts will never run again. The payload is
        // the job's JSON (`{"run": ID}`) as bytes. One statement per 400 runs.
        let backend = self.db.get_database_backend();
        let mut live = std::collections::BTreeSet::new();
        for chunk in runs.chunks(400) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = match backend {
                DbBackend::Postgres => format!(
                    "SELECT CAST(convert_from(job, 'UTF8')::jsonb ->> 'run' AS BIGINT) AS run \
                     FROM apalis.jobs WHERE job_type = $1 \
                     AND (status IN ('Pending', 'Queued', 'Running') \
                          OR (status = 'Failed' AND attempts < max_attempts)) \
                     AND (convert_from(job, 'UTF8')::jsonb ->> 'run') IN ({})",
                    list.join(", ")
                ),
                _ => format!(
                    "SELECT CAST(json_extract(CAST(job AS TEXT), '$.run') AS INTEGER) AS run \
                     FROM Jobs WHERE job_type = $1 \
                     AND (status IN ('Pending', 'Queued', 'Running') \
                          OR (status = 'Failed' AND attempts < max_attempts)) \
                     AND CAST(json_extract(CAST(job AS TEXT), '$.run') AS TEXT) IN ({})",
                    list.join(", ")
                ),
            };
            let mut values: Vec<sea_orm::Value> = vec![RUNS_QUEUE.into()];
            values.extend(chunk.iter().map(|r| r.value().to_string().into()));
            let rows = self
                .db
                .query_all_raw(crate::sql::raw::statement(backend, &sql, values))
                .await
                .map_err(unavailable)?;
            live.extend(
                rows.iter()
                    .filter_map(|r| r.try_get::<i64>("", "run").ok())
                    .map(RunId::new),
            );
        }
        Ok(live)
    }
}

/// The queue as the port.
#[must_use]
pub fn as_port(queue: &ApalisQueue) -> Arc<dyn JobQueue> {
    Arc::new(queue.clone())
}
