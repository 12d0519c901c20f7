//! The operation run aggregate and its rules (DESIGN §4).

use std::collections::BTreeSet;

mod control;
mod parts;

pub use parts::{Change, Completion, Drift, Failure, MAX_FAILURES, NewRun, RunParts};

use crate::{
    AuxDeltas, Claim, ComponentState, Components, ItemKey, ItemLedger, ItemOutcome, ItemRecord,
    LedgerEntry, OperationType, Phases, RecordOutcome, Recorded, RunError, RunId, RunOutcome,
    RunStatus, SummaryCounts, SummaryKey, TenantId, Timestamp, UserId, WorkSet, WorkspaceId,
};

/// One execution of one operation for one tenant: status, outcome, summary counts and stages.
/// Its item ledger is kept apart in an [`ItemLedger`] so that reading a run stays cheap; the
/// rules that need the ledger take it as an argument.
///
/// Every method that can break a rule returns `Result` and leaves the run and ledger unchanged
/// when it refuses. The order in which a method checks its rules is documented, because every
/// storage adapter must refuse with the same error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRun {
    parts: RunParts,
}

impl OperationRun {
    /// A new queued run with outcome `pending` and no counts.
    #[must_use]
    pub fn new(new: NewRun) -> Self {
        Self {
            parts: RunParts {
                id: new.id,
                workspace: new.workspace,
                tenant: new.tenant,
                operation_type: new.operation_type,
                target: new.target,
                initiator: new.initiator,
                parent: new.parent,
                status: RunStatus::Queued,
                outcome: RunOutcome::Pending,
                counts: SummaryCounts::new(),
                basis: None,
                phases: None,
                components: None,
                failures: Vec::new(),
                created_at: new.created_at,
                started_at: None,
                completed_at: None,
                heartbeat_at: None,
                retry_of: new.retry_of,
                paused_at: None,
                waiting: None,
                anomalies: Vec::new(),
                children: None,
            },
        }
    }

    /// Rebuilds a run from storage as it is (see [`RunParts`]).
    #[must_use]
    pub fn restore(parts: RunParts) -> Self {
        Self { parts }
    }

    /// Every field, for storage.
    #[must_use]
    pub fn parts(&self) -> &RunParts {
        &self.parts
    }

    /// The run id.
    #[must_use]
    pub fn id(&self) -> RunId {
        self.parts.id
    }

    /// The owning workspace.
    #[must_use]
    pub fn workspace(&self) -> WorkspaceId {
        self.parts.workspace
    }

    /// The tenant.
    #[must_use]
    pub fn tenant(&self) -> TenantId {
        self.parts.tenant
    }

    /// The run family.
    #[must_use]
    pub fn operation_type(&self) -> &OperationType {
        &self.parts.operation_type
    }

