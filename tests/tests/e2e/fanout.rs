//! Chunked fan-out through the real queue: a 1,000-item restore is 100 durable child jobs of
//! 10 items (not 1,000 jobs), its items are still counted one by one (the bar moves by single
//! items, not by chunks), and every item is recorded exactly once.

use std::time::Duration;

use opsrun_application::RunParams;
use opsrun_application::ports::RunQueries as _;
use opsrun_application::ports::SimulationSettings;
use opsrun_domain::{RunOutcome, SummaryKey};
use opsrun_tests::{TestError, fresh_postgres_database, fresh_sqlite_file};
use sea_orm::ConnectionTrait as _;

use crate::runtime::Running;

const ITEMS: usize = 1_000;

async fn a_fan_out_runs_in_chunks_counted_item_by_item(url: String) -> Result<(), TestError> {
    let running = Running::start(
        &url,
        SimulationSettings {
            policies: 0,
            latency_ms: 20,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let set = crate::crash::backup_set(&running, "chunked", ITEMS).await?;
    let id = running
        .start_run(RunParams::BackupSetRestore {
            backup_set_id: set.id,
            item_ids: None,
        })
        .await?;
    // Watch the count as it moves, and the child jobs apart from it.
    let mut seen = vec![0_u64];
    let mut jobs_seen: Vec<opsrun_domain::ChildJobs> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let run = running.backend.store.run(id).await?;
        let processed = run.counts().get_or_zero(SummaryKey::Processed);
        if seen.last() != Some(&processed) {
            seen.push(processed);
        }
        if let Some(children) = run.children()
            && jobs_seen.last() != Some(&children)
        {
            jobs_seen.push(children);
        }
        if run.is_completed() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the fan-out did not complete: {processed}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let run = running.completed(id).await?;
    // The job that recorded the last item finishes after the parent completed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let children = loop {
        let children = running.backend.store.run(id).await?.children();
        if children.is_some_and(|c| c.completed == c.total) {
            break children;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the child jobs did not all finish: {children:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let db = opsrun_adapters::sql::connect(&url, 1).await?;
    let table = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "apalis.jobs",
        _ => "Jobs",
    };
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table} WHERE job_type = 'opsrun.children'"),
        ))
        .await?;
    let jobs = rows
        .first()
        .and_then(|r| r.try_get::<i64>("", "n").ok())
        .unwrap_or(-1);
    let ledger = running.backend.store.ledger(id).await?.len();
    running.stop().await?;

    let size = opsrun_domain::chunk_size(ITEMS, 8);
    assert_eq!(size, 10);
    assert_eq!(jobs, 100, "one durable job per chunk of {size}");
    assert_eq!(
        children,
        Some(opsrun_domain::ChildJobs {
            total: 100,
            completed: 100
        }),
        "the run shows its child jobs apart from its items"
    );
    assert!(
        jobs_seen
            .iter()
            .all(|c| c.total == 100 && c.completed <= c.total),
        "all 100 announced at once, never more finished than enqueued: {jobs_seen:?}"
    );
    assert!(
        jobs_seen
            .windows(2)
            .all(|w| w[0].completed < w[1].completed),
        "finished jobs never go backwards: {jobs_seen:?}"
    );
    assert_eq!(run.outcome(), RunOutcome::Succeeded);
    for key in [
        SummaryKey::Total,
        SummaryKey::Processed,
        SummaryKey::Succeeded,
    ] {
        assert_eq!(run.counts().get(key), Some(ITEMS as u64), "{key:?}");
    }
    assert_eq!(ledger, ITEMS);
    // Recorded item by item: the count was seen between chunk boundaries.
    assert!(
        seen.iter().any(|n| n % size as u64 != 0),
        "the count only moved in chunk-sized steps: {seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "never backwards");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_runs_in_chunks_counted_item_by_item_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    a_fan_out_runs_in_chunks_counted_item_by_item(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_runs_in_chunks_counted_item_by_item_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    a_fan_out_runs_in_chunks_counted_item_by_item(url).await
}

/// The restore family with faults injected into its child items: `flaky` fails transiently
/// twice and then works; `broken` always fails transiently.
struct Faulty {
    inner: std::sync::Arc<dyn opsrun_application::families::Family>,
    flaky: opsrun_domain::ItemKey,
    broken: opsrun_domain::ItemKey,
    calls: std::sync::Mutex<std::collections::HashMap<opsrun_domain::ItemKey, u32>>,
}

#[async_trait::async_trait]
impl opsrun_application::families::Describe for Faulty {
    fn operation_type(&self) -> opsrun_domain::OperationType {
        self.inner.operation_type()
    }

    fn label(&self) -> &'static str {
        self.inner.label()
    }

    fn parse_params(
        &self,
        values: &opsrun_application::families::ParamValues,
    ) -> Result<RunParams, opsrun_application::families::ParamError> {
        self.inner.parse_params(values)
    }
}

