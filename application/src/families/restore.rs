//! `backup_set.restore`: a fan-out. The parent freezes the selected items and hands each to a
//! child job; each child restores one item and records it on the parent exactly once; the
//! child that records the last item completes the parent (I7).

use std::sync::Arc;

use opsrun_domain::{ItemKey, ItemRecord, RunId, WorkSet};

use crate::StoreError;
use crate::coalesce::{Coalescer, Combine, Submission, combined, fail_all};
use crate::ports::{BackupItem, BackupSetStore, JobQueue, RestoreTarget, WorkKey};
use crate::reasons;
use crate::writers::{
    Go, Plan, WriterError, WriterOutcome, begin, claim, finished, frozen_work_set, plan_units,
    provider_failure, record,
};
use crate::{OperationRunService, RunParams};
use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::MAX_POLICY_IDS;
use crate::families::{Describe, Family, ParamError, ParamKind, ParamSpec, ParamValues};
use crate::start::{OperationError, check_list, dedup, require_backup_set};
use opsrun_domain::{OperationType, ProgressMode, ReasonCode, TenantId};

/// The fan-out parent of `backup_set.restore`.
#[derive(Clone)]
pub struct BulkBackupSetRestore {
    service: OperationRunService,
    backup_sets: Arc<dyn BackupSetStore>,
    queue: Arc<dyn JobQueue>,
}

impl BulkBackupSetRestore {
    /// A writer over the given ports.
    #[must_use]
    pub fn new(
        service: OperationRunService,
        backup_sets: Arc<dyn BackupSetStore>,
        queue: Arc<dyn JobQueue>,
    ) -> Self {
        Self {
            service,
            backup_sets,
            queue,
        }
    }

    /// Freezes the selected items as the parent's total and enqueues one child job per item
    /// not yet in the ledger, in one call. On a resume only the missing children are enqueued
    /// again; a child that runs twice changes nothing the second time.
    ///
    /// # Errors
    ///
    /// [`WriterError`] on a transient failure; a retry resumes.
    pub async fn execute(&self, id: RunId) -> Result<WriterOutcome, WriterError> {
        let (run, params) = match begin(&self.service, id).await? {
            Ok(begun) => begun,
            Err(outcome) => return Ok(outcome),
        };
        let RunParams::BackupSetRestore {
            backup_set_id,
            item_ids,
        } = &params
        else {
            return Err(WriterError::WrongFamily { run: id });
        };
        let plan = self.plan(run.tenant(), *backup_set_id, item_ids.as_deref());
        let work_set: WorkSet = match frozen_work_set(&self.service, &run, plan).await? {
            Ok(work_set) => work_set,
            Err(outcome) => return Ok(outcome),
        };
        let done = self.service.queries().ledger_keys(id).await?;
        let pending: Vec<ItemKey> = work_set
            .units()
            .iter()
            .filter(|u| !done.contains(*u))
            .cloned()
            .collect();
        if pending.is_empty() {
            // Every child already recorded (or an empty selection): complete now.
            return Ok(match self.service.maybe_complete_bulk_run(id).await? {
                Some(completed) => finished(&completed),
                None => WriterOutcome::Stopped,
            });
        }
        // The jobs' numbers are reserved before the jobs exist (at most one job per item): a
        // dispatch that dies after storing its jobs and before announcing them leaves numbers
        // its retry never gives again.
        let first = self
            .service
            .reserve_child_jobs(id, pending.len() as u64)
            .await?;
        let jobs = self.queue.enqueue_children(id, first, pending).await?;
        self.service.child_jobs_enqueued(id, first, jobs).await?;
        Ok(WriterOutcome::Dispatched)
    }

    async fn plan(
        &self,
        tenant: opsrun_domain::TenantId,
        backup_set_id: i64,
        item_ids: Option<&[i64]>,
    ) -> Result<Plan, WriterError> {
        let Some(set) = self.backup_sets.backup_set(tenant, backup_set_id).await? else {
            return Ok(Plan::Blocked(
                reasons::BACKUP_SET_NOT_FOUND,
                format!("backup set {backup_set_id} no longer exists"),
            ));
        };
        // Ids only: the plan never needs an item's captured policy or payload.
        let items = self.backup_sets.item_ids(set.id).await?;
        let selected: Vec<String> = match item_ids {
            Some(ids) => {
                let known: BTreeSet<i64> = items.iter().copied().collect();
                ids.iter()
                    .filter(|id| known.contains(id))
                    .map(i64::to_string)
                    .collect()
            }
            None => items.iter().map(i64::to_string).collect(),
        };
        let name = set.name.clone();
        let all = item_ids.is_none();
        Ok(plan_units(selected, move |n| {
            if all {
                format!("all {n} items of backup set '{name}'")
            } else {
                format!("{n} selected backup-set items")
            }
        }))
    }
}