    /// The target inside the tenant.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.parts.target
    }

    /// Who started it.
    #[must_use]
    pub fn initiator(&self) -> Option<UserId> {
        self.parts.initiator
    }

    /// The parent run.
    #[must_use]
    pub fn parent(&self) -> Option<RunId> {
        self.parts.parent
    }

    /// Current status.
    #[must_use]
    pub fn status(&self) -> RunStatus {
        self.parts.status
    }

    /// Current outcome.
    #[must_use]
    pub fn outcome(&self) -> RunOutcome {
        self.parts.outcome
    }

    /// Summary counts.
    #[must_use]
    pub fn counts(&self) -> &SummaryCounts {
        &self.parts.counts
    }

    /// Where the total came from.
    #[must_use]
    pub fn basis(&self) -> Option<&str> {
        self.parts.basis.as_deref()
    }

    /// Declared phases.
    #[must_use]
    pub fn phases(&self) -> Option<&Phases> {
        self.parts.phases.as_ref()
    }

    /// Declared components.
    #[must_use]
    pub fn components(&self) -> Option<&Components> {
        self.parts.components.as_ref()
    }

    /// Failure summary lines.
    #[must_use]
    pub fn failures(&self) -> &[Failure] {
        &self.parts.failures
    }

    /// Creation time.
    #[must_use]
    pub fn created_at(&self) -> Timestamp {
        self.parts.created_at
    }

    /// Start time.
    #[must_use]
    pub fn started_at(&self) -> Option<Timestamp> {
        self.parts.started_at
    }

    /// Completion time.
    #[must_use]
    pub fn completed_at(&self) -> Option<Timestamp> {
        self.parts.completed_at
    }

    /// Last heartbeat.
    #[must_use]
    pub fn heartbeat_at(&self) -> Option<Timestamp> {
        self.parts.heartbeat_at
    }

    /// The run whose failed items this run retries.
    #[must_use]
    pub fn retry_of(&self) -> Option<RunId> {
        self.parts.retry_of
    }

    /// When an operator paused it; `None` while it is not paused.
    #[must_use]
    pub fn paused_at(&self) -> Option<Timestamp> {
        self.parts.paused_at
    }

    /// A fan-out parent's child jobs, apart from its item counts; `None` for other runs.
    #[must_use]
    pub fn children(&self) -> Option<crate::ChildJobs> {
        self.parts.children
    }

    /// Shows `counts` as its child jobs (the store keeps them in a [`crate::ChildJobLedger`]).
    pub fn show_children(&mut self, counts: crate::ChildJobs) {
        self.parts.children = Some(counts);
    }

    /// Whether it is paused (and not completed: completion ends a pause).
    #[must_use]
    pub fn is_paused(&self) -> bool {
        self.parts.paused_at.is_some() && !self.is_completed()
    }

    /// Why a queued run has not started yet, while it waits for its tenant's slot.
    #[must_use]
    pub fn waiting(&self) -> Option<&str> {
        match self.parts.status {
            RunStatus::Queued => self.parts.waiting.as_deref(),
            _ => None,
        }
    }

    /// Storage anomalies noted when the run was restored.
    #[must_use]
    pub fn anomalies(&self) -> &[String] {
        &self.parts.anomalies
    }

    /// Whether the run is completed.
    #[must_use]
    pub fn is_completed(&self) -> bool {
        self.parts.status == RunStatus::Completed
    }

    /// The dedupe identity: tenant, type and target.
    #[must_use]
    pub fn identity(&self) -> String {
        identity(
            self.parts.tenant,
            &self.parts.operation_type,
            &self.parts.target,
        )
    }

    /// Whether the run has a total and every unit of it is recorded (`processed == total`).
    #[must_use]
    pub fn all_recorded(&self) -> bool {
        let counts = &self.parts.counts;
        counts
            .get(SummaryKey::Total)
            .is_some_and(|total| counts.get(SummaryKey::Processed) == Some(total))
    }

    fn ensure_open(&self) -> Result<(), RunError> {
        if self.is_completed() {
            return Err(RunError::RunAlreadyCompleted);
        }
        Ok(())
    }

    fn is_staged(&self) -> bool {
        self.parts.phases.is_some() || self.parts.components.is_some()
    }

    /// `queued -> running`. Already running is `Unchanged`.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`].
    pub fn mark_running(&mut self, at: Timestamp) -> Result<Change, RunError> {
        self.ensure_open()?;
        if self.parts.status == RunStatus::Running {
            return Ok(Change::Unchanged);
        }
        self.parts.status = RunStatus::Running;
        self.parts.started_at = Some(at);
        self.parts.heartbeat_at = Some(at);
        self.parts.waiting = None;
        Ok(Change::Applied)
    }

    /// I1: sets the total once, from a frozen work set. Sets `processed` to 0 when it was not
    /// set, so a known total shows a 0% bar rather than a spinner.
    ///
    /// Checks, in order: completed; run has phases or components; a total is already set (same
    /// units: `Unchanged`; another size: `TotalAlreadySet`; same size, other units:
    /// `WorkSetAlreadyFrozen`); items already recorded exceed the new total; an item already
    /// recorded is outside the work set.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`], [`RunError::StagedRunHasNoTotal`],
    /// [`RunError::TotalAlreadySet`], [`RunError::WorkSetAlreadyFrozen`],
    /// [`RunError::ProcessedExceedsTotal`], [`RunError::ItemNotInWorkSet`].
    pub fn set_total(
        &mut self,
        ledger: &mut ItemLedger,
        work_set: WorkSet,
    ) -> Result<Change, RunError> {
        self.ensure_open()?;
        if self.is_staged() {
            return Err(RunError::StagedRunHasNoTotal);
        }
        let requested = work_set.len() as u64;
        if let Some(current) = self.parts.counts.get(SummaryKey::Total) {
            if current != requested {
                return Err(RunError::TotalAlreadySet { current, requested });
            }
            return match &ledger.work_set {
                Some(frozen) if !frozen.same_units(&work_set) => {
                    Err(RunError::WorkSetAlreadyFrozen)
                }
                _ => Ok(Change::Unchanged),
            };
        }
        let processed = self.parts.counts.get_or_zero(SummaryKey::Processed);
        if processed > requested {
            return Err(RunError::ProcessedExceedsTotal {
                processed,
                adding: 0,
                total: requested,
            });
        }
        if let Some(outside) = ledger.entries.keys().find(|k| !work_set.contains(k)) {
            return Err(RunError::ItemNotInWorkSet {
                item_key: outside.clone(),
            });
        }
        self.parts.counts.add(SummaryKey::Total, requested)?;
        self.parts.counts.add(SummaryKey::Processed, 0)?;
        self.parts.basis = Some(work_set.basis().to_owned());
        ledger.work_set = Some(work_set);
        Ok(Change::Applied)
    }

    /// I2–I6: records one item's final outcome exactly once. See [`Self::record_items`].
    ///
    /// # Errors
    ///
    /// As [`Self::record_items`].
    pub fn record_item(
        &mut self,
        ledger: &mut ItemLedger,
        record: ItemRecord,
        at: Timestamp,
    ) -> Result<RecordOutcome, RunError> {
        self.record_items(ledger, vec![record], at)
    }

    /// I2–I6: records a batch of items atomically, each key at most once. A key already in the
    /// ledger, or repeated later in the same batch, is a duplicate and changes nothing (the
    /// first outcome stays). A new item adds 1 to `processed` and to its outcome counter, and
    /// applies its auxiliary deltas. Recording at least one new item also moves the heartbeat
    /// forward to `at`.
    ///
    /// Checks, in order: completed; the first new item outside the frozen work set; the bound
    /// `processed + new <= total`; counter overflow. Any refusal leaves everything unchanged.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`], [`RunError::ItemNotInWorkSet`],
    /// [`RunError::ProcessedExceedsTotal`], [`RunError::CountOverflow`].
    pub fn record_items(
        &mut self,
        ledger: &mut ItemLedger,
        records: Vec<ItemRecord>,
        at: Timestamp,
    ) -> Result<RecordOutcome, RunError> {
        self.record_items_keyed(ledger, records, at)
            .map(|recorded| recorded.outcome)
    }

    /// As [`Self::record_items`], also naming the keys it entered (in the order given), so a
    /// caller that combined several callers' records can tell each caller what was its own.
    ///
    /// # Errors
    ///
    /// As [`Self::record_items`].
    pub fn record_items_keyed(
        &mut self,
        ledger: &mut ItemLedger,
        records: Vec<ItemRecord>,
        at: Timestamp,
    ) -> Result<Recorded, RunError> {
        self.ensure_open()?;
        let mut seen = BTreeSet::new();
        let mut fresh = Vec::with_capacity(records.len());
        let mut duplicates = 0u64;
        for record in records {
            if ledger.contains(record.key()) || !seen.insert(record.key().clone()) {
                duplicates += 1;
            } else {
                fresh.push(record);
            }
        }
        if let Some(work_set) = &ledger.work_set
            && let Some(outside) = fresh.iter().find(|r| !work_set.contains(r.key()))
        {
            return Err(RunError::ItemNotInWorkSet {
                item_key: outside.key().clone(),
            });
        }
        let adding = fresh.len() as u64;
        let processed = self.parts.counts.get_or_zero(SummaryKey::Processed);
        if let Some(total) = self.parts.counts.get(SummaryKey::Total)
            && processed.saturating_add(adding) > total
        {
            return Err(RunError::ProcessedExceedsTotal {
                processed,
                adding,
                total,
            });
        }
        let mut counts = self.parts.counts;
        if adding > 0 {
            counts.add(SummaryKey::Processed, adding)?;
        }
        for record in &fresh {
            counts.add(record.outcome().summary_key(), 1)?;
            for (key, delta) in record.deltas().iter() {
                counts.add(key.summary_key(), delta)?;
            }
        }
        self.parts.counts = counts;
        // A recorded item is a sign of life: a fan-out parent whose children record on it
        // never looks stale while they work.
        if adding > 0 && self.parts.heartbeat_at.is_none_or(|h| h < at) {
            self.parts.heartbeat_at = Some(at);
        }
        let mut keys = Vec::with_capacity(fresh.len());
        for record in fresh {
            let entry = LedgerEntry {
                outcome: record.outcome(),
                reason: record.reason().cloned(),
                deltas: record.deltas().clone(),
                recorded_at: at,
            };
            ledger.entries.insert(record.key().clone(), entry);
            keys.push(record.key().clone());
        }
        Ok(Recorded {
            outcome: RecordOutcome {
                recorded: adding,
                duplicates,
                all_recorded: self.all_recorded(),
            },
            fresh: keys,
        })
    }

    /// I5: applies a run-level auxiliary increment once per `increment_key`; a repeated key is
    /// `Unchanged`. Only auxiliary keys exist in [`AuxDeltas`], so `processed` and the outcome
    /// counters cannot move this way.
    ///
    /// Checks, in order: completed; key already applied; overflow.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`], [`RunError::CountOverflow`].
    pub fn increment(
        &mut self,
        ledger: &mut ItemLedger,
        increment_key: &ItemKey,
        deltas: &AuxDeltas,
    ) -> Result<Change, RunError> {
        self.ensure_open()?;
        if ledger.increments.contains_key(increment_key) {
            return Ok(Change::Unchanged);
        }
        let mut counts = self.parts.counts;
        for (key, delta) in deltas.iter() {
            counts.add(key.summary_key(), delta)?;
        }
        self.parts.counts = counts;
        ledger
            .increments
            .insert(increment_key.clone(), deltas.clone());
        Ok(Change::Applied)
    }

    /// Declares the run's phases (once; the same declaration again is `Unchanged`).
    ///
    /// Checks, in order: completed; a total is set; other phases or components are declared.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`], [`RunError::StagedRunHasNoTotal`],
    /// [`RunError::StagesAlreadyDeclared`].
    pub fn declare_phases(&mut self, phases: Phases) -> Result<Change, RunError> {
        self.ensure_open()?;
        if self.parts.counts.get(SummaryKey::Total).is_some() {
            return Err(RunError::StagedRunHasNoTotal);
        }
        match (&self.parts.phases, &self.parts.components) {
            (None, None) => {
                self.parts.phases = Some(phases);
                Ok(Change::Applied)
            }
            (Some(declared), None) if declared.same_list(&phases) => Ok(Change::Unchanged),
            _ => Err(RunError::StagesAlreadyDeclared),
        }
    }

    /// Enters a declared phase; phases only move forward (re-entering the current one is
    /// `Unchanged`).
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`], [`RunError::UnknownPhase`] (also when no phases are
    /// declared), [`RunError::PhaseRegressed`].
    pub fn enter_phase(&mut self, key: &str) -> Result<Change, RunError> {
        self.enter_phase_with(key, None)
    }

    /// As [`Self::enter_phase`], recording `at` as the time the phase was entered.
    ///
    /// # Errors
    ///
    /// As [`Self::enter_phase`].
    pub fn enter_phase_at(&mut self, key: &str, at: Timestamp) -> Result<Change, RunError> {
        self.enter_phase_with(key, Some(at))
    }

    fn enter_phase_with(&mut self, key: &str, at: Option<Timestamp>) -> Result<Change, RunError> {
        self.ensure_open()?;
        let phases = self
            .parts
            .phases
            .as_mut()
            .ok_or_else(|| RunError::UnknownPhase {
                key: key.to_owned(),
            })?;
        match at {
            Some(at) => phases.enter_at(key, at),
            None => phases.enter(key),
        }
        .map(Change::from_bool)
    }

    /// Declares the run's components (once; the same declaration again is `Unchanged`).
    ///
    /// # Errors
    ///
    /// As [`Self::declare_phases`].
    pub fn declare_components(&mut self, components: Components) -> Result<Change, RunError> {
        self.ensure_open()?;
        if self.parts.counts.get(SummaryKey::Total).is_some() {
            return Err(RunError::StagedRunHasNoTotal);
        }
        match (&self.parts.phases, &self.parts.components) {
            (None, None) => {
                self.parts.components = Some(components);
                Ok(Change::Applied)
            }
            (None, Some(declared)) if declared.same_declaration(&components) => {
                Ok(Change::Unchanged)
            }
            _ => Err(RunError::StagesAlreadyDeclared),
        }
    }

    /// Moves one component to a new state and makes it current. A component's progress never
    /// goes backwards and a counted component never passes or changes its total.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`], [`RunError::UnknownComponent`] (also when no
    /// components are declared), [`RunError::ComponentRegressed`],
    /// [`RunError::ProcessedExceedsTotal`], [`RunError::TotalAlreadySet`],
    /// [`RunError::PhaseRegressed`], [`RunError::StagesAlreadyDeclared`].
    pub fn update_component(
        &mut self,
        key: &str,
        state: ComponentState,
    ) -> Result<Change, RunError> {
        self.ensure_open()?;
        let components =
            self.parts
                .components
                .as_mut()
                .ok_or_else(|| RunError::UnknownComponent {
                    key: key.to_owned(),
                })?;
        components.update(key, state).map(Change::from_bool)
    }

    /// Records a sign of life. Heartbeats never move backwards in time.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`].
    pub fn heartbeat(&mut self, at: Timestamp) -> Result<Change, RunError> {
        self.ensure_open()?;
        if self.parts.heartbeat_at.is_some_and(|h| h >= at) {
            return Ok(Change::Unchanged);
        }
        self.parts.heartbeat_at = Some(at);
        Ok(Change::Applied)
    }

    /// Completes the run exactly once (`queued|running -> completed`), with the decided
    /// outcome or one derived from the counts (see [`Self::derive_outcome`]). Failure lines
    /// are kept up to [`MAX_FAILURES`].
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`]; [`RunError::InvalidTransition`] when the decided
    /// outcome is `pending` (not an end).
    pub fn complete(&mut self, completion: Completion) -> Result<RunOutcome, RunError> {
        self.ensure_open()?;
        if completion.outcome == Some(RunOutcome::Pending) {
            return Err(RunError::InvalidTransition {
                from: self.parts.status,
                to: RunStatus::Completed,
            });
        }
        let outcome = completion
            .outcome
            .unwrap_or_else(|| Self::derive_outcome(&self.parts.counts));
        let room = MAX_FAILURES.saturating_sub(self.parts.failures.len());
        self.parts
            .failures
            .extend(completion.failures.into_iter().take(room));
        self.parts.status = RunStatus::Completed;
        self.parts.outcome = outcome;
        self.parts.completed_at = Some(completion.at);
        Ok(outcome)
    }

    /// Completes the run as [`Self::complete`] does, first recording the items in flight as
    /// `skipped` when the completion asks for it ([`Completion::in_flight`]): every item a
    /// worker claimed for a provider call, is in the work set and is not recorded. Their
    /// provider calls may have happened; after completion no record can enter (I6), so this
    /// is the last moment they can be counted. The claims are dropped with the completion.
    ///
    /// # Errors
    ///
    /// As [`Self::complete`] and [`Self::record_items`].
    pub fn complete_settling(
        &mut self,
        ledger: &mut ItemLedger,
        completion: Completion,
    ) -> Result<RunOutcome, RunError> {
        self.ensure_open()?;
        if completion.outcome == Some(RunOutcome::Pending) {
            return Err(RunError::InvalidTransition {
                from: self.parts.status,
                to: RunStatus::Completed,
            });
        }
        let mut settled = self.clone();
        if let Some(reason) = &completion.in_flight {
            let records: Vec<ItemRecord> = ledger
                .in_flight()
                .filter(|k| ledger.work_set.as_ref().is_none_or(|w| w.contains(k)))
                .map(|k| ItemRecord::skipped(k.clone(), Some(reason.clone())))
                .collect();
            if !records.is_empty() {
                settled.record_items(ledger, records, completion.at)?;
            }
        }
        let outcome = settled.complete(completion)?;
        *self = settled;
        ledger.claims.clear();
        Ok(outcome)
    }

    /// Claims `key` for a provider call: the last check before a side effect. A completed
    /// (cancelled) run refuses, so no provider call starts after a cancel; a paused run answers
    /// [`Claim::Paused`], so no new item starts while it is paused; an item already recorded
    /// answers [`Claim::AlreadyRecorded`], so a re-run job does not repeat its call.
    ///
    /// Checks, in order: completed; paused; recorded; outside the work set.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`], [`RunError::ItemNotInWorkSet`].
    pub fn claim_item(&self, ledger: &mut ItemLedger, key: &ItemKey) -> Result<Claim, RunError> {
        self.ensure_open()?;
        if self.parts.paused_at.is_some() {
            return Ok(Claim::Paused);
        }
        if ledger.contains(key) {
            return Ok(Claim::AlreadyRecorded);
        }
        if let Some(work_set) = &ledger.work_set
            && !work_set.contains(key)
        {
            return Err(RunError::ItemNotInWorkSet {
                item_key: key.clone(),
            });
        }
        ledger.claims.insert(key.clone());
        Ok(Claim::Claimed)
    }

    /// Claims each of `keys` as [`Self::claim_item`] would, one after another: the answers of
    /// one store call that claims the items of several callers at once, each key answered on
    /// its own (a refusal of one key is not a refusal of another).
    pub fn claim_items(
        &self,
        ledger: &mut ItemLedger,
        keys: &[ItemKey],
    ) -> Vec<Result<Claim, RunError>> {
        keys.iter()
            .map(|key| self.claim_item(ledger, key))
            .collect()
    }

    /// Cancels the run: completes it with outcome `cancelled`.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`].
    pub fn cancel(&mut self, at: Timestamp) -> Result<RunOutcome, RunError> {
        self.complete(Completion::decided(RunOutcome::Cancelled, at))
    }

    /// The outcome the counts imply: no failure and nothing missing is `succeeded`; failures
    /// (items failed, or items of the total never processed) with at least one success or skip
    /// is `partially_succeeded`; otherwise `failed`.
    #[must_use]
    pub fn derive_outcome(counts: &SummaryCounts) -> RunOutcome {
        let failed = counts.get_or_zero(SummaryKey::Failed);
        let missing = counts.get(SummaryKey::Total).map_or(0, |t| {
            t.saturating_sub(counts.get_or_zero(SummaryKey::Processed))
        });
        let ok = counts
            .get_or_zero(SummaryKey::Succeeded)
            .saturating_add(counts.get_or_zero(SummaryKey::Skipped));
        if failed == 0 && missing == 0 {
            RunOutcome::Succeeded
        } else if ok > 0 {
            RunOutcome::PartiallySucceeded
        } else {
            RunOutcome::Failed
        }
    }

    /// Whether the run is running, not paused, but gave no sign of life (heartbeat, else
    /// start) for more than `threshold_ms` before `now`.
    #[must_use]
    pub fn is_stale(&self, now: Timestamp, threshold_ms: i64) -> bool {
        if self.parts.status != RunStatus::Running || self.parts.paused_at.is_some() {
            return false;
        }
        let last = self
            .parts
            .heartbeat_at
            .or(self.parts.started_at)
            .unwrap_or(self.parts.created_at);
        now.millis_since(last) > threshold_ms
    }

    /// Self-healing: recounts the run's counters from its ledger and repairs them. Returns the
    /// drift found, or `None` when the counts were exact.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`]: a completed run is immutable, even when it drifted.
    pub fn reconcile_counts(&mut self, ledger: &ItemLedger) -> Result<Option<Drift>, RunError> {
        self.ensure_open()?;
        let recount = ledger.recount();
        if recount == self.parts.counts {
            return Ok(None);
        }
        let drift = Drift {
            before: self.parts.counts,
            after: recount,
        };
        self.parts.counts = recount;
        if let Some(work_set) = ledger.work_set() {
            self.parts.basis = Some(work_set.basis().to_owned());
        }
        Ok(Some(drift))
    }

    /// How many items of the ledger ended with `outcome`.
    #[must_use]
    pub fn ledger_count(ledger: &ItemLedger, outcome: ItemOutcome) -> usize {
        ledger
            .entries()
            .filter(|(_, e)| e.outcome == outcome)
            .count()
    }
}

