//! How a run looks on the pages: one rendering per view (a feed card, a collection row, the
//! detail body), used by the page itself and by its live stream alike, so a live page and a
//! reload show the same thing by construction.

use askama::Template;
use opsrun_application::families::Families;
use opsrun_application::ports::Role;
use opsrun_application::read_models::{OperationDetail, RunSummary};
use opsrun_domain::{OperationRun, ProgressDetail, RunId, RunOutcome, RunStatus};

use crate::web::api::dto::rfc3339;

/// A progress widget, as the templates draw it.
#[derive(Debug, Clone, Default)]
pub struct Widget {
    pub(crate) mode: String,
    pub(crate) label: String,
    pub(crate) percent: u8,
    pub(crate) processed: u64,
    pub(crate) total: u64,
    pub(crate) phase_index: usize,
    pub(crate) phase_count: usize,
    pub(crate) phase_label: String,
    pub(crate) components: Vec<(String, String)>,
    pub(crate) outcome: String,
    pub(crate) outcome_words: String,
    pub(crate) activity: String,
    pub(crate) waiting: bool,
    pub(crate) stale: bool,
    pub(crate) stale_minutes: u64,
    pub(crate) anomaly: bool,
    pub(crate) paused: bool,
    pub(crate) estimate: Option<String>,
}

/// An outcome in words with its sign, as every page shows it (colour comes from its class).
#[must_use]
pub fn outcome_words(outcome: RunOutcome) -> String {
    let sign = match outcome {
        RunOutcome::Pending => "…",
        RunOutcome::Succeeded => "✓",
        RunOutcome::PartiallySucceeded => "⚠",
        RunOutcome::Failed => "✗",
        RunOutcome::Blocked | RunOutcome::Cancelled => "⊘",
    };
    format!("{sign} {}", crate::render::words(outcome.key()))
}

/// Where a run stands, in the words of every surface: `waiting`, `working`, `paused`,
/// `no sign of life` or its outcome.
#[must_use]
pub fn state_words(summary: &RunSummary) -> String {
    let run = &summary.run;
    if run.is_completed() {
        return outcome_words(run.outcome());
    }
    if run.is_paused() {
        return "paused".to_owned();
    }
    if summary.progress.stale {
        return "no sign of life".to_owned();
    }
    match run.status() {
        RunStatus::Queued => "waiting".to_owned(),
        _ => "working".to_owned(),
    }
}

impl Widget {
    fn of(summary: &RunSummary, families: &Families) -> Self {
        let view = &summary.progress;
        let mut w = Self {
            mode: view.mode().key().to_owned(),
            label: families.label(summary.run.operation_type()),
            outcome: summary.run.outcome().key().to_owned(),
            outcome_words: outcome_words(summary.run.outcome()),
            stale: view.stale,
            stale_minutes: crate::config::STALE_AFTER_SECS / 60,
            anomaly: view.anomaly,
            paused: view.paused,
            estimate: view
                .pace
                .as_ref()
                .map(opsrun_application::read_models::eta_phrase),
            ..Self::default()
        };
        match &view.detail {
            ProgressDetail::Counted {
                processed,
                total,
                percent,
            } => {
                w.processed = *processed;
                w.total = *total;
                w.percent = *percent;
            }
            ProgressDetail::Phased(phase) => {
                w.phase_index = phase.index;
                w.phase_count = phase.count;
                w.phase_label = phase.label.clone();
            }
            ProgressDetail::Composite { components, .. } => {
                w.components = components
                    .iter()
                    .map(|c| (c.label.clone(), crate::render::component_line(c)))
                    .collect();
            }
            ProgressDetail::Activity { processed } => {
                // A queued run is waiting (for a worker, or its tenant's slot), not working.
                (w.activity, w.waiting) = match (&view.waiting, summary.run.status()) {
                    (Some(reason), _) => (reason.clone(), true),
                    (None, RunStatus::Queued) => ("waiting for a worker".to_owned(), true),
                    (None, _) => (
                        processed
                            .map_or("working".to_owned(), |n| format!("working, {n} processed")),
                        false,
                    ),
                };
            }
            ProgressDetail::None { .. } => {}
        }
        w
    }
}

