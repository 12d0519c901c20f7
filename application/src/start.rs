//! Starting and cancelling operations on behalf of a caller: access, parameter validation
//! against what exists in the tenant, then the service.

use std::collections::BTreeSet;
use std::sync::Arc;

use opsrun_domain::{OperationRun, RunId, Slug, TenantId};

use crate::access::{AccessError, AccessPolicy, Caller};
use crate::families::Families;
use crate::ports::{BackupSetStore, Directory, Role, Started};
use crate::{
    FamilyStoreError, OperationRunService, ProviderError, RunParams, ServiceError, StartRun,
};

/// Most entries a list parameter (`policy_types`, `sections`) may have.
pub const MAX_LIST_PARAM: usize = 100;

/// Why an operation was not started or cancelled. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// Access refused (not found, or role too low).
    #[error(transparent)]
    Access(#[from] AccessError),
    /// A parameter is invalid or names something the tenant does not have.
    #[error("{message}")]
    Invalid {
        /// Stable snake_case code, e.g. `unknown_backup_set`.
        code: &'static str,
        /// Human sentence.
        message: String,
    },
    /// The run is already completed (cancel, pause, resume).
    #[error("operation {0} is already completed")]
    AlreadyCompleted(RunId),
    /// The run is not in a state that allows this (e.g. a retry of a run still active).
    #[error("{message}")]
    Conflict {
        /// Stable snake_case code, e.g. `no_failed_items`.
        code: &'static str,
        /// Human sentence.
        message: String,
    },
    /// The run service failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The tenant's provider failed while validating.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A family store failed while validating.
    #[error(transparent)]
    FamilyStore(#[from] FamilyStoreError),
}

pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> OperationError {
    OperationError::Invalid {
        code,
        message: message.into(),
    }
}

/// Keeps the first occurrence of each entry.
pub(crate) fn dedup<T: Ord + Clone>(list: &[T]) -> Vec<T> {
    let mut seen = BTreeSet::new();
    list.iter()
        .filter(|v| seen.insert((*v).clone()))
        .cloned()
        .collect()
}

pub(crate) fn check_list(
    name: &str,
    list: &[String],
    known: &BTreeSet<String>,
    max: usize,
    unknown_code: &'static str,
) -> Result<Vec<String>, OperationError> {
    let list = dedup(list);
    if list.is_empty() || list.len() > max {
        return Err(invalid(
            "invalid_params",
            format!("{name} must hold 1 to {max} distinct entries"),
        ));
    }
    if let Some(bad) = list.iter().find(|v| !known.contains(*v)) {
        return Err(invalid(
            unknown_code,
            format!("{name}: '{bad}' does not exist in this tenant"),
        ));
    }
    Ok(list)
}

/// A backup set of the tenant, or `unknown_backup_set` (also when it belongs to another).
pub(crate) async fn require_backup_set(
    backup_sets: &dyn BackupSetStore,
    tenant: TenantId,
    id: i64,
) -> Result<(), OperationError> {
    if backup_sets.backup_set(tenant, id).await?.is_none() {
        return Err(invalid(
            "unknown_backup_set",
            format!("backup set {id} does not exist in this tenant"),
        ));
    }
    Ok(())
}

/// Starts an operation for a caller: needs `operator`, a visible tenant, a registered family
/// and parameters its family validates against the tenant.
#[derive(Clone)]
pub struct StartOperation {
    service: OperationRunService,
    directory: Arc<dyn Directory>,
    families: Families,
}

impl std::fmt::Debug for StartOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOperation").finish_non_exhaustive()
    }
}

impl StartOperation {
    /// The use case over the service, the directory and the family registry.
    #[must_use]
    pub fn new(
        service: OperationRunService,
        directory: Arc<dyn Directory>,
        families: Families,
    ) -> Self {
        Self {
            service,
            directory,
            families,
        }
    }

    /// Validates and starts; returns the new run, or the active run with the same identity.
    ///
    /// # Errors
    ///
    /// [`OperationError::Access`] (tenant not visible: not found; role below operator:
    /// forbidden), [`OperationError::Invalid`] with a stable code, or a failure.
    pub async fn execute(
        &self,
        caller: &Caller,
        tenant: &Slug,
        params: RunParams,
    ) -> Result<Started, OperationError> {
        let tenant = AccessPolicy::visible_tenant(caller, self.directory.as_ref(), tenant).await?;
        AccessPolicy::require(caller, Role::Operator)?;
        let operation_type = params.operation_type();
        let family = self.families.get(&operation_type).ok_or_else(|| {
            invalid(
                "unknown_type",
                format!("'{operation_type}' is not an operation type"),
            )
        })?;
        let params = family.validate(tenant.id, params).await?;
        Ok(self
            .service
            .start_run(StartRun {
                workspace: tenant.workspace,
                tenant: tenant.id,
                params,
                initiator: Some(caller.user.id),
                parent: None,
                retry_of: None,
            })
            .await?)
    }
}

