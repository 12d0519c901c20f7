//! The plain values around a run: what a call changed, how a run is completed, what it is
//! created with, and every field of it as storage keeps it.

use crate::{
    Components, OperationType, Phases, ReasonCode, RunId, RunOutcome, RunStatus, SummaryCounts,
    TenantId, Timestamp, UserId, WorkspaceId,
};

/// Whether a call changed the run. Repeating an applied change is not an error: it is
/// `Unchanged`, so retries are safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The run changed.
    Applied,
    /// The run already was in the requested state.
    Unchanged,
}

impl Change {
    pub(super) fn from_bool(changed: bool) -> Self {
        if changed {
            Self::Applied
        } else {
            Self::Unchanged
        }
    }
}

/// A failure summary line on a run, e.g. `restore.item_failed` / "3 items failed to restore".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Stable reason code.
    pub code: ReasonCode,
    /// Human sentence.
    pub message: String,
}

/// Most failure lines a run keeps; later ones are dropped so a run row stays small.
pub const MAX_FAILURES: usize = 20;

/// How a run is to be completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The outcome the writer decided, or `None` to derive it from the counts.
    pub outcome: Option<RunOutcome>,
    /// Failure summary lines to add.
    pub failures: Vec<Failure>,
    /// When the run completed.
    pub at: Timestamp,
    /// When set, items claimed for a provider call and not yet recorded are recorded as
    /// `skipped` with this reason in the same step (a cancel: their provider calls may have
    /// happened, and a completed run can take no late record).
    pub in_flight: Option<ReasonCode>,
}

impl Completion {
    /// Complete with the outcome derived from the counts.
    #[must_use]
    pub fn derived(at: Timestamp) -> Self {
        Self {
            outcome: None,
            failures: Vec::new(),
            at,
            in_flight: None,
        }
    }

    /// Complete with an outcome the writer decided.
    #[must_use]
    pub fn decided(outcome: RunOutcome, at: Timestamp) -> Self {
        Self {
            outcome: Some(outcome),
            failures: Vec::new(),
            at,
            in_flight: None,
        }
    }

    /// Records the items in flight as `skipped` with `reason` when completing (see
    /// [`Self::in_flight`]).
    #[must_use]
    pub fn settling_in_flight(mut self, reason: ReasonCode) -> Self {
        self.in_flight = Some(reason);
        self
    }

    /// Adds a failure summary line.
    #[must_use]
    pub fn with_failure(mut self, code: ReasonCode, message: impl Into<String>) -> Self {
        self.failures.push(Failure {
            code,
            message: message.into(),
        });
        self
    }
}

/// Counts before and after a reconcile repaired a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The counts the run carried.
    pub before: SummaryCounts,
    /// The counts recounted from its ledger.
    pub after: SummaryCounts,
}

/// What a new run is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Storage-assigned id.
    pub id: RunId,
    /// Owning workspace.
    pub workspace: WorkspaceId,
    /// The tenant the run works on.
    pub tenant: TenantId,
    /// The run family.
    pub operation_type: OperationType,
    /// What the run works on inside the tenant (e.g. `backup_set:7`, or `tenant` for the whole
    /// tenant). Tenant, type and target form the run's identity for dedupe.
    pub target: String,
    /// Who started it.
    pub initiator: Option<UserId>,
    /// The parent run, for runs started by another run.
    pub parent: Option<RunId>,
    /// The completed run whose failed items this run retries, if it is a retry.
    pub retry_of: Option<RunId>,
    /// When it was created.
    pub created_at: Timestamp,
}

/// Every field of a run, for rebuilding it from storage. Nothing is validated: a legacy row
/// that breaks an invariant is carried as it is, and the progress contract flags it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunParts {
    /// See [`NewRun`].
    pub id: RunId,
    /// See [`NewRun`].
    pub workspace: WorkspaceId,
    /// See [`NewRun`].
    pub tenant: TenantId,
    /// See [`NewRun`].
    pub operation_type: OperationType,
    /// See [`NewRun`].
    pub target: String,
    /// See [`NewRun`].
    pub initiator: Option<UserId>,
    /// See [`NewRun`].
    pub parent: Option<RunId>,
    /// Current status.
    pub status: RunStatus,
    /// Current outcome.
    pub outcome: RunOutcome,
    /// Summary counts.
    pub counts: SummaryCounts,
    /// Where the total came from.
    pub basis: Option<String>,
    /// Declared phases.
    pub phases: Option<Phases>,
    /// Declared components.
    pub components: Option<Components>,
    /// Failure summary lines.
    pub failures: Vec<Failure>,
    /// See [`NewRun`].
    pub created_at: Timestamp,
    /// When it started running.
    pub started_at: Option<Timestamp>,
    /// When it completed.
    pub completed_at: Option<Timestamp>,
    /// Last heartbeat.
    pub heartbeat_at: Option<Timestamp>,
    /// See [`NewRun`].
    pub retry_of: Option<RunId>,
    /// When an operator paused it; `None` while it is not paused.
    pub paused_at: Option<Timestamp>,
    /// Why a queued run has not started yet (its tenant's concurrency limit), as a sentence.
    pub waiting: Option<String>,
    /// Notes about values the storage could not represent truthfully (dropped counts, an
    /// unknown status); a run with notes never shows a bar.
    pub anomalies: Vec<String>,
    /// A fan-out parent's child jobs (see [`crate::ChildJobLedger`]); `None` for other runs.
    pub children: Option<crate::ChildJobs>,
}