/// A run as the pages show it.
#[derive(Debug, Clone)]
pub struct PageRun {
    pub(crate) id: i64,
    pub(crate) label: String,
    pub(crate) status: String,
    pub(crate) state: String,
    pub(crate) tenant: String,
    pub(crate) view_url: String,
    pub(crate) created_at: String,
    pub(crate) created_words: String,
    pub(crate) took: Option<String>,
    /// How long an unfinished run has been going, to the minute (`12 min`).
    pub(crate) going_for: Option<String>,
    pub(crate) initiator: Option<String>,
    pub(crate) counts_line: String,
    pub(crate) widget: Widget,
}

impl PageRun {
    /// The page view of a run summary.
    #[must_use]
    pub fn of(summary: &RunSummary, families: &Families) -> Self {
        let run = &summary.run;
        Self {
            id: run.id().value(),
            label: families.label(run.operation_type()),
            status: run.status().key().to_owned(),
            state: state_words(summary),
            tenant: summary.tenant.to_string(),
            view_url: summary.view_url.clone(),
            created_at: rfc3339(run.created_at()),
            created_words: utc_words(run.created_at()),
            took: run.completed_at().map(|end| {
                crate::render::duration(run.started_at().unwrap_or(run.created_at()), end)
            }),
            going_for: match (run.started_at(), run.is_completed()) {
                (Some(started), false) => Some(going_for(started, crate::commands::now())),
                _ => None,
            },
            initiator: summary.initiator.clone(),
            counts_line: counts_summary(run),
            widget: Widget::of(summary, families),
        }
    }
}

/// How long since `started`, to the minute (a page redraws a run when this changes, so it
/// changes at most once a minute): `under a minute`, `12 min`, `3 h 5 min`, `2 d 4 h`.
fn going_for(started: opsrun_domain::Timestamp, now: opsrun_domain::Timestamp) -> String {
    let minutes = now.millis_since(started).max(0) / 60_000;
    match minutes {
        0 => "under a minute".to_owned(),
        1..=59 => format!("{minutes} min"),
        60..=1_439 => format!("{} h {} min", minutes / 60, minutes % 60),
        _ => format!("{} d {} h", minutes / 1_440, minutes % 1_440 / 60),
    }
}

/// A completed run's counts in a few words: `322/360 · 38 failed`, or its set counts when it
/// has no total.
fn counts_summary(run: &OperationRun) -> String {
    use opsrun_domain::SummaryKey;
    let counts = run.counts();
    match counts.get(SummaryKey::Total) {
        Some(total) => {
            let mut line = format!("{}/{total}", counts.get_or_zero(SummaryKey::Processed));
            for (key, word) in [
                (SummaryKey::Failed, "failed"),
                (SummaryKey::Skipped, "skipped"),
            ] {
                let n = counts.get_or_zero(key);
                if n > 0 {
                    line.push_str(&format!(" · {n} {word}"));
                }
            }
            line
        }
        None => crate::render::counts_line(run),
    }
}

/// An instant as a person reads it in a table: `2026-12-05 09:30:12 UTC`.
pub(crate) fn utc_words(t: opsrun_domain::Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(t.as_millis()).map_or_else(String::new, |d| {
        d.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    })
}

/// A feed card of the tenant page.
#[derive(Template)]
#[template(path = "feed_item.html")]
pub struct FeedItem<'a> {
    pub(crate) r: &'a PageRun,
}

/// A row of the Operations collection.
#[derive(Template)]
#[template(path = "collection_row.html")]
pub struct CollectionRow<'a> {
    pub(crate) r: &'a PageRun,
}

/// One phase of a phased run, as the detail lists it.
#[derive(Debug, Clone)]
pub struct PhaseRow {
    pub(crate) label: String,
    /// `done`, `now`, `next`, `stopped` (where a run that did not succeed ended) or
    /// `not reached`.
    pub(crate) state: &'static str,
    /// The state as a class name (`not-reached`).
    pub(crate) class: String,
    /// How long it took (`1.2s`), or for the current phase how long it has been going (to the
    /// minute), where the phase's entry time was recorded.
    pub(crate) took: Option<String>,
}

