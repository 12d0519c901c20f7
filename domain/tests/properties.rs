//! Property tests: random operation sequences never break I1–I6, and the progress contract
//! never shows a bar that lies.

use opsrun_domain::{
    AuxDeltas, AuxiliaryKey, Completion, ItemKey, ItemLedger, ItemRecord, NewRun, OperationRun,
    OperationRunProgressContract, OperationType, ProgressDetail, ReasonCode, RunError, RunId,
    RunStatus, SummaryKey, TenantId, Timestamp, WorkSet, WorkspaceId,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Start,
    SetTotal(Vec<u8>),
    Record(u8, u8),
    Batch(Vec<(u8, u8)>),
    Increment(u8, u8, u64),
    Heartbeat,
    Cancel,
    Complete,
    Reconcile,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Start),
        2 => proptest::collection::vec(0u8..12, 0..12).prop_map(Op::SetTotal),
        6 => (0u8..14, 0u8..3).prop_map(|(k, o)| Op::Record(k, o)),
        3 => proptest::collection::vec((0u8..14, 0u8..3), 0..6).prop_map(Op::Batch),
        2 => (0u8..4, 0u8..5, 0u64..5).prop_map(|(k, a, d)| Op::Increment(k, a, d)),
        1 => Just(Op::Heartbeat),
        1 => Just(Op::Cancel),
        1 => Just(Op::Complete),
        1 => Just(Op::Reconcile),
    ]
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn key(i: u8) -> Result<ItemKey, TestCaseError> {
    ItemKey::parse(&format!("item-{i}")).map_err(fail)
}

fn record(k: u8, o: u8) -> Result<ItemRecord, TestCaseError> {
    let deltas = AuxDeltas::new().with(AuxiliaryKey::Items, u64::from(k % 3));
    let record = match o {
        0 => ItemRecord::succeeded(key(k)?),
        1 => ItemRecord::failed(key(k)?, ReasonCode::parse("test.failed").map_err(fail)?),
        _ => ItemRecord::skipped(key(k)?, None),
    };
    Ok(record.with_deltas(deltas))
}

type Applied = Result<Result<(), RunError>, TestCaseError>;

fn apply(run: &mut OperationRun, ledger: &mut ItemLedger, op: &Op, now: Timestamp) -> Applied {
    Ok(match op {
        Op::Start => run.mark_running(now).map(drop),
        Op::SetTotal(keys) => {
            let mut units = keys
                .iter()
                .map(|k| key(*k))
                .collect::<Result<Vec<_>, _>>()?;
            units.sort();
            units.dedup();
            let n = units.len();
            run.set_total(
                ledger,
                WorkSet::try_new(units, format!("{n} units")).map_err(fail)?,
            )
            .map(drop)
        }
        Op::Record(k, o) => run.record_item(ledger, record(*k, *o)?, now).map(drop),
        Op::Batch(items) => {
            let records = items
                .iter()
                .map(|(k, o)| record(*k, *o))
                .collect::<Result<Vec<_>, _>>()?;
            run.record_items(ledger, records, now).map(drop)
        }
        Op::Increment(k, a, d) => {
            let deltas = AuxDeltas::new().with(AuxiliaryKey::ALL[usize::from(*a)], *d);
            run.increment(
                ledger,
                &ItemKey::parse(&format!("inc-{k}")).map_err(fail)?,
                &deltas,
            )
            .map(drop)
        }
        Op::Heartbeat => run.heartbeat(now).map(drop),
        Op::Cancel => run.cancel(now).map(drop),
        Op::Complete => run.complete(Completion::derived(now)).map(drop),
        Op::Reconcile => run.reconcile_counts(ledger).map(drop),
    })
}

