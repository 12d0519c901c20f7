//! A run's lifecycle in SQL: created once per active identity, marked running, its total frozen
//! once (I1), completed exactly once with its audit event and notification (the outbox).

use super::*;

impl SqlRunStore {
    /// As [`RunStore::create_run`].
    pub(super) async fn create(&self, new: CreateRun) -> Result<Started, StoreError> {
        let operation_type = new.params.operation_type();
        let target = new.params.target();
        let identity = opsrun_domain::identity(new.tenant, &operation_type, &target);
        // `WHERE NOT EXISTS`: a start that will reuse the active run draws no id (a
        // conflicting `VALUES` row would take a sequence value on PostgreSQL, so the id counter
        // would show how often other tenants start runs). Only a race of two starts can still
        // draw one, and the partial unique index keeps the second out.
        let insert = format!(
            "INSERT INTO operation_runs (workspace_id, tenant_id, operation_type, target, identity, \
             initiator_id, parent_id, status, outcome, params, failures, created_at, retry_of) \
             SELECT $1, $2, $3, $4, $5, $6, $7, 'queued', 'pending', $8, '[]', $9, $10 \
             WHERE NOT EXISTS (SELECT 1 FROM operation_runs WHERE identity = $5 AND status <> 'completed') \
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
                new.retry_of.map(RunId::value).into(),
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

    /// As [`RunStore::mark_running`].
    pub(super) async fn start_running(
        &self,
        id: RunId,
        at: Timestamp,
    ) -> Result<Change, StoreError> {
        let sql = "UPDATE operation_runs SET status = 'running', started_at = $2, heartbeat_at = $2, \
            waiting = NULL WHERE id = $1 AND status = 'queued'";
        self.guarded_stamp(sql, id, at).await
    }

    /// As [`RunStore::set_total`]: I1 as one guarded statement.
    pub(super) async fn freeze_total(
        &self,
        id: RunId,
        work_set: WorkSet,
    ) -> Result<Change, StoreError> {
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

    /// As [`RunStore::complete`]: the winning transition and its outbox rows in one transaction.
    pub(super) async fn complete_once(
        &self,
        id: RunId,
        completion: Completion,
        effects: TerminalEffects,
    ) -> Result<Completed, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let tx = self.write_tx().await?;
            let mut model = if completion.in_flight.is_some() {
                self.in_flight(&tx, id).await?
            } else {
                ItemLedger::new()
            };
            let before = self.load(&tx, id).await?;
            let mut after = before.clone();
            let outcome = match after.complete_settling(&mut model, completion.clone()) {
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
            // Items the completion counted as in flight enter the ledger first (the run is
            // still open in this transaction), and their counts move with the completion.
            let settled: Vec<ItemRecord> = model
                .entries()
                .map(|(key, entry)| ItemRecord::skipped(key.clone(), entry.reason.clone()))
                .collect();
            let mut counts = String::new();
            let mut count_values: Vec<Value> = Vec::new();
            if !settled.is_empty() {
                // The run row is locked already (`in_flight`).
                let (ctes, insert, mut item_values) = ledger_insert(&settled, "item_key", "");
                let mut values: Vec<Value> =
                    vec![id.value().into(), completion.at.as_millis().into()];
                values.append(&mut item_values);
                self.exec(&tx, &format!("WITH {ctes} {insert}"), values)
                    .await?;
                let next = 5 + guard_values.len();
                for (i, key) in [SummaryKey::Processed, SummaryKey::Skipped]
                    .into_iter()
                    .enumerate()
                {
                    let value = after.counts().get_or_zero(key);
                    counts.push_str(&format!(", {} = ${}", column(key), next + i));
                    count_values.push(i64::try_from(value).unwrap_or(i64::MAX).into());
                }
                // A record is a sign of life, as in the domain.
                counts.push_str(&format!(", heartbeat_at = ${}", next + 2));
                count_values.push(after.heartbeat_at().map(Timestamp::as_millis).into());
            }
            let sql = format!(
                "UPDATE operation_runs SET status = 'completed', outcome = $2, completed_at = $3, \
                 failures = $4{counts} WHERE id = $1 AND status <> 'completed' AND {guard}"
            );
            let mut values: Vec<Value> = vec![
                id.value().into(),
                outcome.key().into(),
                completion.at.as_millis().into(),
                encode_failures(after.failures()).into(),
            ];
            values.append(&mut guard_values);
            values.append(&mut count_values);
            if self.exec(&tx, &sql, values).await? != 1 {
                self.rollback(tx).await?;
                continue;
            }
            // Claims live only while the run is open.
            self.exec(
                &tx,
                "DELETE FROM operation_run_claims WHERE run_id = $1",
                vec![id.value().into()],
            )
            .await?;
            let action = completion_action(outcome);
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
            self.enqueue_deliveries(
                &tx,
                &after,
                opsrun_domain::WebhookEvent::Completed,
                completion.at,
            )
            .await?;
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
}
