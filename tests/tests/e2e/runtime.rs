//! Every run family end to end through the real queue (apalis) and workers, against the
//! simulated tenant provider, on SQLite and PostgreSQL, with exact expected counts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use opsrun_adapters::backend::{BackendOptions, SqlBackend};
use opsrun_adapters::queue::QueueSettings;
use opsrun_adapters::simulated::{DIMENSIONS, POLICY_TYPES, SECTIONS, fails, policy_id};
use opsrun_app::wiring::Stack;
use opsrun_application::ProviderError;
use opsrun_application::ports::{
    BackupItem, BackupSetStore, BaselineStore, DirectoryAdmin, RestoreTarget, RunQueries,
    SimulationSettings, Tenant, User, WorkKey,
};
use opsrun_application::{RunParams, StartRun};
use opsrun_domain::{OperationRun, RunId, RunOutcome, Slug, TenantId, Timestamp};
use opsrun_tests::{TestError, add_simulated_tenant, fresh_postgres_database, fresh_sqlite_file};

const SEED: i64 = 42;
const RATE: f64 = 0.2;
const POLICIES: i64 = 40;

pub(crate) struct Running {
    /// The adapters, for checks of what they stored.
    pub backend: SqlBackend,
    pub stack: Stack,
    pub tenant: Tenant,
    pub user: User,
    /// The restores the provider is performing right now (the stack's restore target is
    /// wrapped to count them).
    pub restores: Arc<RestoresInFlight>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    workers: Option<tokio::task::JoinHandle<Result<(), opsrun_adapters::queue::QueueRunError>>>,
    _dir: tempfile::TempDir,
}

/// The provider's restores in flight: started and not yet returned, each with when it started.
/// A test that must act while calls are under way reads it here, at the provider, not from the
/// database (a claim without a record there can be a call that already ended, its record still
/// on its way in a combined write).
pub(crate) struct RestoresInFlight {
    inner: Arc<dyn RestoreTarget>,
    started: Mutex<Vec<(WorkKey, Instant)>>,
}

impl RestoresInFlight {
    fn calls(&self) -> std::sync::MutexGuard<'_, Vec<(WorkKey, Instant)>> {
        self.started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The items of the restores in flight that started less than `within` ago.
    pub(crate) fn started_within(&self, within: Duration) -> Vec<opsrun_domain::ItemKey> {
        self.calls()
            .iter()
            .filter(|(_, at)| at.elapsed() < within)
            .map(|(key, _)| key.item.clone())
            .collect()
    }
}

#[async_trait]
impl RestoreTarget for RestoresInFlight {
    async fn restore(
        &self,
        key: &WorkKey,
        tenant: TenantId,
        item: &BackupItem,
    ) -> Result<(), ProviderError> {
        // Taken out of the list however the call ends (a cancelled job drops it midway).
        struct Ended<'a>(&'a RestoresInFlight, &'a WorkKey);
        impl Drop for Ended<'_> {
            fn drop(&mut self) {
                let mut calls = self.0.calls();
                if let Some(i) = calls.iter().position(|(k, _)| k == self.1) {
                    calls.swap_remove(i);
                }
            }
        }
        self.calls().push((key.clone(), Instant::now()));
        let _ended = Ended(self, key);
        self.inner.restore(key, tenant, item).await
    }
}

impl Running {
    pub(crate) async fn start(url: &str, settings: SimulationSettings) -> Result<Self, TestError> {
        Ok(Self::start_without_workers(url, settings)
            .await?
            .with_workers())
    }

    /// The same, with the queue's workers now running in this process.
    pub(crate) fn with_workers(self) -> Self {
        let mut running = self;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let queue = running.backend.queue.clone();
        let writers = running.stack.writers.clone();
        running.workers = Some(tokio::spawn(async move {
            queue
                .run_workers(writers, async move {
                    let _ = stopped.await;
                    Ok(())
                })
                .await
        }));
        running.stop = Some(stop);
        running
    }