fn new_run() -> OperationRun {
    OperationRun::new(NewRun {
        id: RunId::new(1),
        workspace: WorkspaceId::new(1),
        tenant: TenantId::new(1),
        operation_type: OperationType::INVENTORY_SYNC,
        target: "tenant".into(),
        initiator: None,
        parent: None,
        retry_of: None,
        created_at: Timestamp::from_millis(0),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_sequences_never_break_the_count_invariants(ops in proptest::collection::vec(op(), 0..60)) {
        let mut run = new_run();
        let mut ledger = ItemLedger::new();
        let mut first_total = None;
        let mut completed_snapshot: Option<(OperationRun, ItemLedger)> = None;
        let mut last_percent = 0u8;

        for (i, op) in ops.iter().enumerate() {
            let before = (run.clone(), ledger.clone());
            let now = Timestamp::from_millis(i64::try_from(i).map_err(fail)? + 1);

            let result = apply(&mut run, &mut ledger, op, now)?;

            let counts = *run.counts();
            let processed = counts.get_or_zero(SummaryKey::Processed);
            // A refusal changes nothing.
            if result.is_err() {
                prop_assert_eq!(&(run.clone(), ledger.clone()), &before);
            }
            // I1: total set at most once.
            if let Some(total) = counts.get(SummaryKey::Total) {
                prop_assert_eq!(*first_total.get_or_insert(total), total);
                // I2.
                prop_assert!(processed <= total);
            }
            // I3: processed never decreases.
            prop_assert!(processed >= before.0.counts().get_or_zero(SummaryKey::Processed));
            // I4.
            let outcomes: u64 = [SummaryKey::Succeeded, SummaryKey::Failed, SummaryKey::Skipped]
                .iter()
                .map(|k| counts.get_or_zero(*k))
                .sum();
            prop_assert!(outcomes <= processed);
            // I5: processed is exactly the number of distinct ledgered keys, and every counter
            // equals its recount from the ledger.
            prop_assert_eq!(processed, ledger.len() as u64);
            prop_assert_eq!(ledger.recount(), counts);
            // I6: a completed run never changes again.
            if let Some(snapshot) = &completed_snapshot {
                prop_assert_eq!(&(run.clone(), ledger.clone()), snapshot);
                prop_assert!(result.is_err());
            } else if run.status() == RunStatus::Completed {
                completed_snapshot = Some((run.clone(), ledger.clone()));
            }
            // The contract never shows a bar that lies, and a bar never goes back.
            let view = OperationRunProgressContract::resolve(&run);
            if let ProgressDetail::Counted { processed, total, percent } = view.detail {
                prop_assert!(processed <= total && total > 0);
                prop_assert!(percent <= 100);
                prop_assert!(percent >= last_percent);
                prop_assert_eq!(u128::from(percent), u128::from(processed) * 100 / u128::from(total));
                last_percent = percent;
            }
        }
    }
}

proptest! {
    /// Rate and ETA: never negative (unsigned), absent on thin evidence, and an ETA of 0 only
    /// when nothing is left.
    #[test]
    fn an_estimate_is_present_only_with_evidence_and_zero_only_when_done(
        records in 0u64..300,
        first in 0i64..100_000,
        span in 0i64..100_000,
        total in 1u64..100_000,
        done in 0u64..100_000,
    ) {
        use opsrun_domain::{
            PACE_MAX_RECORDS, PACE_MIN_FULL_SPAN_MS, PACE_MIN_RECORDS, PACE_MIN_SPAN_MS, Pace,
            RecordWindow,
        };
        let records = records.min(PACE_MAX_RECORDS);
        let processed = done.min(total);
        let window = (records > 0).then_some(RecordWindow {
            records,
            first_at: Timestamp::from_millis(first),
        });
        let now = Timestamp::from_millis(first + span);
        let pace = Pace::estimate(window, now, processed, total);
        let min_span = if records >= PACE_MAX_RECORDS { PACE_MIN_FULL_SPAN_MS } else { PACE_MIN_SPAN_MS };
        let evidence = records >= PACE_MIN_RECORDS && span >= min_span;
        prop_assert_eq!(pace.is_some(), evidence);
        if let Some(pace) = pace {
            prop_assert!(pace.rate() > 0.0);
            prop_assert_eq!(pace.eta_seconds == 0, processed == total);
            // The ETA is the time the rest takes at the rate, rounded up (never below it).
            let left = (total - processed) as f64;
            prop_assert!(pace.eta_seconds as f64 + 1e-6 >= left / pace.rate());
        }
    }

    /// A paused run keeps its numbers, refuses to start items, and is never stale.
    #[test]
    fn a_paused_run_starts_nothing_and_never_goes_stale(units in 1usize..20, done in 0usize..20, wait in 0i64..10_000_000) {
        use opsrun_domain::{Claim, Staleness};
        let mut run = new_run();
        let mut ledger = ItemLedger::new();
        let keys: Vec<ItemKey> = (0..units).map(|i| ItemKey::parse(&format!("u{i}")).unwrap()).collect();
        run.mark_running(Timestamp::from_millis(1)).unwrap();
        run.set_total(&mut ledger, WorkSet::try_new(keys.clone(), "units").unwrap()).unwrap();
        for key in keys.iter().take(done.min(units)) {
            run.record_item(&mut ledger, ItemRecord::succeeded(key.clone()), Timestamp::from_millis(2)).unwrap();
        }
        let before = OperationRunProgressContract::resolve(&run);
        run.pause(Timestamp::from_millis(3)).unwrap();
        let view = OperationRunProgressContract::resolve_at(&run, Staleness {
            now: Timestamp::from_millis(3 + wait),
            threshold_ms: 1_000,
            window: None,
        });
        for key in &keys {
            prop_assert_eq!(run.claim_item(&mut ledger, key), Ok(Claim::Paused));
        }
        prop_assert!(view.paused && !view.stale && view.pace.is_none());
        prop_assert_eq!(&view.detail, &before.detail);
    }
}
