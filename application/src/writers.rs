//! What every family's writer shares: the counted driver, the writer errors and outcomes,
//! and the dispatch of jobs to the family of their run. The families themselves, one file
//! each, are in [`crate::families`].
//!
//! Every writer is resumable: it reads the run's frozen work set back instead of recomputing
//! it, skips items already in the ledger, records each item's final outcome exactly once,
//! checks for cancellation between items and heartbeats while working. Transient failures
//! (provider or storage unavailable) return an error so the job is retried; they are never
//! recorded as outcomes.

mod dispatch;

use std::collections::BTreeSet;

use async_trait::async_trait;
use opsrun_domain::{
    Admission, Claim, ItemKey, ItemRecord, OperationRun, ReasonCode, RecordOutcome, RunError,
    RunId, RunOutcome, Timestamp, WorkSet,
};

pub use dispatch::{WriterPorts, Writers};

use crate::families::Describe;
use crate::reasons;
use crate::{
    FamilyStoreError, OperationRunService, ProviderError, QueueError, RunParams, ServiceError,
    StoreError,
};

/// How a writer's execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterOutcome {
    /// This execution completed the run with this outcome.
    Completed(RunOutcome),
    /// The run was already completed before this execution did anything.
    AlreadyCompleted,
    /// The run was completed by someone else while this execution worked (cancelled by an
    /// operator, or failed as stale); the writer stopped at the next item.
    Stopped,
    /// A fan-out parent handed its items to child jobs; the last child completes it.
    Dispatched,
    /// A fan-out child recorded its item; the parent is still waiting for others.
    ItemRecorded,
    /// The run is paused: this execution stopped before its next item (a resume gives the
    /// run a new job).
    Paused,
    /// The run's tenant has no free slot: the run stays queued and its job asks again later.
    Waiting,
}

/// Why a writer's execution did not finish. Every variant but [`WriterError::WrongFamily`],
/// [`WriterError::InvalidUnit`] and [`WriterError::NoFamily`] is transient: the job may be retried, and a retry resumes where
/// this one stopped (see [`WriterError::is_transient`]).
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The run service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The tenant's provider is unavailable.
    #[error(transparent)]
    Provider(ProviderError),
    /// A family store failed.
    #[error(transparent)]
    FamilyStore(#[from] FamilyStoreError),
    /// The run's parameters do not belong to this writer's family.
    #[error("run {run} has parameters of another family")]
    WrongFamily {
        /// The run.
        run: RunId,
    },
    /// A unit named by stored data is not a valid item key.
    #[error("invalid unit: {0}")]
    InvalidUnit(String),
    /// No family is registered for the run's type in this process.
    #[error("run {run} has type '{operation_type}', which no registered family runs")]
    NoFamily {
        /// The run.
        run: RunId,
        /// Its type.
        operation_type: opsrun_domain::OperationType,
    },
}

impl WriterError {
    /// Whether a retry may succeed. A job whose error is not transient should end its run
    /// `failed` at once instead of using up its attempts.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            Self::WrongFamily { .. } | Self::InvalidUnit(_) | Self::NoFamily { .. }
        )
    }
}

impl From<RunError> for WriterError {
    fn from(error: RunError) -> Self {
        Self::Service(ServiceError::Store(StoreError::Rule(error)))
    }
}

impl From<StoreError> for WriterError {
    fn from(error: StoreError) -> Self {
        Self::Service(ServiceError::Store(error))
    }
}

impl From<QueueError> for WriterError {
    fn from(error: QueueError) -> Self {
        Self::Service(ServiceError::Queue(error))
    }
}

/// Settings shared by the writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterSettings {
    /// A working writer heartbeats at most this often (recording an item also counts).
    pub heartbeat_every_ms: i64,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            heartbeat_every_ms: 5_000,
        }
    }
}

/// What a counted family works on before its total is frozen.
#[derive(Debug)]
pub enum Plan {
    /// The deterministic work set.
    Work(WorkSet),
    /// The run cannot start; it completes `blocked` with this reason.
    Blocked(ReasonCode, String),
}

/// The family-specific part of a counted family: what its units are and what one unit's work
/// is. [`crate::families::Counted`] (or a built-in writer) drives it: freeze, resume, record,
/// finish, complete.
#[async_trait]
pub trait CountedWork: Describe {
    /// Lists the run's deterministic units (only called before the total is frozen).
    ///
    /// # Errors
    ///
    /// [`WriterError`] on a transient failure (the job is retried).
    async fn plan(&self, run: &OperationRun, params: &RunParams) -> Result<Plan, WriterError>;

    /// Does one unit's work and returns its final outcome; a transient failure is an error.
    ///
    /// # Errors
    ///
    /// [`WriterError`] on a transient failure (the job is retried; nothing is recorded).
    async fn process(
        &self,
        run: &OperationRun,
        params: &RunParams,
        unit: &ItemKey,
    ) -> Result<ItemRecord, WriterError>;

