//! The typed refusals of the run rules.

use std::fmt;

use crate::{ItemKey, RunStatus, SummaryKey};

/// A rule of DESIGN §4 refused a change to a run. The run is unchanged whenever one is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// I1: the total was already set to a different value.
    TotalAlreadySet {
        /// The total the run already has.
        current: u64,
        /// The total that was refused.
        requested: u64,
    },
    /// I1: the total has the same size but was frozen from a different work set.
    WorkSetAlreadyFrozen,
    /// I2: the change would push `processed` past `total`.
    ProcessedExceedsTotal {
        /// `processed` before the change.
        processed: u64,
        /// How many items the refused change would have added.
        adding: u64,
        /// The run's total.
        total: u64,
    },
    /// I1/I5: once a total is frozen, only items of its work set may be recorded.
    ItemNotInWorkSet {
        /// The item that is not part of the frozen work set.
        item_key: ItemKey,
    },
    /// I6: the run is completed and can no longer change.
    RunAlreadyCompleted,
    /// The status machine does not allow this move.
    InvalidTransition {
        /// Status before.
        from: RunStatus,
        /// Status that was refused.
        to: RunStatus,
    },
    /// A summary key outside the closed set of ten.
    UnknownSummaryKey {
        /// The key as it was given.
        key: String,
    },
    /// `processed` and the outcome counters move only by recording items, never by increment.
    NotAuxiliaryKey {
        /// The refused key.
        key: SummaryKey,
    },
    /// A counter would pass the largest storable value.
    CountOverflow {
        /// The counter that would overflow.
        key: SummaryKey,
    },
    /// A phase was entered that the run never declared.
    UnknownPhase {
        /// The phase key as it was given.
        key: String,
    },
    /// Phases only move forward.
    PhaseRegressed {
        /// Key of the current phase.
        from: String,
        /// Key of the refused earlier phase.
        to: String,
    },
    /// Phases or components are declared once and then only advanced.
    StagesAlreadyDeclared,
    /// A component was updated that the run never declared.
    UnknownComponent {
        /// The component key as it was given.
        key: String,
    },
    /// A component's state would move backwards (counted progress down, or out of `done`).
    ComponentRegressed {
        /// The component key.
        key: String,
    },
    /// A run with declared phases or components never carries a counted total of its own.
    StagedRunHasNoTotal,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TotalAlreadySet { current, requested } => write!(
                f,
                "total is already {current}; refusing to set it to {requested}"
            ),
            Self::WorkSetAlreadyFrozen => write!(
                f,
                "a different work set is already frozen into this run; refusing to replace it"
            ),
            Self::ProcessedExceedsTotal {
                processed,
                adding,
                total,
            } => write!(
                f,
                "recording {adding} more item(s) would bring processed from {processed} past total {total}"
            ),
            Self::ItemNotInWorkSet { item_key } => write!(
                f,
                "item '{item_key}' is not part of the run's frozen work set"
            ),
            Self::RunAlreadyCompleted => write!(f, "run is already completed and cannot change"),
            Self::InvalidTransition { from, to } => {
                write!(f, "run cannot move from {} to {}", from.key(), to.key())
            }
            Self::UnknownSummaryKey { key } => write!(f, "'{key}' is not a summary count key"),
            Self::NotAuxiliaryKey { key } => write!(
                f,
                "'{}' cannot be incremented directly; it moves only when an item is recorded",
                key.key()
            ),
            Self::CountOverflow { key } => {
                write!(f, "'{}' would pass the largest storable count", key.key())
            }
            Self::UnknownPhase { key } => write!(f, "phase '{key}' was not declared for this run"),
            Self::PhaseRegressed { from, to } => {
                write!(f, "phase cannot go back from '{from}' to '{to}'")
            }
            Self::StagesAlreadyDeclared => {
                write!(f, "phases or components are already declared for this run")
            }
            Self::UnknownComponent { key } => {
                write!(f, "component '{key}' was not declared for this run")
            }
            Self::ComponentRegressed { key } => {
                write!(f, "component '{key}' cannot move backwards")
            }
            Self::StagedRunHasNoTotal => write!(
                f,
                "a run with phases or components carries no counted total of its own"
            ),
        }
    }
}

impl std::error::Error for RunError {}

impl RunError {
    /// A stable snake_case code for this refusal, for logs and API error bodies.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::TotalAlreadySet { .. } => "total_already_set",
            Self::WorkSetAlreadyFrozen => "work_set_already_frozen",
            Self::ProcessedExceedsTotal { .. } => "processed_exceeds_total",
            Self::ItemNotInWorkSet { .. } => "item_not_in_work_set",
            Self::RunAlreadyCompleted => "run_already_completed",
            Self::InvalidTransition { .. } => "invalid_transition",
            Self::UnknownSummaryKey { .. } => "unknown_summary_key",
            Self::NotAuxiliaryKey { .. } => "not_auxiliary_key",
            Self::CountOverflow { .. } => "count_overflow",
            Self::UnknownPhase { .. } => "unknown_phase",
            Self::PhaseRegressed { .. } => "phase_regressed",
            Self::StagesAlreadyDeclared => "stages_already_declared",
            Self::UnknownComponent { .. } => "unknown_component",
            Self::ComponentRegressed { .. } => "component_regressed",
            Self::StagedRunHasNoTotal => "staged_run_has_no_total",
        }
    }
}

/// A value given to a validating constructor was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    what: &'static str,
    reason: String,
}

impl InvalidValue {
    pub(crate) fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            reason: reason.into(),
        }
    }

    /// Which kind of value was refused, e.g. `"slug"`.
    #[must_use]
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Why it was refused, in lowercase words.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.what, self.reason)
    }
}

impl std::error::Error for InvalidValue {}
