//! The progress contract (DESIGN §5): the one pure function from a run to a progress view.

use crate::{
    Component, ComponentState, OperationRun, Pace, Phases, ProgressMode, RecordWindow, RunOutcome,
    RunStatus, SummaryKey, Timestamp,
};

/// The phase part of a phased view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseView {
    /// 1-based index of the current phase.
    pub index: usize,
    /// Number of declared phases.
    pub count: usize,
    /// Key of the current phase.
    pub key: String,
    /// Label of the current phase.
    pub label: String,
}

/// Where a component of a composite view stands.
///
/// ```
/// use opsrun_domain::ComponentStatus;
/// assert_eq!(ComponentStatus::Active.key(), "active");
/// assert_eq!(ComponentStatus::Done, "done");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComponentStatus {
    /// Not started.
    Pending,
    /// Working: its own progress view says how far.
    Active,
    /// Finished.
    Done,
}

impl ComponentStatus {
    /// Every state, in order.
    pub const ALL: [Self; 3] = [Self::Pending, Self::Active, Self::Done];

    /// The wire key: `pending`, `active` or `done`.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Done => "done",
        }
    }
}

impl PartialEq<&str> for ComponentStatus {
    fn eq(&self, other: &&str) -> bool {
        self.key() == *other
    }
}

/// One component of a composite view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentView {
    /// Component key.
    pub key: String,
    /// Component label.
    pub label: String,
    /// Where it stands.
    pub state: ComponentStatus,
    /// The component's own progress.
    pub progress: ProgressView,
}

/// What a surface renders, by mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressDetail {
    /// Completed: show the outcome only.
    None {
        /// The run's outcome.
        outcome: RunOutcome,
    },
    /// A spinner, with "N processed" when known.
    Activity {
        /// Units processed, when known.
        processed: Option<u64>,
    },
    /// A determinate bar.
    Counted {
        /// Units processed (never above `total`).
        processed: u64,
        /// Units in the frozen work set (above 0).
        total: u64,
        /// `floor(100 * processed / total)`, 0 to 100.
        percent: u8,
    },
    /// "phase i of n: label".
    Phased(PhaseView),
    /// One sub-view per component.
    Composite {
        /// The components in declared order.
        components: Vec<ComponentView>,
        /// 0-based index of the active component.
        current: Option<usize>,
    },
}

/// The truthful progress of a run, as every adopter renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressView {
    /// The mode and its numbers.
    pub detail: ProgressDetail,
    /// The run's counts break an invariant (or storage noted an anomaly); never shown as a bar.
    pub anomaly: bool,
    /// Where the total came from, e.g. "8 selected policy types".
    pub basis: Option<String>,
    /// Running, but no sign of life within the stale threshold (never while paused).
    pub stale: bool,
    /// An operator paused the run: it keeps its mode and numbers, and starts nothing new.
    pub paused: bool,
    /// Rate and ETA, on a counted view of a running, unpaused, fresh run whose recent records
    /// are evidence enough (see [`Pace::estimate`]); an estimate, never a fact.
    pub pace: Option<Pace>,
    /// Why a queued run waits (its tenant's concurrency limit), when it does.
    pub waiting: Option<String>,
}

impl ProgressView {
    /// The mode.
    #[must_use]
    pub fn mode(&self) -> ProgressMode {
        match self.detail {
            ProgressDetail::None { .. } => ProgressMode::None,
            ProgressDetail::Activity { .. } => ProgressMode::Activity,
            ProgressDetail::Counted { .. } => ProgressMode::Counted,
            ProgressDetail::Phased(_) => ProgressMode::Phased,
            ProgressDetail::Composite { .. } => ProgressMode::Composite,
        }
    }

    /// Units processed, in counted mode and (when known) in activity mode.
    #[must_use]
    pub fn processed(&self) -> Option<u64> {
        match self.detail {
            ProgressDetail::Counted { processed, .. } => Some(processed),
            ProgressDetail::Activity { processed } => processed,
            _ => None,
        }
    }

