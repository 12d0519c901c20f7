//! What the run service tells the process's metrics recorder (the `metrics` facade: a no-op
//! until an edge installs an exporter). Names and labels are documented in
//! docs/operations.md; labels are closed sets (outcomes, families), never tenant or run ids.

use std::time::Duration;

use opsrun_domain::{ItemOutcome, ItemRecord, OperationRun, RecordOutcome};

/// Items newly recorded, by outcome.
pub const ITEMS_RECORDED: &str = "opsrun_items_recorded_total";
/// How long a record statement took.
pub const RECORD_SECONDS: &str = "opsrun_record_seconds";
/// Runs completed (winning completions), by family and outcome.
pub const RUNS_COMPLETED: &str = "opsrun_runs_completed_total";
/// How long completed runs took from creation to completion, by family.
pub const RUN_DURATION_SECONDS: &str = "opsrun_run_duration_seconds";

/// How many records of a call carry each outcome (in [`ItemOutcome::ALL`]'s order): counted
/// on the stack, so a record call allocates nothing for its metrics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent([u64; 3]);

impl Sent {
    /// The outcomes of `records`.
    pub(crate) fn of(records: &[ItemRecord]) -> Self {
        let mut n = [0_u64; 3];
        for record in records {
            if let Some(i) = ItemOutcome::ALL.iter().position(|o| *o == record.outcome()) {
                n[i] += 1;
            }
        }
        Self(n)
    }
}

/// Counts a record call: what was `sent`, and the store's `result`.
pub(crate) fn recorded(sent: Sent, result: &RecordOutcome, took: Duration) {
    metrics::histogram!(RECORD_SECONDS).record(took.as_secs_f64());
    if result.recorded == 0 {
        return;
    }
    let mut carried = ItemOutcome::ALL.iter().zip(sent.0).filter(|(_, n)| *n > 0);
    // Which records were new is known exactly when none was a duplicate, or when all carry
    // the same outcome; a batch that is both mixed and partly duplicate (a retried batch) is
    // counted without its outcome.
    if result.duplicates == 0 {
        for (outcome, n) in carried {
            metrics::counter!(ITEMS_RECORDED, "outcome" => outcome.key()).increment(n);
        }
    } else if let (Some((outcome, _)), None) = (carried.next(), carried.next()) {
        metrics::counter!(ITEMS_RECORDED, "outcome" => outcome.key()).increment(result.recorded);
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
