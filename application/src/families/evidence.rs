//! `evidence_snapshot.generate`: one unit per evidence dimension; seals a hashed snapshot.

use std::sync::Arc;

use async_trait::async_trait;
use opsrun_domain::{
    AuxDeltas, AuxiliaryKey, ItemKey, ItemRecord, OperationRun, SummaryKey, WorkSet,
};

use crate::families::{Describe, ParamError, ParamKind, ParamSpec, ParamValues};
use crate::ports::{EvidenceSource, SnapshotStore, WorkKey};
use crate::reasons;
use crate::start::{MAX_LIST_PARAM, OperationError, check_list};
use crate::writers::{CountedWork, Plan, WriterError, plan_units, provider_failure};
use crate::{OperationRunService, RunParams};
use opsrun_domain::{OperationType, ReasonCode, TenantId};

/// Generates an evidence snapshot: collects each dimension, stores it, then seals the snapshot
/// with its content hash. The snapshot counts as `created: 1`.
#[derive(Clone)]
pub struct GenerateEvidenceSnapshot {
    source: Arc<dyn EvidenceSource>,
    snapshots: Arc<dyn SnapshotStore>,
}

impl GenerateEvidenceSnapshot {
    /// The family's work over the given ports; registered as `Counted::new(service, settings,
    /// work)`, the counted driver.
    #[must_use]
    pub fn new(source: Arc<dyn EvidenceSource>, snapshots: Arc<dyn SnapshotStore>) -> Self {
        Self { source, snapshots }
    }
}

#[async_trait]
impl CountedWork for GenerateEvidenceSnapshot {
    async fn plan(&self, run: &OperationRun, params: &RunParams) -> Result<Plan, WriterError> {
        let RunParams::EvidenceSnapshotGenerate { dimensions } = params else {
            return Err(WriterError::WrongFamily { run: run.id() });
        };
        let dimensions = match dimensions {
            Some(dimensions) => dimensions.clone(),
            None => self.source.dimensions().await,
        };
        Ok(plan_units(dimensions, |n| {
            format!("{n} evidence dimensions")
        }))
    }

    async fn process(
        &self,
        run: &OperationRun,
        _params: &RunParams,
        unit: &ItemKey,
    ) -> Result<ItemRecord, WriterError> {
        let content = match self.source.collect(run.tenant(), unit.as_str()).await {
            Ok(content) => content,
            Err(e) => return provider_failure(unit, e, &reasons::EVIDENCE_DIMENSION_NOT_FOUND),
        };
        let key = WorkKey {
            run: run.id(),
            item: unit.clone(),
        };
        self.snapshots.put_dimension(&key, content).await?;
        Ok(ItemRecord::succeeded(unit.clone()))
    }

    async fn finish(
        &self,
        run: &OperationRun,
        _work_set: &WorkSet,
        service: &OperationRunService,
    ) -> Result<(), WriterError> {
        if run.counts().get_or_zero(SummaryKey::Succeeded) == 0 {
            return Ok(());
        }
        self.snapshots.seal(run.id(), run.tenant()).await?;
        service
            .increment_summary_counts(
                run.id(),
                ItemKey::from_static("snapshot"),
                AuxDeltas::new().with(AuxiliaryKey::Created, 1),
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Describe for GenerateEvidenceSnapshot {
    fn operation_type(&self) -> OperationType {
        OperationType::EVIDENCE_SNAPSHOT_GENERATE
    }

    fn label(&self) -> &'static str {
        "Evidence snapshot"
    }

    fn params(&self) -> &'static [ParamSpec] {
        &[ParamSpec {
            name: "dimensions",
            kind: ParamKind::TextList,
            required: false,
            help: "evidence dimensions to collect (default: every dimension)",
        }]
    }

    fn parse_params(&self, values: &ParamValues) -> Result<RunParams, ParamError> {
        Ok(RunParams::EvidenceSnapshotGenerate {
            dimensions: values.texts("dimensions"),
        })
    }

    async fn validate(
        &self,
        _tenant: TenantId,
        params: RunParams,
    ) -> Result<RunParams, OperationError> {
        let RunParams::EvidenceSnapshotGenerate {
            dimensions: Some(dimensions),
        } = params
        else {
            return Ok(params);
        };
        let known = self.source.dimensions().await.into_iter().collect();
        let dimensions = check_list(
            "dimensions",
            &dimensions,
            &known,
            MAX_LIST_PARAM,
            "unknown_dimension",
        )?;
        Ok(RunParams::EvidenceSnapshotGenerate {
            dimensions: Some(dimensions),
        })
    }

    fn reasons(&self) -> &'static [ReasonCode] {
        const REASONS: &[ReasonCode] = &[reasons::EVIDENCE_DIMENSION_NOT_FOUND];
        REASONS
    }

