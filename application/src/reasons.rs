//! Every reason code opsrun writes into a run's failures or an item's ledger entry, in one
//! place: a code is a stable, machine-readable name (surfaces and hosts match on it), so each
//! name exists once with one value.
//!
//! Codes are `area.what`: `run.*` for the runtime, one area per run family for its own.

use opsrun_domain::ReasonCode;

/// A run whose job could not be enqueued.
pub const RUN_ENQUEUE_FAILED: ReasonCode = ReasonCode::from_static("run.enqueue_failed");
/// A run that stopped giving signs of life (its job is gone).
pub const RUN_STALE: ReasonCode = ReasonCode::from_static("run.stale");
/// A run whose job used up every attempt.
pub const RUN_ATTEMPTS_EXHAUSTED: ReasonCode = ReasonCode::from_static("run.attempts_exhausted");
/// An item whose provider call had started when its run was cancelled: recorded `skipped`
/// by the cancel, because its side effect may have happened.
pub const RUN_CANCELLED_IN_FLIGHT: ReasonCode = ReasonCode::from_static("run.cancelled_in_flight");
/// A run whose planned unit is not a valid item key.
pub const RUN_INVALID_UNIT: ReasonCode = ReasonCode::from_static("run.invalid_unit");

/// `inventory.sync`: a selected policy type the provider does not have.
pub const INVENTORY_TYPE_NOT_FOUND: ReasonCode =
    ReasonCode::from_static("inventory.type_not_found");
/// `review_pack.generate`: a section the source does not have.
pub const REVIEW_PACK_SECTION_NOT_FOUND: ReasonCode =
    ReasonCode::from_static("review_pack.section_not_found");
/// `evidence_snapshot.generate`: a dimension the source does not have.
pub const EVIDENCE_DIMENSION_NOT_FOUND: ReasonCode =
    ReasonCode::from_static("evidence.dimension_not_found");
/// A run's backup set no longer exists (`backup_set.add_policies`, `backup_set.restore`).
pub const BACKUP_SET_NOT_FOUND: ReasonCode = ReasonCode::from_static("backup_set.not_found");
/// `backup_set.add_policies`: the policy was already in the set (a skip, not a failure).
pub const BACKUP_SET_ALREADY_PRESENT: ReasonCode =
    ReasonCode::from_static("backup_set.already_present");
/// `backup_set.add_policies`: the policy does not exist at the provider.
pub const POLICY_NOT_FOUND: ReasonCode = ReasonCode::from_static("policy.not_found");
/// `backup_set.restore`: an item vanished from its backup set after the parent froze it.
pub const RESTORE_ITEM_MISSING: ReasonCode = ReasonCode::from_static("restore.item_missing");
/// `backup_set.restore`: the item's restore target does not exist.
pub const RESTORE_TARGET_MISSING: ReasonCode = ReasonCode::from_static("restore.target_missing");
/// `backup_set.restore`: the item's child job used up every attempt.
pub const RESTORE_ATTEMPTS_EXHAUSTED: ReasonCode =
    ReasonCode::from_static("restore.attempts_exhausted");
/// `baseline.capture`: some policies could not be captured.
pub const BASELINE_POLICIES_NOT_CAPTURED: ReasonCode =
    ReasonCode::from_static("baseline.policies_not_captured");
/// `baseline.compare`: the baseline to compare against does not exist.
pub const BASELINE_NOT_FOUND: ReasonCode = ReasonCode::from_static("baseline.not_found");
/// `baseline.compare`: a baseline item's current state could not be fetched.
pub const COMPARE_FETCH_FAILED: ReasonCode = ReasonCode::from_static("compare.fetch_failed");
/// The simulated tenant failed an item on purpose (its configured failure rate).
pub const SIMULATED_ITEM_FAILED: ReasonCode = ReasonCode::from_static("simulated.item_failed");

/// Every code above, for tests and documentation.
pub const ALL: [ReasonCode; 17] = [
    RUN_ENQUEUE_FAILED,
    RUN_STALE,
    RUN_ATTEMPTS_EXHAUSTED,
    RUN_INVALID_UNIT,
    INVENTORY_TYPE_NOT_FOUND,
    REVIEW_PACK_SECTION_NOT_FOUND,
    EVIDENCE_DIMENSION_NOT_FOUND,
    BACKUP_SET_NOT_FOUND,
    BACKUP_SET_ALREADY_PRESENT,
    POLICY_NOT_FOUND,
    RESTORE_ITEM_MISSING,
    RESTORE_TARGET_MISSING,
    RESTORE_ATTEMPTS_EXHAUSTED,
    BASELINE_POLICIES_NOT_CAPTURED,
    BASELINE_NOT_FOUND,
    COMPARE_FETCH_FAILED,
    SIMULATED_ITEM_FAILED,
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_code_is_distinct_and_well_formed() {
        let all = ALL;
        let codes: Vec<&str> = all.iter().map(ReasonCode::as_str).collect();
        let distinct: BTreeSet<&str> = codes.iter().copied().collect();

        assert_eq!(distinct.len(), codes.len());
        assert!(codes.iter().all(|c| ReasonCode::parse(c).is_ok()));
    }
}
