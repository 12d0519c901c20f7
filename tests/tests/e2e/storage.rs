//! The storage contract: the same cases on the in-memory store, SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use opsrun_application::ports::{CreateRun, LedgerQuery, RunQuery, TenantScope};
use opsrun_application::testing::{ManualClock, MemoryQueue};
use opsrun_application::{OperationRunService, RunParams, StoreError, TerminalEffects, reasons};
use opsrun_domain::{
    AuxDeltas, AuxiliaryKey, Change, Claim, Completion, ItemKey, ItemOutcome, ItemRecord,
    OperationRunProgressContract, ProgressMode, ReasonCode, RecordOutcome, RunError, RunId,
    RunOutcome, RunStatus, SummaryKey, Timestamp, WorkSet,
};
use opsrun_tests::{TestError, TestStore};

use crate::contract;

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn key(k: &str) -> Result<ItemKey, TestError> {
    Ok(ItemKey::parse(k)?)
}

fn keys(n: usize) -> Result<Vec<ItemKey>, TestError> {
    (0..n).map(|i| key(&format!("item-{i:05}"))).collect()
}

fn work_set(units: &[ItemKey]) -> Result<WorkSet, TestError> {
    Ok(WorkSet::try_new(
        units.to_vec(),
        format!("{} test units", units.len()),
    )?)
}

fn rule<T: std::fmt::Debug>(result: Result<T, StoreError>) -> Result<RunError, TestError> {
    match result {
        Err(StoreError::Rule(rule)) => Ok(rule),
        other => Err(format!("expected a rule refusal, got {other:?}").into()),
    }
}

async fn start(
    store: &TestStore,
    tenant: &str,
    params: RunParams,
    initiator: bool,
) -> Result<RunId, TestError> {
    let tenant = store.tenant(tenant).await?;
    let user = if initiator {
        Some(store.user("ops@example.com").await?.id)
    } else {
        None
    };
    let started = store
        .store()
        .create_run(CreateRun {
            workspace: store.workspace(),
            tenant: tenant.id,
            params,
            initiator: user,
            parent: None,
            retry_of: None,
            at: t(1_000),
        })
        .await?;
    Ok(started.run.id())
}

fn restore_params() -> RunParams {
    RunParams::BackupSetRestore {
        backup_set_id: 1,
        item_ids: None,
    }
}

contract!(
    create_run_returns_the_active_run_with_the_same_identity,
    |store| {
        let tenant = store.tenant("contoso").await?;
        let new = |params| CreateRun {
            workspace: store.workspace(),
            tenant: tenant.id,
            params,
            initiator: None,
            parent: None,
            retry_of: None,
            at: t(5),
        };
        let runs = store.store();

        let first = runs.create_run(new(RunParams::BaselineCapture)).await?;
        let again = runs.create_run(new(RunParams::BaselineCapture)).await?;
        let other = runs
            .create_run(new(RunParams::BaselineCompare { baseline_id: 1 }))
            .await?;
        runs.complete(
            first.run.id(),
            Completion::decided(RunOutcome::Cancelled, t(6)),
            TerminalEffects { actor: None },
        )
        .await?;
        let after = runs.create_run(new(RunParams::BaselineCapture)).await?;

        assert!(!first.reused);
        assert!(again.reused);
        assert_eq!(again.run.id(), first.run.id());
        assert!(!other.reused);
        assert!(!after.reused);
        assert_ne!(after.run.id(), first.run.id());
        assert_eq!(first.run.status(), RunStatus::Queued);
        assert_eq!(
            runs.run_params(first.run.id()).await?,
            RunParams::BaselineCapture
        );
        Ok(())
    }
);

contract!(concurrent_starts_of_one_identity_create_one_run, |store| {
    let tenant = store.tenant("contoso").await?;
    let runs = store.store();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let runs = runs.clone();
        let new = CreateRun {
            workspace: store.workspace(),
            tenant: tenant.id,
            params: RunParams::EvidenceSnapshotGenerate { dimensions: None },
            initiator: None,
            parent: None,
            retry_of: None,
            at: t(5),
        };
        tasks.push(tokio::spawn(async move { runs.create_run(new).await }));
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for task in tasks {
        let started = task.await??;
        ids.insert(started.run.id());
        created += usize::from(!started.reused);
    }

    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);
    Ok(())
});

contract!(the_total_is_frozen_once_with_its_work_set, |store| {
    let id = start(&store, "contoso", restore_params(), false).await?;
    let runs = store.store();
    let units = keys(3)?;

    let first = runs.set_total(id, work_set(&units)?).await?;
    let mut reordered = units.clone();
    reordered.reverse();
    let same = runs.set_total(id, work_set(&reordered)?).await?;
    let bigger = rule(runs.set_total(id, work_set(&keys(4)?)?).await)?;
    let other = rule(
        runs.set_total(
            id,
            work_set(&[units[0].clone(), units[1].clone(), key("zz")?])?,
        )
        .await,
    )?;

    assert_eq!(first, Change::Applied);
    assert_eq!(same, Change::Unchanged);
    assert_eq!(
        bigger,
        RunError::TotalAlreadySet {
            current: 3,
            requested: 4
        }
    );
    assert_eq!(other, RunError::WorkSetAlreadyFrozen);
    let frozen = runs.work_set(id).await?.ok_or("no work set")?;
    assert_eq!(frozen.units(), units.as_slice());
    assert_eq!(frozen.basis(), "3 test units");
    let run = runs.run(id).await?;
    assert_eq!(run.counts().get(SummaryKey::Total), Some(3));
    assert_eq!(run.counts().get(SummaryKey::Processed), Some(0));
    assert_eq!(run.basis(), Some("3 test units"));
    Ok(())
});

