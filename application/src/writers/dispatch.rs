//! Dispatching jobs to the writer of their run's family.

use std::sync::Arc;

use opsrun_domain::OperationType;

use super::{
    AddPoliciesToBackupSet, BackupSetRestoreWorker, BulkBackupSetRestore, CaptureBaseline,
    CompareBaseline, GenerateEvidenceSnapshot, GenerateReviewPack, RunInventorySync, WriterError,
    WriterOutcome, WriterSettings,
};
use crate::OperationRunService;
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

/// Every writer, and the one entry point a worker calls for a job.
#[derive(Clone)]
pub struct Writers {
    service: OperationRunService,
    inventory: RunInventorySync,
    review_pack: GenerateReviewPack,
    evidence: GenerateEvidenceSnapshot,
    add_policies: AddPoliciesToBackupSet,
    bulk_restore: BulkBackupSetRestore,
    restore_worker: BackupSetRestoreWorker,
    capture: CaptureBaseline,
    compare: CompareBaseline,
}

impl std::fmt::Debug for Writers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writers").finish_non_exhaustive()
    }
}

impl Writers {
    /// All writers over one service and the family ports.
    #[must_use]
    pub fn new(service: OperationRunService, settings: WriterSettings, ports: WriterPorts) -> Self {
        Self {
            inventory: RunInventorySync::new(
                service.clone(),
                settings,
                ports.provider.clone(),
                ports.inventory,
            ),
            review_pack: GenerateReviewPack::new(
                service.clone(),
                settings,
                ports.review_source,
                ports.artifacts,
            ),
            evidence: GenerateEvidenceSnapshot::new(
                service.clone(),
                settings,
                ports.evidence_source,
                ports.snapshots,
            ),
            add_policies: AddPoliciesToBackupSet::new(
                service.clone(),
                settings,
                ports.provider.clone(),
                ports.backup_sets.clone(),
            ),
            bulk_restore: BulkBackupSetRestore::new(
                service.clone(),
                ports.backup_sets.clone(),
                ports.queue,
            ),
            restore_worker: BackupSetRestoreWorker::new(
                service.clone(),
                ports.backup_sets,
                ports.restore_target,
            ),
            capture: CaptureBaseline::new(
                service.clone(),
                settings,
                ports.provider.clone(),
                ports.baselines.clone(),
            ),
            compare: CompareBaseline::new(
                service.clone(),
                settings,
                ports.provider,
                ports.baselines,
            ),
            service,
        }
    }

    /// Executes (or resumes) a job with the writer of its run's family.
    ///
    /// # Errors
    ///
    /// [`WriterError`]; when [`WriterError::is_transient`], retry the job later.
    pub async fn execute(&self, job: &Job) -> Result<WriterOutcome, WriterError> {
        match job {
            Job::RestoreChild { parent, item } => {
                self.restore_worker.execute(*parent, item.clone()).await
            }
            Job::Run { run } => {
                let operation_type = self.service.queries().run(*run).await?.operation_type();
                match operation_type {
                    OperationType::InventorySync => self.inventory.execute(*run).await,
                    OperationType::ReviewPackGenerate => self.review_pack.execute(*run).await,
                    OperationType::EvidenceSnapshotGenerate => self.evidence.execute(*run).await,
                    OperationType::BackupSetAddPolicies => self.add_policies.execute(*run).await,
                    OperationType::BackupSetRestore => self.bulk_restore.execute(*run).await,
                    OperationType::BaselineCapture => self.capture.execute(*run).await,
                    OperationType::BaselineCompare => self.compare.execute(*run).await,
                }
            }
        }
    }

    /// Ends what a job was doing with a final failure, when the job used up its attempts or
    /// failed for good: a run job's run ends `failed` with `run.attempts_exhausted`; a child
    /// job's item is recorded `failed` with `restore.attempts_exhausted` (and the parent
    /// completes if it was the last). Never leaves a run `running`.
    ///
    /// # Errors
    ///
    /// [`WriterError`] when storage fails; the caller should try again later.
    pub async fn give_up(&self, job: &Job, last_error: &str) -> Result<WriterOutcome, WriterError> {
        match job {
            Job::RestoreChild { parent, item } => {
                self.restore_worker.give_up(*parent, item.clone()).await
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
        let id = h.start(RunParams::EvidenceSnapshotGenerate).await;

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
