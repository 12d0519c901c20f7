//! The progress-engine benchmark: opsrun's item recording against the storage's own limit,
//! measured in the same run, interleaved, median of several rounds. Every figure is a ratio of
//! two things measured together; absolute rates are context only.
//!
//! Run with `tests/bench` (starts a throwaway PostgreSQL like the test command does).
//! Cases: P1 (PostgreSQL, 1/4/16 writers, `record_item` vs a raw guarded increment), P1b (vs the
//! `SELECT ... FOR UPDATE` sequence of Laravel's batch repository), P2 (`record_items` of 100 vs
//! P1's raw increments), P3 (SQLite, one writer). Not yet: P4–P6 (see docs/performance.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use opsrun_adapters::clock::SystemClock;
use opsrun_adapters::sql::{SqlRunStore, TenantSettings, connect, migrate};
use opsrun_application::fakes::MemoryQueue;
use opsrun_application::ports::{CreateRun, OperationRunStore};
use opsrun_application::{OperationRunService, RunParams};
use opsrun_domain::{ItemKey, ItemRecord, RunId, Slug, Timestamp, WorkSet};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};

type Error = Box<dyn std::error::Error + Send + Sync>;

const ROUND: Duration = Duration::from_millis(1500);
const ROUNDS: usize = 3;
/// Units frozen into the benchmark run (PostgreSQL); SQLite needs fewer.
const PG_UNITS: usize = 1_000_000;
const SQLITE_UNITS: usize = 100_000;

struct Bench {
    db: DatabaseConnection,
    service: OperationRunService,
    run: RunId,
    // The raw increments go to a run of their own, so they never eat the recorded run's total.
    raw_run: i64,
    units: usize,
    next: Arc<std::sync::atomic::AtomicUsize>,
}

async fn setup(url: &str, units: usize) -> Result<Bench, Error> {
    let db = connect(url, 20).await?;
    migrate(&db).await?;
    let store = SqlRunStore::new(db.clone());
    let ws = store
        .ensure_workspace(&Slug::parse("bench")?, Timestamp::from_millis(0))
        .await?;
    let tenant = store
        .add_tenant(
            ws,
            &Slug::parse(&format!("t{}", std::process::id()))?,
            TenantSettings::default(),
            Timestamp::from_millis(0),
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
        Arc::new(store),
        Arc::new(MemoryQueue::new()),
        Arc::new(SystemClock),
    );
    Ok(Bench {
        db,
        service,
        run,
        raw_run,
        units,
        next: Arc::default(),
    })
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

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<(), Error> {
    let mut rows: Vec<String> = Vec::new();
    if let Ok(url) = std::env::var("OPSRUN_BENCH_POSTGRES_URL") {
        let b = setup(&url, PG_UNITS).await?;
        for writers in [1usize, 4, 16] {
            let (mut ours, mut raw, mut laravel, mut batch) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                ours.push(record_one(&b, writers).await?);
                raw.push(raw_increment(&b, writers).await?);
                laravel.push(laravel_sequence(&b, writers).await?);
                batch.push(record_batch(&b, writers).await?);
            }
            let (o, r, l, bt) = (median(ours), median(raw), median(laravel), median(batch));
            rows.push(format!("| P1 PostgreSQL, {writers:>2} writer(s) | record_item {o:>8.0}/s vs raw guarded UPDATE {r:>8.0}/s | {:.2}× | ≥ 0.8× |", o / r));
            rows.push(format!("| P1b PostgreSQL, {writers:>2} writer(s) | record_item {o:>8.0}/s vs Laravel FOR UPDATE sequence {l:>8.0}/s | {:.2}× | ≥ 3× |", o / l));
            rows.push(format!("| P2 PostgreSQL, {writers:>2} writer(s) | record_items(100) {bt:>8.0} items/s vs raw {r:>8.0}/s | {:.2}× | ≥ 10× |", bt / r));
        }
    } else {
        rows.push("| P1/P1b/P2 | not run: OPSRUN_BENCH_POSTGRES_URL is not set (tests/bench sets it) | | |".to_owned());
    }
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let b = setup(&url, SQLITE_UNITS).await?;
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(record_one(&b, 1).await?);
        raw.push(raw_increment(&b, 1).await?);
    }
    let (o, r) = (median(ours), median(raw));
    rows.push(format!("| P3 SQLite, 1 writer | record_item {o:>8.0}/s vs raw guarded UPDATE {r:>8.0}/s | {:.2}× | ≥ 0.5× |", o / r));
    let mut out = String::from(
        "| case | measured (median of 3 interleaved rounds of 1.5 s) | ratio | goal |\n|---|---|---|---|\n",
    );
    for row in rows {
        out.push_str(&row);
        out.push('\n');
    }
    std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())?;
    Ok(())
}