    /// The total, in counted mode only.
    #[must_use]
    pub fn total(&self) -> Option<u64> {
        match self.detail {
            ProgressDetail::Counted { total, .. } => Some(total),
            _ => None,
        }
    }

    /// The percent, in counted mode only.
    #[must_use]
    pub fn percent(&self) -> Option<u8> {
        match self.detail {
            ProgressDetail::Counted { percent, .. } => Some(percent),
            _ => None,
        }
    }

    /// The phase, in phased mode only.
    #[must_use]
    pub fn phase(&self) -> Option<&PhaseView> {
        match &self.detail {
            ProgressDetail::Phased(phase) => Some(phase),
            _ => None,
        }
    }

    /// The components, in composite mode only.
    #[must_use]
    pub fn components(&self) -> Option<&[ComponentView]> {
        match &self.detail {
            ProgressDetail::Composite { components, .. } => Some(components),
            _ => None,
        }
    }

    /// The index of the active component, in composite mode only.
    #[must_use]
    pub fn current(&self) -> Option<usize> {
        match &self.detail {
            ProgressDetail::Composite { current, .. } => *current,
            _ => None,
        }
    }
}

/// The instant and threshold staleness is judged against, and the evidence for a pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    /// Now.
    pub now: Timestamp,
    /// A running run with no sign of life for longer than this is stale.
    pub threshold_ms: i64,
    /// The run's recent records (see [`RecordWindow`]); `None` gives no rate or ETA.
    pub window: Option<RecordWindow>,
}

/// The progress contract: `resolve(run) -> ProgressView`, precedence top to bottom:
///
/// | order | condition | mode |
/// |---|---|---|
/// | 1 | status `completed` | `none` |
/// | 2 | run declares components | `composite` |
/// | 3 | run declares phases and a current phase | `phased` |
/// | 4 | `total > 0`, `processed` known, `processed <= total`, no anomaly | `counted` |
/// | 5 | otherwise | `activity` |
///
/// ```
/// use opsrun_domain::*;
/// let mut run = OperationRun::new(NewRun {
///     id: RunId::new(1), workspace: WorkspaceId::new(1), tenant: TenantId::new(1),
///     operation_type: OperationType::INVENTORY_SYNC, target: "tenant".into(),
///     initiator: None, parent: None, retry_of: None, created_at: Timestamp::from_millis(0),
/// });
/// let mut ledger = ItemLedger::new();
/// let units: Vec<_> = ["a", "b", "c"].iter().map(|k| ItemKey::parse(k).unwrap()).collect();
/// run.set_total(&mut ledger, WorkSet::try_new(units.clone(), "3 selected policy types").unwrap()).unwrap();
/// run.record_item(&mut ledger, ItemRecord::succeeded(units[0].clone()), Timestamp::from_millis(1)).unwrap();
/// let view = OperationRunProgressContract::resolve(&run);
/// assert_eq!(view.mode(), ProgressMode::Counted);
/// assert_eq!(view.percent(), Some(33));
/// assert_eq!(view.basis.as_deref(), Some("3 selected policy types"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OperationRunProgressContract;

impl OperationRunProgressContract {
    /// Resolves the view of `run`, without judging staleness (`stale` is false).
    #[must_use]
    pub fn resolve(run: &OperationRun) -> ProgressView {
        Self::resolve_with(run, None)
    }

    /// Resolves the view of `run` and judges staleness at `staleness.now`.
    #[must_use]
    pub fn resolve_at(run: &OperationRun, staleness: Staleness) -> ProgressView {
        Self::resolve_with(run, Some(staleness))
    }

