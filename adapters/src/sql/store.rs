//! The SQL run store and directory: every count mutation is one guarded statement or one
//! transaction, enforcing the domain rules atomically and refusing with the same errors.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use opsrun_application::ports::{
    AuditEvent, Completed, CreateRun, LedgerQuery, NamedRun, Notification, RunQueries, RunQuery,
    RunStore, Started, Tenant, TenantActivity, TenantScope, TerminalEffects,
};
use opsrun_application::{RunParams, StoreError};
use opsrun_domain::{
    AuxDeltas, AuxiliaryKey, Change, Completion, ComponentState, Components, Drift, ItemKey,
    ItemLedger, ItemOutcome, ItemRecord, LedgerEntry, MAX_COUNT, OperationRun,
    OperationSummaryKeys, OperationType, Phases, ReasonCode, RecordOutcome, RunError, RunId,
    RunOutcome, Slug, SummaryCounts, SummaryKey, TenantId, Timestamp, UserId, WorkSet, WorkspaceId,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, FromQueryResult,
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

fn unavailable(error: DbErr) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

fn rule(error: RunError) -> StoreError {
    StoreError::Rule(error)
}

/// The counter columns an item or increment moves, in canonical key order.
fn column(key: SummaryKey) -> &'static str {
    key.key()
}

/// SQL run store over SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlRunStore {
    // Statements sent (BEGIN and COMMIT included): the regression guard of round trips.
    statements: std::sync::Arc<std::sync::atomic::AtomicU64>,
    db: DatabaseConnection,
    backend: DbBackend,
}

/// Counter deltas of one mutation, by summary key.
#[derive(Default)]
struct Deltas(BTreeMap<SummaryKey, u64>);

impl Deltas {
    fn add(&mut self, key: SummaryKey, delta: u64) {
        if delta > 0 {
            let slot = self.0.entry(key).or_insert(0);
            *slot = slot.saturating_add(delta);
        }
    }

    /// `SET` clauses and `WHERE` overflow guards, with their values starting at `$first`.
    fn clauses(&self, first: usize) -> (Vec<String>, Vec<String>, Vec<Value>) {
        let mut sets = Vec::new();
        let mut guards = Vec::new();
        let mut values = Vec::new();
        let mut n = first;
        for (key, delta) in &self.0 {
            let col = column(*key);
            let delta = i64::try_from(*delta).unwrap_or(i64::MAX);
            sets.push(format!("{col} = COALESCE({col}, 0) + ${n}"));
            values.push(Value::from(delta));
            n += 1;
            // The largest storable count minus the delta: the counter may not pass it.
            guards.push(format!("COALESCE({col}, 0) <= ${n}"));
            values.push(Value::from((MAX_COUNT as i64).saturating_sub(delta)));
            n += 1;
        }
        (sets, guards, values)
    }
}

fn outcome_key(outcome: ItemOutcome) -> SummaryKey {
    outcome.summary_key()
}

fn delta_value(deltas: &AuxDeltas, key: AuxiliaryKey) -> Option<i64> {
    deltas
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| i64::try_from(v).unwrap_or(i64::MAX))
}

fn counts_guard(counts: &SummaryCounts, first: usize) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    for (i, key) in opsrun_domain::OperationSummaryKeys::ALL.iter().enumerate() {
        let value = counts
            .get(*key)
            .and_then(|v| i64::try_from(v).ok())
            .unwrap_or(-1);
        clauses.push(format!("COALESCE({}, -1) = ${}", column(*key), first + i));
        values.push(Value::from(value));
    }
    (clauses.join(" AND "), values)
}

fn counts_set(counts: &SummaryCounts, first: usize) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    for (i, key) in opsrun_domain::OperationSummaryKeys::ALL.iter().enumerate() {
        clauses.push(format!("{} = ${}", column(*key), first + i));
        values.push(Value::from(
            counts.get(*key).and_then(|v| i64::try_from(v).ok()),
        ));
    }
    (clauses.join(", "), values)
}

