//! What the run service tells the process's metrics recorder (the `metrics` facade: a no-op
//! until an edge installs an exporter). Names and labels are documented in
//! docs/operations.md; labels are closed sets (outcomes, families), never tenant or run ids.

use std::time::Duration;

use opsrun_domain::{ItemOutcome, OperationRun, RecordOutcome};

/// Items newly recorded, by outcome.
pub const ITEMS_RECORDED: &str = "opsrun_items_recorded_total";
/// How long a record statement took.
pub const RECORD_SECONDS: &str = "opsrun_record_seconds";
/// Runs completed (winning completions), by family and outcome.
pub const RUNS_COMPLETED: &str = "opsrun_runs_completed_total";
/// How long completed runs took from creation to completion, by family.
pub const RUN_DURATION_SECONDS: &str = "opsrun_run_duration_seconds";

/// Counts a record call: `outcomes` of the records sent, `result` of the store.
pub(crate) fn recorded(outcomes: &[ItemOutcome], result: &RecordOutcome, took: Duration) {
    metrics::histogram!(RECORD_SECONDS).record(took.as_secs_f64());
    if result.recorded == 0 {
        return;
    }
    // Which records were new is known exactly when none was a duplicate, or when all carry
    // the same outcome; a batch that is both mixed and partly duplicate (a retried batch) is
    // counted without its outcome.
    if result.duplicates == 0 {
        for outcome in ItemOutcome::ALL {
            let n = outcomes.iter().filter(|o| **o == outcome).count() as u64;
            if n > 0 {
                metrics::counter!(ITEMS_RECORDED, "outcome" => outcome.key()).increment(n);
            }
        }
    } else if let Some(first) = outcomes.first()
        && outcomes.iter().all(|o| o == first)
    {
        metrics::counter!(ITEMS_RECORDED, "outcome" => first.key()).increment(result.recorded);
    } else {
        metrics::counter!(ITEMS_RECORDED, "outcome" => "unattributed").increment(result.recorded);
    }
}

/// Counts a winning completion of `run`.
pub(crate) fn completed(run: &OperationRun) {
    let family = run.operation_type().key().to_owned();
    metrics::counter!(RUNS_COMPLETED, "family" => family.clone(), "outcome" => run.outcome().key())
        .increment(1);
    if let Some(done) = run.completed_at() {
        let seconds = done.millis_since(run.created_at()).max(0) as f64 / 1_000.0;
        metrics::histogram!(RUN_DURATION_SECONDS, "family" => family).record(seconds);
    }
}