/// One child job of `backup_set.restore`: restores one item and records it on the parent.
#[derive(Clone)]
pub struct BackupSetRestoreWorker {
    service: OperationRunService,
    target: Arc<dyn RestoreTarget>,
    tenants: Arc<RecentTenants>,
    // The backup items of the items restoring at once, read together.
    items: Arc<Coalescer<BackupItems>>,
}

/// The backup items of concurrent restores of one parent, read in one statement
/// ([`BackupSetStore::items_by_id`]).
struct BackupItems;

#[async_trait]
impl Combine for BackupItems {
    type Target = dyn BackupSetStore;
    type Item = i64;
    type Answer = Option<BackupItem>;

    async fn write(store: &dyn BackupSetStore, _: RunId, batch: Vec<Submission<Self>>) -> u64 {
        let Some((_, ids)) = combined(&batch) else {
            return 0;
        };
        match store.items_by_id(&ids).await {
            Ok(found) => {
                let found: std::collections::HashMap<i64, BackupItem> =
                    found.into_iter().map(|item| (item.id, item)).collect();
                for submission in batch {
                    // One id a caller; two callers may ask for the same (a chunk delivered
                    // twice), and both get it.
                    let item = submission.items().first().and_then(|id| found.get(id));
                    submission.answer(Ok(item.cloned()));
                }
            }
            Err(error) => fail_all(batch, &StoreError::Unavailable(error.to_string().into())),
        }
        1
    }
}

/// The tenants of the last few parents a worker restored for: each item of a fan-out needs its
/// parent's tenant, and one read per item was a round trip per item. The lock is held across
/// a read, so the items that start together read once.
#[derive(Default)]
struct RecentTenants(futures::lock::Mutex<std::collections::VecDeque<(RunId, TenantId)>>);

impl BackupSetRestoreWorker {
    /// A worker over the given ports.
    #[must_use]
    pub fn new(
        service: OperationRunService,
        backup_sets: Arc<dyn BackupSetStore>,
        target: Arc<dyn RestoreTarget>,
    ) -> Self {
        Self {
            service,
            items: Arc::new(Coalescer::new(backup_sets)),
            target,
            tenants: Arc::default(),
        }
    }

    /// Restores `item` of `parent` and records its final outcome on the parent exactly once,
    /// then completes the parent if this was its last item. A cancelled (completed) parent
    /// makes the child do nothing.
    ///
    /// # Errors
    ///
    /// [`WriterError`] on a transient failure; a retry is safe (the restore is idempotent per
    /// item and the ledger refuses a second count).
    pub async fn execute(
        &self,
        parent: RunId,
        item: ItemKey,
    ) -> Result<WriterOutcome, WriterError> {
        // No read of the parent per item: the claim is the check that the run is neither
        // cancelled nor paused, and an item that cannot be restored is recorded (a record on
        // a completed run is refused, which stops the job).
        let now = self.service.clock().now();
        let record_ = match item.as_str().parse::<i64>() {
            Err(_) => ItemRecord::failed(item.clone(), reasons::RESTORE_ITEM_MISSING),
            Ok(item_id) => match self.items.submit(parent, vec![item_id], now).await? {
                None => ItemRecord::failed(item.clone(), reasons::RESTORE_ITEM_MISSING),
                Some(backup_item) => {
                    match claim(&self.service, parent, &item).await? {
                        Go::Call => {}
                        // Recorded by an earlier attempt that may have stopped before the
                        // parent's completion check: make that check, not the call.
                        Go::Recorded => return self.complete_parent(parent).await,
                        Go::Stop => return Ok(WriterOutcome::Stopped),
                        // The resume's parent job hands this item out again.
                        Go::Pause => return Ok(WriterOutcome::Paused),
                    }
                    let key = WorkKey {
                        run: parent,
                        item: item.clone(),
                    };
                    let tenant = self.tenant_of(parent).await?;
                    match self.target.restore(&key, tenant, &backup_item).await {
                        Ok(()) => ItemRecord::succeeded(item.clone()),
                        Err(e) => provider_failure(&item, e, &reasons::RESTORE_TARGET_MISSING)?,
                    }
                }
            },
        };
        self.finish_item(parent, record_).await
    }

