//! The worker runtime's queue-independent parts: how one job attempt is handled (retry, or
//! give up with a final outcome), and the periodic maintenance (stale runs, reconcile).

use std::future::Future;
use std::time::Duration;

use opsrun_application::OperationRunService;
use opsrun_application::ports::Job;
use opsrun_application::writers::{WriterError, WriterOutcome, Writers};

/// Settings of the worker runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// A running run with no sign of life for this long is ended `failed` (`run.stale`).
    pub stale_after: Duration,
    /// How often the maintenance pass runs.
    pub maintenance_every: Duration,
    /// Attempts a job gets before its run (or child item) ends `failed`.
    pub max_attempts: u32,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(600),
            maintenance_every: Duration::from_secs(30),
            max_attempts: 5,
        }
    }
}

/// What happened to one attempt of a job.
#[derive(Debug)]
pub enum Attempt {
    /// The writer finished its part (the job is done).
    Done(WriterOutcome),
    /// The writer failed transiently and attempts remain: retry the job.
    Retry(WriterError),
    /// The job used up its attempts (or failed for good): its run or item ended `failed`.
    GaveUp(WriterOutcome),
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
    match writers.execute(job).await {
        Ok(outcome) => Ok(Attempt::Done(outcome)),
        Err(error) if error.is_transient() && attempt < max_attempts => Ok(Attempt::Retry(error)),
        Err(error) => {
            let outcome = writers.give_up(job, &error.to_string()).await?;
            Ok(Attempt::GaveUp(outcome))
        }
    }
}

/// One maintenance pass: ends stale runs and reconciles active ones. Returns the runs failed
/// as stale and the reconcile report.
///
/// # Errors
///
/// [`opsrun_application::ServiceError`] when storage fails.
pub async fn maintain(
    service: &OperationRunService,
    settings: RuntimeSettings,
) -> Result<
    (
        Vec<opsrun_domain::RunId>,
        opsrun_application::ReconcileReport,
    ),
    opsrun_application::ServiceError,
> {
    let stale_ms = i64::try_from(settings.stale_after.as_millis()).unwrap_or(i64::MAX);
    let stale = service.fail_stale_runs(stale_ms).await?;
    let report = service.reconcile().await?;
    Ok((stale, report))
}

/// Runs [`maintain`] every `settings.maintenance_every` until `shutdown` resolves. Failures
/// are reported through `on_error` and the loop goes on (the next pass retries).
pub async fn maintenance_loop<F, E>(
    service: OperationRunService,
    settings: RuntimeSettings,
    shutdown: F,
    mut on_error: E,
) where
    F: Future<Output = ()>,
    E: FnMut(opsrun_application::ServiceError),
{
    let mut tick = tokio::time::interval(settings.maintenance_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {
                if let Err(error) = maintain(&service, settings).await {
                    on_error(error);
                }
            }
        }
    }
}