    /// The stack, a tenant and a user, with no workers in this process.
    pub(crate) async fn start_without_workers(
        url: &str,
        settings: SimulationSettings,
    ) -> Result<Self, TestError> {
        let dir = tempfile::tempdir()?;
        let backend = SqlBackend::open(&BackendOptions {
            database_url: url.to_owned(),
            artifacts: dir.path().join("artifacts"),
            queue: QueueSettings {
                poll_interval: Duration::from_millis(20),
                heartbeat: Duration::from_secs(1),
                missed_heartbeats: 3,
                retry_delay: Duration::from_millis(20),
                ..QueueSettings::default()
            },
            max_connections: 16,
        })
        .await?;
        let mut ports = backend.ports();
        let restores = Arc::new(RestoresInFlight {
            inner: ports.restore_target.clone(),
            started: Mutex::new(Vec::new()),
        });
        ports.restore_target = restores.clone();
        let stack = Stack::wire(&ports, opsrun_app::config::STALE_AFTER_MS);
        let workspace = backend
            .store
            .workspace(&Slug::parse("demo")?, true, Timestamp::from_millis(0))
            .await?;
        let tenant = add_simulated_tenant(
            &backend.store,
            &backend.simulated,
            workspace,
            &Slug::parse("contoso")?,
            settings,
        )
        .await?;
        let user = backend
            .store
            .ensure_user(workspace, "ops@example.com", Timestamp::from_millis(0))
            .await?;
        Ok(Self {
            backend,
            stack,
            tenant,
            user,
            restores,
            stop: None,
            workers: None,
            _dir: dir,
        })
    }

    pub(crate) async fn start_run(&self, params: RunParams) -> Result<RunId, TestError> {
        let started = self
            .stack
            .service
            .start_run(StartRun {
                workspace: self.tenant.workspace,
                tenant: self.tenant.id,
                params,
                initiator: Some(self.user.id),
                parent: None,
                retry_of: None,
            })
            .await?;
        Ok(started.run.id())
    }

    pub(crate) async fn completed(&self, id: RunId) -> Result<OperationRun, TestError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let run = self.backend.store.run(id).await?;
            if run.is_completed() {
                return Ok(run);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("run {id} did not complete: {run:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn stop(mut self) -> Result<(), TestError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(workers) = self.workers.take() {
            workers.await??;
        }
        Ok(())
    }
}

fn counts(run: &OperationRun) -> Vec<(&'static str, u64)> {
    run.counts().iter().map(|(k, v)| (k.key(), v)).collect()
}