    /// The tenant of `parent`, read once per parent (a run's tenant never changes) while the
    /// parent is among the last few this worker restored for.
    async fn tenant_of(&self, parent: RunId) -> Result<TenantId, WriterError> {
        // Parents remembered: a process works on a few fan-outs at once.
        const KEPT: usize = 16;
        let mut kept = self.tenants.0.lock().await;
        if let Some((_, tenant)) = kept.iter().find(|(id, _)| *id == parent) {
            return Ok(*tenant);
        }
        let tenant = self.service.queries().run(parent).await?.tenant();
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((parent, tenant));
        Ok(tenant)
    }

    /// Records `item` as `failed` with reason `restore.attempts_exhausted` (its job used up
    /// every attempt), then completes the parent if this was its last item.
    ///
    /// # Errors
    ///
    /// [`WriterError`] on a transient failure.
    pub async fn give_up(
        &self,
        parent: RunId,
        item: ItemKey,
    ) -> Result<WriterOutcome, WriterError> {
        self.finish_item(
            parent,
            ItemRecord::failed(item, reasons::RESTORE_ATTEMPTS_EXHAUSTED),
        )
        .await
    }

    async fn finish_item(
        &self,
        parent: RunId,
        item: ItemRecord,
    ) -> Result<WriterOutcome, WriterError> {
        let Some(outcome) = record(&self.service, parent, item).await? else {
            return Ok(WriterOutcome::Stopped);
        };
        // Only the child whose record made `processed == total` looks at completion: the
        // other children cost their record and nothing more.
        if !outcome.all_recorded {
            return Ok(WriterOutcome::ItemRecorded);
        }
        self.complete_parent(parent).await
    }

    /// Completes the parent when every item is recorded (I7).
    async fn complete_parent(&self, parent: RunId) -> Result<WriterOutcome, WriterError> {
        Ok(match self.service.maybe_complete_bulk_run(parent).await? {
            Some(completed) => finished(&completed),
            None => WriterOutcome::ItemRecorded,
        })
    }
}

/// The `backup_set.restore` family: the fan-out parent ([`BulkBackupSetRestore`]) and the
/// worker of its child jobs ([`BackupSetRestoreWorker`]) as one registered value.
#[derive(Clone)]
pub struct BackupSetRestore {
    parent: BulkBackupSetRestore,
    worker: BackupSetRestoreWorker,
}

impl BackupSetRestore {
    /// The family of a parent and its child worker.
    #[must_use]
    pub fn new(parent: BulkBackupSetRestore, worker: BackupSetRestoreWorker) -> Self {
        Self { parent, worker }
    }
}

#[async_trait]
impl Describe for BackupSetRestore {
    fn operation_type(&self) -> OperationType {
        OperationType::BACKUP_SET_RESTORE
    }

    fn label(&self) -> &'static str {
        "Backup set restore"
    }

    fn params(&self) -> &'static [ParamSpec] {
        &[
            ParamSpec {
                name: "backup_set_id",
                kind: ParamKind::Int,
                required: true,
                help: "the backup set to restore from",
            },
            ParamSpec {
                name: "item_ids",
                kind: ParamKind::IntList,
                required: false,
                help: "the backup items to restore (default: every item of the set)",
            },
        ]
    }

    fn parse_params(&self, values: &ParamValues) -> Result<RunParams, ParamError> {
        Ok(RunParams::BackupSetRestore {
            backup_set_id: values.required_int("backup_set_id")?,
            item_ids: values.ints("item_ids"),
        })
    }

    async fn validate(
        &self,
        tenant: TenantId,
        params: RunParams,
    ) -> Result<RunParams, OperationError> {
        let RunParams::BackupSetRestore {
            backup_set_id,
            item_ids,
        } = params
        else {
            return Ok(params);
        };
        let backup_sets = self.parent.backup_sets.as_ref();
        require_backup_set(backup_sets, tenant, backup_set_id).await?;
        let item_ids = match item_ids {
            None => None,
            Some(ids) => {
                let known: BTreeSet<String> = backup_sets
                    .items(backup_set_id)
                    .await?
                    .into_iter()
                    .map(|i| i.id.to_string())
                    .collect();
                let texts: Vec<String> = ids.iter().map(i64::to_string).collect();
                check_list(
                    "item_ids",
                    &texts,
                    &known,
                    MAX_POLICY_IDS,
                    "unknown_backup_item",
                )?;
                Some(dedup(&ids))
            }
        };
        Ok(RunParams::BackupSetRestore {
            backup_set_id,
            item_ids,
        })
    }

    fn reasons(&self) -> &'static [ReasonCode] {
        const REASONS: &[ReasonCode] = &[
            reasons::BACKUP_SET_NOT_FOUND,
            reasons::RESTORE_ITEM_MISSING,
            reasons::RESTORE_TARGET_MISSING,
            reasons::RESTORE_ATTEMPTS_EXHAUSTED,
        ];
        REASONS
    }

    fn retryable(&self) -> bool {
        true
    }

    fn retry_params(&self, params: &RunParams, failed: &[ItemKey]) -> Option<RunParams> {
        let RunParams::BackupSetRestore { backup_set_id, .. } = params else {
            return None;
        };
        // The parent froze backup-item ids: every failed key is one (a key that is not
        // cannot be retried as an item, so the run is not retryable).
        let item_ids: Option<Vec<i64>> = failed.iter().map(|k| k.as_str().parse().ok()).collect();
        Some(RunParams::BackupSetRestore {
            backup_set_id: *backup_set_id,
            item_ids: Some(item_ids?),
        })
    }

    /// The items are backup-item ids: named by the policy each one captured.
    async fn item_names(
        &self,
        _tenant: TenantId,
        params: &RunParams,
        keys: &[ItemKey],
    ) -> Result<std::collections::BTreeMap<ItemKey, String>, OperationError> {
        let RunParams::BackupSetRestore { backup_set_id, .. } = params else {
            return Ok(std::collections::BTreeMap::new());
        };
        let items = self.parent.backup_sets.items(*backup_set_id).await?;
        Ok(keys
            .iter()
            .filter_map(|key| {
                let id: i64 = key.as_str().parse().ok()?;
                items
                    .iter()
                    .find(|item| item.id == id)
                    .map(|item| (key.clone(), item.policy.display_name()))
            })
            .collect())
    }
}