/// Cancels an operation for a caller: needs a visible run and the `owner` role.
#[derive(Clone, Debug)]
pub struct CancelOperation {
    service: OperationRunService,
}

impl CancelOperation {
    /// The use case over the service.
    #[must_use]
    pub fn new(service: OperationRunService) -> Self {
        Self { service }
    }

    /// Cancels the run; returns it completed with outcome `cancelled`.
    ///
    /// # Errors
    ///
    /// [`OperationError::Access`] (not visible: not found; role below owner: forbidden),
    /// [`OperationError::AlreadyCompleted`], or a failure.
    pub async fn execute(
        &self,
        caller: &Caller,
        id: RunId,
    ) -> Result<OperationRun, OperationError> {
        let run = AccessPolicy::visible_run(caller, self.service.queries().as_ref(), id).await?;
        AccessPolicy::require(caller, Role::Owner)?;
        if run.is_completed() {
            return Err(OperationError::AlreadyCompleted(id));
        }
        let completed = self.service.cancel_run(id, Some(caller.user.id)).await?;
        if !completed.won {
            return Err(OperationError::AlreadyCompleted(id));
        }
        Ok(completed.run)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use opsrun_domain::{RunOutcome, Slug, WorkspaceId};

    use super::*;
    use crate::MAX_POLICY_IDS;
    use crate::ports::{BackupSetStore, RunQueries};
    use crate::testing::harness::Harness;

    fn caller(h: &Harness, role: Role) -> Caller {
        Caller {
            user: h.user.clone(),
            role,
            scope: TenantScope::All,
            via: crate::access::Via::Local,
        }
    }

    fn start(h: &Harness) -> StartOperation {
        StartOperation::new(h.service.clone(), h.store.clone(), h.families_registry())
    }

    fn contoso() -> Slug {
        Slug::parse("contoso").unwrap()
    }

    fn code(result: Result<Started, OperationError>) -> &'static str {
        match result {
            Err(OperationError::Invalid { code, .. }) => code,
            Err(OperationError::Access(AccessError::NotFound(_))) => "not_found",
            Err(OperationError::Access(AccessError::Forbidden { .. })) => "forbidden",
            other => panic!("unexpected {other:?}"),
        }
    }

    use crate::TenantScope;

    #[tokio::test]
    async fn an_operator_starts_a_run_and_a_second_start_reuses_it() {
        let h = Harness::new(4, &[]);

        let first = start(&h)
            .execute(
                &caller(&h, Role::Operator),
                &contoso(),
                RunParams::BaselineCapture,
            )
            .await
            .unwrap();
        let second = start(&h)
            .execute(
                &caller(&h, Role::Operator),
                &contoso(),
                RunParams::BaselineCapture,
            )
            .await
            .unwrap();

        assert!(!first.reused);
        assert!(second.reused);
        assert_eq!(first.run.initiator(), Some(h.user.id));
    }