contract!(
    items_are_counted_once_with_their_outcomes_and_deltas,
    |store| {
        let id = start(&store, "contoso", restore_params(), false).await?;
        let runs = store.store();
        let units = keys(4)?;
        runs.set_total(id, work_set(&units)?).await?;
        let failed = ReasonCode::parse("restore.item_failed")?;
        let deltas = AuxDeltas::new()
            .with(AuxiliaryKey::Created, 2)
            .with(AuxiliaryKey::Items, 5);

        let batch = runs
            .record_items(
                id,
                vec![
                    ItemRecord::succeeded(units[0].clone()).with_deltas(deltas.clone()),
                    ItemRecord::failed(units[1].clone(), failed.clone()),
                    ItemRecord::succeeded(units[0].clone()).with_deltas(deltas.clone()),
                ],
                t(10),
            )
            .await?;
        let again = runs
            .record_items(
                id,
                vec![
                    ItemRecord::skipped(units[1].clone(), None),
                    ItemRecord::skipped(units[2].clone(), None),
                ],
                t(11),
            )
            .await?;
        let outside = rule(
            runs.record_items(id, vec![ItemRecord::succeeded(key("nope")?)], t(12))
                .await,
        )?;

        assert_eq!(
            batch,
            RecordOutcome {
                recorded: 2,
                duplicates: 1,
                all_recorded: false
            }
        );
        assert_eq!(
            again,
            RecordOutcome {
                recorded: 1,
                duplicates: 1,
                all_recorded: false
            }
        );
        assert_eq!(
            outside,
            RunError::ItemNotInWorkSet {
                item_key: key("nope")?
            }
        );
        let run = runs.run(id).await?;
        let counts: Vec<_> = run.counts().iter().map(|(k, v)| (k.key(), v)).collect();
        assert_eq!(
            counts,
            vec![
                ("total", 4),
                ("processed", 3),
                ("succeeded", 1),
                ("failed", 1),
                ("skipped", 1),
                ("created", 2),
                ("items", 5)
            ]
        );
        assert_eq!(run.heartbeat_at(), Some(t(11)));
        let ledger = store.ledger(id).await?;
        assert_eq!(ledger.len(), 3);
        let entry = ledger.get(&units[1]).ok_or("missing entry")?;
        assert_eq!(entry.outcome, ItemOutcome::Failed);
        assert_eq!(entry.reason.as_ref(), Some(&failed));
        assert_eq!(entry.recorded_at, t(10));
        assert_eq!(ledger.recount(), *run.counts());
        // The record that makes processed == total says so (a fan-out's last child completes
        // the parent without another read); a duplicate after it says so too.
        let last = runs
            .record_items(id, vec![ItemRecord::succeeded(units[3].clone())], t(13))
            .await?;
        let repeat = runs
            .record_items(id, vec![ItemRecord::succeeded(units[3].clone())], t(14))
            .await?;
        assert_eq!(
            (last.recorded, last.all_recorded),
            (1, true),
            "the last unit"
        );
        assert_eq!(
            (repeat.duplicates, repeat.all_recorded),
            (1, true),
            "its retry"
        );
        Ok(())
    }
);

contract!(a_completed_run_refuses_every_change, |store| {
    let id = start(&store, "contoso", restore_params(), true).await?;
    let runs = store.store();
    let units = keys(2)?;
    runs.set_total(id, work_set(&units)?).await?;
    runs.record_items(id, vec![ItemRecord::succeeded(units[0].clone())], t(5))
        .await?;
    let done = runs
        .complete(
            id,
            Completion::derived(t(6)),
            TerminalEffects { actor: None },
        )
        .await?;
    let before = runs.run(id).await?;

    let late = rule(
        runs.record_items(id, vec![ItemRecord::succeeded(units[1].clone())], t(7))
            .await,
    )?;
    let duplicate = rule(
        runs.record_items(id, vec![ItemRecord::succeeded(units[0].clone())], t(7))
            .await,
    )?;
    let increment = rule(
        runs.increment(id, key("k")?, AuxDeltas::new().with(AuxiliaryKey::Items, 1))
            .await,
    )?;
    let running = rule(runs.mark_running(id, t(8)).await)?;
    let beat = rule(runs.heartbeat(id, t(9)).await)?;
    let again = runs
        .complete(
            id,
            Completion::derived(t(10)),
            TerminalEffects { actor: None },
        )
        .await?;

    assert!(done.won);
    assert_eq!(done.run.outcome(), RunOutcome::PartiallySucceeded);
    for refusal in [late, duplicate, increment, running, beat] {
        assert_eq!(refusal, RunError::RunAlreadyCompleted);
    }
    assert!(!again.won);
    assert_eq!(runs.run(id).await?, before);
    assert_eq!(store.ledger(id).await?.len(), 1);
    assert_eq!(runs.audit_events(id).await?.len(), 1);
    let user = store.user("ops@example.com").await?;
    assert_eq!(runs.notifications(user.id).await?.len(), 1);
    Ok(())
});

