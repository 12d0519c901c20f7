//! The runs room: the SQL run store. Every count mutation is one guarded statement or one
//! transaction, enforcing the domain rules atomically and refusing with the same errors.
//!
//! The trait impls below are the map; each room file holds one job:
//! - `lifecycle`: create (one active run per identity), mark running, freeze the total,
//!   complete exactly once with its outbox rows;
//! - `record`: record items and increments exactly once (I2–I6);
//! - `claims`: claim an item before its provider call; a cancel counts those in flight;
//! - `stages`: phases, components and heartbeats;
//! - `recount`: recount counters from the ledger (reconcile);
//! - `queries`: every read ([`RunQueries`]);
//! - `statements`: every SQL rendering of a domain rule, next to the name of its twin;
//! - `diagnostics`: whole-ledger reads and raw writes for the contract suite.

mod children;
mod claims;
mod control;
mod diagnostics;
mod lifecycle;
mod queries;
mod record;
mod recount;
mod stages;
mod statements;

use statements::*;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use opsrun_application::ports::{
    AuditEvent, Completed, CreateRun, LedgerQuery, NamedRun, Notification, RunQueries, RunQuery,
    RunStore, Started, Tenant, TenantActivity, TenantScope, TerminalEffects, completion_action,
};
use opsrun_application::{RunParams, StoreError};
use opsrun_domain::{
    AuxDeltas, AuxiliaryKey, Change, Completion, ComponentState, Components, Drift, ItemKey,
    ItemLedger, ItemOutcome, ItemRecord, LedgerEntry, MAX_COUNT, OperationRun,
    OperationSummaryKeys, OperationType, Phases, ReasonCode, RecordOutcome, Recorded, RunError,
    RunId, RunOutcome, Slug, SummaryCounts, SummaryKey, TenantId, Timestamp, UserId, WorkSet,
    WorkspaceId,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, FromQueryResult,
    QueryResult, Statement, Value,
};

use super::codec::{
    RUN_COLUMNS, RunRow, decode_params, encode_components, encode_failures, encode_params,
    encode_phases,
};
use super::raw;

/// Rows per multi-row INSERT: far below both databases' bind-parameter limits.
const CHUNK: usize = 400;
/// How often an optimistic update is retried when a concurrent writer changed the row.
const CAS_ATTEMPTS: usize = 64;
/// The message `opsrun_refuse_record()` raises on PostgreSQL: a one-statement record whose
/// guard refused after it entered rows, undone by the database.
const REFUSED: &str = "opsrun.record_refused";

fn rule(error: RunError) -> StoreError {
    StoreError::Rule(error)
}

/// SQL run store over SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlRunStore {
    // Statements sent (BEGIN and COMMIT included): the regression guard of round trips.
    statements: std::sync::Arc<std::sync::atomic::AtomicU64>,
    db: DatabaseConnection,
    backend: DbBackend,
}

impl SqlRunStore {
    /// A store over an open, migrated connection.
    #[must_use]
    pub fn new(db: DatabaseConnection) -> Self {
        let backend = db.get_database_backend();
        Self {
            statements: std::sync::Arc::default(),
            db,
            backend,
        }
    }

    /// How many statements this store (and its clones) sent so far, `BEGIN` and `COMMIT`
    /// included. Tests pin the count per operation so a change that adds a round trip fails.
    #[must_use]
    pub fn statements(&self) -> u64 {
        self.statements.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self) {
        self.statements
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Which database this is.
    pub(super) fn backend(&self) -> DbBackend {
        self.backend
    }

    /// The connection (for other adapters sharing the pool).
    #[must_use]
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        self.count();
        raw::statement(self.backend, sql, values)
    }

