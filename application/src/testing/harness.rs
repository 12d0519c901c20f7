//! A complete in-memory setup for writer tests: the reference store, a queue that keeps
//! its jobs, a manual clock, a scripted tenant and in-memory family stores.

use std::sync::Arc;

use opsrun_domain::{ItemOutcome, OperationRun, RunId, Slug, SummaryKey, WorkspaceId};

use super::{FakeTenant, ManualClock, MemoryFamilies, MemoryQueue};
use crate::memory::MemoryRunStore;
use crate::ports::{Job, RunQueries, Tenant, User};
use crate::{OperationRunService, RunParams, StartRun};

use crate::families::{
    AddPoliciesToBackupSet, BackupSetRestoreWorker, BulkBackupSetRestore, CaptureBaseline,
    CompareBaseline, Counted, GenerateEvidenceSnapshot, GenerateReviewPack, RunInventorySync,
};
use crate::writers::{WriterError, WriterOutcome, WriterSettings};

pub(crate) struct Harness {
    pub(crate) store: Arc<MemoryRunStore>,
    pub(crate) queue: Arc<MemoryQueue>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) service: OperationRunService,
    pub(crate) fake: Arc<FakeTenant>,
    pub(crate) families: Arc<MemoryFamilies>,
    pub(crate) tenant: Tenant,
    pub(crate) user: User,
}

impl Harness {
    pub(crate) fn new(policies: usize, failing: &[&str]) -> Self {
        let store = Arc::new(MemoryRunStore::new());
        let queue = Arc::new(MemoryQueue::new());
        let clock = Arc::new(ManualClock::at(1_000_000));
        let service = OperationRunService::new(store.clone(), queue.clone(), clock.clone());
        let workspace = WorkspaceId::new(1);
        let tenant = store.add_tenant(workspace, Slug::parse("contoso").unwrap());
        let user = store.add_user(workspace, "ops@example.com");
        Self {
            store,
            queue,
            clock,
            service,
            fake: Arc::new(FakeTenant::new(policies, failing)),
            families: Arc::new(MemoryFamilies::new()),
            tenant,
            user,
        }
    }

    pub(crate) async fn start(&self, params: RunParams) -> RunId {
        let started = self
            .service
            .start_run(StartRun {
                workspace: self.tenant.workspace,
                tenant: self.tenant.id,
                params,
                initiator: Some(self.user.id),
                parent: None,
                retry_of: None,
            })
            .await
            .unwrap();
        // The run job is what a worker would take; the tests call the writer directly.
        assert_eq!(
            self.queue.pop(),
            Some(Job::Run {
                run: started.run.id()
            })
        );
        started.run.id()
    }

    pub(crate) async fn run(&self, id: RunId) -> OperationRun {
        self.store.run(id).await.unwrap()
    }

    /// The run's set counts, as `(key, value)` pairs in canonical order.
    pub(crate) async fn counts(&self, id: RunId) -> Vec<(&'static str, u64)> {
        self.run(id)
            .await
            .counts()
            .iter()
            .map(|(k, v)| (k.key(), v))
            .collect()
    }

    pub(crate) async fn notifications(&self) -> usize {
        self.store.notifications(self.user.id).await.unwrap().len()
    }

    pub(crate) fn failed_reasons(&self, id: RunId) -> Vec<(String, String)> {
        self.store
            .ledger(id)
            .unwrap()
            .entries()
            .filter(|(_, e)| e.outcome == ItemOutcome::Failed)
            .map(|(k, e)| {
                (
                    k.to_string(),
                    e.reason
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The built-in families over this harness's ports.
    pub(crate) fn families_registry(&self) -> crate::families::Families {
        crate::families::Families::builtin(
            &self.service,
            WriterSettings::default(),
            crate::writers::WriterPorts {
                provider: self.fake.clone(),
                inventory: self.families.clone(),
                review_source: self.fake.clone(),
                artifacts: self.families.clone(),
                evidence_source: self.fake.clone(),
                snapshots: self.families.clone(),
                backup_sets: self.families.clone(),
                restore_target: self.fake.clone(),
                baselines: self.families.clone(),
                queue: self.queue.clone(),
            },
        )
    }

    pub(crate) fn inventory(&self) -> Counted<RunInventorySync> {
        Counted::new(
            self.service.clone(),
            WriterSettings::default(),
            RunInventorySync::new(self.fake.clone(), self.families.clone()),
        )
    }

    pub(crate) fn review_pack(&self) -> Counted<GenerateReviewPack> {
        Counted::new(
            self.service.clone(),
            WriterSettings::default(),
            GenerateReviewPack::new(self.fake.clone(), self.families.clone()),
        )
    }

    pub(crate) fn evidence(&self) -> Counted<GenerateEvidenceSnapshot> {
        Counted::new(
            self.service.clone(),
            WriterSettings::default(),
            GenerateEvidenceSnapshot::new(self.fake.clone(), self.families.clone()),
        )
    }

    pub(crate) fn add_policies(&self) -> Counted<AddPoliciesToBackupSet> {
        Counted::new(
            self.service.clone(),
            WriterSettings::default(),
            AddPoliciesToBackupSet::new(self.fake.clone(), self.families.clone()),
        )
    }

    pub(crate) fn bulk_restore(&self) -> BulkBackupSetRestore {
        BulkBackupSetRestore::new(
            self.service.clone(),
            self.families.clone(),
            self.queue.clone(),
        )
    }

    pub(crate) fn restore_worker(&self) -> BackupSetRestoreWorker {
        BackupSetRestoreWorker::new(
            self.service.clone(),
            self.families.clone(),
            self.fake.clone(),
        )
    }

    pub(crate) fn capture(&self) -> CaptureBaseline {
        CaptureBaseline::new(
            self.service.clone(),
            WriterSettings::default(),
            self.fake.clone(),
            self.families.clone(),
        )
    }

    pub(crate) fn compare(&self) -> CompareBaseline {
        CompareBaseline::new(
            self.service.clone(),
            WriterSettings::default(),
            self.fake.clone(),
            self.families.clone(),
        )
    }

    /// Runs every queued child job once, as workers would; returns the last outcome.
    pub(crate) async fn drain_children(&self) -> Result<Option<WriterOutcome>, WriterError> {
        let worker = self.restore_worker();
        let mut last = None;
        while let Some(job) = self.queue.pop() {
            let Job::RestoreChild { parent, item } = job else {
                panic!("unexpected job {job:?}");
            };
            last = Some(worker.execute(parent, item).await?);
        }
        Ok(last)
    }

    /// The run's items a cancel counted as in flight (`skipped`, `run.cancelled_in_flight`).
    pub(crate) async fn cancelled_in_flight(&self, id: RunId) -> usize {
        use crate::ports::{LedgerQuery, RunQueries};
        self.store
            .ledger_entries(LedgerQuery {
                run: id,
                outcome: Some(opsrun_domain::ItemOutcome::Skipped),
                after: None,
                limit: u32::MAX,
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|(_, e)| e.reason == Some(crate::reasons::RUN_CANCELLED_IN_FLIGHT))
            .count()
    }

    pub(crate) fn processed(counts: &[(&'static str, u64)]) -> u64 {
        counts
            .iter()
            .find(|(k, _)| *k == SummaryKey::Processed.key())
            .map_or(0, |(_, v)| *v)
    }
}
