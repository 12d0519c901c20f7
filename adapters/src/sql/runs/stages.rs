//! Phases, components and heartbeats: the stage columns, written through the domain's rules.

use super::*;

impl SqlRunStore {
    /// Optimistic update of a run's stage columns: read, apply the domain rule, write back only
    /// if the row did not change meanwhile (else retry). Errors and `Unchanged` come from the
    /// domain on the snapshot read.
    pub(super) async fn update_stages(
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
    pub(super) async fn touch(&self, id: RunId, at: Timestamp) -> Result<Change, StoreError> {
        let sql = "UPDATE operation_runs SET heartbeat_at = $2 WHERE id = $1 \
            AND status <> 'completed' AND (heartbeat_at IS NULL OR heartbeat_at < $2)";
        self.guarded_stamp(sql, id, at).await
    }

    /// Runs a guarded one-row `UPDATE` of run `$1` at time `$2`. Domain twin: the answers of
    /// `OperationRun::mark_running` and `OperationRun::heartbeat`: `Applied` when the guard
    /// matched, `RunAlreadyCompleted` on a completed run, `Unchanged` otherwise.
    pub(super) async fn guarded_stamp(
        &self,
        sql: &str,
        id: RunId,
        at: Timestamp,
    ) -> Result<Change, StoreError> {
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
}