contract!(
    racing_completions_have_one_winner_one_audit_event_one_notification,
    |store| {
        let id = start(&store, "contoso", RunParams::BaselineCapture, true).await?;
        let runs = store.store();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                let completion = if i % 2 == 0 {
                    Completion::derived(t(100 + i))
                } else {
                    Completion::decided(RunOutcome::Cancelled, t(100 + i))
                };
                runs.complete(id, completion, TerminalEffects { actor: None })
                    .await
            }));
        }
        let mut wins = 0;
        for task in tasks {
            wins += usize::from(task.await??.won);
        }

        assert_eq!(wins, 1);
        assert_eq!(runs.audit_events(id).await?.len(), 1);
        let user = store.user("ops@example.com").await?;
        assert_eq!(runs.notifications(user.id).await?.len(), 1);
        Ok(())
    }
);

contract!(
    sixteen_writers_on_overlapping_keys_count_each_item_once,
    |store| {
        let id = start(&store, "contoso", restore_params(), true).await?;
        let runs = store.store();
        let units = keys(200)?;
        runs.set_total(id, work_set(&units)?).await?;
        runs.mark_running(id, t(2)).await?;
        let service = OperationRunService::new(
            runs.clone(),
            Arc::new(MemoryQueue::new()),
            Arc::new(ManualClock::at(10)),
        );
        let stop = Arc::new(AtomicBool::new(false));
        // A watcher checks the bound at every instant it can observe.
        let watcher = {
            let runs = runs.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut worst = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let run = runs.run(id).await?;
                    let counts = run.counts();
                    let processed = counts.get_or_zero(SummaryKey::Processed);
                    if processed > counts.get_or_zero(SummaryKey::Total) {
                        return Err::<u64, TestError>("processed passed total".into());
                    }
                    worst = worst.max(processed);
                    tokio::task::yield_now().await;
                }
                Ok(worst)
            })
        };
        let mut tasks = Vec::new();
        for writer in 0..16usize {
            let service = service.clone();
            // Each writer takes an overlapping slice of the items, in small batches.
            let mine: Vec<ItemKey> = units.iter().skip(writer * 10).take(60).cloned().collect();
            tasks.push(tokio::spawn(async move {
                let mut completions = 0;
                for chunk in mine.chunks(3) {
                    let records = chunk.iter().cloned().map(ItemRecord::succeeded).collect();
                    match service.record_items(id, records).await {
                        Ok(_) => {}
                        Err(e) if e.rule() == Some(&RunError::RunAlreadyCompleted) => {}
                        Err(e) => return Err::<usize, TestError>(e.into()),
                    }
                    if service.maybe_complete_bulk_run(id).await?.is_some() {
                        completions += 1;
                    }
                }
                Ok(completions)
            }));
        }
        let mut completions = 0;
        for task in tasks {
            completions += task.await??;
        }
        // The first 10 writers cover items 0..150 with overlaps; record the rest once.
        let rest: Vec<ItemRecord> = units.iter().cloned().map(ItemRecord::succeeded).collect();
        service.record_items(id, rest).await.ok();
        if service.maybe_complete_bulk_run(id).await?.is_some() {
            completions += 1;
        }
        stop.store(true, Ordering::SeqCst);
        watcher.await??;

        let run = runs.run(id).await?;
        assert_eq!(run.counts().get(SummaryKey::Processed), Some(200));
        assert_eq!(run.counts().get(SummaryKey::Succeeded), Some(200));
        assert_eq!(store.ledger(id).await?.len(), 200);
        assert_eq!(completions, 1);
        assert_eq!(run.outcome(), RunOutcome::Succeeded);
        assert_eq!(runs.audit_events(id).await?.len(), 1);
        let user = store.user("ops@example.com").await?;
        assert_eq!(runs.notifications(user.id).await?.len(), 1);
        Ok(())
    }
);

contract!(auxiliary_increments_apply_once_per_key, |store| {
    let id = start(
        &store,
        "contoso",
        RunParams::EvidenceSnapshotGenerate { dimensions: None },
        false,
    )
    .await?;
    let runs = store.store();
    let deltas = AuxDeltas::new().with(AuxiliaryKey::Tenants, 3);

    let first = runs.increment(id, key("tenants")?, deltas.clone()).await?;
    let again = runs.increment(id, key("tenants")?, deltas).await?;

    assert_eq!(first, Change::Applied);
    assert_eq!(again, Change::Unchanged);
    let run = runs.run(id).await?;
    assert_eq!(run.counts().get(SummaryKey::Tenants), Some(3));
    assert_eq!(run.counts().get(SummaryKey::Processed), None);
    Ok(())
});

