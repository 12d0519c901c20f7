//! The runtime policy every worker follows, whatever queue carries its jobs: what one attempt
//! of a job does (done, retry, or give up with a final outcome), and the maintenance pass that
//! keeps runs moving (end stale runs, recount from the ledger, complete finished fan-outs).
//! Adapters only loop: they call these and schedule the next attempt or pass.

use std::time::Duration;

use opsrun_domain::{RunId, Timestamp};

use crate::families::Families;
use crate::ports::{Job, Pruned, Retention};
use crate::writers::{WriterError, WriterOutcome, Writers};
use crate::{OperationRunService, ReconcileReport, ServiceError};

/// Settings of the worker runtime. There is no default: the composition root decides them
/// (once, in its configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// A running run with no sign of life for this long is ended `failed` (`run.stale`).
    pub stale_after: Duration,
    /// How often the maintenance pass runs.
    pub maintenance_every: Duration,
    /// Attempts a job gets before its run (or child item) ends `failed`.
    pub max_attempts: u32,
    /// A queued run without a job for longer than this is given a new one.
    pub requeue_after: Duration,
    /// Finished queue jobs, gone workers' rows and notifications older than this are pruned.
    pub retain_for: Duration,
}

/// Rows of each kind one maintenance pass prunes at most.
pub const PRUNE_BATCH: u32 = 1_000;

/// What happened to one attempt of a job.
#[derive(Debug)]
pub enum Attempt {
    /// The writer finished its part (the job is done).
    Done(WriterOutcome),
    /// The writer failed transiently and attempts remain: retry the job.
    Retry(WriterError),
    /// The job used up its attempts (or failed for good): its run or item ended `failed`.
    GaveUp(WriterOutcome),
    /// The run waits for its tenant's slot: the job is done, and the same job is to be
    /// enqueued again to run after this delay (see [`wait_delay`]).
    Wait(Duration),
}

/// How long a run that waits for its tenant's slot stays out of the queue before it asks
/// again: 1 s at first, growing with the time it has waited (a tenth of it) up to 10 s, so a
/// long backlog costs few queue writes and a short wait stays short.
#[must_use]
pub fn wait_delay(waited: Duration) -> Duration {
    (waited / 10).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// Runs attempt number `attempt` (1-based) of `job`. A transient failure asks for a retry
/// while attempts remain; on the last attempt, or on a failure that is not transient, the
/// job gives up and its run (or child item) ends with a final `failed` outcome.
///
/// # Errors
///
/// [`WriterError`] when even giving up failed (storage down): the job must be retried.
pub async fn attempt(
    writers: &Writers,
    job: &Job,
    attempt: u32,
    max_attempts: u32,
) -> Result<Attempt, WriterError> {
    let result = writers.execute(job).await;
    if let Ok(WriterOutcome::Waiting) = result {
        let waited = match job {
            Job::Run { run } => writers.waited(*run).await?,
            Job::RestoreChild { .. } => Duration::ZERO,
        };
        return Ok(Attempt::Wait(wait_delay(waited)));
    }
    settle(result, attempt, max_attempts, |error| async move {
        writers.give_up(job, &error).await
    })
    .await
}

/// As [`attempt`], for item `item` of fan-out `parent` whose `family` the caller resolved
/// already (a chunk of items resolves it once, not once per item).
///
/// # Errors
///
/// [`WriterError`] when even giving up failed (storage down): the item must be tried again.
pub async fn attempt_child(
    family: &dyn crate::families::Family,
    parent: RunId,
    item: &opsrun_domain::ItemKey,
    attempt: u32,
    max_attempts: u32,
) -> Result<Attempt, WriterError> {
    let result = family.execute_child(parent, item.clone()).await;
    // A child never waits for a tenant slot: its parent holds one.
    if let Ok(WriterOutcome::Waiting) = result {
        return Ok(Attempt::Wait(Duration::ZERO));
    }
    settle(result, attempt, max_attempts, |_| {
        family.give_up_child(parent, item.clone())
    })
    .await
}

/// The one retry rule: done, retry while attempts remain and the failure is transient, or
/// give up (`give_up` gets the last error's text).
async fn settle<F, Fut>(
    result: Result<WriterOutcome, WriterError>,
    attempt: u32,
    max_attempts: u32,
    give_up: F,
) -> Result<Attempt, WriterError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<WriterOutcome, WriterError>>,
{
    match result {
        Ok(outcome) => Ok(Attempt::Done(outcome)),
        Err(error) if error.is_transient() && attempt < max_attempts => Ok(Attempt::Retry(error)),
        Err(error) => Ok(Attempt::GaveUp(give_up(error.to_string()).await?)),
    }
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Runs ended `failed` as stale.
    pub stale: Vec<RunId>,
    /// Queued runs whose job was gone, given a new one.
    pub requeued: Vec<RunId>,
    /// What retention pruned.
    pub pruned: Pruned,
    /// The reconcile pass.
    pub reconciled: ReconcileReport,
}

/// One maintenance pass: ends stale runs, gives queued runs whose job is gone a new job,
/// reconciles active ones, and prunes what retention allows (completing fan-out
/// parents of `families` whose items are all done).
///
/// # Errors
///
/// [`ServiceError`] when storage fails (the next pass retries).
pub async fn maintain(
    service: &OperationRunService,
    families: &Families,
    retention: &dyn Retention,
    settings: RuntimeSettings,
) -> Result<Maintenance, ServiceError> {
    let stale_ms = i64::try_from(settings.stale_after.as_millis()).unwrap_or(i64::MAX);
    let stale = service.fail_stale_runs(stale_ms).await?;
    let requeue_ms = i64::try_from(settings.requeue_after.as_millis()).unwrap_or(i64::MAX);
    let requeued = service.requeue_lost_runs(requeue_ms).await?;
    let reconciled = service.reconcile(&|t| families.is_fan_out(t)).await?;
    let retain_ms = i64::try_from(settings.retain_for.as_millis()).unwrap_or(i64::MAX);
    let before =
        Timestamp::from_millis(service.clock().now().as_millis().saturating_sub(retain_ms));
    let pruned = retention.prune(before, PRUNE_BATCH).await?;
    Ok(Maintenance {
        stale,
        requeued,
        pruned,
        reconciled,
    })
}
