//! The run store port: atomic operations that mirror the domain rules.

use std::collections::BTreeSet;

use async_trait::async_trait;
use opsrun_domain::{
    Admission, AuxDeltas, Change, Claim, Completion, ComponentState, Components, Drift, ItemKey,
    ItemOutcome, ItemRecord, LedgerEntry, OperationRun, OperationType, Phases, RecordOutcome,
    RecordWindow, Recorded, RunError, RunId, RunOutcome, RunStatus, Slug, TenantId, Timestamp,
    UserId, WorkSet, WorkspaceId,
};

use super::Tenant;
use crate::{RunParams, StoreError, TenantScope};

/// A run with the names a list shows beside it, read in the same query as the run: a list
/// costs one statement, not one per tenant and initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRun {
    /// The run.
    pub run: OperationRun,
    /// Its tenant's slug.
    pub tenant: Slug,
    /// Its initiator's e-mail, if a user started it.
    pub initiator: Option<String>,
}

/// A tenant's activity feed as stored: the tenant (for the access check) and its runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantActivity {
    /// The tenant the slug names.
    pub tenant: Tenant,
    /// Its top-level runs that are active or completed recently, newest first.
    pub runs: Vec<NamedRun>,
}

/// A count of top-level runs of one family, status and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCensus {
    /// The family.
    pub operation_type: OperationType,
    /// The status.
    pub status: RunStatus,
    /// The outcome (`pending` until completed).
    pub outcome: RunOutcome,
    /// How many.
    pub count: u64,
}

/// What a new run is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRun {
    /// Owning workspace.
    pub workspace: WorkspaceId,
    /// Tenant.
    pub tenant: TenantId,
    /// Family parameters (they give the type and the target).
    pub params: RunParams,
    /// Who starts it.
    pub initiator: Option<UserId>,
    /// Parent run, if another run starts it.
    pub parent: Option<RunId>,
    /// The completed run whose failed items it retries, if it is a retry.
    pub retry_of: Option<RunId>,
    /// Creation time.
    pub at: Timestamp,
}

/// The answer to [`RunStore::create_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The new run, or the active run with the same identity.
    pub run: OperationRun,
    /// Whether `run` is an already active run (nothing was created).
    pub reused: bool,
}

/// The terminal side effects written with a winning completion (the outbox): one audit event
/// naming `actor`, and one notification to the run's initiator (when it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalEffects {
    /// Who caused the completion (an operator who cancelled); `None` for the system.
    pub actor: Option<UserId>,
}

/// The audit action of a winning completion with `outcome`: `operation.cancelled` for a
/// cancellation, `operation.completed` otherwise. Every store writes these names from here.
#[must_use]
pub fn completion_action(outcome: RunOutcome) -> &'static str {
    if outcome == RunOutcome::Cancelled {
        "operation.cancelled"
    } else {
        "operation.completed"
    }
}

/// The answer to [`RunStore::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The run after the call.
    pub run: OperationRun,
    /// Whether this call completed it. Exactly one call per run wins.
    pub won: bool,
}

/// A row of a run's audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Id (increasing).
    pub id: i64,
    /// The run.
    pub run: RunId,
    /// What happened, e.g. `operation.completed`.
    pub action: String,
    /// Who did it; `None` for the system.
    pub actor: Option<UserId>,
    /// The run's outcome after the event.
    pub outcome: RunOutcome,
    /// When.
    pub at: Timestamp,
}

/// A terminal notification to a run's initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Id (increasing).
    pub id: i64,
    /// The notified user.
    pub user: UserId,
    /// The run.
    pub run: RunId,
    /// The run's family.
    pub operation_type: OperationType,
    /// The run's tenant.
    pub tenant: TenantId,
    /// The run's outcome.
    pub outcome: RunOutcome,
    /// When.
    pub created_at: Timestamp,
    /// Whether the user has read it.
    pub read: bool,
}

/// A query of runs for the collection, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunQuery {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Tenants the caller may see.
    pub scope: TenantScope,
    /// Only this tenant.
    pub tenant: Option<TenantId>,
    /// Only this family.
    pub operation_type: Option<OperationType>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only this outcome.
    pub outcome: Option<RunOutcome>,
    /// Only runs with an id below this one (the cursor).
    pub before: Option<RunId>,
    /// Only runs created at or after this instant.
    pub created_since: Option<Timestamp>,
    /// Only runs without a parent.
    pub top_level_only: bool,
    /// At most this many.
    pub limit: u32,
}

