//! Run control in SQL: admission under the tenant's concurrency limit, pause and resume, the
//! tenant limits, and the reads that go with them (a run's recent record times for its pace,
//! the retries of a run).
//!
//! Admissions of one tenant are serialized: on PostgreSQL the admitting transaction locks the
//! tenant's row first (`FOR UPDATE`), so two runs never both see the last free slot; on SQLite
//! every write transaction is serialized already.

use opsrun_domain::{Admission, PACE_MAX_RECORDS, PACE_WINDOW_MS, RecordWindow, TenantLoad};

use super::*;

impl SqlRunStore {
    /// As [`RunStore::admit`], twin of `OperationRun::admit`.
    pub(super) async fn admit_run(
        &self,
        id: RunId,
        at: Timestamp,
        default_limit: u32,
    ) -> Result<Admission, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let tx = self.write_tx().await?;
            let tenant_lock = match self.backend {
                DbBackend::Postgres => " FOR UPDATE",
                _ => "",
            };
            self.rows(
                &tx,
                &format!(
                    "SELECT id FROM tenants WHERE id = (SELECT tenant_id FROM operation_runs WHERE id = $1){tenant_lock}"
                ),
                vec![id.value().into()],
            )
            .await?;
            let mut run = self.load(&tx, id).await?;
            let load = if run.parent().is_some() {
                // A child run works in its parent's slot.
                TenantLoad {
                    running: 0,
                    limit: 1,
                }
            } else {
                let rows = self
                    .rows(
                        &tx,
                        "SELECT (SELECT count(*) FROM operation_runs WHERE tenant_id = $1 \
                           AND parent_id IS NULL AND status = 'running' AND id <> $2) AS running, \
                         (SELECT CAST(max_running AS BIGINT) FROM tenant_limits WHERE tenant_id = $1) AS max_running",
                        vec![run.tenant().value().into(), id.value().into()],
                    )
                    .await?;
                let row = rows
                    .first()
                    .ok_or_else(|| StoreError::Unavailable("admission read no row".into()))?;
                TenantLoad {
                    running: u32::try_from(Self::int(row, "running")?).unwrap_or(u32::MAX),
                    limit: Self::opt_int(row, "max_running")?
                        .and_then(|l| u32::try_from(l).ok())
                        .unwrap_or(default_limit),
                }
            };
            let before_waiting = run.waiting().map(str::to_owned);
            let admission = match run.admit(at, load) {
                Ok(admission) => admission,
                Err(error) => {
                    self.rollback(tx).await?;
                    return Err(rule(error));
                }
            };
            let written = match &admission {
                Admission::Started(Change::Applied) => {
                    self.exec(
                        &tx,
                        "UPDATE operation_runs SET status = 'running', started_at = $2, \
                         heartbeat_at = $2, waiting = NULL \
                         WHERE id = $1 AND status = 'queued' AND paused_at IS NULL",
                        vec![id.value().into(), at.as_millis().into()],
                    )
                    .await?
                        == 1
                }
                Admission::Waiting(reason) if before_waiting.as_deref() != Some(reason) => {
                    self.exec(
                        &tx,
                        "UPDATE operation_runs SET waiting = $2 \
                         WHERE id = $1 AND status = 'queued' AND paused_at IS NULL",
                        vec![id.value().into(), reason.clone().into()],
                    )
                    .await?
                        == 1
                }
                _ => true,
            };
            if !written {
                // The run changed since the read (paused, started, completed): decide again.
                self.rollback(tx).await?;
                continue;
            }
            self.commit(tx).await?;
            return Ok(admission);
        }
        Err(StoreError::Unavailable(
            format!("run {id} kept changing; gave up after {CAS_ATTEMPTS} attempts").into(),
        ))
    }

    /// As [`RunStore::pause`], twin of `OperationRun::pause`.
    pub(super) async fn pause_run(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        let sql = "UPDATE operation_runs SET paused_at = $2 \
            WHERE id = $1 AND status <> 'completed' AND paused_at IS NULL";
        self.guarded_stamp(sql, id, at).await
    }

    /// As [`RunStore::resume`], twin of `OperationRun::resume`: the heartbeat of a running run
    /// moves to `at` (never backwards), so the pause never counts as silence.
    pub(super) async fn resume_run(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        let sql = "UPDATE operation_runs SET paused_at = NULL, heartbeat_at = CASE \
              WHEN status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < $2) THEN $2 \
              ELSE heartbeat_at END \
            WHERE id = $1 AND status <> 'completed' AND paused_at IS NOT NULL";
        self.guarded_stamp(sql, id, at).await
    }

    /// As [`RunStore::set_tenant_limit`].
    pub(super) async fn put_tenant_limit(
        &self,
        tenant: TenantId,
        limit: Option<u32>,
    ) -> Result<(), StoreError> {
        match limit {
            Some(limit) => {
                self.exec(
                    &self.db,
                    "INSERT INTO tenant_limits (tenant_id, max_running) VALUES ($1, $2) \
                     ON CONFLICT (tenant_id) DO UPDATE SET max_running = excluded.max_running",
                    vec![tenant.value().into(), i64::from(limit).into()],
                )
                .await?;
            }
            None => {
                self.exec(
                    &self.db,
                    "DELETE FROM tenant_limits WHERE tenant_id = $1",
                    vec![tenant.value().into()],
                )
                .await?;
            }
        }
        Ok(())
    }

    /// As [`RunStore::mark_notifications_read`]: one statement, of this user's unread ones
    /// only. The ids arrive as one JSON array bound as text (SQLite's `json_each`,
    /// PostgreSQL's `jsonb_array_elements_text`), so any number of them is one statement
    /// with two parameters.
    pub(super) async fn mark_read(
        &self,
        user: UserId,
        ids: &[i64],
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned());
        let sql = match self.backend {
            DbBackend::Postgres => {
                "UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL \
                 AND id IN (SELECT value::bigint FROM jsonb_array_elements_text($3::jsonb))"
            }
            _ => {
                "UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL \
                 AND id IN (SELECT value FROM json_each($3))"
            }
        };
        self.exec(
            &self.db,
            sql,
            vec![at.as_millis().into(), user.value().into(), list.into()],
        )
        .await
    }

    /// As [`RunQueries::tenant_limit`].
    pub(super) async fn get_tenant_limit(
        &self,
        tenant: TenantId,
    ) -> Result<Option<u32>, StoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT CAST(max_running AS BIGINT) AS max_running FROM tenant_limits WHERE tenant_id = $1",
                vec![tenant.value().into()],
            )
            .await?;
        Ok(match rows.first() {
            Some(row) => u32::try_from(Self::int(row, "max_running")?).ok(),
            None => None,
        })
    }

    /// As [`RunQueries::record_window`], twin of `RecordWindow::from_times`: one aggregate
    /// over the run's most recent ledger rows.
    pub(super) async fn window(
        &self,
        id: RunId,
        now: Timestamp,
    ) -> Result<Option<RecordWindow>, StoreError> {
        let since = now.as_millis().saturating_sub(PACE_WINDOW_MS);
        let sql = format!(
            "SELECT count(*) AS records, min(recorded_at) AS first_at FROM \
             (SELECT recorded_at FROM operation_run_items WHERE run_id = $1 AND recorded_at >= $2 \
              ORDER BY recorded_at DESC LIMIT {PACE_MAX_RECORDS}) w"
        );
        let rows = self
            .rows(&self.db, &sql, vec![id.value().into(), since.into()])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let records = u64::try_from(Self::int(row, "records")?).unwrap_or(0);
        Ok(match Self::opt_int(row, "first_at")? {
            Some(first) if records > 0 => Some(RecordWindow {
                records,
                first_at: Timestamp::from_millis(first),
            }),
            _ => None,
        })
    }

    /// As [`RunQueries::record_windows`]: the same aggregate per run, every run in one read.
    pub(super) async fn windows(
        &self,
        ids: &[RunId],
        now: Timestamp,
    ) -> Result<BTreeMap<RunId, RecordWindow>, StoreError> {
        let since = now.as_millis().saturating_sub(PACE_WINDOW_MS);
        let mut windows = BTreeMap::new();
        // 400 ids a statement stay far below either database's limit of bound values.
        for ids in ids.chunks(400) {
            let list: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
            // Each run's most recent records (a correlated subquery per aggregate: both
            // databases resolve the outer run id inside the derived table).
            let recent = format!(
                "(SELECT recorded_at FROM operation_run_items WHERE run_id = r.id AND recorded_at >= $1 \
                 ORDER BY recorded_at DESC LIMIT {PACE_MAX_RECORDS})"
            );
            let sql = format!(
                "SELECT r.id, (SELECT count(*) FROM {recent} w) AS records, \
                 (SELECT min(recorded_at) FROM {recent} w) AS first_at \
                 FROM operation_runs r WHERE r.id IN ({})",
                list.join(", ")
            );
            let mut values: Vec<Value> = vec![since.into()];
            values.extend(ids.iter().map(|id| id.value().into()));
            for row in self.rows(&self.db, &sql, values).await? {
                let records = u64::try_from(Self::int(&row, "records")?).unwrap_or(0);
                if let Some(first) = Self::opt_int(&row, "first_at")?
                    && records > 0
                {
                    windows.insert(
                        RunId::new(Self::int(&row, "id")?),
                        RecordWindow {
                            records,
                            first_at: Timestamp::from_millis(first),
                        },
                    );
                }
            }
        }
        Ok(windows)
    }

    /// As [`RunQueries::retries_of`].
    pub(super) async fn retries(&self, id: RunId) -> Result<Vec<RunId>, StoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT id FROM operation_runs WHERE retry_of = $1 ORDER BY id",
                vec![id.value().into()],
            )
            .await?;
        rows.iter()
            .map(|row| Ok(RunId::new(Self::int(row, "id")?)))
            .collect()
    }
}