    fn resolve_with(run: &OperationRun, staleness: Option<Staleness>) -> ProgressView {
        let counts = run.counts();
        let anomaly = !counts.violations().is_empty() || !run.anomalies().is_empty();
        let stale = staleness.is_some_and(|s| run.is_stale(s.now, s.threshold_ms));
        let paused = run.is_paused();
        // Rate and ETA only for a running run that is neither paused nor stale.
        let pace_at = staleness
            .filter(|_| run.status() == RunStatus::Running && !paused && !stale)
            .map(|s| (s.window, s.now));
        let pace = |processed, total| {
            pace_at.and_then(|(w, now)| Pace::estimate(w, now, processed, total))
        };
        let mut top_pace = None;
        let detail = if run.status() == RunStatus::Completed {
            ProgressDetail::None {
                outcome: run.outcome(),
            }
        } else if let Some(components) = run.components() {
            ProgressDetail::Composite {
                components: components
                    .list()
                    .iter()
                    .map(|c| component_view(c, &pace))
                    .collect(),
                current: components.current(),
            }
        } else if let Some(phase) = run.phases().and_then(phase_view) {
            ProgressDetail::Phased(phase)
        } else {
            let detail = counted_or_activity(
                counts.get(SummaryKey::Processed),
                counts.get(SummaryKey::Total),
                anomaly,
            );
            if let ProgressDetail::Counted {
                processed, total, ..
            } = detail
            {
                top_pace = pace(processed, total);
            }
            detail
        };
        ProgressView {
            detail,
            anomaly,
            basis: run.basis().map(str::to_owned),
            stale,
            paused,
            pace: top_pace,
            waiting: run.waiting().map(str::to_owned),
        }
    }
}

fn counted_or_activity(
    processed: Option<u64>,
    total: Option<u64>,
    anomaly: bool,
) -> ProgressDetail {
    match (processed, total) {
        (Some(processed), Some(total)) if total > 0 && processed <= total && !anomaly => {
            ProgressDetail::Counted {
                processed,
                total,
                percent: percent(processed, total),
            }
        }
        _ => ProgressDetail::Activity { processed },
    }
}

/// `floor(100 * processed / total)`; callers guarantee `0 < total` and `processed <= total`.
fn percent(processed: u64, total: u64) -> u8 {
    let value = u128::from(processed) * 100 / u128::from(total.max(1));
    u8::try_from(value.min(100)).unwrap_or(100)
}

fn phase_view(phases: &Phases) -> Option<PhaseView> {
    phases.current().map(|(index, phase)| PhaseView {
        index: index + 1,
        count: phases.list().len(),
        key: phase.key().to_owned(),
        label: phase.label().to_owned(),
    })
}

