//! `OperationRunService`: the only mutation path for counts and status.

use std::sync::Arc;

use opsrun_domain::{
    AuxDeltas, Change, Completion, ComponentState, Components, Drift, ItemKey, ItemRecord,
    OperationRun, Phases, ReasonCode, RecordOutcome, RunError, RunId, RunOutcome, SummaryKey,
    TenantId, UserId, WorkSet, WorkspaceId,
};

use crate::ports::{Clock, Completed, CreateRun, Job, JobQueue, OperationRunStore, Started};
use crate::{QueueError, RunParams, StoreError, TerminalEffects};

/// Reason code of a run whose job could not be enqueued.
pub const REASON_ENQUEUE_FAILED: ReasonCode = ReasonCode::from_static("run.enqueue_failed");
/// Reason code of a run that stopped giving signs of life.
pub const REASON_STALE: ReasonCode = ReasonCode::from_static("run.stale");

/// What went wrong in a service call.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl ServiceError {
    /// The domain rule that refused the call, if that is what happened.
    #[must_use]
    pub fn rule(&self) -> Option<&RunError> {
        match self {
            Self::Store(StoreError::Rule(rule)) => Some(rule),
            _ => None,
        }
    }
}

/// A request to start a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRun {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Tenant.
    pub tenant: TenantId,
    /// Family parameters.
    pub params: RunParams,
    /// Who starts it.
    pub initiator: Option<UserId>,
    /// Parent run.
    pub parent: Option<RunId>,
}

/// What a reconcile pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Active runs recounted.
    pub recounted: usize,
    /// Runs whose counts had drifted from their ledger, with the repair.
    pub drifted: Vec<(RunId, Drift)>,
    /// Fan-out parents completed because every child had reached its end.
    pub completed: Vec<RunId>,
}

/// The only mutation path for run counts and status. Every call goes to the store, which
/// enforces the domain rules atomically; terminal side effects are written by the store in the
/// same unit of work as the completion that wins.
#[derive(Clone)]
pub struct OperationRunService {
    store: Arc<dyn OperationRunStore>,
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OperationRunService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationRunService")
            .finish_non_exhaustive()
    }
}