#[async_trait]
impl Family for BackupSetRestore {
    fn designed_mode(&self) -> ProgressMode {
        ProgressMode::Counted
    }

    fn fan_out(&self) -> bool {
        true
    }

    async fn execute(&self, run: RunId) -> Result<WriterOutcome, WriterError> {
        self.parent.execute(run).await
    }

    async fn execute_child(
        &self,
        parent: RunId,
        item: ItemKey,
    ) -> Result<WriterOutcome, WriterError> {
        self.worker.execute(parent, item).await
    }

    async fn give_up_child(
        &self,
        parent: RunId,
        item: ItemKey,
    ) -> Result<WriterOutcome, WriterError> {
        self.worker.give_up(parent, item).await
    }
}

#[cfg(test)]
mod tests {
    use opsrun_domain::{ItemKey, RunOutcome, RunStatus};

    use crate::RunParams;
    use crate::ports::{BackupSetStore, Job};
    use crate::testing::harness::Harness;
    use crate::writers::WriterOutcome;

    async fn setup(h: &Harness, items: usize) -> (i64, opsrun_domain::RunId) {
        let set = h
            .families
            .create_backup_set(h.tenant.id, "weekly")
            .await
            .unwrap();
        for policy in h.fake.policies().iter().take(items) {
            h.families.put_backup_item(set.id, policy.clone());
        }
        let id = h
            .start(RunParams::BackupSetRestore {
                backup_set_id: set.id,
                item_ids: None,
            })
            .await;
        (set.id, id)
    }

