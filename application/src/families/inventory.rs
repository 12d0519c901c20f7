//! `inventory.sync`: one unit per selected policy type.

use std::sync::Arc;

use async_trait::async_trait;
use opsrun_domain::{AuxDeltas, AuxiliaryKey, ItemKey, ItemRecord, OperationRun};

use crate::RunParams;
use crate::families::{Describe, ParamError, ParamKind, ParamSpec, ParamValues};
use crate::ports::{InventoryStore, PolicyProvider, WorkKey};
use crate::reasons;
use crate::start::OperationError;
use crate::start::{MAX_LIST_PARAM, check_list};
use crate::writers::{CountedWork, Plan, WriterError, plan_units, provider_failure};
use opsrun_domain::{OperationType, ReasonCode, TenantId};

/// Syncs a tenant's policy inventory, one selected policy type at a time. Each type's record
/// carries the policies found (`items`) and the inventory changes it made (`created`,
/// `updated`, `deleted`).
#[derive(Clone)]
pub struct RunInventorySync {
    provider: Arc<dyn PolicyProvider>,
    inventory: Arc<dyn InventoryStore>,
}

impl RunInventorySync {
    /// The family's work over the given ports; registered as `Counted::new(service, settings,
    /// work)`, the counted driver.
    #[must_use]
    pub fn new(provider: Arc<dyn PolicyProvider>, inventory: Arc<dyn InventoryStore>) -> Self {
        Self {
            provider,
            inventory,
        }
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
            Err(e) => return provider_failure(unit, e, &reasons::INVENTORY_TYPE_NOT_FOUND),
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

#[async_trait]
impl Describe for RunInventorySync {
    fn operation_type(&self) -> OperationType {
        OperationType::INVENTORY_SYNC
    }

    fn label(&self) -> &'static str {
        "Inventory sync"
    }

    fn params(&self) -> &'static [ParamSpec] {
        &[ParamSpec {
            name: "policy_types",
            kind: ParamKind::TextList,
            required: false,
            help: "policy types to sync (default: every type the tenant has)",
        }]
    }

    fn parse_params(&self, values: &ParamValues) -> Result<RunParams, ParamError> {
        Ok(RunParams::InventorySync {
            policy_types: values.texts("policy_types"),
        })
    }

    async fn validate(
        &self,
        tenant: TenantId,
        params: RunParams,
    ) -> Result<RunParams, OperationError> {
        let RunParams::InventorySync {
            policy_types: Some(types),
        } = params
        else {
            return Ok(params);
        };
        let known = self
            .provider
            .policy_types(tenant)
            .await?
            .into_iter()
            .collect();
        let types = check_list(
            "policy_types",
            &types,
            &known,
            MAX_LIST_PARAM,
            "unknown_policy_type",
        )?;
        Ok(RunParams::InventorySync {
            policy_types: Some(types),
        })
    }