/// A query of a run's ledger, by item key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerQuery {
    /// The run.
    pub run: RunId,
    /// Only items with this outcome.
    pub outcome: Option<ItemOutcome>,
    /// Only items with a key after this one (the cursor).
    pub after: Option<ItemKey>,
    /// At most this many.
    pub limit: u32,
}

/// Reads of runs, their ledgers, audit events and notifications: what read models, access
/// checks and writers need to look at. Holding it changes nothing.
///
/// Every method that names a run answers [`StoreError::RunNotFound`] when it does not exist,
/// and [`StoreError::Unavailable`] when the storage fails.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RunQueries: Send + Sync {
    /// The run with this id.
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`], [`StoreError::Unavailable`].
    async fn run(&self, id: RunId) -> Result<OperationRun, StoreError>;

    /// The run `id` if it belongs to `workspace` and a tenant `scope` allows; `None` when it
    /// does not exist or is not visible. One lookup that resolves visibility, so absent and
    /// invisible runs cost the same work (nothing to learn from timing).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn visible_run(
        &self,
        id: RunId,
        workspace: WorkspaceId,
        scope: &TenantScope,
    ) -> Result<Option<OperationRun>, StoreError>;

    /// The parameters the run was created with.
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`], [`StoreError::Corrupt`], [`StoreError::Unavailable`].
    async fn run_params(&self, id: RunId) -> Result<RunParams, StoreError>;

    /// The run's frozen work set, once its total is set.
    ///
    /// # Errors
    ///
    /// The common errors.
    async fn work_set(&self, id: RunId) -> Result<Option<WorkSet>, StoreError>;

    /// The keys already in the run's ledger.
    ///
    /// # Errors
    ///
    /// The common errors.
    async fn ledger_keys(&self, id: RunId) -> Result<BTreeSet<ItemKey>, StoreError>;

    /// A page of the run's ledger.
    ///
    /// # Errors
    ///
    /// The common errors.
    async fn ledger_entries(
        &self,
        query: LedgerQuery,
    ) -> Result<Vec<(ItemKey, LedgerEntry)>, StoreError>;

    /// Every queued or running run, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn active_runs(&self) -> Result<Vec<OperationRun>, StoreError>;

    /// How many top-level runs there are of each family, status and outcome (every workspace:
    /// what the installation's metrics show).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn census(&self) -> Result<Vec<RunCensus>, StoreError>;

    /// Runs matching `query`, newest (highest id) first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn list_runs(&self, query: RunQuery) -> Result<Vec<NamedRun>, StoreError>;

    /// The tenant `slug` of `workspace` with its top-level runs that are queued or running, or
    /// completed at or after `completed_since`, newest first, in one query.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the workspace has no such tenant;
    /// [`StoreError::Unavailable`].
    async fn activity(
        &self,
        workspace: WorkspaceId,
        slug: &Slug,
        completed_since: Timestamp,
    ) -> Result<TenantActivity, StoreError>;

    /// The runs whose parent is `parent`, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn children(&self, parent: RunId) -> Result<Vec<OperationRun>, StoreError>;

    /// The run's audit events, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn audit_events(&self, run: RunId) -> Result<Vec<AuditEvent>, StoreError>;

    /// The user's notifications, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn notifications(&self, user: UserId) -> Result<Vec<Notification>, StoreError>;

    /// The run's most recent ledger records as of `now` (see [`RecordWindow`]): how many of
    /// the last [`opsrun_domain::PACE_MAX_RECORDS`] fall within
    /// [`opsrun_domain::PACE_WINDOW_MS`] of `now`, and the oldest of them. `None` when none
    /// does. One aggregate read; nothing is written for it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn record_window(
        &self,
        id: RunId,
        now: Timestamp,
    ) -> Result<Option<RecordWindow>, StoreError>;

    /// [`Self::record_window`] of each of `ids` (a list's running runs), those that have one:
    /// a feed of many running runs costs one read, not one per run. The default reads them one
    /// by one; a store that can aggregate them together should.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn record_windows(
        &self,
        ids: &[RunId],
        now: Timestamp,
    ) -> Result<std::collections::BTreeMap<RunId, RecordWindow>, StoreError> {
        let mut windows = std::collections::BTreeMap::new();
        for id in ids {
            if let Some(window) = self.record_window(*id, now).await? {
                windows.insert(*id, window);
            }
        }
        Ok(windows)
    }

    /// The runs started as retries of `id` (`retry_of = id`), oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn retries_of(&self, id: RunId) -> Result<Vec<RunId>, StoreError>;

    /// The tenant's own concurrency limit, when one is set (else the default applies).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn tenant_limit(&self, tenant: TenantId) -> Result<Option<u32>, StoreError>;
}

