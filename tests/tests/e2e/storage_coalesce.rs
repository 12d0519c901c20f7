//! Coalesced records and claims, and child-job counts, on every backend: many concurrent
//! writers of one run, with duplicates, through one [`RecordCoalescer`], count each item
//! exactly once and each caller gets its own answer; a combined record the store refuses
//! refuses only the caller whose item caused it; claims through one [`ClaimCoalescer`] are
//! answered key by key.

use std::sync::Arc;
use std::time::Duration;

use opsrun_application::ports::{CreateRun, RunStore};
use opsrun_application::{ClaimCoalescer, RecordCoalescer, RunParams, StoreError};
use opsrun_domain::{
    Claim, ItemKey, ItemRecord, ReasonCode, RecordOutcome, RunError, RunId, SummaryKey, Timestamp,
    WorkSet,
};
use opsrun_tests::{Backend, TestError, TestStore};

use crate::contract;

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn key(i: usize) -> Result<ItemKey, TestError> {
    Ok(ItemKey::parse(&format!("item-{i:05}"))?)
}

/// Item `i`'s record: every third fails, every third is skipped, the rest succeed (the same
/// whichever writer sends it).
fn record(i: usize) -> Result<ItemRecord, TestError> {
    let key = key(i)?;
    Ok(match i % 3 {
        0 => ItemRecord::succeeded(key),
        1 => ItemRecord::failed(key, ReasonCode::parse("test.failed")?),
        _ => ItemRecord::skipped(key, None),
    })
}

/// A running restore over `units` items.
async fn running_run(store: &TestStore, units: usize) -> Result<RunId, TestError> {
    let tenant = store.tenant("contoso").await?;
    let runs = store.store();
    let started = runs
        .create_run(CreateRun {
            workspace: store.workspace(),
            tenant: tenant.id,
            params: RunParams::BackupSetRestore {
                backup_set_id: 1,
                item_ids: None,
            },
            initiator: None,
            parent: None,
            retry_of: None,
            at: t(1_000),
        })
        .await?;
    let id = started.run.id();
    runs.mark_running(id, t(1_001)).await?;
    let keys = (0..units).map(key).collect::<Result<Vec<_>, _>>()?;
    runs.set_total(id, WorkSet::try_new(keys, format!("{units} test units"))?)
        .await?;
    Ok(id)
}

async fn count(runs: &Arc<dyn RunStore>, id: RunId, key: SummaryKey) -> Result<u64, TestError> {
    Ok(runs.run(id).await?.counts().get_or_zero(key))
}

