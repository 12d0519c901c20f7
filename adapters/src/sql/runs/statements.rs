//! Every SQL rendering of a domain rule, each next to a comment naming its twin in
//! `opsrun-domain`; column lists come from the domain's key lists, never typed again.

use super::*;

/// The counter columns an item or increment moves, in canonical key order.
pub(super) fn column(key: SummaryKey) -> &'static str {
    key.key()
}

/// Counter deltas of one mutation, by summary key. Domain twin: the additions of
/// `OperationRun::record_items` and `OperationRun::increment`, whose overflow refusal
/// (`RunError::CountOverflow`, bound [`MAX_COUNT`]) the `WHERE` guards of [`Deltas::clauses`]
/// render.
#[derive(Default)]
pub(super) struct Deltas(BTreeMap<SummaryKey, u64>);

impl Deltas {
    /// Whether no counter moves.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn add(&mut self, key: SummaryKey, delta: u64) {
        if delta > 0 {
            let slot = self.0.entry(key).or_insert(0);
            *slot = slot.saturating_add(delta);
        }
    }

    /// What recording `records` (each new to the ledger) moves: `processed` by their number,
    /// each one's outcome counter by one, and its auxiliary deltas. Domain twin: the additions
    /// of `OperationRun::record_items`.
    pub(super) fn of_records<'a>(records: impl IntoIterator<Item = &'a ItemRecord>) -> Self {
        let mut deltas = Self::default();
        let mut adding = 0;
        for record in records {
            adding += 1;
            deltas.add(outcome_key(record.outcome()), 1);
            for (key, delta) in record.deltas().iter() {
                deltas.add(key.summary_key(), delta);
            }
        }
        deltas.add(SummaryKey::Processed, adding);
        deltas
    }

    /// The guarded `UPDATE` of run `$1` by these deltas for a record of `adding` items (SQL:
    /// a parameter or a literal) at `at` (SQL): every counter moved, the heartbeat moved
    /// forward, only while the run is open, within its total and below the largest count, and
    /// when `also` holds. Its values start at `$first`; it answers `processed, total`. Domain
    /// twin: `OperationRun::record_items`'s refusals (I2, I6, `CountOverflow`).
    pub(super) fn record_update(
        &self,
        first: usize,
        adding: &str,
        at: &str,
        also: &str,
    ) -> (String, Vec<Value>) {
        let (sets, guards, values) = self.clauses(first);
        let sql = format!(
            "UPDATE operation_runs SET {}, heartbeat_at = CASE WHEN heartbeat_at IS NULL OR heartbeat_at < {at} \
             THEN {at} ELSE heartbeat_at END \
             WHERE id = $1 AND {also} AND status <> 'completed' \
             AND (total IS NULL OR COALESCE(processed, 0) + {adding} <= total) AND {} \
             RETURNING processed, total",
            sets.join(", "),
            guards.join(" AND ")
        );
        (sql, values)
    }

    /// `SET` clauses and `WHERE` overflow guards, with their values starting at `$first`.
    pub(super) fn clauses(&self, first: usize) -> (Vec<String>, Vec<String>, Vec<Value>) {
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

/// The outcome counter an item's outcome moves. Domain twin: `ItemOutcome::summary_key`
/// (I4: outcome counters never stand in for `processed`).
pub(super) fn outcome_key(outcome: ItemOutcome) -> SummaryKey {
    outcome.summary_key()
}

/// One auxiliary delta as a column value (I5: the deltas ride on their item's record).
pub(super) fn delta_value(deltas: &AuxDeltas, key: AuxiliaryKey) -> Option<i64> {
    deltas
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| i64::try_from(v).unwrap_or(i64::MAX))
}

/// A `WHERE` clause that holds only while every counter is exactly as read: the optimistic
/// guard of a read-apply-write that the domain decides (domain twin: the `SummaryCounts` the
/// rule was applied to; a concurrent change makes the update miss and the caller retry).
pub(super) fn counts_guard(counts: &SummaryCounts, first: usize) -> (String, Vec<Value>) {
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

/// A `SET` clause writing every counter as the domain computed it (`SummaryCounts`).
pub(super) fn counts_set(counts: &SummaryCounts, first: usize) -> (String, Vec<Value>) {
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
pub(super) fn aux_columns(prefix: &str) -> String {
    AuxiliaryKey::ALL
        .iter()
        .map(|k| format!("{prefix}{}", column(k.summary_key())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ledger insert of a record, shared by both record paths. Domain twins: I5 (each key at
/// most once: `ON CONFLICT DO NOTHING`), I6 (nothing on a completed run) and the frozen work
/// set (`ItemLedger`: only items of it), as `OperationRun::record_items` checks them.
///
/// It is the common table expressions `input, run, outside` and an `INSERT .. SELECT` that
/// enters the batch only while the run is open and only when every item is in its frozen work
/// set (else nothing, and the caller names the refusal). `$1` is the run, `$2` the time; the
/// items' values follow from `$3`. Already recorded keys conflict and are skipped: `RETURNING`
/// (when `returning` names columns; empty, the statement returns nothing) names what this
/// call entered. `lock` (`FOR UPDATE` on PostgreSQL) takes the run row before
/// the first item is entered: every writer of a run locks the run first and its items after,
/// so a record and a cancel settling the same item cannot deadlock.
pub(super) fn ledger_insert(
    records: &[ItemRecord],
    returning: &str,
    lock: &str,
) -> (String, String, Vec<Value>) {
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
    // Membership is a count per key, not NOT EXISTS: PostgreSQL plans NOT EXISTS as an anti
    // join, which with statistics taken while the run was young scans every unit of the run
    // per statement; a scalar subquery is one primary-key probe per key.
    let ctes = format!(
        "input (item_key, outcome, reason, {}) AS (VALUES {}), \
         run AS (SELECT status, basis, total, processed FROM operation_runs WHERE id = $1{lock}), \
         outside AS (SELECT 1 AS one FROM input i, run r WHERE r.basis IS NOT NULL AND \
           (SELECT count(*) FROM operation_run_units u WHERE u.run_id = $1 AND u.item_key = i.item_key) = 0)",
        aux_columns(""),
        rows.join(", ")
    );
    let insert = format!(
        "INSERT INTO operation_run_items (run_id, item_key, outcome, reason, recorded_at, {}) \
         SELECT $1, i.item_key, i.outcome, i.reason, $2, {} FROM input i \
         WHERE EXISTS (SELECT 1 FROM run WHERE status <> 'completed') \
         AND NOT EXISTS (SELECT 1 FROM outside) \
         ON CONFLICT (run_id, item_key) DO NOTHING{}",
        aux_columns(""),
        aux_columns("i."),
        if returning.is_empty() {
            String::new()
        } else {
            format!(" RETURNING {returning}")
        }
    );
    (ctes, insert, values)
}

/// [`RUN_COLUMNS`] qualified by a table alias, for queries that join other tables.
pub(super) fn run_columns_of(alias: &str) -> String {
    RUN_COLUMNS
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether counts after a record say every unit of the total is recorded. Domain twin:
/// `OperationRun::all_recorded` (I7: a fan-out parent completes when `processed == total`).
pub(super) fn all_recorded(processed: Option<i64>, total: Option<i64>) -> bool {
    total.is_some() && processed == total
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
