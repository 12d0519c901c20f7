//! The in-memory reference implementation of the run store and directory ports, built directly
//! on the domain model. It is what embedding hosts use for tests, what the application's own
//! tests use, and the model the storage contract suite checks SQL adapters against.
//!
//! Each call holds one lock for its whole mutation, so every call is atomic, like a
//! transaction in a SQL store. Nothing is durable.

mod families;
mod webhooks;

pub use families::MemoryFamilies;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use opsrun_domain::{
    Admission, AuxDeltas, Change, ChildJobLedger, Claim, Completion, ComponentState, Components,
    Drift, ItemKey, ItemLedger, ItemRecord, LedgerEntry, NewRun, OperationRun, Phases,
    RecordWindow, Recorded, RunError, RunId, RunStatus, Slug, TenantId, TenantLoad, Timestamp,
    UserId, WorkSet, WorkspaceId,
};

use crate::auth::TokenHash;
use crate::ports::{
    AuditEvent, Completed, CreateRun, Directory, DirectoryAdmin, LedgerQuery, NamedRun, NewSession,
    NewToken, Notification, Pruned, Retention, RunQueries, RunQuery, RunStore, SessionOwner,
    Started, Tenant, TenantActivity, TenantScope, TerminalEffects, TokenId, TokenOwner,
    TokenRecord, Tokens, User, completion_action,
};
use crate::{RunParams, StoreError};

struct Entry {
    run: OperationRun,
    ledger: ItemLedger,
    params: RunParams,
    children: ChildJobLedger,
}

struct StoredToken {
    id: TokenId,
    new: NewToken,
    last_used_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
}

struct StoredSession {
    hash: TokenHash,
    token: TokenId,
    created_at: Timestamp,
    last_seen_at: Timestamp,
}

#[derive(Default)]
struct State {
    runs: BTreeMap<RunId, Entry>,
    next_run: i64,
    audit: Vec<AuditEvent>,
    notifications: Vec<Notification>,
    workspaces: Vec<(WorkspaceId, Slug)>,
    tenants: Vec<Tenant>,
    users: Vec<User>,
    tokens: Vec<StoredToken>,
    sessions: Vec<StoredSession>,
    tenant_limits: BTreeMap<TenantId, u32>,
    webhooks: webhooks::Webhooks,
}

impl State {
    fn user_of(&self, token: &StoredToken) -> Result<User, StoreError> {
        self.users
            .iter()
            .find(|u| u.id == token.new.user)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("token of unknown user {}", token.new.user)))
    }

    /// The owner of the first unrevoked token that matches.
    fn owner(
        &self,
        matches: impl Fn(&StoredToken) -> bool,
    ) -> Result<Option<TokenOwner>, StoreError> {
        let Some(token) = self
            .tokens
            .iter()
            .find(|t| t.revoked_at.is_none() && matches(t))
        else {
            return Ok(None);
        };
        Ok(Some(TokenOwner {
            token: token.id,
            user: self.user_of(token)?,
            role: token.new.role,
            scope: token.new.scope.clone(),
            expires_at: token.new.expires_at,
            last_used_at: token.last_used_at,
        }))
    }

    fn record(&self, token: &StoredToken) -> Result<TokenRecord, StoreError> {
        let user = self.user_of(token)?;
        Ok(TokenRecord {
            id: token.id,
            workspace: user.workspace,
            email: user.email,
            role: token.new.role,
            scope: token.new.scope.clone(),
            created_at: token.new.at,
            expires_at: token.new.expires_at,
            last_used_at: token.last_used_at,
            revoked_at: token.revoked_at,
        })
    }

    /// `run` with its tenant's slug and its initiator's e-mail.
    fn named(&self, run: &OperationRun) -> Result<NamedRun, StoreError> {
        let tenant = self
            .tenants
            .iter()
            .find(|t| t.id == run.tenant())
            .ok_or_else(|| StoreError::NotFound(format!("tenant {}", run.tenant())))?;
        let initiator = match run.initiator() {
            Some(id) => Some(
                self.users
                    .iter()
                    .find(|u| u.id == id)
                    .ok_or_else(|| StoreError::NotFound(format!("user {id}")))?
                    .email
                    .clone(),
            ),
            None => None,
        };
        Ok(NamedRun {
            run: run.clone(),
            tenant: tenant.slug.clone(),
            initiator,
        })
    }
}