/// The mutations of runs: the one door through which counts and status change. Only
/// [`crate::OperationRunService`] holds it (as `Arc<dyn RunStore>`); every other part of the
/// application reads through [`RunQueries`], so "all count and status mutation goes through the
/// service" is checked by the compiler.
///
/// Every mutation is atomic and enforces the same rules as the domain model, refusing with the
/// same [`opsrun_domain::RunError`] (as [`StoreError::Rule`]) in the same order and changing
/// nothing when it refuses. Every method that names a run answers
/// [`StoreError::RunNotFound`] when it does not exist, and [`StoreError::Unavailable`] when
/// the storage fails.
#[async_trait]
pub trait RunStore: RunQueries {
    /// Creates a queued run, or returns the active (queued or running) run with the same
    /// identity (tenant, type, target) with `reused: true`. Two concurrent calls with one
    /// identity create at most one run.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn create_run(&self, new: CreateRun) -> Result<Started, StoreError>;

    /// As [`OperationRun::mark_running`].
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn mark_running(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError>;

    /// As [`OperationRun::admit`], with the load read in the same unit of work: the other
    /// top-level runs of the run's tenant that are running, and the tenant's own limit (or
    /// `default_limit`). Admissions of one tenant are serialized, so two runs can never both
    /// take its last slot. A child run (with a parent) works in its parent's slot: it is
    /// admitted whatever the load.
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn admit(
        &self,
        id: RunId,
        at: Timestamp,
        default_limit: u32,
    ) -> Result<Admission, StoreError>;

    /// As [`OperationRun::pause`].
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn pause(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError>;

    /// As [`OperationRun::resume`].
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn resume(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError>;

    /// Sets (or with `None` clears) the tenant's own concurrency limit.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn set_tenant_limit(
        &self,
        tenant: TenantId,
        limit: Option<u32>,
    ) -> Result<(), StoreError>;

    /// Marks the notifications `ids` of `user` read at `at` (those already read keep their
    /// time); returns how many changed. Ids of other users change nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn mark_notifications_read(
        &self,
        user: UserId,
        ids: &[i64],
        at: Timestamp,
    ) -> Result<u64, StoreError>;

    /// As [`OperationRun::set_total`]: freezes the work set with the total.
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn set_total(&self, id: RunId, work_set: WorkSet) -> Result<Change, StoreError>;

    /// As [`OperationRun::record_items`]: ledger inserts and counter increments in one unit of
    /// work, all or nothing.
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn record_items(
        &self,
        id: RunId,
        records: Vec<ItemRecord>,
        at: Timestamp,
    ) -> Result<RecordOutcome, StoreError> {
        self.record_items_keyed(id, records, at)
            .await
            .map(|recorded| recorded.outcome)
    }

    /// As [`OperationRun::record_items_keyed`]: [`Self::record_items`], also naming the keys it
    /// entered, so one combined record can be split among the callers whose items it carried
    /// (see [`crate::RecordCoalescer`]).
    ///
    /// # Errors
    ///
    /// As [`Self::record_items`].
    async fn record_items_keyed(
        &self,
        id: RunId,
        records: Vec<ItemRecord>,
        at: Timestamp,
    ) -> Result<Recorded, StoreError>;

    /// Child jobs `first..first + count` of fan-out `id` were enqueued
    /// ([`opsrun_domain::ChildJobLedger::enqueued`]); the run shows the new counts. Allowed in
    /// any status: it is job bookkeeping, not a count of the run's items.
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`], [`StoreError::Unavailable`].
    async fn child_jobs_enqueued(
        &self,
        id: RunId,
        first: u64,
        count: u64,
    ) -> Result<Change, StoreError>;

    /// Reserves `count` child job numbers of fan-out `id` and returns the first
    /// ([`opsrun_domain::ChildJobLedger::reserve`]): a dispatch takes its numbers before it
    /// enqueues the jobs, so a retried dispatch never numbers its jobs like the lost ones of the
    /// attempt before it.
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`], [`StoreError::Unavailable`].
    async fn reserve_child_jobs(&self, id: RunId, count: u64) -> Result<u64, StoreError>;

