//! The progress-engine benchmark: opsrun's item recording against the storage's own limit,
//! measured in the same run, interleaved, median of several rounds. Every figure is a ratio of
//! two things measured together; absolute rates are context only.
//!
//! Run with `tests/bench` (starts a throwaway PostgreSQL like the test command does).
//! Cases: P1 (PostgreSQL, 1/4/16 writers, `record_item` vs a raw guarded increment), P1b (vs the
//! `SELECT ... FOR UPDATE` sequence of Laravel's batch repository), P2 (`record_items` of 100 vs
//! P1's raw increments), P3 (SQLite, one writer), P1x/P3x (the same against the least a
//! database must do to count an item exactly once: a ledger insert and a guarded increment), P4 (a 10,000-child fan-out through the real
//! queue and the workers of an `opsrun serve` process), P5 (feed and collection over 100,000
//! runs of 1,000 tenants: latency percentiles and statements per request), P6 (the `opsrun
//! serve` process's resident memory, idle and during P4), P1c/P3c (16 writers through the
//! record coalescer), P4 at 100,000 items, P4c (P4 with two more `opsrun worker` processes),
//! P7 (1,000 event-stream clients on one running fan-out). See docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opsrun_adapters::backend::{BackendOptions, SqlBackend};
use opsrun_adapters::clock::SystemClock;
use opsrun_adapters::queue::QueueSettings;
use opsrun_adapters::simulated::SqlSimulatedTenants;
use opsrun_adapters::simulated::policy_id;
use opsrun_adapters::sql::{SqlRunStore, connect, migrate};
use opsrun_app::wiring::Stack;
use opsrun_application::access::Caller;
use opsrun_application::ports::{
    BackupSetStore, CreateRun, DirectoryAdmin, Role, RunQueries, RunStore, SimulationSettings,
    TenantScope,
};
use opsrun_application::read_models::{CollectionFilter, ReadModels};
use opsrun_application::testing::MemoryQueue;
use opsrun_application::{OperationRunService, RunParams, StartRun};
use opsrun_domain::{ItemKey, ItemRecord, RunId, RunOutcome, Slug, SummaryKey, Timestamp, WorkSet};
use opsrun_tests::add_simulated_tenant;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};

type Error = Box<dyn std::error::Error + Send + Sync>;

const ROUND: Duration = Duration::from_millis(1500);
const ROUNDS: usize = 3;
/// Units frozen into the benchmark run (PostgreSQL); SQLite needs fewer.
const PG_UNITS: usize = 2_000_000;
const SQLITE_UNITS: usize = 1_000_000;
/// Items per transaction of P3c's storage baseline: about what the coalescer combines there.
const P3C_BATCH: usize = 8;

struct Bench {
    db: DatabaseConnection,
    // The service's store, for opsrun's own record statement without the engine around it.
    store: Arc<SqlRunStore>,
    service: OperationRunService,
    run: RunId,
    // The raw increments go to a run of their own, so they never eat the recorded run's total.
    raw_run: i64,
    units: usize,
    next: Arc<std::sync::atomic::AtomicUsize>,
    raw_next: Arc<std::sync::atomic::AtomicUsize>,
}

async fn setup(url: &str, units: usize) -> Result<Bench, Error> {
    let db = connect(url, 20).await?;
    migrate(&db).await?;
    let store = Arc::new(SqlRunStore::new(db.clone()));
    let ws = store
        .workspace(&Slug::parse("bench")?, true, Timestamp::from_millis(0))
        .await?;
    let tenant = add_simulated_tenant(
        &store,
        &SqlSimulatedTenants::new(db.clone()),
        ws,
        &Slug::parse(&format!("t{}", std::process::id()))?,
        SimulationSettings::default(),
    )
    .await?;
    let run = store
        .create_run(CreateRun {
            workspace: ws,
            tenant: tenant.id,
            params: RunParams::BackupSetRestore {
                backup_set_id: 1,
                item_ids: None,
            },
            initiator: None,
            parent: None,
            retry_of: None,
            at: Timestamp::from_millis(0),
        })
        .await?
        .run
        .id();
    let keys: Vec<ItemKey> = (0..units)
        .map(|i| ItemKey::parse(&format!("u{i:08}")))
        .collect::<Result<_, _>>()?;
    store
        .set_total(run, WorkSet::try_new(keys, "bench units")?)
        .await?;
    let raw_run = store
        .create_run(CreateRun {
            workspace: ws,
            tenant: tenant.id,
            params: RunParams::BaselineCapture,
            initiator: None,
            parent: None,
            retry_of: None,
            at: Timestamp::from_millis(0),
        })
        .await?
        .run
        .id()
        .value();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE operation_runs SET total = 1000000000000, processed = 0 WHERE id = $1",
        vec![raw_run.into()],
    ))
    .await?;
    let service = OperationRunService::new(
        store.clone(),
        Arc::new(MemoryQueue::new()),
        Arc::new(SystemClock),
    );
    Ok(Bench {
        db,
        store,
        service,
        run,
        raw_run,
        units,
        next: Arc::default(),
        raw_next: Arc::default(),
    })
}

impl Bench {
    /// Ends the benchmark's two runs, so that no worker of a later case on the same database
    /// (P4, P7) picks them up: the recorded run would be a fan-out of its unrecorded units.
    async fn close(&self) -> Result<(), Error> {
        self.service.cancel_run(self.run, None).await?;
        self.service
            .cancel_run(RunId::new(self.raw_run), None)
            .await?;
        Ok(())
    }
}

/// The next unit key, or `None` when the frozen set is used up (the round stops early).
fn key(i: usize, units: usize) -> Result<Option<ItemKey>, Error> {
    if i >= units {
        return Ok(None);
    }
    Ok(Some(ItemKey::parse(&format!("u{i:08}"))?))
}

