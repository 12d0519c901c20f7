//! Claims in SQL: an item is claimed right before its provider call, in one statement that
//! refuses a completed run (the cancellation check closest to the side effect); a cancel counts
//! the claimed, unrecorded items as in flight in its completing transaction.
//!
//! A claim and a completion are serialized on the run row: on PostgreSQL the claim's `INSERT …
//! SELECT` holds `FOR SHARE` on the run until it commits and the completion takes `FOR UPDATE`
//! first, so a completion either sees the claim or the claim sees the completed run; on SQLite
//! every write is serialized already.

use opsrun_domain::Claim;

use super::*;

impl SqlRunStore {
    /// As [`RunStore::claim_item`], twin of `OperationRun::claim_item`.
    pub(super) async fn claim(
        &self,
        id: RunId,
        key: ItemKey,
        at: Timestamp,
    ) -> Result<Claim, StoreError> {
        let lock = match self.backend {
            DbBackend::Postgres => " FOR SHARE OF r",
            _ => "",
        };
        // The domain's checks in its order: open, not paused, not recorded, in the work set.
        let sql = format!(
            "INSERT INTO operation_run_claims (run_id, item_key, claimed_at) \
             SELECT r.id, $2, $3 FROM operation_runs r WHERE r.id = $1 AND r.status <> 'completed' \
             AND r.paused_at IS NULL AND NOT EXISTS (SELECT 1 FROM operation_run_items i WHERE i.run_id = $1 AND i.item_key = $2) \
             AND (r.basis IS NULL OR EXISTS \
               (SELECT 1 FROM operation_run_units u WHERE u.run_id = $1 AND u.item_key = $2)){lock} \
             ON CONFLICT (run_id, item_key) DO NOTHING RETURNING item_key"
        );
        let values = vec![
            id.value().into(),
            key.as_str().into(),
            at.as_millis().into(),
        ];
        if !self.rows(&self.db, &sql, values).await?.is_empty() {
            return Ok(Claim::Claimed);
        }
        // Nothing entered: name why, on the row as it is now.
        let run = self.load(&self.db, id).await?;
        if run.is_completed() {
            return Err(rule(RunError::RunAlreadyCompleted));
        }
        if run.is_paused() {
            return Ok(Claim::Paused);
        }
        let row = self
            .rows(
                &self.db,
                "SELECT (SELECT count(*) FROM operation_run_items WHERE run_id = $1 AND item_key = $2) AS recorded, \
                 (SELECT count(*) FROM operation_run_units WHERE run_id = $1 AND item_key = $2) AS member",
                vec![id.value().into(), key.as_str().into()],
            )
            .await?;
        let row = row
            .first()
            .ok_or_else(|| StoreError::Unavailable("claim check returned no row".into()))?;
        if Self::int(row, "recorded")? > 0 {
            return Ok(Claim::AlreadyRecorded);
        }
        if run.basis().is_some() && Self::int(row, "member")? == 0 {
            return Err(rule(RunError::ItemNotInWorkSet { item_key: key }));
        }
        // Claimed before (a retried job): the claim stands.
        Ok(Claim::Claimed)
    }

    /// The ledger model a completion decides on: empty but for the run's items in flight
    /// (claimed, in the work set, not recorded). Takes the run row's lock first on PostgreSQL
    /// (see the module note).
    pub(super) async fn in_flight(
        &self,
        tx: &DatabaseTransaction,
        id: RunId,
    ) -> Result<ItemLedger, StoreError> {
        if self.backend == DbBackend::Postgres {
            self.rows(
                tx,
                "SELECT id FROM operation_runs WHERE id = $1 FOR UPDATE",
                vec![id.value().into()],
            )
            .await?;
        }
        let rows = self
            .rows(
                tx,
                "SELECT c.item_key FROM operation_run_claims c JOIN operation_runs r ON r.id = c.run_id \
                 WHERE c.run_id = $1 \
                 AND NOT EXISTS (SELECT 1 FROM operation_run_items i WHERE i.run_id = $1 AND i.item_key = c.item_key) \
                 AND (r.basis IS NULL OR EXISTS \
                   (SELECT 1 FROM operation_run_units u WHERE u.run_id = $1 AND u.item_key = c.item_key))",
                vec![id.value().into()],
            )
            .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            keys.push(ItemKey::parse(&Self::text(row, "item_key")?)?);
        }
        Ok(ItemLedger::restore(None, BTreeMap::new(), BTreeMap::new()).with_claims(keys))
    }
}
