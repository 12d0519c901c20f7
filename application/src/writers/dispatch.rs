//! Dispatching jobs to the family of their run.

use std::sync::Arc;

use opsrun_domain::{OperationType, RunId};

use super::{WriterError, WriterOutcome, WriterSettings};
use crate::OperationRunService;
use crate::families::{Families, Family};
use crate::ports::{
    ArtifactStore, BackupSetStore, BaselineStore, EvidenceSource, InventoryStore, Job, JobQueue,
    PolicyProvider, RestoreTarget, ReviewPackSource, SnapshotStore,
};
use crate::reasons;

/// The family ports the writers work against.
#[derive(Clone)]
pub struct WriterPorts {
    /// The tenant's policy provider.
    pub provider: Arc<dyn PolicyProvider>,
    /// The policy inventory.
    pub inventory: Arc<dyn InventoryStore>,
    /// Review-pack sections.
    pub review_source: Arc<dyn ReviewPackSource>,
    /// Review-pack artifacts.
    pub artifacts: Arc<dyn ArtifactStore>,
    /// Evidence.
    pub evidence_source: Arc<dyn EvidenceSource>,
    /// Evidence snapshots.
    pub snapshots: Arc<dyn SnapshotStore>,
    /// Backup sets.
    pub backup_sets: Arc<dyn BackupSetStore>,
    /// Where restores go.
    pub restore_target: Arc<dyn RestoreTarget>,
    /// Baselines.
    pub baselines: Arc<dyn BaselineStore>,
    /// The job queue (fan-out children).
    pub queue: Arc<dyn JobQueue>,
}

/// Every family a worker runs, and the one entry point a worker calls for a job.
#[derive(Clone)]
pub struct Writers {
    service: OperationRunService,
    families: Families,
}

impl std::fmt::Debug for Writers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writers")
            .field("families", &self.families)
            .finish_non_exhaustive()
    }
}

impl Writers {
    /// The built-in families over one service and the family ports.
    #[must_use]
    pub fn new(service: OperationRunService, settings: WriterSettings, ports: WriterPorts) -> Self {
        let families = Families::builtin(&service, settings, ports);
        Self::with_families(service, families)
    }

    /// The families of `families` (the built-ins and a host's own) over one service.
    #[must_use]
    pub fn with_families(service: OperationRunService, families: Families) -> Self {
        Self { service, families }
    }

    /// The registry.
    #[must_use]
    pub fn families(&self) -> &Families {
        &self.families
    }

    /// The family of run `run` (a child job's parent).
    async fn family_of(&self, run: RunId) -> Result<&Arc<dyn Family>, WriterError> {
        let operation_type: OperationType = self
            .service
            .queries()
            .run(run)
            .await?
            .operation_type()
            .clone();
        self.families
            .get(&operation_type)
            .ok_or(WriterError::NoFamily {
                run,
                operation_type,
            })
    }

    /// The family of run `run` (a fan-out's chunk resolves it once for all its items).
    ///
    /// # Errors
    ///
    /// [`WriterError`] when storage fails or no family runs the run's type.
    pub async fn family_for(&self, run: RunId) -> Result<Arc<dyn Family>, WriterError> {
        Ok(self.family_of(run).await?.clone())
    }

    /// Child job `job` of fan-out `parent` finished (the queue says so once it will not run
    /// again); see [`crate::ports::JobQueue::enqueue_children`].
    ///
    /// # Errors
    ///
    /// [`WriterError`] when storage fails; say it again later.
    pub async fn child_job_finished(&self, parent: RunId, job: u64) -> Result<(), WriterError> {
        self.service.child_job_finished(parent, job).await?;
        Ok(())
    }

    /// Executes (or resumes) a job with the family of its run.
    ///
    /// # Errors
    ///
    /// [`WriterError`]; when [`WriterError::is_transient`], retry the job later.
    pub async fn execute(&self, job: &Job) -> Result<WriterOutcome, WriterError> {
        self.describe_span(job).await;
        match job {
            Job::RestoreChild { parent, item } => {
                self.family_of(*parent)
                    .await?
                    .execute_child(*parent, item.clone())
                    .await
            }
            Job::Run { run } => self.family_of(*run).await?.execute(*run).await,
        }
    }