    #[tokio::test]
    async fn readonly_cannot_start() {
        let h = Harness::new(4, &[]);

        let result = start(&h)
            .execute(
                &caller(&h, Role::Readonly),
                &contoso(),
                RunParams::BaselineCapture,
            )
            .await;

        assert_eq!(code(result), "forbidden");
        assert!(h.store.active_runs().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_tenant_outside_the_callers_scope_is_not_found() {
        let h = Harness::new(4, &[]);
        let other = h
            .store
            .add_tenant(WorkspaceId::new(1), Slug::parse("fabrikam").unwrap());
        let mut scoped = caller(&h, Role::Owner);
        scoped.scope = TenantScope::Only(BTreeSet::from([h.tenant.id]));

        let hidden = start(&h)
            .execute(&scoped, &other.slug, RunParams::BaselineCapture)
            .await;
        let absent = start(&h)
            .execute(
                &scoped,
                &Slug::parse("nowhere").unwrap(),
                RunParams::BaselineCapture,
            )
            .await;

        assert_eq!(code(hidden), "not_found");
        assert_eq!(code(absent), "not_found");
    }

    #[tokio::test]
    async fn parameters_naming_what_the_tenant_lacks_are_refused_with_stable_codes() {
        let h = Harness::new(4, &[]);
        let set = h
            .families
            .create_backup_set(h.tenant.id, "s")
            .await
            .unwrap()
            .id;
        let op = caller(&h, Role::Operator);
        let s = start(&h);
        let cases = [
            (
                RunParams::InventorySync {
                    policy_types: Some(vec!["nope".into()]),
                },
                "unknown_policy_type",
            ),
            (
                RunParams::InventorySync {
                    policy_types: Some(vec![]),
                },
                "invalid_params",
            ),
            (
                RunParams::ReviewPackGenerate {
                    sections: Some(vec!["summary".into(), "nope".into()]),
                },
                "unknown_section",
            ),
            (
                RunParams::BackupSetAddPolicies {
                    backup_set_id: 99,
                    policy_ids: vec!["p1".into()],
                },
                "unknown_backup_set",
            ),
            (
                RunParams::BackupSetAddPolicies {
                    backup_set_id: set,
                    policy_ids: vec!["p1".into(), "p77".into()],
                },
                "unknown_policy",
            ),
            (
                RunParams::BackupSetRestore {
                    backup_set_id: set,
                    item_ids: Some(vec![5]),
                },
                "unknown_backup_item",
            ),
            (
                RunParams::BaselineCompare { baseline_id: 3 },
                "unknown_baseline",
            ),
        ];
        for (params, expected) in cases {
            let result = s.execute(&op, &contoso(), params.clone()).await;

            assert_eq!(code(result), expected, "{params:?}");
        }
        assert!(h.store.active_runs().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn repeated_policy_ids_count_once_after_dedup() {
        let h = Harness::new(4, &[]);
        let set = h
            .families
            .create_backup_set(h.tenant.id, "s")
            .await
            .unwrap()
            .id;
        let mut ids = vec!["p2".to_owned(); MAX_POLICY_IDS + 1];
        ids.push("p1".into());

        let started = start(&h)
            .execute(
                &caller(&h, Role::Operator),
                &contoso(),
                RunParams::BackupSetAddPolicies {
                    backup_set_id: set,
                    policy_ids: ids,
                },
            )
            .await
            .unwrap();

        assert_eq!(
            h.store.run_params(started.run.id()).await.unwrap(),
            RunParams::BackupSetAddPolicies {
                backup_set_id: set,
                policy_ids: vec!["p2".into(), "p1".into()]
            }
        );
    }

    #[tokio::test]
    async fn more_than_ten_thousand_distinct_policy_ids_are_refused() {
        let h = Harness::new(4, &[]);
        let set = h
            .families
            .create_backup_set(h.tenant.id, "s")
            .await
            .unwrap()
            .id;
        let ids = (0..=MAX_POLICY_IDS).map(|i| format!("x{i}")).collect();

        let result = start(&h)
            .execute(
                &caller(&h, Role::Operator),
                &contoso(),
                RunParams::BackupSetAddPolicies {
                    backup_set_id: set,
                    policy_ids: ids,
                },
            )
            .await;

        assert_eq!(code(result), "invalid_params");
    }

    #[tokio::test]
    async fn an_operator_cannot_cancel_and_an_owner_can_once() {
        let h = Harness::new(4, &[]);
        let id = h.start(RunParams::BaselineCapture).await;
        let cancel = CancelOperation::new(h.service.clone());

        let operator = cancel.execute(&caller(&h, Role::Operator), id).await;
        let owner = cancel.execute(&caller(&h, Role::Owner), id).await.unwrap();
        let again = cancel.execute(&caller(&h, Role::Owner), id).await;

        assert!(matches!(
            operator,
            Err(OperationError::Access(AccessError::Forbidden { .. }))
        ));
        assert_eq!(owner.outcome(), RunOutcome::Cancelled);
        assert!(matches!(again, Err(OperationError::AlreadyCompleted(_))));
    }

    #[tokio::test]
    async fn cancelling_a_run_of_a_hidden_tenant_is_not_found() {
        let h = Harness::new(4, &[]);
        let id = h.start(RunParams::BaselineCapture).await;
        let mut scoped = caller(&h, Role::Owner);
        scoped.scope = TenantScope::Only(BTreeSet::new());

        let result = CancelOperation::new(h.service.clone())
            .execute(&scoped, id)
            .await;

        assert!(matches!(
            result,
            Err(OperationError::Access(AccessError::NotFound(_)))
        ));
        assert!(!h.store.run(id).await.unwrap().is_completed());
    }
}
