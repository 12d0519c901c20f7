//! Run control end to end through the real queue, on SQLite and PostgreSQL: a fan-out paused
//! mid-way holds through a SIGKILL of its worker and a restart, then resumes to exact counts
//! and one notification; a retry of a fan-out's failed items processes exactly those items;
//! a tenant over its concurrency limit never blocks another tenant.

use std::collections::BTreeSet;
use std::time::Duration;

use opsrun_application::access::{Caller, Via};
use opsrun_application::ports::{BackupSetStore, RunQueries, SimulationSettings};
use opsrun_application::start::OperationError;
use opsrun_application::{Role, RunParams, StartRun, TenantScope};
use opsrun_domain::{
    ItemOutcome, OperationRunProgressContract, RunId, RunOutcome, RunStatus, Slug, Staleness,
    SummaryKey,
};
use opsrun_tests::{TestError, add_simulated_tenant, fresh_postgres_database, fresh_sqlite_file};

use crate::runtime::Running;

fn operator(running: &Running) -> Caller {
    Caller {
        user: running.user.clone(),
        role: Role::Operator,
        scope: TenantScope::All,
        via: Via::Local,
    }
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

async fn until(
    what: &str,
    mut check: impl AsyncFnMut() -> Result<bool, TestError>,
) -> Result<(), TestError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !check().await? {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn paused_then_killed_then_resumed(url: String) -> Result<(), TestError> {
    const ITEMS: usize = 400;
    let running = Running::start_without_workers(
        &url,
        SimulationSettings {
            policies: 0,
            latency_ms: 5,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let set = crate::crash::backup_set(&running, "held", ITEMS).await?;
    let artifacts = tempfile::tempdir()?;
    let mut first = crate::crash::worker(&url, artifacts.path())?;
    let id = running
        .start_run(RunParams::BackupSetRestore {
            backup_set_id: set.id,
            item_ids: None,
        })
        .await?;
    until(
        "50 items",
        async || Ok(processed(&running, id).await? >= 50),
    )
    .await?;
    let control = running.stack.control.clone();
    let paused = control.pause(&operator(&running), id).await?;
    assert!(paused.is_paused());
    // In-flight items finish and are recorded; then nothing moves.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let held = processed(&running, id).await?;
    first.start_kill()?; // SIGKILL
    first.wait().await?;
    let mut second = crate::crash::worker(&url, artifacts.path())?;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let run = running.backend.store.run(id).await?;
    let view = OperationRunProgressContract::resolve_at(
        &run,
        Staleness {
            now: opsrun_domain::Timestamp::from_millis(i64::MAX / 2),
            threshold_ms: 1_000,
            window: None,
        },
    );
    assert_eq!(run.counts().get_or_zero(SummaryKey::Processed), held);
    assert!(
        held < ITEMS as u64,
        "the pause came too late to test anything"
    );
    assert_eq!(run.status(), RunStatus::Running);
    assert!(view.paused && !view.stale, "{view:?}");
    assert_eq!(view.processed(), Some(held));
    // A completed run's pause is refused; a second pause changes nothing.
    assert!(control.pause(&operator(&running), id).await?.is_paused());

    control.resume(&operator(&running), id).await?;
    let run = running.completed(id).await?;
    second.start_kill()?;
    second.wait().await?;

    assert_eq!(run.outcome(), RunOutcome::Succeeded);
    for key in [
        SummaryKey::Total,
        SummaryKey::Processed,
        SummaryKey::Succeeded,
    ] {
        assert_eq!(run.counts().get(key), Some(ITEMS as u64), "{key:?}");
    }
    assert_eq!(running.backend.store.ledger(id).await?.len(), ITEMS);
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
    assert!(matches!(
        control.pause(&operator(&running), id).await,
        Err(OperationError::AlreadyCompleted(_))
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_fan_out_holds_through_a_kill_and_resumes_exact_on_sqlite() -> Result<(), TestError>
{
    let (_dir, url) = fresh_sqlite_file()?;
    paused_then_killed_then_resumed(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_fan_out_holds_through_a_kill_and_resumes_exact_on_postgres()
-> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    paused_then_killed_then_resumed(url).await
}

async fn retry_of_failed_items(url: String) -> Result<(), TestError> {
    const ITEMS: usize = 120;
    let running = Running::start(
        &url,
        SimulationSettings {
            policies: 0,
            latency_ms: 0,
            failure_rate: 0.25,
            seed: 9,
        },
    )
    .await?;
    let set = crate::crash::backup_set(&running, "flaky", ITEMS).await?;
    let retry = running.stack.retry.clone();
    let caller = operator(&running);
    let id = running
        .start_run(RunParams::BackupSetRestore {
            backup_set_id: set.id,
            item_ids: None,
        })
        .await?;
    // Not completed yet, or completed: never a retry of an active run.
    if let Err(e) = retry.execute(&caller, id).await {
        assert!(
            matches!(
                e,
                OperationError::Conflict {
                    code: "not_completed",
                    ..
                }
            ),
            "{e:?}"
        );
    }
    let original = running.completed(id).await?;
    let failed: BTreeSet<String> = running
        .backend
        .store
        .ledger(id)
        .await?
        .entries()
        .filter(|(_, e)| e.outcome == ItemOutcome::Failed)
        .map(|(k, _)| k.as_str().to_owned())
        .collect();
    assert!(
        !failed.is_empty() && failed.len() < ITEMS,
        "{} failed",
        failed.len()
    );

    let started = retry.execute(&caller, id).await?;
    let again = retry.execute(&caller, id).await?;
    let retried = running.completed(started.run.id()).await?;

    assert!(!started.reused);
    assert!(again.reused || again.run.id() != started.run.id());
    assert_eq!(retried.retry_of(), Some(id));
    assert_eq!(
        running.backend.store.retries_of(id).await?.first(),
        Some(&started.run.id())
    );
    let n = failed.len() as u64;
    assert_eq!(retried.counts().get(SummaryKey::Total), Some(n));
    assert_eq!(retried.counts().get(SummaryKey::Processed), Some(n));
    let keys: BTreeSet<String> = running
        .backend
        .store
        .ledger(started.run.id())
        .await?
        .entries()
        .map(|(k, _)| k.as_str().to_owned())
        .collect();
    assert_eq!(keys, failed);
    // The original never changes.
    assert_eq!(
        opsrun_tests::without_child_jobs(&running.backend.store.run(id).await?),
        opsrun_tests::without_child_jobs(&original)
    );
    // A run without failures, and a composite family, cannot be retried.
    let clean = running
        .start_run(RunParams::BackupSetRestore {
            backup_set_id: set.id,
            item_ids: Some(vec![]),
        })
        .await?;
    running.completed(clean).await?;
    match retry.execute(&caller, clean).await {
        Err(OperationError::Conflict { code, .. }) => assert_eq!(code, "no_failed_items"),
        other => return Err(format!("a run without failures was retried: {other:?}").into()),
    }
    running.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_processes_exactly_the_failed_items_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    retry_of_failed_items(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_processes_exactly_the_failed_items_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    retry_of_failed_items(url).await
}

async fn fairness(url: String) -> Result<(), TestError> {
    const SLOW: usize = 20;
    // Tenant A: every provider call takes 1.5 s, so each run holds a worker for seconds.
    let running = Running::start(
        &url,
        SimulationSettings {
            policies: 40,
            latency_ms: 1_500,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let other = add_simulated_tenant(
        &running.backend.store,
        &running.backend.simulated,
        running.tenant.workspace,
        &Slug::parse("globex")?,
        SimulationSettings {
            policies: 8,
            latency_ms: 0,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let limit = running.stack.service.tenant_limit();
    let mut slow = Vec::new();
    for i in 0..SLOW {
        let set = running
            .backend
            .families
            .create_backup_set(running.tenant.id, &format!("slow-{i}"))
            .await?;
        slow.push(
            running
                .start_run(RunParams::BackupSetAddPolicies {
                    backup_set_id: set.id,
                    policy_ids: vec![
                        opsrun_adapters::simulated::policy_id(1),
                        opsrun_adapters::simulated::policy_id(2),
                    ],
                })
                .await?,
        );
    }
    until("the tenant's slots to fill", async || {
        let mut n = 0;
        for id in &slow {
            n += usize::from(running.backend.store.run(*id).await?.status() == RunStatus::Running);
        }
        Ok(n == limit as usize)
    })
    .await?;
    let fast = running
        .stack
        .service
        .start_run(StartRun {
            workspace: other.workspace,
            tenant: other.id,
            params: RunParams::InventorySync { policy_types: None },
            initiator: Some(running.user.id),
            parent: None,
            retry_of: None,
        })
        .await?
        .run
        .id();
    let done = running.completed(fast).await?;
    let mut running_a = 0;
    let mut waiting = 0;
    for id in &slow {
        let run = running.backend.store.run(*id).await?;
        running_a += usize::from(run.status() == RunStatus::Running);
        if run.status() == RunStatus::Queued {
            waiting += usize::from(run.waiting().is_some_and(|w| w.starts_with("waiting: ")));
        }
    }
    let waited = done
        .started_at()
        .ok_or("no start")?
        .millis_since(done.created_at());

    assert_eq!(done.outcome(), RunOutcome::Succeeded);
    assert!(waited < 1_000, "the other tenant's run waited {waited} ms");
    assert!(
        running_a <= limit as usize,
        "{running_a} runs of one tenant ran at once"
    );
    assert!(waiting > 0, "no queued run says why it waits");
    for id in slow {
        running.stack.service.cancel_run(id, None).await?;
    }
    running.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_over_its_limit_never_blocks_another_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    fairness(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_over_its_limit_never_blocks_another_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    fairness(url).await
}

async fn an_estimate_only_with_evidence(url: String) -> Result<(), TestError> {
    let running = Running::start(
        &url,
        SimulationSettings {
            policies: 0,
            latency_ms: 500,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let set = crate::crash::backup_set(&running, "timed", 600).await?;
    let caller = operator(&running);
    let id = running
        .start_run(RunParams::BackupSetRestore {
            backup_set_id: set.id,
            item_ids: None,
        })
        .await?;
    let models = running.stack.models.clone();
    until(
        "5 records",
        async || Ok(processed(&running, id).await? >= 5),
    )
    .await?;
    let first_records = tokio::time::Instant::now();
    let early = models.run(&caller, id).await?.progress;
    // The read that first shows an estimate is the one examined (a second read could fall
    // between two records, where the evidence rules may judge the window apart).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let with_pace = loop {
        let summary = models.run(&caller, id).await?;
        if summary.progress.pace.is_some() {
            break summary;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("no estimate within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let appeared_after = first_records.elapsed();
    running.stack.control.pause(&caller, id).await?;
    let paused = models.run(&caller, id).await?.progress;
    running.stack.control.resume(&caller, id).await?;
    let done = running.completed(id).await?;
    let after = models.run(&caller, id).await?.progress;

    // Thin evidence (under 3 s of records): no estimate.
    assert_eq!(early.pace, None, "{early:?}");
    let pace = with_pace.progress.pace.ok_or("no pace")?;
    let left = 600 - with_pace.progress.processed().ok_or("no count")?;
    // Not before 1 s of records (a full window) at the earliest.
    assert!(
        appeared_after >= Duration::from_millis(500),
        "{appeared_after:?}"
    );
    // 8 workers, each on a chunk of 6 items run at once, × 2 calls/s: a rate of that order
    // (at most 96/s, so the run lasts over 6 s), and an ETA that fits it.
    assert!((5.0..=96.0).contains(&pace.rate()), "rate {}", pace.rate());
    assert!(
        pace.eta_seconds >= 1 && left > 0,
        "{pace:?} with {left} left"
    );
    assert_eq!(paused.pace, None);
    assert!(paused.paused);
    assert_eq!(done.outcome(), RunOutcome::Succeeded);
    assert_eq!(after.pace, None);
    running.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_estimate_appears_only_with_evidence_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    an_estimate_only_with_evidence(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_estimate_appears_only_with_evidence_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    an_estimate_only_with_evidence(url).await
}

async fn small_fan_out_beside_a_large_one(url: String) -> Result<(), TestError> {
    const LARGE: usize = 600;
    // Every restore call takes 200 ms: the large fan-out (100 chunks of 6 items, each chunk's
    // items at once) needs at least 2.5 s on 8 workers, at a write rate (at most 240
    // records/s) a loaded machine keeps up with.
    let running = Running::start(
        &url,
        SimulationSettings {
            policies: 0,
            latency_ms: 200,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let large = crate::crash::backup_set(&running, "large", LARGE).await?;
    let other = add_simulated_tenant(
        &running.backend.store,
        &running.backend.simulated,
        running.tenant.workspace,
        &Slug::parse("globex")?,
        SimulationSettings {
            policies: 0,
            latency_ms: 200,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let small = running
        .backend
        .families
        .create_backup_set(other.id, "small")
        .await?;
    let seed = opsrun_application::ports::WorkKey {
        run: RunId::new(0),
        item: opsrun_domain::ItemKey::parse("seed")?,
    };
    for i in 0..16 {
        running
            .backend
            .families
            .add_item(
                &seed,
                small.id,
                opsrun_application::ports::PolicyPayload {
                    policy: opsrun_application::ports::Policy {
                        id: format!("small-{i}"),
                        policy_type: "device_configuration".into(),
                        name: format!("small {i}"),
                    },
                    body: "{}".into(),
                },
            )
            .await?;
    }
    let big = running
        .start_run(RunParams::BackupSetRestore {
            backup_set_id: large.id,
            item_ids: None,
        })
        .await?;
    until("the large fan-out under way", async || {
        Ok(processed(&running, big).await? >= 50)
    })
    .await?;
    let began = tokio::time::Instant::now();
    let id = running
        .stack
        .service
        .start_run(StartRun {
            workspace: other.workspace,
            tenant: other.id,
            params: RunParams::BackupSetRestore {
                backup_set_id: small.id,
                item_ids: None,
            },
            initiator: Some(running.user.id),
            parent: None,
            retry_of: None,
        })
        .await?
        .run
        .id();
    let done = running.completed(id).await?;
    let took = began.elapsed();
    let large_left = LARGE as u64 - processed(&running, big).await?;
    running.completed(big).await?;

    assert_eq!(done.outcome(), RunOutcome::Succeeded);
    assert_eq!(done.counts().get(SummaryKey::Processed), Some(16));
    assert!(
        large_left > 200,
        "the large fan-out ended too soon to test anything"
    );
    // Behind ~1,800 queued children it would take seconds; in its own round it takes a few
    // worker turns.
    assert!(
        took < Duration::from_millis(1_500),
        "the small fan-out took {took:?}"
    );
    running.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_fan_out_is_not_stuck_behind_a_large_one_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    small_fan_out_beside_a_large_one(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_fan_out_is_not_stuck_behind_a_large_one_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    small_fan_out_beside_a_large_one(url).await
}
