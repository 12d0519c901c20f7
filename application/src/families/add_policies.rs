//! `backup_set.add_policies`: one unit per distinct policy id requested.

use std::sync::Arc;

use async_trait::async_trait;
use opsrun_domain::{AuxDeltas, AuxiliaryKey, ItemKey, ItemRecord, OperationRun};

use crate::MAX_POLICY_IDS;
use crate::RunParams;
use crate::families::{Describe, ParamError, ParamKind, ParamSpec, ParamValues};
use crate::ports::{BackupItemAdded, BackupSetStore, PolicyProvider, WorkKey};
use crate::reasons;
use crate::start::OperationError;
use crate::start::{check_list, require_backup_set};
use crate::writers::{CountedWork, Plan, WriterError, plan_units, provider_failure};
use opsrun_domain::{OperationType, ReasonCode, TenantId};

/// Captures requested policies into a backup set: `succeeded` when captured (`created: 1`),
/// `skipped` when the set already held the policy, `failed` when it could not be fetched.
#[derive(Clone)]
pub struct AddPoliciesToBackupSet {
    provider: Arc<dyn PolicyProvider>,
    backup_sets: Arc<dyn BackupSetStore>,
}

impl AddPoliciesToBackupSet {
    /// The family's work over the given ports; registered as `Counted::new(service, settings,
    /// work)`, the counted driver.
    #[must_use]
    pub fn new(provider: Arc<dyn PolicyProvider>, backup_sets: Arc<dyn BackupSetStore>) -> Self {
        Self {
            provider,
            backup_sets,
        }
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
                reasons::BACKUP_SET_NOT_FOUND,
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
                Some(reasons::BACKUP_SET_ALREADY_PRESENT),
            ));
        }
        let payload = match self
            .provider
            .fetch_policy(run.tenant(), unit.as_str())
            .await
        {
            Ok(payload) => payload,
            Err(e) => return provider_failure(unit, e, &reasons::POLICY_NOT_FOUND),
        };
        let key = WorkKey {
            run: run.id(),
            item: unit.clone(),
        };
        Ok(match self.backup_sets.add_item(&key, set, payload).await? {
            BackupItemAdded::Added => ItemRecord::succeeded(unit.clone()).with_deltas(created),
            BackupItemAdded::AlreadyPresent => {
                ItemRecord::skipped(unit.clone(), Some(reasons::BACKUP_SET_ALREADY_PRESENT))
            }
        })
    }
}

#[async_trait]
impl Describe for AddPoliciesToBackupSet {
    fn operation_type(&self) -> OperationType {
        OperationType::BACKUP_SET_ADD_POLICIES
    }

