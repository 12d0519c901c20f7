//! Model-based property test of the storage adapters: random operation sequences applied to
//! the pure domain model and to a store give identical results, runs, counts and ledgers.
//! At least 256 cases per backend; more when `PROPTEST_CASES` asks.

use std::sync::Arc;

use opsrun_application::ports::{CreateRun, RunStore};
use opsrun_application::{ClaimCoalescer, RecordCoalescer, RunParams, StoreError, TerminalEffects};
use opsrun_domain::{
    AuxDeltas, AuxiliaryKey, Completion, ItemKey, ItemLedger, ItemRecord, NewRun, OperationRun,
    Phase, Phases, ReasonCode, RunError, RunId, RunOutcome, RunStatus, TenantId, TenantLoad,
    Timestamp, WorkSet, WorkspaceId,
};
use opsrun_tests::{Backend, TestError, TestStore};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

#[derive(Debug, Clone)]
enum Op {
    Start(u8),
    MarkRunning(u8),
    SetTotal(u8, Vec<u8>),
    Record(u8, u8, u8),
    Batch(u8, Vec<(u8, u8)>),
    /// Several callers' records at once, through the record coalescer.
    Concurrent(u8, Vec<Vec<(u8, u8)>>),
    Increment(u8, u8, u8, u64),
    Heartbeat(u8, i64),
    Cancel(u8),
    Complete(u8),
    Reconcile(u8),
    DeclarePhases(u8),
    EnterPhase(u8, u8),
    Pause(u8),
    Resume(u8),
    Admit(u8, u8),
    Claim(u8, u8),
    /// Several callers' claims at once, through the claim coalescer.
    Claims(u8, Vec<Vec<u8>>),
    Retry(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let run = 0u8..4;
    prop_oneof![
        3 => (0u8..3).prop_map(Op::Start),
        2 => run.clone().prop_map(Op::MarkRunning),
        3 => (run.clone(), proptest::collection::vec(0u8..10, 0..8)).prop_map(|(r, k)| Op::SetTotal(r, k)),
        8 => (run.clone(), 0u8..12, 0u8..3).prop_map(|(r, k, o)| Op::Record(r, k, o)),
        4 => (run.clone(), proptest::collection::vec((0u8..12, 0u8..3), 0..6)).prop_map(|(r, b)| Op::Batch(r, b)),
        3 => (run.clone(), proptest::collection::vec(proptest::collection::vec((0u8..12, 0u8..3), 0..4), 2..6)).prop_map(|(r, s)| Op::Concurrent(r, s)),
        2 => (run.clone(), 0u8..3, 0u8..5, 0u64..4).prop_map(|(r, k, a, d)| Op::Increment(r, k, a, d)),
        1 => (run.clone(), -50i64..50).prop_map(|(r, d)| Op::Heartbeat(r, d)),
        1 => run.clone().prop_map(Op::Cancel),
        1 => run.clone().prop_map(Op::Complete),
        1 => run.clone().prop_map(Op::Reconcile),
        1 => run.clone().prop_map(Op::DeclarePhases),
        1 => (run.clone(), 0u8..3).prop_map(|(r, p)| Op::EnterPhase(r, p)),
        1 => run.clone().prop_map(Op::Pause),
        1 => run.clone().prop_map(Op::Resume),
        2 => (run.clone(), 1u8..3).prop_map(|(r, l)| Op::Admit(r, l)),
        2 => (run.clone(), 0u8..12).prop_map(|(r, k)| Op::Claim(r, k)),
        2 => (run.clone(), proptest::collection::vec(proptest::collection::vec(0u8..12, 0..4), 2..6)).prop_map(|(r, s)| Op::Claims(r, s)),
        1 => (run, 0u8..3).prop_map(|(r, kind)| Op::Retry(r, kind)),
    ]
}

fn params(kind: u8) -> RunParams {
    match kind {
        0 => RunParams::BackupSetRestore {
            backup_set_id: 1,
            item_ids: None,
        },
        1 => RunParams::InventorySync { policy_types: None },
        _ => RunParams::BaselineCapture,
    }
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn key(prefix: &str, i: u8) -> Result<ItemKey, TestCaseError> {
    ItemKey::parse(&format!("{prefix}-{i}")).map_err(fail)
}

fn record(k: u8, o: u8) -> Result<ItemRecord, TestCaseError> {
    let key = key("item", k)?;
    let record = match o {
        0 => ItemRecord::succeeded(key),
        1 => ItemRecord::failed(key, ReasonCode::parse("model.failed").map_err(fail)?),
        _ => ItemRecord::skipped(key, None),
    };
    Ok(record.with_deltas(AuxDeltas::new().with(AuxiliaryKey::Items, u64::from(k % 3))))
}

fn phases() -> Result<Phases, TestCaseError> {
    Phases::try_new(vec![
        Phase::try_new("one", "One").map_err(fail)?,
        Phase::try_new("two", "Two").map_err(fail)?,
        Phase::try_new("three", "Three").map_err(fail)?,
    ])
    .map_err(fail)
}

/// The reference: the domain model of each run, and the run-registry rule of dedupe.
#[derive(Default)]
struct Model {
    runs: Vec<(OperationRun, ItemLedger)>,
    terminal_effects: usize,
}

/// An answer, reduced to what must agree between model and store.
fn answer<T: std::fmt::Debug>(result: Result<T, RunError>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(error) => format!("refused {error:?}"),
    }
}

fn store_answer<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
) -> Result<String, TestCaseError> {
    match result {
        Ok(value) => Ok(format!("ok {value:?}")),
        Err(StoreError::Rule(error)) => Ok(format!("refused {error:?}")),
        Err(other) => Err(fail(format!("store failed: {other:?}"))),
    }
}

