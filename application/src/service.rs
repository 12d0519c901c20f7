//! `OperationRunService`: the only mutation path for counts and status.

use std::sync::Arc;

use opsrun_domain::{
    Admission, AuxDeltas, Change, Claim, Completion, ComponentState, Components, Drift, ItemKey,
    ItemRecord, OperationRun, OperationType, Phases, ReasonCode, RecordOutcome, RunError, RunId,
    RunOutcome, TenantId, UserId, WorkSet, WorkspaceId,
};

use crate::ports::{
    Clock, Completed, CreateRun, Job, JobQueue, RunEvents, RunQueries, RunStore, Started,
};
use crate::reasons;
use crate::{ClaimCoalescer, QueueError, RecordCoalescer, RunParams, StoreError, TerminalEffects};

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
    /// The completed run whose failed items it retries.
    pub retry_of: Option<RunId>,
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
    store: Arc<dyn RunStore>,
    queries: Arc<dyn RunQueries>,
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    events: Option<Arc<dyn RunEvents>>,
    // Shared by every clone (the writers hold clones), so concurrent records of one run in
    // this process are combined whichever clone makes them.
    records: Arc<RecordCoalescer>,
    // Likewise for claims: the chunks of a fan-out claim their items through one statement.
    claims: Arc<ClaimCoalescer>,
    // Shared by every clone (the writers hold clones), so the composition root can set it
    // once after wiring.
    tenant_limit: Arc<std::sync::atomic::AtomicU32>,
}

/// Runs of one tenant that may hold a slot at once, unless the composition root or the tenant
/// says otherwise (see [`opsrun_domain::TenantLoad`]): half the default 8 workers, so one
/// tenant's slow runs leave room for every other tenant.
pub const DEFAULT_TENANT_LIMIT: u32 = 4;

impl std::fmt::Debug for OperationRunService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationRunService")
            .finish_non_exhaustive()
    }
}

/// The lifecycle line of a completion that won: the run, its outcome and counts. Lines go to
/// target `opsrun::runs` (on by default at info).
fn log_completed(completed: &Completed) {
    if !completed.won {
        return;
    }
    let run = &completed.run;
    crate::telemetry::completed(run);
    // The job attempt that won the completion carries its outcome (its span declares it).
    tracing::Span::current().record("opsrun.outcome", run.outcome().key());
    let counts = run.counts();
    let count = |key| {
        counts
            .get(key)
            .map_or_else(|| "-".to_owned(), |v: u64| v.to_string())
    };
    tracing::info!(
        target: "opsrun::runs",
        run = run.id().value(),
        r#type = run.operation_type().key(),
        outcome = run.outcome().key(),
        processed = %count(opsrun_domain::SummaryKey::Processed),
        total = %count(opsrun_domain::SummaryKey::Total),
        failed = %count(opsrun_domain::SummaryKey::Failed),
        "run completed"
    );
}

impl OperationRunService {
    /// A service over the given store, queue and clock.
    #[must_use]
    pub fn new(store: Arc<dyn RunStore>, queue: Arc<dyn JobQueue>, clock: Arc<dyn Clock>) -> Self {
        Self {
            queries: store.clone(),
            records: Arc::new(RecordCoalescer::new(store.clone())),
            claims: Arc::new(ClaimCoalescer::new(store.clone())),
            store,
            queue,
            clock,
            events: None,
            tenant_limit: Arc::new(std::sync::atomic::AtomicU32::new(DEFAULT_TENANT_LIMIT)),
        }
    }