    /// Produces the family's result once every unit is recorded (`run` is re-read).
    ///
    /// # Errors
    ///
    /// [`WriterError`] on a transient failure (the job is retried).
    async fn finish(
        &self,
        _run: &OperationRun,
        _work_set: &WorkSet,
        _service: &OperationRunService,
    ) -> Result<(), WriterError> {
        Ok(())
    }
}

/// Throttles heartbeats to [`WriterSettings::heartbeat_every_ms`].
pub(crate) struct Pulse {
    last: Timestamp,
    every_ms: i64,
}

impl Pulse {
    pub(crate) fn new(service: &OperationRunService, settings: WriterSettings) -> Self {
        Self {
            last: service.clock().now(),
            every_ms: settings.heartbeat_every_ms,
        }
    }

    /// Heartbeats if the interval has passed. A completed run is not an error here: the
    /// writer's next cancellation check stops it.
    pub(crate) async fn beat(
        &mut self,
        service: &OperationRunService,
        id: RunId,
    ) -> Result<(), WriterError> {
        let now = service.clock().now();
        if now.millis_since(self.last) < self.every_ms {
            return Ok(());
        }
        self.last = now;
        match service.heartbeat(id).await {
            Ok(_) => Ok(()),
            Err(e) if e.rule() == Some(&RunError::RunAlreadyCompleted) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Reads the run and starts it if its tenant has a free slot. `Err(outcome)` when this
/// execution must not work: the run is completed ([`WriterOutcome::AlreadyCompleted`]),
/// paused ([`WriterOutcome::Paused`]) or waiting for its tenant ([`WriterOutcome::Waiting`]).
pub(crate) async fn begin(
    service: &OperationRunService,
    id: RunId,
) -> Result<Result<(OperationRun, RunParams), WriterOutcome>, WriterError> {
    let run = service.queries().run(id).await?;
    if run.is_completed() {
        return Ok(Err(WriterOutcome::AlreadyCompleted));
    }
    match service.admit(id).await {
        Ok(Admission::Started(_)) => {}
        Ok(Admission::Waiting(_)) => return Ok(Err(WriterOutcome::Waiting)),
        Ok(Admission::Paused) => return Ok(Err(WriterOutcome::Paused)),
        Err(e) if e.rule() == Some(&RunError::RunAlreadyCompleted) => {
            return Ok(Err(WriterOutcome::AlreadyCompleted));
        }
        Err(e) => return Err(e.into()),
    }
    if run.is_paused() {
        return Ok(Err(WriterOutcome::Paused));
    }
    let params = service.queries().run_params(id).await?;
    Ok(Ok((run, params)))
}

/// Whether this execution must stop before its next step: `Stopped` when the run was
/// completed by someone else (cancelled, failed as stale), `Paused` when an operator paused it.
pub(crate) async fn halted(
    service: &OperationRunService,
    id: RunId,
) -> Result<Option<WriterOutcome>, WriterError> {
    let run = service.queries().run(id).await?;
    Ok(if run.is_completed() {
        Some(WriterOutcome::Stopped)
    } else if run.is_paused() {
        Some(WriterOutcome::Paused)
    } else {
        None
    })
}

/// The run's frozen work set: read back when it exists, otherwise planned and frozen now.
/// `Err(outcome)` when the plan blocked the run.
pub(crate) async fn frozen_work_set(
    service: &OperationRunService,
    run: &OperationRun,
    plan: impl std::future::Future<Output = Result<Plan, WriterError>>,
) -> Result<Result<WorkSet, WriterOutcome>, WriterError> {
    let id = run.id();
    if let Some(frozen) = service.queries().work_set(id).await? {
        return Ok(Ok(frozen));
    }
    match plan.await? {
        Plan::Work(work_set) => match service.set_total(id, work_set.clone()).await {
            Ok(_) => Ok(Ok(work_set)),
            // Another execution froze its own plan first: work on that one.
            Err(e)
                if matches!(
                    e.rule(),
                    Some(RunError::TotalAlreadySet { .. } | RunError::WorkSetAlreadyFrozen)
                ) =>
            {
                let frozen = service.queries().work_set(id).await?;
                Ok(frozen.ok_or(WriterOutcome::Stopped))
            }
            Err(e) if e.rule() == Some(&RunError::RunAlreadyCompleted) => {
                Ok(Err(WriterOutcome::Stopped))
            }
            Err(e) => Err(e.into()),
        },
        Plan::Blocked(code, message) => {
            let completed = service
                .complete_run(id, Some(RunOutcome::Blocked), vec![(code, message)])
                .await?;
            Ok(Err(finished(&completed)))
        }
    }
}

/// The outcome of a completion call from the writer's point of view.
pub(crate) fn finished(completed: &crate::ports::Completed) -> WriterOutcome {
    if completed.won {
        WriterOutcome::Completed(completed.run.outcome())
    } else {
        WriterOutcome::Stopped
    }
}

/// What a writer may do with an item it is about to hand to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Go {
    /// Call the provider: the item is claimed, so a cancel from now on counts it.
    Call,
    /// Already recorded (a re-run job): nothing to do for this item.
    Recorded,
    /// The run was completed (cancelled, failed as stale): stop without calling.
    Stop,
    /// The run is paused: stop without calling; a resume hands the item out again.
    Pause,
}

/// Claims `unit` of run `id` right before its provider call: the cancellation check that
/// sits closest to the side effect.
pub(crate) async fn claim(
    service: &OperationRunService,
    id: RunId,
    unit: &ItemKey,
) -> Result<Go, WriterError> {
    match service.claim_item(id, unit).await {
        Ok(Claim::Claimed) => Ok(Go::Call),
        Ok(Claim::AlreadyRecorded) => Ok(Go::Recorded),
        Ok(Claim::Paused) => Ok(Go::Pause),
        Err(e) if e.rule() == Some(&RunError::RunAlreadyCompleted) => Ok(Go::Stop),
        Err(e) => Err(e.into()),
    }
}

/// Records one item; `Ok(None)` when the run was completed meanwhile.
pub(crate) async fn record(
    service: &OperationRunService,
    id: RunId,
    record: ItemRecord,
) -> Result<Option<RecordOutcome>, WriterError> {
    match service.record_item(id, record).await {
        Ok(outcome) => Ok(Some(outcome)),
        Err(e) if e.rule() == Some(&RunError::RunAlreadyCompleted) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The driver of the counted families: freeze, resume, record, finish, complete.
pub(crate) async fn run_counted(
    service: &OperationRunService,
    settings: WriterSettings,
    work: &dyn CountedWork,
    id: RunId,
) -> Result<WriterOutcome, WriterError> {
    let (run, params) = match begin(service, id).await? {
        Ok(begun) => begun,
        Err(outcome) => return Ok(outcome),
    };
    let work_set = match frozen_work_set(service, &run, work.plan(&run, &params)).await? {
        Ok(work_set) => work_set,
        Err(outcome) => return Ok(outcome),
    };
    let done: BTreeSet<ItemKey> = service.queries().ledger_keys(id).await?;
    let mut pulse = Pulse::new(service, settings);
    for unit in work_set.units().iter().filter(|u| !done.contains(*u)) {
        match claim(service, id, unit).await? {
            Go::Call => {}
            Go::Recorded => continue,
            Go::Stop => return Ok(WriterOutcome::Stopped),
            Go::Pause => return Ok(WriterOutcome::Paused),
        }
        let item = work.process(&run, &params, unit).await?;
        if record(service, id, item).await?.is_none() {
            return Ok(WriterOutcome::Stopped);
        }
        pulse.beat(service, id).await?;
    }
    let run = service.queries().run(id).await?;
    if run.is_completed() {
        return Ok(WriterOutcome::Stopped);
    }
    work.finish(&run, &work_set, service).await?;
    let completed = service.complete_run(id, None, Vec::new()).await?;
    Ok(finished(&completed))
}

/// A provider answer turned into an item's final outcome, or a transient error.
///
/// # Errors
///
/// [`WriterError::Provider`] when the provider is unavailable (transient).
pub fn provider_failure(
    unit: &ItemKey,
    error: ProviderError,
    not_found: &ReasonCode,
) -> Result<ItemRecord, WriterError> {
    match error {
        ProviderError::Unavailable(_) => Err(WriterError::Provider(error)),
        ProviderError::NotFound(_) => Ok(ItemRecord::failed(unit.clone(), not_found.clone())),
        ProviderError::Failed { code, .. } => {
            let reason = ReasonCode::parse(&code).unwrap_or_else(|_| not_found.clone());
            Ok(ItemRecord::failed(unit.clone(), reason))
        }
    }
}

/// An item key from stored data (a policy id of a baseline).
pub(crate) fn plan_key(text: &str) -> Result<ItemKey, WriterError> {
    ItemKey::parse(text).map_err(|e| WriterError::InvalidUnit(format!("'{text}': {e}")))
}

/// Freezes `units` (deduplicated, first occurrence kept) with a basis label, or blocks the run
/// when a unit is not a valid item key.
pub fn plan_units(
    units: impl IntoIterator<Item = String>,
    basis: impl FnOnce(usize) -> String,
) -> Plan {
    let mut seen = BTreeSet::new();
    let mut keys = Vec::new();
    for unit in units {
        match ItemKey::parse(&unit) {
            Ok(key) => {
                if seen.insert(key.clone()) {
                    keys.push(key);
                }
            }
            Err(e) => {
                return Plan::Blocked(reasons::RUN_INVALID_UNIT, format!("unit '{unit}': {e}"));
            }
        }
    }
    let basis = basis(keys.len());
    match WorkSet::try_new(keys, basis) {
        Ok(work_set) => Plan::Work(work_set),
        Err(e) => Plan::Blocked(reasons::RUN_INVALID_UNIT, e.to_string()),
    }
}
