//! Whole-ledger reads and raw writes, for the contract suite and diagnostics: they bypass no
//! rule on the normal path and are never called by the application.

use super::*;

impl SqlRunStore {
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

    pub(super) fn deltas(row: &QueryResult) -> Result<AuxDeltas, StoreError> {
        let mut deltas = AuxDeltas::new();
        for key in AuxiliaryKey::ALL {
            if let Some(v) = Self::opt_int(row, column(key.summary_key()))? {
                deltas = deltas.with(key, u64::try_from(v).unwrap_or(0));
            }
        }
        Ok(deltas)
    }

    pub(super) fn ledger_entry(row: &QueryResult) -> Result<(ItemKey, LedgerEntry), StoreError> {
        let reason = row
            .try_get::<Option<String>>("", "reason")
            .map_err(raw::SqlError::from)?
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
