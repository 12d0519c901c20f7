//! Run control on behalf of a caller (DESIGN §4): pause, resume, and retry of a completed
//! run's failed items. Each needs a visible run and the `operator` role, and changes nothing
//! when it refuses.

use opsrun_domain::{ItemKey, ItemOutcome, OperationRun, RunError, RunId};

use crate::access::{AccessPolicy, Caller};
use crate::families::Families;
use crate::ports::{LedgerQuery, Role, Started};
use crate::start::{OperationError, invalid};
use crate::{OperationRunService, StartRun};

/// Failed items read per page when a retry collects them.
const FAILED_PAGE: u32 = 1_000;

/// Pauses and resumes operations for a caller: needs a visible, active run and `operator`.
#[derive(Clone, Debug)]
pub struct ControlOperation {
    service: OperationRunService,
}

impl ControlOperation {
    /// The use case over the service.
    #[must_use]
    pub fn new(service: OperationRunService) -> Self {
        Self { service }
    }

    async fn active_run(&self, caller: &Caller, id: RunId) -> Result<OperationRun, OperationError> {
        let run = AccessPolicy::visible_run(caller, self.service.queries().as_ref(), id).await?;
        AccessPolicy::require(caller, Role::Operator)?;
        if run.is_completed() {
            return Err(OperationError::AlreadyCompleted(id));
        }
        Ok(run)
    }

    /// Marks the caller's notification `id` read, or with `None` every notification the
    /// caller sees; returns how many changed (reading a read one changes nothing).
    ///
    /// # Errors
    ///
    /// [`OperationError::Access`] (`NotFound` for a notification of another user, or of a
    /// tenant the token cannot see), or a failure.
    pub async fn mark_read(&self, caller: &Caller, id: Option<i64>) -> Result<u64, OperationError> {
        let visible: Vec<i64> = self
            .service
            .queries()
            .notifications(caller.user.id)
            .await
            .map_err(crate::access::AccessError::from)?
            .into_iter()
            .filter(|n| AccessPolicy::can_see_notification(caller, n.tenant))
            .map(|n| n.id)
            .collect();
        let ids = match id {
            None => visible,
            Some(id) if visible.contains(&id) => vec![id],
            Some(id) => {
                return Err(
                    crate::access::AccessError::NotFound(format!("notification {id}")).into(),
                );
            }
        };
        Ok(self
            .service
            .mark_notifications_read(caller.user.id, &ids)
            .await?)
    }

    /// Pauses the run (pausing a paused run changes nothing); returns it as it is now.
    ///
    /// # Errors
    ///
    /// [`OperationError::Access`] (not visible: not found; below operator: forbidden),
    /// [`OperationError::AlreadyCompleted`], or a failure.
    pub async fn pause(&self, caller: &Caller, id: RunId) -> Result<OperationRun, OperationError> {
        self.active_run(caller, id).await?;
        let paused = self.service.pause_run(id).await;
        self.after(paused, id).await
    }

    /// Resumes the run where it stopped (resuming a run that is not paused changes nothing);
    /// returns it as it is now.
    ///
    /// # Errors
    ///
    /// As [`Self::pause`].
    pub async fn resume(&self, caller: &Caller, id: RunId) -> Result<OperationRun, OperationError> {
        self.active_run(caller, id).await?;
        let resumed = self.service.resume_run(id).await;
        self.after(resumed, id).await
    }

    /// The run after a pause or resume; a completion that won in between is `AlreadyCompleted`.
    async fn after(
        &self,
        change: Result<opsrun_domain::Change, crate::ServiceError>,
        id: RunId,
    ) -> Result<OperationRun, OperationError> {
        change.map_err(|e| completed(e, id))?;
        Ok(self
            .service
            .queries()
            .run(id)
            .await
            .map_err(crate::ServiceError::from)?)
    }
}

fn completed(error: crate::ServiceError, id: RunId) -> OperationError {
    if error.rule() == Some(&RunError::RunAlreadyCompleted) {
        OperationError::AlreadyCompleted(id)
    } else {
        error.into()
    }
}

/// Starts a new run of the same family over exactly the failed items of a completed run
/// (`retry_of` links the two; the original never changes). Dedupe is that of any start: an
/// active run with the same identity is returned instead.
#[derive(Clone)]
pub struct RetryOperation {
    service: OperationRunService,
    families: Families,
}

impl std::fmt::Debug for RetryOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryOperation").finish_non_exhaustive()
    }
}

impl RetryOperation {
    /// The use case over the service and the family registry.
    #[must_use]
    pub fn new(service: OperationRunService, families: Families) -> Self {
        Self { service, families }
    }