contract!(reconcile_repairs_drift_from_the_ledger, |store| {
    let id = start(&store, "contoso", restore_params(), false).await?;
    let runs = store.store();
    let units = keys(3)?;
    runs.set_total(id, work_set(&units)?).await?;
    runs.record_items(id, vec![ItemRecord::succeeded(units[0].clone())], t(4))
        .await?;
    store
        .write_legacy(
            id,
            &[("processed", Some(0)), ("succeeded", None)],
            "running",
        )
        .await?;

    let drift = runs.reconcile_counts(id).await?.ok_or("no drift found")?;
    let again = runs.reconcile_counts(id).await?;

    assert_eq!(drift.before.get(SummaryKey::Processed), Some(0));
    assert_eq!(drift.after.get(SummaryKey::Processed), Some(1));
    assert_eq!(drift.after.get(SummaryKey::Succeeded), Some(1));
    assert_eq!(again, None);
    assert_eq!(
        runs.run(id).await?.counts().get(SummaryKey::Processed),
        Some(1)
    );
    Ok(())
});

contract!(
    a_batch_larger_than_one_insert_counts_each_item_once,
    |store| {
        // 900 records (a repeat inside, and 100 already recorded) cross the store's 400-row
        // insert chunks and PostgreSQL's one-statement limit: the transactional path in chunks.
        let id = start(&store, "contoso", restore_params(), false).await?;
        let runs = store.store();
        let units = keys(1_000)?;
        runs.set_total(id, work_set(&units)?).await?;
        runs.record_items(
            id,
            units[..100]
                .iter()
                .cloned()
                .map(ItemRecord::succeeded)
                .collect(),
            t(5),
        )
        .await?;
        let mut batch: Vec<ItemRecord> = units[..899]
            .iter()
            .cloned()
            .map(|k| ItemRecord::skipped(k, None))
            .collect();
        batch.push(ItemRecord::skipped(units[500].clone(), None));

        let outcome = runs.record_items(id, batch, t(6)).await?;
        let last = runs
            .record_items(
                id,
                units[899..]
                    .iter()
                    .cloned()
                    .map(ItemRecord::succeeded)
                    .collect(),
                t(7),
            )
            .await?;

        assert_eq!(
            outcome,
            RecordOutcome {
                recorded: 799,
                duplicates: 101,
                all_recorded: false
            }
        );
        assert_eq!((last.recorded, last.all_recorded), (101, true));
        let run = runs.run(id).await?;
        assert_eq!(run.counts().get(SummaryKey::Processed), Some(1_000));
        assert_eq!(run.counts().get(SummaryKey::Succeeded), Some(201));
        assert_eq!(run.counts().get(SummaryKey::Skipped), Some(799));
        assert_eq!(store.ledger(id).await?.len(), 1_000);
        Ok(())
    }
);

contract!(
    a_record_refused_by_the_run_guard_enters_nothing_in_the_ledger,
    |store| {
        // The rows are entered before the run's guard is evaluated (one statement on
        // PostgreSQL, one transaction on SQLite): a refusal must take them back out.
        let id = start(&store, "contoso", restore_params(), false).await?;
        let runs = store.store();
        let units = keys(3)?;
        runs.set_total(id, work_set(&units)?).await?;
        store
            .write_legacy(id, &[("processed", Some(3))], "running")
            .await?;
        let over_total = rule(
            runs.record_items(id, vec![ItemRecord::succeeded(units[0].clone())], t(5))
                .await,
        )?;
        store
            .write_legacy(
                id,
                &[("processed", Some(0)), ("succeeded", Some(i64::MAX))],
                "running",
            )
            .await?;
        let overflow = rule(
            runs.record_items(
                id,
                vec![
                    ItemRecord::failed(units[1].clone(), ReasonCode::parse("x.failed")?),
                    ItemRecord::succeeded(units[2].clone()),
                ],
                t(6),
            )
            .await,
        )?;

        assert_eq!(
            over_total,
            RunError::ProcessedExceedsTotal {
                processed: 3,
                adding: 1,
                total: 3
            }
        );
        assert_eq!(
            overflow,
            RunError::CountOverflow {
                key: SummaryKey::Succeeded
            }
        );
        assert_eq!(store.ledger(id).await?.len(), 0);
        let run = runs.run(id).await?;
        assert_eq!(run.counts().get(SummaryKey::Processed), Some(0));
        assert_eq!(run.counts().get(SummaryKey::Failed), None);
        assert_eq!(run.heartbeat_at(), None);
        Ok(())
    }
);

contract!(
    legacy_rows_that_break_invariants_read_back_as_anomalies,
    |store| {
        let over = start(&store, "contoso", restore_params(), false).await?;
        store
            .write_legacy(
                over,
                &[("total", Some(5)), ("processed", Some(9))],
                "running",
            )
            .await?;
        let negative = start(&store, "fabrikam", restore_params(), false).await?;
        store
            .write_legacy(
                negative,
                &[("total", Some(5)), ("processed", Some(-2))],
                "running",
            )
            .await?;
        let unknown = start(&store, "northwind", restore_params(), false).await?;
        store
            .write_legacy(
                unknown,
                &[("total", Some(5)), ("processed", Some(1))],
                "paused",
            )
            .await?;
        let runs = store.store();

        for id in [over, negative, unknown] {
            let run = runs.run(id).await?;
            let view = OperationRunProgressContract::resolve(&run);

            assert_eq!(view.mode(), ProgressMode::Activity, "run {id}");
            assert!(view.anomaly, "run {id}");
            assert_eq!(view.percent(), None);
        }
        Ok(())
    }
);

