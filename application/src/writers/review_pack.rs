//! `review_pack.generate`: one unit per pack section; produces a real artifact.

use std::sync::Arc;

use async_trait::async_trait;
use opsrun_domain::{
    AuxDeltas, AuxiliaryKey, ItemKey, ItemRecord, OperationRun, ReasonCode, RunId, SummaryKey,
    WorkSet,
};

use super::{
    CountedWork, Plan, WriterError, WriterOutcome, WriterSettings, plan_units, provider_failure,
    run_counted,
};
use crate::ports::{ArtifactStore, ReviewPackSource, WorkKey};
use crate::{OperationRunService, RunParams};

/// Reason code of a section the source cannot render.
pub const REASON_SECTION_NOT_FOUND: ReasonCode =
    ReasonCode::from_static("review_pack.section_not_found");

/// Generates a review pack: renders each section, stores it, then assembles the artifact file
/// (with its hash) from the sections that succeeded. The artifact counts as `created: 1`.
#[derive(Clone)]
pub struct GenerateReviewPack {
    service: OperationRunService,
    settings: WriterSettings,
    source: Arc<dyn ReviewPackSource>,
    artifacts: Arc<dyn ArtifactStore>,
}

impl GenerateReviewPack {
    /// A writer over the given ports.
    #[must_use]
    pub fn new(
        service: OperationRunService,
        settings: WriterSettings,
        source: Arc<dyn ReviewPackSource>,
        artifacts: Arc<dyn ArtifactStore>,
    ) -> Self {
        Self {
            service,
            settings,
            source,
            artifacts,
        }
    }

    /// Executes (or resumes) the run.
    ///
    /// # Errors
    ///
    /// [`WriterError`] on a transient failure; a retry resumes.
    pub async fn execute(&self, run: RunId) -> Result<WriterOutcome, WriterError> {
        run_counted(&self.service, self.settings, self, run).await
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
            Err(e) => return provider_failure(unit, e, &REASON_SECTION_NOT_FOUND),
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