contract!(
    sixteen_coalesced_writers_with_duplicates_count_each_item_once,
    |store| {
        const UNITS: usize = 480;
        const WRITERS: usize = 16;
        let id = running_run(&store, UNITS).await?;
        let runs = store.store();
        let coalescer = Arc::new(RecordCoalescer::new(runs.clone()));
        // Writer w sends items [30w, 30w + 60): every item is sent by exactly two writers,
        // in batches of one, two and three, while the other writers send theirs.
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let coalescer = coalescer.clone();
            let items: Vec<usize> = (30 * w..30 * w + 60).map(|i| i % UNITS).collect();
            tasks.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut rest = items.as_slice();
                let mut size = 1;
                while !rest.is_empty() {
                    let (now, later) = rest.split_at(size.min(rest.len()));
                    let records = now.iter().map(|i| record(*i)).collect::<Result<_, _>>()?;
                    answers.push((
                        now.len() as u64,
                        coalescer.record(id, records, t(2_000)).await?,
                    ));
                    rest = later;
                    size = size % 3 + 1;
                }
                Ok::<_, TestError>(answers)
            }));
        }
        let (mut recorded, mut duplicates, mut sent) = (0, 0, 0);
        let mut saw_all_recorded = false;
        for task in tasks {
            for (size, answer) in task.await?? {
                assert_eq!(
                    answer.recorded + answer.duplicates,
                    size,
                    "each caller's answer covers exactly its own records"
                );
                recorded += answer.recorded;
                duplicates += answer.duplicates;
                sent += size;
                saw_all_recorded |= answer.all_recorded;
            }
        }
        assert_eq!(sent, 2 * UNITS as u64);
        assert_eq!(
            recorded, UNITS as u64,
            "each item counted by exactly one caller"
        );
        assert_eq!(duplicates, UNITS as u64);
        assert!(
            saw_all_recorded,
            "the caller of the last item learns the run is whole"
        );
        assert_eq!(count(&runs, id, SummaryKey::Processed).await?, 480);
        assert_eq!(count(&runs, id, SummaryKey::Succeeded).await?, 160);
        assert_eq!(count(&runs, id, SummaryKey::Failed).await?, 160);
        assert_eq!(count(&runs, id, SummaryKey::Skipped).await?, 160);
        assert_eq!(store.ledger(id).await?.entries().count(), UNITS);
        assert_eq!(coalescer.submissions(), 16 * 30);
        assert_eq!(
            coalescer.runs_in_flight(),
            0,
            "a finished run's lane is forgotten"
        );
        let calls = coalescer.store_calls();
        if store.backend == Backend::Memory {
            // The memory store answers without waiting: little arrives while it writes.
            assert!(calls <= 16 * 30, "{calls}");
        } else {
            // While one record of the run is written, the other writers' next records arrive
            // and go together (measured: about 9 records per store call).
            assert!(calls * 2 <= 16 * 30, "{calls} store calls for 480 records");
        }
        Ok(())
    }
);

contract!(a_keyed_record_names_exactly_the_keys_it_entered, |store| {
    let id = running_run(&store, 10).await?;
    let runs = store.store();
    runs.record_items(id, vec![record(0)?], t(2_000)).await?;
    let mixed = runs
        .record_items_keyed(
            id,
            vec![record(0)?, record(3)?, record(1)?, record(3)?, record(2)?],
            t(2_001),
        )
        .await?;
    assert_eq!(mixed.fresh, vec![key(3)?, key(1)?, key(2)?]);
    assert_eq!(
        (mixed.outcome.recorded, mixed.outcome.duplicates),
        (3, 2),
        "item 0 was in the ledger, item 3 came twice"
    );
    let all_new = runs
        .record_items_keyed(id, vec![record(4)?, record(5)?], t(2_002))
        .await?;
    assert_eq!(all_new.fresh, vec![key(4)?, key(5)?]);
    let none_new = runs
        .record_items_keyed(id, vec![record(4)?, record(4)?], t(2_003))
        .await?;
    assert_eq!(none_new.fresh, Vec::<ItemKey>::new());
    assert_eq!(
        (none_new.outcome.recorded, none_new.outcome.duplicates),
        (0, 2)
    );
    assert_eq!(count(&runs, id, SummaryKey::Processed).await?, 6);
    Ok(())
});