    /// Child job `job` of fan-out `id` finished, counted once however often it is said
    /// ([`opsrun_domain::ChildJobLedger::finished`]). Allowed in any status: the job that
    /// records the last item finishes after the run completed.
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`], [`StoreError::Unavailable`].
    async fn child_job_finished(&self, id: RunId, job: u64) -> Result<Change, StoreError>;

    /// As [`OperationRun::claim_item`]: the claim is stored so that a cancel which wins later
    /// counts the item as in flight ([`OperationRun::complete_settling`]). A claim and a
    /// completion are serialized on the run: a claim that returns `Claimed` is seen by every
    /// completion after it.
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn claim_item(&self, id: RunId, key: ItemKey, at: Timestamp)
    -> Result<Claim, StoreError>;

    /// As [`OperationRun::claim_items`]: [`Self::claim_item`] for each of `keys` in one store
    /// call, each key answered on its own (a key outside the work set, or of a run completed
    /// meanwhile, is refused alone). The default claims them one by one; a store that can
    /// claim many in one statement says so here (see [`crate::ClaimCoalescer`]).
    ///
    /// # Errors
    ///
    /// The common errors (no such run, storage unavailable), for every key at once.
    async fn claim_items(
        &self,
        id: RunId,
        keys: Vec<ItemKey>,
        at: Timestamp,
    ) -> Result<Vec<Result<Claim, RunError>>, StoreError> {
        let mut answers = Vec::with_capacity(keys.len());
        for key in keys {
            answers.push(match self.claim_item(id, key, at).await {
                Ok(claim) => Ok(claim),
                Err(StoreError::Rule(refused)) => Err(refused),
                Err(other) => return Err(other),
            });
        }
        Ok(answers)
    }

    /// As [`OperationRun::increment`].
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn increment(
        &self,
        id: RunId,
        increment_key: ItemKey,
        deltas: AuxDeltas,
    ) -> Result<Change, StoreError>;

    /// As [`OperationRun::declare_phases`].
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn declare_phases(&self, id: RunId, phases: Phases) -> Result<Change, StoreError>;

    /// As [`OperationRun::enter_phase`].
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn enter_phase(
        &self,
        id: RunId,
        key: String,
        at: Timestamp,
    ) -> Result<Change, StoreError>;

    /// As [`OperationRun::declare_components`].
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn declare_components(
        &self,
        id: RunId,
        components: Components,
    ) -> Result<Change, StoreError>;

    /// As [`OperationRun::update_component`].
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn update_component(
        &self,
        id: RunId,
        key: String,
        state: ComponentState,
    ) -> Result<Change, StoreError>;

    /// As [`OperationRun::heartbeat`].
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn heartbeat(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError>;

    /// As [`OperationRun::complete_settling`], exactly once: the call that completes the run gets
    /// `won: true`, and in the same unit of work writes one audit event
    /// (`operation.completed`, or `operation.cancelled` for a cancellation) and, when
    /// the run has an initiator, one notification to the initiator. A call on a completed run changes nothing
    /// and answers `won: false` with the run as it is.
    ///
    /// # Errors
    ///
    /// [`StoreError::Rule`] for a `pending` outcome, plus the common errors.
    async fn complete(
        &self,
        id: RunId,
        completion: Completion,
        effects: TerminalEffects,
    ) -> Result<Completed, StoreError>;

    /// As [`OperationRun::reconcile_counts`]: recounts the counters from the ledger in one
    /// unit of work and reports the drift repaired.
    ///
    /// # Errors
    ///
    /// As the domain method, plus the common errors.
    async fn reconcile_counts(&self, id: RunId) -> Result<Option<Drift>, StoreError>;
}

#[cfg(any(test, feature = "mocks"))]
mockall::mock! {
    /// A mock of the whole run storage (its reads and its mutations), for tests of the service.
    pub RunStore {}

    #[async_trait]
    impl RunQueries for RunStore {
        async fn run(&self, id: RunId) -> Result<OperationRun, StoreError>;
        async fn visible_run(&self, id: RunId, workspace: WorkspaceId, scope: &TenantScope) -> Result<Option<OperationRun>, StoreError>;
        async fn run_params(&self, id: RunId) -> Result<RunParams, StoreError>;
        async fn work_set(&self, id: RunId) -> Result<Option<WorkSet>, StoreError>;
        async fn ledger_keys(&self, id: RunId) -> Result<BTreeSet<ItemKey>, StoreError>;
        async fn ledger_entries( &self, query: LedgerQuery, ) -> Result<Vec<(ItemKey, LedgerEntry)>, StoreError>;
        async fn active_runs(&self) -> Result<Vec<OperationRun>, StoreError>;
        async fn census(&self) -> Result<Vec<RunCensus>, StoreError>;
        async fn list_runs(&self, query: RunQuery) -> Result<Vec<NamedRun>, StoreError>;
        async fn activity( &self, workspace: WorkspaceId, slug: &Slug, completed_since: Timestamp, ) -> Result<TenantActivity, StoreError>;
        async fn children(&self, parent: RunId) -> Result<Vec<OperationRun>, StoreError>;
        async fn audit_events(&self, run: RunId) -> Result<Vec<AuditEvent>, StoreError>;
        async fn notifications(&self, user: UserId) -> Result<Vec<Notification>, StoreError>;
        async fn record_window(&self, id: RunId, now: Timestamp) -> Result<Option<RecordWindow>, StoreError>;
        async fn record_windows(&self, ids: &[RunId], now: Timestamp) -> Result<std::collections::BTreeMap<RunId, RecordWindow>, StoreError>;
        async fn retries_of(&self, id: RunId) -> Result<Vec<RunId>, StoreError>;
        async fn tenant_limit(&self, tenant: TenantId) -> Result<Option<u32>, StoreError>;
    }

    #[async_trait]
    impl RunStore for RunStore {
        async fn create_run(&self, new: CreateRun) -> Result<Started, StoreError>;
        async fn mark_running(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError>;
        async fn admit(&self, id: RunId, at: Timestamp, default_limit: u32) -> Result<Admission, StoreError>;
        async fn pause(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError>;
        async fn resume(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError>;
        async fn set_tenant_limit(&self, tenant: TenantId, limit: Option<u32>) -> Result<(), StoreError>;
        async fn mark_notifications_read(&self, user: UserId, ids: &[i64], at: Timestamp) -> Result<u64, StoreError>;
        async fn set_total(&self, id: RunId, work_set: WorkSet) -> Result<Change, StoreError>;
        async fn record_items( &self, id: RunId, records: Vec<ItemRecord>, at: Timestamp, ) -> Result<RecordOutcome, StoreError>;
        async fn record_items_keyed( &self, id: RunId, records: Vec<ItemRecord>, at: Timestamp, ) -> Result<Recorded, StoreError>;
        async fn child_jobs_enqueued(&self, id: RunId, first: u64, count: u64) -> Result<Change, StoreError>;
        async fn child_job_finished(&self, id: RunId, job: u64) -> Result<Change, StoreError>;
        async fn reserve_child_jobs(&self, id: RunId, count: u64) -> Result<u64, StoreError>;
        async fn claim_item(&self, id: RunId, key: ItemKey, at: Timestamp) -> Result<Claim, StoreError>;
        async fn claim_items(&self, id: RunId, keys: Vec<ItemKey>, at: Timestamp) -> Result<Vec<Result<Claim, RunError>>, StoreError>;
        async fn increment( &self, id: RunId, increment_key: ItemKey, deltas: AuxDeltas, ) -> Result<Change, StoreError>;
        async fn declare_phases(&self, id: RunId, phases: Phases) -> Result<Change, StoreError>;
        async fn enter_phase(&self, id: RunId, key: String, at: Timestamp) -> Result<Change, StoreError>;
        async fn declare_components( &self, id: RunId, components: Components, ) -> Result<Change, StoreError>;
        async fn update_component( &self, id: RunId, key: String, state: ComponentState, ) -> Result<Change, StoreError>;
        async fn heartbeat(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError>;
        async fn complete( &self, id: RunId, completion: Completion, effects: TerminalEffects, ) -> Result<Completed, StoreError>;
        async fn reconcile_counts(&self, id: RunId) -> Result<Option<Drift>, StoreError>;
    }
}
