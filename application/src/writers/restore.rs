//! `backup_set.restore`: a fan-out. The parent freezes the selected items and hands each to a
//! child job; each child restores one item and records it on the parent exactly once; the
//! child that records the last item completes the parent (I7).

use std::sync::Arc;

use opsrun_domain::{ItemKey, ItemRecord, ReasonCode, RunId, WorkSet};

use super::{
    Plan, WriterError, WriterOutcome, begin, finished, frozen_work_set, plan_units,
    provider_failure, record,
};
use crate::ports::{BackupSetStore, JobQueue, RestoreTarget, WorkKey};
use crate::{OperationRunService, RunParams};

/// Reason code of an item that vanished from its backup set after the parent froze it.
pub const REASON_ITEM_MISSING: ReasonCode = ReasonCode::from_static("restore.item_missing");
/// Reason code of an item whose restore target does not exist.
pub const REASON_TARGET_MISSING: ReasonCode = ReasonCode::from_static("restore.target_missing");
/// Reason code of an item whose child job used up every attempt.
pub const REASON_ATTEMPTS_EXHAUSTED: ReasonCode =
    ReasonCode::from_static("restore.attempts_exhausted");
/// Reason code of a restore whose backup set no longer exists.
pub const REASON_BACKUP_SET_NOT_FOUND: ReasonCode = ReasonCode::from_static("backup_set.not_found");

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
        let Some((run, params)) = begin(&self.service, id).await? else {
            return Ok(WriterOutcome::AlreadyCompleted);
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
        let done = self.service.store().ledger_keys(id).await?;
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
        self.queue.enqueue_children(id, pending).await?;
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
                REASON_BACKUP_SET_NOT_FOUND,
                format!("backup set {backup_set_id} no longer exists"),
            ));
        };
        let items = self.backup_sets.items(set.id).await?;
        let selected: Vec<String> = match item_ids {
            Some(ids) => ids
                .iter()
                .filter(|id| items.iter().any(|item| item.id == **id))
                .map(i64::to_string)
                .collect(),
            None => items.iter().map(|item| item.id.to_string()).collect(),
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
    backup_sets: Arc<dyn BackupSetStore>,
    target: Arc<dyn RestoreTarget>,
}

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
            backup_sets,
            target,
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
        let run = self.service.store().run(parent).await?;
        if run.is_completed() {
            return Ok(WriterOutcome::Stopped);
        }
        let record_ = match item.as_str().parse::<i64>() {
            Err(_) => ItemRecord::failed(item.clone(), REASON_ITEM_MISSING),
            Ok(item_id) => match self.backup_sets.item(item_id).await? {
                None => ItemRecord::failed(item.clone(), REASON_ITEM_MISSING),
                Some(backup_item) => {
                    let key = WorkKey {
                        run: parent,
                        item: item.clone(),
                    };
                    match self.target.restore(&key, run.tenant(), &backup_item).await {
                        Ok(()) => ItemRecord::succeeded(item.clone()),
                        Err(e) => provider_failure(&item, e, &REASON_TARGET_MISSING)?,
                    }
                }
            },
        };
        self.finish_item(parent, record_).await
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
        self.finish_item(parent, ItemRecord::failed(item, REASON_ATTEMPTS_EXHAUSTED))
            .await
    }

    async fn finish_item(
        &self,
        parent: RunId,
        item: ItemRecord,
    ) -> Result<WriterOutcome, WriterError> {
        if !record(&self.service, parent, item).await? {
            return Ok(WriterOutcome::Stopped);
        }
        Ok(match self.service.maybe_complete_bulk_run(parent).await? {
            Some(completed) => finished(&completed),
            None => WriterOutcome::ItemRecorded,
        })
    }
}