    /// Sets the concurrency limit of tenants without their own (at least 1), for this service
    /// and every clone of it.
    pub fn set_tenant_limit_default(&self, limit: u32) {
        self.tenant_limit
            .store(limit.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// The concurrency limit of tenants without their own.
    #[must_use]
    pub fn tenant_limit(&self) -> u32 {
        self.tenant_limit.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The same service, telling `events` about every change it makes.
    #[must_use]
    pub fn with_events(mut self, events: Arc<dyn RunEvents>) -> Self {
        self.events = Some(events);
        self
    }

    fn publish(&self, id: RunId) {
        if let Some(events) = &self.events {
            events.changed(id);
        }
    }

    fn published<T>(&self, id: RunId, changed: bool, value: T) -> T {
        if changed {
            self.publish(id);
        }
        value
    }

    /// The read side of the run store (for writers and use cases that look before they act).
    /// The mutating side stays inside the service.
    #[must_use]
    pub fn queries(&self) -> &Arc<dyn RunQueries> {
        &self.queries
    }

    /// The record coalescer every clone of this service writes through (its counters show how
    /// many store calls the records took).
    #[must_use]
    pub fn coalescer(&self) -> &RecordCoalescer {
        &self.records
    }

    /// The claim coalescer every clone of this service claims through.
    #[must_use]
    pub fn claim_coalescer(&self) -> &ClaimCoalescer {
        &self.claims
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
                retry_of: request.retry_of,
                at: self.clock.now(),
            })
            .await?;
        if started.reused {
            return Ok(started);
        }
        let id = started.run.id();
        if let Some(original) = started.run.retry_of() {
            tracing::info!(target: "opsrun::runs", run = id.value(), retry_of = original.value(), "run retries the failed items of another");
        }
        self.publish(id);
        if let Err(error) = self.queue.enqueue(Job::Run { run: id }).await {
            let completion = Completion::decided(RunOutcome::Failed, self.clock.now())
                .with_failure(
                    reasons::RUN_ENQUEUE_FAILED,
                    "the run's job could not be queued",
                );
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
        let change = self.store.mark_running(id, self.clock.now()).await?;
        Ok(self.published(id, change == Change::Applied, change))
    }

    /// Starts a run if its tenant has a free slot (`queued -> running`), or leaves it queued
    /// with the reason; a paused run does not start. See [`OperationRun::admit`].
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`] (e.g. `RunAlreadyCompleted`).
    pub async fn admit(&self, id: RunId) -> Result<Admission, ServiceError> {
        let before = self.queries.run(id).await?;
        let admission = self
            .store
            .admit(id, self.clock.now(), self.tenant_limit())
            .await?;
        // A waiting run asks again and again: tell watchers only when what they see changes.
        let changed = match &admission {
            Admission::Started(change) => *change == Change::Applied,
            Admission::Waiting(reason) => before.waiting() != Some(reason.as_str()),
            Admission::Paused => false,
        };
        match &admission {
            Admission::Started(Change::Applied) => {
                tracing::info!(target: "opsrun::runs", run = id.value(), r#type = before.operation_type().key(), "run started");
            }
            Admission::Waiting(reason) if changed => {
                tracing::info!(target: "opsrun::runs", run = id.value(), %reason, "run waits for its tenant");
            }
            _ => {}
        }
        Ok(self.published(id, changed, admission))
    }

    /// Pauses a run: it starts no new item, child or phase until resumed (items in flight
    /// finish and are recorded), keeps its counts and is never stale.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`] (`RunAlreadyCompleted` for a completed run).
    pub async fn pause_run(&self, id: RunId) -> Result<Change, ServiceError> {
        let change = self.store.pause(id, self.clock.now()).await?;
        if change == Change::Applied {
            tracing::info!(target: "opsrun::runs", run = id.value(), "run paused");
        }
        Ok(self.published(id, change == Change::Applied, change))
    }

    /// Resumes a paused run: clears the pause and gives the run a job, which goes on from the
    /// ledger where the run stopped (a fan-out parent hands out only its missing items). A job
    /// of the run that is still finishing is harmless: the ledger counts each item once.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`] (`RunAlreadyCompleted`), [`ServiceError::Queue`] (the pause
    /// is cleared; the maintenance pass gives a queued run its job later).
    pub async fn resume_run(&self, id: RunId) -> Result<Change, ServiceError> {
        let change = self.store.resume(id, self.clock.now()).await?;
        if change == Change::Applied {
            tracing::info!(target: "opsrun::runs", run = id.value(), "run resumed");
            self.publish(id);
            self.queue.enqueue(Job::Run { run: id }).await?;
        }
        Ok(change)
    }

    /// Marks the user's notifications `ids` read (those already read keep their time);
    /// returns how many changed. The outbox rows themselves never change otherwise.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn mark_notifications_read(
        &self,
        user: opsrun_domain::UserId,
        ids: &[i64],
    ) -> Result<u64, ServiceError> {
        Ok(self
            .store
            .mark_notifications_read(user, ids, self.clock.now())
            .await?)
    }