/// In-memory run store and directory.
#[derive(Default)]
pub struct MemoryRunStore {
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryRunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRunStore").finish_non_exhaustive()
    }
}

impl MemoryRunStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change: every mutation
        // is computed on the domain model and only then stored. So a poisoned lock is safe.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a tenant (ids are assigned in order, from 1), or returns the workspace's tenant
    /// with this slug.
    pub fn add_tenant(&self, workspace: WorkspaceId, slug: Slug) -> Tenant {
        let mut state = self.lock();
        if let Some(existing) = state
            .tenants
            .iter()
            .find(|t| t.workspace == workspace && t.slug == slug)
        {
            return existing.clone();
        }
        let tenant = Tenant {
            id: TenantId::new(state.tenants.len() as i64 + 1),
            workspace,
            slug,
        };
        state.tenants.push(tenant.clone());
        tenant
    }

    /// Adds a user (ids are assigned in order, from 1), or returns the workspace's user with
    /// this e-mail.
    pub fn add_user(&self, workspace: WorkspaceId, email: &str) -> User {
        let mut state = self.lock();
        if let Some(existing) = state
            .users
            .iter()
            .find(|u| u.workspace == workspace && u.email == email)
        {
            return existing.clone();
        }
        let user = User {
            id: UserId::new(state.users.len() as i64 + 1),
            workspace,
            email: email.to_owned(),
        };
        state.users.push(user.clone());
        user
    }

    /// The run's full ledger (for tests and the contract suite).
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`].
    pub fn ledger(&self, id: RunId) -> Result<ItemLedger, StoreError> {
        let state = self.lock();
        state
            .runs
            .get(&id)
            .map(|e| e.ledger.clone())
            .ok_or(StoreError::RunNotFound(id))
    }

    /// Replaces a run's stored state as it is, without any rule: for tests that need a
    /// legacy or drifted row.
    pub fn put_raw(&self, run: OperationRun, ledger: ItemLedger, params: RunParams) {
        let mut state = self.lock();
        state.next_run = state.next_run.max(run.id().value());
        state.runs.insert(
            run.id(),
            Entry {
                run,
                ledger,
                params,
                children: ChildJobLedger::new(),
            },
        );
    }

    fn with_entry<T>(
        &self,
        id: RunId,
        change: impl FnOnce(&mut OperationRun, &mut ItemLedger) -> Result<T, RunError>,
    ) -> Result<T, StoreError> {
        let mut state = self.lock();
        let entry = state.runs.get_mut(&id).ok_or(StoreError::RunNotFound(id))?;
        // The domain's contract is that a refusal leaves run and ledger unchanged (every check
        // comes before the first write), so the ledger is changed in place: copying it per
        // call made recording O(n²). The run is small; it is still applied only on success.
        let mut run = entry.run.clone();
        let value = change(&mut run, &mut entry.ledger)?;
        entry.run = run;
        Ok(value)
    }

    /// Applies `change` to the run's child-job ledger and shows its counts on the run.
    fn with_children(
        &self,
        id: RunId,
        change: impl FnOnce(&mut ChildJobLedger) -> bool,
    ) -> Result<Change, StoreError> {
        let mut state = self.lock();
        let entry = state.runs.get_mut(&id).ok_or(StoreError::RunNotFound(id))?;
        let changed = change(&mut entry.children);
        entry.run.show_children(entry.children.counts());
        Ok(if changed {
            Change::Applied
        } else {
            Change::Unchanged
        })
    }

    fn read<T>(&self, id: RunId, read: impl FnOnce(&Entry) -> T) -> Result<T, StoreError> {
        let state = self.lock();
        state
            .runs
            .get(&id)
            .map(read)
            .ok_or(StoreError::RunNotFound(id))
    }
}

#[async_trait]
impl RunQueries for MemoryRunStore {
    async fn run(&self, id: RunId) -> Result<OperationRun, StoreError> {
        self.read(id, |e| e.run.clone())
    }

    async fn visible_run(
        &self,
        id: RunId,
        workspace: WorkspaceId,
        scope: &TenantScope,
    ) -> Result<Option<OperationRun>, StoreError> {
        let state = self.lock();
        Ok(state
            .runs
            .get(&id)
            .map(|e| &e.run)
            .filter(|r| r.workspace() == workspace && scope.allows(r.tenant()))
            .cloned())
    }

    async fn run_params(&self, id: RunId) -> Result<RunParams, StoreError> {
        self.read(id, |e| e.params.clone())
    }

    async fn work_set(&self, id: RunId) -> Result<Option<WorkSet>, StoreError> {
        self.read(id, |e| e.ledger.work_set().cloned())
    }

    async fn ledger_keys(&self, id: RunId) -> Result<BTreeSet<ItemKey>, StoreError> {
        self.read(id, |e| e.ledger.entries().map(|(k, _)| k.clone()).collect())
    }

    async fn ledger_entries(
        &self,
        query: LedgerQuery,
    ) -> Result<Vec<(ItemKey, LedgerEntry)>, StoreError> {
        self.read(query.run, |e| {
            e.ledger
                .entries()
                .filter(|(k, _)| query.after.as_ref().is_none_or(|after| *k > after))
                .filter(|(_, v)| query.outcome.is_none_or(|o| v.outcome == o))
                .take(query.limit as usize)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    async fn active_runs(&self) -> Result<Vec<OperationRun>, StoreError> {
        let state = self.lock();
        Ok(state
            .runs
            .values()
            .filter(|e| e.run.status().is_active())
            .map(|e| e.run.clone())
            .collect())
    }

    async fn census(&self) -> Result<Vec<crate::ports::RunCensus>, StoreError> {
        let state = self.lock();
        let mut counts: BTreeMap<(String, &'static str, &'static str), crate::ports::RunCensus> =
            BTreeMap::new();
        for entry in state.runs.values().filter(|e| e.run.parent().is_none()) {
            let run = &entry.run;
            let key = (
                run.operation_type().key().to_owned(),
                run.status().key(),
                run.outcome().key(),
            );
            counts
                .entry(key)
                .or_insert_with(|| crate::ports::RunCensus {
                    operation_type: run.operation_type().clone(),
                    status: run.status(),
                    outcome: run.outcome(),
                    count: 0,
                })
                .count += 1;
        }
        Ok(counts.into_values().collect())
    }

    async fn list_runs(&self, query: RunQuery) -> Result<Vec<NamedRun>, StoreError> {
        let state = self.lock();
        state
            .runs
            .values()
            .rev()
            .map(|e| &e.run)
            .filter(|r| r.workspace() == query.workspace && query.scope.allows(r.tenant()))
            .filter(|r| query.tenant.is_none_or(|t| r.tenant() == t))
            .filter(|r| {
                query
                    .operation_type
                    .as_ref()
                    .is_none_or(|t| r.operation_type() == t)
            })
            .filter(|r| query.status.is_none_or(|s| r.status() == s))
            .filter(|r| query.outcome.is_none_or(|o| r.outcome() == o))
            .filter(|r| query.before.is_none_or(|b| r.id() < b))
            .filter(|r| query.created_since.is_none_or(|t| r.created_at() >= t))
            .filter(|r| !query.top_level_only || r.parent().is_none())
            .take(query.limit as usize)
            .map(|r| state.named(r))
            .collect()
    }

    async fn activity(
        &self,
        workspace: WorkspaceId,
        slug: &Slug,
        completed_since: Timestamp,
    ) -> Result<TenantActivity, StoreError> {
        let state = self.lock();
        let tenant = state
            .tenants
            .iter()
            .find(|t| t.workspace == workspace && t.slug == *slug)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("tenant '{slug}'")))?;
        let runs = state
            .runs
            .values()
            .rev()
            .map(|e| &e.run)
            .filter(|r| r.tenant() == tenant.id && r.parent().is_none())
            .filter(|r| {
                r.status() != RunStatus::Completed
                    || r.completed_at().is_some_and(|at| at >= completed_since)
            })
            .map(|r| state.named(r))
            .collect::<Result<_, _>>()?;
        Ok(TenantActivity { tenant, runs })
    }

    async fn children(&self, parent: RunId) -> Result<Vec<OperationRun>, StoreError> {
        let state = self.lock();
        Ok(state
            .runs
            .values()
            .map(|e| &e.run)
            .filter(|r| r.parent() == Some(parent))
            .cloned()
            .collect())
    }

    async fn audit_events(&self, run: RunId) -> Result<Vec<AuditEvent>, StoreError> {
        let state = self.lock();
        Ok(state
            .audit
            .iter()
            .filter(|a| a.run == run)
            .cloned()
            .collect())
    }

    async fn record_window(
        &self,
        id: RunId,
        now: Timestamp,
    ) -> Result<Option<RecordWindow>, StoreError> {
        self.read(id, |e| {
            RecordWindow::from_times(e.ledger.entries().map(|(_, entry)| entry.recorded_at), now)
        })
    }

    async fn retries_of(&self, id: RunId) -> Result<Vec<RunId>, StoreError> {
        Ok(self
            .lock()
            .runs
            .values()
            .filter(|e| e.run.retry_of() == Some(id))
            .map(|e| e.run.id())
            .collect())
    }

    async fn tenant_limit(&self, tenant: TenantId) -> Result<Option<u32>, StoreError> {
        Ok(self.lock().tenant_limits.get(&tenant).copied())
    }

    async fn notifications(&self, user: UserId) -> Result<Vec<Notification>, StoreError> {
        let state = self.lock();
        Ok(state
            .notifications
            .iter()
            .rev()
            .filter(|n| n.user == user)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl RunStore for MemoryRunStore {
    async fn create_run(&self, new: CreateRun) -> Result<Started, StoreError> {
        let mut state = self.lock();
        let identity = opsrun_domain::identity(
            new.tenant,
            &new.params.operation_type(),
            &new.params.target(),
        );
        if let Some(active) = state
            .runs
            .values()
            .find(|e| e.run.status().is_active() && e.run.identity() == identity)
        {
            return Ok(Started {
                run: active.run.clone(),
                reused: true,
            });
        }
        state.next_run += 1;
        let id = RunId::new(state.next_run);
        let run = OperationRun::new(NewRun {
            id,
            workspace: new.workspace,
            tenant: new.tenant,
            operation_type: new.params.operation_type(),
            target: new.params.target(),
            initiator: new.initiator,
            parent: new.parent,
            retry_of: new.retry_of,
            created_at: new.at,
        });
        state.runs.insert(
            id,
            Entry {
                run: run.clone(),
                ledger: ItemLedger::new(),
                params: new.params,
                children: ChildJobLedger::new(),
            },
        );
        Ok(Started { run, reused: false })
    }

    async fn mark_running(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        self.with_entry(id, |run, _| run.mark_running(at))
    }

    async fn admit(
        &self,
        id: RunId,
        at: Timestamp,
        default_limit: u32,
    ) -> Result<Admission, StoreError> {
        let mut state = self.lock();
        let entry = state.runs.get(&id).ok_or(StoreError::RunNotFound(id))?;
        let tenant = entry.run.tenant();
        let child = entry.run.parent().is_some();
        let running = state
            .runs
            .values()
            .filter(|e| {
                e.run.id() != id
                    && e.run.tenant() == tenant
                    && e.run.parent().is_none()
                    && e.run.status() == RunStatus::Running
            })
            .count();
        let limit = state
            .tenant_limits
            .get(&tenant)
            .copied()
            .unwrap_or(default_limit);
        let load = TenantLoad {
            running: if child {
                0
            } else {
                u32::try_from(running).unwrap_or(u32::MAX)
            },
            limit,
        };
        let entry = state.runs.get_mut(&id).ok_or(StoreError::RunNotFound(id))?;
        let mut run = entry.run.clone();
        let admission = run.admit(at, load)?;
        entry.run = run;
        Ok(admission)
    }

    async fn pause(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        self.with_entry(id, |run, _| run.pause(at))
    }

    async fn resume(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        self.with_entry(id, |run, _| run.resume(at))
    }

    async fn mark_notifications_read(
        &self,
        user: UserId,
        ids: &[i64],
        _at: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let mut changed = 0;
        for n in state
            .notifications
            .iter_mut()
            .filter(|n| n.user == user && !n.read && ids.contains(&n.id))
        {
            n.read = true;
            changed += 1;
        }
        Ok(changed)
    }

    async fn set_tenant_limit(
        &self,
        tenant: TenantId,
        limit: Option<u32>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        match limit {
            Some(limit) => state.tenant_limits.insert(tenant, limit),
            None => state.tenant_limits.remove(&tenant),
        };
        Ok(())
    }

    async fn set_total(&self, id: RunId, work_set: WorkSet) -> Result<Change, StoreError> {
        self.with_entry(id, |run, ledger| run.set_total(ledger, work_set))
    }

    async fn record_items_keyed(
        &self,
        id: RunId,
        records: Vec<ItemRecord>,
        at: Timestamp,
    ) -> Result<Recorded, StoreError> {
        self.with_entry(id, |run, ledger| {
            run.record_items_keyed(ledger, records, at)
        })
    }

    async fn child_jobs_enqueued(
        &self,
        id: RunId,
        first: u64,
        count: u64,
    ) -> Result<Change, StoreError> {
        self.with_children(id, |jobs| jobs.enqueued(first, count))
    }

    async fn child_job_finished(&self, id: RunId, job: u64) -> Result<Change, StoreError> {
        self.with_children(id, |jobs| jobs.finished(job))
    }

    async fn reserve_child_jobs(&self, id: RunId, count: u64) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let entry = state.runs.get_mut(&id).ok_or(StoreError::RunNotFound(id))?;
        Ok(entry.children.reserve(count))
    }

    async fn claim_item(
        &self,
        id: RunId,
        key: ItemKey,
        _at: Timestamp,
    ) -> Result<Claim, StoreError> {
        self.with_entry(id, |run, ledger| run.claim_item(ledger, &key))
    }

    async fn claim_items(
        &self,
        id: RunId,
        keys: Vec<ItemKey>,
        _at: Timestamp,
    ) -> Result<Vec<Result<Claim, RunError>>, StoreError> {
        self.with_entry(id, |run, ledger| Ok(run.claim_items(ledger, &keys)))
    }

    async fn increment(
        &self,
        id: RunId,
        increment_key: ItemKey,
        deltas: AuxDeltas,
    ) -> Result<Change, StoreError> {
        self.with_entry(id, |run, ledger| {
            run.increment(ledger, &increment_key, &deltas)
        })
    }

    async fn declare_phases(&self, id: RunId, phases: Phases) -> Result<Change, StoreError> {
        self.with_entry(id, |run, _| run.declare_phases(phases))
    }

    async fn enter_phase(
        &self,
        id: RunId,
        key: String,
        at: Timestamp,
    ) -> Result<Change, StoreError> {
        self.with_entry(id, |run, _| run.enter_phase_at(&key, at))
    }

    async fn declare_components(
        &self,
        id: RunId,
        components: Components,
    ) -> Result<Change, StoreError> {
        self.with_entry(id, |run, _| run.declare_components(components))
    }

    async fn update_component(
        &self,
        id: RunId,
        key: String,
        state: ComponentState,
    ) -> Result<Change, StoreError> {
        self.with_entry(id, |run, _| run.update_component(&key, state))
    }

    async fn heartbeat(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        self.with_entry(id, |run, _| run.heartbeat(at))
    }

    async fn complete(
        &self,
        id: RunId,
        completion: Completion,
        effects: TerminalEffects,
    ) -> Result<Completed, StoreError> {
        let mut state = self.lock();
        let entry = state.runs.get_mut(&id).ok_or(StoreError::RunNotFound(id))?;
        let mut run = entry.run.clone();
        let at = completion.at;
        match run.complete_settling(&mut entry.ledger, completion) {
            Ok(outcome) => {
                entry.run = run.clone();
                let action = completion_action(outcome);
                let audit_id = state.audit.len() as i64 + 1;
                state.audit.push(AuditEvent {
                    id: audit_id,
                    run: id,
                    action: action.to_owned(),
                    actor: effects.actor,
                    outcome,
                    at,
                });
                if let Some(user) = run.initiator() {
                    let notification_id = state.notifications.len() as i64 + 1;
                    state.notifications.push(Notification {
                        id: notification_id,
                        user,
                        run: id,
                        operation_type: run.operation_type().clone(),
                        tenant: run.tenant(),
                        outcome,
                        created_at: at,
                        read: false,
                    });
                }
                state
                    .webhooks
                    .enqueue(&run, opsrun_domain::WebhookEvent::Completed, at);
                Ok(Completed { run, won: true })
            }
            Err(RunError::RunAlreadyCompleted) => Ok(Completed {
                run: entry.run.clone(),
                won: false,
            }),
            Err(rule) => Err(rule.into()),
        }
    }

    async fn reconcile_counts(&self, id: RunId) -> Result<Option<Drift>, StoreError> {
        self.with_entry(id, |run, ledger| run.reconcile_counts(ledger))
    }
}

#[async_trait]
impl Directory for MemoryRunStore {
    async fn tenant_by_slug(
        &self,
        workspace: WorkspaceId,
        slug: &Slug,
    ) -> Result<Tenant, StoreError> {
        let state = self.lock();
        state
            .tenants
            .iter()
            .find(|t| t.workspace == workspace && t.slug == *slug)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("tenant '{slug}'")))
    }

    async fn tenant(&self, id: TenantId) -> Result<Tenant, StoreError> {
        let state = self.lock();
        state
            .tenants
            .iter()
            .find(|t| t.id == id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("tenant {id}")))
    }

    async fn user(&self, id: UserId) -> Result<User, StoreError> {
        let state = self.lock();
        state
            .users
            .iter()
            .find(|u| u.id == id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
    }

    async fn tenants_of(&self, workspace: WorkspaceId) -> Result<Vec<Tenant>, StoreError> {
        let mut tenants: Vec<Tenant> = self
            .lock()
            .tenants
            .iter()
            .filter(|t| t.workspace == workspace)
            .cloned()
            .collect();
        tenants.sort_by(|a, b| a.slug.as_str().cmp(b.slug.as_str()));
        Ok(tenants)
    }
}

#[async_trait]
impl Retention for MemoryRunStore {
    async fn prune(&self, before: Timestamp, batch: u32) -> Result<Pruned, StoreError> {
        let mut state = self.lock();
        let old: Vec<i64> = state
            .notifications
            .iter()
            .filter(|n| n.created_at < before)
            .take(batch as usize)
            .map(|n| n.id)
            .collect();
        state.notifications.retain(|n| !old.contains(&n.id));
        let webhook_deliveries = state.webhooks.prune(before, batch);
        // The memory store keeps no queue jobs or worker rows.
        Ok(Pruned {
            notifications: old.len() as u64,
            webhook_deliveries,
            ..Pruned::default()
        })
    }
}

#[async_trait]
impl DirectoryAdmin for MemoryRunStore {
    async fn workspace(
        &self,
        slug: &Slug,
        create: bool,
        _at: Timestamp,
    ) -> Result<WorkspaceId, StoreError> {
        let mut state = self.lock();
        if let Some((id, _)) = state.workspaces.iter().find(|(_, s)| s == slug) {
            return Ok(*id);
        }
        if !create {
            return Err(StoreError::NotFound(format!("workspace '{slug}'")));
        }
        let id = WorkspaceId::new(state.workspaces.len() as i64 + 1);
        state.workspaces.push((id, slug.clone()));
        Ok(id)
    }

    async fn workspaces(&self) -> Result<Vec<(WorkspaceId, Slug)>, StoreError> {
        Ok(self.lock().workspaces.clone())
    }

    async fn add_tenant(
        &self,
        workspace: WorkspaceId,
        slug: &Slug,
        _at: Timestamp,
    ) -> Result<Tenant, StoreError> {
        if self
            .lock()
            .tenants
            .iter()
            .any(|t| t.workspace == workspace && t.slug == *slug)
        {
            return Err(StoreError::Unavailable(
                format!("tenant '{slug}' already exists").into(),
            ));
        }
        Ok(MemoryRunStore::add_tenant(self, workspace, slug.clone()))
    }

    async fn ensure_user(
        &self,
        workspace: WorkspaceId,
        email: &str,
        _at: Timestamp,
    ) -> Result<User, StoreError> {
        Ok(self.add_user(workspace, email))
    }
}

#[async_trait]
impl Tokens for MemoryRunStore {
    async fn add_token(&self, token: NewToken) -> Result<TokenId, StoreError> {
        let mut state = self.lock();
        let id = TokenId(state.tokens.len() as i64 + 1);
        state.tokens.push(StoredToken {
            id,
            new: token,
            last_used_at: None,
            revoked_at: None,
        });
        Ok(id)
    }

    async fn token_owner(&self, hash: &TokenHash) -> Result<Option<TokenOwner>, StoreError> {
        let state = self.lock();
        state.owner(|t| t.new.hash == *hash)
    }

    async fn token_by_id(&self, id: TokenId) -> Result<Option<TokenOwner>, StoreError> {
        let state = self.lock();
        state.owner(|t| t.id == id)
    }

    async fn touch_token(&self, id: TokenId, at: Timestamp) -> Result<(), StoreError> {
        if let Some(token) = self.lock().tokens.iter_mut().find(|t| t.id == id) {
            token.last_used_at = Some(at);
        }
        Ok(())
    }

    async fn tokens(&self, workspace: Option<WorkspaceId>) -> Result<Vec<TokenRecord>, StoreError> {
        let state = self.lock();
        let mut records = Vec::new();
        for token in state.tokens.iter().rev() {
            let record = state.record(token)?;
            if workspace.is_none_or(|w| w == record.workspace) {
                records.push(record);
            }
        }
        Ok(records)
    }

    async fn revoke_token(
        &self,
        workspace: Option<WorkspaceId>,
        id: TokenId,
        at: Timestamp,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let mut state = self.lock();
        let Some(index) = state.tokens.iter().position(|t| t.id == id) else {
            return Ok(None);
        };
        let owner_workspace = state.user_of(&state.tokens[index])?.workspace;
        if workspace.is_some_and(|w| w != owner_workspace) {
            return Ok(None);
        }
        let token = &mut state.tokens[index];
        token.revoked_at.get_or_insert(at);
        state.sessions.retain(|s| s.token != id);
        let record = state.record(&state.tokens[index])?;
        Ok(Some(record))
    }

    async fn add_session(&self, session: NewSession) -> Result<(), StoreError> {
        self.lock().sessions.push(StoredSession {
            hash: session.hash,
            token: session.token,
            created_at: session.at,
            last_seen_at: session.at,
        });
        Ok(())
    }

    async fn session_owner(&self, hash: &TokenHash) -> Result<Option<SessionOwner>, StoreError> {
        let state = self.lock();
        let Some(session) = state.sessions.iter().find(|s| s.hash == *hash) else {
            return Ok(None);
        };
        let Some(owner) = state.owner(|t| t.id == session.token)? else {
            return Ok(None);
        };
        Ok(Some(SessionOwner {
            created_at: session.created_at,
            last_seen_at: session.last_seen_at,
            owner,
        }))
    }

    async fn touch_session(&self, hash: &TokenHash, at: Timestamp) -> Result<(), StoreError> {
        if let Some(session) = self.lock().sessions.iter_mut().find(|s| s.hash == *hash) {
            session.last_seen_at = at;
        }
        Ok(())
    }

    async fn delete_session(&self, hash: &TokenHash) -> Result<(), StoreError> {
        self.lock().sessions.retain(|s| s.hash != *hash);
        Ok(())
    }
}