contract!(child_jobs_count_each_job_once_in_any_status, |store| {
    use opsrun_domain::{Change, ChildJobs, Completion, RunOutcome};
    let id = running_run(&store, 10).await?;
    let runs = store.store();
    assert_eq!(runs.run(id).await?.children(), None, "not a fan-out yet");
    assert_eq!(runs.child_jobs_enqueued(id, 0, 3).await?, Change::Applied);
    assert_eq!(
        runs.child_jobs_enqueued(id, 0, 3).await?,
        Change::Unchanged,
        "announced twice"
    );
    assert_eq!(runs.child_job_finished(id, 1).await?, Change::Applied);
    assert_eq!(
        runs.child_job_finished(id, 1).await?,
        Change::Unchanged,
        "a job run again after a crash"
    );
    assert_eq!(
        runs.run(id).await?.children(),
        Some(ChildJobs {
            total: 3,
            completed: 1
        })
    );
    // A job that finished before its dispatcher announced it counts as enqueued too.
    assert_eq!(runs.child_job_finished(id, 7).await?, Change::Applied);
    // The job that recorded the last item finishes after the run completed.
    runs.complete(
        id,
        Completion::decided(RunOutcome::Cancelled, t(5_000)),
        opsrun_application::TerminalEffects { actor: None },
    )
    .await?;
    assert_eq!(runs.child_job_finished(id, 0).await?, Change::Applied);
    assert_eq!(
        runs.run(id).await?.children(),
        Some(ChildJobs {
            total: 4,
            completed: 3
        })
    );
    // A dispatch reserves its numbers after every number known (job 7 finished unannounced),
    // and the next dispatch after those, used or not.
    assert_eq!(runs.reserve_child_jobs(id, 10).await?, 8);
    assert_eq!(runs.reserve_child_jobs(id, 2).await?, 18);
    assert_eq!(
        runs.run(id).await?.children(),
        Some(ChildJobs {
            total: 4,
            completed: 3
        }),
        "a reservation is not a job"
    );
    assert!(matches!(
        runs.reserve_child_jobs(RunId::new(999_999), 1).await,
        Err(StoreError::RunNotFound(_))
    ));
    assert!(matches!(
        runs.child_job_finished(RunId::new(999_999), 0).await,
        Err(StoreError::RunNotFound(_))
    ));
    assert!(matches!(
        runs.child_jobs_enqueued(RunId::new(999_999), 0, 2).await,
        Err(StoreError::RunNotFound(_))
    ));
    Ok(())
});

/// Something holding the run's row (PostgreSQL) or the database's write lock (SQLite), as a
/// long transaction of an operator or another process does: records wait behind it.
struct HeldLock(sea_orm::DatabaseTransaction);

async fn hold(store: &TestStore, id: RunId) -> Result<HeldLock, TestError> {
    use sea_orm::{
        ConnectionTrait, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
    };
    let url = store.url.as_deref().ok_or("a SQL backend")?;
    let other = opsrun_adapters::sql::connect(url, 1).await?;
    let tx = other
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?;
    if store.backend == Backend::Postgres {
        tx.execute_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT id FROM operation_runs WHERE id = $1 FOR UPDATE",
            [id.value().into()],
        ))
        .await?;
    }
    Ok(HeldLock(tx))
}

