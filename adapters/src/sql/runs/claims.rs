//! Claims in SQL: an item is claimed right before its provider call, in one statement that
//! refuses a completed run (the cancellation check closest to the side effect); a cancel counts
//! the claimed, unrecorded items as in flight in its completing transaction. The claims of
//! several callers are one statement (see `ClaimCoalescer`).
//!
//! A claim and a completion are serialized on the run row: on PostgreSQL the claim's `INSERT …
//! SELECT` holds `FOR SHARE` on the run (taken once, in a `run` expression) until it commits,
//! and the completion takes `FOR UPDATE` first, so a completion either sees the claim or the
//! claim sees the completed run; on SQLite every write is serialized already.

use opsrun_domain::Claim;

use super::*;

/// `input (item_key) AS (VALUES ...)` over `keys`, numbered from `$first`, and its values.
fn key_input(keys: &[&ItemKey], first: usize) -> (String, Vec<Value>) {
    let rows: Vec<String> = (0..keys.len())
        .map(|i| format!("(CAST(${} AS TEXT))", first + i))
        .collect();
    let values = keys.iter().map(|k| k.as_str().into()).collect();
    (
        format!("input (item_key) AS (VALUES {})", rows.join(", ")),
        values,
    )
}

impl SqlRunStore {
    /// As [`RunStore::claim_items`], twin of `OperationRun::claim_items`: one statement claims
    /// every key the run allows; only when some key was not entered does a read name why, on
    /// the row as it is then.
    pub(super) async fn claim(
        &self,
        id: RunId,
        keys: Vec<ItemKey>,
        at: Timestamp,
    ) -> Result<Vec<Result<Claim, RunError>>, StoreError> {
        let distinct: Vec<&ItemKey> = keys.iter().collect::<BTreeSet<_>>().into_iter().collect();
        if distinct.is_empty() {
            return Ok(Vec::new());
        }
        let lock = match self.backend {
            DbBackend::Postgres => " FOR SHARE",
            _ => "",
        };
        let (input, mut values) = key_input(&distinct, 3);
        // The domain's checks in its order: open, not paused, not recorded, in the work set.
        // "Not recorded" is a count per key, not NOT EXISTS: PostgreSQL turns NOT EXISTS into an
        // anti join, and with statistics taken while the run was young it scanned every item
        // of the run per call (100,000 items: a core busy for minutes); a scalar subquery is
        // one primary-key probe per key. Membership too: as `EXISTS`, PostgreSQL turned it
        // into a hashed subplan that read every unit of the run into a hash per claim (with
        // statistics from before the run's units were stored, it expected one): 40 ms a
        // claim at 100,000 items, in a database that held other large runs.
        // The run row is locked once, in its own expression: locked in the join (`FOR SHARE OF
        // r`), PostgreSQL locked it once per key, and each time a record had changed it since,
        // re-checked that key's probes (56 ms a combined claim of ~64 keys at 100,000 items).
        let sql = format!(
            "WITH {input}, run AS (SELECT id, basis FROM operation_runs WHERE id = $1 \
               AND status <> 'completed' AND paused_at IS NULL{lock}) \
             INSERT INTO operation_run_claims (run_id, item_key, claimed_at) \
             SELECT r.id, i.item_key, $2 FROM run r, input i \
             WHERE (SELECT count(*) FROM operation_run_items x WHERE x.run_id = $1 AND x.item_key = i.item_key) = 0 \
             AND (r.basis IS NULL OR \
               (SELECT count(*) FROM operation_run_units u WHERE u.run_id = $1 AND u.item_key = i.item_key) > 0) \
             ON CONFLICT (run_id, item_key) DO NOTHING RETURNING item_key"
        );
        let mut all: Vec<Value> = vec![id.value().into(), at.as_millis().into()];
        all.append(&mut values);
        let mut entered = BTreeSet::new();
        for row in self.rows(&self.db, &sql, all).await? {
            entered.insert(Self::text(&row, "item_key")?);
        }
        if entered.len() == distinct.len() {
            return Ok(keys.iter().map(|_| Ok(Claim::Claimed)).collect());
        }
        // Some key was not entered: name why, on the row as it is now.
        let run = self.load(&self.db, id).await?;
        let rest: Vec<&ItemKey> = distinct
            .into_iter()
            .filter(|k| !entered.contains(k.as_str()))
            .collect();
        let (input, values) = key_input(&rest, 2);
        let mut all: Vec<Value> = vec![id.value().into()];
        all.extend(values);
        let mut found = BTreeMap::new();
        for row in self
            .rows(
                &self.db,
                &format!(
                    "WITH {input} SELECT i.item_key, \
                     (SELECT count(*) FROM operation_run_items x WHERE x.run_id = $1 AND x.item_key = i.item_key) AS recorded, \
                     (SELECT count(*) FROM operation_run_units u WHERE u.run_id = $1 AND u.item_key = i.item_key) AS member \
                     FROM input i"
                ),
                all,
            )
            .await?
        {
            let recorded = Self::int(&row, "recorded")? > 0;
            let member = Self::int(&row, "member")? > 0;
            found.insert(Self::text(&row, "item_key")?, (recorded, member));
        }
        Ok(keys
            .into_iter()
            .map(|key| {
                if entered.contains(key.as_str()) {
                    return Ok(Claim::Claimed);
                }
                if run.is_completed() {
                    return Err(RunError::RunAlreadyCompleted);
                }
                if run.is_paused() {
                    return Ok(Claim::Paused);
                }
                let (recorded, member) = found.get(key.as_str()).copied().unwrap_or_default();
                if recorded {
                    Ok(Claim::AlreadyRecorded)
                } else if run.basis().is_some() && !member {
                    Err(RunError::ItemNotInWorkSet { item_key: key })
                } else {
                    // Claimed before (a retried job): the claim stands.
                    Ok(Claim::Claimed)
                }
            })
            .collect())
    }

    /// The ledger model a completion decides on: empty but for the run's items in flight
    /// (claimed, in the work set, not recorded). Takes the run row's lock first on PostgreSQL
    /// (see the module note). Probes per claim by count, as the claim itself does (an
    /// `EXISTS` can become a hashed read of every unit of the run).
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
                 AND (SELECT count(*) FROM operation_run_items i WHERE i.run_id = $1 AND i.item_key = c.item_key) = 0 \
                 AND (r.basis IS NULL OR \
                   (SELECT count(*) FROM operation_run_units u WHERE u.run_id = $1 AND u.item_key = c.item_key) > 0)",
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
