//! Progress views as text, for terminals: the same contract every surface follows.

use opsrun_domain::{ComponentStatus, OperationRun, ProgressDetail, ProgressView, SummaryKey};

/// One line describing a view: `37/120 (30%)`, `phase 2/3: Capturing evidence`, ...
#[must_use]
pub fn view_line(view: &ProgressView) -> String {
    let mut line = match &view.detail {
        ProgressDetail::None { outcome } => outcome.key().to_owned(),
        ProgressDetail::Activity { processed: None } => "working".to_owned(),
        ProgressDetail::Activity { processed: Some(n) } => format!("working, {n} processed"),
        ProgressDetail::Counted {
            processed,
            total,
            percent,
        } => format!("{processed}/{total} ({percent}%)"),
        ProgressDetail::Phased(phase) => format!(
            "phase {}/{}: {}",
            phase.index,
            phase.count,
            phase.label.to_lowercase()
        ),
        ProgressDetail::Composite { components, .. } => components
            .iter()
            .map(|c| format!("{}: {}", c.label.to_lowercase(), component_line(c)))
            .collect::<Vec<_>>()
            .join(" · "),
    };
    if let Some(reason) = &view.waiting {
        // A queued run waiting for its tenant's slot is not working: say why it waits.
        return reason.clone();
    }
    if let Some(pace) = &view.pace {
        line.push_str(&format!(
            " · {}",
            opsrun_application::read_models::eta_phrase(pace)
        ));
    }
    if view.anomaly {
        line.push_str(" (counts inconsistent)");
    }
    if view.paused {
        line.push_str(" (paused)");
    }
    if view.stale {
        line.push_str(" (no sign of life)");
    }
    line
}

/// A run's progress as a list shows it: a completed run's counts; a queued run that waits
/// (for a worker, or for its tenant's slot) says so instead of "working"; otherwise its
/// [`view_line`].
#[must_use]
pub fn status_line(run: &opsrun_domain::OperationRun, view: &ProgressView) -> String {
    if run.is_completed() {
        return counts_line(run);
    }
    if run.status() == opsrun_domain::RunStatus::Queued && view.waiting.is_none() {
        let paused = if view.paused { " (paused)" } else { "" };
        return format!("waiting for a worker{paused}");
    }
    view_line(view)
}

/// A wire key in words: `partially_succeeded` → `partially succeeded`.
#[must_use]
pub fn words(key: &str) -> String {
    key.replace('_', " ")
}

/// What a component of a composite run shows: `pending`, `done`, or its own progress line.
#[must_use]
pub fn component_line(component: &opsrun_domain::ComponentView) -> String {
    match component.state {
        ComponentStatus::Pending | ComponentStatus::Done => component.state.key().to_owned(),
        ComponentStatus::Active => view_line(&component.progress),
    }
}

/// The run's set counts as `key=value` pairs.
#[must_use]
pub fn counts_line(run: &OperationRun) -> String {
    let counts: Vec<String> = run
        .counts()
        .iter()
        .filter(|(k, _)| *k != SummaryKey::Total || run.counts().get(SummaryKey::Total).is_some())
        .map(|(k, v)| format!("{}={v}", k.key()))
        .collect();
    if counts.is_empty() {
        "-".to_owned()
    } else {
        counts.join(" ")
    }
}

/// Seconds between two instants, as `1.2s`.
#[must_use]
pub fn duration(from: opsrun_domain::Timestamp, to: opsrun_domain::Timestamp) -> String {
    let ms = to.millis_since(from).max(0);
    format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
}

/// How long ago `then` was, seen at `now`, in the largest whole unit: `just now`, `12 s ago`,
/// `4 min ago`, `3 h ago`, `2 d ago` (for a person scanning a table; the exact time is RFC 3339
/// beside it or in `-o json`).
#[must_use]
pub fn ago(then: opsrun_domain::Timestamp, now: opsrun_domain::Timestamp) -> String {
    let secs = now.millis_since(then).max(0) / 1000;
    match secs {
        0 => "just now".to_owned(),
        1..=59 => format!("{secs} s ago"),
        60..=3_599 => format!("{} min ago", secs / 60),
        3_600..=86_399 => format!("{} h ago", secs / 3_600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use opsrun_domain::Timestamp;

    use super::ago;

    #[test]
    fn times_ago_use_the_largest_whole_unit() {
        let now = Timestamp::from_millis(10_000_000_000);
        let before = |ms: i64| Timestamp::from_millis(10_000_000_000 - ms);

        assert_eq!(ago(before(400), now), "just now");
        assert_eq!(ago(before(12_900), now), "12 s ago");
        assert_eq!(ago(before(240_000), now), "4 min ago");
        assert_eq!(ago(before(3 * 3_600_000 + 59_000), now), "3 h ago");
        assert_eq!(ago(before(2 * 86_400_000), now), "2 d ago");
        // A clock a little behind another machine's never says "in the future".
        assert_eq!(ago(before(-5_000), now), "just now");
    }
}