impl OperationRunService {
    /// A service over the given store, queue and clock.
    #[must_use]
    pub fn new(
        store: Arc<dyn OperationRunStore>,
        queue: Arc<dyn JobQueue>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            queue,
            clock,
        }
    }

    /// The store (for read models and writers that read).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn OperationRunStore> {
        &self.store
    }

    /// The clock.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Starts a run, or returns the active run with the same identity (`reused: true`). A new
    /// run's job is enqueued; if that fails the run is completed `failed` with reason
    /// `run.enqueue_failed`, so no run waits for a job that does not exist.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`], [`ServiceError::Queue`].
    pub async fn start_run(&self, request: StartRun) -> Result<Started, ServiceError> {
        let started = self
            .store
            .create_run(CreateRun {
                workspace: request.workspace,
                tenant: request.tenant,
                params: request.params,
                initiator: request.initiator,
                parent: request.parent,
                at: self.clock.now(),
            })
            .await?;
        if started.reused {
            return Ok(started);
        }
        let id = started.run.id();
        if let Err(error) = self.queue.enqueue(Job::Run { run: id }).await {
            let completion = Completion::decided(RunOutcome::Failed, self.clock.now())
                .with_failure(REASON_ENQUEUE_FAILED, "the run's job could not be queued");
            self.store
                .complete(id, completion, TerminalEffects { actor: None })
                .await?;
            return Err(error.into());
        }
        Ok(started)
    }

    /// `queued -> running`.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`] (e.g. `RunAlreadyCompleted`).
    pub async fn mark_running(&self, id: RunId) -> Result<Change, ServiceError> {
        Ok(self.store.mark_running(id, self.clock.now()).await?)
    }

    /// Sets the total once from a frozen work set (I1).
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`] (`TotalAlreadySet`, `WorkSetAlreadyFrozen`, ...).
    pub async fn set_total(&self, id: RunId, work_set: WorkSet) -> Result<Change, ServiceError> {
        Ok(self.store.set_total(id, work_set).await?)
    }

    /// Records one item's final outcome exactly once (I2–I6).
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`] (`RunAlreadyCompleted`, `ProcessedExceedsTotal`, ...).
    pub async fn record_item(
        &self,
        id: RunId,
        record: ItemRecord,
    ) -> Result<RecordOutcome, ServiceError> {
        self.record_items(id, vec![record]).await
    }

    /// Records a batch of items in one unit of work, each key at most once.
    ///
    /// # Errors
    ///
    /// As [`Self::record_item`].
    pub async fn record_items(
        &self,
        id: RunId,
        records: Vec<ItemRecord>,
    ) -> Result<RecordOutcome, ServiceError> {
        Ok(self
            .store
            .record_items(id, records, self.clock.now())
            .await?)
    }

    /// Applies a run-level auxiliary increment once per `increment_key`. Only auxiliary keys
    /// can be expressed in [`AuxDeltas`].
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn increment_summary_counts(
        &self,
        id: RunId,
        increment_key: ItemKey,
        deltas: AuxDeltas,
    ) -> Result<Change, ServiceError> {
        Ok(self.store.increment(id, increment_key, deltas).await?)
    }

    /// Declares a phased run's phases.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn declare_phases(&self, id: RunId, phases: Phases) -> Result<Change, ServiceError> {
        Ok(self.store.declare_phases(id, phases).await?)
    }

    /// Enters a phase (forward only).
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn set_phase(&self, id: RunId, key: &str) -> Result<Change, ServiceError> {
        Ok(self.store.enter_phase(id, key.to_owned()).await?)
    }

    /// Declares a composite run's components.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn declare_components(
        &self,
        id: RunId,
        components: Components,
    ) -> Result<Change, ServiceError> {
        Ok(self.store.declare_components(id, components).await?)
    }

    /// Moves a component forward.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn update_component(
        &self,
        id: RunId,
        key: &str,
        state: ComponentState,
    ) -> Result<Change, ServiceError> {
        Ok(self
            .store
            .update_component(id, key.to_owned(), state)
            .await?)
    }

    /// Records a sign of life.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn heartbeat(&self, id: RunId) -> Result<Change, ServiceError> {
        Ok(self.store.heartbeat(id, self.clock.now()).await?)
    }

    /// Completes a run, with the outcome derived from its counts unless `outcome` decides it.
    /// Exactly one completion wins; the answer says whether it was this one.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn complete_run(
        &self,
        id: RunId,
        outcome: Option<RunOutcome>,
        failures: Vec<(ReasonCode, String)>,
    ) -> Result<Completed, ServiceError> {
        let mut completion = Completion {
            outcome,
            failures: Vec::new(),
            at: self.clock.now(),
        };
        for (code, message) in failures {
            completion = completion.with_failure(code, message);
        }
        Ok(self
            .store
            .complete(id, completion, TerminalEffects { actor: None })
            .await?)
    }

    /// Ends a run `failed` with one reason (a job that exhausted its attempts, a lost job).
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn fail_run(
        &self,
        id: RunId,
        code: ReasonCode,
        message: &str,
    ) -> Result<Completed, ServiceError> {
        self.complete_run(
            id,
            Some(RunOutcome::Failed),
            vec![(code, message.to_owned())],
        )
        .await
    }

    /// Cancels a run on behalf of `actor`. `won: false` means it had already completed.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn cancel_run(
        &self,
        id: RunId,
        actor: Option<UserId>,
    ) -> Result<Completed, ServiceError> {
        let completion = Completion::decided(RunOutcome::Cancelled, self.clock.now());
        Ok(self
            .store
            .complete(id, completion, TerminalEffects { actor })
            .await?)
    }

    /// I7: completes a fan-out parent when every item of its frozen work set has reached its
    /// end (`processed == total`), with the outcome derived from its children. Returns the
    /// completion when this call decided it; `None` when the parent is still waiting or was
    /// already completed.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn maybe_complete_bulk_run(
        &self,
        id: RunId,
    ) -> Result<Option<Completed>, ServiceError> {
        let run = self.store.run(id).await?;
        if !Self::all_items_done(&run) {
            return Ok(None);
        }
        let completed = self
            .store
            .complete(
                id,
                Completion::derived(self.clock.now()),
                TerminalEffects { actor: None },
            )
            .await?;
        Ok(completed.won.then_some(completed))
    }

    fn all_items_done(run: &OperationRun) -> bool {
        let counts = run.counts();
        !run.is_completed()
            && counts
                .get(SummaryKey::Total)
                .is_some_and(|total| counts.get(SummaryKey::Processed) == Some(total))
    }

    /// Ends every running run with no sign of life for more than `threshold_ms` as `failed`
    /// with reason `run.stale`. Returns the runs this call ended.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn fail_stale_runs(&self, threshold_ms: i64) -> Result<Vec<RunId>, ServiceError> {
        let now = self.clock.now();
        let mut failed = Vec::new();
        for run in self.store.active_runs().await? {
            if !run.is_stale(now, threshold_ms) {
                continue;
            }
            let message = format!(
                "no sign of life for more than {} s; the run's job is gone",
                threshold_ms / 1000
            );
            let completed = self.fail_run(run.id(), REASON_STALE, &message).await?;
            if completed.won {
                failed.push(run.id());
            }
        }
        Ok(failed)
    }

    /// Self-healing pass: recounts every active run from its ledger (repairing and reporting
    /// drift), then completes fan-out parents whose items have all reached their end.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn reconcile(&self) -> Result<ReconcileReport, ServiceError> {
        let mut report = ReconcileReport::default();
        for run in self.store.active_runs().await? {
            let id = run.id();
            match self.store.reconcile_counts(id).await {
                Ok(Some(drift)) => report.drifted.push((id, drift)),
                Ok(None) => {}
                // Completed between the listing and now: nothing to repair.
                Err(StoreError::Rule(RunError::RunAlreadyCompleted)) => continue,
                Err(error) => return Err(error.into()),
            }
            report.recounted += 1;
            if run.operation_type().is_fan_out()
                && let Some(completed) = self.maybe_complete_bulk_run(id).await?
                && completed.won
            {
                report.completed.push(id);
            }
        }
        Ok(report)
    }
}