/// Operations per second of `writers` tasks running `op` for one round.
async fn rate<F, Fut>(writers: usize, op: F) -> Result<f64, Error>
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<u64, Error>> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while start.elapsed() < ROUND {
                done += op().await?;
            }
            Ok::<u64, Error>(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

async fn record_one(b: &Bench, writers: usize) -> Result<f64, Error> {
    let (service, run, next, units) = (b.service.clone(), b.run, b.next.clone(), b.units);
    rate(writers, move || {
        let (service, next) = (service.clone(), next.clone());
        async move {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(key) = key(i, units)? else {
                return Err("the benchmark used up its units".into());
            };
            service.record_item(run, ItemRecord::succeeded(key)).await?;
            Ok(1)
        }
    })
    .await
}

async fn record_batch(b: &Bench, writers: usize) -> Result<f64, Error> {
    let (service, run, next, units) = (b.service.clone(), b.run, b.next.clone(), b.units);
    rate(writers, move || {
        let (service, next) = (service.clone(), next.clone());
        async move {
            let first = next.fetch_add(100, std::sync::atomic::Ordering::Relaxed);
            let mut records = Vec::with_capacity(100);
            for i in first..first + 100 {
                match key(i, units)? {
                    Some(key) => records.push(ItemRecord::succeeded(key)),
                    None => return Err("the benchmark used up its units".into()),
                }
            }
            service.record_items(run, records).await?;
            Ok(100)
        }
    })
    .await
}

/// opsrun's own record of one item as the store writes it (one statement on PostgreSQL, one
/// transaction on SQLite), called directly: `record_item` without the engine around it (the
/// service, the coalescer, events), so the two show what the engine adds and what the
/// statement costs.
async fn store_alone(b: &Bench, writers: usize) -> Result<f64, Error> {
    use opsrun_application::ports::Clock as _;
    let (store, run, next, units) = (b.store.clone(), b.run, b.next.clone(), b.units);
    rate(writers, move || {
        let (store, next) = (store.clone(), next.clone());
        async move {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(key) = key(i, units)? else {
                return Err("the benchmark used up its units".into());
            };
            store
                .record_items_keyed(run, vec![ItemRecord::succeeded(key)], SystemClock.now())
                .await?;
            Ok(1)
        }
    })
    .await
}

/// SQLite's least for `n` items at once, counted exactly once: one `BEGIN IMMEDIATE`
/// transaction entering `n` ledger keys in one insert and incrementing the counter by what it
/// entered. What a coalesced record of `n` callers must do at least; one writer, SQLite's best.
async fn raw_exactly_once_batch(b: &Bench, n: usize) -> Result<f64, Error> {
    let (db, run, next) = (b.db.clone(), b.raw_run, b.raw_next.clone());
    rate(1, move || {
        let (db, next) = (db.clone(), next.clone());
        async move {
            let backend = db.get_database_backend();
            let first = next.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            let mut values: Vec<sea_orm::Value> = vec![run.into()];
            let mut rows = Vec::with_capacity(n);
            for i in 0..n {
                rows.push(format!("($1, ${}, 'succeeded', 0)", i + 2));
                values.push(format!("raw{:09}", first + i).into());
            }
            let insert = format!(
                "INSERT INTO operation_run_items (run_id, item_key, outcome, recorded_at) \
                 VALUES {} ON CONFLICT (run_id, item_key) DO NOTHING",
                rows.join(", ")
            );
            let tx = db
                .begin_with_options(sea_orm::TransactionOptions {
                    sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                    ..sea_orm::TransactionOptions::default()
                })
                .await?;
            let fresh = tx
                .execute_raw(Statement::from_sql_and_values(backend, insert, values))
                .await?
                .rows_affected();
            if fresh > 0 {
                tx.execute_raw(Statement::from_sql_and_values(
                    backend,
                    "UPDATE operation_runs SET processed = processed + $2, \
                     succeeded = COALESCE(succeeded, 0) + $2 WHERE id = $1 AND processed + $2 <= total",
                    vec![run.into(), (fresh as i64).into()],
                ))
                .await?;
            }
            tx.commit().await?;
            Ok(n as u64)
        }
    })
    .await
}

/// The least a database must do to count an item exactly once: enter its key in a ledger
/// (`ON CONFLICT DO NOTHING`) and increment the counter only if it was new. One statement on
/// PostgreSQL; on SQLite (no data-modifying CTEs) one `BEGIN IMMEDIATE` transaction.
async fn raw_exactly_once(b: &Bench, writers: usize) -> Result<f64, Error> {
    let (db, run, next) = (b.db.clone(), b.raw_run, b.raw_next.clone());
    rate(writers, move || {
        let (db, next) = (db.clone(), next.clone());
        async move {
            let backend = db.get_database_backend();
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let key = format!("raw{i:09}");
            let insert = "INSERT INTO operation_run_items (run_id, item_key, outcome, recorded_at) \
                          VALUES ($1, $2, 'succeeded', 0) ON CONFLICT (run_id, item_key) DO NOTHING";
            let update = "UPDATE operation_runs SET processed = processed + 1, \
                          succeeded = COALESCE(succeeded, 0) + 1 WHERE id = $1 AND processed < total";
            if backend == sea_orm::DbBackend::Postgres {
                let sql = format!("WITH ins AS ({insert} RETURNING 1) {update} AND EXISTS (SELECT 1 FROM ins)");
                db.execute_raw(Statement::from_sql_and_values(backend, sql, vec![run.into(), key.into()]))
                    .await?;
            } else {
                let tx = db
                    .begin_with_options(sea_orm::TransactionOptions {
                        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                        ..sea_orm::TransactionOptions::default()
                    })
                    .await?;
                let fresh = tx
                    .execute_raw(Statement::from_sql_and_values(backend, insert, vec![run.into(), key.into()]))
                    .await?
                    .rows_affected();
                if fresh == 1 {
                    tx.execute_raw(Statement::from_sql_and_values(backend, update, vec![run.into()]))
                        .await?;
                }
                tx.commit().await?;
            }
            Ok(1)
        }
    })
    .await
}

async fn raw_increment(b: &Bench, writers: usize) -> Result<f64, Error> {
    let (db, run) = (b.db.clone(), b.raw_run);
    rate(writers, move || {
        let db = db.clone();
        async move {
            let stmt = Statement::from_sql_and_values(
                db.get_database_backend(),
                "UPDATE operation_runs SET processed = processed + 1 WHERE id = $1 AND processed < total",
                vec![run.into()],
            );
            db.execute_raw(stmt).await?;
            Ok(1)
        }
    })
    .await
}

async fn laravel_sequence(b: &Bench, writers: usize) -> Result<f64, Error> {
    let (db, run) = (b.db.clone(), b.raw_run);
    rate(writers, move || {
        let db = db.clone();
        async move {
            let backend = db.get_database_backend();
            let tx = db.begin().await?;
            tx.query_one_raw(Statement::from_sql_and_values(backend, "SELECT * FROM operation_runs WHERE id = $1 FOR UPDATE", vec![run.into()])).await?;
            tx.execute_raw(Statement::from_sql_and_values(backend, "UPDATE operation_runs SET processed = processed + 1, succeeded = COALESCE(succeeded, 0) + 1 WHERE id = $1", vec![run.into()])).await?;
            tx.commit().await?;
            Ok(1)
        }
    })
    .await
}

/// Items of the P4 fan-outs.
const CHILDREN: usize = 10_000;
const BIG_CHILDREN: usize = 100_000;
/// P7: event-stream clients on one running fan-out, and its items.
const P7_CLIENTS: usize = 1_000;
const P7_ITEMS: usize = 3_000;
/// Runs and tenants of P5.
const P5_RUNS: i64 = 100_000;
const P5_TENANTS: usize = 1_000;
/// Requests timed per P5 case.
const P5_REQUESTS: usize = 1_000;

/// Resident memory of a process in KiB, from `/proc`.
fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("no VmRSS value")?
        .parse()?)
}