    /// Records the run's family (and, for a run job, its tenant's slug) on the current span:
    /// the job attempt's, when traces are exported. Reads nothing when no span records.
    async fn describe_span(&self, job: &Job) {
        let span = tracing::Span::current();
        if span.is_disabled() {
            return;
        }
        let (id, with_tenant) = match job {
            Job::Run { run } => (*run, true),
            Job::RestoreChild { parent, .. } => (*parent, false),
        };
        let Ok(run) = self.service.queries().run(id).await else {
            return;
        };
        span.record("opsrun.family", run.operation_type().key());
        if !with_tenant {
            return;
        }
        // The slug comes with the run in a list read (one statement).
        let named = self
            .service
            .queries()
            .list_runs(crate::ports::RunQuery {
                workspace: run.workspace(),
                scope: crate::TenantScope::All,
                tenant: Some(run.tenant()),
                operation_type: None,
                status: None,
                outcome: None,
                before: Some(RunId::new(id.value().saturating_add(1))),
                created_since: None,
                top_level_only: false,
                limit: 1,
            })
            .await;
        if let Ok(list) = named
            && let Some(named) = list.first()
            && named.run.id() == id
        {
            span.record("opsrun.tenant", named.tenant.as_str());
        }
    }

    /// How long run `run` has been waiting since it was created (for [`crate::worker::wait_delay`]).
    ///
    /// # Errors
    ///
    /// [`WriterError`] when storage fails.
    pub async fn waited(&self, run: RunId) -> Result<std::time::Duration, WriterError> {
        let created = self.service.queries().run(run).await?.created_at();
        let ms = self.service.clock().now().millis_since(created);
        Ok(std::time::Duration::from_millis(
            u64::try_from(ms).unwrap_or(0),
        ))
    }

    /// Ends what a job was doing with a final failure, when the job used up its attempts or
    /// failed for good: a run job's run ends `failed` with `run.attempts_exhausted`; a child
    /// job's item is recorded `failed` by its family (`restore.attempts_exhausted`, and the
    /// parent completes if it was the last). Never leaves a run `running`.
    ///
    /// # Errors
    ///
    /// [`WriterError`] when storage fails; the caller should try again later.
    pub async fn give_up(&self, job: &Job, last_error: &str) -> Result<WriterOutcome, WriterError> {
        match job {
            Job::RestoreChild { parent, item } => {
                self.family_of(*parent)
                    .await?
                    .give_up_child(*parent, item.clone())
                    .await
            }
            Job::Run { run } => {
                let message = format!("the run's job failed for good: {last_error}");
                let completed = self
                    .service
                    .fail_run(*run, reasons::RUN_ATTEMPTS_EXHAUSTED, &message)
                    .await?;
                Ok(super::finished(&completed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use opsrun_domain::RunOutcome;

    use super::*;
    use crate::RunParams;
    use crate::testing::harness::Harness;

    fn writers(h: &Harness) -> Writers {
        Writers::new(
            h.service.clone(),
            WriterSettings::default(),
            WriterPorts {
                provider: h.fake.clone(),
                inventory: h.families.clone(),
                review_source: h.fake.clone(),
                artifacts: h.families.clone(),
                evidence_source: h.fake.clone(),
                snapshots: h.families.clone(),
                backup_sets: h.families.clone(),
                restore_target: h.fake.clone(),
                baselines: h.families.clone(),
                queue: h.queue.clone(),
            },
        )
    }

    #[tokio::test]
    async fn a_run_job_reaches_the_writer_of_its_family() {
        let h = Harness::new(4, &[]);
        let id = h
            .start(RunParams::EvidenceSnapshotGenerate { dimensions: None })
            .await;

        let outcome = writers(&h).execute(&Job::Run { run: id }).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert!(h.families.snapshot(id).is_some());
    }

    #[tokio::test]
    async fn giving_up_on_a_run_job_ends_the_run_failed() {
        let h = Harness::new(4, &[]);
        let id = h.start(RunParams::BaselineCapture).await;
        h.service.mark_running(id).await.unwrap();

        let outcome = writers(&h)
            .give_up(&Job::Run { run: id }, "provider unavailable")
            .await
            .unwrap();

        assert_eq!(outcome, WriterOutcome::Completed(RunOutcome::Failed));
        let run = h.run(id).await;
        assert_eq!(run.failures()[0].code, reasons::RUN_ATTEMPTS_EXHAUSTED);
        assert!(run.failures()[0].message.contains("provider unavailable"));
    }
}