/// Everything of a run but its ids.
fn projection(run: &OperationRun) -> String {
    let p = run.parts();
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        p.status,
        p.outcome,
        p.counts,
        p.basis,
        p.phases,
        p.components,
        p.failures,
        p.created_at,
        p.started_at,
        p.completed_at,
        p.heartbeat_at,
        p.anomalies,
        p.operation_type,
        p.retry_of,
        p.paused_at,
        p.waiting
    )
}

struct Case<'a> {
    store: &'a TestStore,
    runs: Arc<dyn RunStore>,
    coalescer: &'a RecordCoalescer,
    claims: &'a ClaimCoalescer,
    tenant: TenantId,
    model: Model,
    ids: Vec<RunId>,
}

impl Case<'_> {
    fn pick(&self, r: u8) -> Option<usize> {
        (!self.ids.is_empty()).then(|| usize::from(r) % self.ids.len())
    }

    async fn step(&mut self, op: &Op, at: Timestamp) -> Result<(), TestCaseError> {
        let (expected, actual) = match op {
            Op::Start(_) | Op::Retry(_, _) => {
                let (kind, retry_of) = match op {
                    Op::Retry(r, kind) => match self.pick(*r) {
                        Some(index) => (*kind, Some(self.ids[index])),
                        None => return Ok(()),
                    },
                    Op::Start(kind) => (*kind, None),
                    _ => unreachable!("only starts and retries create runs"),
                };
                let params = params(kind);
                let identity = opsrun_domain::identity(
                    self.tenant,
                    &params.operation_type(),
                    &params.target(),
                );
                let active =
                    self.model.runs.iter().position(|(run, _)| {
                        run.status().is_active() && run.identity() == identity
                    });
                let expected = match active {
                    Some(index) => format!("reused {index}"),
                    None => {
                        let index = self.model.runs.len();
                        self.model.runs.push((
                            OperationRun::new(NewRun {
                                id: RunId::new(index as i64 + 1),
                                workspace: WorkspaceId::new(1),
                                tenant: self.tenant,
                                operation_type: params.operation_type(),
                                target: params.target(),
                                initiator: None,
                                parent: None,
                                retry_of,
                                created_at: at,
                            }),
                            ItemLedger::new(),
                        ));
                        format!("created {index}")
                    }
                };
                let started = self
                    .runs
                    .create_run(CreateRun {
                        workspace: self.store.workspace(),
                        tenant: self.tenant,
                        params,
                        initiator: None,
                        parent: None,
                        retry_of,
                        at,
                    })
                    .await
                    .map_err(fail)?;
                let actual = if started.reused {
                    let index = self.ids.iter().position(|id| *id == started.run.id());
                    format!("reused {}", index.map_or("?".into(), |i| i.to_string()))
                } else {
                    self.ids.push(started.run.id());
                    format!("created {}", self.ids.len() - 1)
                };
                (expected, actual)
            }
            other => {
                let Some(index) = self.pick(run_of(other)) else {
                    return Ok(());
                };
                let id = self.ids[index];
                // The other top-level runs of the case's one tenant that hold a slot.
                let others_running = self
                    .model
                    .runs
                    .iter()
                    .enumerate()
                    .filter(|(i, (r, _))| *i != index && r.status() == RunStatus::Running)
                    .count();
                let (run, ledger) = &mut self.model.runs[index];
                let runs = &self.runs;
                match other {
                    Op::MarkRunning(_) => (
                        answer(run.mark_running(at)),
                        store_answer(runs.mark_running(id, at).await)?,
                    ),
                    Op::SetTotal(_, units) => {
                        let mut keys = units
                            .iter()
                            .map(|k| key("item", *k))
                            .collect::<Result<Vec<_>, _>>()?;
                        keys.sort();
                        keys.dedup();
                        let ws = WorkSet::try_new(keys, "model units").map_err(fail)?;
                        (
                            answer(run.set_total(ledger, ws.clone())),
                            store_answer(runs.set_total(id, ws).await)?,
                        )
                    }
                    Op::Record(_, k, o) => (
                        answer(run.record_item(ledger, record(*k, *o)?, at)),
                        store_answer(runs.record_items(id, vec![record(*k, *o)?], at).await)?,
                    ),
                    Op::Batch(_, items) => {
                        let records = items
                            .iter()
                            .map(|(k, o)| record(*k, *o))
                            .collect::<Result<Vec<_>, _>>()?;
                        (
                            answer(run.record_items(ledger, records.clone(), at)),
                            store_answer(runs.record_items(id, records, at).await)?,
                        )
                    }
                    Op::Concurrent(_, submissions) => {
                        let batches = submissions
                            .iter()
                            .map(|items| {
                                items
                                    .iter()
                                    .map(|(k, o)| record(*k, *o))
                                    .collect::<Result<Vec<_>, _>>()
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        // The model takes the callers one after another, in the order they
                        // came; the coalescer combines all but the first (which is already
                        // writing when the others arrive) into one store call.
                        let expected: Vec<String> = batches
                            .iter()
                            .map(|b| answer(run.record_items(ledger, b.clone(), at)))
                            .collect();
                        let coalescer = self.coalescer;
                        let answers = futures::future::join_all(
                            batches.into_iter().map(|b| coalescer.record(id, b, at)),
                        )
                        .await;
                        let actual = answers
                            .into_iter()
                            .map(store_answer)
                            .collect::<Result<Vec<_>, _>>()?;
                        (format!("{expected:?}"), format!("{actual:?}"))
                    }
                    Op::Increment(_, k, a, d) => {
                        let deltas = AuxDeltas::new().with(AuxiliaryKey::ALL[usize::from(*a)], *d);
                        let k = key("inc", *k)?;
                        (
                            answer(run.increment(ledger, &k, &deltas)),
                            store_answer(runs.increment(id, k, deltas).await)?,
                        )
                    }
                    Op::Heartbeat(_, offset) => {
                        let at = at.plus_millis(*offset);
                        (
                            answer(run.heartbeat(at)),
                            store_answer(runs.heartbeat(id, at).await)?,
                        )
                    }
                    Op::Cancel(_) | Op::Complete(_) => {
                        let completion = if matches!(other, Op::Cancel(_)) {
                            Completion::decided(RunOutcome::Cancelled, at)
                        } else {
                            Completion::derived(at)
                        };
                        let expected = match run.complete_settling(ledger, completion.clone()) {
                            Ok(outcome) => {
                                self.model.terminal_effects += 1;
                                format!("won {outcome:?}")
                            }
                            Err(RunError::RunAlreadyCompleted) => "lost".to_owned(),
                            Err(e) => format!("refused {e:?}"),
                        };
                        let actual = match runs
                            .complete(id, completion, TerminalEffects { actor: None })
                            .await
                        {
                            Ok(done) if done.won => format!("won {:?}", done.run.outcome()),
                            Ok(_) => "lost".to_owned(),
                            Err(StoreError::Rule(e)) => format!("refused {e:?}"),
                            Err(e) => return Err(fail(format!("{e:?}"))),
                        };
                        (expected, actual)
                    }
                    Op::Reconcile(_) => (
                        answer(run.reconcile_counts(ledger)),
                        store_answer(runs.reconcile_counts(id).await)?,
                    ),
                    Op::DeclarePhases(_) => (
                        answer(run.declare_phases(phases()?)),
                        store_answer(runs.declare_phases(id, phases()?).await)?,
                    ),
                    Op::EnterPhase(_, p) => {
                        let name = ["one", "two", "three"][usize::from(*p)];
                        (
                            answer(run.enter_phase_at(name, at)),
                            store_answer(runs.enter_phase(id, name.to_owned(), at).await)?,
                        )
                    }
                    Op::Pause(_) => (
                        answer(run.pause(at)),
                        store_answer(runs.pause(id, at).await)?,
                    ),
                    Op::Resume(_) => (
                        answer(run.resume(at)),
                        store_answer(runs.resume(id, at).await)?,
                    ),
                    Op::Admit(_, limit) => {
                        let load = TenantLoad {
                            running: u32::try_from(others_running).map_err(fail)?,
                            limit: u32::from(*limit),
                        };
                        (
                            answer(run.admit(at, load)),
                            store_answer(runs.admit(id, at, u32::from(*limit)).await)?,
                        )
                    }
                    Op::Claim(_, k) => {
                        let k = key("item", *k)?;
                        (
                            answer(run.claim_item(ledger, &k)),
                            store_answer(runs.claim_item(id, k, at).await)?,
                        )
                    }
                    Op::Claims(_, callers) => {
                        let callers = callers
                            .iter()
                            .map(|keys| {
                                keys.iter()
                                    .map(|k| key("item", *k))
                                    .collect::<Result<Vec<_>, _>>()
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        // The model takes the callers one after another, in the order they
                        // came, as the coalescer's combined call does.
                        let expected: Vec<String> = callers
                            .iter()
                            .map(|keys| answer(Ok(run.claim_items(ledger, keys))))
                            .collect();
                        let claims = self.claims;
                        let answers = futures::future::join_all(
                            callers.into_iter().map(|keys| claims.claim(id, keys, at)),
                        )
                        .await;
                        let actual = answers
                            .into_iter()
                            .map(store_answer)
                            .collect::<Result<Vec<_>, _>>()?;
                        (format!("{expected:?}"), format!("{actual:?}"))
                    }
                    Op::Start(_) | Op::Retry(_, _) => {
                        unreachable!("the outer match handles starts")
                    }
                }
            }
        };
        prop_assert_eq!(&expected, &actual, "answers differ for {:?}", op);
        for (index, id) in self.ids.iter().enumerate() {
            let (run, ledger) = &self.model.runs[index];
            let stored = self.runs.run(*id).await.map_err(fail)?;
            prop_assert_eq!(
                projection(run),
                projection(&stored),
                "run {} differs after {:?}",
                index,
                op
            );
            // Claims are compared through the answers of claims and completions: the ledgers
            // are compared without them (the SQL stores read them apart).
            let unclaimed = |l: &ItemLedger| {
                ItemLedger::restore(
                    l.work_set().cloned(),
                    l.entries().map(|(k, e)| (k.clone(), e.clone())).collect(),
                    l.increments()
                        .map(|(k, d)| (k.clone(), d.clone()))
                        .collect(),
                )
            };
            let stored_ledger = unclaimed(&self.store.ledger(*id).await.map_err(fail)?);
            let ledger = unclaimed(ledger);
            prop_assert_eq!(
                &ledger,
                &stored_ledger,
                "ledger {} differs after {:?}",
                index,
                op
            );
        }
        let audits = {
            let mut n = 0;
            for id in &self.ids {
                n += self.runs.audit_events(*id).await.map_err(fail)?.len();
            }
            n
        };
        prop_assert_eq!(self.model.terminal_effects, audits);
        Ok(())
    }
}

fn run_of(op: &Op) -> u8 {
    match op {
        Op::Start(r)
        | Op::MarkRunning(r)
        | Op::SetTotal(r, _)
        | Op::Record(r, _, _)
        | Op::Batch(r, _)
        | Op::Concurrent(r, _)
        | Op::Increment(r, _, _, _)
        | Op::Heartbeat(r, _)
        | Op::Cancel(r)
        | Op::Complete(r)
        | Op::Reconcile(r)
        | Op::DeclarePhases(r)
        | Op::EnterPhase(r, _)
        | Op::Pause(r)
        | Op::Resume(r)
        | Op::Admit(r, _)
        | Op::Claim(r, _)
        | Op::Claims(r, _)
        | Op::Retry(r, _) => *r,
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
        .max(256)
}

fn check(backend: Backend) -> Result<(), TestError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let Some(store) = rt.block_on(TestStore::open(backend))? else {
        crate::report_skip();
        return Ok(());
    };
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let coalescer = RecordCoalescer::new(store.store());
    let claims = ClaimCoalescer::new(store.store());
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(op(), 1..40);
    runner
        .run(&strategy, |ops| {
            rt.block_on(async {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let tenant = store.tenant(&format!("t{n}")).await.map_err(fail)?;
                let mut case = Case {
                    store: &store,
                    runs: store.store(),
                    coalescer: &coalescer,
                    claims: &claims,
                    tenant: tenant.id,
                    model: Model::default(),
                    ids: Vec::new(),
                };
                for (i, op) in ops.iter().enumerate() {
                    let at = Timestamp::from_millis(10_000 + 100 * i as i64);
                    case.step(op, at).await?;
                }
                Ok(())
            })
        })
        .map_err(|e| -> TestError { e.to_string().into() })?;
    // On the SQL stores the first caller of a `Concurrent` (or `Claims`) step is still writing
    // when the others arrive, so they were combined: the property held with coalescing on. (The memory
    // store answers before the next caller arrives.)
    for (what, calls, submissions) in [
        ("records", coalescer.store_calls(), coalescer.submissions()),
        ("claims", claims.store_calls(), claims.submissions()),
    ] {
        if backend == Backend::Memory {
            assert_eq!(calls, submissions, "{what}");
        } else {
            assert!(
                calls < submissions,
                "{calls} store calls for {submissions} {what}: nothing was combined"
            );
        }
    }
    Ok(())
}

#[test]
fn the_memory_store_matches_the_domain_model() -> Result<(), TestError> {
    check(Backend::Memory)
}

#[test]
fn the_sqlite_store_matches_the_domain_model() -> Result<(), TestError> {
    check(Backend::Sqlite)
}

#[test]
fn the_postgres_store_matches_the_domain_model() -> Result<(), TestError> {
    check(Backend::Postgres)
}