#[async_trait::async_trait]
impl opsrun_application::families::Family for Faulty {
    fn designed_mode(&self) -> opsrun_domain::ProgressMode {
        self.inner.designed_mode()
    }

    fn fan_out(&self) -> bool {
        true
    }

    async fn execute(
        &self,
        run: opsrun_domain::RunId,
    ) -> Result<opsrun_application::writers::WriterOutcome, opsrun_application::writers::WriterError>
    {
        self.inner.execute(run).await
    }

    async fn execute_child(
        &self,
        parent: opsrun_domain::RunId,
        item: opsrun_domain::ItemKey,
    ) -> Result<opsrun_application::writers::WriterOutcome, opsrun_application::writers::WriterError>
    {
        let n = {
            let mut calls = self
                .calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = calls.entry(item.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if item == self.broken || (item == self.flaky && n <= 2) {
            return Err(opsrun_application::writers::WriterError::Provider(
                opsrun_application::ProviderError::Unavailable("injected".into()),
            ));
        }
        self.inner.execute_child(parent, item).await
    }

    async fn give_up_child(
        &self,
        parent: opsrun_domain::RunId,
        item: opsrun_domain::ItemKey,
    ) -> Result<opsrun_application::writers::WriterOutcome, opsrun_application::writers::WriterError>
    {
        self.inner.give_up_child(parent, item).await
    }
}

/// A restore of `n` items whose parent has frozen its work set and handed it out (no worker
/// runs its child jobs here): the run, the restore family, and the items.
async fn dispatched_restore(
    running: &Running,
    name: &str,
    n: usize,
) -> Result<
    (
        opsrun_domain::RunId,
        std::sync::Arc<dyn opsrun_application::families::Family>,
        Vec<opsrun_domain::ItemKey>,
    ),
    TestError,
> {
    let set = crate::crash::backup_set(running, name, n).await?;
    let id = running
        .start_run(RunParams::BackupSetRestore {
            backup_set_id: set.id,
            item_ids: None,
        })
        .await?;
    let restore = running
        .stack
        .families
        .get(&opsrun_domain::OperationType::BACKUP_SET_RESTORE)
        .ok_or("no restore family")?
        .clone();
    restore.execute(id).await?;
    let items = running
        .backend
        .store
        .work_set(id)
        .await?
        .ok_or("no work set")?
        .units()
        .to_vec();
    assert_eq!(items.len(), n);
    Ok((id, restore, items))
}

/// The service's writers with `faulty` standing in for the restore family.
fn writers_with(
    running: &Running,
    faulty: std::sync::Arc<Faulty>,
) -> Result<opsrun_application::writers::Writers, TestError> {
    let mut families = opsrun_application::families::Families::new();
    families.register(faulty)?;
    Ok(opsrun_application::writers::Writers::with_families(
        running.stack.service.clone(),
        families,
    ))
}

/// A failing item never fails its chunk: a transient failure is tried again after a backoff
/// (and then succeeds), one that keeps failing is recorded `failed` after its attempts, and
/// every other item of the chunk is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_item_never_fails_its_chunk() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    let running = Running::start_without_workers(&url, SimulationSettings::default()).await?;
    let (id, restore, items) = dispatched_restore(&running, "faulty", 20).await?;
    let faulty = std::sync::Arc::new(Faulty {
        inner: restore,
        flaky: items[3].clone(),
        broken: items[7].clone(),
        calls: std::sync::Mutex::default(),
    });
    let writers = writers_with(&running, faulty.clone())?;
    let started = tokio::time::Instant::now();
    opsrun_adapters::chunk::run_chunk(
        &writers,
        id,
        items.clone(),
        opsrun_adapters::chunk::ItemRetries {
            max_attempts: 3,
            first_delay: Duration::from_millis(100),
        },
        None,
    )
    .await?;
    let took = started.elapsed();
    let run = running.backend.store.run(id).await?;
    let ledger = running.backend.store.ledger(id).await?;
    let calls = faulty
        .calls
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    running.stop().await?;
    // Retried in the chunk, after a backoff (100 ms, then 200 ms).
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert_eq!(
        calls[&items[3]], 3,
        "the flaky item: two failures, then done"
    );
    assert_eq!(calls[&items[7]], 3, "the broken item: its three attempts");
    assert_eq!(calls[&items[0]], 1);
    assert!(run.is_completed());
    assert_eq!(run.outcome(), RunOutcome::PartiallySucceeded);
    assert_eq!(run.counts().get(SummaryKey::Processed), Some(20));
    assert_eq!(run.counts().get(SummaryKey::Succeeded), Some(19));
    assert_eq!(run.counts().get(SummaryKey::Failed), Some(1));
    assert_eq!(ledger.len(), 20);
    let broken = ledger
        .entries()
        .find(|(k, _)| **k == items[7])
        .ok_or("the broken item is not in the ledger")?;
    assert_eq!(
        broken.1.reason,
        Some(opsrun_application::reasons::RESTORE_ATTEMPTS_EXHAUSTED)
    );
    Ok(())
}

/// The storage fails under a chunk's combined writes (`table` is gone, a real failed statement
/// on either database, until every item of the chunk's first wave has been tried again): the
/// claims table fails every claim of a combined claim; the simulated tenant's restore table
/// fails its combined restore rows, so the provider call answers unavailable. Each item is
/// tried again after the chunk's backoff, and once the table is back every item is restored
/// and counted exactly once; none is given up or failed.
async fn storage_failing_under_a_chunk_is_retried_item_by_item(
    url: String,
    table: &str,
) -> Result<(), TestError> {
    let running = Running::start_without_workers(&url, SimulationSettings::default()).await?;
    let (id, restore, items) = dispatched_restore(&running, "storage-down", 20).await?;
    // Counts each item's attempts; no item is made to fail by it.
    let absent = opsrun_domain::ItemKey::from_static("not-in-this-run");
    let counted = std::sync::Arc::new(Faulty {
        inner: restore,
        flaky: absent.clone(),
        broken: absent,
        calls: std::sync::Mutex::default(),
    });
    let writers = writers_with(&running, counted.clone())?;
    let db = running.backend.store.connection().clone();
    db.execute_unprepared(&format!("ALTER TABLE {table} RENAME TO {table}_away"))
        .await?;
    // The chunk runs CHUNK_CONCURRENCY items at once. The table comes back once that many
    // have been tried a second time (each first attempt failed, and the chunk tried again),
    // or after 20 s, which fails the test below.
    let wave = opsrun_adapters::chunk::CHUNK_CONCURRENCY.min(20);
    let back = tokio::spawn({
        let (db, back) = (
            db.clone(),
            format!("ALTER TABLE {table}_away RENAME TO {table}"),
        );
        let counted = counted.clone();
        async move {
            let retried = || {
                counted
                    .calls
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .values()
                    .filter(|n| **n >= 2)
                    .count()
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while retried() < wave && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let seen = retried();
            db.execute_unprepared(&back).await.map(|_| seen)
        }
    });
    opsrun_adapters::chunk::run_chunk(
        &writers,
        id,
        items.clone(),
        opsrun_adapters::chunk::ItemRetries {
            max_attempts: 6,
            first_delay: Duration::from_millis(100),
        },
        None,
    )
    .await?;
    let retried_while_gone = back.await??;
    let run = running.backend.store.run(id).await?;
    let ledger = running.backend.store.ledger(id).await?;
    let restored = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT count(*) AS n, count(DISTINCT item_key) AS items FROM restore_results WHERE run_id = {}",
                id.value()
            ),
        ))
        .await?
        .ok_or("no count")?;
    let attempts = counted
        .calls
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    running.stop().await?;
    assert!(
        retried_while_gone >= wave,
        "{retried_while_gone} items of the first wave tried again while {table} was gone: \
         {attempts:?}"
    );
    assert_eq!(attempts.len(), 20, "every item was tried");
    assert!(attempts.values().all(|n| *n <= 6), "{attempts:?}");
    assert!(run.is_completed());
    assert_eq!(run.outcome(), RunOutcome::Succeeded);
    assert_eq!(run.counts().get(SummaryKey::Processed), Some(20));
    assert_eq!(run.counts().get(SummaryKey::Succeeded), Some(20));
    assert_eq!(run.counts().get(SummaryKey::Failed), None);
    assert_eq!(ledger.len(), 20);
    assert_eq!(
        (
            restored.try_get::<i64>("", "n")?,
            restored.try_get::<i64>("", "items")?
        ),
        (20, 20),
        "each item restored at the provider once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_failing_in_storage_are_retried_item_by_item_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    storage_failing_under_a_chunk_is_retried_item_by_item(url, "operation_run_claims").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_failing_in_storage_are_retried_item_by_item_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    storage_failing_under_a_chunk_is_retried_item_by_item(url, "operation_run_claims").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_rows_failing_at_the_provider_are_retried_item_by_item_on_sqlite()
-> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    storage_failing_under_a_chunk_is_retried_item_by_item(url, "restore_results").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_rows_failing_at_the_provider_are_retried_item_by_item_on_postgres()
-> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    storage_failing_under_a_chunk_is_retried_item_by_item(url, "restore_results").await
}