contract!(
    the_ledger_pages_by_key_in_byte_order_and_filters_by_outcome,
    |store| {
        let id = start(&store, "contoso", restore_params(), false).await?;
        let runs = store.store();
        let units: Vec<ItemKey> = ["b", "B", "a", "a-2", "Z"]
            .iter()
            .map(|k| key(k))
            .collect::<Result<_, _>>()?;
        runs.set_total(id, work_set(&units)?).await?;
        let failed = ReasonCode::parse("x.failed")?;
        runs.record_items(
            id,
            units
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    if i % 2 == 0 {
                        ItemRecord::failed(k.clone(), failed.clone())
                    } else {
                        ItemRecord::succeeded(k.clone())
                    }
                })
                .collect(),
            t(3),
        )
        .await?;
        let page = |after: Option<ItemKey>, outcome: Option<ItemOutcome>| LedgerQuery {
            run: id,
            outcome,
            after,
            limit: 2,
        };

        let first = runs.ledger_entries(page(None, None)).await?;
        let second = runs
            .ledger_entries(page(Some(first[1].0.clone()), None))
            .await?;
        let failed_only = runs
            .ledger_entries(LedgerQuery {
                limit: 10,
                ..page(None, Some(ItemOutcome::Failed))
            })
            .await?;

        let names = |entries: &[(ItemKey, opsrun_domain::LedgerEntry)]| {
            entries
                .iter()
                .map(|(k, _)| k.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&first), vec!["B", "Z"]);
        assert_eq!(names(&second), vec!["a", "a-2"]);
        assert_eq!(names(&failed_only), vec!["Z", "a", "b"]);
        Ok(())
    }
);

