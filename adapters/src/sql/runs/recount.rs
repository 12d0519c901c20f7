//! Recounting a run's counters from its ledger (the self-healing pass).

use super::*;

impl SqlRunStore {
    /// As [`RunStore::reconcile_counts`].
    pub(super) async fn recount_from_ledger(&self, id: RunId) -> Result<Option<Drift>, StoreError> {
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

    /// The counts implied by the run's ledger, computed by the database (same rules as
    /// [`ItemLedger::recount`]).
    pub(super) async fn recount<C: ConnectionTrait>(
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
}
