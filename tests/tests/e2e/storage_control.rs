//! The storage contract of run control, on the in-memory store, SQLite and PostgreSQL:
//! admission under a tenant's limit, pause and resume, the claim of a paused run, the record
//! window of a run's pace, and the link of a retry.

use opsrun_application::ports::CreateRun;
use opsrun_application::{RunParams, StoreError, TerminalEffects};
use opsrun_domain::{
    Admission, Change, Claim, Completion, ItemKey, ItemRecord, RecordWindow, RunError, RunId,
    RunOutcome, RunStatus, Timestamp, WorkSet,
};
use opsrun_tests::{TestError, TestStore};

use crate::contract;

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// A queued top-level run of `tenant` with its own identity (backup set `target`).
async fn run_of(
    store: &TestStore,
    tenant: &str,
    target: i64,
    retry_of: Option<RunId>,
) -> Result<RunId, TestError> {
    let tenant = store.tenant(tenant).await?;
    let started = store
        .store()
        .create_run(CreateRun {
            workspace: store.workspace(),
            tenant: tenant.id,
            params: RunParams::BackupSetRestore {
                backup_set_id: target,
                item_ids: None,
            },
            initiator: None,
            parent: None,
            retry_of,
            at: t(1_000),
        })
        .await?;
    Ok(started.run.id())
}

async fn cancel(store: &TestStore, id: RunId, at: Timestamp) -> Result<(), TestError> {
    store
        .store()
        .complete(
            id,
            Completion::decided(RunOutcome::Cancelled, at),
            TerminalEffects { actor: None },
        )
        .await?;
    Ok(())
}

contract!(a_tenant_admits_runs_up_to_its_limit_only, |store| {
    let runs = store.store();
    let a: Vec<RunId> = {
        let mut ids = Vec::new();
        for target in 1..=3 {
            ids.push(run_of(&store, "contoso", target, None).await?);
        }
        ids
    };
    let other = run_of(&store, "fabrikam", 9, None).await?;

    let first = runs.admit(a[0], t(2_000), 2).await?;
    let second = runs.admit(a[1], t(2_000), 2).await?;
    let third = runs.admit(a[2], t(2_000), 2).await?;
    let again = runs.admit(a[2], t(2_001), 2).await?;
    let elsewhere = runs.admit(other, t(2_000), 2).await?;
    let running_again = runs.admit(a[0], t(2_002), 2).await?;

    assert_eq!(first, Admission::Started(Change::Applied));
    assert_eq!(second, Admission::Started(Change::Applied));
    let reason = "waiting: 2 runs of this tenant are running (limit 2)".to_owned();
    assert_eq!(third, Admission::Waiting(reason.clone()));
    assert_eq!(again, Admission::Waiting(reason.clone()));
    assert_eq!(elsewhere, Admission::Started(Change::Applied));
    assert_eq!(running_again, Admission::Started(Change::Unchanged));
    let waiting = runs.run(a[2]).await?;
    assert_eq!(waiting.status(), RunStatus::Queued);
    assert_eq!(waiting.waiting(), Some(reason.as_str()));

    // A slot frees when a run completes; the tenant's own limit wins over the default.
    runs.set_tenant_limit(store.tenant("contoso").await?.id, Some(3))
        .await?;
    assert_eq!(
        runs.tenant_limit(store.tenant("contoso").await?.id).await?,
        Some(3)
    );
    let admitted = runs.admit(a[2], t(3_000), 2).await?;
    assert_eq!(admitted, Admission::Started(Change::Applied));
    let started = runs.run(a[2]).await?;
    assert_eq!(started.waiting(), None);
    assert_eq!(started.started_at(), Some(t(3_000)));
    Ok(())
});