    fn reasons(&self) -> &'static [ReasonCode] {
        const REASONS: &[ReasonCode] = &[reasons::INVENTORY_TYPE_NOT_FOUND];
        REASONS
    }

    fn retryable(&self) -> bool {
        true
    }

    fn retry_params(&self, params: &RunParams, failed: &[ItemKey]) -> Option<RunParams> {
        matches!(params, RunParams::InventorySync { .. }).then(|| RunParams::InventorySync {
            policy_types: Some(failed.iter().map(|k| k.as_str().to_owned()).collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use opsrun_domain::{RunOutcome, RunStatus};

    use crate::RunParams;
    use crate::testing::harness::Harness;
    use crate::writers::WriterOutcome;

    fn all_types() -> RunParams {
        RunParams::InventorySync { policy_types: None }
    }

    #[tokio::test]
    async fn syncs_every_type_with_exact_counts() {
        let h = Harness::new(10, &[]);
        let id = h.start(all_types()).await;

        let outcome = h.inventory().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(
            h.counts(id).await,
            vec![
                ("total", 4),
                ("processed", 4),
                ("succeeded", 4),
                ("created", 10),
                ("items", 10)
            ]
        );
        let run = h.run(id).await;
        assert_eq!(run.basis(), Some("all 4 policy types"));
        assert_eq!(
            h.families
                .inventory(h.tenant.id, "device_configuration")
                .len(),
            3
        );
        assert_eq!(h.notifications().await, 1);
    }

    #[tokio::test]
    async fn a_failing_type_is_recorded_failed_with_its_reason() {
        let h = Harness::new(10, &["app_protection"]);
        let id = h.start(all_types()).await;

        let outcome = h.inventory().execute(id).await.unwrap();

        assert_eq!(
            outcome,
            WriterOutcome::Completed(RunOutcome::PartiallySucceeded)
        );
        assert_eq!(
            h.counts(id).await,
            vec![
                ("total", 4),
                ("processed", 4),
                ("succeeded", 3),
                ("failed", 1),
                ("created", 8),
                ("items", 8)
            ]
        );
        assert_eq!(
            h.failed_reasons(id),
            vec![("app_protection".into(), "fake.failed".into())]
        );
    }

    #[tokio::test]
    async fn a_retry_after_a_crash_halfway_does_not_count_twice() {
        let h = Harness::new(10, &[]);
        let id = h
            .start(RunParams::InventorySync {
                policy_types: Some(vec![
                    "compliance_policy".into(),
                    "device_configuration".into(),
                ]),
            })
            .await;
        // The second type's inventory write lands, but its acknowledgement is lost.
        h.families.lose_ack_at(2);

        let crashed = h.inventory().execute(id).await;
        let after_crash = h.counts(id).await;
        let resumed = h.inventory().execute(id).await.unwrap();

        assert!(crashed.is_err());
        assert_eq!(Harness::processed(&after_crash), 1);
        assert_eq!(resumed, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(
            h.counts(id).await,
            vec![
                ("total", 2),
                ("processed", 2),
                ("succeeded", 2),
                ("created", 6),
                ("items", 6)
            ]
        );
        assert_eq!(h.run(id).await.basis(), Some("2 selected policy types"));
        assert_eq!(h.notifications().await, 1);
    }

    #[tokio::test]
    async fn a_transient_provider_failure_is_not_an_outcome() {
        let h = Harness::new(4, &[]);
        let id = h.start(all_types()).await;
        h.fake.fail_transiently_at(2);

        let first = h.inventory().execute(id).await;
        let second = h.inventory().execute(id).await.unwrap();

        assert!(first.is_err_and(|e| e.is_transient()));
        assert_eq!(second, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(h.failed_reasons(id), vec![]);
        assert_eq!(Harness::processed(&h.counts(id).await), 4);
    }

    #[tokio::test]
    async fn cancellation_stops_at_the_next_item() {
        let h = Harness::new(8, &[]);
        let id = h.start(all_types()).await;
        h.fake.cancel_before(3, h.service.clone(), id);

        let outcome = h.inventory().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Stopped);
        let run = h.run(id).await;
        assert_eq!(run.status(), RunStatus::Completed);
        assert_eq!(run.outcome(), RunOutcome::Cancelled);
        // The call that was in flight when the cancel landed is counted with it.
        assert_eq!(Harness::processed(&h.counts(id).await), 3);
        assert_eq!(h.cancelled_in_flight(id).await, 1);
        assert_eq!(h.notifications().await, 1);
    }

    #[tokio::test]
    async fn a_completed_run_is_left_alone() {
        let h = Harness::new(4, &[]);
        let id = h.start(all_types()).await;
        h.service.cancel_run(id, None).await.unwrap();

        let outcome = h.inventory().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::AlreadyCompleted);
        assert_eq!(h.counts(id).await, vec![]);
        assert_eq!(h.fake.calls(), 0);
    }
}