contract!(queries_serve_the_feed_and_the_collection, |store| {
    let a = start(&store, "contoso", RunParams::BaselineCapture, false).await?;
    let b = start(
        &store,
        "contoso",
        RunParams::EvidenceSnapshotGenerate { dimensions: None },
        true,
    )
    .await?;
    let c = start(&store, "fabrikam", RunParams::BaselineCapture, false).await?;
    let runs = store.store();
    let contoso = opsrun_domain::Slug::parse("contoso")?;
    store.tenant("northwind").await?;
    runs.complete(
        a,
        Completion::decided(RunOutcome::Cancelled, t(2_000)),
        TerminalEffects { actor: None },
    )
    .await?;
    let tenant_a = runs.run(a).await?.tenant();

    let feed_recent = runs.activity(store.workspace(), &contoso, t(1_500)).await?;
    let feed_later = runs.activity(store.workspace(), &contoso, t(2_500)).await?;
    let quiet = runs
        .activity(
            store.workspace(),
            &opsrun_domain::Slug::parse("northwind")?,
            t(0),
        )
        .await?;
    let unknown = runs
        .activity(
            store.workspace(),
            &opsrun_domain::Slug::parse("nowhere")?,
            t(0),
        )
        .await;
    let all = runs
        .list_runs(RunQuery {
            workspace: store.workspace(),
            scope: TenantScope::All,
            tenant: None,
            operation_type: None,
            status: None,
            outcome: None,
            before: None,
            created_since: None,
            top_level_only: true,
            limit: 10,
        })
        .await?;
    // Created at or after: the boundary is inclusive on every store.
    let since = |at: i64| RunQuery {
        workspace: store.workspace(),
        scope: TenantScope::All,
        tenant: None,
        operation_type: None,
        status: None,
        outcome: None,
        before: None,
        created_since: Some(t(at)),
        top_level_only: true,
        limit: 10,
    };
    let created_then = runs.list_runs(since(1_000)).await?;
    let created_after = runs.list_runs(since(1_001)).await?;
    let scoped = runs
        .list_runs(RunQuery {
            workspace: store.workspace(),
            scope: TenantScope::Only(BTreeSet::from([tenant_a])),
            tenant: None,
            operation_type: None,
            status: Some(RunStatus::Queued),
            outcome: None,
            before: Some(c),
            created_since: None,
            top_level_only: true,
            limit: 10,
        })
        .await?;
    let active: Vec<RunId> = runs.active_runs().await?.iter().map(|r| r.id()).collect();

    let ids = |list: &[opsrun_application::ports::NamedRun]| {
        list.iter().map(|r| r.run.id()).collect::<Vec<_>>()
    };
    let names = |list: &[opsrun_application::ports::NamedRun]| {
        list.iter()
            .map(|r| (r.tenant.to_string(), r.initiator.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&feed_recent.runs), vec![b, a]);
    assert_eq!(feed_recent.tenant.id, tenant_a);
    assert_eq!(feed_recent.tenant.slug, contoso);
    assert_eq!(ids(&feed_later.runs), vec![b]);
    assert_eq!(
        names(&feed_later.runs),
        vec![("contoso".to_owned(), Some("ops@example.com".to_owned()))]
    );
    assert!(
        quiet.runs.is_empty(),
        "a tenant without runs has an empty feed"
    );
    assert_eq!(quiet.tenant.slug.as_str(), "northwind");
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
    assert_eq!(ids(&all), vec![c, b, a]);
    assert_eq!(
        names(&all),
        vec![
            ("fabrikam".to_owned(), None),
            ("contoso".to_owned(), Some("ops@example.com".to_owned())),
            ("contoso".to_owned(), None)
        ]
    );
    assert_eq!(ids(&scoped), vec![b]);
    assert_eq!(ids(&created_then), vec![c, b, a]);
    assert!(created_after.is_empty());
    assert_eq!(active, vec![b, c]);
    assert!(runs.children(a).await?.is_empty());
    Ok(())
});

contract!(stages_move_forward_only, |store| {
    let id = start(&store, "contoso", RunParams::BaselineCapture, false).await?;
    let runs = store.store();
    let phases = opsrun_domain::Phases::try_new(vec![
        opsrun_domain::Phase::try_new("one", "One")?,
        opsrun_domain::Phase::try_new("two", "Two")?,
    ])?;

    let declared = runs.declare_phases(id, phases.clone()).await?;
    let redeclared = runs.declare_phases(id, phases).await?;
    let entered = runs.enter_phase(id, "two".into(), t(1_500)).await?;
    let back = rule(runs.enter_phase(id, "one".into(), t(1_600)).await)?;
    let total = rule(runs.set_total(id, work_set(&keys(1)?)?).await)?;

    assert_eq!(
        (declared, redeclared, entered),
        (Change::Applied, Change::Unchanged, Change::Applied)
    );
    assert_eq!(
        back,
        RunError::PhaseRegressed {
            from: "two".into(),
            to: "one".into()
        }
    );
    assert_eq!(total, RunError::StagedRunHasNoTotal);
    let view = OperationRunProgressContract::resolve(&runs.run(id).await?);
    assert_eq!(view.phase().map(|p| (p.index, p.count)), Some((2, 2)));
    Ok(())
});

contract!(
    a_cancel_counts_the_claimed_items_in_flight_and_refuses_later_claims,
    |store| {
        let id = start(&store, "contoso", restore_params(), true).await?;
        let runs = store.store();
        let units = keys(4)?;
        runs.set_total(id, work_set(&units)?).await?;
        runs.mark_running(id, t(2)).await?;

        assert_eq!(
            runs.claim_item(id, units[0].clone(), t(3)).await?,
            Claim::Claimed
        );
        assert_eq!(
            runs.claim_item(id, units[1].clone(), t(3)).await?,
            Claim::Claimed
        );
        assert_eq!(
            runs.claim_item(id, units[1].clone(), t(4)).await?,
            Claim::Claimed
        );
        runs.record_items(id, vec![ItemRecord::succeeded(units[0].clone())], t(5))
            .await?;
        assert_eq!(
            runs.claim_item(id, units[0].clone(), t(6)).await?,
            Claim::AlreadyRecorded
        );
        let outside = rule(runs.claim_item(id, key("not-a-unit")?, t(6)).await)?;
        assert_eq!(
            outside,
            RunError::ItemNotInWorkSet {
                item_key: key("not-a-unit")?
            }
        );

        let cancel = Completion::decided(RunOutcome::Cancelled, t(7))
            .settling_in_flight(reasons::RUN_CANCELLED_IN_FLIGHT);
        let done = runs
            .complete(id, cancel, TerminalEffects { actor: None })
            .await?;

        assert!(done.won);
        let run = runs.run(id).await?;
        assert_eq!(run, done.run);
        assert_eq!(run.outcome(), RunOutcome::Cancelled);
        assert_eq!(run.counts().get(SummaryKey::Total), Some(4));
        assert_eq!(run.counts().get(SummaryKey::Processed), Some(2));
        assert_eq!(run.counts().get(SummaryKey::Succeeded), Some(1));
        assert_eq!(run.counts().get(SummaryKey::Skipped), Some(1));
        let ledger = store.ledger(id).await?;
        assert_eq!(ledger.len(), 2);
        let in_flight = ledger.get(&units[1]).ok_or("in-flight item not recorded")?;
        assert_eq!(in_flight.outcome, ItemOutcome::Skipped);
        assert_eq!(in_flight.reason, Some(reasons::RUN_CANCELLED_IN_FLIGHT));
        assert_eq!(ledger.recount(), *run.counts());
        for late in [
            rule(runs.claim_item(id, units[2].clone(), t(8)).await)?,
            rule(
                runs.record_items(id, vec![ItemRecord::succeeded(units[1].clone())], t(8))
                    .await,
            )?,
        ] {
            assert_eq!(late, RunError::RunAlreadyCompleted);
        }
        Ok(())
    }
);

contract!(
    claims_racing_a_cancel_are_each_counted_or_refused,
    |store| {
        let id = start(&store, "contoso", restore_params(), true).await?;
        let runs = store.store();
        let units = keys(120)?;
        runs.set_total(id, work_set(&units)?).await?;
        runs.mark_running(id, t(2)).await?;
        // Eight claimers walk disjoint stripes of the work set while a cancel lands among them.
        let mut claimers = Vec::new();
        for stripe in 0..8 {
            let runs = runs.clone();
            let mine: Vec<ItemKey> = units.iter().skip(stripe).step_by(8).cloned().collect();
            claimers.push(tokio::spawn(async move {
                let mut claimed = Vec::new();
                for unit in mine {
                    match runs.claim_item(id, unit.clone(), t(3)).await {
                        Ok(Claim::Claimed) => claimed.push(unit),
                        Ok(Claim::AlreadyRecorded) => {
                            return Err::<Vec<ItemKey>, TestError>("nothing was recorded".into());
                        }
                        Ok(Claim::Paused) => {
                            return Err::<Vec<ItemKey>, TestError>("nothing was paused".into());
                        }
                        Err(StoreError::Rule(RunError::RunAlreadyCompleted)) => break,
                        Err(other) => return Err(other.into()),
                    }
                }
                Ok(claimed)
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let cancel = Completion::decided(RunOutcome::Cancelled, t(7))
            .settling_in_flight(reasons::RUN_CANCELLED_IN_FLIGHT);
        runs.complete(id, cancel, TerminalEffects { actor: None })
            .await?;
        let mut claimed = BTreeSet::new();
        for claimer in claimers {
            claimed.extend(claimer.await??);
        }

        // Every claim that was granted is counted, and nothing else is.
        let run = runs.run(id).await?;
        let ledger = store.ledger(id).await?;
        let counted: BTreeSet<ItemKey> = ledger.entries().map(|(k, _)| k.clone()).collect();
        assert_eq!(counted, claimed);
        assert_eq!(
            run.counts().get(SummaryKey::Processed),
            Some(claimed.len() as u64)
        );
        assert_eq!(
            run.counts().get(SummaryKey::Skipped),
            Some(claimed.len() as u64)
        );
        Ok(())
    }
);

contract!(a_start_that_reuses_the_active_run_draws_no_id, |store| {
    let first = start(&store, "contoso", restore_params(), true).await?;
    for _ in 0..3 {
        let again = start(&store, "contoso", restore_params(), true).await?;
        assert_eq!(again, first);
    }
    let next = start(
        &store,
        "contoso",
        RunParams::BackupSetRestore {
            backup_set_id: 2,
            item_ids: None,
        },
        true,
    )
    .await?;

    // Ids say nothing about how often anyone started a run that was already active.
    assert_eq!(next.value(), first.value() + 1);
    Ok(())
});

contract!(a_run_is_looked_up_with_its_visibility, |store| {
    let id = start(&store, "contoso", restore_params(), true).await?;
    let contoso = store.tenant("contoso").await?;
    let fabrikam = store.tenant("fabrikam").await?;
    let runs = store.store();
    let ws = store.workspace();
    let only = |t: &opsrun_application::ports::Tenant| TenantScope::Only(BTreeSet::from([t.id]));

    let seen = runs.visible_run(id, ws, &TenantScope::All).await?;
    let scoped = runs.visible_run(id, ws, &only(&contoso)).await?;
    let other_tenant = runs.visible_run(id, ws, &only(&fabrikam)).await?;
    let no_tenant = runs
        .visible_run(id, ws, &TenantScope::Only(BTreeSet::new()))
        .await?;
    let other_workspace = runs
        .visible_run(
            id,
            opsrun_domain::WorkspaceId::new(ws.value() + 100),
            &TenantScope::All,
        )
        .await?;
    let absent = runs
        .visible_run(RunId::new(424_242), ws, &TenantScope::All)
        .await?;

    assert_eq!(seen.as_ref().map(|r| r.id()), Some(id));
    assert_eq!(scoped, seen);
    for hidden in [other_tenant, no_tenant, other_workspace, absent] {
        assert_eq!(hidden, None);
    }
    Ok(())
});

contract!(unknown_runs_are_not_found, |store| {
    let runs = store.store();
    let missing = RunId::new(424_242);

    assert!(matches!(
        runs.run(missing).await,
        Err(StoreError::RunNotFound(_))
    ));
    assert!(matches!(
        runs.record_items(missing, vec![], t(1)).await,
        Err(StoreError::RunNotFound(_))
    ));
    assert!(matches!(
        runs.mark_running(missing, t(1)).await,
        Err(StoreError::RunNotFound(_))
    ));
    assert!(matches!(
        runs.ledger_keys(missing).await,
        Err(StoreError::RunNotFound(_))
    ));
    Ok(())
});

/// Four OS processes on one PostgreSQL database record overlapping items of one fan-out
/// parent and race to complete it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_on_postgres_count_each_item_once_and_complete_once() -> Result<(), TestError>
{
    let Some(store) = TestStore::open(opsrun_tests::Backend::Postgres).await? else {
        crate::report_skip();
        return Ok(());
    };
    let url = store.url.clone().ok_or("no url")?;
    let id = start(&store, "contoso", restore_params(), true).await?;
    let runs = store.store();
    let units = keys(400)?;
    runs.set_total(id, work_set(&units)?).await?;
    runs.mark_running(id, t(2)).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let runs = runs.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let run = runs.run(id).await?;
                let counts = run.counts();
                if counts.get_or_zero(SummaryKey::Processed) > counts.get_or_zero(SummaryKey::Total)
                {
                    return Err::<(), TestError>("processed passed total".into());
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            Ok(())
        })
    };
    // Process p records items 100p .. 100p + 200 (mod 400): every item by two processes.
    let mut children = Vec::new();
    for p in 0..4 {
        children.push(
            tokio::process::Command::new(env!("CARGO_BIN_EXE_contract-writer"))
                .args([
                    url.as_str(),
                    &id.value().to_string(),
                    &(p * 100).to_string(),
                    "200",
                    "7",
                ])
                .output(),
        );
    }
    let mut won = 0;
    for child in children {
        let output = child.await?;
        if !output.status.success() {
            return Err(
                format!("writer failed: {}", String::from_utf8_lossy(&output.stderr)).into(),
            );
        }
        won += String::from_utf8(output.stdout)?.trim().parse::<usize>()?;
    }
    stop.store(true, Ordering::SeqCst);
    watcher.await??;

    let run = runs.run(id).await?;
    assert_eq!(run.counts().get(SummaryKey::Processed), Some(400));
    assert_eq!(run.counts().get(SummaryKey::Succeeded), Some(400));
    assert_eq!(store.ledger(id).await?.len(), 400);
    assert_eq!(won, 1);
    assert_eq!(run.outcome(), RunOutcome::Succeeded);
    assert_eq!(runs.audit_events(id).await?.len(), 1);
    let user = store.user("ops@example.com").await?;
    assert_eq!(runs.notifications(user.id).await?.len(), 1);
    Ok(())
}

/// The regression guard of round trips: statements per recorded item, per batch, per feed
/// request and per fan-out child stay at their measured values (BEGIN and COMMIT included).
async fn statements_per_operation(store: TestStore) -> Result<(), TestError> {
    use opsrun_application::read_models::ReadModels;

    let sql = store.sql().ok_or("a SQL backend")?.clone();
    let id = start(&store, "contoso", restore_params(), true).await?;
    let runs = store.store();
    let units = keys(300)?;
    runs.set_total(id, work_set(&units)?).await?;
    let service = OperationRunService::new(
        runs.clone(),
        Arc::new(MemoryQueue::new()),
        Arc::new(ManualClock::at(10)),
    );
    let measure = |before: u64| sql.statements() - before;

    let before = sql.statements();
    service
        .record_item(id, ItemRecord::succeeded(units[0].clone()))
        .await?;
    let one = measure(before);
    let before = sql.statements();
    service
        .record_item(id, ItemRecord::succeeded(units[0].clone()))
        .await?;
    let duplicate = measure(before);
    let before = sql.statements();
    service
        .record_items(
            id,
            units[1..101]
                .iter()
                .cloned()
                .map(ItemRecord::succeeded)
                .collect(),
        )
        .await?;
    let batch = measure(before);
    // A fan-out child as the restore worker runs it: its record, and the completion check
    // only when the record says every unit is recorded.
    let before = sql.statements();
    let outcome = service
        .record_item(id, ItemRecord::succeeded(units[101].clone()))
        .await?;
    if outcome.all_recorded {
        service.maybe_complete_bulk_run(id).await?;
    }
    let child = measure(before);
    let caller = opsrun_application::access::Caller {
        user: store.user("ops@example.com").await?,
        role: opsrun_application::ports::Role::Readonly,
        scope: TenantScope::All,
        via: opsrun_application::access::Via::Local,
    };
    let models = ReadModels::new(
        runs.clone(),
        store.directory(),
        Arc::new(ManualClock::at(10)),
        60_000,
    );
    let before = sql.statements();
    models
        .activity(&caller, &opsrun_domain::Slug::parse("contoso")?)
        .await?;
    let feed = measure(before);
    let before = sql.statements();
    let page = models
        .collection(
            &caller,
            opsrun_application::read_models::CollectionFilter::default(),
            25,
            None,
        )
        .await?;
    let collection = measure(before);
    assert_eq!(page.items.len(), 1, "the run is listed with its names");

    match store.backend {
        // One statement: the ledger insert, the sum of what it entered and the guarded UPDATE
        // in data-modifying CTEs. A duplicate, a batch of 100 and a child cost the same.
        opsrun_tests::Backend::Postgres => {
            assert_eq!((one, duplicate, batch, child), (1, 1, 1, 1));
        }
        // BEGIN IMMEDIATE, the ledger insert (work set and status checked inside it), the
        // guarded UPDATE, COMMIT; when every key is new the insert and the UPDATE go to
        // SQLite in one call (three round trips). A duplicate finds its UPDATE refused, rolls
        // that back (4) and takes the general path, which reads the run and the work set to
        // tell a duplicate from a refusal instead of updating (5).
        _ => assert_eq!((one, duplicate, batch, child), (4, 9, 4, 4)),
    }
    // The feed and a collection page are one query each: runs joined with the tenant slug
    // and the initiator's e-mail (the feed also resolves its tenant in it).
    assert_eq!((feed, collection), (1, 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_per_operation_stay_at_their_measured_values_on_sqlite() -> Result<(), TestError>
{
    let store = TestStore::open(opsrun_tests::Backend::Sqlite)
        .await?
        .ok_or("sqlite")?;
    statements_per_operation(store).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_per_operation_stay_at_their_measured_values_on_postgres()
-> Result<(), TestError> {
    let Some(store) = TestStore::open(opsrun_tests::Backend::Postgres).await? else {
        crate::report_skip();
        return Ok(());
    };
    statements_per_operation(store).await
}
