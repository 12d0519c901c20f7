//! Recording in SQL: each item key once (I5), never past the total (I2), never on a completed
//! run (I6); a run-level increment once per key. One statement on PostgreSQL, one transaction
//! on SQLite.

use super::*;

impl SqlRunStore {
    /// As [`RunStore::record_items`].
    pub(super) async fn record(
        &self,
        id: RunId,
        records: Vec<ItemRecord>,
        at: Timestamp,
    ) -> Result<Recorded, StoreError> {
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
        if self.backend == DbBackend::Sqlite
            && !candidates.is_empty()
            && candidates.len() <= CHUNK
            && let Some(outcome) = self
                .record_new_at_once(id, &candidates, submitted, at)
                .await?
        {
            return Ok(outcome);
        }
        self.record_in_transaction(id, candidates, submitted, at)
            .await
    }

    /// SQLite, when every candidate is new to the ledger (the common case: a duplicate is a
    /// redelivery): the ledger insert and the guarded `UPDATE` by all candidates' deltas as
    /// one script in one transaction, three calls to SQLite's thread (`BEGIN`, the script,
    /// `COMMIT`) where the general path makes four and carries every entered key back; each
    /// call is a round trip between threads, most of a small record's time. The `UPDATE`
    /// counts only when the insert entered every candidate: `changes()` is the count of the
    /// most recently completed statement, the insert. `None` when it did not count (a
    /// duplicate, a refusal, a guard): the transaction is rolled back, and the general path
    /// decides and names why.
    async fn record_new_at_once(
        &self,
        id: RunId,
        candidates: &[ItemRecord],
        submitted: u64,
        at: Timestamp,
    ) -> Result<Option<Recorded>, StoreError> {
        let (ctes, insert, mut item_values) = ledger_insert(candidates, "", self.run_lock());
        let adding = candidates.len() as u64;
        let (update, mut update_values) = Deltas::of_records(candidates).record_update(
            3 + item_values.len(),
            &adding.to_string(),
            "$2",
            &format!("changes() = {adding}"),
        );
        let sql = format!("WITH {ctes} {insert}; {update}");
        let mut values: Vec<Value> = vec![id.value().into(), at.as_millis().into()];
        values.append(&mut item_values);
        values.append(&mut update_values);
        let tx = self.write_tx().await?;
        // Two statements in one call: counted as two.
        self.count();
        let Some(row) = self.one(&tx, &sql, values).await? else {
            self.rollback(tx).await?;
            return Ok(None);
        };
        let done = all_recorded(
            Self::opt_int(&row, "processed")?,
            Self::opt_int(&row, "total")?,
        );
        self.commit(tx).await?;
        Ok(Some(Recorded {
            outcome: RecordOutcome {
                recorded: adding,
                duplicates: submitted - adding,
                all_recorded: done,
            },
            fresh: candidates.iter().map(|r| r.key().clone()).collect(),
        }))
    }