/// A dispatch that dies after its child jobs are in the queue and before they are announced
/// (the announcement's insert fails: a trigger refuses it, a real failed statement) leaves
/// jobs whose numbers nobody announced. Its retry reserves numbers past them, so no announced
/// job shares a number with an orphan: the orphans' completions count for nothing, the child
/// jobs never show more finished than enqueued, and every item is still counted once.
async fn a_dispatch_failing_after_its_jobs_are_queued(url: String) -> Result<(), TestError> {
    const N: usize = 40;
    let running = Running::start_without_workers(&url, SimulationSettings::default()).await?;
    let set = crate::crash::backup_set(&running, "dispatch-dies", N).await?;
    let db = running.backend.store.connection().clone();
    let postgres = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    let (refuse, allow) = if postgres {
        (
            "CREATE FUNCTION opsrun_test_refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected: announcement refused'; END $$; \
             CREATE TRIGGER opsrun_test_refuse BEFORE INSERT ON operation_run_children \
             FOR EACH ROW EXECUTE FUNCTION opsrun_test_refuse()",
            "DROP TRIGGER opsrun_test_refuse ON operation_run_children",
        )
    } else {
        (
            "CREATE TRIGGER opsrun_test_refuse BEFORE INSERT ON operation_run_children \
             BEGIN SELECT RAISE(ABORT, 'injected: announcement refused'); END",
            "DROP TRIGGER opsrun_test_refuse",
        )
    };
    db.execute_unprepared(refuse).await?;
    let id = running
        .start_run(RunParams::BackupSetRestore {
            backup_set_id: set.id,
            item_ids: None,
        })
        .await?;
    let job = opsrun_application::ports::Job::Run { run: id };
    let failed = running.stack.writers.execute(&job).await;
    assert!(
        failed
            .as_ref()
            .is_err_and(|e| e.to_string().contains("announcement refused")),
        "the dispatch failed at its announcement: {failed:?}"
    );
    let next = |db: sea_orm::DatabaseConnection| async move {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!(
                    "SELECT children_next AS next, (SELECT count(*) FROM operation_run_children \
                     WHERE run_id = {0}) AS announced, (SELECT min(job) FROM operation_run_children \
                     WHERE run_id = {0}) AS lowest FROM operation_runs WHERE id = {0}",
                    id.value()
                ),
            ))
            .await?
            .ok_or("no run")?;
        Ok::<_, TestError>((
            row.try_get::<Option<i64>>("", "next")?,
            row.try_get::<i64>("", "announced")?,
            row.try_get::<Option<i64>>("", "lowest")?,
        ))
    };
    // The parent's child jobs in the queue: how many, and their greatest number.
    let queued = |db: sea_orm::DatabaseConnection| async move {
        let parent = if postgres {
            "(convert_from(job, 'UTF8')::jsonb ->> 'parent')::bigint"
        } else {
            "json_extract(CAST(job AS TEXT), '$.parent')"
        };
        let number = if postgres {
            "(convert_from(job, 'UTF8')::jsonb ->> 'job')::bigint"
        } else {
            "json_extract(CAST(job AS TEXT), '$.job')"
        };
        let table = if postgres { "apalis.jobs" } else { "Jobs" };
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!(
                    "SELECT count(*) AS jobs, max({number}) AS highest FROM {table} \
                     WHERE job_type = '{}' AND {parent} = {}",
                    opsrun_adapters::queue::CHILDREN_QUEUE,
                    id.value()
                ),
            ))
            .await?
            .ok_or("no count")?;
        Ok::<_, TestError>((
            row.try_get::<i64>("", "jobs")?,
            row.try_get::<Option<i64>>("", "highest")?,
        ))
    };
    // One number per item was reserved, the jobs went to the queue with numbers below N,
    // nothing was announced.
    assert_eq!(next(db.clone()).await?, (Some(N as i64), 0, None));
    let (orphans, highest) = queued(db.clone()).await?;
    assert!(orphans > 0, "the failed dispatch queued its jobs");
    assert!(highest.is_some_and(|job| job < N as i64), "{highest:?}");
    assert_eq!(running.backend.store.run(id).await?.children(), None);

    db.execute_unprepared(allow).await?;
    running.stack.writers.execute(&job).await?;
    let (reserved, announced, lowest) = next(db.clone()).await?;
    assert_eq!(
        reserved,
        Some(2 * N as i64),
        "the retry reserved numbers past the first"
    );
    assert!(announced > 0);
    assert!(
        lowest.is_some_and(|job| job >= N as i64),
        "no announced job has an orphan's number: lowest {lowest:?}"
    );
    assert_eq!(
        queued(db.clone()).await?.0,
        orphans + announced,
        "the orphans and the announced jobs are in the queue"
    );
    let children = running.backend.store.run(id).await?.children();
    assert_eq!(
        children,
        Some(opsrun_domain::ChildJobs {
            total: u64::try_from(announced)?,
            completed: 0
        })
    );

    // Every job in the queue runs now: the orphans, the announced ones, and the parent's own
    // job (its dispatch finds the rest enqueued or recorded).
    let running = running.with_workers();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let run = loop {
        let run = running.backend.store.run(id).await?;
        if let Some(jobs) = run.children() {
            assert!(jobs.completed <= jobs.total, "{jobs:?}");
        }
        if run.is_completed() && run.children().is_some_and(|j| j.completed == j.total) {
            break run;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the fan-out did not finish: {run:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let ledger = running.backend.store.ledger(id).await?;
    running.stop().await?;
    assert_eq!(run.outcome(), RunOutcome::Succeeded);
    assert_eq!(run.counts().get(SummaryKey::Processed), Some(N as u64));
    assert_eq!(run.counts().get(SummaryKey::Succeeded), Some(N as u64));
    assert_eq!(ledger.len(), N);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dispatch_failing_after_its_jobs_are_queued_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    a_dispatch_failing_after_its_jobs_are_queued(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dispatch_failing_after_its_jobs_are_queued_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    a_dispatch_failing_after_its_jobs_are_queued(url).await
}

/// The statements a fan-out of n items costs the run store, as a function of n and of the
/// record and claim calls its items were coalesced into: the parent's part is constant, each
/// item costs the same fixed number (none of its own: its claim and its record go into
/// combined calls), each record call the same (one statement on PostgreSQL, a transaction on
/// SQLite), each claim call one statement, and the completion is paid once. A change that adds
/// a round trip per item or per call fails.
async fn statements_per_fan_out(
    url: String,
    per_item: u64,
    per_record_call: u64,
    fixed: u64,
) -> Result<(), TestError> {
    let running = Running::start_without_workers(&url, SimulationSettings::default()).await?;
    let sql = running.backend.store.clone();
    let mut cost = Vec::new();
    for (n, name) in [(40_usize, "forty"), (80, "eighty")] {
        let set = crate::crash::backup_set(&running, name, n).await?;
        let id = running
            .start_run(RunParams::BackupSetRestore {
                backup_set_id: set.id,
                item_ids: None,
            })
            .await?;
        let before = sql.statements();
        let calls_before = running.stack.service.coalescer().store_calls();
        let claims_before = running.stack.service.claim_coalescer().store_calls();
        running
            .stack
            .writers
            .execute(&opsrun_application::ports::Job::Run { run: id })
            .await?;
        let items = running
            .backend
            .store
            .work_set(id)
            .await?
            .ok_or("no work set")?
            .units()
            .to_vec();
        // The one read of the work set above is the test's, not the fan-out's.
        let read = 1;
        opsrun_adapters::chunk::run_chunk(
            &running.stack.writers,
            id,
            items,
            opsrun_adapters::chunk::ItemRetries {
                max_attempts: 1,
                first_delay: Duration::from_millis(1),
            },
            None,
        )
        .await?;
        let run = running.backend.store.run(id).await?;
        assert_eq!(run.outcome(), RunOutcome::Succeeded);
        let calls = running.stack.service.coalescer().store_calls() - calls_before;
        let claims = running.stack.service.claim_coalescer().store_calls() - claims_before;
        assert!(
            (n as u64).div_ceil(opsrun_adapters::chunk::CHUNK_CONCURRENCY as u64) <= claims
                && claims <= n as u64,
            "{claims} claim calls for {n} items, {} at once",
            opsrun_adapters::chunk::CHUNK_CONCURRENCY
        );
        assert!(
            (n as u64).div_ceil(opsrun_adapters::chunk::CHUNK_CONCURRENCY as u64) <= calls
                && calls <= n as u64,
            "{calls} record calls for {n} items, {} at once",
            opsrun_adapters::chunk::CHUNK_CONCURRENCY
        );
        cost.push((
            n as u64,
            calls,
            sql.statements() - before - read - 1 - claims,
        ));
    }
    running.stop().await?;
    for (n, calls, statements) in cost {
        assert_eq!(
            statements,
            fixed + per_item * n + per_record_call * calls,
            "statements of a fan-out of {n} items recorded in {calls} calls"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_costs_its_measured_statements_per_item_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    // Per item: nothing of its own. Per record call: BEGIN IMMEDIATE, ledger insert, guarded
    // update, COMMIT (when every key is new the insert and the update go together; see
    // `statements_per_operation`); per claim call one statement. The chunk
    // reads the run once to pick the family and the restore worker once for its tenant; the
    // dispatch reserves its job numbers (one statement) and announces its child jobs in one
    // transaction (BEGIN, run, rows, counts, COMMIT).
    statements_per_fan_out(url, 0, 4, 37).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_costs_its_measured_statements_per_item_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    // Per item: nothing of its own. Per record call and per claim call: one statement. The
    // chunk reads the run once to pick the family and the restore worker once for its tenant;
    // the dispatch reserves its job numbers (one statement) and announces its child jobs in one
    // transaction (BEGIN, run, rows, counts, COMMIT).
    statements_per_fan_out(url, 0, 1, 37).await
}