    #[tokio::test]
    async fn the_parent_freezes_its_items_and_enqueues_all_children_in_one_call() {
        let h = Harness::new(20, &[]);
        let (_, id) = setup(&h, 20).await;
        let calls_before = h.queue.enqueue_calls();

        let outcome = h.bulk_restore().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Dispatched);
        assert_eq!(h.queue.enqueue_calls() - calls_before, 1);
        assert_eq!(h.queue.len(), 20);
        assert_eq!(h.counts(id).await, vec![("total", 20), ("processed", 0)]);
        assert_eq!(
            h.run(id).await.basis(),
            Some("all 20 items of backup set 'weekly'")
        );
    }

    #[tokio::test]
    async fn the_last_child_completes_the_parent_exactly_once() {
        let h = Harness::new(12, &["3", "7"]);
        let (_, id) = setup(&h, 12).await;
        h.bulk_restore().execute(id).await.unwrap();

        let last = h.drain_children().await.unwrap();

        assert_eq!(
            last,
            Some(WriterOutcome::Completed(RunOutcome::PartiallySucceeded))
        );
        assert_eq!(
            h.counts(id).await,
            vec![
                ("total", 12),
                ("processed", 12),
                ("succeeded", 10),
                ("failed", 2)
            ]
        );
        assert_eq!(h.fake.restores(), 10);
        assert_eq!(h.notifications().await, 1);
    }

    #[tokio::test]
    async fn a_child_delivered_twice_changes_nothing_the_second_time() {
        let h = Harness::new(3, &[]);
        let (_, id) = setup(&h, 3).await;
        h.bulk_restore().execute(id).await.unwrap();
        let first = h.queue.pop().unwrap();
        let Job::RestoreChild { parent, item } = first.clone() else {
            panic!("expected a child job");
        };

        h.restore_worker()
            .execute(parent, item.clone())
            .await
            .unwrap();
        let again = h.restore_worker().execute(parent, item).await.unwrap();

        assert_eq!(again, WriterOutcome::ItemRecorded);
        assert_eq!(Harness::processed(&h.counts(id).await), 1);
        assert_eq!(h.fake.restores(), 1);
    }

    #[tokio::test]
    async fn a_parent_resumed_after_a_crash_enqueues_only_missing_children() {
        let h = Harness::new(5, &[]);
        let (_, id) = setup(&h, 5).await;
        h.bulk_restore().execute(id).await.unwrap();
        // Two children ran, then the rest of the queue was lost with the machine.
        for _ in 0..2 {
            let Some(Job::RestoreChild { parent, item }) = h.queue.pop() else {
                panic!("expected a child job");
            };
            h.restore_worker().execute(parent, item).await.unwrap();
        }
        while h.queue.pop().is_some() {}

        let resumed = h.bulk_restore().execute(id).await.unwrap();
        let last = h.drain_children().await.unwrap();

        assert_eq!(resumed, WriterOutcome::Dispatched);
        assert_eq!(last, Some(WriterOutcome::Completed(RunOutcome::Succeeded)));
        assert_eq!(
            h.counts(id).await,
            vec![("total", 5), ("processed", 5), ("succeeded", 5)]
        );
        assert_eq!(h.fake.restores(), 5);
    }

    #[tokio::test]
    async fn children_of_a_cancelled_parent_do_nothing() {
        let h = Harness::new(4, &[]);
        let (_, id) = setup(&h, 4).await;
        h.bulk_restore().execute(id).await.unwrap();
        let Some(Job::RestoreChild { parent, item }) = h.queue.pop() else {
            panic!("expected a child job");
        };
        h.restore_worker().execute(parent, item).await.unwrap();
        h.service.cancel_run(id, None).await.unwrap();

        let last = h.drain_children().await.unwrap();

        assert_eq!(last, Some(WriterOutcome::Stopped));
        assert_eq!(h.fake.restores(), 1);
        let run = h.run(id).await;
        assert_eq!(run.status(), RunStatus::Completed);
        assert_eq!(run.outcome(), RunOutcome::Cancelled);
        assert_eq!(Harness::processed(&h.counts(id).await), 1);
    }

    #[tokio::test]
    async fn a_child_out_of_attempts_is_a_final_failure() {
        let h = Harness::new(2, &[]);
        let (_, id) = setup(&h, 2).await;
        h.bulk_restore().execute(id).await.unwrap();
        let Some(Job::RestoreChild { parent, item }) = h.queue.pop() else {
            panic!("expected a child job");
        };

        h.restore_worker()
            .give_up(parent, item.clone())
            .await
            .unwrap();
        let last = h.drain_children().await.unwrap();

        assert_eq!(
            last,
            Some(WriterOutcome::Completed(RunOutcome::PartiallySucceeded))
        );
        assert_eq!(
            h.failed_reasons(id),
            vec![(item.to_string(), "restore.attempts_exhausted".into())]
        );
    }

    #[tokio::test]
    async fn an_empty_selection_completes_at_once() {
        let h = Harness::new(0, &[]);
        let (_, id) = setup(&h, 0).await;

        let outcome = h.bulk_restore().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(h.counts(id).await, vec![("total", 0), ("processed", 0)]);
        assert!(h.queue.is_empty());
    }

    #[tokio::test]
    async fn selected_items_freeze_only_those() {
        let h = Harness::new(6, &[]);
        let set = h
            .families
            .create_backup_set(h.tenant.id, "s")
            .await
            .unwrap()
            .id;
        for policy in h.fake.policies() {
            h.families.put_backup_item(set, policy.clone());
        }
        let id = h
            .start(RunParams::BackupSetRestore {
                backup_set_id: set,
                item_ids: Some(vec![2, 4]),
            })
            .await;

        h.bulk_restore().execute(id).await.unwrap();
        let units: Vec<ItemKey> = h
            .store
            .ledger(id)
            .unwrap()
            .work_set()
            .unwrap()
            .units()
            .to_vec();

        assert_eq!(
            units,
            vec![ItemKey::parse("2").unwrap(), ItemKey::parse("4").unwrap()]
        );
        assert_eq!(h.run(id).await.basis(), Some("2 selected backup-set items"));
        assert_eq!(h.families.items(set).await.unwrap().len(), 6);
    }
}
