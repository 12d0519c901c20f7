//! `inventory.sync`: one unit per selected policy type.

use std::sync::Arc;

use async_trait::async_trait;
use opsrun_domain::{
    AuxDeltas, AuxiliaryKey, ItemKey, ItemRecord, OperationRun, ReasonCode, RunId,
};

use super::{
    CountedWork, Plan, WriterError, WriterOutcome, WriterSettings, plan_units, provider_failure,
    run_counted,
};
use crate::ports::{InventoryStore, PolicyProvider, WorkKey};
use crate::{OperationRunService, RunParams};

/// Reason code of a policy type the provider does not have.
pub const REASON_TYPE_NOT_FOUND: ReasonCode = ReasonCode::from_static("inventory.type_not_found");

/// Syncs a tenant's policy inventory, one selected policy type at a time. Each type's record
/// carries the policies found (`items`) and the inventory changes it made (`created`,
/// `updated`, `deleted`).
#[derive(Clone)]
pub struct RunInventorySync {
    service: OperationRunService,
    settings: WriterSettings,
    provider: Arc<dyn PolicyProvider>,
    inventory: Arc<dyn InventoryStore>,
}

impl RunInventorySync {
    /// A writer over the given ports.
    #[must_use]
    pub fn new(
        service: OperationRunService,
        settings: WriterSettings,
        provider: Arc<dyn PolicyProvider>,
        inventory: Arc<dyn InventoryStore>,
    ) -> Self {
        Self {
            service,
            settings,
            provider,
            inventory,
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
}

#[async_trait]
impl CountedWork for RunInventorySync {
    async fn plan(&self, run: &OperationRun, params: &RunParams) -> Result<Plan, WriterError> {
        let RunParams::InventorySync { policy_types } = params else {
            return Err(WriterError::WrongFamily { run: run.id() });
        };
        let (types, all) = match policy_types {
            Some(types) => (types.clone(), false),
            None => (
                self.provider
                    .policy_types(run.tenant())
                    .await
                    .map_err(WriterError::Provider)?,
                true,
            ),
        };
        Ok(plan_units(types, |n| {
            if all {
                format!("all {n} policy types")
            } else {
                format!("{n} selected policy types")
            }
        }))
    }

    async fn process(
        &self,
        run: &OperationRun,
        _params: &RunParams,
        unit: &ItemKey,
    ) -> Result<ItemRecord, WriterError> {
        let policies = match self.provider.policies(run.tenant(), unit.as_str()).await {
            Ok(policies) => policies,
            Err(e) => return provider_failure(unit, e, &REASON_TYPE_NOT_FOUND),
        };
        let found = policies.len() as u64;
        let key = WorkKey {
            run: run.id(),
            item: unit.clone(),
        };
        let changes = self
            .inventory
            .replace_type(&key, run.tenant(), unit.as_str(), policies)
            .await?;
        let deltas = AuxDeltas::new()
            .with(AuxiliaryKey::Items, found)
            .with(AuxiliaryKey::Created, changes.created)
            .with(AuxiliaryKey::Updated, changes.updated)
            .with(AuxiliaryKey::Deleted, changes.deleted);
        Ok(ItemRecord::succeeded(unit.clone()).with_deltas(deltas))
    }
}