fn phase_rows(run: &OperationRun) -> Vec<PhaseRow> {
    let Some(phases) = run.phases() else {
        return Vec::new();
    };
    let current = phases.current_index();
    let done = run.is_completed();
    let entered = phases.entered();
    // A phase ends when the next one is entered, the last when the run completed.
    let ended = |i: usize| {
        entered
            .get(i + 1)
            .copied()
            .flatten()
            .or_else(|| run.completed_at().filter(|_| Some(i) == current))
    };
    // A run that got through its phases (some items may have failed) finished its last one;
    // one that failed, was blocked or cancelled stopped in the phase it was in.
    let succeeded = matches!(
        run.outcome(),
        RunOutcome::Succeeded | RunOutcome::PartiallySucceeded
    );
    phases
        .list()
        .iter()
        .enumerate()
        .map(|(i, phase)| {
            let state = match current {
                Some(c) if i < c => "done",
                Some(c) if i == c && done && succeeded => "done",
                Some(c) if i == c && done => "stopped",
                Some(c) if i == c => "now",
                _ if done => "not reached",
                _ => "next",
            };
            let took = entered
                .get(i)
                .copied()
                .flatten()
                .and_then(|start| match state {
                    "done" | "stopped" => ended(i).map(|end| crate::render::duration(start, end)),
                    "now" => Some(format!("for {}", going_for(start, crate::commands::now()))),
                    _ => None,
                });
            PhaseRow {
                label: phase.label().to_owned(),
                state,
                class: state.replace(' ', "-"),
                took,
            }
        })
        .collect()
}

/// An item of a run as the detail lists it: what a person calls it (when its family names
/// it), its key, and its reason.
#[derive(Debug, Clone)]
pub struct ItemRow {
    pub(crate) name: Option<String>,
    pub(crate) key: String,
    pub(crate) reason: String,
}

/// The run-control forms of the detail page: rendered only when the caller's role allows the
/// action and the run allows it now (the live stream re-renders them with the run).
#[derive(Debug, Clone, Copy)]
pub struct Controls {
    pub(crate) pause: bool,
    pub(crate) resume: bool,
    pub(crate) cancel: bool,
    pub(crate) retry: bool,
}

impl Controls {
    fn of(run: &OperationRun, role: Role, families: &Families) -> Self {
        let active = !run.is_completed();
        let operator = role >= Role::Operator;
        Self {
            pause: operator && active && !run.is_paused(),
            resume: operator && run.is_paused() && active,
            cancel: role == Role::Owner && active,
            retry: operator
                && !active
                && families.is_retryable(run.operation_type())
                && run.counts().get_or_zero(opsrun_domain::SummaryKey::Failed) > 0,
        }
    }

    /// Whether any form is shown.
    #[must_use]
    pub fn any(&self) -> bool {
        self.pause || self.resume || self.cancel || self.retry
    }
}

/// The body of the detail page: everything about the run below its title.
#[derive(Template)]
#[template(path = "run_detail.html")]
pub struct RunDetail {
    pub(crate) r: PageRun,
    pub(crate) csrf: String,
    pub(crate) initiator: Option<String>,
    pub(crate) basis: Option<String>,
    /// A fan-out's child jobs, apart from its items, in words (while it runs).
    pub(crate) child_jobs: Option<String>,
    pub(crate) counts: Vec<(String, u64)>,
    pub(crate) failures: Vec<(String, String, String)>,
    pub(crate) phases: Vec<PhaseRow>,
    pub(crate) failed_items: Vec<ItemRow>,
    pub(crate) failed_total: u64,
    pub(crate) parent: Option<i64>,
    pub(crate) children: Vec<PageRun>,
    pub(crate) timeline: Vec<(String, String, String)>,
    pub(crate) controls: Controls,
    pub(crate) retry_of: Option<i64>,
    pub(crate) retried_by: Vec<i64>,
    /// When it started: RFC 3339, and in words.
    pub(crate) started: Option<(String, String)>,
    pub(crate) cancel_question: String,
    /// What the completed run produced (its family says).
    pub(crate) results: Vec<opsrun_application::families::RunResult>,
}