/// CPU seconds (user and system) that the processes `pick` chooses by their command name have
/// used so far, from `/proc/<pid>/stat` (processes that ended meanwhile are not counted).
fn cpu_seconds(pick: &dyn Fn(u32, &str) -> bool) -> Result<f64, Error> {
    let ticks: f64 = String::from_utf8(
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()?
            .stdout,
    )?
    .trim()
    .parse()?;
    let mut total = 0_u64;
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ...": the command may hold spaces, so split after its ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !pick(pid, &stat[open + 1..close]) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the command: state is field 3, utime 14 and stime 15 (1-based, man proc).
        let utime: u64 = fields.get(11).ok_or("no utime")?.parse()?;
        let stime: u64 = fields.get(12).ok_or("no stime")?.parse()?;
        total += utime + stime;
    }
    Ok(total as f64 / ticks)
}

/// CPU seconds of process `pid` and of every PostgreSQL server process.
fn cpu_of(pid: u32) -> Result<(f64, f64), Error> {
    Ok((
        cpu_seconds(&|p, _| p == pid)?,
        cpu_seconds(&|_, name| name == "postgres")?,
    ))
}

/// Waits for `id` to complete, sampling `pid`'s resident memory; the peak seen.
async fn wait_completed(backend: &SqlBackend, id: RunId, pid: u32) -> Result<u64, Error> {
    let started = Instant::now();
    let mut peak = 0;
    loop {
        peak = peak.max(rss_kib(pid)?);
        if backend.store.run(id).await?.is_completed() {
            return Ok(peak);
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("run {id} did not complete within 10 minutes").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What P4 and P6 measured on one database.
struct FanOut {
    seconds: f64,
    /// The same items again as child jobs of a completed parent (chunked as the fan-out is):
    /// each item reads the parent and stops, so this is the durable queue's own cost.
    queue_seconds: Option<f64>,
    /// How many durable child jobs (chunks) carried the items.
    jobs: i64,
    idle_kib: u64,
    peak_kib: u64,
    /// CPU seconds `serve` used during the fan-out, and PostgreSQL's server processes (zero on
    /// SQLite).
    cpu: (f64, f64),
}

/// One P4 fan-out: how many items, how many `opsrun worker` processes beside `serve`, and
/// whether to measure the queue's own cost after it.
#[derive(Clone, Copy)]
struct FanOutCase {
    items: usize,
    extra_workers: usize,
    queue_baseline: bool,
}

/// How many child jobs the queue has finished (apalis's tables).
async fn children_done(db: &DatabaseConnection) -> Result<i64, Error> {
    children_jobs(db, " AND status = 'Done'").await
}

/// How many child jobs the queue holds that match `filter`.
async fn children_jobs(db: &DatabaseConnection, filter: &str) -> Result<i64, Error> {
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            format!(
                "SELECT count(*) AS n FROM apalis.jobs WHERE job_type = 'opsrun.children'{filter}"
            )
        }
        _ => format!("SELECT count(*) AS n FROM Jobs WHERE job_type = 'opsrun.children'{filter}"),
    };
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .ok_or("no count")?;
    Ok(row.try_get::<i64>("", "n")?)
}

/// P4/P6: an `opsrun serve` process (8 workers), and `case.extra_workers` `opsrun worker`
/// processes (8 workers each), run a restore of `case.items` items; the clock runs from
/// `start_run` of the parent to its completion, as the database shows it.
async fn fan_out(url: &str, dir: &std::path::Path, case: FanOutCase) -> Result<FanOut, Error> {
    let items = case.items;
    let name = format!("fanout{items}x{}", case.extra_workers);
    let backend = SqlBackend::open(&BackendOptions {
        database_url: url.to_owned(),
        artifacts: dir.join("artifacts"),
        queue: QueueSettings::default(),
        max_connections: 4,
    })
    .await
    .map_err(|e| format!("{e:#}"))?;
    let stack = Stack::wire(&backend.ports(), opsrun_app::config::STALE_AFTER_MS);
    let db = connect(url, 2).await?;
    let workspace = backend
        .store
        .workspace(&Slug::parse(&name)?, true, Timestamp::from_millis(0))
        .await?;
    let tenant = add_simulated_tenant(
        &backend.store,
        &backend.simulated,
        workspace,
        &Slug::parse(&name)?,
        SimulationSettings {
            policies: items as i64,
            latency_ms: 0,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let set = backend
        .families
        .create_backup_set(tenant.id, "bench")
        .await?;
    let mut extra = Vec::new();
    for _ in 0..case.extra_workers {
        extra.push(
            tokio::process::Command::new(env!("CARGO_BIN_EXE_opsrun-under-test"))
                .args(["worker", "--workers", "8"])
                .env("DATABASE_URL", url)
                .env("OPSRUN_ARTIFACTS", dir.join("artifacts"))
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    // OPSRUN_BENCH_SERVE_WRAPPER runs P4's `serve` under a profiler (e.g. `heaptrack`); its
    // RSS figures are then the wrapper's, not the server's.
    let mut serve = match std::env::var("OPSRUN_BENCH_SERVE_WRAPPER") {
        Ok(wrapper) => {
            let mut command = tokio::process::Command::new(wrapper);
            command.arg(env!("CARGO_BIN_EXE_opsrun-under-test"));
            command
        }
        Err(_) => tokio::process::Command::new(env!("CARGO_BIN_EXE_opsrun-under-test")),
    };
    let mut serve = serve
        .args(["serve", "--bind", "127.0.0.1:0", "--workers", "8"])
        .env("DATABASE_URL", url)
        .env("OPSRUN_ARTIFACTS", dir.join("artifacts"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = serve.id().ok_or("serve has no pid")?;
    let stdout = serve.stdout.take().ok_or("serve has no stdout")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut first = lines.next_line().await?.unwrap_or_default();
    // A wrapper says a few lines of its own first.
    for _ in 0..10 {
        if first.starts_with("listening on ")
            || std::env::var("OPSRUN_BENCH_SERVE_WRAPPER").is_err()
        {
            break;
        }
        first = lines.next_line().await?.unwrap_or_default();
    }
    if !first.starts_with("listening on ") {
        return Err(format!("serve said {first:?}").into());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_kib = rss_kib(pid)?;
    let start = |params| {
        stack.service.start_run(StartRun {
            workspace,
            tenant: tenant.id,
            params,
            initiator: None,
            parent: None,
            retry_of: None,
        })
    };
    // The backup set's items come from a real add-policies run (setup, not timed).
    let add = start(RunParams::BackupSetAddPolicies {
        backup_set_id: set.id,
        policy_ids: (1..=items as i64).map(policy_id).collect(),
    })
    .await?
    .run
    .id();
    wait_completed(&backend, add, pid).await?;
    // PostgreSQL settles first: what earlier cases (P1's 2,000,000 units and their ledger)
    // and the setup wrote is vacuumed, analyzed and flushed before the clock starts, so
    // autovacuum and the checkpointer do not run inside the timed fan-out (they did: 3.4 s of
    // the server's CPU in a 4.9 s P4, against 1.5 s in a database of its own).
    if url.starts_with("postgres") {
        db.execute_unprepared("VACUUM (ANALYZE)").await?;
        db.execute_unprepared("CHECKPOINT").await?;
    }
    // OPSRUN_BENCH_BEFORE_P4_SQL runs a statement right before the timed fan-out (e.g.
    // `SELECT pg_stat_statements_reset()`, to see what the fan-out alone asked the server).
    if let Ok(sql) = std::env::var("OPSRUN_BENCH_BEFORE_P4_SQL")
        && url.starts_with("postgres")
    {
        db.execute_unprepared(&sql).await?;
    }
    let cpu_before = cpu_of(pid)?;
    let began = Instant::now();
    let restore = start(RunParams::BackupSetRestore {
        backup_set_id: set.id,
        item_ids: None,
    })
    .await?
    .run
    .id();
    let peak_kib = wait_completed(&backend, restore, pid).await?;
    let seconds = began.elapsed().as_secs_f64();
    let cpu_after = cpu_of(pid)?;
    let cpu = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    let run = backend.store.run(restore).await?;
    let counts = run.counts();
    let children = Some(items as u64);
    if counts.get(SummaryKey::Total) != children
        || counts.get(SummaryKey::Processed) != children
        || counts.get(SummaryKey::Succeeded) != children
        || run.outcome() != RunOutcome::Succeeded
    {
        return Err(format!("the fan-out ended wrong: {run:?}").into());
    }
    let jobs = i64::try_from(run.children().map_or(0, |c| c.total))?;
    // The queue's own cost: as many children again, of the now completed parent. Each job
    // reads the parent, sees it completed and stops; the clock stops when apalis has marked
    // them all done.
    let queue_seconds = if case.queue_baseline {
        let held = children_jobs(&db, "").await?;
        let before = children_done(&db).await?;
        let keys: Vec<ItemKey> = (0..items)
            .map(|i| ItemKey::parse(&format!("q{i}")))
            .collect::<Result<_, _>>()?;
        let began = Instant::now();
        let first = run.children().map_or(0, |c| c.total);
        opsrun_application::ports::JobQueue::enqueue_children(&backend.queue, restore, first, keys)
            .await?;
        let enqueued = children_jobs(&db, "").await? - held;
        while children_done(&db).await? < before + enqueued {
            if began.elapsed() > Duration::from_secs(600) {
                return Err("the queue baseline did not finish within 10 minutes".into());
            }
            // Counting the queue's table costs a scan: poll less often than P4 does.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(began.elapsed().as_secs_f64())
    } else {
        None
    };
    serve.start_kill()?;
    serve.wait().await?;
    for mut worker in extra {
        worker.start_kill()?;
        worker.wait().await?;
    }
    if let Ok(keep) = std::env::var("OPSRUN_BENCH_KEEP") {
        let file = url
            .trim_start_matches("sqlite://")
            .trim_end_matches("?mode=rwc");
        std::fs::copy(file, &keep).ok();
        std::fs::copy(format!("{file}-wal"), format!("{keep}-wal")).ok();
    }
    Ok(FanOut {
        seconds,
        queue_seconds,
        jobs,
        idle_kib,
        peak_kib,
        cpu,
    })
}

/// What P7 measured.
struct Streams {
    p50: f64,
    p99: f64,
    events: usize,
    peak_kib: u64,
}

/// Starts `opsrun serve` (8 workers) on `url`; the process and its base URL.
async fn serve(url: &str, dir: &std::path::Path) -> Result<(tokio::process::Child, String), Error> {
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsrun-under-test"))
        .args(["serve", "--bind", "127.0.0.1:0", "--workers", "8"])
        .env("DATABASE_URL", url)
        .env("OPSRUN_ARTIFACTS", dir.join("artifacts"))
        .env("OPSRUN_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = serve.stdout.take().ok_or("serve has no stdout")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = lines.next_line().await?.unwrap_or_default();
    let base = first
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("serve said {first:?}"))?
        .trim()
        .to_owned();
    // Keep reading so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((serve, base))
}

/// Follows one run's event stream to its end: when each progress document arrived, with its
/// `processed` count.
async fn follow(
    client: reqwest::Client,
    url: String,
    token: String,
) -> Result<Vec<(Instant, u64)>, Error> {
    use futures::StreamExt as _;
    let response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut seen = Vec::new();
    while let Some(chunk) = body.next().await {
        let at = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data:")) {
                if let Ok(doc) = serde_json::from_str::<serde_json::Value>(data.trim())
                    && let Some(processed) = doc["summary_counts"]["processed"].as_u64()
                {
                    seen.push((at, processed));
                }
            }
        }
    }
    Ok(seen)
}

/// P7: `P7_CLIENTS` clients follow one running restore of `P7_ITEMS` items (40 ms per item at
/// the provider, so it runs for a few seconds) through `GET /api/operations/{id}/events`. The
/// bench polls the run's row every 2 ms; an event's delay is from the first poll that saw its
/// count to its arrival at a client (so it is exact to the poll's 2 ms). Counted from the moment
/// every client has its first event.
async fn streams(url: &str, dir: &std::path::Path, backend_name: &str) -> Result<Streams, Error> {
    let backend = SqlBackend::open(&BackendOptions {
        database_url: url.to_owned(),
        artifacts: dir.join("artifacts"),
        queue: QueueSettings::default(),
        max_connections: 4,
    })
    .await
    .map_err(|e| format!("{e:#}"))?;
    let stack = Stack::wire(&backend.ports(), opsrun_app::config::STALE_AFTER_MS);
    let name = format!("streams{}", backend_name.to_lowercase());
    let workspace = backend
        .store
        .workspace(&Slug::parse(&name)?, true, Timestamp::from_millis(0))
        .await?;
    let tenant = add_simulated_tenant(
        &backend.store,
        &backend.simulated,
        workspace,
        &Slug::parse(&name)?,
        SimulationSettings {
            policies: P7_ITEMS as i64,
            latency_ms: 0,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let token = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsrun-under-test"))
        .args([
            "token",
            "create",
            "--workspace",
            &name,
            "--email",
            "bench@example.com",
            "--role",
            "owner",
        ])
        .env("DATABASE_URL", url)
        .env("OPSRUN_ARTIFACTS", dir.join("artifacts"))
        .env("OPSRUN_LOG", "warn")
        .output()
        .await?;
    if !token.status.success() {
        return Err(format!("token create: {}", String::from_utf8_lossy(&token.stderr)).into());
    }
    let token = String::from_utf8(token.stdout)?.trim().to_owned();
    let set = backend
        .families
        .create_backup_set(tenant.id, "bench")
        .await?;
    let start = |params| {
        stack.service.start_run(StartRun {
            workspace,
            tenant: tenant.id,
            params,
            initiator: None,
            parent: None,
            retry_of: None,
        })
    };
    // Setup (not measured): the backup set's items, with a provider that answers at once.
    let (mut setup, _) = serve(url, dir).await?;
    let setup_pid = setup.id().ok_or("serve has no pid")?;
    let add = start(RunParams::BackupSetAddPolicies {
        backup_set_id: set.id,
        policy_ids: (1..=P7_ITEMS as i64).map(policy_id).collect(),
    })
    .await?
    .run
    .id();
    wait_completed(&backend, add, setup_pid).await?;
    setup.start_kill()?;
    setup.wait().await?;
    // The measured restore: 40 ms per item (a new process reads the tenant's settings again).
    let db = connect(url, 2).await?;
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE simulated_tenants SET latency_ms = 40 WHERE tenant_id = $1",
        vec![tenant.id.value().into()],
    ))
    .await?;
    let (mut server, base) = serve(url, dir).await?;
    let pid = server.id().ok_or("serve has no pid")?;
    // Pause the restore until every client follows it, so the clients see it run from the start.
    let restore = start(RunParams::BackupSetRestore {
        backup_set_id: set.id,
        item_ids: None,
    })
    .await?
    .run
    .id();
    stack.service.pause_run(restore).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let mut clients = Vec::with_capacity(P7_CLIENTS);
    for _ in 0..P7_CLIENTS {
        clients.push(tokio::spawn(follow(
            client.clone(),
            format!("{base}/api/operations/{restore}/events"),
            token.clone(),
        )));
    }
    // Every client is connected once the server holds its stream (the gauge says so).
    let scrape = format!("{base}/metrics");
    let began = Instant::now();
    loop {
        let text = client
            .get(&scrape)
            .bearer_auth(&token)
            .send()
            .await?
            .text()
            .await?;
        let open = text
            .lines()
            .find(|l| l.starts_with("opsrun_event_stream_clients"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if open >= P7_CLIENTS as f64 {
            break;
        }
        if began.elapsed() > Duration::from_secs(60) {
            return Err(format!("only {open} of {P7_CLIENTS} streams opened").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let measured_from = Instant::now();
    stack.service.resume_run(restore).await?;
    // When each count was first in the database.
    let mut first_seen: Vec<(u64, Instant)> = Vec::new();
    let mut peak_kib = rss_kib(pid)?;
    let mut polls = 0_u32;
    loop {
        let run = backend.store.run(restore).await?;
        let processed = run.counts().get_or_zero(SummaryKey::Processed);
        if first_seen.last().is_none_or(|(p, _)| *p < processed) {
            first_seen.push((processed, Instant::now()));
        }
        polls += 1;
        if polls.is_multiple_of(10) {
            peak_kib = peak_kib.max(rss_kib(pid)?);
        }
        if run.is_completed() {
            break;
        }
        if measured_from.elapsed() > Duration::from_secs(600) {
            return Err("the P7 restore did not complete within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut delays = Vec::new();
    for task in clients {
        for (at, processed) in task.await?? {
            if at < measured_from || processed == 0 {
                continue;
            }
            // The first poll that saw this count (or more).
            let Some((_, seen)) = first_seen.iter().find(|(p, _)| *p >= processed) else {
                continue;
            };
            delays.push(at.saturating_duration_since(*seen).as_secs_f64() * 1000.0);
        }
    }
    peak_kib = peak_kib.max(rss_kib(pid)?);
    server.start_kill()?;
    server.wait().await?;
    if delays.is_empty() {
        return Err("no progress event reached a client".into());
    }
    let events = delays.len();
    let (p50, p99) = percentiles(delays);
    Ok(Streams {
        p50,
        p99,
        events,
        peak_kib,
    })
}

/// p50 and p99 in milliseconds.
fn percentiles(mut millis: Vec<f64>) -> (f64, f64) {
    millis.sort_by(|a, b| a.total_cmp(b));
    let at = |q: usize| millis[(millis.len() * q / 100).min(millis.len() - 1)];
    (at(50), at(99))
}

/// What P5 measured on one database: (p50, p99, statements per request) of feed and page.
struct Reads {
    feed: (f64, f64, f64),
    page: (f64, f64, f64),
}

/// P5: `P5_RUNS` runs over `P5_TENANTS` tenants (two per tenant still running, the rest
/// completed an hour or more ago), then the read models as the HTTP API calls them.
async fn reads(url: &str) -> Result<Reads, Error> {
    let db = connect(url, 4).await?;
    migrate(&db).await?;
    let store = SqlRunStore::new(db.clone());
    let workspace = store
        .workspace(&Slug::parse("reads")?, true, Timestamp::from_millis(0))
        .await?;
    let simulated = SqlSimulatedTenants::new(db.clone());
    let user = store
        .ensure_user(workspace, "bench@opsrun.local", Timestamp::from_millis(0))
        .await?;
    let mut tenants = Vec::with_capacity(P5_TENANTS);
    for i in 0..P5_TENANTS {
        tenants.push(
            add_simulated_tenant(
                &store,
                &simulated,
                workspace,
                &Slug::parse(&format!("r{i:04}"))?,
                SimulationSettings::default(),
            )
            .await?,
        );
    }
    let first = tenants[0].id.value();
    if tenants
        .iter()
        .enumerate()
        .any(|(i, t)| t.id.value() != first + i as i64)
    {
        return Err("tenant ids are not contiguous".into());
    }
    let now = opsrun_application::ports::Clock::now(&SystemClock).as_millis();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $5 - 1) \
         INSERT INTO operation_runs (workspace_id, tenant_id, operation_type, target, identity, \
           initiator_id, parent_id, status, outcome, total, processed, succeeded, params, failures, \
           created_at, started_at, completed_at, heartbeat_at) \
         SELECT $1, $2 + (i % $6), 'inventory.sync', 'tenant', 'bench:' || i, $3, NULL, \
           CASE WHEN (i / $6) % 50 = 0 THEN 'running' ELSE 'completed' END, \
           CASE WHEN (i / $6) % 50 = 0 THEN 'pending' ELSE 'succeeded' END, \
           40, CASE WHEN (i / $6) % 50 = 0 THEN i % 40 ELSE 40 END, CASE WHEN (i / $6) % 50 = 0 THEN i % 40 ELSE 40 END, \
           '{}', '[]', $4 - ($5 - i) * 1000, $4 - ($5 - i) * 1000, \
           CASE WHEN (i / $6) % 50 = 0 THEN NULL ELSE $4 - 3600000 - ($5 - i) * 1000 END, $4 FROM n",
        vec![
            workspace.value().into(),
            first.into(),
            user.id.value().into(),
            now.into(),
            P5_RUNS.into(),
            (P5_TENANTS as i64).into(),
        ],
    ))
    .await?;
    db.execute_unprepared("ANALYZE").await?;
    let store = Arc::new(store);
    let models = ReadModels::new(store.clone(), store.clone(), Arc::new(SystemClock), 60_000);
    let caller = Caller {
        user,
        role: Role::Owner,
        scope: TenantScope::All,
        via: opsrun_application::access::Via::Local,
    };
    let slugs: Vec<Slug> = tenants.iter().map(|t| t.slug.clone()).collect();
    let (mut feed, mut page) = (Vec::new(), Vec::new());
    let (mut feed_statements, mut page_statements) = (0u64, 0u64);
    let mut cursor = None;
    // The first 10% warm the pool and the caches and are not counted.
    let warm = P5_REQUESTS / 10;
    for i in 0..P5_REQUESTS + warm {
        let slug = &slugs[(i * 7) % slugs.len()];
        let before = store.statements();
        let began = Instant::now();
        let shown = models.activity(&caller, slug).await?;
        let took = began.elapsed().as_secs_f64() * 1000.0;
        if shown.len() != 2 {
            return Err(format!("feed of {slug} has {} runs, not 2", shown.len()).into());
        }
        if i >= warm {
            feed.push(took);
            feed_statements += store.statements() - before;
        }
        // Pages walk down the collection 20 deep, then start again from the top.
        let before = store.statements();
        let began = Instant::now();
        let listed = models
            .collection(&caller, CollectionFilter::default(), 25, cursor)
            .await?;
        let took = began.elapsed().as_secs_f64() * 1000.0;
        if listed.items.len() != 25 {
            return Err(format!("a page has {} runs", listed.items.len()).into());
        }
        cursor = if i % 20 == 19 {
            None
        } else {
            listed.next_cursor
        };
        if i >= warm {
            page.push(took);
            page_statements += store.statements() - before;
        }
    }
    let n = P5_REQUESTS as f64;
    let (f50, f99) = percentiles(feed);
    let (p50, p99) = percentiles(page);
    Ok(Reads {
        feed: (f50, f99, feed_statements as f64 / n),
        page: (p50, p99, page_statements as f64 / n),
    })
}

fn p4_rows(rows: &mut Vec<String>, backend: &str, goal: f64, measured: &FanOut) {
    let FanOut {
        seconds,
        queue_seconds,
        jobs,
        idle_kib,
        peak_kib,
        cpu: (serve_cpu, postgres_cpu),
    } = measured;
    rows.push(format!(
        "| P4 {backend}, 10,000-item fan-out in {jobs} child jobs | start_run → parent completed {seconds:.1} s ({:.0} items/s); CPU: `serve` {serve_cpu:.1} s, PostgreSQL {postgres_cpu:.1} s, of {:.1} s on 2 cores | {:.2}× of the target | ≤ {goal} s |",
        CHILDREN as f64 / seconds,
        2.0 * seconds,
        goal / seconds
    ));
    if let Some(queue_seconds) = queue_seconds {
        rows.push(format!(
            "| P4q {backend}, the queue's own cost | the same {jobs} jobs again, whose items read the parent and stop: {queue_seconds:.1} s vs P4 | {:.2}× | (the wall) |",
            queue_seconds / seconds
        ));
    }
    rows.push(format!(
        "| P6 {backend}, `opsrun serve` RSS | idle {:.1} MiB, during P4 peak {:.1} MiB | — | (reported) |",
        *idle_kib as f64 / 1024.0,
        *peak_kib as f64 / 1024.0
    ));
}

/// P4 at 100,000 items against the same run's 10,000-item figure.
fn p4_big_rows(rows: &mut Vec<String>, backend: &str, ten: &FanOut, big: &FanOut) {
    rows.push(format!(
        "| P4 {backend}, 100,000-item fan-out in {} child jobs | {:.1} s ({:.0} items/s) vs 10 × the 10,000-item time ({:.1} s) | {:.2}× | ≥ 1× (≤ 10× the 10,000 time) |",
        big.jobs,
        big.seconds,
        BIG_CHILDREN as f64 / big.seconds,
        10.0 * ten.seconds,
        10.0 * ten.seconds / big.seconds
    ));
    rows.push(format!(
        "| P6 {backend}, `opsrun serve` RSS during the 100,000-item fan-out | peak {:.1} MiB vs 64 MiB | {:.2}× | ≥ 1× (≤ 64 MiB) |",
        big.peak_kib as f64 / 1024.0,
        64.0 * 1024.0 / big.peak_kib as f64
    ));
}

fn p5_rows(rows: &mut Vec<String>, backend: &str, measured: &Reads) {
    for (what, (p50, p99, statements)) in [
        ("activity feed", measured.feed),
        ("collection page of 25", measured.page),
    ] {
        rows.push(format!(
            "| P5 {backend}, {what} (100k runs, 1k tenants) | p50 {p50:.2} ms, p99 {p99:.2} ms, {statements:.2} statements/request | {:.2}× of the p99 target | 1 query, p99 ≤ 5 ms |",
            5.0 / p99
        ));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<(), Error> {
    // OPSRUN_BENCH_CASES=P4,P5 runs a subset (P1 includes P1b and P2; P4 includes P6; P4s is
    // P4 at 10,000 items alone).
    let cases = std::env::var("OPSRUN_BENCH_CASES").unwrap_or_default();
    let wanted = |case: &str| cases.is_empty() || cases.split(',').any(|c| c.trim() == case);
    let postgres = std::env::var("OPSRUN_BENCH_POSTGRES_URL").ok();
    let dir = tempfile::tempdir()?;
    let sqlite = |name: &str| format!("sqlite://{}?mode=rwc", dir.path().join(name).display());
    let mut rows: Vec<String> = Vec::new();
    if postgres.is_none() {
        rows.push("| P1/P1b/P2, PostgreSQL cases | not run: OPSRUN_BENCH_POSTGRES_URL is not set (tests/bench sets it) | | |".to_owned());
    }
    if wanted("P1")
        && let Some(url) = &postgres
    {
        let b = setup(url, PG_UNITS).await?;
        for writers in [1usize, 4, 16] {
            let coalesced = (
                b.service.coalescer().submissions(),
                b.service.coalescer().store_calls(),
            );
            let (mut ours, mut raw, mut laravel, mut batch, mut once, mut alone) = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for _ in 0..ROUNDS {
                ours.push(record_one(&b, writers).await?);
                if writers == 1 {
                    alone.push(store_alone(&b, writers).await?);
                }
                raw.push(raw_increment(&b, writers).await?);
                once.push(raw_exactly_once(&b, writers).await?);
                laravel.push(laravel_sequence(&b, writers).await?);
                batch.push(record_batch(&b, writers).await?);
            }
            let (o, r, l, bt) = (median(ours), median(raw), median(laravel), median(batch));
            let e = median(once);
            let (submitted, calls) = (
                b.service.coalescer().submissions() - coalesced.0,
                b.service.coalescer().store_calls() - coalesced.1,
            );
            let per_call = submitted as f64 / calls.max(1) as f64;
            rows.push(format!("| P1 PostgreSQL, {writers:>2} writer(s) | record_item {o:>8.0}/s vs raw guarded UPDATE {r:>8.0}/s ({per_call:.1} records per store call) | {:.2}× | {} |", o / r, if writers == 16 { "≥ 3× (P1c: coalesced)" } else { "(context)" }));
            rows.push(format!("| P1x PostgreSQL, {writers:>2} writer(s) | record_item {o:>8.0}/s vs raw exactly-once statement (ledger insert + guarded UPDATE) {e:>8.0}/s | {:.2}× | {} |", o / e, if writers == 1 { "≥ 0.9×" } else { "(the wall)" }));
            if writers == 1 {
                let a = median(alone);
                rows.push(format!("| P1x' PostgreSQL, 1 writer | opsrun's record statement alone (the store, no engine) {a:>8.0}/s: record_item is {:.2}× of it; it is {:.2}× of the raw exactly-once statement | {:.2}× | (where P1x goes) |", o / a, a / e, a / e));
            }
            rows.push(format!("| P1b PostgreSQL, {writers:>2} writer(s) | record_item {o:>8.0}/s vs Laravel FOR UPDATE sequence {l:>8.0}/s | {:.2}× | ≥ 3× |", o / l));
            rows.push(format!("| P2 PostgreSQL, {writers:>2} writer(s) | record_items(100) {bt:>8.0} items/s vs raw {r:>8.0}/s | {:.2}× | ≥ 10× |", bt / r));
            if writers == 16 {
                rows.push(format!("| P1c PostgreSQL, 16 writers, coalesced | record_item {o:>8.0}/s vs raw single-row guarded UPDATE {r:>8.0}/s, {per_call:.1} records per store call | {:.2}× | ≥ 3× |", o / r));
            }
        }
        b.close().await?;
    }
    if wanted("P3") {
        let b = setup(&sqlite("bench.db"), SQLITE_UNITS).await?;
        let (mut ours, mut raw, mut once, mut alone) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours.push(record_one(&b, 1).await?);
            alone.push(store_alone(&b, 1).await?);
            raw.push(raw_increment(&b, 1).await?);
            once.push(raw_exactly_once(&b, 1).await?);
        }
        let (o, r, e, a) = (median(ours), median(raw), median(once), median(alone));
        rows.push(format!("| P3 SQLite, 1 writer | record_item {o:>8.0}/s vs raw guarded UPDATE {r:>8.0}/s | {:.2}× | (context) |", o / r));
        rows.push(format!("| P3x SQLite, 1 writer | record_item {o:>8.0}/s vs raw exactly-once transaction (ledger insert + guarded UPDATE) {e:>8.0}/s | {:.2}× | ≥ 0.9× |", o / e));
        rows.push(format!("| P3x' SQLite, 1 writer | opsrun's record transaction alone (the store, no engine) {a:>8.0}/s: record_item is {:.2}× of it; it is {:.2}× of the raw exactly-once transaction | {:.2}× | (where P3x goes) |", o / a, a / e, a / e));
        let (mut ours, mut raw, mut batched) = (Vec::new(), Vec::new(), Vec::new());
        let before = (
            b.service.coalescer().submissions(),
            b.service.coalescer().store_calls(),
        );
        for _ in 0..ROUNDS {
            ours.push(record_one(&b, 16).await?);
            raw.push(raw_increment(&b, 16).await?);
            batched.push(raw_exactly_once_batch(&b, P3C_BATCH).await?);
        }
        let per_call = (b.service.coalescer().submissions() - before.0) as f64
            / (b.service.coalescer().store_calls() - before.1).max(1) as f64;
        let (o, r) = (median(ours), median(raw));
        rows.push(format!("| P3c SQLite, 16 writers, coalesced | record_item {o:>8.0}/s vs raw single-transaction increments {r:>8.0}/s, {per_call:.1} records per store call | {:.2}× | ≥ 3× |", o / r));
        let x = median(batched);
        rows.push(format!("| P3c' SQLite, the storage's least for the same work | raw exactly-once transactions of {P3C_BATCH} items (one ledger insert, one guarded UPDATE), 1 writer: {x:>8.0} items/s, {:.2}× the raw increments; coalesced record_item is {:.2}× of it | {:.2}× | (where P3c goes) |", x / r, o / x, o / x));
        b.close().await?;
    }
    let ten = FanOutCase {
        items: CHILDREN,
        extra_workers: 0,
        queue_baseline: true,
    };
    let big = FanOutCase {
        items: BIG_CHILDREN,
        extra_workers: 0,
        queue_baseline: false,
    };
    // P4s: P4 at 10,000 items only (no 100,000 items, no P4c), for a quick look.
    if wanted("P4") || wanted("P4s") {
        let full = wanted("P4");
        let mut databases = vec![("SQLite", sqlite("fanout.db"), sqlite("fanout-big.db"), 2.0)];
        if let Some(url) = &postgres {
            databases.push(("PostgreSQL", url.clone(), url.clone(), 3.0));
        }
        for (backend, url, big_url, goal) in databases {
            let measured = fan_out(&url, dir.path(), ten).await?;
            p4_rows(&mut rows, backend, goal, &measured);
            if !full {
                continue;
            }
            let large = fan_out(&big_url, dir.path(), big).await?;
            p4_big_rows(&mut rows, backend, &measured, &large);
            if backend == "PostgreSQL" {
                // P4c: the same fan-out with two more processes of 8 workers each.
                let spread = fan_out(
                    &url,
                    dir.path(),
                    FanOutCase {
                        extra_workers: 2,
                        queue_baseline: false,
                        ..ten
                    },
                )
                .await?;
                rows.push(format!(
                    "| P4c PostgreSQL, 10,000 items, `serve` + 2 `opsrun worker` processes | {:.1} s ({:.0} items/s) vs P4's one process {:.1} s | {:.2}× | (reported: 2 cores) |",
                    spread.seconds,
                    CHILDREN as f64 / spread.seconds,
                    measured.seconds,
                    measured.seconds / spread.seconds
                ));
            }
        }
    }
    if wanted("P7") {
        let mut databases = vec![("SQLite", sqlite("streams.db"))];
        if let Some(url) = &postgres {
            databases.push(("PostgreSQL", url.clone()));
        }
        for (backend, url) in databases {
            let measured = streams(&url, dir.path(), backend).await?;
            rows.push(format!(
                "| P7 {backend}, {P7_CLIENTS} event-stream clients on one running fan-out | delivery delay p50 {:.0} ms, p99 {:.0} ms over {} events; `serve` peak RSS {:.1} MiB | {:.2}× of the p99 target, {:.2}× of the RSS target | p99 ≤ 250 ms, RSS ≤ 128 MiB |",
                measured.p50,
                measured.p99,
                measured.events,
                measured.peak_kib as f64 / 1024.0,
                250.0 / measured.p99.max(1.0),
                128.0 * 1024.0 / measured.peak_kib as f64
            ));
        }
    }
    if wanted("P5") {
        p5_rows(&mut rows, "SQLite", &reads(&sqlite("reads.db")).await?);
        if let Some(url) = &postgres {
            p5_rows(&mut rows, "PostgreSQL", &reads(url).await?);
        }
    }
    let mut out = String::from(
        "| case | measured (P1–P3: median of 3 interleaved rounds of 1.5 s) | ratio | goal |\n|---|---|---|---|\n",
    );
    for row in rows {
        out.push_str(&row);
        out.push('\n');
    }
    std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())?;
    Ok(())
}
