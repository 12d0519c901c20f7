//! `review_pack.generate`: one unit per pack section; produces a real artifact.

use std::sync::Arc;

use async_trait::async_trait;
use opsrun_domain::{
    AuxDeltas, AuxiliaryKey, ItemKey, ItemRecord, OperationRun, SummaryKey, WorkSet,
};

use crate::families::{Describe, ParamError, ParamKind, ParamSpec, ParamValues};
use crate::ports::{ArtifactStore, ReviewPackSource, WorkKey};
use crate::reasons;
use crate::start::OperationError;
use crate::start::{MAX_LIST_PARAM, check_list};
use crate::writers::{CountedWork, Plan, WriterError, plan_units, provider_failure};
use crate::{OperationRunService, RunParams};
use opsrun_domain::{OperationType, ReasonCode, TenantId};

/// Generates a review pack: renders each section, stores it, then assembles the artifact file
/// (with its hash) from the sections that succeeded. The artifact counts as `created: 1`.
#[derive(Clone)]
pub struct GenerateReviewPack {
    source: Arc<dyn ReviewPackSource>,
    artifacts: Arc<dyn ArtifactStore>,
}

impl GenerateReviewPack {
    /// The family's work over the given ports; registered as `Counted::new(service, settings,
    /// work)`, the counted driver.
    #[must_use]
    pub fn new(source: Arc<dyn ReviewPackSource>, artifacts: Arc<dyn ArtifactStore>) -> Self {
        Self { source, artifacts }
    }
}

#[async_trait]
impl CountedWork for GenerateReviewPack {
    async fn plan(&self, run: &OperationRun, params: &RunParams) -> Result<Plan, WriterError> {
        let RunParams::ReviewPackGenerate { sections } = params else {
            return Err(WriterError::WrongFamily { run: run.id() });
        };
        let sections = match sections {
            Some(sections) => sections.clone(),
            None => self.source.sections().await,
        };
        Ok(plan_units(sections, |n| format!("{n} pack sections")))
    }

    async fn process(
        &self,
        run: &OperationRun,
        _params: &RunParams,
        unit: &ItemKey,
    ) -> Result<ItemRecord, WriterError> {
        let content = match self
            .source
            .render_section(run.tenant(), unit.as_str())
            .await
        {
            Ok(content) => content,
            Err(e) => return provider_failure(unit, e, &reasons::REVIEW_PACK_SECTION_NOT_FOUND),
        };
        let key = WorkKey {
            run: run.id(),
            item: unit.clone(),
        };
        self.artifacts.put_section(&key, content).await?;
        Ok(ItemRecord::succeeded(unit.clone()))
    }

    async fn finish(
        &self,
        run: &OperationRun,
        work_set: &WorkSet,
        service: &OperationRunService,
    ) -> Result<(), WriterError> {
        if run.counts().get_or_zero(SummaryKey::Succeeded) == 0 {
            return Ok(());
        }
        self.artifacts
            .assemble(run.id(), run.tenant(), work_set.units().to_vec())
            .await?;
        service
            .increment_summary_counts(
                run.id(),
                ItemKey::from_static("artifact"),
                AuxDeltas::new().with(AuxiliaryKey::Created, 1),
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Describe for GenerateReviewPack {
    fn operation_type(&self) -> OperationType {
        OperationType::REVIEW_PACK_GENERATE
    }

    fn label(&self) -> &'static str {
        "Review pack generation"
    }

    fn params(&self) -> &'static [ParamSpec] {
        &[ParamSpec {
            name: "sections",
            kind: ParamKind::TextList,
            required: false,
            help: "sections to include (default: every section)",
        }]
    }

    fn parse_params(&self, values: &ParamValues) -> Result<RunParams, ParamError> {
        Ok(RunParams::ReviewPackGenerate {
            sections: values.texts("sections"),
        })
    }

    async fn validate(
        &self,
        _tenant: TenantId,
        params: RunParams,
    ) -> Result<RunParams, OperationError> {
        let RunParams::ReviewPackGenerate {
            sections: Some(sections),
        } = params
        else {
            return Ok(params);
        };
        let known = self.source.sections().await.into_iter().collect();
        let sections = check_list(
            "sections",
            &sections,
            &known,
            MAX_LIST_PARAM,
            "unknown_section",
        )?;
        Ok(RunParams::ReviewPackGenerate {
            sections: Some(sections),
        })
    }

    fn reasons(&self) -> &'static [ReasonCode] {
        const REASONS: &[ReasonCode] = &[reasons::REVIEW_PACK_SECTION_NOT_FOUND];
        REASONS
    }