/// The auxiliary-delta columns (ledger and run alike), each prefixed, in
/// [`AuxiliaryKey::ALL`] order, comma-separated.
fn aux_columns(prefix: &str) -> String {
    AuxiliaryKey::ALL
        .iter()
        .map(|k| format!("{prefix}{}", column(k.summary_key())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ledger insert of a record, shared by both record paths: the common table expressions
/// `input, run, outside` and an `INSERT .. SELECT` that enters the batch only while the run is open and only when every
/// item is in its frozen work set (else nothing, and the caller names the refusal). `$1` is
/// the run, `$2` the time; the items' values follow from `$3`. Already recorded keys conflict
/// and are skipped: `RETURNING` names what this call entered.
fn ledger_insert(records: &[ItemRecord], returning: &str) -> (String, String, Vec<Value>) {
    let width = 3 + AuxiliaryKey::ALL.len();
    let mut rows = Vec::with_capacity(records.len());
    let mut values: Vec<Value> = Vec::with_capacity(records.len() * width);
    for (i, record) in records.iter().enumerate() {
        let n = 3 + i * width;
        let mut cells = vec![
            format!("CAST(${n} AS TEXT)"),
            format!("CAST(${} AS TEXT)", n + 1),
            format!("CAST(${} AS TEXT)", n + 2),
        ];
        values.push(record.key().as_str().into());
        values.push(record.outcome().key().into());
        values.push(record.reason().map(|r| r.as_str().to_owned()).into());
        for (j, key) in AuxiliaryKey::ALL.into_iter().enumerate() {
            cells.push(format!("CAST(${} AS BIGINT)", n + 3 + j));
            values.push(delta_value(record.deltas(), key).into());
        }
        rows.push(format!("({})", cells.join(", ")));
    }
    let ctes = format!(
        "input (item_key, outcome, reason, {}) AS (VALUES {}), \
         run AS (SELECT status, basis, total, processed FROM operation_runs WHERE id = $1), \
         outside AS (SELECT 1 AS one FROM input i, run r WHERE r.basis IS NOT NULL AND NOT EXISTS \
           (SELECT 1 FROM operation_run_units u WHERE u.run_id = $1 AND u.item_key = i.item_key))",
        aux_columns(""),
        rows.join(", ")
    );
    let insert = format!(
        "INSERT INTO operation_run_items (run_id, item_key, outcome, reason, recorded_at, {}) \
         SELECT $1, i.item_key, i.outcome, i.reason, $2, {} FROM input i \
         WHERE EXISTS (SELECT 1 FROM run WHERE status <> 'completed') \
         AND NOT EXISTS (SELECT 1 FROM outside) \
         ON CONFLICT (run_id, item_key) DO NOTHING RETURNING {returning}",
        aux_columns(""),
        aux_columns("i.")
    );
    (ctes, insert, values)
}

/// [`RUN_COLUMNS`] qualified by a table alias, for queries that join other tables.
fn run_columns_of(alias: &str) -> String {
    RUN_COLUMNS
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether counts after a record say every unit of the total is recorded.
fn all_recorded(processed: Option<i64>, total: Option<i64>) -> bool {
    total.is_some() && processed == total
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

    /// The connection (for other adapters sharing the pool).
    #[must_use]
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        self.count();
        Statement::from_sql_and_values(self.backend, sql, values)
    }

    /// `COLLATE "C"` on PostgreSQL so item keys sort by bytes, as they do on SQLite and in
    /// the domain model.
    fn byte_order(&self) -> &'static str {
        match self.backend {
            DbBackend::Postgres => " COLLATE \"C\"",
            _ => "",
        }
    }

    /// A write transaction (`BEGIN IMMEDIATE` on SQLite), counted as a statement.
    async fn write_tx(&self) -> Result<DatabaseTransaction, StoreError> {
        self.count();
        raw::begin_write(&self.db).await.map_err(unavailable)
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
            .map_err(unavailable)?
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
            .map_err(unavailable)?
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
            .map_err(unavailable)
    }

    pub(super) async fn rows<C: ConnectionTrait>(
        &self,
        conn: &C,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Vec<QueryResult>, StoreError> {
        raw::rows(conn, self.stmt(sql, values))
            .await
            .map_err(unavailable)
    }

    async fn commit(&self, tx: DatabaseTransaction) -> Result<(), StoreError> {
        self.count();
        tx.commit().await.map_err(unavailable)
    }

    async fn rollback(&self, tx: DatabaseTransaction) -> Result<(), StoreError> {
        self.count();
        tx.rollback().await.map_err(unavailable)
    }

    pub(super) fn text(row: &QueryResult, col: &str) -> Result<String, StoreError> {
        raw::text(row, col).map_err(unavailable)
    }

    pub(super) fn int(row: &QueryResult, col: &str) -> Result<i64, StoreError> {
        raw::int(row, col).map_err(unavailable)
    }

    pub(super) fn opt_int(row: &QueryResult, col: &str) -> Result<Option<i64>, StoreError> {
        raw::opt_int(row, col).map_err(unavailable)
    }

    pub(super) fn opt_text(row: &QueryResult, col: &str) -> Result<Option<String>, StoreError> {
        row.try_get::<Option<String>>("", col).map_err(unavailable)
    }

    /// PostgreSQL: a record as one statement (no `BEGIN`/`COMMIT`): the ledger insert, the
    /// sum of what it entered and one guarded `UPDATE` of the run, in data-modifying CTEs. The
    /// statement is atomic; when the run's guard refuses after rows were entered,
    /// `opsrun_refuse_record()` raises and PostgreSQL undoes the inserts. `None` when the
    /// statement changed nothing for a reason to be named (no such run, completed, an item
    /// outside the work set, a guard): the transactional path then decides on the row as it is.
    async fn record_at_once(
        &self,
        id: RunId,
        candidates: &[ItemRecord],
        submitted: u64,
        at: Timestamp,
    ) -> Result<Option<RecordOutcome>, StoreError> {
        let returning = format!("outcome, {}", aux_columns(""));
        let (ctes, insert, mut item_values) = ledger_insert(candidates, &returning);
        // The `d` row: what the insert entered, per counter (NULL sums for absent deltas).
        let mut moved = vec!["count(*) AS processed".to_owned()];
        moved.extend(ItemOutcome::ALL.iter().map(|o| {
            format!(
                "count(*) FILTER (WHERE outcome = '{}') AS {}",
                o.key(),
                column(o.summary_key())
            )
        }));
        moved.extend(AuxiliaryKey::ALL.iter().map(|k| {
            let col = column(k.summary_key());
            format!("sum({col}) AS {col}")
        }));
        let mut sets = Vec::new();
        let mut guards = Vec::new();
        // Every counter a record moves: all summary keys but the total.
        for key in OperationSummaryKeys::ALL
            .iter()
            .filter(|k| **k != SummaryKey::Total)
        {
            let col = column(*key);
            sets.push(format!(
                "{col} = CASE WHEN d.{col} > 0 THEN COALESCE(o.{col}, 0) + d.{col} ELSE o.{col} END"
            ));
            guards.push(format!(
                "COALESCE(o.{col}, 0) <= {MAX_COUNT} - COALESCE(d.{col}, 0)"
            ));
        }
        let sql = format!(
            "WITH {ctes}, ins AS ({insert}), d AS (SELECT {} FROM ins), \
             upd AS (UPDATE operation_runs o SET {}, \
               heartbeat_at = CASE WHEN o.heartbeat_at IS NULL OR o.heartbeat_at < $2 THEN $2 \
               ELSE o.heartbeat_at END \
               FROM d WHERE o.id = $1 AND d.processed > 0 AND o.status <> 'completed' \
               AND (o.total IS NULL OR COALESCE(o.processed, 0) + d.processed <= o.total) AND {} \
               RETURNING o.processed, o.total) \
             SELECT (SELECT count(*) FROM run WHERE status <> 'completed') AS open, \
               (SELECT count(*) FROM outside) AS outside, \
               CASE WHEN d.processed > 0 AND NOT EXISTS (SELECT 1 FROM upd) \
                 THEN opsrun_refuse_record() ELSE d.processed END AS recorded, \
               COALESCE((SELECT processed FROM upd), (SELECT processed FROM run)) AS processed, \
               COALESCE((SELECT total FROM upd), (SELECT total FROM run)) AS total \
             FROM d",
            moved.join(", "),
            sets.join(", "),
            guards.join(" AND ")
        );
        let mut values: Vec<Value> = vec![id.value().into(), at.as_millis().into()];
        values.append(&mut item_values);
        let row = match self.db.query_one_raw(self.stmt(&sql, values)).await {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(error) if error.to_string().contains(REFUSED) => return Ok(None),
            Err(error) => return Err(unavailable(error)),
        };
        if Self::int(&row, "open")? == 0 || Self::int(&row, "outside")? > 0 {
            return Ok(None);
        }
        let recorded = u64::try_from(Self::int(&row, "recorded")?).unwrap_or(0);
        Ok(Some(RecordOutcome {
            recorded,
            duplicates: submitted - recorded,
            all_recorded: all_recorded(
                Self::opt_int(&row, "processed")?,
                Self::opt_int(&row, "total")?,
            ),
        }))
    }

    /// A record as one transaction (SQLite's path, and PostgreSQL's when a refusal is to be
    /// named): the ledger insert, then one guarded `UPDATE`; a refusal is named by replaying
    /// the domain method on the row as it is now, so the errors are the domain's.
    async fn record_in_transaction(
        &self,
        id: RunId,
        candidates: Vec<ItemRecord>,
        submitted: u64,
        at: Timestamp,
    ) -> Result<RecordOutcome, StoreError> {
        let tx = self.write_tx().await?;
        let mut fresh_keys = BTreeSet::new();
        for chunk in candidates.chunks(CHUNK) {
            let (ctes, insert, mut item_values) = ledger_insert(chunk, "item_key");
            let sql = format!("WITH {ctes} {insert}");
            let mut values: Vec<Value> = vec![id.value().into(), at.as_millis().into()];
            values.append(&mut item_values);
            for row in self.rows(&tx, &sql, values).await? {
                fresh_keys.insert(Self::text(&row, "item_key")?);
            }
        }
        if fresh_keys.len() < candidates.len() || candidates.is_empty() {
            // Something was not entered: a duplicate, or a refusal the domain names.
            let run = match self.load(&tx, id).await {
                Ok(run) => run,
                Err(error) => {
                    self.rollback(tx).await?;
                    return Err(error);
                }
            };
            if run.is_completed() {
                self.rollback(tx).await?;
                return Err(rule(RunError::RunAlreadyCompleted));
            }
            let skipped: Vec<&ItemRecord> = candidates
                .iter()
                .filter(|r| !fresh_keys.contains(r.key().as_str()))
                .collect();
            if run.basis().is_some()
                && let Some(item_key) = self.first_outside(&tx, id, &skipped).await?
            {
                self.rollback(tx).await?;
                return Err(rule(RunError::ItemNotInWorkSet { item_key }));
            }
            if fresh_keys.is_empty() {
                self.commit(tx).await?;
                return Ok(RecordOutcome {
                    recorded: 0,
                    duplicates: submitted,
                    all_recorded: run.all_recorded(),
                });
            }
        }
        let fresh: Vec<&ItemRecord> = candidates
            .iter()
            .filter(|r| fresh_keys.contains(r.key().as_str()))
            .collect();
        let adding = fresh.len() as u64;
        let mut deltas = Deltas::default();
        deltas.add(SummaryKey::Processed, adding);
        for record in &fresh {
            deltas.add(outcome_key(record.outcome()), 1);
            for (key, delta) in record.deltas().iter() {
                deltas.add(key.summary_key(), delta);
            }
        }
        let (sets, guards, mut values) = deltas.clauses(4);
        let sql = format!(
            "UPDATE operation_runs SET {}, heartbeat_at = CASE WHEN heartbeat_at IS NULL OR heartbeat_at < $3 \
             THEN $3 ELSE heartbeat_at END \
             WHERE id = $1 AND status <> 'completed' AND (total IS NULL OR COALESCE(processed, 0) + $2 <= total) \
             AND {} RETURNING processed, total",
            sets.join(", "),
            guards.join(" AND ")
        );
        let mut all: Vec<Value> = vec![
            id.value().into(),
            i64::try_from(adding).unwrap_or(i64::MAX).into(),
            at.as_millis().into(),
        ];
        all.append(&mut values);
        if let Some(row) = self.rows(&tx, &sql, all).await?.first() {
            let done = all_recorded(
                Self::opt_int(row, "processed")?,
                Self::opt_int(row, "total")?,
            );
            self.commit(tx).await?;
            return Ok(RecordOutcome {
                recorded: adding,
                duplicates: submitted - adding,
                all_recorded: done,
            });
        }
        // Refused: the domain names the rule, on the row as it is now.
        let mut current = self.load(&tx, id).await?;
        self.rollback(tx).await?;
        let mut scratch = ItemLedger::new();
        let replay: Vec<ItemRecord> = fresh.into_iter().cloned().collect();
        match current.record_items(&mut scratch, replay, at) {
            Err(error) => Err(rule(error)),
            Ok(_) => Err(StoreError::Unavailable(
                format!("run {id} changed while recording; retry").into(),
            )),
        }
    }

    /// The first of `records` (in their order) that is not in the run's frozen work set.
    async fn first_outside<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: RunId,
        records: &[&ItemRecord],
    ) -> Result<Option<ItemKey>, StoreError> {
        let mut members = BTreeSet::new();
        for chunk in records.chunks(CHUNK) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let mut values: Vec<Value> = vec![id.value().into()];
            values.extend(chunk.iter().map(|r| Value::from(r.key().as_str())));
            let sql = format!(
                "SELECT item_key FROM operation_run_units WHERE run_id = $1 AND item_key IN ({})",
                list.join(", ")
            );
            for row in self.rows(conn, &sql, values).await? {
                members.insert(Self::text(&row, "item_key")?);
            }
        }
        Ok(records
            .iter()
            .find(|r| !members.contains(r.key().as_str()))
            .map(|r| r.key().clone()))
    }

    /// A run row joined with its tenant's slug (`tenant_slug`, unless the caller knows it)
    /// and its initiator's e-mail (`initiator_email`).
    fn named_run(row: &QueryResult, slug: Option<&Slug>) -> Result<NamedRun, StoreError> {
        let run = RunRow::from_query_result(row, "")
            .map_err(unavailable)?
            .into_run()?;
        let tenant = match slug {
            Some(slug) => slug.clone(),
            None => Slug::parse(&Self::text(row, "tenant_slug")?)?,
        };
        let initiator = row
            .try_get::<Option<String>>("", "initiator_email")
            .map_err(unavailable)?;
        Ok(NamedRun {
            run,
            tenant,
            initiator,
        })
    }

    /// The run's frozen work set, read on `conn`.
    async fn load_work_set<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: RunId,
        basis: Option<&str>,
    ) -> Result<Option<WorkSet>, StoreError> {
        let Some(basis) = basis else {
            return Ok(None);
        };
        let rows = self
            .rows(
                conn,
                "SELECT item_key FROM operation_run_units WHERE run_id = $1 ORDER BY position",
                vec![id.value().into()],
            )
            .await?;
        let units = rows
            .iter()
            .map(|r| Ok(ItemKey::parse(&Self::text(r, "item_key")?)?))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(WorkSet::try_new(units, basis)?))
    }

    /// Optimistic update of a run's stage columns: read, apply the domain rule, write back only
    /// if the row did not change meanwhile (else retry). Errors and `Unchanged` come from the
    /// domain on the snapshot read.
    async fn update_stages(
        &self,
        id: RunId,
        change: impl Fn(&mut OperationRun) -> Result<Change, RunError>,
    ) -> Result<Change, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let before = self.load(&self.db, id).await?;
            let mut after = before.clone();
            let result = change(&mut after).map_err(rule)?;
            if result == Change::Unchanged {
                return Ok(result);
            }
            let old_phases = before.phases().map(encode_phases).unwrap_or_default();
            let old_components = before
                .components()
                .map(encode_components)
                .unwrap_or_default();
            let sql = "UPDATE operation_runs SET phases = $2, components = $3 \
                WHERE id = $1 AND status <> 'completed' AND total IS NULL \
                AND COALESCE(phases, '') = $4 AND COALESCE(components, '') = $5";
            let values = vec![
                id.value().into(),
                after.phases().map(encode_phases).into(),
                after.components().map(encode_components).into(),
                old_phases.into(),
                old_components.into(),
            ];
            if self.exec(&self.db, sql, values).await? == 1 {
                return Ok(result);
            }
        }
        Err(StoreError::Unavailable(
            format!("run {id} kept changing; gave up after {CAS_ATTEMPTS} attempts").into(),
        ))
    }

    /// Records a sign of life `at`; `Unchanged` when a later one is already stored.
    async fn touch(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        let sql = "UPDATE operation_runs SET heartbeat_at = $2 WHERE id = $1 \
            AND status <> 'completed' AND (heartbeat_at IS NULL OR heartbeat_at < $2)";
        if self
            .exec(
                &self.db,
                sql,
                vec![id.value().into(), at.as_millis().into()],
            )
            .await?
            == 1
        {
            return Ok(Change::Applied);
        }
        let run = self.load(&self.db, id).await?;
        if run.is_completed() {
            return Err(rule(RunError::RunAlreadyCompleted));
        }
        Ok(Change::Unchanged)
    }

    /// The counts implied by the run's ledger, computed by the database (same rules as
    /// [`ItemLedger::recount`]).
    async fn recount<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: RunId,
        frozen: bool,
    ) -> Result<SummaryCounts, StoreError> {
        // SUM of BIGINT is NUMERIC on PostgreSQL: cast back so both databases answer BIGINT.
        let sums = AuxiliaryKey::ALL
            .iter()
            .map(|k| {
                let col = column(k.summary_key());
                format!("CAST(COALESCE(SUM({col}), 0) AS BIGINT) AS {col}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut sums_by_key: BTreeMap<SummaryKey, i128> = BTreeMap::new();
        let mut processed: i128 = 0;
        let item_rows = self
            .rows(
                conn,
                &format!(
                    "SELECT outcome, COUNT(*) AS n, {sums} FROM operation_run_items \
                     WHERE run_id = $1 GROUP BY outcome"
                ),
                vec![id.value().into()],
            )
            .await?;
        let increment_rows = self
            .rows(
                conn,
                &format!(
                    "SELECT 'increment' AS outcome, COUNT(*) AS n, {sums} \
                     FROM operation_run_increments WHERE run_id = $1"
                ),
                vec![id.value().into()],
            )
            .await?;
        for row in item_rows.iter().chain(&increment_rows) {
            let outcome = Self::text(row, "outcome")?;
            let n = i128::from(Self::int(row, "n")?);
            if outcome != "increment" {
                let key = ItemOutcome::parse(&outcome)?.summary_key();
                *sums_by_key.entry(key).or_insert(0) += n;
                processed += n;
            }
            for key in AuxiliaryKey::ALL {
                let key = key.summary_key();
                *sums_by_key.entry(key).or_insert(0) += i128::from(Self::int(row, column(key))?);
            }
        }
        let clamp = |v: i128| u64::try_from(v.max(0)).unwrap_or(u64::MAX).min(MAX_COUNT);
        let mut counts = SummaryCounts::new();
        if frozen {
            let row = self
                .rows(
                    conn,
                    "SELECT COUNT(*) AS n FROM operation_run_units WHERE run_id = $1",
                    vec![id.value().into()],
                )
                .await?;
            let total = row
                .first()
                .map(|r| Self::int(r, "n"))
                .transpose()?
                .unwrap_or(0);
            counts.set(SummaryKey::Total, clamp(i128::from(total)))?;
        }
        if frozen || processed > 0 {
            counts.set(SummaryKey::Processed, clamp(processed))?;
        }
        for (key, sum) in sums_by_key {
            if sum > 0 {
                counts.set(key, clamp(sum))?;
            }
        }
        Ok(counts)
    }

    /// The run's full ledger (for the contract suite and diagnostics).
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`], [`StoreError::Unavailable`].
    pub async fn ledger(&self, id: RunId) -> Result<ItemLedger, StoreError> {
        let run = self.load(&self.db, id).await?;
        let work_set = self.load_work_set(&self.db, id, run.basis()).await?;
        let rows = self
            .rows(
                &self.db,
                "SELECT item_key, outcome, reason, recorded_at, created, updated, deleted, items, tenants \
                 FROM operation_run_items WHERE run_id = $1",
                vec![id.value().into()],
            )
            .await?;
        let mut entries = BTreeMap::new();
        for row in &rows {
            let (key, entry) = Self::ledger_entry(row)?;
            entries.insert(key, entry);
        }
        let rows = self
            .rows(
                &self.db,
                "SELECT increment_key, created, updated, deleted, items, tenants \
                 FROM operation_run_increments WHERE run_id = $1",
                vec![id.value().into()],
            )
            .await?;
        let mut increments = BTreeMap::new();
        for row in &rows {
            increments.insert(
                ItemKey::parse(&Self::text(row, "increment_key")?)?,
                Self::deltas(row)?,
            );
        }
        Ok(ItemLedger::restore(work_set, entries, increments))
    }

    fn deltas(row: &QueryResult) -> Result<AuxDeltas, StoreError> {
        let mut deltas = AuxDeltas::new();
        for key in AuxiliaryKey::ALL {
            if let Some(v) = Self::opt_int(row, column(key.summary_key()))? {
                deltas = deltas.with(key, u64::try_from(v).unwrap_or(0));
            }
        }
        Ok(deltas)
    }

    fn ledger_entry(row: &QueryResult) -> Result<(ItemKey, LedgerEntry), StoreError> {
        let reason = row
            .try_get::<Option<String>>("", "reason")
            .map_err(unavailable)?
            .map(|r| ReasonCode::parse(&r))
            .transpose()?;
        Ok((
            ItemKey::parse(&Self::text(row, "item_key")?)?,
            LedgerEntry {
                outcome: ItemOutcome::parse(&Self::text(row, "outcome")?)?,
                reason,
                deltas: Self::deltas(row)?,
                recorded_at: Timestamp::from_millis(Self::int(row, "recorded_at")?),
            },
        ))
    }

    /// Writes a run row exactly as given, without any rule: for tests that need a legacy or
    /// drifted row. The run must already exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn put_raw_counts(
        &self,
        id: RunId,
        counts: &[(&str, Option<i64>)],
        status: &str,
    ) -> Result<(), StoreError> {
        let mut sets = vec!["status = $2".to_owned()];
        let mut values: Vec<Value> = vec![id.value().into(), status.into()];
        for (i, (col, value)) in counts.iter().enumerate() {
            if !opsrun_domain::OperationSummaryKeys::contains(col) {
                return Err(StoreError::Corrupt(format!(
                    "'{col}' is not a count column"
                )));
            }
            sets.push(format!("{col} = ${}", i + 3));
            values.push((*value).into());
        }
        let sql = format!(
            "UPDATE operation_runs SET {} WHERE id = $1",
            sets.join(", ")
        );
        self.exec(&self.db, &sql, values).await?;
        Ok(())
    }
}

#[async_trait]
impl RunQueries for SqlRunStore {
    async fn run(&self, id: RunId) -> Result<OperationRun, StoreError> {
        self.load(&self.db, id).await
    }

    async fn run_params(&self, id: RunId) -> Result<RunParams, StoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT params FROM operation_runs WHERE id = $1",
                vec![id.value().into()],
            )
            .await?;
        let row = rows.first().ok_or(StoreError::RunNotFound(id))?;
        decode_params(&Self::text(row, "params")?)
    }

    async fn work_set(&self, id: RunId) -> Result<Option<WorkSet>, StoreError> {
        let run = self.load(&self.db, id).await?;
        self.load_work_set(&self.db, id, run.basis()).await
    }

    async fn ledger_keys(&self, id: RunId) -> Result<BTreeSet<ItemKey>, StoreError> {
        self.load(&self.db, id).await?;
        let rows = self
            .rows(
                &self.db,
                "SELECT item_key FROM operation_run_items WHERE run_id = $1",
                vec![id.value().into()],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(ItemKey::parse(&Self::text(r, "item_key")?)?))
            .collect()
    }

    async fn ledger_entries(
        &self,
        query: LedgerQuery,
    ) -> Result<Vec<(ItemKey, LedgerEntry)>, StoreError> {
        self.load(&self.db, query.run).await?;
        let order = self.byte_order();
        let mut sql = "SELECT item_key, outcome, reason, recorded_at, created, updated, deleted, items, tenants \
             FROM operation_run_items WHERE run_id = $1"
            .to_owned();
        let mut values: Vec<Value> = vec![query.run.value().into()];
        if let Some(outcome) = query.outcome {
            values.push(outcome.key().into());
            sql.push_str(&format!(" AND outcome = ${}", values.len()));
        }
        if let Some(after) = &query.after {
            values.push(after.as_str().into());
            sql.push_str(&format!(" AND item_key{order} > ${}", values.len()));
        }
        values.push(i64::from(query.limit).into());
        sql.push_str(&format!(
            " ORDER BY item_key{order} LIMIT ${}",
            values.len()
        ));
        self.rows(&self.db, &sql, values)
            .await?
            .iter()
            .map(Self::ledger_entry)
            .collect()
    }

    async fn active_runs(&self) -> Result<Vec<OperationRun>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM operation_runs WHERE status <> 'completed' ORDER BY id"
        );
        self.load_many(&sql, Vec::new()).await
    }

    async fn list_runs(&self, query: RunQuery) -> Result<Vec<NamedRun>, StoreError> {
        let mut clauses = vec!["workspace_id = $1".to_owned()];
        let mut values: Vec<Value> = vec![query.workspace.value().into()];
        if let TenantScope::Only(tenants) = &query.scope {
            if tenants.is_empty() {
                return Ok(Vec::new());
            }
            // Tenant ids are integers from storage, so inlining them is safe.
            let list: Vec<String> = tenants.iter().map(|t| t.value().to_string()).collect();
            clauses.push(format!("tenant_id IN ({})", list.join(", ")));
        }
        let filters: [(&str, Option<Value>); 5] = [
            ("tenant_id", query.tenant.map(|t| t.value().into())),
            (
                "operation_type",
                query.operation_type.map(|t| t.key().into()),
            ),
            ("status", query.status.map(|s| s.key().into())),
            ("outcome", query.outcome.map(|o| o.key().into())),
            ("id <", query.before.map(|b| b.value().into())),
        ];
        for (column, value) in filters {
            if let Some(value) = value {
                values.push(value);
                let op = if column.ends_with('<') { "" } else { " =" };
                clauses.push(format!("{column}{op} ${}", values.len()));
            }
        }
        if query.top_level_only {
            clauses.push("parent_id IS NULL".to_owned());
        }
        values.push(i64::from(query.limit).into());
        // The page is chosen first (newest ids through the workspace index, stopping at the
        // limit), then only its rows are joined with their names: left to itself, SQLite's
        // planner may start from the tenants and sort every run of the workspace.
        let sql = format!(
            "SELECT {}, t.slug AS tenant_slug, u.email AS initiator_email \
             FROM (SELECT {RUN_COLUMNS} FROM operation_runs WHERE {} ORDER BY id DESC LIMIT ${}) r \
             JOIN tenants t ON t.id = r.tenant_id \
             LEFT JOIN users u ON u.id = r.initiator_id ORDER BY r.id DESC",
            run_columns_of("r"),
            clauses.join(" AND "),
            values.len()
        );
        self.rows(&self.db, &sql, values)
            .await?
            .iter()
            .map(|row| Self::named_run(row, None))
            .collect()
    }

    async fn activity(
        &self,
        workspace: WorkspaceId,
        slug: &Slug,
        completed_since: Timestamp,
    ) -> Result<TenantActivity, StoreError> {
        // From the tenant, so a tenant without runs still answers (one row of NULL run
        // columns) and an unknown slug answers nothing.
        let sql = format!(
            "SELECT t.id AS tenant_key, {}, u.email AS initiator_email FROM tenants t \
             LEFT JOIN operation_runs r ON r.tenant_id = t.id AND r.parent_id IS NULL \
             AND (r.status <> 'completed' OR r.completed_at >= $3) \
             LEFT JOIN users u ON u.id = r.initiator_id \
             WHERE t.workspace_id = $1 AND t.slug = $2 ORDER BY r.id DESC",
            run_columns_of("r")
        );
        let rows = self
            .rows(
                &self.db,
                &sql,
                vec![
                    workspace.value().into(),
                    slug.as_str().into(),
                    completed_since.as_millis().into(),
                ],
            )
            .await?;
        let first = rows
            .first()
            .ok_or_else(|| StoreError::NotFound(format!("tenant '{slug}'")))?;
        let tenant = Tenant {
            id: TenantId::new(Self::int(first, "tenant_key")?),
            workspace,
            slug: slug.clone(),
        };
        let mut runs = Vec::with_capacity(rows.len());
        for row in &rows {
            if Self::opt_int(row, "id")?.is_some() {
                runs.push(Self::named_run(row, Some(slug))?);
            }
        }
        Ok(TenantActivity { tenant, runs })
    }

    async fn children(&self, parent: RunId) -> Result<Vec<OperationRun>, StoreError> {
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM operation_runs WHERE parent_id = $1 ORDER BY id");
        self.load_many(&sql, vec![parent.value().into()]).await
    }

    async fn audit_events(&self, run: RunId) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT id, run_id, action, actor_id, outcome, at FROM audit_events WHERE run_id = $1 ORDER BY id",
                vec![run.value().into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    id: Self::int(r, "id")?,
                    run: RunId::new(Self::int(r, "run_id")?),
                    action: Self::text(r, "action")?,
                    actor: Self::opt_int(r, "actor_id")?.map(UserId::new),
                    outcome: RunOutcome::parse(&Self::text(r, "outcome")?)?,
                    at: Timestamp::from_millis(Self::int(r, "at")?),
                })
            })
            .collect()
    }

    async fn notifications(&self, user: UserId) -> Result<Vec<Notification>, StoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT id, user_id, run_id, operation_type, tenant_id, outcome, created_at, read_at \
                 FROM notifications WHERE user_id = $1 ORDER BY id DESC",
                vec![user.value().into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Notification {
                    id: Self::int(r, "id")?,
                    user: UserId::new(Self::int(r, "user_id")?),
                    run: RunId::new(Self::int(r, "run_id")?),
                    operation_type: OperationType::parse(&Self::text(r, "operation_type")?)?,
                    tenant: TenantId::new(Self::int(r, "tenant_id")?),
                    outcome: RunOutcome::parse(&Self::text(r, "outcome")?)?,
                    created_at: Timestamp::from_millis(Self::int(r, "created_at")?),
                    read: Self::opt_int(r, "read_at")?.is_some(),
                })
            })
            .collect()
    }
}

#[async_trait]
impl RunStore for SqlRunStore {
    async fn create_run(&self, new: CreateRun) -> Result<Started, StoreError> {
        let operation_type = new.params.operation_type();
        let target = new.params.target();
        let identity = opsrun_domain::identity(new.tenant, operation_type, &target);
        let insert = format!(
            "INSERT INTO operation_runs (workspace_id, tenant_id, operation_type, target, identity, \
             initiator_id, parent_id, status, outcome, params, failures, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 'pending', $8, '[]', $9) \
             ON CONFLICT DO NOTHING RETURNING {RUN_COLUMNS}"
        );
        let active = format!(
            "SELECT {RUN_COLUMNS} FROM operation_runs WHERE identity = $1 AND status <> 'completed'"
        );
        // The partial unique index admits one active run per identity: either this insert
        // wins, or the active run is read back (retrying if it completed in between).
        for _ in 0..CAS_ATTEMPTS {
            let values = vec![
                new.workspace.value().into(),
                new.tenant.value().into(),
                operation_type.key().into(),
                target.clone().into(),
                identity.clone().into(),
                new.initiator.map(UserId::value).into(),
                new.parent.map(RunId::value).into(),
                encode_params(&new.params).into(),
                new.at.as_millis().into(),
            ];
            if let Some(run) = self.load_many(&insert, values).await?.pop() {
                return Ok(Started { run, reused: false });
            }
            if let Some(run) = self
                .load_many(&active, vec![identity.clone().into()])
                .await?
                .pop()
            {
                return Ok(Started { run, reused: true });
            }
        }
        Err(StoreError::Unavailable(
            format!("identity {identity} kept changing; gave up").into(),
        ))
    }

    async fn mark_running(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        let sql = "UPDATE operation_runs SET status = 'running', started_at = $2, heartbeat_at = $2 \
            WHERE id = $1 AND status = 'queued'";
        if self
            .exec(
                &self.db,
                sql,
                vec![id.value().into(), at.as_millis().into()],
            )
            .await?
            == 1
        {
            return Ok(Change::Applied);
        }
        let run = self.load(&self.db, id).await?;
        if run.is_completed() {
            return Err(rule(RunError::RunAlreadyCompleted));
        }
        Ok(Change::Unchanged)
    }

    async fn set_total(&self, id: RunId, work_set: WorkSet) -> Result<Change, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let tx = self.write_tx().await?;
            let mut run = self.load(&tx, id).await?;
            // The domain decides, on a model holding the frozen set and the recorded keys.
            let frozen = self.load_work_set(&tx, id, run.basis()).await?;
            let keys = self
                .rows(
                    &tx,
                    "SELECT item_key FROM operation_run_items WHERE run_id = $1",
                    vec![id.value().into()],
                )
                .await?;
            let mut entries = BTreeMap::new();
            for row in &keys {
                entries.insert(
                    ItemKey::parse(&Self::text(row, "item_key")?)?,
                    LedgerEntry {
                        outcome: ItemOutcome::Succeeded,
                        reason: None,
                        deltas: AuxDeltas::new(),
                        recorded_at: Timestamp::from_millis(0),
                    },
                );
            }
            let mut model = ItemLedger::restore(frozen, entries, BTreeMap::new());
            let old_total = run.counts().get(SummaryKey::Total);
            match run.set_total(&mut model, work_set.clone()) {
                Ok(Change::Unchanged) => {
                    self.rollback(tx).await?;
                    return Ok(Change::Unchanged);
                }
                Err(error) => {
                    self.rollback(tx).await?;
                    return Err(rule(error));
                }
                Ok(Change::Applied) => {}
            }
            let total = i64::try_from(work_set.len()).unwrap_or(i64::MAX);
            let guard = if old_total.is_none() {
                "total IS NULL"
            } else {
                "1 = 0"
            };
            let sql = format!(
                "UPDATE operation_runs SET total = $2, processed = COALESCE(processed, 0), basis = $3 \
                 WHERE id = $1 AND status <> 'completed' AND {guard} \
                 AND phases IS NULL AND components IS NULL"
            );
            let values = vec![id.value().into(), total.into(), work_set.basis().into()];
            if self.exec(&tx, &sql, values).await? != 1 {
                // Another writer changed the run since the read: decide again.
                self.rollback(tx).await?;
                continue;
            }
            for (chunk_index, chunk) in work_set.units().chunks(CHUNK).enumerate() {
                let mut rows = Vec::with_capacity(chunk.len());
                let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 3);
                for (i, key) in chunk.iter().enumerate() {
                    let n = i * 3;
                    rows.push(format!("(${}, ${}, ${})", n + 1, n + 2, n + 3));
                    values.push(id.value().into());
                    values.push(key.as_str().into());
                    values.push(((chunk_index * CHUNK + i) as i64).into());
                }
                let sql = format!(
                    "INSERT INTO operation_run_units (run_id, item_key, position) VALUES {}",
                    rows.join(", ")
                );
                self.exec(&tx, &sql, values).await?;
            }
            self.commit(tx).await?;
            return Ok(Change::Applied);
        }
        Err(StoreError::Unavailable(
            format!("run {id} kept changing; gave up after {CAS_ATTEMPTS} attempts").into(),
        ))
    }

    async fn record_items(
        &self,
        id: RunId,
        records: Vec<ItemRecord>,
        at: Timestamp,
    ) -> Result<RecordOutcome, StoreError> {
        let submitted = records.len() as u64;
        // First occurrence of each key in the batch; later ones are duplicates.
        let mut seen = BTreeSet::new();
        let candidates: Vec<ItemRecord> = records
            .into_iter()
            .filter(|r| seen.insert(r.key().clone()))
            .collect();
        if self.backend == DbBackend::Postgres
            && !candidates.is_empty()
            && candidates.len() <= CHUNK
            && let Some(outcome) = self.record_at_once(id, &candidates, submitted, at).await?
        {
            return Ok(outcome);
        }
        self.record_in_transaction(id, candidates, submitted, at)
            .await
    }

    async fn increment(
        &self,
        id: RunId,
        increment_key: ItemKey,
        deltas: AuxDeltas,
    ) -> Result<Change, StoreError> {
        let tx = self.write_tx().await?;
        let run = self.load(&tx, id).await?;
        if run.is_completed() {
            self.rollback(tx).await?;
            return Err(rule(RunError::RunAlreadyCompleted));
        }
        let mut values: Vec<Value> = vec![id.value().into(), increment_key.as_str().into()];
        for key in AuxiliaryKey::ALL {
            values.push(delta_value(&deltas, key).into());
        }
        let inserted = self
            .rows(
                &tx,
                "INSERT INTO operation_run_increments (run_id, increment_key, created, updated, deleted, items, tenants) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_id, increment_key) DO NOTHING \
                 RETURNING increment_key",
                values,
            )
            .await?;
        if inserted.is_empty() {
            self.commit(tx).await?;
            return Ok(Change::Unchanged);
        }
        let mut moved = Deltas::default();
        for (key, delta) in deltas.iter() {
            moved.add(key.summary_key(), delta);
        }
        if moved.0.is_empty() {
            self.commit(tx).await?;
            return Ok(Change::Applied);
        }
        let (sets, guards, mut values) = moved.clauses(2);
        let sql = format!(
            "UPDATE operation_runs SET {} WHERE id = $1 AND status <> 'completed' AND {}",
            sets.join(", "),
            guards.join(" AND ")
        );
        let mut all: Vec<Value> = vec![id.value().into()];
        all.append(&mut values);
        if self.exec(&tx, &sql, all).await? == 1 {
            self.commit(tx).await?;
            return Ok(Change::Applied);
        }
        let mut current = self.load(&tx, id).await?;
        self.rollback(tx).await?;
        match current.increment(&mut ItemLedger::new(), &increment_key, &deltas) {
            Err(error) => Err(rule(error)),
            Ok(_) => Err(StoreError::Unavailable(
                format!("run {id} changed while incrementing; retry").into(),
            )),
        }
    }

    async fn declare_phases(&self, id: RunId, phases: Phases) -> Result<Change, StoreError> {
        self.update_stages(id, |run| run.declare_phases(phases.clone()))
            .await
    }

    async fn enter_phase(&self, id: RunId, key: String) -> Result<Change, StoreError> {
        self.update_stages(id, |run| run.enter_phase(&key)).await
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
        for _ in 0..CAS_ATTEMPTS {
            let tx = self.write_tx().await?;
            let before = self.load(&tx, id).await?;
            let mut after = before.clone();
            let outcome = match after.complete(completion.clone()) {
                Ok(outcome) => outcome,
                Err(RunError::RunAlreadyCompleted) => {
                    self.rollback(tx).await?;
                    return Ok(Completed {
                        run: before,
                        won: false,
                    });
                }
                Err(error) => {
                    self.rollback(tx).await?;
                    return Err(rule(error));
                }
            };
            // Compare-and-set: the outcome was derived from these counts, so they must not
            // have moved; exactly one completion passes `status <> 'completed'`.
            let (guard, mut guard_values) = counts_guard(before.counts(), 5);
            let sql = format!(
                "UPDATE operation_runs SET status = 'completed', outcome = $2, completed_at = $3, \
                 failures = $4 WHERE id = $1 AND status <> 'completed' AND {guard}"
            );
            let mut values: Vec<Value> = vec![
                id.value().into(),
                outcome.key().into(),
                completion.at.as_millis().into(),
                encode_failures(after.failures()).into(),
            ];
            values.append(&mut guard_values);
            if self.exec(&tx, &sql, values).await? != 1 {
                self.rollback(tx).await?;
                continue;
            }
            let action = if outcome == RunOutcome::Cancelled {
                "operation.cancelled"
            } else {
                "operation.completed"
            };
            self.exec(
                &tx,
                "INSERT INTO audit_events (run_id, action, actor_id, outcome, at) VALUES ($1, $2, $3, $4, $5)",
                vec![
                    id.value().into(),
                    action.into(),
                    effects.actor.map(UserId::value).into(),
                    outcome.key().into(),
                    completion.at.as_millis().into(),
                ],
            )
            .await?;
            if let Some(user) = after.initiator() {
                self.exec(
                    &tx,
                    "INSERT INTO notifications (user_id, run_id, operation_type, tenant_id, outcome, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    vec![
                        user.value().into(),
                        id.value().into(),
                        after.operation_type().key().into(),
                        after.tenant().value().into(),
                        outcome.key().into(),
                        completion.at.as_millis().into(),
                    ],
                )
                .await?;
            }
            self.commit(tx).await?;
            return Ok(Completed {
                run: after,
                won: true,
            });
        }
        Err(StoreError::Unavailable(
            format!("run {id} kept changing; gave up after {CAS_ATTEMPTS} attempts").into(),
        ))
    }

    async fn reconcile_counts(&self, id: RunId) -> Result<Option<Drift>, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let tx = self.write_tx().await?;
            let run = self.load(&tx, id).await?;
            if run.is_completed() {
                self.rollback(tx).await?;
                return Err(rule(RunError::RunAlreadyCompleted));
            }
            let recount = self.recount(&tx, id, run.basis().is_some()).await?;
            if recount == *run.counts() {
                self.rollback(tx).await?;
                return Ok(None);
            }
            let (set, mut set_values) = counts_set(&recount, 2);
            let (guard, mut guard_values) = counts_guard(run.counts(), 12);
            let sql = format!(
                "UPDATE operation_runs SET {set} WHERE id = $1 AND status <> 'completed' AND {guard}"
            );
            let mut values: Vec<Value> = vec![id.value().into()];
            values.append(&mut set_values);
            values.append(&mut guard_values);
            if self.exec(&tx, &sql, values).await? != 1 {
                self.rollback(tx).await?;
                continue;
            }
            self.commit(tx).await?;
            return Ok(Some(Drift {
                before: *run.counts(),
                after: recount,
            }));
        }
        Err(StoreError::Unavailable(
            format!("run {id} kept changing; gave up after {CAS_ATTEMPTS} attempts").into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_render_sets_and_overflow_guards_from_the_first_placeholder() {
        let mut deltas = Deltas::default();
        deltas.add(SummaryKey::Processed, 2);
        deltas.add(SummaryKey::Items, 0);

        let (sets, guards, values) = deltas.clauses(4);

        assert_eq!(sets, vec!["processed = COALESCE(processed, 0) + $4"]);
        assert_eq!(guards, vec!["COALESCE(processed, 0) <= $5"]);
        assert_eq!(values.len(), 2);
    }
}
