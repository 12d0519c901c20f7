//! A fan-out's child jobs in SQL, twin of `opsrun_domain::ChildJobLedger`: one row per job
//! (by sequence number) with whether it finished, and the run's two counts changed in the same
//! transaction, so `children_completed <= children_total` always and a job announced or
//! finished twice counts once. Once per dispatch and once per child job (about 1 per 100 items):
//! a transaction on both backends.

use super::*;

/// Job numbers per insert statement.
const JOBS_PER_STATEMENT: u64 = 400;

impl SqlRunStore {
    /// As [`RunStore::child_jobs_enqueued`].
    pub(super) async fn enqueued_children(
        &self,
        id: RunId,
        first: u64,
        count: u64,
    ) -> Result<Change, StoreError> {
        let tx = self.write_tx().await?;
        if let Err(error) = self.load_lock(&tx, id).await {
            self.rollback(tx).await?;
            return Err(error);
        }
        let mut added = 0_u64;
        let end = first.saturating_add(count);
        let mut from = first;
        while from < end {
            let to = end.min(from.saturating_add(JOBS_PER_STATEMENT));
            // Sequence numbers are integers we produced, not input: written as literals.
            let rows: Vec<String> = (from..to)
                .map(|job| format!("($1, {job}, FALSE)"))
                .collect();
            let sql = format!(
                "INSERT INTO operation_run_children (run_id, job, finished) VALUES {} \
                 ON CONFLICT (run_id, job) DO NOTHING",
                rows.join(", ")
            );
            added += self.exec(&tx, &sql, vec![id.value().into()]).await?;
            from = to;
        }
        self.move_children(&tx, id, added, 0).await?;
        self.commit(tx).await?;
        Ok(if added > 0 {
            Change::Applied
        } else {
            Change::Unchanged
        })
    }

    /// As [`RunStore::reserve_child_jobs`]: one statement, twin of
    /// `ChildJobLedger::reserve` (after every number reserved or known).
    pub(super) async fn reserve_children(&self, id: RunId, count: u64) -> Result<u64, StoreError> {
        let greatest = match self.backend {
            DbBackend::Postgres => "GREATEST",
            // SQLite's MAX of several arguments is the scalar one.
            _ => "MAX",
        };
        let sql = format!(
            "UPDATE operation_runs SET children_next = {greatest}(COALESCE(children_next, 0), \
             (SELECT COALESCE(MAX(job) + 1, 0) FROM operation_run_children WHERE run_id = $1)) + $2 \
             WHERE id = $1 RETURNING children_next - $2 AS first"
        );
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let rows = self
            .rows(&self.db, &sql, vec![id.value().into(), count.into()])
            .await?;
        let row = rows.first().ok_or(StoreError::RunNotFound(id))?;
        u64::try_from(Self::int(row, "first")?)
            .map_err(|_| StoreError::Corrupt(format!("run {id} has a negative child job number")))
    }

    /// As [`RunStore::child_job_finished`].
    pub(super) async fn finished_child(&self, id: RunId, job: u64) -> Result<Change, StoreError> {
        let job = i64::try_from(job).unwrap_or(i64::MAX);
        let tx = self.write_tx().await?;
        // The run row first, as the announcement takes it: an announcement under way is
        // waited for (its rows are then seen), and the two never lock in opposite orders.
        if let Err(error) = self.load_lock(&tx, id).await {
            self.rollback(tx).await?;
            return Err(error);
        }
        let announced = self
            .exec(
                &tx,
                "UPDATE operation_run_children SET finished = TRUE \
                 WHERE run_id = $1 AND job = $2 AND finished = FALSE",
                vec![id.value().into(), job.into()],
            )
            .await?;
        let change = if announced == 1 {
            self.move_children(&tx, id, 0, 1).await?;
            Change::Applied
        } else {
            // Finished before it was announced (its dispatcher died in between), or again.
            let unknown = self
                .exec(
                    &tx,
                    "INSERT INTO operation_run_children (run_id, job, finished) VALUES ($1, $2, TRUE) \
                     ON CONFLICT (run_id, job) DO NOTHING",
                    vec![id.value().into(), job.into()],
                )
                .await?;
            if unknown == 1 {
                self.move_children(&tx, id, 1, 1).await?;
                Change::Applied
            } else {
                Change::Unchanged
            }
        };
        self.commit(tx).await?;
        Ok(change)
    }

    /// The run row, locked for the rest of the transaction on PostgreSQL: its existence, before
    /// rows that refer to it are written.
    async fn load_lock(&self, tx: &DatabaseTransaction, id: RunId) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT id FROM operation_runs WHERE id = $1{}",
            self.run_lock()
        );
        if self
            .rows(tx, &sql, vec![id.value().into()])
            .await?
            .is_empty()
        {
            return Err(StoreError::RunNotFound(id));
        }
        Ok(())
    }

    async fn move_children(
        &self,
        tx: &DatabaseTransaction,
        id: RunId,
        total: u64,
        completed: u64,
    ) -> Result<(), StoreError> {
        self.exec(
            tx,
            "UPDATE operation_runs SET children_total = COALESCE(children_total, 0) + $2, \
             children_completed = COALESCE(children_completed, 0) + $3 WHERE id = $1",
            vec![
                id.value().into(),
                i64::try_from(total).unwrap_or(i64::MAX).into(),
                i64::try_from(completed).unwrap_or(i64::MAX).into(),
            ],
        )
        .await?;
        Ok(())
    }
}
