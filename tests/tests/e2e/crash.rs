//! Crash recovery through the real queue: a worker process killed with SIGKILL in the middle of
//! a 2,000-child fan-out, then restarted, ends with exact counts and one notification. And a
//! job that always fails ends its run failed after its attempts; a stale run is failed.

use std::process::Stdio;
use std::time::{Duration, Instant};

use opsrun_application::RunParams;
use opsrun_application::ports::Clock;
use opsrun_application::ports::SimulationSettings;
use opsrun_application::ports::{BackupSetStore, Policy, PolicyPayload, RunQueries, WorkKey};
use opsrun_domain::{ItemKey, RunId, RunOutcome, RunStatus, SummaryKey, Timestamp};
use opsrun_tests::{TestError, fresh_postgres_database, fresh_sqlite_file};

use crate::runtime::Running;

const CHILDREN: usize = 2_000;

pub(crate) fn worker(
    url: &str,
    artifacts: &std::path::Path,
) -> Result<tokio::process::Child, TestError> {
    Ok(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_opsrun-under-test"))
            .args([
                "--database-url",
                url,
                "--artifacts",
                &artifacts.display().to_string(),
                "worker",
                "--workers",
                "4",
                "--heartbeat-ms",
                "1000",
                "--missed-heartbeats",
                "3",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?,
    )
}

async fn processed(running: &Running, id: RunId) -> Result<u64, TestError> {
    Ok(running
        .backend
        .store
        .run(id)
        .await?
        .counts()
        .get_or_zero(SummaryKey::Processed))
}

/// A backup set of `items` policies, written directly (setup, not a run under test).
pub(crate) async fn backup_set(
    running: &Running,
    name: &str,
    items: usize,
) -> Result<opsrun_application::ports::BackupSet, TestError> {
    let set = running
        .backend
        .families
        .create_backup_set(running.tenant.id, name)
        .await?;
    let seed = WorkKey {
        run: RunId::new(0),
        item: ItemKey::parse("seed")?,
    };
    for i in 0..items {
        let policy = Policy {
            id: format!("{name}-{i:05}"),
            policy_type: "device_configuration".into(),
            name: format!("{name} {i}"),
        };
        running
            .backend
            .families
            .add_item(
                &seed,
                set.id,
                PolicyPayload {
                    policy,
                    body: "{}".into(),
                },
            )
            .await?;
    }
    Ok(set)
}

async fn killed_worker_mid_fan_out(url: String) -> Result<(), TestError> {
    // The test process starts runs and watches; only the worker processes execute jobs.
    let running = Running::start_without_workers(
        &url,
        SimulationSettings {
            policies: 0,
            latency_ms: 2,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let set = backup_set(&running, "big", CHILDREN).await?;
    let artifacts = tempfile::tempdir()?;
    let mut first = worker(&url, artifacts.path())?;
    let id = running
        .start_run(RunParams::BackupSetRestore {
            backup_set_id: set.id,
            item_ids: None,
        })
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while processed(&running, id).await? < 300 {
        if tokio::time::Instant::now() > deadline {
            return Err("the first worker made no progress".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.start_kill()?; // SIGKILL
    first.wait().await?;
    let at_kill = processed(&running, id).await?;
    let mut second = worker(&url, artifacts.path())?;
    let run = running.completed(id).await?;
    second.start_kill()?;
    second.wait().await?;

    assert!(
        at_kill < CHILDREN as u64,
        "the kill came too late to test anything"
    );
    assert_eq!(run.status(), RunStatus::Completed);
    assert_eq!(run.outcome(), RunOutcome::Succeeded);
    assert_eq!(run.counts().get(SummaryKey::Total), Some(CHILDREN as u64));
    assert_eq!(
        run.counts().get(SummaryKey::Processed),
        Some(CHILDREN as u64)
    );
    assert_eq!(
        run.counts().get(SummaryKey::Succeeded),
        Some(CHILDREN as u64)
    );
    assert_eq!(running.backend.store.ledger(id).await?.len(), CHILDREN);
    assert_eq!(
        running
            .backend
            .store
            .notifications(running.user.id)
            .await?
            .len(),
        1
    );
    assert_eq!(running.backend.store.audit_events(id).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_fan_out_and_restarted_ends_exact_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    killed_worker_mid_fan_out(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_fan_out_and_restarted_ends_exact_on_postgres() -> Result<(), TestError>
{
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    killed_worker_mid_fan_out(url).await
}

async fn a_job_that_always_fails(url: String) -> Result<(), TestError> {
    use std::sync::Arc;

    use opsrun_application::testing::FakeTenant;
    use opsrun_application::writers::{WriterPorts, WriterSettings, Writers};

    let running = Running::start_without_workers(&url, SimulationSettings::default()).await?;
    // A provider that is unavailable on every call: each attempt fails transiently.
    let down = Arc::new(FakeTenant::new(4, &[]));
    for call in 1..=1_000 {
        down.fail_transiently_at(call);
    }
    let stack = &running.stack;
    let writers = Writers::new(
        stack.service.clone(),
        WriterSettings::default(),
        WriterPorts {
            provider: down.clone(),
            inventory: running.backend.families.clone(),
            review_source: down.clone(),
            artifacts: running.backend.families.clone(),
            evidence_source: down.clone(),
            snapshots: running.backend.families.clone(),
            backup_sets: running.backend.families.clone(),
            restore_target: down.clone(),
            baselines: running.backend.families.clone(),
            queue: Arc::new(running.backend.queue.clone()),
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let queue = running.backend.queue.clone();
    let workers = tokio::spawn(async move {
        queue
            .run_workers(writers, async move {
                let _ = stopped.await;
                Ok(())
            })
            .await
    });
    let id = running
        .start_run(RunParams::InventorySync {
            policy_types: Some(vec!["compliance_policy".into()]),
        })
        .await?;

    let run = running.completed(id).await?;
    let _ = stop.send(());
    workers.await??;

    assert_eq!(run.outcome(), RunOutcome::Failed);
    assert_eq!(run.failures()[0].code.as_str(), "run.attempts_exhausted");
    // The default of 5 attempts, each calling the provider once for the one type.
    assert_eq!(down.calls(), 5);
    assert_eq!(run.counts().get(SummaryKey::Processed), Some(0));
    assert_eq!(
        running
            .backend
            .store
            .notifications(running.user.id)
            .await?
            .len(),
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_always_fails_ends_its_run_failed_after_its_attempts_on_sqlite()
-> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    a_job_that_always_fails(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_always_fails_ends_its_run_failed_after_its_attempts_on_postgres()
-> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    a_job_that_always_fails(url).await
}

async fn a_stale_run_is_failed(url: String) -> Result<(), TestError> {
    use opsrun_application::worker::{RuntimeSettings, maintain};

    let running = Running::start_without_workers(&url, SimulationSettings::default()).await?;
    // Started, marked running by a worker that then vanished with its job.
    let id = running.start_run(RunParams::BaselineCapture).await?;
    running.stack.service.mark_running(id).await?;
    let fresh = running
        .start_run(RunParams::EvidenceSnapshotGenerate { dimensions: None })
        .await?;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    running.stack.service.mark_running(fresh).await?;

    let pass = maintain(
        &running.stack.service,
        &running.stack.families,
        running.stack.retention.as_ref(),
        RuntimeSettings {
            requeue_after: Duration::from_secs(opsrun_app::config::REQUEUE_AFTER_SECS),
            retain_for: Duration::from_secs(14 * 86_400),
            stale_after: Duration::from_secs(1),
            maintenance_every: Duration::from_secs(30),
            max_attempts: 5,
        },
    )
    .await?;

    assert_eq!(pass.stale, vec![id]);
    let run = running.backend.store.run(id).await?;
    assert_eq!(run.outcome(), RunOutcome::Failed);
    assert_eq!(run.failures()[0].code.as_str(), "run.stale");
    assert!(!running.backend.store.run(fresh).await?.is_completed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_run_is_failed_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    a_stale_run_is_failed(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_run_is_failed_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    a_stale_run_is_failed(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_worker_processes_on_postgres_share_a_fan_out_exactly() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    let running = Running::start_without_workers(
        &url,
        SimulationSettings {
            policies: 0,
            latency_ms: 1,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let set = backup_set(&running, "shared", 600).await?;
    let artifacts = tempfile::tempdir()?;
    let mut a = worker(&url, artifacts.path())?;
    let mut b = worker(&url, artifacts.path())?;
    let id = running
        .start_run(RunParams::BackupSetRestore {
            backup_set_id: set.id,
            item_ids: None,
        })
        .await?;

    let run = running.completed(id).await?;
    let a_alive = a.try_wait()?.is_none();
    let b_alive = b.try_wait()?.is_none();
    a.start_kill()?;
    b.start_kill()?;

    assert!(a_alive && b_alive, "both workers ran until the end");
    assert_eq!(run.outcome(), RunOutcome::Succeeded);
    assert_eq!(run.counts().get(SummaryKey::Processed), Some(600));
    assert_eq!(running.backend.store.ledger(id).await?.len(), 600);
    assert_eq!(
        running
            .backend
            .store
            .notifications(running.user.id)
            .await?
            .len(),
        1
    );
    Ok(())
}

/// No run waits for ever: a queued run whose job row is gone (deleted here, as a lost or
/// pruned job would be) gets a new job from the maintenance pass, and then runs to the end.
/// A run whose job still waits gets no second one.
async fn a_queued_run_whose_job_is_lost_runs_after_maintenance(
    url: String,
) -> Result<(), TestError> {
    use opsrun_application::ports::JobQueue;
    use opsrun_application::worker::{RuntimeSettings, maintain};
    use sea_orm::ConnectionTrait;

    let running = Running::start_without_workers(&url, SimulationSettings::default()).await?;
    let lost = running
        .start_run(RunParams::EvidenceSnapshotGenerate { dimensions: None })
        .await?;
    let waiting = running.start_run(RunParams::BaselineCapture).await?;
    let db = opsrun_adapters::sql::connect(&url, 1).await?;
    let delete = if url.starts_with("postgres") {
        format!(
            "DELETE FROM apalis.jobs WHERE (convert_from(job, 'UTF8')::jsonb ->> 'run') = '{}'",
            lost.value()
        )
    } else {
        format!(
            "DELETE FROM Jobs WHERE json_extract(CAST(job AS TEXT), '$.run') = {}",
            lost.value()
        )
    };
    let deleted = db.execute_unprepared(&delete).await?.rows_affected();
    let queue = running.backend.queue.clone();
    let before = (
        queue.has_run_job(lost).await?,
        queue.has_run_job(waiting).await?,
    );

    let pass = maintain(
        &running.stack.service,
        &running.stack.families,
        running.stack.retention.as_ref(),
        RuntimeSettings {
            requeue_after: Duration::ZERO,
            retain_for: Duration::from_secs(14 * 86_400),
            stale_after: Duration::from_secs(opsrun_app::config::STALE_AFTER_SECS),
            maintenance_every: Duration::from_secs(30),
            max_attempts: 5,
        },
    )
    .await?;
    let after = queue.has_run_job(lost).await?;
    let running = running.with_workers();
    let run = running.completed(lost).await?;
    let other = running.completed(waiting).await?;
    running.stop().await?;

    assert_eq!(deleted, 1);
    assert_eq!(before, (false, true));
    assert_eq!(pass.requeued, vec![lost]);
    assert!(after);
    assert_eq!(run.outcome(), RunOutcome::Succeeded);
    assert_eq!(other.outcome(), RunOutcome::Succeeded);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_run_whose_job_is_lost_runs_after_maintenance_on_sqlite() -> Result<(), TestError>
{
    let (_dir, url) = fresh_sqlite_file()?;
    a_queued_run_whose_job_is_lost_runs_after_maintenance(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_run_whose_job_is_lost_runs_after_maintenance_on_postgres() -> Result<(), TestError>
{
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    a_queued_run_whose_job_is_lost_runs_after_maintenance(url).await
}

/// Retention prunes what no run needs: a finished run's `Done` jobs, the rows of workers that
/// stopped, and old notifications, in bounded batches; a queued run's waiting job is kept, and
/// a second pass finds nothing left.
async fn retention_prunes_only_what_no_run_needs(url: String) -> Result<(), TestError> {
    use opsrun_application::ports::{JobQueue, Pruned};

    use opsrun_application::ports::{AttemptRecord, NewEndpoint, WebhookStore};

    let running = Running::start(&url, SimulationSettings::default()).await?;
    // A webhook endpoint: the completion below writes one delivery for it.
    let hooks = running.backend.store.clone();
    let endpoint = hooks
        .add_endpoint(NewEndpoint {
            workspace: running.tenant.workspace,
            url: "https://hooks.example.com/opsrun".to_owned(),
            events: [opsrun_domain::WebhookEvent::Completed].into(),
            scope: opsrun_application::TenantScope::All,
            secret: "whsec_test".to_owned(),
            created_by: None,
            at: Timestamp::from_millis(0),
        })
        .await?;
    let done = running
        .start_run(RunParams::EvidenceSnapshotGenerate { dimensions: None })
        .await?;
    running.completed(done).await?;
    // It ends failed; a redelivery of it stays pending (and is kept).
    let delivery = hooks.deliveries(endpoint.id, 10).await?[0].clone();
    let claimed = hooks
        .claim_due(
            delivery.occurred_at,
            delivery.occurred_at.plus_millis(1),
            10,
        )
        .await?;
    assert_eq!(claimed.len(), 1);
    hooks
        .record_attempt(
            delivery.id,
            claimed[0].lease_until,
            AttemptRecord {
                at: delivery.occurred_at,
                status: Some(500),
                latency_ms: 1,
                error: Some("the endpoint answered 500".to_owned()),
                state: opsrun_domain::DeliveryState::Failed,
                next_attempt_at: None,
            },
        )
        .await?;
    hooks
        .redeliver(endpoint.id, delivery.id, delivery.occurred_at)
        .await?;
    let (backend, stack, user, tenant) = (
        running.backend.clone(),
        running.stack.clone(),
        running.user.clone(),
        running.tenant.clone(),
    );
    // Started only once no worker runs, so its job is sure to be waiting.
    running.stop().await?;
    let waiting = stack
        .service
        .start_run(opsrun_application::StartRun {
            workspace: tenant.workspace,
            tenant: tenant.id,
            params: RunParams::BaselineCapture,
            initiator: Some(user.id),
            parent: None,
            retry_of: None,
        })
        .await?
        .run
        .id();
    let later =
        Timestamp::from_millis(opsrun_adapters::clock::SystemClock.now().as_millis() + 86_400_000);

    let before = queue_rows(backend.queue.connection()).await?;
    let first = stack.retention.prune(later, 1_000).await?;
    let between = queue_rows(backend.queue.connection()).await?;
    let second = stack.retention.prune(later, 1_000).await?;
    let kept = backend.queue.has_run_job(waiting).await?;
    let notes = backend.store.notifications(user.id).await?;

    // On a mismatch, the queue's rows before and between the passes say why.
    let rows = format!("{first:?} {second:?}\nbefore: {before}\nbetween: {between}");
    assert_eq!(first.jobs, 1, "{rows}");
    assert_eq!(first.workers, 2, "{rows}");
    assert_eq!(first.notifications, 1, "{rows}");
    assert_eq!(first.webhook_deliveries, 1, "{rows}");
    assert_eq!(second, Pruned::default(), "{rows}");
    let left = hooks.deliveries(endpoint.id, 10).await?;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, opsrun_domain::DeliveryState::Pending);
    assert!(kept);
    assert!(notes.is_empty());
    Ok(())
}

/// The queue's worker and job rows, one line each (for a failure message).
async fn queue_rows(db: &sea_orm::DatabaseConnection) -> Result<String, TestError> {
    use sea_orm::ConnectionTrait as _;
    let backend = db.get_database_backend();
    let (workers, jobs) = if backend == sea_orm::DbBackend::Postgres {
        (
            "SELECT id || ' ' || last_seen::text AS row FROM apalis.workers ORDER BY id",
            "SELECT id || ' ' || status || ' ' || coalesce(lock_by, '-') || ' ' || job_type \
             AS row FROM apalis.jobs ORDER BY id",
        )
    } else {
        (
            "SELECT id || ' ' || last_seen AS row FROM Workers ORDER BY id",
            "SELECT id || ' ' || status || ' ' || coalesce(lock_by, '-') || ' ' || job_type \
             AS row FROM Jobs ORDER BY id",
        )
    };
    let mut out = Vec::new();
    for sql in [workers, jobs] {
        for row in db
            .query_all_raw(sea_orm::Statement::from_string(backend, sql))
            .await?
        {
            out.push(row.try_get::<String>("", "row")?);
        }
    }
    Ok(out.join("; "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_prunes_only_what_no_run_needs_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    retention_prunes_only_what_no_run_needs(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_prunes_only_what_no_run_needs_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    retention_prunes_only_what_no_run_needs(url).await
}

/// Cancel takes effect before side effects: a restore cancelled while its children are inside
/// slow provider calls ends with counts that agree with what the provider did. Every restore
/// the provider performed is a `succeeded` item or an item the cancel counted as in flight
/// (`skipped`, `run.cancelled_in_flight`); every `succeeded` item was restored; no provider call
/// starts after the cancel.
async fn a_cancel_mid_fan_out_agrees_with_the_provider(url: String) -> Result<(), TestError> {
    let running = Running::start(
        &url,
        SimulationSettings {
            policies: 0,
            // Long calls: the cancel is made while at least two calls that started less than
            // `FRESH` ago are in flight, so it lands inside them even if it waits for SQLite's
            // write lock behind the workers' records or for a turn on a loaded machine.
            latency_ms: LATENCY.as_millis() as i64,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let exercised = cancel_mid_fan_out(&running, &url, "slow").await?;
    running.stop().await?;
    assert!(
        exercised,
        "the cancel found no call in flight: nothing was tested"
    );
    Ok(())
}

/// How long each restore takes at the provider in the cancel test.
const LATENCY: Duration = Duration::from_millis(2_000);
/// How recently the calls the cancel is aimed at started: each has at least `LATENCY - FRESH`
/// to go when the cancel is made.
const FRESH: Duration = Duration::from_millis(500);

/// One restore cancelled while calls are in flight; whether the cancel found any.
async fn cancel_mid_fan_out(running: &Running, url: &str, name: &str) -> Result<bool, TestError> {
    use opsrun_application::reasons::RUN_CANCELLED_IN_FLIGHT;
    use opsrun_domain::ItemOutcome;
    use sea_orm::ConnectionTrait;

    let set = backup_set(running, name, 400).await?;
    let id = running
        .start_run(RunParams::BackupSetRestore {
            backup_set_id: set.id,
            item_ids: None,
        })
        .await?;
    let db = opsrun_adapters::sql::connect(url, 1).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Cancel while calls are under way, counted at the provider (on a loaded machine the
    // workers can sit between items at any given instant, and then the cancel would test
    // nothing).
    let aimed_at = loop {
        let fresh = running.restores.started_within(FRESH);
        if fresh.len() >= 2 && processed(running, id).await? >= 10 {
            break fresh;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the restore made no progress".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let asked = Instant::now();
    let cancelled = running.stack.service.cancel_run(id, None).await?;
    let took = asked.elapsed();
    // Let every call that was in flight end at the provider.
    tokio::time::sleep(LATENCY + Duration::from_millis(1_000)).await;
    let restored_rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT item_key FROM restore_results WHERE run_id = {}",
                id.value()
            ),
        ))
        .await?;
    let mut restored = std::collections::BTreeSet::new();
    for row in &restored_rows {
        restored.insert(ItemKey::parse(&row.try_get::<String>("", "item_key")?)?);
    }
    let run = running.backend.store.run(id).await?;
    let ledger = running.backend.store.ledger(id).await?;

    assert!(cancelled.won);
    assert_eq!(run.outcome(), RunOutcome::Cancelled);
    assert_eq!(
        opsrun_tests::without_child_jobs(&run),
        opsrun_tests::without_child_jobs(&cancelled.run),
        "nothing moved after the cancel (but its stopped child jobs finishing)"
    );
    let jobs = run.children().ok_or("the fan-out shows no child jobs")?;
    assert!(jobs.completed <= jobs.total, "{jobs:?}");
    let succeeded: std::collections::BTreeSet<ItemKey> = ledger
        .entries()
        .filter(|(_, e)| e.outcome == ItemOutcome::Succeeded)
        .map(|(k, _)| k.clone())
        .collect();
    let in_flight: std::collections::BTreeSet<ItemKey> = ledger
        .entries()
        .filter(|(_, e)| {
            e.outcome == ItemOutcome::Skipped && e.reason == Some(RUN_CANCELLED_IN_FLIGHT)
        })
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(ledger.len(), succeeded.len() + in_flight.len());
    assert!(
        succeeded.is_subset(&restored),
        "a succeeded item the provider never restored"
    );
    let unaccounted: Vec<&ItemKey> = restored
        .iter()
        .filter(|k| !succeeded.contains(*k) && !in_flight.contains(*k))
        .collect();
    assert!(
        unaccounted.is_empty(),
        "the provider restored {} item(s) the counts do not show: {unaccounted:?}",
        unaccounted.len()
    );
    assert_eq!(
        run.counts().get(SummaryKey::Processed),
        Some(ledger.len() as u64)
    );
    assert_eq!(
        run.counts().get(SummaryKey::Skipped),
        Some(in_flight.len() as u64)
    );
    // The calls the cancel was aimed at had at least `LATENCY - FRESH` to go, so none had a
    // record yet: the cancel counted each of them in flight.
    assert!(
        took < LATENCY - FRESH,
        "the cancel took {took:?}: the calls it was aimed at could have ended first"
    );
    let missed: Vec<&ItemKey> = aimed_at
        .iter()
        .filter(|k| !in_flight.contains(*k))
        .collect();
    assert!(
        missed.is_empty(),
        "calls in flight at the provider when the cancel was made, not counted in flight: {missed:?} (counted: {in_flight:?})"
    );
    Ok(!in_flight.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_mid_fan_out_agrees_with_the_provider_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    a_cancel_mid_fan_out_agrees_with_the_provider(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_mid_fan_out_agrees_with_the_provider_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    a_cancel_mid_fan_out_agrees_with_the_provider(url).await
}