/// The dedupe identity of a run: tenant, type and target.
#[must_use]
pub fn identity(tenant: TenantId, operation_type: &OperationType, target: &str) -> String {
    format!("{}/{}/{}", tenant.value(), operation_type.key(), target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuxiliaryKey, Component, Phase, ReasonCode};

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn key(k: &str) -> ItemKey {
        ItemKey::parse(k).unwrap()
    }

    fn reason(r: &str) -> ReasonCode {
        ReasonCode::parse(r).unwrap()
    }

    fn new_run(operation_type: OperationType) -> OperationRun {
        OperationRun::new(NewRun {
            id: RunId::new(1),
            workspace: WorkspaceId::new(1),
            tenant: TenantId::new(7),
            operation_type,
            target: "tenant".into(),
            initiator: Some(UserId::new(3)),
            parent: None,
            retry_of: None,
            created_at: t(0),
        })
    }

    fn work_set(keys: &[&str]) -> WorkSet {
        WorkSet::try_new(keys.iter().map(|k| key(k)).collect(), "test units").unwrap()
    }

    fn counted_run(keys: &[&str]) -> (OperationRun, ItemLedger) {
        let mut run = new_run(OperationType::INVENTORY_SYNC);
        let mut ledger = ItemLedger::new();
        run.mark_running(t(1)).unwrap();
        run.set_total(&mut ledger, work_set(keys)).unwrap();
        (run, ledger)
    }

    fn get(run: &OperationRun, k: SummaryKey) -> Option<u64> {
        run.counts().get(k)
    }

    #[test]
    fn claiming_several_items_answers_each_key_on_its_own() {
        let (mut run, mut ledger) = counted_run(&["a", "b", "c"]);
        run.record_items(&mut ledger, vec![ItemRecord::succeeded(key("a"))], t(2))
            .unwrap();

        assert_eq!(
            run.claim_items(&mut ledger, &[key("a"), key("z"), key("b"), key("b")]),
            vec![
                Ok(Claim::AlreadyRecorded),
                Err(RunError::ItemNotInWorkSet { item_key: key("z") }),
                Ok(Claim::Claimed),
                Ok(Claim::Claimed),
            ]
        );
        run.cancel(t(3)).unwrap();
        assert_eq!(
            run.claim_items(&mut ledger, &[key("c")]),
            vec![Err(RunError::RunAlreadyCompleted)]
        );
    }

    #[test]
    fn a_claim_is_refused_after_cancel_and_answers_already_recorded_for_a_recorded_item() {
        let (mut run, mut ledger) = counted_run(&["a", "b"]);
        run.record_items(&mut ledger, vec![ItemRecord::succeeded(key("a"))], t(2))
            .unwrap();

        assert_eq!(
            run.claim_item(&mut ledger, &key("a")),
            Ok(Claim::AlreadyRecorded)
        );
        assert_eq!(run.claim_item(&mut ledger, &key("b")), Ok(Claim::Claimed));
        assert_eq!(run.claim_item(&mut ledger, &key("b")), Ok(Claim::Claimed));
        assert_eq!(
            run.claim_item(&mut ledger, &key("z")),
            Err(RunError::ItemNotInWorkSet { item_key: key("z") })
        );
        run.cancel(t(3)).unwrap();
        assert_eq!(
            run.claim_item(&mut ledger, &key("b")),
            Err(RunError::RunAlreadyCompleted)
        );
    }

    #[test]
    fn a_settling_cancel_counts_the_items_in_flight_as_skipped_and_nothing_else() {
        let (mut run, mut ledger) = counted_run(&["a", "b", "c", "d"]);
        run.claim_item(&mut ledger, &key("a")).unwrap();
        run.claim_item(&mut ledger, &key("b")).unwrap();
        run.record_items(&mut ledger, vec![ItemRecord::succeeded(key("a"))], t(2))
            .unwrap();

        let completion = Completion::decided(RunOutcome::Cancelled, t(5))
            .settling_in_flight(reason("cancelled_in_flight"));
        assert_eq!(
            run.complete_settling(&mut ledger, completion),
            Ok(RunOutcome::Cancelled)
        );

        assert_eq!(get(&run, SummaryKey::Processed), Some(2));
        assert_eq!(get(&run, SummaryKey::Succeeded), Some(1));
        assert_eq!(get(&run, SummaryKey::Skipped), Some(1));
        let b = ledger.get(&key("b")).unwrap();
        assert_eq!(b.outcome, ItemOutcome::Skipped);
        assert_eq!(b.reason, Some(reason("cancelled_in_flight")));
        assert_eq!(ledger.in_flight().count(), 0);
        assert_eq!(ledger.recount(), *run.counts());
    }

    #[test]
    fn a_completion_that_does_not_settle_leaves_claims_uncounted() {
        let (mut run, mut ledger) = counted_run(&["a", "b"]);
        run.claim_item(&mut ledger, &key("a")).unwrap();

        let failed = Completion::decided(RunOutcome::Failed, t(5));
        run.complete_settling(&mut ledger, failed).unwrap();

        assert_eq!(get(&run, SummaryKey::Processed), Some(0));
        assert!(ledger.get(&key("a")).is_none());
    }

    #[test]
    fn a_new_run_is_queued_pending_and_has_no_counts() {
        let run = new_run(OperationType::INVENTORY_SYNC);

        assert_eq!(run.status(), RunStatus::Queued);
        assert_eq!(run.outcome(), RunOutcome::Pending);
        assert!(run.counts().is_empty());
        assert_eq!(run.identity(), "7/inventory.sync/tenant");
    }

    #[test]
    fn mark_running_moves_queued_to_running_once() {
        let mut run = new_run(OperationType::INVENTORY_SYNC);

        assert_eq!(run.mark_running(t(5)), Ok(Change::Applied));
        assert_eq!(run.mark_running(t(6)), Ok(Change::Unchanged));

        assert_eq!(run.status(), RunStatus::Running);
        assert_eq!(run.started_at(), Some(t(5)));
    }

    #[test]
    fn set_total_freezes_the_work_set_basis_and_starts_processed_at_zero() {
        let (run, ledger) = counted_run(&["a", "b"]);

        assert_eq!(get(&run, SummaryKey::Total), Some(2));
        assert_eq!(get(&run, SummaryKey::Processed), Some(0));
        assert_eq!(run.basis(), Some("test units"));
        assert_eq!(ledger.work_set().map(WorkSet::len), Some(2));
    }

    #[test]
    fn setting_the_same_total_again_is_a_no_op() {
        let (mut run, mut ledger) = counted_run(&["a", "b"]);

        let again = run.set_total(&mut ledger, work_set(&["b", "a"]));

        assert_eq!(again, Ok(Change::Unchanged));
        assert_eq!(get(&run, SummaryKey::Total), Some(2));
    }

    #[test]
    fn setting_a_different_total_is_refused() {
        let (mut run, mut ledger) = counted_run(&["a", "b"]);

        let result = run.set_total(&mut ledger, work_set(&["a", "b", "c"]));

        assert_eq!(
            result,
            Err(RunError::TotalAlreadySet {
                current: 2,
                requested: 3
            })
        );
        assert_eq!(get(&run, SummaryKey::Total), Some(2));
    }

    #[test]
    fn a_same_sized_but_different_work_set_is_refused() {
        let (mut run, mut ledger) = counted_run(&["a", "b"]);

        let result = run.set_total(&mut ledger, work_set(&["a", "c"]));

        assert_eq!(result, Err(RunError::WorkSetAlreadyFrozen));
        assert!(ledger.work_set().unwrap().contains(&key("b")));
    }

    #[test]
    fn a_total_of_zero_is_allowed_and_derives_succeeded() {
        let (mut run, _ledger) = counted_run(&[]);

        let outcome = run.complete(Completion::derived(t(9)));

        assert_eq!(get(&run, SummaryKey::Total), Some(0));
        assert_eq!(outcome, Ok(RunOutcome::Succeeded));
    }

    #[test]
    fn total_below_items_already_recorded_is_refused() {
        let mut run = new_run(OperationType::INVENTORY_SYNC);
        let mut ledger = ItemLedger::new();
        run.record_item(&mut ledger, ItemRecord::succeeded(key("a")), t(1))
            .unwrap();
        run.record_item(&mut ledger, ItemRecord::succeeded(key("b")), t(1))
            .unwrap();

        let result = run.set_total(&mut ledger, work_set(&["a"]));

        assert_eq!(
            result,
            Err(RunError::ProcessedExceedsTotal {
                processed: 2,
                adding: 0,
                total: 1
            })
        );
        assert_eq!(get(&run, SummaryKey::Total), None);
    }

    #[test]
    fn total_whose_work_set_misses_a_recorded_item_is_refused() {
        let mut run = new_run(OperationType::INVENTORY_SYNC);
        let mut ledger = ItemLedger::new();
        run.record_item(&mut ledger, ItemRecord::succeeded(key("x")), t(1))
            .unwrap();

        let result = run.set_total(&mut ledger, work_set(&["a", "b"]));

        assert_eq!(
            result,
            Err(RunError::ItemNotInWorkSet { item_key: key("x") })
        );
    }

    #[test]
    fn recording_an_item_counts_processed_and_its_outcome_once() {
        let (mut run, mut ledger) = counted_run(&["a", "b", "c"]);

        let first = run.record_item(&mut ledger, ItemRecord::succeeded(key("a")), t(2));
        let again = run.record_item(
            &mut ledger,
            ItemRecord::failed(key("a"), reason("x.failed")),
            t(3),
        );

        assert_eq!(first.unwrap().recorded, 1);
        assert_eq!(
            again,
            Ok(RecordOutcome {
                recorded: 0,
                duplicates: 1,
                all_recorded: false
            })
        );
        assert_eq!(get(&run, SummaryKey::Processed), Some(1));
        assert_eq!(get(&run, SummaryKey::Succeeded), Some(1));
        assert_eq!(get(&run, SummaryKey::Failed), None);
        assert_eq!(
            ledger.get(&key("a")).unwrap().outcome,
            ItemOutcome::Succeeded
        );
    }

    #[test]
    fn processed_equal_to_total_while_running_is_allowed() {
        let (mut run, mut ledger) = counted_run(&["a", "b"]);

        run.record_items(
            &mut ledger,
            vec![
                ItemRecord::succeeded(key("a")),
                ItemRecord::succeeded(key("b")),
            ],
            t(2),
        )
        .unwrap();

        assert_eq!(get(&run, SummaryKey::Processed), Some(2));
        assert_eq!(run.status(), RunStatus::Running);
    }

    #[test]
    fn an_item_outside_the_frozen_work_set_is_refused() {
        let (mut run, mut ledger) = counted_run(&["a"]);

        let result = run.record_item(&mut ledger, ItemRecord::succeeded(key("z")), t(2));

        assert_eq!(
            result,
            Err(RunError::ItemNotInWorkSet { item_key: key("z") })
        );
        assert_eq!(get(&run, SummaryKey::Processed), Some(0));
        assert!(ledger.is_empty());
    }

    #[test]
    fn a_batch_with_a_duplicate_key_inside_counts_it_once() {
        let (mut run, mut ledger) = counted_run(&["a", "b", "c"]);

        let result = run.record_items(
            &mut ledger,
            vec![
                ItemRecord::succeeded(key("a")),
                ItemRecord::skipped(key("b"), None),
                ItemRecord::failed(key("a"), reason("x.failed")),
            ],
            t(2),
        );

        assert_eq!(
            result,
            Ok(RecordOutcome {
                recorded: 2,
                duplicates: 1,
                all_recorded: false
            })
        );
        assert_eq!(get(&run, SummaryKey::Processed), Some(2));
        assert_eq!(get(&run, SummaryKey::Succeeded), Some(1));
        assert_eq!(get(&run, SummaryKey::Skipped), Some(1));
        assert_eq!(get(&run, SummaryKey::Failed), None);
    }

    #[test]
    fn a_batch_that_would_pass_the_total_is_refused_whole() {
        let mut run = new_run(OperationType::INVENTORY_SYNC);
        let mut ledger = ItemLedger::new();
        run.set_total(&mut ledger, work_set(&["a", "b"])).unwrap();
        // A legacy ledger without its work set can only be bounded by the total itself.
        ledger.work_set = None;
        run.record_item(&mut ledger, ItemRecord::succeeded(key("a")), t(1))
            .unwrap();

        let result = run.record_items(
            &mut ledger,
            vec![
                ItemRecord::succeeded(key("b")),
                ItemRecord::succeeded(key("c")),
            ],
            t(2),
        );

        assert_eq!(
            result,
            Err(RunError::ProcessedExceedsTotal {
                processed: 1,
                adding: 2,
                total: 2
            })
        );
        assert_eq!(get(&run, SummaryKey::Processed), Some(1));
        assert_eq!(ledger.len(), 1);
    }

    #[test]
    fn item_deltas_ride_on_the_record_and_not_on_a_duplicate() {
        let (mut run, mut ledger) = counted_run(&["a"]);
        let deltas = AuxDeltas::new()
            .with(AuxiliaryKey::Created, 3)
            .with(AuxiliaryKey::Items, 5);

        run.record_item(
            &mut ledger,
            ItemRecord::succeeded(key("a")).with_deltas(deltas.clone()),
            t(2),
        )
        .unwrap();
        run.record_item(
            &mut ledger,
            ItemRecord::succeeded(key("a")).with_deltas(deltas),
            t(3),
        )
        .unwrap();

        assert_eq!(get(&run, SummaryKey::Created), Some(3));
        assert_eq!(get(&run, SummaryKey::Items), Some(5));
    }

    #[test]
    fn a_late_record_after_completion_is_refused_and_changes_nothing() {
        let (mut run, mut ledger) = counted_run(&["a", "b"]);
        run.record_item(&mut ledger, ItemRecord::succeeded(key("a")), t(2))
            .unwrap();
        run.complete(Completion::derived(t(3))).unwrap();
        let before = run.clone();

        let late = run.record_item(&mut ledger, ItemRecord::succeeded(key("b")), t(4));
        let duplicate = run.record_item(&mut ledger, ItemRecord::succeeded(key("a")), t(4));

        assert_eq!(late, Err(RunError::RunAlreadyCompleted));
        assert_eq!(duplicate, Err(RunError::RunAlreadyCompleted));
        assert_eq!(run, before);
        assert_eq!(ledger.len(), 1);
    }

    #[test]
    fn every_mutation_of_a_completed_run_is_refused() {
        let (mut run, mut ledger) = counted_run(&["a"]);
        run.cancel(t(2)).unwrap();
        let phases = Phases::try_new(vec![Phase::try_new("p", "P").unwrap()]).unwrap();

        assert_eq!(run.mark_running(t(3)), Err(RunError::RunAlreadyCompleted));
        assert_eq!(
            run.set_total(&mut ledger, work_set(&["a"])),
            Err(RunError::RunAlreadyCompleted)
        );
        assert_eq!(
            run.increment(&mut ledger, &key("k"), &AuxDeltas::new()),
            Err(RunError::RunAlreadyCompleted)
        );
        assert_eq!(
            run.declare_phases(phases),
            Err(RunError::RunAlreadyCompleted)
        );
        assert_eq!(run.heartbeat(t(4)), Err(RunError::RunAlreadyCompleted));
        assert_eq!(
            run.complete(Completion::derived(t(5))),
            Err(RunError::RunAlreadyCompleted)
        );
        assert_eq!(run.cancel(t(5)), Err(RunError::RunAlreadyCompleted));
        assert_eq!(
            run.reconcile_counts(&ledger),
            Err(RunError::RunAlreadyCompleted)
        );
        assert_eq!(run.outcome(), RunOutcome::Cancelled);
    }

    #[test]
    fn auxiliary_increments_apply_once_per_key() {
        let (mut run, mut ledger) = counted_run(&["a"]);
        let deltas = AuxDeltas::new().with(AuxiliaryKey::Tenants, 1);

        let first = run.increment(&mut ledger, &key("tenant-count"), &deltas);
        let again = run.increment(&mut ledger, &key("tenant-count"), &deltas);

        assert_eq!(first, Ok(Change::Applied));
        assert_eq!(again, Ok(Change::Unchanged));
        assert_eq!(get(&run, SummaryKey::Tenants), Some(1));
        assert_eq!(get(&run, SummaryKey::Processed), Some(0));
    }

    #[test]
    fn increment_overflow_is_refused() {
        let (mut run, mut ledger) = counted_run(&["a"]);
        let huge = AuxDeltas::new().with(AuxiliaryKey::Items, crate::MAX_COUNT);
        run.increment(&mut ledger, &key("one"), &huge).unwrap();

        let result = run.increment(
            &mut ledger,
            &key("two"),
            &AuxDeltas::new().with(AuxiliaryKey::Items, 1),
        );

        assert_eq!(
            result,
            Err(RunError::CountOverflow {
                key: SummaryKey::Items
            })
        );
        assert_eq!(ledger.increments().count(), 1);
    }

    #[test]
    fn outcome_is_derived_from_counts() {
        let cases = [
            (&[("a", 's'), ("b", 's')][..], RunOutcome::Succeeded),
            (
                &[("a", 's'), ("b", 'f')][..],
                RunOutcome::PartiallySucceeded,
            ),
            (
                &[("a", 'k'), ("b", 'f')][..],
                RunOutcome::PartiallySucceeded,
            ),
            (&[("a", 'f'), ("b", 'f')][..], RunOutcome::Failed),
            (&[("a", 'k'), ("b", 'k')][..], RunOutcome::Succeeded),
        ];
        for (items, expected) in cases {
            let (mut run, mut ledger) = counted_run(&["a", "b"]);
            for (k, o) in items {
                let record = match o {
                    's' => ItemRecord::succeeded(key(k)),
                    'f' => ItemRecord::failed(key(k), reason("x.failed")),
                    _ => ItemRecord::skipped(key(k), None),
                };
                run.record_item(&mut ledger, record, t(2)).unwrap();
            }

            let outcome = run.complete(Completion::derived(t(3)));

            assert_eq!(outcome, Ok(expected), "items {items:?}");
        }
    }

    #[test]
    fn unprocessed_items_of_the_total_count_against_the_outcome() {
        let (mut run, mut ledger) = counted_run(&["a", "b"]);
        run.record_item(&mut ledger, ItemRecord::succeeded(key("a")), t(2))
            .unwrap();

        let outcome = run.complete(Completion::derived(t(3)));

        assert_eq!(outcome, Ok(RunOutcome::PartiallySucceeded));
    }

    #[test]
    fn a_decided_outcome_wins_and_pending_is_not_an_end() {
        let (mut run, _) = counted_run(&["a"]);

        let pending = run.complete(Completion::decided(RunOutcome::Pending, t(2)));
        let blocked = run.complete(
            Completion::decided(RunOutcome::Blocked, t(2))
                .with_failure(reason("tenant.unreachable"), "tenant did not answer"),
        );

        assert!(matches!(pending, Err(RunError::InvalidTransition { .. })));
        assert_eq!(blocked, Ok(RunOutcome::Blocked));
        assert_eq!(run.failures()[0].code.as_str(), "tenant.unreachable");
        assert_eq!(run.completed_at(), Some(t(2)));
    }

    #[test]
    fn queued_runs_can_complete_without_running() {
        let mut run = new_run(OperationType::INVENTORY_SYNC);

        let outcome = run.cancel(t(1));

        assert_eq!(outcome, Ok(RunOutcome::Cancelled));
        assert_eq!(run.status(), RunStatus::Completed);
        assert_eq!(run.started_at(), None);
    }

    #[test]
    fn staleness_uses_the_last_heartbeat_and_only_applies_to_running_runs() {
        let mut run = new_run(OperationType::INVENTORY_SYNC);
        assert!(!run.is_stale(t(1_000_000), 10));
        run.mark_running(t(100)).unwrap();
        run.heartbeat(t(500)).unwrap();
        run.heartbeat(t(400)).unwrap();

        assert_eq!(run.heartbeat_at(), Some(t(500)));
        assert!(!run.is_stale(t(510), 10));
        assert!(run.is_stale(t(511), 10));
    }

    #[test]
    fn recording_an_item_is_a_sign_of_life_but_a_duplicate_is_not() {
        let (mut run, mut ledger) = counted_run(&["a", "b"]);
        run.record_item(&mut ledger, ItemRecord::succeeded(key("a")), t(50))
            .unwrap();

        run.record_item(&mut ledger, ItemRecord::succeeded(key("a")), t(90))
            .unwrap();

        assert_eq!(run.heartbeat_at(), Some(t(50)));
        assert!(!run.is_stale(t(60), 10));
    }

    #[test]
    fn phased_runs_cannot_get_a_total_and_counted_runs_cannot_get_phases() {
        let phases = || Phases::try_new(vec![Phase::try_new("p", "P").unwrap()]).unwrap();
        let mut phased = new_run(OperationType::BASELINE_CAPTURE);
        let mut ledger = ItemLedger::new();
        phased.declare_phases(phases()).unwrap();
        let (mut counted, _) = counted_run(&["a"]);

        let total = phased.set_total(&mut ledger, work_set(&["a"]));
        let declared = counted.declare_phases(phases());

        assert_eq!(total, Err(RunError::StagedRunHasNoTotal));
        assert_eq!(declared, Err(RunError::StagedRunHasNoTotal));
        assert_eq!(phased.declare_phases(phases()), Ok(Change::Unchanged));
    }

    #[test]
    fn entering_phases_goes_forward_only() {
        let mut run = new_run(OperationType::BASELINE_CAPTURE);
        run.declare_phases(
            Phases::try_new(vec![
                Phase::try_new("resolve_scope", "Resolving scope").unwrap(),
                Phase::try_new("capture_evidence", "Capturing evidence").unwrap(),
            ])
            .unwrap(),
        )
        .unwrap();

        assert_eq!(run.enter_phase("capture_evidence"), Ok(Change::Applied));
        assert!(matches!(
            run.enter_phase("resolve_scope"),
            Err(RunError::PhaseRegressed { .. })
        ));
        assert_eq!(
            new_run(OperationType::INVENTORY_SYNC).enter_phase("x"),
            Err(RunError::UnknownPhase { key: "x".into() })
        );
    }

    #[test]
    fn components_are_declared_once_and_updated_forward() {
        let mut run = new_run(OperationType::BASELINE_COMPARE);
        let declare = || {
            Components::try_new(vec![
                Component::try_new("capture", "Capture current state").unwrap(),
                Component::try_new("compare", "Compare items").unwrap(),
            ])
            .unwrap()
        };
        run.declare_components(declare()).unwrap();

        let redeclare = run.declare_components(declare());
        let update = run.update_component(
            "compare",
            ComponentState::Counted {
                processed: 1,
                total: 4,
            },
        );
        let unknown = run.update_component("other", ComponentState::Done);

        assert_eq!(redeclare, Ok(Change::Unchanged));
        assert_eq!(update, Ok(Change::Applied));
        assert_eq!(run.components().unwrap().current(), Some(1));
        assert_eq!(
            unknown,
            Err(RunError::UnknownComponent {
                key: "other".into()
            })
        );
    }

    #[test]
    fn reconcile_repairs_drift_from_the_ledger_and_reports_it() {
        let (mut run, mut ledger) = counted_run(&["a", "b"]);
        run.record_item(&mut ledger, ItemRecord::succeeded(key("a")), t(2))
            .unwrap();
        let mut drifted = run.parts().clone();
        drifted.counts.set(SummaryKey::Processed, 2).unwrap();
        let mut run = OperationRun::restore(drifted);

        let drift = run.reconcile_counts(&ledger).unwrap().unwrap();
        let again = run.reconcile_counts(&ledger).unwrap();

        assert_eq!(drift.before.get(SummaryKey::Processed), Some(2));
        assert_eq!(drift.after.get(SummaryKey::Processed), Some(1));
        assert_eq!(get(&run, SummaryKey::Processed), Some(1));
        assert_eq!(again, None);
    }

    #[test]
    fn counts_always_equal_the_recount_of_the_ledger() {
        let (mut run, mut ledger) = counted_run(&["a", "b", "c"]);
        run.record_items(
            &mut ledger,
            vec![
                ItemRecord::succeeded(key("a"))
                    .with_deltas(AuxDeltas::new().with(AuxiliaryKey::Updated, 2)),
                ItemRecord::failed(key("b"), reason("x.failed")),
            ],
            t(2),
        )
        .unwrap();
        run.increment(
            &mut ledger,
            &key("k"),
            &AuxDeltas::new().with(AuxiliaryKey::Updated, 1),
        )
        .unwrap();

        assert_eq!(ledger.recount(), *run.counts());
        assert_eq!(get(&run, SummaryKey::Updated), Some(3));
    }
}