    fn retryable(&self) -> bool {
        true
    }

    fn retry_params(&self, params: &RunParams, failed: &[ItemKey]) -> Option<RunParams> {
        matches!(params, RunParams::ReviewPackGenerate { .. }).then(|| {
            RunParams::ReviewPackGenerate {
                sections: Some(failed.iter().map(|k| k.as_str().to_owned()).collect()),
            }
        })
    }

    async fn results(
        &self,
        run: opsrun_domain::RunId,
    ) -> Result<Vec<crate::families::RunResult>, OperationError> {
        Ok(self
            .artifacts
            .pack_of(run)
            .await?
            .map(|pack| crate::families::RunResult {
                label: "Review pack".to_owned(),
                value: format!("{} bytes · sha256 {}", pack.bytes, pack.sha256),
                file: Some(pack.location),
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

    fn all_sections() -> RunParams {
        RunParams::ReviewPackGenerate { sections: None }
    }

    #[tokio::test]
    async fn renders_every_section_and_assembles_one_artifact() {
        let h = Harness::new(0, &[]);
        let id = h.start(all_sections()).await;

        let outcome = h.review_pack().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(
            h.counts(id).await,
            vec![
                ("total", 5),
                ("processed", 5),
                ("succeeded", 5),
                ("created", 1)
            ]
        );
        let pack = h.families.pack(id).unwrap();
        assert_eq!(pack.sha256.len(), 16);
        assert!(pack.bytes > 0);
        assert_eq!(h.run(id).await.basis(), Some("5 pack sections"));
    }

    #[tokio::test]
    async fn a_failing_section_is_left_out_of_the_pack() {
        let h = Harness::new(0, &["compliance"]);
        let id = h.start(all_sections()).await;

        let outcome = h.review_pack().execute(id).await.unwrap();

        assert_eq!(
            outcome,
            WriterOutcome::Completed(RunOutcome::PartiallySucceeded)
        );
        assert_eq!(
            h.counts(id).await,
            vec![
                ("total", 5),
                ("processed", 5),
                ("succeeded", 4),
                ("failed", 1),
                ("created", 1)
            ]
        );
        assert_eq!(
            h.failed_reasons(id),
            vec![("compliance".into(), "fake.failed".into())]
        );
    }

    #[tokio::test]
    async fn only_failures_produce_no_artifact() {
        let h = Harness::new(0, &["summary", "inventory"]);
        let id = h
            .start(RunParams::ReviewPackGenerate {
                sections: Some(vec!["summary".into(), "inventory".into()]),
            })
            .await;

        let outcome = h.review_pack().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Completed(RunOutcome::Failed));
        assert_eq!(h.families.pack(id), None);
        assert_eq!(
            h.counts(id).await,
            vec![("total", 2), ("processed", 2), ("failed", 2)]
        );
    }

    #[tokio::test]
    async fn a_retry_after_a_crash_halfway_does_not_count_twice() {
        let h = Harness::new(0, &[]);
        let id = h.start(all_sections()).await;
        h.families.lose_ack_at(3);

        let crashed = h.review_pack().execute(id).await;
        let resumed = h.review_pack().execute(id).await.unwrap();

        assert!(crashed.is_err());
        assert_eq!(resumed, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(
            h.counts(id).await,
            vec![
                ("total", 5),
                ("processed", 5),
                ("succeeded", 5),
                ("created", 1)
            ]
        );
    }

    #[tokio::test]
    async fn cancellation_stops_at_the_next_section() {
        let h = Harness::new(0, &[]);
        let id = h.start(all_sections()).await;
        h.fake.cancel_before(2, h.service.clone(), id);

        let outcome = h.review_pack().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Stopped);
        assert_eq!(h.run(id).await.outcome(), RunOutcome::Cancelled);
        // The call that was in flight when the cancel landed is counted with it.
        assert_eq!(Harness::processed(&h.counts(id).await), 2);
        assert_eq!(h.cancelled_in_flight(id).await, 1);
        assert_eq!(h.families.pack(id), None);
    }
}