    /// `COLLATE "C"` on PostgreSQL so item keys sort by bytes, as they do on SQLite and in
    /// the domain model.
    fn byte_order(&self) -> &'static str {
        match self.backend {
            DbBackend::Postgres => " COLLATE \"C\"",
            _ => "",
        }
    }

    /// The row lock a writer takes on the run before touching its items (PostgreSQL; SQLite
    /// serializes every write already).
    fn run_lock(&self) -> &'static str {
        match self.backend {
            DbBackend::Postgres => " FOR UPDATE",
            _ => "",
        }
    }

    /// A write transaction (`BEGIN IMMEDIATE` on SQLite), counted as a statement.
    pub(super) async fn write_tx(&self) -> Result<DatabaseTransaction, StoreError> {
        self.count();
        raw::begin_write(&self.db).await.map_err(raw::sql)
    }

    async fn load<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: RunId,
    ) -> Result<OperationRun, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM operation_runs WHERE id = $1");
        let row = RunRow::find_by_statement(self.stmt(&sql, vec![id.value().into()]))
            .one(conn)
            .await
            .map_err(raw::SqlError::from)?
            .ok_or(StoreError::RunNotFound(id))?;
        row.into_run()
    }

    async fn load_many(
        &self,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Vec<OperationRun>, StoreError> {
        RunRow::find_by_statement(self.stmt(sql, values))
            .all(&self.db)
            .await
            .map_err(raw::SqlError::from)?
            .into_iter()
            .map(RunRow::into_run)
            .collect()
    }

    pub(super) async fn exec<C: ConnectionTrait>(
        &self,
        conn: &C,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<u64, StoreError> {
        raw::exec(conn, self.stmt(sql, values))
            .await
            .map_err(raw::sql)
    }

    pub(super) async fn rows<C: ConnectionTrait>(
        &self,
        conn: &C,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Vec<QueryResult>, StoreError> {
        raw::rows(conn, self.stmt(sql, values))
            .await
            .map_err(raw::sql)
    }

    /// The first row `sql` answers on `conn`, if any. SQLite's driver stops at that row,
    /// so a statement of one row costs one message from its thread, not two.
    pub(super) async fn one<C: ConnectionTrait>(
        &self,
        conn: &C,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Option<QueryResult>, StoreError> {
        conn.query_one_raw(self.stmt(sql, values))
            .await
            .map_err(raw::sql)
    }

    pub(super) async fn commit(&self, tx: DatabaseTransaction) -> Result<(), StoreError> {
        self.count();
        tx.commit().await.map_err(raw::sql)
    }

    pub(super) async fn rollback(&self, tx: DatabaseTransaction) -> Result<(), StoreError> {
        self.count();
        tx.rollback().await.map_err(raw::sql)
    }

    pub(super) fn text(row: &QueryResult, col: &str) -> Result<String, StoreError> {
        raw::text(row, col).map_err(raw::sql)
    }

    pub(super) fn int(row: &QueryResult, col: &str) -> Result<i64, StoreError> {
        raw::int(row, col).map_err(raw::sql)
    }

    pub(super) fn opt_int(row: &QueryResult, col: &str) -> Result<Option<i64>, StoreError> {
        raw::opt_int(row, col).map_err(raw::sql)
    }

    pub(super) fn opt_text(row: &QueryResult, col: &str) -> Result<Option<String>, StoreError> {
        row.try_get::<Option<String>>("", col).map_err(raw::sql)
    }
}

#[async_trait]
impl RunStore for SqlRunStore {
    async fn create_run(&self, new: CreateRun) -> Result<Started, StoreError> {
        self.create(new).await
    }

    async fn mark_running(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        self.start_running(id, at).await
    }

    async fn admit(
        &self,
        id: RunId,
        at: Timestamp,
        default_limit: u32,
    ) -> Result<opsrun_domain::Admission, StoreError> {
        self.admit_run(id, at, default_limit).await
    }

    async fn pause(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        self.pause_run(id, at).await
    }

    async fn resume(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        self.resume_run(id, at).await
    }

    async fn set_tenant_limit(
        &self,
        tenant: TenantId,
        limit: Option<u32>,
    ) -> Result<(), StoreError> {
        self.put_tenant_limit(tenant, limit).await
    }

    async fn mark_notifications_read(
        &self,
        user: UserId,
        ids: &[i64],
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        self.mark_read(user, ids, at).await
    }

    async fn set_total(&self, id: RunId, work_set: WorkSet) -> Result<Change, StoreError> {
        self.freeze_total(id, work_set).await
    }

    async fn record_items_keyed(
        &self,
        id: RunId,
        records: Vec<ItemRecord>,
        at: Timestamp,
    ) -> Result<Recorded, StoreError> {
        self.record(id, records, at).await
    }

    async fn child_jobs_enqueued(
        &self,
        id: RunId,
        first: u64,
        count: u64,
    ) -> Result<Change, StoreError> {
        self.enqueued_children(id, first, count).await
    }

    async fn child_job_finished(&self, id: RunId, job: u64) -> Result<Change, StoreError> {
        self.finished_child(id, job).await
    }

    async fn reserve_child_jobs(&self, id: RunId, count: u64) -> Result<u64, StoreError> {
        self.reserve_children(id, count).await
    }

    async fn claim_item(
        &self,
        id: RunId,
        key: ItemKey,
        at: Timestamp,
    ) -> Result<opsrun_domain::Claim, StoreError> {
        let answer = self.claim(id, vec![key], at).await?.pop();
        answer
            .ok_or_else(|| StoreError::Unavailable("a claim returned no answer".into()))?
            .map_err(StoreError::Rule)
    }

    async fn claim_items(
        &self,
        id: RunId,
        keys: Vec<ItemKey>,
        at: Timestamp,
    ) -> Result<Vec<Result<opsrun_domain::Claim, RunError>>, StoreError> {
        self.claim(id, keys, at).await
    }

    async fn increment(
        &self,
        id: RunId,
        increment_key: ItemKey,
        deltas: AuxDeltas,
    ) -> Result<Change, StoreError> {
        self.apply_increment(id, increment_key, deltas).await
    }

    async fn declare_phases(&self, id: RunId, phases: Phases) -> Result<Change, StoreError> {
        self.update_stages(id, |run| run.declare_phases(phases.clone()))
            .await
    }

    async fn enter_phase(
        &self,
        id: RunId,
        key: String,
        at: Timestamp,
    ) -> Result<Change, StoreError> {
        self.update_stages(id, |run| run.enter_phase_at(&key, at))
            .await
    }

    async fn declare_components(
        &self,
        id: RunId,
        components: Components,
    ) -> Result<Change, StoreError> {
        self.update_stages(id, |run| run.declare_components(components.clone()))
            .await
    }

    async fn update_component(
        &self,
        id: RunId,
        key: String,
        state: ComponentState,
    ) -> Result<Change, StoreError> {
        self.update_stages(id, |run| run.update_component(&key, state.clone()))
            .await
    }

    async fn heartbeat(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        self.touch(id, at).await
    }

    async fn complete(
        &self,
        id: RunId,
        completion: Completion,
        effects: TerminalEffects,
    ) -> Result<Completed, StoreError> {
        self.complete_once(id, completion, effects).await
    }

    async fn reconcile_counts(&self, id: RunId) -> Result<Option<Drift>, StoreError> {
        self.recount_from_ledger(id).await
    }
}