impl RunDetail {
    /// The detail body of `detail` for a caller of `role` with the session's `csrf` token.
    #[must_use]
    pub fn of(
        detail: &OperationDetail,
        names: &std::collections::BTreeMap<opsrun_domain::ItemKey, String>,
        role: Role,
        csrf: &str,
        families: &Families,
    ) -> Self {
        let summary = &detail.summary;
        let run = &summary.run;
        let r = PageRun::of(summary, families);
        let processed = run
            .counts()
            .get_or_zero(opsrun_domain::SummaryKey::Processed);
        let cancel_question = match run.counts().get(opsrun_domain::SummaryKey::Total) {
            Some(total) => format!(
                "Cancel {} of {total} items? {processed} are done; the rest will not run.",
                r.label.to_lowercase()
            ),
            None => format!(
                "Cancel {}? What has not run will not run.",
                r.label.to_lowercase()
            ),
        };
        Self {
            csrf: csrf.to_owned(),
            initiator: summary.initiator.clone(),
            basis: summary.progress.basis.clone(),
            // While it runs: a completed run's last jobs finish a moment after it, and a page
            // whose stream has ended must not keep a count a reload would show otherwise.
            child_jobs: run
                .children()
                .filter(|_| !run.is_completed())
                .map(|jobs| child_jobs_words(jobs, run.is_paused())),
            counts: run
                .counts()
                .iter()
                .map(|(k, v)| (k.key().to_owned(), v))
                .collect(),
            failures: run
                .failures()
                .iter()
                .map(|f| {
                    (
                        crate::render::words(&f.code.to_string().replace('.', " ")),
                        f.code.to_string(),
                        f.message.clone(),
                    )
                })
                .collect(),
            phases: phase_rows(run),
            failed_items: detail
                .failed_items
                .iter()
                .map(|(k, e)| ItemRow {
                    name: names.get(k).cloned(),
                    key: k.to_string(),
                    reason: e
                        .reason
                        .as_ref()
                        .map_or("-".to_owned(), ToString::to_string),
                })
                .collect(),
            failed_total: run.counts().get_or_zero(opsrun_domain::SummaryKey::Failed),
            parent: detail.parent.map(RunId::value),
            children: detail
                .children
                .iter()
                .map(|c| PageRun::of(c, families))
                .collect(),
            timeline: detail
                .timeline
                .iter()
                .map(|t| {
                    let who = t
                        .actor
                        .as_ref()
                        .map(|a| format!(" by {a}"))
                        .unwrap_or_default();
                    (
                        rfc3339(t.at),
                        utc_words(t.at),
                        format!("{}{who}", crate::render::words(&t.event.replace('.', " "))),
                    )
                })
                .collect(),
            controls: Controls::of(run, role, families),
            retry_of: run.retry_of().map(RunId::value),
            retried_by: summary
                .retried_by
                .iter()
                .flatten()
                .map(|r| r.value())
                .collect(),
            started: run.started_at().map(|t| (rfc3339(t), utc_words(t))),
            cancel_question,
            results: Vec::new(),
            r,
        }
    }
}

/// A running fan-out's child jobs in words. A pause stops each job before its next item (the
/// job ends; resuming hands the rest out as new jobs), so a paused run says "ended", not
/// "finished".
fn child_jobs_words(jobs: opsrun_domain::ChildJobs, paused: bool) -> String {
    let (total, completed) = (jobs.total, jobs.completed);
    if paused {
        format!(
            "Child jobs: {completed} of {total} ended (the pause stops each before its next item; resuming hands out the rest as new jobs) · the bar counts items, not jobs"
        )
    } else {
        format!("Child jobs: {completed} of {total} finished · the bar counts items, not jobs")
    }
}

#[cfg(test)]
mod tests {
    use opsrun_domain::Timestamp;

    use super::going_for;

    #[test]
    fn a_run_goes_for_whole_minutes() {
        let at = |ms: i64| Timestamp::from_millis(1_000_000_000 + ms);
        let start = at(0);

        assert_eq!(going_for(start, at(59_999)), "under a minute");
        assert_eq!(going_for(start, at(12 * 60_000 + 5_000)), "12 min");
        assert_eq!(going_for(start, at(185 * 60_000)), "3 h 5 min");
        assert_eq!(
            going_for(start, at((2 * 1_440 + 4 * 60) * 60_000)),
            "2 d 4 h"
        );
    }
}