    fn label(&self) -> &'static str {
        "Add policies to backup set"
    }

    fn params(&self) -> &'static [ParamSpec] {
        &[
            ParamSpec {
                name: "backup_set_id",
                kind: ParamKind::Int,
                required: true,
                help: "the backup set to add to",
            },
            ParamSpec {
                name: "policy_ids",
                kind: ParamKind::TextList,
                required: true,
                help: "the policies to capture (1 to 10,000 distinct ids)",
            },
        ]
    }

    fn parse_params(&self, values: &ParamValues) -> Result<RunParams, ParamError> {
        Ok(RunParams::BackupSetAddPolicies {
            backup_set_id: values.required_int("backup_set_id")?,
            policy_ids: values.required_texts("policy_ids")?,
        })
    }

    async fn validate(
        &self,
        tenant: TenantId,
        params: RunParams,
    ) -> Result<RunParams, OperationError> {
        let RunParams::BackupSetAddPolicies {
            backup_set_id,
            policy_ids,
        } = params
        else {
            return Ok(params);
        };
        require_backup_set(self.backup_sets.as_ref(), tenant, backup_set_id).await?;
        let known = self
            .provider
            .all_policies(tenant)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        let policy_ids = check_list(
            "policy_ids",
            &policy_ids,
            &known,
            MAX_POLICY_IDS,
            "unknown_policy",
        )?;
        Ok(RunParams::BackupSetAddPolicies {
            backup_set_id,
            policy_ids,
        })
    }

    fn reasons(&self) -> &'static [ReasonCode] {
        const REASONS: &[ReasonCode] = &[
            reasons::BACKUP_SET_NOT_FOUND,
            reasons::BACKUP_SET_ALREADY_PRESENT,
            reasons::POLICY_NOT_FOUND,
        ];
        REASONS
    }

    fn retryable(&self) -> bool {
        true
    }

    fn retry_params(&self, params: &RunParams, failed: &[ItemKey]) -> Option<RunParams> {
        let RunParams::BackupSetAddPolicies { backup_set_id, .. } = params else {
            return None;
        };
        Some(RunParams::BackupSetAddPolicies {
            backup_set_id: *backup_set_id,
            policy_ids: failed.iter().map(|k| k.as_str().to_owned()).collect(),
        })
    }
    /// The items are policy ids: named by the provider's policies.
    async fn item_names(
        &self,
        tenant: TenantId,
        _params: &RunParams,
        keys: &[ItemKey],
    ) -> Result<std::collections::BTreeMap<ItemKey, String>, OperationError> {
        let policies = self.provider.all_policies(tenant).await?;
        Ok(keys
            .iter()
            .filter_map(|key| {
                policies
                    .iter()
                    .find(|p| p.id == key.as_str())
                    .map(|p| (key.clone(), p.display_name()))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use opsrun_domain::RunOutcome;

    use crate::RunParams;
    use crate::ports::BackupSetStore;
    use crate::testing::harness::Harness;
    use crate::writers::WriterOutcome;

    async fn setup(h: &Harness, ids: &[&str]) -> (i64, opsrun_domain::RunId) {
        let set = h
            .families
            .create_backup_set(h.tenant.id, "nightly")
            .await
            .unwrap();
        let id = h
            .start(RunParams::BackupSetAddPolicies {
                backup_set_id: set.id,
                policy_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            })
            .await;
        (set.id, id)
    }

    #[tokio::test]
    async fn captures_new_policies_skips_present_ones_and_fails_missing_ones() {
        let h = Harness::new(6, &["p4"]);
        let (set, id) = setup(&h, &["p1", "p2", "p3", "p4", "p9"]).await;
        h.families
            .put_backup_item(set, h.fake.policies()[1].clone());

        let outcome = h.add_policies().execute(id).await.unwrap();

        assert_eq!(
            outcome,
            WriterOutcome::Completed(RunOutcome::PartiallySucceeded)
        );
        assert_eq!(
            h.counts(id).await,
            vec![
                ("total", 5),
                ("processed", 5),
                ("succeeded", 2),
                ("failed", 2),
                ("skipped", 1),
                ("created", 2)
            ]
        );
        assert_eq!(
            h.failed_reasons(id),
            vec![
                ("p4".into(), "fake.failed".into()),
                ("p9".into(), "policy.not_found".into())
            ]
        );
        assert_eq!(h.families.items(set).await.unwrap().len(), 3);
        assert_eq!(h.run(id).await.basis(), Some("5 requested policies"));
    }

    #[tokio::test]
    async fn a_retry_after_a_lost_acknowledgement_counts_the_item_as_this_runs() {
        let h = Harness::new(6, &[]);
        let (set, id) = setup(&h, &["p1", "p2", "p3"]).await;
        h.families.lose_ack_at(2);

        assert!(h.add_policies().execute(id).await.is_err());
        let resumed = h.add_policies().execute(id).await.unwrap();

        assert_eq!(resumed, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(
            h.counts(id).await,
            vec![
                ("total", 3),
                ("processed", 3),
                ("succeeded", 3),
                ("created", 3)
            ]
        );
        assert_eq!(h.families.items(set).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn cancellation_stops_at_the_next_policy() {
        let h = Harness::new(6, &[]);
        let (_, id) = setup(&h, &["p1", "p2", "p3", "p4"]).await;
        h.fake.cancel_before(2, h.service.clone(), id);

        let outcome = h.add_policies().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Stopped);
        assert_eq!(h.run(id).await.outcome(), RunOutcome::Cancelled);
        // The call that was in flight when the cancel landed is counted with it.
        assert_eq!(Harness::processed(&h.counts(id).await), 2);
        assert_eq!(h.cancelled_in_flight(id).await, 1);
    }

    #[tokio::test]
    async fn a_backup_set_gone_before_the_run_starts_blocks_it() {
        let h = Harness::new(6, &[]);
        let id = h
            .start(RunParams::BackupSetAddPolicies {
                backup_set_id: 77,
                policy_ids: vec!["p1".into()],
            })
            .await;

        let outcome = h.add_policies().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Completed(RunOutcome::Blocked));
        let run = h.run(id).await;
        assert_eq!(run.failures()[0].code.as_str(), "backup_set.not_found");
        assert_eq!(h.counts(id).await, vec![]);
    }
}