contract!(
    a_paused_run_claims_nothing_starts_nothing_and_resumes,
    |store| {
        let runs = store.store();
        let queued = run_of(&store, "contoso", 1, None).await?;
        let id = run_of(&store, "contoso", 2, None).await?;
        runs.admit(id, t(2_000), 4).await?;
        let units: Vec<ItemKey> = (0..3)
            .map(|i| ItemKey::parse(&format!("u{i}")))
            .collect::<Result<_, _>>()?;
        runs.set_total(id, WorkSet::try_new(units.clone(), "3 units")?)
            .await?;

        assert_eq!(runs.pause(id, t(3_000)).await?, Change::Applied);
        assert_eq!(runs.pause(id, t(3_001)).await?, Change::Unchanged);
        assert_eq!(runs.pause(queued, t(3_000)).await?, Change::Applied);
        let claim = runs.claim_item(id, units[0].clone(), t(3_002)).await?;
        let start = runs.admit(queued, t(3_003), 4).await?;
        // An item already under way is still recorded while paused.
        runs.record_items(id, vec![ItemRecord::succeeded(units[1].clone())], t(3_004))
            .await?;
        let paused = runs.run(id).await?;

        assert_eq!(claim, Claim::Paused);
        assert_eq!(start, Admission::Paused);
        assert_eq!(runs.run(queued).await?.status(), RunStatus::Queued);
        assert!(paused.is_paused());
        assert_eq!(paused.paused_at(), Some(t(3_000)));
        assert!(!paused.is_stale(t(1_000_000_000), 1_000));

        assert_eq!(runs.resume(id, t(9_000)).await?, Change::Applied);
        assert_eq!(runs.resume(id, t(9_001)).await?, Change::Unchanged);
        let resumed = runs.run(id).await?;
        assert!(!resumed.is_paused());
        // The pause never counts as silence.
        assert_eq!(resumed.heartbeat_at(), Some(t(9_000)));
        assert_eq!(
            runs.claim_item(id, units[0].clone(), t(9_002)).await?,
            Claim::Claimed
        );
        cancel(&store, id, t(9_500)).await?;
        let refused = runs.pause(id, t(9_600)).await;
        assert!(matches!(
            refused,
            Err(StoreError::Rule(RunError::RunAlreadyCompleted))
        ));
        assert!(matches!(
            runs.resume(id, t(9_600)).await,
            Err(StoreError::Rule(RunError::RunAlreadyCompleted))
        ));
        Ok(())
    }
);

contract!(the_record_window_holds_the_recent_records_only, |store| {
    let runs = store.store();
    let id = run_of(&store, "contoso", 1, None).await?;
    runs.admit(id, t(1_000), 4).await?;
    let units: Vec<ItemKey> = (0..120)
        .map(|i| ItemKey::parse(&format!("u{i:03}")))
        .collect::<Result<_, _>>()?;
    runs.set_total(id, WorkSet::try_new(units.clone(), "120 units")?)
        .await?;
    // 120 records, one every 100 ms from t=1 s.
    for (i, unit) in units.iter().enumerate() {
        runs.record_items(
            id,
            vec![ItemRecord::succeeded(unit.clone())],
            t(1_000 + 100 * i as i64),
        )
        .await?;
    }
    let last = 1_000 + 100 * 119;

    let now = runs.record_window(id, t(last)).await?;
    let later = runs.record_window(id, t(last + 25_000)).await?;
    let gone = runs.record_window(id, t(last + 31_000)).await?;
    let none = runs
        .record_window(run_of(&store, "contoso", 2, None).await?, t(last))
        .await?;

    assert_eq!(
        now,
        Some(RecordWindow {
            records: 100,
            first_at: t(last - 99 * 100)
        })
    );
    // 25 s later only the records of the last 5 s are within the 30 s window.
    assert_eq!(
        later,
        Some(RecordWindow {
            records: 51,
            first_at: t(last - 5_000)
        })
    );
    assert_eq!(gone, None);
    assert_eq!(none, None);
    Ok(())
});

contract!(a_retry_links_to_the_run_it_retries, |store| {
    let runs = store.store();
    let original = run_of(&store, "contoso", 1, None).await?;
    cancel(&store, original, t(1_500)).await?;
    let first = run_of(&store, "contoso", 1, Some(original)).await?;
    cancel(&store, first, t(1_600)).await?;
    let second = run_of(&store, "contoso", 1, Some(original)).await?;

    assert_eq!(runs.run(first).await?.retry_of(), Some(original));
    assert_eq!(runs.retries_of(original).await?, vec![first, second]);
    assert_eq!(runs.retries_of(first).await?, Vec::<RunId>::new());
    Ok(())
});