/// The exact counts of a counted run with `total` units of which `failed` failed.
fn expected(total: u64, failed: u64, extra: &[(&'static str, u64)]) -> Vec<(&'static str, u64)> {
    let mut out = vec![("total", total), ("processed", total)];
    if total > failed {
        out.push(("succeeded", total - failed));
    }
    if failed > 0 {
        out.push(("failed", failed));
    }
    out.extend(extra.iter().filter(|(_, v)| *v > 0));
    out
}

fn outcome(total: u64, failed: u64) -> RunOutcome {
    match (failed, total) {
        (0, _) => RunOutcome::Succeeded,
        (f, t) if f == t => RunOutcome::Failed,
        _ => RunOutcome::PartiallySucceeded,
    }
}

async fn every_family(url: String) -> Result<(), TestError> {
    let running = Running::start(
        &url,
        SimulationSettings {
            policies: POLICIES,
            latency_ms: 0,
            failure_rate: RATE,
            seed: SEED,
        },
    )
    .await?;
    let failing = |key: &str| u64::from(fails(SEED, RATE, key));

    // inventory.sync: one unit per policy type; 40 policies over 8 types = 5 each.
    let id = running
        .start_run(RunParams::InventorySync { policy_types: None })
        .await?;
    let run = running.completed(id).await?;
    let failed: u64 = POLICY_TYPES.iter().map(|t| failing(t)).sum();
    let found = 5 * (8 - failed);
    assert_eq!(
        counts(&run),
        expected(8, failed, &[("created", found), ("items", found)])
    );
    assert_eq!(run.outcome(), outcome(8, failed));
    assert_eq!(
        running
            .backend
            .families
            .inventory_size(running.tenant.id)
            .await?,
        found
    );

    // review_pack.generate: one unit per section; a real file with its SHA-256.
    let id = running
        .start_run(RunParams::ReviewPackGenerate { sections: None })
        .await?;
    let run = running.completed(id).await?;
    let failed: u64 = SECTIONS.iter().map(|s| failing(s)).sum();
    let artifact = u64::from(failed < 6);
    assert_eq!(counts(&run), expected(6, failed, &[("created", artifact)]));
    if let Some(pack) = running.backend.families.review_pack(id).await? {
        let bytes = tokio::fs::read(&pack.location).await?;
        assert_eq!(opsrun_adapters::sql::sha256_hex(&bytes), pack.sha256);
        assert_eq!(bytes.len() as u64, pack.bytes);
    }

    // evidence_snapshot.generate: one unit per dimension; a hashed snapshot.
    let id = running
        .start_run(RunParams::EvidenceSnapshotGenerate { dimensions: None })
        .await?;
    let run = running.completed(id).await?;
    let failed: u64 = DIMENSIONS.iter().map(|d| failing(d)).sum();
    assert_eq!(
        counts(&run),
        expected(5, failed, &[("created", u64::from(failed < 5))])
    );
    let snapshot = running.backend.families.evidence_snapshot(id).await?;
    assert_eq!(
        snapshot.map(|s| s.dimensions),
        (failed < 5).then_some(5 - failed)
    );

    // backup_set.add_policies: 20 requested policies.
    let set = running
        .backend
        .families
        .create_backup_set(running.tenant.id, "nightly")
        .await?;
    let ids: Vec<String> = (1..=20).map(policy_id).collect();
    let id = running
        .start_run(RunParams::BackupSetAddPolicies {
            backup_set_id: set.id,
            policy_ids: ids.clone(),
        })
        .await?;
    let run = running.completed(id).await?;
    let failed: u64 = ids.iter().map(|p| failing(p)).sum();
    assert_eq!(
        counts(&run),
        expected(20, failed, &[("created", 20 - failed)])
    );
    let items = running.backend.families.items(set.id).await?;
    assert_eq!(items.len() as u64, 20 - failed);

    // backup_set.restore: a fan-out of one child job per item of the set.
    let id = running
        .start_run(RunParams::BackupSetRestore {
            backup_set_id: set.id,
            item_ids: None,
        })
        .await?;
    let run = running.completed(id).await?;
    let total = items.len() as u64;
    let failed: u64 = items.iter().map(|i| failing(&i.id.to_string())).sum();
    assert_eq!(counts(&run), expected(total, failed, &[]));
    assert_eq!(run.outcome(), outcome(total, failed));

    // baseline.capture: phased, no total; the policies that could be fetched.
    let id = running.start_run(RunParams::BaselineCapture).await?;
    let run = running.completed(id).await?;
    assert_eq!(counts(&run), vec![]);
    assert_eq!(run.phases().and_then(|p| p.current_index()), Some(2));
    let missed: u64 = (1..=POLICIES).map(|i| failing(&policy_id(i))).sum();
    let baselines = running
        .backend
        .families
        .baselines(running.tenant.id)
        .await?;
    assert_eq!(baselines.len(), 1);
    assert_eq!(baselines[0].items.len() as u64, 40 - missed);

    // baseline.compare: composite; every baseline item compared once, nothing changed.
    let id = running
        .start_run(RunParams::BaselineCompare {
            baseline_id: baselines[0].id,
        })
        .await?;
    let run = running.completed(id).await?;
    let compared = 40 - missed;
    assert_eq!(
        counts(&run),
        vec![("processed", compared), ("succeeded", compared)]
    );
    assert_eq!(run.outcome(), RunOutcome::Succeeded);

    // One terminal notification per run.
    let notes = running.backend.store.notifications(running.user.id).await?;
    assert_eq!(notes.len(), 7);
    running.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_family_runs_through_the_queue_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    every_family(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_family_runs_through_the_queue_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    every_family(url).await
}

/// The in-memory backend runs jobs too: its in-process queue executes a fan-out restore (the
/// parent and every child job) with the same attempt policy as the durable queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_memory_backend_runs_a_fan_out_through_its_in_process_queue() -> Result<(), TestError> {
    use opsrun_adapters::backend::Backend;
    use opsrun_application::worker::RuntimeSettings;

    let backend = Backend::memory(QueueSettings::default());
    let stack = Stack::wire(&backend, opsrun_app::config::STALE_AFTER_MS);
    let ws = backend
        .admin
        .workspace(&Slug::parse("mem")?, true, Timestamp::from_millis(0))
        .await?;
    let tenant = backend
        .admin
        .add_tenant(ws, &Slug::parse("contoso")?, Timestamp::from_millis(0))
        .await?;
    let settings = SimulationSettings {
        policies: 30,
        failure_rate: RATE,
        seed: SEED,
        ..SimulationSettings::default()
    };
    backend.setup.configure(tenant.id, settings).await?;
    let set = backend
        .backup_sets
        .create_backup_set(tenant.id, "mem")
        .await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let workers_stack = stack.clone();
    let workers = tokio::spawn(async move {
        opsrun_app::runtime::run_until_shutdown(
            &workers_stack,
            RuntimeSettings {
                requeue_after: Duration::from_secs(opsrun_app::config::REQUEUE_AFTER_SECS),
                retain_for: Duration::from_secs(14 * 86_400),
                stale_after: Duration::from_secs(opsrun_app::config::STALE_AFTER_SECS),
                maintenance_every: Duration::from_secs(30),
                max_attempts: 5,
            },
            async move {
                let _ = stopped.await;
            },
        )
        .await
    });
    let start = |params| {
        stack.service.start_run(StartRun {
            workspace: ws,
            tenant: tenant.id,
            params,
            initiator: None,
            parent: None,
            retry_of: None,
        })
    };
    let wait = |id: RunId| {
        let queries = stack.queries.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let run = queries.run(id).await?;
                if run.is_completed() {
                    return Ok::<_, TestError>(run);
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("run {id} did not complete: {run:?}").into());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    let add = start(RunParams::BackupSetAddPolicies {
        backup_set_id: set.id,
        policy_ids: (1..=30).map(policy_id).collect(),
    })
    .await?
    .run
    .id();
    let added = wait(add).await?;
    let restore = start(RunParams::BackupSetRestore {
        backup_set_id: set.id,
        item_ids: None,
    })
    .await?
    .run
    .id();
    let restored = wait(restore).await?;
    // One in-process job per item; the last finishes just after the parent completed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let jobs = loop {
        let jobs = stack.queries.run(restore).await?.children();
        if jobs.is_some_and(|j| j.completed == j.total) || tokio::time::Instant::now() > deadline {
            break jobs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let _ = stop.send(());
    workers.await??;

    let failed_policies = (1..=30)
        .filter(|i| fails(SEED, RATE, &policy_id(*i)))
        .count() as u64;
    let items = backend.backup_sets.items(set.id).await?.len() as u64;
    assert_eq!(items, 30 - failed_policies);
    assert_eq!(
        counts(&added),
        expected(30, failed_policies, &[("created", items)])
    );
    let failed_restores = backend
        .backup_sets
        .items(set.id)
        .await?
        .iter()
        .filter(|i| fails(SEED, RATE, &i.id.to_string()))
        .count() as u64;
    assert_eq!(counts(&restored), expected(items, failed_restores, &[]));
    assert_eq!(restored.outcome(), outcome(items, failed_restores));
    assert_eq!(
        jobs,
        Some(opsrun_domain::ChildJobs {
            total: items,
            completed: items
        }),
        "the in-process queue counts its child jobs too"
    );
    Ok(())
}