    /// As [`RunStore::increment`].
    pub(super) async fn apply_increment(
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
        if moved.is_empty() {
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

    /// PostgreSQL: a record as one statement (no `BEGIN`/`COMMIT`): the ledger insert, the
    /// sum of what it entered and one guarded `UPDATE` of the run, in data-modifying CTEs. The
    /// statement is atomic; when the run's guard refuses after rows were entered,
    /// `opsrun_refuse_record()` raises and PostgreSQL undoes the inserts. `None` when the
    /// statement changed nothing for a reason to be named (no such run, completed, an item
    /// outside the work set, a guard): the transactional path then decides on the row as it is.
    pub(super) async fn record_at_once(
        &self,
        id: RunId,
        candidates: &[ItemRecord],
        submitted: u64,
        at: Timestamp,
    ) -> Result<Option<Recorded>, StoreError> {
        let returning = format!("item_key, outcome, {}", aux_columns(""));
        let (ctes, insert, mut item_values) =
            ledger_insert(candidates, &returning, self.run_lock());
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
               COALESCE((SELECT total FROM upd), (SELECT total FROM run)) AS total, \
               CASE WHEN d.processed < {} THEN (SELECT json_agg(item_key)::text FROM ins) END AS fresh \
             FROM d",
            moved.join(", "),
            sets.join(", "),
            guards.join(" AND "),
            candidates.len()
        );
        let mut values: Vec<Value> = vec![id.value().into(), at.as_millis().into()];
        values.append(&mut item_values);
        let row = match self.db.query_one_raw(self.stmt(&sql, values)).await {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(error) if error.to_string().contains(REFUSED) => return Ok(None),
            Err(error) => return Err(raw::sql(error)),
        };
        if Self::int(&row, "open")? == 0 || Self::int(&row, "outside")? > 0 {
            return Ok(None);
        }
        let recorded = u64::try_from(Self::int(&row, "recorded")?).unwrap_or(0);
        // Only a record that met keys already in the ledger says which it entered; otherwise
        // it entered every candidate. (`json_agg` of nothing entered is NULL.)
        let fresh = match Self::opt_text(&row, "fresh")? {
            _ if recorded == candidates.len() as u64 => {
                candidates.iter().map(|r| r.key().clone()).collect()
            }
            None => Vec::new(),
            Some(json) => {
                let entered: BTreeSet<String> = serde_json::from_str(&json).map_err(|e| {
                    StoreError::Unavailable(format!("unreadable record answer: {e}").into())
                })?;
                in_order(candidates, &entered)
            }
        };
        Ok(Some(Recorded {
            outcome: RecordOutcome {
                recorded,
                duplicates: submitted - recorded,
                all_recorded: all_recorded(
                    Self::opt_int(&row, "processed")?,
                    Self::opt_int(&row, "total")?,
                ),
            },
            fresh,
        }))
    }

    /// A record as one transaction (SQLite's path, and PostgreSQL's when a refusal is to be
    /// named): the ledger insert, then one guarded `UPDATE`; a refusal is named by replaying
    /// the domain method on the row as it is now, so the errors are the domain's.
    pub(super) async fn record_in_transaction(
        &self,
        id: RunId,
        candidates: Vec<ItemRecord>,
        submitted: u64,
        at: Timestamp,
    ) -> Result<Recorded, StoreError> {
        let tx = self.write_tx().await?;
        let mut fresh_keys = BTreeSet::new();
        for chunk in candidates.chunks(CHUNK) {
            let (ctes, insert, mut item_values) = ledger_insert(chunk, "item_key", self.run_lock());
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
                return Ok(Recorded {
                    outcome: RecordOutcome {
                        recorded: 0,
                        duplicates: submitted,
                        all_recorded: run.all_recorded(),
                    },
                    fresh: Vec::new(),
                });
            }
        }
        let fresh: Vec<&ItemRecord> = candidates
            .iter()
            .filter(|r| fresh_keys.contains(r.key().as_str()))
            .collect();
        let adding = fresh.len() as u64;
        let (sql, mut values) =
            Deltas::of_records(fresh.iter().copied()).record_update(4, "$2", "$3", "TRUE");
        let mut all: Vec<Value> = vec![
            id.value().into(),
            i64::try_from(adding).unwrap_or(i64::MAX).into(),
            at.as_millis().into(),
        ];
        all.append(&mut values);
        // One row at most: fetched as one (the driver's answer is the row alone).
        if let Some(row) = self.one(&tx, &sql, all).await? {
            let done = all_recorded(
                Self::opt_int(&row, "processed")?,
                Self::opt_int(&row, "total")?,
            );
            self.commit(tx).await?;
            return Ok(Recorded {
                outcome: RecordOutcome {
                    recorded: adding,
                    duplicates: submitted - adding,
                    all_recorded: done,
                },
                fresh: fresh.iter().map(|r| r.key().clone()).collect(),
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
    pub(super) async fn first_outside<C: ConnectionTrait>(
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
}

/// The keys of `candidates` (in their order) that are in `entered`.
fn in_order(candidates: &[ItemRecord], entered: &BTreeSet<String>) -> Vec<ItemKey> {
    candidates
        .iter()
        .filter(|r| entered.contains(r.key().as_str()))
        .map(|r| r.key().clone())
        .collect()
}