fn component_view(component: &Component, pace: &dyn Fn(u64, u64) -> Option<Pace>) -> ComponentView {
    let plain = |detail| ProgressView {
        detail,
        anomaly: false,
        basis: None,
        stale: false,
        paused: false,
        pace: None,
        waiting: None,
    };
    let (state, progress) = match component.state() {
        ComponentState::Pending => (
            ComponentStatus::Pending,
            plain(ProgressDetail::Activity { processed: None }),
        ),
        ComponentState::Done => (
            ComponentStatus::Done,
            plain(ProgressDetail::None {
                outcome: RunOutcome::Succeeded,
            }),
        ),
        ComponentState::Activity { processed } => (
            ComponentStatus::Active,
            plain(ProgressDetail::Activity {
                processed: *processed,
            }),
        ),
        ComponentState::Counted { processed, total } => {
            let detail = counted_or_activity(Some(*processed), Some(*total), false);
            let counted = matches!(detail, ProgressDetail::Counted { .. });
            let mut view = plain(detail);
            // The composite's rate and ETA live on its counted component.
            if counted {
                view.pace = pace(*processed, *total);
            }
            (ComponentStatus::Active, view)
        }
        ComponentState::Phased(phases) => (
            ComponentStatus::Active,
            plain(phase_view(phases).map_or(
                ProgressDetail::Activity { processed: None },
                ProgressDetail::Phased,
            )),
        ),
    };
    ComponentView {
        key: component.key().to_owned(),
        label: component.label().to_owned(),
        state,
        progress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Completion, Components, ItemKey, ItemLedger, ItemRecord, NewRun, OperationType, Phase,
        RunId, RunParts, TenantId, WorkSet, WorkspaceId,
    };

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn key(k: &str) -> ItemKey {
        ItemKey::parse(k).unwrap()
    }

    fn run(operation_type: OperationType) -> OperationRun {
        OperationRun::new(NewRun {
            id: RunId::new(1),
            workspace: WorkspaceId::new(1),
            tenant: TenantId::new(1),
            operation_type,
            target: "tenant".into(),
            initiator: None,
            parent: None,
            retry_of: None,
            created_at: t(0),
        })
    }

    fn counted(total: usize, processed: usize) -> OperationRun {
        let mut r = run(OperationType::INVENTORY_SYNC);
        let mut ledger = ItemLedger::new();
        let units: Vec<_> = (0..total).map(|i| key(&format!("u{i}"))).collect();
        r.mark_running(t(1)).unwrap();
        r.set_total(
            &mut ledger,
            WorkSet::try_new(units.clone(), "units").unwrap(),
        )
        .unwrap();
        let records = units[..processed]
            .iter()
            .cloned()
            .map(ItemRecord::succeeded)
            .collect();
        r.record_items(&mut ledger, records, t(2)).unwrap();
        r
    }

    fn legacy(edit: impl FnOnce(&mut RunParts)) -> OperationRun {
        let mut parts = run(OperationType::INVENTORY_SYNC).parts().clone();
        parts.status = RunStatus::Running;
        edit(&mut parts);
        OperationRun::restore(parts)
    }

    fn phases() -> Phases {
        Phases::try_new(vec![
            Phase::try_new("resolve_scope", "Resolving scope").unwrap(),
            Phase::try_new("capture_evidence", "Capturing evidence").unwrap(),
            Phase::try_new("persist_baseline", "Persisting baseline").unwrap(),
        ])
        .unwrap()
    }

    #[test]
    fn row_1_completed_run_shows_only_its_outcome_even_with_counts() {
        let mut r = counted(4, 4);
        r.complete(Completion::derived(t(3))).unwrap();

        let view = OperationRunProgressContract::resolve(&r);

        assert_eq!(view.mode(), ProgressMode::None);
        assert_eq!(
            view.detail,
            ProgressDetail::None {
                outcome: RunOutcome::Succeeded
            }
        );
        assert_eq!(view.percent(), None);
    }

    #[test]
    fn row_2_components_win_over_phases_and_counts() {
        let mut r = run(OperationType::BASELINE_COMPARE);
        r.declare_components(
            Components::try_new(vec![
                crate::Component::try_new("capture", "Capture current state").unwrap(),
                crate::Component::try_new("compare", "Compare items").unwrap(),
            ])
            .unwrap(),
        )
        .unwrap();
        let mut capture = phases();
        capture.enter("capture_evidence").unwrap();
        r.update_component("capture", ComponentState::Phased(capture))
            .unwrap();
        r.update_component("capture", ComponentState::Done).unwrap();
        r.update_component(
            "compare",
            ComponentState::Counted {
                processed: 5,
                total: 20,
            },
        )
        .unwrap();

        let view = OperationRunProgressContract::resolve(&r);

        assert_eq!(view.mode(), ProgressMode::Composite);
        assert_eq!(view.current(), Some(1));
        let components = view.components().unwrap();
        assert_eq!(components[0].state, "done");
        assert_eq!(components[0].progress.mode(), ProgressMode::None);
        assert_eq!(components[1].state, "active");
        assert_eq!(components[1].progress.percent(), Some(25));
        assert_eq!(view.total(), None);
    }

    #[test]
    fn row_3_phased_run_shows_phase_index_count_and_label() {
        let mut r = run(OperationType::BASELINE_CAPTURE);
        r.declare_phases(phases()).unwrap();
        r.enter_phase("capture_evidence").unwrap();

        let view = OperationRunProgressContract::resolve(&r);

        assert_eq!(
            view.phase(),
            Some(&PhaseView {
                index: 2,
                count: 3,
                key: "capture_evidence".into(),
                label: "Capturing evidence".into()
            })
        );
    }

    #[test]
    fn row_3_a_phased_run_that_also_has_counts_stays_phased() {
        let mut r = legacy(|p| {
            p.counts.set(crate::SummaryKey::Total, 10).unwrap();
            p.counts.set(crate::SummaryKey::Processed, 3).unwrap();
            let mut ph = phases();
            ph.enter("resolve_scope").unwrap();
            p.phases = Some(ph);
        });
        r.heartbeat(t(5)).unwrap();

        let view = OperationRunProgressContract::resolve(&r);

        assert_eq!(view.mode(), ProgressMode::Phased);
        assert_eq!(view.percent(), None);
    }

    #[test]
    fn declared_phases_without_a_current_phase_fall_through() {
        let mut r = run(OperationType::BASELINE_CAPTURE);
        r.declare_phases(phases()).unwrap();

        let view = OperationRunProgressContract::resolve(&r);

        assert_eq!(view.detail, ProgressDetail::Activity { processed: None });
    }

    #[test]
    fn row_4_counted_percent_is_floored() {
        let view = OperationRunProgressContract::resolve(&counted(3, 2));

        assert_eq!(
            view.detail,
            ProgressDetail::Counted {
                processed: 2,
                total: 3,
                percent: 66
            }
        );
        assert!(!view.anomaly);
    }

    #[test]
    fn row_4_processed_equal_to_total_while_running_is_100_percent() {
        let view = OperationRunProgressContract::resolve(&counted(7, 7));

        assert_eq!(view.percent(), Some(100));
        assert_eq!(view.mode(), ProgressMode::Counted);
    }

    #[test]
    fn row_4_a_known_total_with_nothing_processed_yet_is_a_zero_bar() {
        let view = OperationRunProgressContract::resolve(&counted(5, 0));

        assert_eq!(view.percent(), Some(0));
    }

    #[test]
    fn row_5_total_zero_is_activity() {
        let view = OperationRunProgressContract::resolve(&counted(0, 0));

        assert_eq!(view.detail, ProgressDetail::Activity { processed: Some(0) });
    }

    #[test]
    fn row_5_no_total_is_activity_with_processed_when_known() {
        let mut r = run(OperationType::INVENTORY_SYNC);
        let mut ledger = ItemLedger::new();
        r.record_item(&mut ledger, ItemRecord::succeeded(key("a")), t(1))
            .unwrap();

        let view = OperationRunProgressContract::resolve(&r);
        let fresh = OperationRunProgressContract::resolve(&run(OperationType::INVENTORY_SYNC));

        assert_eq!(view.detail, ProgressDetail::Activity { processed: Some(1) });
        assert_eq!(fresh.detail, ProgressDetail::Activity { processed: None });
    }

    #[test]
    fn processed_above_total_in_a_legacy_row_is_activity_with_an_anomaly() {
        let r = legacy(|p| {
            p.counts.set(crate::SummaryKey::Total, 10).unwrap();
            p.counts.set(crate::SummaryKey::Processed, 11).unwrap();
        });

        let view = OperationRunProgressContract::resolve(&r);

        assert_eq!(view.mode(), ProgressMode::Activity);
        assert!(view.anomaly);
        assert_eq!(view.percent(), None);
    }

    #[test]
    fn outcome_counters_above_processed_are_an_anomaly_without_a_bar() {
        let r = legacy(|p| {
            p.counts.set(crate::SummaryKey::Total, 10).unwrap();
            p.counts.set(crate::SummaryKey::Processed, 2).unwrap();
            p.counts.set(crate::SummaryKey::Succeeded, 3).unwrap();
        });

        let view = OperationRunProgressContract::resolve(&r);

        assert_eq!(view.mode(), ProgressMode::Activity);
        assert!(view.anomaly);
    }

    #[test]
    fn a_storage_anomaly_note_never_shows_a_bar() {
        let r = legacy(|p| {
            p.counts.set(crate::SummaryKey::Total, 10).unwrap();
            p.counts.set(crate::SummaryKey::Processed, 2).unwrap();
            p.anomalies.push("unknown status 'paused'".into());
        });

        let view = OperationRunProgressContract::resolve(&r);

        assert_eq!(view.mode(), ProgressMode::Activity);
        assert!(view.anomaly);
    }

    #[test]
    fn a_completed_legacy_run_with_bad_counts_is_none_and_flagged() {
        let r = legacy(|p| {
            p.status = RunStatus::Completed;
            p.outcome = RunOutcome::Succeeded;
            p.counts.set(crate::SummaryKey::Total, 1).unwrap();
            p.counts.set(crate::SummaryKey::Processed, 2).unwrap();
        });

        let view = OperationRunProgressContract::resolve(&r);

        assert_eq!(view.mode(), ProgressMode::None);
        assert!(view.anomaly);
    }

    #[test]
    fn the_view_carries_basis_and_staleness() {
        let r = counted(4, 1);
        let staleness = |now| Staleness {
            now: t(now),
            threshold_ms: 1_000,
            window: None,
        };

        // The last sign of life is the item recorded at t=2.
        let fresh = OperationRunProgressContract::resolve_at(&r, staleness(1_002));
        let stale = OperationRunProgressContract::resolve_at(&r, staleness(1_003));

        assert_eq!(fresh.basis.as_deref(), Some("units"));
        assert!(!fresh.stale);
        assert!(stale.stale);
        assert_eq!(stale.mode(), ProgressMode::Counted);
    }

    fn evidence(now: i64) -> Staleness {
        Staleness {
            now: t(now),
            threshold_ms: 60_000,
            window: Some(RecordWindow {
                records: 6,
                first_at: t(0),
            }),
        }
    }

    #[test]
    fn a_running_counted_run_with_evidence_carries_a_pace() {
        let r = counted(20, 10);

        let view = OperationRunProgressContract::resolve_at(&r, evidence(5_000));

        // 5 records after the first over 5 s: 1/s, 10 left.
        let pace = view.pace.unwrap();
        assert_eq!((pace.items, pace.over_ms, pace.eta_seconds), (5, 5_000, 10));
    }

    #[test]
    fn a_paused_run_keeps_its_bar_and_is_never_stale_nor_estimated() {
        let mut r = counted(20, 10);
        r.pause(t(3)).unwrap();

        let view = OperationRunProgressContract::resolve_at(&r, evidence(500_000));

        assert!(view.paused);
        assert!(!view.stale);
        assert_eq!(view.pace, None);
        assert_eq!((view.processed(), view.total()), (Some(10), Some(20)));
        r.resume(t(500_000)).unwrap();
        let resumed = OperationRunProgressContract::resolve_at(&r, evidence(500_001));
        assert!(!resumed.paused && !resumed.stale);
    }

    #[test]
    fn only_counted_views_carry_a_pace() {
        let mut phased = run(OperationType::BASELINE_CAPTURE);
        phased.mark_running(t(1)).unwrap();
        phased.declare_phases(phases()).unwrap();
        phased.enter_phase("resolve_scope").unwrap();
        let mut queued = counted(20, 10).parts().clone();
        queued.status = RunStatus::Queued;
        let stale = counted(20, 10);

        for r in [phased, OperationRun::restore(queued)] {
            assert_eq!(
                OperationRunProgressContract::resolve_at(&r, evidence(5_000)).pace,
                None
            );
        }
        let mut old = evidence(5_000_000);
        old.threshold_ms = 1_000;
        assert_eq!(
            OperationRunProgressContract::resolve_at(&stale, old).pace,
            None
        );
    }

    #[test]
    fn percent_never_exceeds_100_for_huge_counts() {
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
        assert_eq!(percent(u64::MAX - 1, u64::MAX), 99);
    }
}