    /// Sets a tenant's own concurrency limit, or with `None` goes back to the default.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn set_tenant_limit(
        &self,
        tenant: TenantId,
        limit: Option<u32>,
    ) -> Result<(), ServiceError> {
        Ok(self
            .store
            .set_tenant_limit(tenant, limit.map(|l| l.max(1)))
            .await?)
    }

    /// Sets the total once from a frozen work set (I1).
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`] (`TotalAlreadySet`, `WorkSetAlreadyFrozen`, ...).
    pub async fn set_total(&self, id: RunId, work_set: WorkSet) -> Result<Change, ServiceError> {
        let change = self.store.set_total(id, work_set).await?;
        Ok(self.published(id, change == Change::Applied, change))
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

    /// Records a batch of items in one unit of work, each key at most once. Concurrent calls
    /// for the same run (from any clone of this service) are combined into one store call; the
    /// answer is still this call's own ([`RecordCoalescer`]).
    ///
    /// # Errors
    ///
    /// As [`Self::record_item`].
    pub async fn record_items(
        &self,
        id: RunId,
        records: Vec<ItemRecord>,
    ) -> Result<RecordOutcome, ServiceError> {
        let started = std::time::Instant::now();
        let sent = crate::telemetry::Sent::of(&records);
        let outcome = self.records.record(id, records, self.clock.now()).await?;
        crate::telemetry::recorded(sent, &outcome, started.elapsed());
        Ok(self.published(id, outcome.recorded > 0, outcome))
    }

    /// Reserves `count` child job numbers of fan-out `id` before its jobs are enqueued; the
    /// first ([`RunStore::reserve_child_jobs`]). Publishes nothing: no count moves.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn reserve_child_jobs(&self, id: RunId, count: u64) -> Result<u64, ServiceError> {
        Ok(self.store.reserve_child_jobs(id, count).await?)
    }

    /// Fan-out child jobs `first..first + count` of `id` were enqueued
    /// ([`RunStore::child_jobs_enqueued`]).
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn child_jobs_enqueued(
        &self,
        id: RunId,
        first: u64,
        count: u64,
    ) -> Result<Change, ServiceError> {
        let change = self.store.child_jobs_enqueued(id, first, count).await?;
        Ok(self.published(id, change == Change::Applied, change))
    }

    /// Fan-out child job `job` of `id` finished, counted once ([`RunStore::child_job_finished`]).
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn child_job_finished(&self, id: RunId, job: u64) -> Result<Change, ServiceError> {
        let change = self.store.child_job_finished(id, job).await?;
        Ok(self.published(id, change == Change::Applied, change))
    }

    /// Claims `key` right before its provider call (the last cancellation check before a side
    /// effect); see [`RunStore::claim_item`]. Publishes nothing: a claim moves no count.
    /// Concurrent claims of one run (from any clone of this service) are one store call; the
    /// answer is still this key's own ([`ClaimCoalescer`]).
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`] (`RunAlreadyCompleted`, `ItemNotInWorkSet`, ...).
    pub async fn claim_item(&self, id: RunId, key: &ItemKey) -> Result<Claim, ServiceError> {
        let answer = self
            .claims
            .claim(id, vec![key.clone()], self.clock.now())
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a claim returned no answer".into()))?;
        Ok(answer.map_err(StoreError::Rule)?)
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
        let change = self.store.increment(id, increment_key, deltas).await?;
        Ok(self.published(id, change == Change::Applied, change))
    }

    /// Declares a phased run's phases.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn declare_phases(&self, id: RunId, phases: Phases) -> Result<Change, ServiceError> {
        let change = self.store.declare_phases(id, phases).await?;
        Ok(self.published(id, change == Change::Applied, change))
    }

    /// Enters a phase (forward only).
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn set_phase(&self, id: RunId, key: &str) -> Result<Change, ServiceError> {
        let change = self
            .store
            .enter_phase(id, key.to_owned(), self.clock.now())
            .await?;
        Ok(self.published(id, change == Change::Applied, change))
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
        let change = self.store.declare_components(id, components).await?;
        Ok(self.published(id, change == Change::Applied, change))
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
        let change = self
            .store
            .update_component(id, key.to_owned(), state)
            .await?;
        Ok(self.published(id, change == Change::Applied, change))
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
            in_flight: None,
        };
        for (code, message) in failures {
            completion = completion.with_failure(code, message);
        }
        let completed = self
            .store
            .complete(id, completion, TerminalEffects { actor: None })
            .await?;
        log_completed(&completed);
        Ok(self.published(id, completed.won, completed))
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
        // Items whose provider calls already started are counted with the cancel: after it
        // no record can enter, and their side effects may have happened.
        let completion = Completion::decided(RunOutcome::Cancelled, self.clock.now())
            .settling_in_flight(crate::reasons::RUN_CANCELLED_IN_FLIGHT);
        let completed = self
            .store
            .complete(id, completion, TerminalEffects { actor })
            .await?;
        log_completed(&completed);
        Ok(self.published(id, completed.won, completed))
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
        log_completed(&completed);
        self.published(id, completed.won, ());
        Ok(completed.won.then_some(completed))
    }

    fn all_items_done(run: &OperationRun) -> bool {
        !run.is_completed() && run.all_recorded()
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
            let completed = self
                .fail_run(run.id(), reasons::RUN_STALE, &message)
                .await?;
            if completed.won {
                tracing::warn!(target: "opsrun::runs", run = run.id().value(), "run failed as stale: {message}");
                failed.push(run.id());
            }
        }
        Ok(failed)
    }

    /// Gives a queued run whose job is gone (lost, dead-lettered, deleted) a new job, so no run
    /// waits for ever. Only runs queued for longer than `older_than_ms` are looked at (a run
    /// just created may not have its job yet). Returns the runs given a new job.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`], [`ServiceError::Queue`].
    pub async fn requeue_lost_runs(&self, older_than_ms: i64) -> Result<Vec<RunId>, ServiceError> {
        let now = self.clock.now();
        let waiting: Vec<RunId> = self
            .queries
            .active_runs()
            .await?
            .iter()
            .filter(|run| {
                // A paused run waits for its resume, which gives it a job.
                run.status() == opsrun_domain::RunStatus::Queued
                    && !run.is_paused()
                    && now.millis_since(run.created_at()) > older_than_ms
            })
            .map(OperationRun::id)
            .collect();
        // One lookup for the whole backlog, not one round trip per queued run.
        let live = self.queue.live_run_jobs(&waiting).await?;
        let mut requeued = Vec::new();
        for id in waiting.into_iter().filter(|id| !live.contains(id)) {
            self.queue.enqueue(Job::Run { run: id }).await?;
            requeued.push(id);
        }
        Ok(requeued)
    }

    /// Self-healing pass: recounts every active run from its ledger (repairing and reporting
    /// drift), then completes fan-out parents whose items have all reached their end.
    /// `is_fan_out` says which types are fan-out parents (the family registry knows).
    ///
    /// # Errors
    ///
    /// [`ServiceError::Store`].
    pub async fn reconcile(
        &self,
        is_fan_out: &(dyn Fn(&OperationType) -> bool + Sync),
    ) -> Result<ReconcileReport, ServiceError> {
        let mut report = ReconcileReport::default();
        for run in self.store.active_runs().await? {
            let id = run.id();
            match self.store.reconcile_counts(id).await {
                Ok(Some(drift)) => {
                    self.publish(id);
                    report.drifted.push((id, drift));
                }
                Ok(None) => {}
                // Completed between the listing and now: nothing to repair.
                Err(StoreError::Rule(RunError::RunAlreadyCompleted)) => continue,
                Err(error) => return Err(error.into()),
            }
            report.recounted += 1;
            if is_fan_out(run.operation_type())
                && let Some(completed) = self.maybe_complete_bulk_run(id).await?
                && completed.won
            {
                report.completed.push(id);
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mockall::predicate::eq;
    use opsrun_domain::{
        ItemLedger, NewRun, OperationType, RunParts, Slug, SummaryCounts, SummaryKey, Timestamp,
        WorkspaceId,
    };

    use super::*;
    use crate::memory::MemoryRunStore;
    use crate::ports::{MockJobQueue, MockRunStore, RunQueries};
    use crate::testing::{ManualClock, MemoryQueue};

    fn run(id: i64, total: Option<u64>, processed: Option<u64>) -> OperationRun {
        let mut parts = OperationRun::new(NewRun {
            id: RunId::new(id),
            workspace: WorkspaceId::new(1),
            tenant: TenantId::new(1),
            operation_type: OperationType::BACKUP_SET_RESTORE,
            target: "backup_set:1".into(),
            initiator: Some(UserId::new(1)),
            parent: None,
            retry_of: None,
            created_at: Timestamp::from_millis(0),
        })
        .parts()
        .clone();
        parts.status = opsrun_domain::RunStatus::Running;
        let mut counts = SummaryCounts::new();
        if let Some(t) = total {
            counts.set(SummaryKey::Total, t).unwrap();
        }
        if let Some(p) = processed {
            counts.set(SummaryKey::Processed, p).unwrap();
        }
        parts.counts = counts;
        OperationRun::restore(parts)
    }

    fn request() -> StartRun {
        StartRun {
            workspace: WorkspaceId::new(1),
            tenant: TenantId::new(1),
            params: RunParams::EvidenceSnapshotGenerate { dimensions: None },
            initiator: Some(UserId::new(1)),
            parent: None,
            retry_of: None,
        }
    }

    fn service(store: MockRunStore, queue: MockJobQueue) -> OperationRunService {
        OperationRunService::new(
            Arc::new(store),
            Arc::new(queue),
            Arc::new(ManualClock::at(0)),
        )
    }

    #[tokio::test]
    async fn a_new_run_gets_exactly_one_job() {
        let mut store = MockRunStore::new();
        store.expect_create_run().times(1).returning(|_| {
            Ok(Started {
                run: run(7, None, None),
                reused: false,
            })
        });
        let mut queue = MockJobQueue::new();
        queue
            .expect_enqueue()
            .with(eq(Job::Run { run: RunId::new(7) }))
            .times(1)
            .returning(|_| Ok(()));

        let started = service(store, queue).start_run(request()).await.unwrap();

        assert!(!started.reused);
    }

    #[tokio::test]
    async fn a_reused_active_run_gets_no_second_job() {
        let mut store = MockRunStore::new();
        store.expect_create_run().times(1).returning(|_| {
            Ok(Started {
                run: run(7, None, None),
                reused: true,
            })
        });
        let mut queue = MockJobQueue::new();
        queue.expect_enqueue().never();

        let started = service(store, queue).start_run(request()).await.unwrap();

        assert!(started.reused);
    }

    #[tokio::test]
    async fn a_run_whose_job_cannot_be_queued_ends_failed() {
        let mut store = MockRunStore::new();
        store.expect_create_run().returning(|_| {
            Ok(Started {
                run: run(7, None, None),
                reused: false,
            })
        });
        store
            .expect_complete()
            .withf(|id, completion, _| {
                *id == RunId::new(7)
                    && completion.outcome == Some(RunOutcome::Failed)
                    && completion.failures[0].code == reasons::RUN_ENQUEUE_FAILED
            })
            .times(1)
            .returning(|_, _, _| {
                Ok(Completed {
                    run: run(7, None, None),
                    won: true,
                })
            });
        let mut queue = MockJobQueue::new();
        queue
            .expect_enqueue()
            .returning(|_| Err(QueueError::Unavailable("down".into())));

        let result = service(store, queue).start_run(request()).await;

        assert!(matches!(result, Err(ServiceError::Queue(_))));
    }

    #[tokio::test]
    async fn a_parent_is_completed_only_when_processed_equals_total() {
        let mut store = MockRunStore::new();
        let mut sequence = mockall::Sequence::new();
        store
            .expect_run()
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|_| Ok(run(1, Some(3), Some(2))));
        store
            .expect_run()
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|_| Ok(run(1, Some(3), Some(3))));
        store
            .expect_complete()
            .withf(|_, completion, _| completion.outcome.is_none())
            .times(1)
            .returning(|_, _, _| {
                Ok(Completed {
                    run: run(1, Some(3), Some(3)),
                    won: true,
                })
            });
        let service = service(store, MockJobQueue::new());

        let waiting = service
            .maybe_complete_bulk_run(RunId::new(1))
            .await
            .unwrap();
        let done = service
            .maybe_complete_bulk_run(RunId::new(1))
            .await
            .unwrap();

        assert!(waiting.is_none());
        assert!(done.is_some_and(|c| c.won));
    }

    #[tokio::test]
    async fn a_parent_without_a_total_is_never_completed_by_its_children() {
        let mut store = MockRunStore::new();
        store.expect_run().returning(|_| Ok(run(1, None, Some(3))));
        store.expect_complete().never();

        let result = service(store, MockJobQueue::new())
            .maybe_complete_bulk_run(RunId::new(1))
            .await
            .unwrap();

        assert!(result.is_none());
    }

    #[tokio::test]
    async fn the_losing_completion_of_a_race_reports_nothing() {
        let mut store = MockRunStore::new();
        store
            .expect_run()
            .returning(|_| Ok(run(1, Some(2), Some(2))));
        store.expect_complete().times(1).returning(|_, _, _| {
            Ok(Completed {
                run: run(1, Some(2), Some(2)),
                won: false,
            })
        });

        let result = service(store, MockJobQueue::new())
            .maybe_complete_bulk_run(RunId::new(1))
            .await
            .unwrap();

        assert!(result.is_none());
    }

    fn memory() -> (Arc<MemoryRunStore>, Arc<ManualClock>, OperationRunService) {
        let store = Arc::new(MemoryRunStore::new());
        let clock = Arc::new(ManualClock::at(1_000));
        let service =
            OperationRunService::new(store.clone(), Arc::new(MemoryQueue::new()), clock.clone());
        store.add_tenant(WorkspaceId::new(1), Slug::parse("contoso").unwrap());
        store.add_user(WorkspaceId::new(1), "ops@example.com");
        (store, clock, service)
    }

    #[tokio::test]
    async fn racing_completions_write_one_audit_event_and_one_notification() {
        let (store, _, service) = memory();
        let id = service.start_run(request()).await.unwrap().run.id();

        let (a, b) = tokio::join!(
            service.complete_run(id, None, Vec::new()),
            service.cancel_run(id, None)
        );

        let wins = [a.unwrap().won, b.unwrap().won];
        assert_eq!(wins.iter().filter(|w| **w).count(), 1);
        assert_eq!(store.audit_events(id).await.unwrap().len(), 1);
        assert_eq!(store.notifications(UserId::new(1)).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn starting_the_same_operation_twice_returns_the_active_run() {
        let (_, _, service) = memory();

        let first = service.start_run(request()).await.unwrap();
        let second = service.start_run(request()).await.unwrap();
        service.cancel_run(first.run.id(), None).await.unwrap();
        let third = service.start_run(request()).await.unwrap();

        assert!(second.reused);
        assert_eq!(second.run.id(), first.run.id());
        assert!(!third.reused);
        assert_ne!(third.run.id(), first.run.id());
    }

    #[tokio::test]
    async fn stale_running_runs_are_failed_and_fresh_ones_are_not() {
        let (store, clock, service) = memory();
        let stale = service.start_run(request()).await.unwrap().run.id();
        service.mark_running(stale).await.unwrap();
        clock.advance(10_000);
        let mut other = request();
        other.params = RunParams::BaselineCapture;
        let fresh = service.start_run(other).await.unwrap().run.id();
        service.mark_running(fresh).await.unwrap();

        let failed = service.fail_stale_runs(5_000).await.unwrap();

        assert_eq!(failed, vec![stale]);
        let run = store.run(stale).await.unwrap();
        assert_eq!(run.outcome(), RunOutcome::Failed);
        assert_eq!(run.failures()[0].code, reasons::RUN_STALE);
        assert!(!store.run(fresh).await.unwrap().is_completed());
    }

    #[tokio::test]
    async fn reconcile_repairs_drift_and_completes_finished_fan_out_parents() {
        let (store, _, service) = memory();
        let mut restore = request();
        restore.params = RunParams::BackupSetRestore {
            backup_set_id: 1,
            item_ids: None,
        };
        let id = service.start_run(restore).await.unwrap().run.id();
        let key = opsrun_domain::ItemKey::parse("1").unwrap();
        service
            .set_total(id, WorkSet::try_new(vec![key.clone()], "1 item").unwrap())
            .await
            .unwrap();
        service
            .record_item(id, ItemRecord::succeeded(key))
            .await
            .unwrap();
        // The counter row says 0 processed although the ledger holds the item (drift).
        let mut parts: RunParts = store.run(id).await.unwrap().parts().clone();
        parts.counts.set(SummaryKey::Processed, 0).unwrap();
        let ledger: ItemLedger = store.ledger(id).unwrap();
        let params = store.run_params(id).await.unwrap();
        store.put_raw(OperationRun::restore(parts), ledger, params);

        let report = service
            .reconcile(&|t| *t == OperationType::BACKUP_SET_RESTORE)
            .await
            .unwrap();

        assert_eq!(report.recounted, 1);
        assert_eq!(report.drifted.len(), 1);
        assert_eq!(
            report.drifted[0].1.after.get(SummaryKey::Processed),
            Some(1)
        );
        assert_eq!(report.completed, vec![id]);
        assert_eq!(
            store.run(id).await.unwrap().outcome(),
            RunOutcome::Succeeded
        );
        assert_eq!(store.notifications(UserId::new(1)).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_queued_run_whose_job_is_gone_gets_one_new_job() {
        let store = Arc::new(MemoryRunStore::new());
        let clock = Arc::new(ManualClock::at(1_000));
        let queue = Arc::new(MemoryQueue::new());
        let service = OperationRunService::new(store.clone(), queue.clone(), clock.clone());
        store.add_tenant(WorkspaceId::new(1), Slug::parse("contoso").unwrap());
        store.add_user(WorkspaceId::new(1), "ops@example.com");
        let id = service.start_run(request()).await.unwrap().run.id();
        let lost = queue.pop();
        clock.advance(10_000);

        let young = service.requeue_lost_runs(60_000).await.unwrap();
        let requeued = service.requeue_lost_runs(5_000).await.unwrap();
        let again = service.requeue_lost_runs(5_000).await.unwrap();

        assert_eq!(lost, Some(Job::Run { run: id }));
        assert!(young.is_empty());
        assert_eq!(requeued, vec![id]);
        assert!(again.is_empty());
        assert_eq!(queue.len(), 1);
    }

    #[tokio::test]
    async fn only_auxiliary_keys_reach_the_store_through_increments() {
        let (store, _, service) = memory();
        let id = service.start_run(request()).await.unwrap().run.id();
        let deltas = AuxDeltas::new().with(opsrun_domain::AuxiliaryKey::Tenants, 2);
        let key = opsrun_domain::ItemKey::parse("tenants-touched").unwrap();

        service
            .increment_summary_counts(id, key.clone(), deltas.clone())
            .await
            .unwrap();
        service
            .increment_summary_counts(id, key, deltas)
            .await
            .unwrap();

        let run = store.run(id).await.unwrap();
        assert_eq!(run.counts().get(SummaryKey::Tenants), Some(2));
        assert_eq!(run.counts().get(SummaryKey::Processed), None);
    }
}
