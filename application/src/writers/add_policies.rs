//! `backup_set.add_policies`: one unit per distinct policy id requested.

use std::sync::Arc;

use async_trait::async_trait;
use opsrun_domain::{
    AuxDeltas, AuxiliaryKey, ItemKey, ItemRecord, OperationRun, ReasonCode, RunId,
};

use super::{
    CountedWork, Plan, WriterError, WriterOutcome, WriterSettings, plan_units, provider_failure,
    run_counted,
};
use crate::ports::{BackupItemAdded, BackupSetStore, PolicyProvider, WorkKey};
use crate::{OperationRunService, RunParams};

/// Reason code of a run whose backup set no longer exists.
pub const REASON_BACKUP_SET_NOT_FOUND: ReasonCode = ReasonCode::from_static("backup_set.not_found");
/// Reason code of a policy that was already in the set (a skip).
pub const REASON_ALREADY_PRESENT: ReasonCode =
    ReasonCode::from_static("backup_set.already_present");
/// Reason code of a policy the provider does not have.
pub const REASON_POLICY_NOT_FOUND: ReasonCode = ReasonCode::from_static("policy.not_found");

/// Captures requested policies into a backup set: `succeeded` when captured (`created: 1`),
/// `skipped` when the set already held the policy, `failed` when it could not be fetched.
#[derive(Clone)]
pub struct AddPoliciesToBackupSet {
    service: OperationRunService,
    settings: WriterSettings,
    provider: Arc<dyn PolicyProvider>,
    backup_sets: Arc<dyn BackupSetStore>,
}

impl AddPoliciesToBackupSet {
    /// A writer over the given ports.
    #[must_use]
    pub fn new(
        service: OperationRunService,
        settings: WriterSettings,
        provider: Arc<dyn PolicyProvider>,
        backup_sets: Arc<dyn BackupSetStore>,
    ) -> Self {
        Self {
            service,
            settings,
            provider,
            backup_sets,
        }
    }

    /// Executes (or resumes) the run.
    ///
    /// # Errors
    ///
    /// [`WriterError`] on a transient failure; a retry resumes.
    pub async fn execute(&self, run: RunId) -> Result<WriterOutcome, WriterError> {
        run_counted(&self.service, self.settings, self, run).await
    }

    fn set_id(run: &OperationRun, params: &RunParams) -> Result<i64, WriterError> {
        match params {
            RunParams::BackupSetAddPolicies { backup_set_id, .. } => Ok(*backup_set_id),
            _ => Err(WriterError::WrongFamily { run: run.id() }),
        }
    }
}

#[async_trait]
impl CountedWork for AddPoliciesToBackupSet {
    async fn plan(&self, run: &OperationRun, params: &RunParams) -> Result<Plan, WriterError> {
        let RunParams::BackupSetAddPolicies {
            backup_set_id,
            policy_ids,
        } = params
        else {
            return Err(WriterError::WrongFamily { run: run.id() });
        };
        if self
            .backup_sets
            .backup_set(run.tenant(), *backup_set_id)
            .await?
            .is_none()
        {
            return Ok(Plan::Blocked(
                REASON_BACKUP_SET_NOT_FOUND,
                format!("backup set {backup_set_id} no longer exists"),
            ));
        }
        Ok(plan_units(policy_ids.clone(), |n| {
            format!("{n} requested policies")
        }))
    }

    async fn process(
        &self,
        run: &OperationRun,
        params: &RunParams,
        unit: &ItemKey,
    ) -> Result<ItemRecord, WriterError> {
        let set = Self::set_id(run, params)?;
        let created = AuxDeltas::new().with(AuxiliaryKey::Created, 1);
        if let Some(item) = self.backup_sets.find_item(set, unit.as_str()).await? {
            // Added by this run on an attempt that crashed before recording: it is this run's.
            if item.added_by == Some(run.id()) {
                return Ok(ItemRecord::succeeded(unit.clone()).with_deltas(created));
            }
            return Ok(ItemRecord::skipped(
                unit.clone(),
                Some(REASON_ALREADY_PRESENT),
            ));
        }
        let payload = match self
            .provider
            .fetch_policy(run.tenant(), unit.as_str())
            .await
        {
            Ok(payload) => payload,
            Err(e) => return provider_failure(unit, e, &REASON_POLICY_NOT_FOUND),
        };
        let key = WorkKey {
            run: run.id(),
            item: unit.clone(),
        };
        Ok(match self.backup_sets.add_item(&key, set, payload).await? {
            BackupItemAdded::Added => ItemRecord::succeeded(unit.clone()).with_deltas(created),
            BackupItemAdded::AlreadyPresent => {
                ItemRecord::skipped(unit.clone(), Some(REASON_ALREADY_PRESENT))
            }
        })
    }
}