    /// Retries the failed items of run `id`.
    ///
    /// # Errors
    ///
    /// [`OperationError::Access`] (not visible: not found; below operator: forbidden);
    /// [`OperationError::Conflict`] `not_completed` or `no_failed_items`;
    /// [`OperationError::Invalid`] `not_retryable` (a family whose failed items cannot be
    /// retried, or one this process does not run); or a failure.
    pub async fn execute(&self, caller: &Caller, id: RunId) -> Result<Started, OperationError> {
        let queries = self.service.queries();
        let run = AccessPolicy::visible_run(caller, queries.as_ref(), id).await?;
        AccessPolicy::require(caller, Role::Operator)?;
        let not_retryable = || {
            invalid(
                "not_retryable",
                format!(
                    "operations of type '{}' cannot retry their failed items",
                    run.operation_type()
                ),
            )
        };
        if !run.is_completed() {
            return Err(OperationError::Conflict {
                code: "not_completed",
                message: format!("operation {id} is not completed yet"),
            });
        }
        let family = self
            .families
            .get(run.operation_type())
            .filter(|f| f.retryable())
            .ok_or_else(not_retryable)?;
        let failed = self.failed_items(id).await?;
        let params = queries
            .run_params(id)
            .await
            .map_err(crate::ServiceError::from)?;
        if failed.is_empty() {
            return Err(OperationError::Conflict {
                code: "no_failed_items",
                message: format!("operation {id} has no failed items"),
            });
        }
        let params = family
            .retry_params(&params, &failed)
            .ok_or_else(not_retryable)?;
        Ok(self
            .service
            .start_run(StartRun {
                workspace: run.workspace(),
                tenant: run.tenant(),
                params,
                initiator: Some(caller.user.id),
                parent: None,
                retry_of: Some(id),
            })
            .await?)
    }

    async fn failed_items(&self, id: RunId) -> Result<Vec<ItemKey>, OperationError> {
        let mut failed = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .service
                .queries()
                .ledger_entries(LedgerQuery {
                    run: id,
                    outcome: Some(ItemOutcome::Failed),
                    after: after.clone(),
                    limit: FAILED_PAGE,
                })
                .await
                .map_err(crate::ServiceError::from)?;
            let full = page.len() == FAILED_PAGE as usize;
            after = page.last().map(|(k, _)| k.clone());
            failed.extend(page.into_iter().map(|(k, _)| k));
            if !full {
                return Ok(failed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use opsrun_domain::{RunOutcome, SummaryKey};

    use super::*;
    use crate::RunParams;
    use crate::TenantScope;
    use crate::access::Via;
    use crate::ports::{Job, RunQueries};
    use crate::testing::harness::Harness;
    use crate::writers::{WriterOutcome, Writers};

    fn caller(h: &Harness, role: Role) -> Caller {
        Caller {
            user: h.user.clone(),
            role,
            scope: TenantScope::All,
            via: Via::Local,
        }
    }

    fn writers(h: &Harness) -> Writers {
        Writers::with_families(h.service.clone(), h.families_registry())
    }

    #[tokio::test]
    async fn a_paused_run_does_nothing_until_resumed_then_ends_exact() {
        let h = Harness::new(8, &[]);
        let id = h
            .start(RunParams::InventorySync { policy_types: None })
            .await;
        let control = ControlOperation::new(h.service.clone());
        let readonly = control.pause(&caller(&h, Role::Readonly), id).await;
        control
            .pause(&caller(&h, Role::Operator), id)
            .await
            .unwrap();

        let paused = writers(&h).execute(&Job::Run { run: id }).await.unwrap();
        let calls_while_paused = h.fake.calls();
        let resumed = control
            .resume(&caller(&h, Role::Operator), id)
            .await
            .unwrap();
        let job = h.queue.pop();
        let done = writers(&h).execute(&Job::Run { run: id }).await.unwrap();

        assert!(matches!(readonly, Err(OperationError::Access(_))));
        assert_eq!(paused, WriterOutcome::Paused);
        assert_eq!(calls_while_paused, 0);
        assert!(!resumed.is_paused());
        assert_eq!(job, Some(Job::Run { run: id }));
        assert_eq!(done, WriterOutcome::Completed(RunOutcome::Succeeded));
        let run = h.run(id).await;
        assert_eq!(run.counts().get(SummaryKey::Processed), Some(4));
        assert_eq!(h.notifications().await, 1);
        let again = control.pause(&caller(&h, Role::Operator), id).await;
        assert!(matches!(again, Err(OperationError::AlreadyCompleted(_))));
    }

    #[tokio::test]
    async fn a_retry_runs_exactly_the_failed_items_and_links_both_ways() {
        let h = Harness::new(8, &["compliance_policy"]);
        let retry = RetryOperation::new(h.service.clone(), h.families_registry());
        let operator = caller(&h, Role::Operator);
        let id = h
            .start(RunParams::InventorySync { policy_types: None })
            .await;
        let active = retry.execute(&operator, id).await;
        writers(&h).execute(&Job::Run { run: id }).await.unwrap();

        let started = retry.execute(&operator, id).await.unwrap();
        let params = h.store.run_params(started.run.id()).await.unwrap();
        h.queue.pop();
        writers(&h)
            .execute(&Job::Run {
                run: started.run.id(),
            })
            .await
            .unwrap();
        let retried = h.run(started.run.id()).await;

        assert!(matches!(
            active,
            Err(OperationError::Conflict {
                code: "not_completed",
                ..
            })
        ));
        assert_eq!(
            params,
            RunParams::InventorySync {
                policy_types: Some(vec!["compliance_policy".into()])
            }
        );
        assert_eq!(retried.retry_of(), Some(id));
        assert_eq!(retried.counts().get(SummaryKey::Total), Some(1));
        assert_eq!(retried.counts().get(SummaryKey::Processed), Some(1));
        assert_eq!(
            h.store.retries_of(id).await.unwrap(),
            vec![started.run.id()]
        );
        // A phased family answers not_retryable, even with nothing failed.
        let capture = h.start(RunParams::BaselineCapture).await;
        h.service.cancel_run(capture, None).await.unwrap();
        let refused = retry.execute(&operator, capture).await;
        assert!(matches!(
            refused,
            Err(OperationError::Invalid {
                code: "not_retryable",
                ..
            })
        ));
    }
}