    fn retryable(&self) -> bool {
        true
    }

    fn retry_params(&self, params: &RunParams, failed: &[ItemKey]) -> Option<RunParams> {
        matches!(params, RunParams::EvidenceSnapshotGenerate { .. }).then(|| {
            RunParams::EvidenceSnapshotGenerate {
                dimensions: Some(failed.iter().map(|k| k.as_str().to_owned()).collect()),
            }
        })
    }

    async fn results(
        &self,
        run: opsrun_domain::RunId,
    ) -> Result<Vec<crate::families::RunResult>, OperationError> {
        Ok(self
            .snapshots
            .snapshot_of(run)
            .await?
            .map(|snapshot| crate::families::RunResult {
                label: format!("Evidence snapshot {}", snapshot.id),
                value: format!(
                    "{} dimensions · sha256 {}",
                    snapshot.dimensions, snapshot.content_hash
                ),
                file: None,
            })
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use opsrun_domain::RunOutcome;

    use crate::RunParams;
    use crate::testing::harness::Harness;
    use crate::writers::WriterOutcome;

    #[tokio::test]
    async fn collects_every_dimension_and_seals_a_hashed_snapshot() {
        let h = Harness::new(0, &[]);
        let id = h
            .start(RunParams::EvidenceSnapshotGenerate { dimensions: None })
            .await;

        let outcome = h.evidence().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(
            h.counts(id).await,
            vec![
                ("total", 4),
                ("processed", 4),
                ("succeeded", 4),
                ("created", 1)
            ]
        );
        let snapshot = h.families.snapshot(id).unwrap();
        assert_eq!(snapshot.dimensions, 4);
        assert_eq!(snapshot.content_hash.len(), 16);
    }

    #[tokio::test]
    async fn a_failing_dimension_is_recorded_failed() {
        let h = Harness::new(0, &["devices"]);
        let id = h
            .start(RunParams::EvidenceSnapshotGenerate { dimensions: None })
            .await;

        let outcome = h.evidence().execute(id).await.unwrap();

        assert_eq!(
            outcome,
            WriterOutcome::Completed(RunOutcome::PartiallySucceeded)
        );
        assert_eq!(h.families.snapshot(id).unwrap().dimensions, 3);
        assert_eq!(
            h.failed_reasons(id),
            vec![("devices".into(), "fake.failed".into())]
        );
    }

    #[tokio::test]
    async fn a_retry_after_a_crash_halfway_does_not_count_twice() {
        let h = Harness::new(0, &[]);
        let id = h
            .start(RunParams::EvidenceSnapshotGenerate { dimensions: None })
            .await;
        h.families.lose_ack_at(2);

        assert!(h.evidence().execute(id).await.is_err());
        let resumed = h.evidence().execute(id).await.unwrap();

        assert_eq!(resumed, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(
            h.counts(id).await,
            vec![
                ("total", 4),
                ("processed", 4),
                ("succeeded", 4),
                ("created", 1)
            ]
        );
        assert_eq!(h.families.snapshot(id).unwrap().dimensions, 4);
    }

    #[tokio::test]
    async fn a_crash_after_sealing_does_not_count_the_snapshot_twice() {
        let h = Harness::new(0, &[]);
        let id = h
            .start(RunParams::EvidenceSnapshotGenerate { dimensions: None })
            .await;
        // Writes 1-4 store dimensions, write 5 seals.
        h.families.lose_ack_at(5);

        assert!(h.evidence().execute(id).await.is_err());
        let resumed = h.evidence().execute(id).await.unwrap();

        assert_eq!(resumed, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(
            h.counts(id).await,
            vec![
                ("total", 4),
                ("processed", 4),
                ("succeeded", 4),
                ("created", 1)
            ]
        );
    }

    #[tokio::test]
    async fn cancellation_stops_at_the_next_dimension() {
        let h = Harness::new(0, &[]);
        let id = h
            .start(RunParams::EvidenceSnapshotGenerate { dimensions: None })
            .await;
        h.fake.cancel_before(4, h.service.clone(), id);

        let outcome = h.evidence().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Stopped);
        assert_eq!(h.run(id).await.outcome(), RunOutcome::Cancelled);
        // The call that was in flight when the cancel landed is counted with it.
        assert_eq!(Harness::processed(&h.counts(id).await), 4);
        assert_eq!(h.cancelled_in_flight(id).await, 1);
        assert_eq!(h.families.snapshot(id), None);
    }
}