/// Waits until a coalescer has received `n` calls (`submitted` counts them; the callers are
/// queued in that order).
async fn until_submitted(submitted: &dyn Fn() -> u64, n: u64) -> Result<(), TestError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while submitted() < n {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("only {} of {n} calls arrived", submitted()).into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Starts `callers` one by one, each after the previous one has arrived at the coalescer
/// (`submitted` counts arrivals), while a held lock keeps the first caller's write waiting;
/// then lets go. The answers, in the callers' order.
async fn queued_behind<T: Send + 'static>(
    store: &TestStore,
    id: RunId,
    submitted: &dyn Fn() -> u64,
    callers: Vec<futures::future::BoxFuture<'static, T>>,
) -> Result<Vec<T>, TestError> {
    let lock = hold(store, id).await?;
    let before = submitted();
    let mut started = Vec::new();
    for (n, caller) in callers.into_iter().enumerate() {
        started.push(tokio::spawn(caller));
        until_submitted(submitted, before + n as u64 + 1).await?;
        if n == 0 {
            // The first caller is writing alone (and waits for the lock) before the others
            // come.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    lock.0.rollback().await?;
    let mut answers = Vec::new();
    for caller in started {
        answers.push(caller.await?);
    }
    Ok(answers)
}

/// [`queued_behind`] for records.
async fn records_queued_behind(
    store: &TestStore,
    coalescer: &Arc<RecordCoalescer>,
    id: RunId,
    batches: Vec<Vec<ItemRecord>>,
) -> Result<Vec<Result<RecordOutcome, StoreError>>, TestError> {
    let callers = batches
        .into_iter()
        .map(|records| {
            let caller = coalescer.clone();
            Box::pin(async move { caller.record(id, records, t(3_000)).await }) as _
        })
        .collect();
    queued_behind(store, id, &|| coalescer.submissions(), callers).await
}

fn recorded(recorded: u64, duplicates: u64, all_recorded: bool) -> String {
    format!(
        "{:?}",
        Ok::<_, ()>(RecordOutcome {
            recorded,
            duplicates,
            all_recorded
        })
    )
}

/// Callers that arrive while a write is under way are written together by one store call, and
/// each gets its own answer; when that combined call is refused (an item outside the work set),
/// each caller is written on its own, so only the caller of that item is refused.
async fn callers_queued_behind_a_write_share_one_store_call(
    store: TestStore,
) -> Result<(), TestError> {
    let id = running_run(&store, 13).await?;
    let coalescer = Arc::new(RecordCoalescer::new(store.store()));
    let r = |i| record(i);

    // Round one: the first caller alone, then four callers in one call; the fourth sends an
    // item the second already sent.
    let answers = records_queued_behind(
        &store,
        &coalescer,
        id,
        vec![
            vec![r(0)?],
            vec![r(1)?, r(2)?],
            vec![r(3)?],
            vec![r(2)?, r(4)?],
            vec![r(5)?],
        ],
    )
    .await?;
    let shown: Vec<String> = answers.iter().map(|a| format!("{a:?}")).collect();
    assert_eq!(
        shown,
        vec![
            recorded(1, 0, false),
            recorded(2, 0, false),
            recorded(1, 0, false),
            recorded(1, 1, false),
            recorded(1, 0, false),
        ]
    );
    assert_eq!(
        coalescer.store_calls(),
        2,
        "one call alone, one for the other four"
    );

    // Round two: the combined call is refused for the third caller's item outside the work
    // set; each caller is then written on its own.
    let outside = ItemRecord::succeeded(ItemKey::parse("not-in-the-work-set")?);
    let answers = records_queued_behind(
        &store,
        &coalescer,
        id,
        vec![
            vec![r(6)?],
            vec![r(7)?],
            vec![outside],
            vec![r(7)?, r(8)?],
            vec![r(9)?],
        ],
    )
    .await?;
    let shown: Vec<String> = answers
        .iter()
        .map(|a| match a {
            Err(StoreError::Rule(RunError::ItemNotInWorkSet { item_key })) => {
                format!("refused {item_key}")
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            recorded(1, 0, false),
            recorded(1, 0, false),
            "refused not-in-the-work-set".to_owned(),
            recorded(1, 1, false),
            recorded(1, 0, false),
        ]
    );
    assert_eq!(
        coalescer.store_calls(),
        2 + 1 + 1 + 4,
        "one alone, one refused combined call, then the four on their own"
    );

    // Round three: the combined call makes the run whole. As if written one after another,
    // only the caller whose item made it whole, and the one after it, learn so: one caller,
    // not three, goes on to complete a fan-out's parent.
    let answers = records_queued_behind(
        &store,
        &coalescer,
        id,
        vec![vec![r(10)?], vec![r(11)?], vec![r(12)?], vec![r(11)?]],
    )
    .await?;
    let shown: Vec<String> = answers.iter().map(|a| format!("{a:?}")).collect();
    assert_eq!(
        shown,
        vec![
            recorded(1, 0, false),
            recorded(1, 0, false),
            recorded(1, 0, true),
            recorded(0, 1, true),
        ]
    );
    assert_eq!(coalescer.store_calls(), 8 + 2);
    let runs = store.store();
    assert_eq!(count(&runs, id, SummaryKey::Processed).await?, 13);
    assert_eq!(store.ledger(id).await?.entries().count(), 13);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_queued_behind_a_write_share_one_store_call_on_sqlite() -> Result<(), TestError> {
    crate::on_backend(
        Backend::Sqlite,
        callers_queued_behind_a_write_share_one_store_call,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_queued_behind_a_write_share_one_store_call_on_postgres() -> Result<(), TestError> {
    crate::on_backend(
        Backend::Postgres,
        callers_queued_behind_a_write_share_one_store_call,
    )
    .await
}

type Claims = Result<Vec<Result<Claim, RunError>>, String>;

/// Claims that arrive while a claim is under way are one store call; each caller gets the
/// answers of its own keys (a key outside the work set is refused alone, a recorded one is
/// already recorded), and a paused or cancelled run answers every key of every caller.
async fn claims_queued_behind_a_claim_share_one_store_call(
    store: TestStore,
) -> Result<(), TestError> {
    let id = running_run(&store, 6).await?;
    let runs = store.store();
    runs.record_items(id, vec![record(0)?], t(2_000)).await?;
    let coalescer = Arc::new(ClaimCoalescer::new(runs.clone()));
    let queued = |batches: Vec<Vec<ItemKey>>| {
        let callers = batches
            .into_iter()
            .map(|keys| {
                let caller = coalescer.clone();
                Box::pin(async move {
                    caller
                        .claim(id, keys, t(3_000))
                        .await
                        .map_err(|e| e.to_string())
                }) as _
            })
            .collect();
        let store = &store;
        let coalescer = &coalescer;
        async move { queued_behind(store, id, &|| coalescer.submissions(), callers).await }
    };
    let outside = ItemKey::parse("not-in-the-work-set")?;
    let answers: Vec<Claims> = queued(vec![
        vec![key(1)?],
        vec![key(2)?, key(0)?],
        vec![outside.clone()],
        vec![key(2)?, key(3)?],
    ])
    .await?;
    assert_eq!(
        answers,
        vec![
            Ok(vec![Ok(Claim::Claimed)]),
            Ok(vec![Ok(Claim::Claimed), Ok(Claim::AlreadyRecorded)]),
            Ok(vec![Err(RunError::ItemNotInWorkSet { item_key: outside })]),
            Ok(vec![Ok(Claim::Claimed), Ok(Claim::Claimed)]),
        ]
    );
    assert_eq!(
        coalescer.store_calls(),
        2,
        "one call alone, one for the other three"
    );

    runs.pause(id, t(4_000)).await?;
    let answers: Vec<Claims> = queued(vec![vec![key(4)?], vec![key(5)?, key(0)?]]).await?;
    assert_eq!(
        answers,
        vec![
            Ok(vec![Ok(Claim::Paused)]),
            Ok(vec![Ok(Claim::Paused), Ok(Claim::Paused)]),
        ]
    );
    runs.resume(id, t(5_000)).await?;
    runs.complete(
        id,
        opsrun_domain::Completion::decided(opsrun_domain::RunOutcome::Cancelled, t(6_000)),
        opsrun_application::TerminalEffects { actor: None },
    )
    .await?;
    let answers: Vec<Claims> = queued(vec![vec![key(4)?], vec![key(5)?, key(1)?]]).await?;
    let refused = || Err(RunError::RunAlreadyCompleted);
    assert_eq!(
        answers,
        vec![Ok(vec![refused()]), Ok(vec![refused(), refused()])]
    );
    assert_eq!(coalescer.runs_in_flight(), 0, "every lane was forgotten");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_queued_behind_a_claim_share_one_store_call_on_sqlite() -> Result<(), TestError> {
    crate::on_backend(
        Backend::Sqlite,
        claims_queued_behind_a_claim_share_one_store_call,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_queued_behind_a_claim_share_one_store_call_on_postgres() -> Result<(), TestError> {
    crate::on_backend(
        Backend::Postgres,
        claims_queued_behind_a_claim_share_one_store_call,
    )
    .await
}
