//! `baseline.capture`: phased (resolve scope, capture evidence, persist baseline). It has no
//! deterministic unit count of its own to show, so it never carries a counted total.

use std::sync::Arc;

use opsrun_domain::{InvalidValue, Phase, Phases, RunId, RunOutcome};

use crate::families::{Describe, Family, ParamError, ParamValues};
use crate::ports::{BaselineItem, BaselineStore, PolicyProvider};
use crate::reasons;
use crate::writers::{Pulse, WriterError, WriterOutcome, WriterSettings, begin, finished, halted};
use crate::{OperationRunService, ProviderError, RunParams};
use async_trait::async_trait;
use opsrun_domain::{OperationType, ProgressMode, ReasonCode};

/// The phases of a baseline capture: key and label.
pub const CAPTURE_PHASES: [(&str, &str); 3] = [
    ("resolve_scope", "Resolving scope"),
    ("capture_evidence", "Capturing evidence"),
    ("persist_baseline", "Persisting baseline"),
];

/// The declared capture phases.
pub(crate) fn capture_phases(list: &[(&str, &str)]) -> Result<Phases, InvalidValue> {
    let phases = list
        .iter()
        .map(|(key, label)| Phase::try_new(key, label))
        .collect::<Result<Vec<_>, _>>()?;
    Phases::try_new(phases)
}

/// Captures a baseline of every policy of the tenant: the scope is the provider's policy list,
/// each policy's payload is fetched, and the baseline is stored once.
#[derive(Clone)]
pub struct CaptureBaseline {
    service: OperationRunService,
    settings: WriterSettings,
    provider: Arc<dyn PolicyProvider>,
    baselines: Arc<dyn BaselineStore>,
}

/// Policies fetched for a capture, and how many could not be.
pub(crate) struct Captured {
    pub(crate) items: Vec<BaselineItem>,
    pub(crate) missed: u64,
}

/// Fetches each policy's payload; a final failure is counted as missed, a transient one stops
/// the execution (a retry starts the fetches again). A cancel or a pause stops it before the
/// next fetch (`Err` with the writer's outcome; a resume starts the fetches again).
pub(crate) async fn fetch_all(
    service: &OperationRunService,
    settings: WriterSettings,
    provider: &dyn PolicyProvider,
    run: RunId,
    tenant: opsrun_domain::TenantId,
    policy_ids: impl Iterator<Item = String>,
) -> Result<Result<Captured, WriterOutcome>, WriterError> {
    let mut pulse = Pulse::new(service, settings);
    let mut captured = Captured {
        items: Vec::new(),
        missed: 0,
    };
    for id in policy_ids {
        if let Some(halt) = halted(service, run).await? {
            return Ok(Err(halt));
        }
        match provider.fetch_policy(tenant, &id).await {
            Ok(payload) => captured.items.push(BaselineItem {
                policy: payload.policy,
                body: payload.body,
            }),
            Err(e @ ProviderError::Unavailable(_)) => return Err(WriterError::Provider(e)),
            Err(_) => captured.missed += 1,
        }
        pulse.beat(service, run).await?;
    }
    Ok(Ok(captured))
}

impl CaptureBaseline {
    /// A writer over the given ports.
    #[must_use]
    pub fn new(
        service: OperationRunService,
        settings: WriterSettings,
        provider: Arc<dyn PolicyProvider>,
        baselines: Arc<dyn BaselineStore>,
    ) -> Self {
        Self {
            service,
            settings,
            provider,
            baselines,
        }
    }

    /// Executes (or resumes) the run. A resumed run does the work of phases it already
    /// passed again without entering them (phases never go back).
    ///
    /// # Errors
    ///
    /// [`WriterError`] on a transient failure; a retry resumes.
    pub async fn execute(&self, id: RunId) -> Result<WriterOutcome, WriterError> {
        let (run, params) = match begin(&self.service, id).await? {
            Ok(begun) => begun,
            Err(outcome) => return Ok(outcome),
        };
        if !matches!(params, RunParams::BaselineCapture) {
            return Err(WriterError::WrongFamily { run: id });
        }
        let phases = capture_phases(&CAPTURE_PHASES).map_err(|e| {
            WriterError::Provider(ProviderError::Failed {
                code: "baseline.invalid_phases".into(),
                message: e.to_string(),
            })
        })?;
        self.service.declare_phases(id, phases).await?;
        let mut phase = Advance::new(&run);

        phase.enter(&self.service, id, 0).await?;
        let policies = self
            .provider
            .all_policies(run.tenant())
            .await
            .map_err(WriterError::Provider)?;

        phase.enter(&self.service, id, 1).await?;
        let captured = match fetch_all(
            &self.service,
            self.settings,
            self.provider.as_ref(),
            id,
            run.tenant(),
            policies.into_iter().map(|p| p.id),
        )
        .await?
        {
            Ok(captured) => captured,
            Err(outcome) => return Ok(outcome),
        };

        phase.enter(&self.service, id, 2).await?;
        let stored = captured.items.len();
        self.baselines
            .save_baseline(id, run.tenant(), captured.items)
            .await?;

        let (outcome, failures) = if captured.missed == 0 {
            (RunOutcome::Succeeded, Vec::new())
        } else {
            let outcome = if stored > 0 {
                RunOutcome::PartiallySucceeded
            } else {
                RunOutcome::Failed
            };
            let message = format!("{} policies could not be fetched", captured.missed);
            (
                outcome,
                vec![(reasons::BASELINE_POLICIES_NOT_CAPTURED, message)],
            )
        };
        let completed = self
            .service
            .complete_run(id, Some(outcome), failures)
            .await?;
        Ok(finished(&completed))
    }
}

/// Enters phases forward only, starting from where the run already is.
pub(crate) struct Advance {
    current: Option<usize>,
}

impl Advance {
    pub(crate) fn new(run: &opsrun_domain::OperationRun) -> Self {
        Self {
            current: run.phases().and_then(Phases::current_index),
        }
    }

    pub(crate) async fn enter(
        &mut self,
        service: &OperationRunService,
        id: RunId,
        index: usize,
    ) -> Result<(), WriterError> {
        if self.current.is_some_and(|c| c >= index) {
            return Ok(());
        }
        service.set_phase(id, CAPTURE_PHASES[index].0).await?;
        self.current = Some(index);
        Ok(())
    }
}

#[async_trait]
impl Describe for CaptureBaseline {
    fn operation_type(&self) -> OperationType {
        OperationType::BASELINE_CAPTURE
    }

    fn label(&self) -> &'static str {
        "Baseline capture"
    }

    fn parse_params(&self, _values: &ParamValues) -> Result<RunParams, ParamError> {
        Ok(RunParams::BaselineCapture)
    }

    fn reasons(&self) -> &'static [ReasonCode] {
        const REASONS: &[ReasonCode] = &[reasons::BASELINE_POLICIES_NOT_CAPTURED];
        REASONS
    }
}

#[async_trait]
impl Family for CaptureBaseline {
    fn designed_mode(&self) -> ProgressMode {
        ProgressMode::Phased
    }

    async fn execute(&self, run: RunId) -> Result<WriterOutcome, WriterError> {
        Self::execute(self, run).await
    }
}

#[cfg(test)]
mod tests {
    use opsrun_domain::{OperationRunProgressContract, ProgressMode, RunOutcome, SummaryKey};

    use crate::RunParams;
    use crate::ports::BaselineStore;
    use crate::testing::harness::Harness;
    use crate::writers::WriterOutcome;

    #[tokio::test]
    async fn captures_every_policy_through_three_phases_without_a_total() {
        let h = Harness::new(5, &[]);
        let id = h.start(RunParams::BaselineCapture).await;

        let outcome = h.capture().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Completed(RunOutcome::Succeeded));
        let run = h.run(id).await;
        assert_eq!(run.counts().get(SummaryKey::Total), None);
        assert_eq!(run.phases().unwrap().current_index(), Some(2));
        let baselines = h.families.baselines(h.tenant.id).await.unwrap();
        assert_eq!(baselines.len(), 1);
        assert_eq!(baselines[0].items.len(), 5);
    }

    #[tokio::test]
    async fn policies_that_cannot_be_fetched_make_a_partial_capture() {
        let h = Harness::new(5, &["p2"]);
        let id = h.start(RunParams::BaselineCapture).await;

        let outcome = h.capture().execute(id).await.unwrap();

        assert_eq!(
            outcome,
            WriterOutcome::Completed(RunOutcome::PartiallySucceeded)
        );
        let run = h.run(id).await;
        assert_eq!(
            run.failures()[0].code.as_str(),
            "baseline.policies_not_captured"
        );
        assert_eq!(run.failures()[0].message, "1 policies could not be fetched");
        assert_eq!(
            h.families.baselines(h.tenant.id).await.unwrap()[0]
                .items
                .len(),
            4
        );
    }

    #[tokio::test]
    async fn a_crash_mid_capture_stays_phased_and_resumes_forward() {
        let h = Harness::new(5, &[]);
        let id = h.start(RunParams::BaselineCapture).await;
        h.fake.fail_transiently_at(3);

        assert!(h.capture().execute(id).await.is_err());
        let view = OperationRunProgressContract::resolve(&h.run(id).await);
        let resumed = h.capture().execute(id).await.unwrap();

        assert_eq!(view.mode(), ProgressMode::Phased);
        assert_eq!(view.phase().map(|p| (p.index, p.count)), Some((2, 3)));
        assert_eq!(resumed, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(h.run(id).await.counts().get(SummaryKey::Total), None);
        assert_eq!(h.families.baselines(h.tenant.id).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn cancellation_stops_between_policies() {
        let h = Harness::new(5, &[]);
        let id = h.start(RunParams::BaselineCapture).await;
        h.fake.cancel_before(2, h.service.clone(), id);

        let outcome = h.capture().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Stopped);
        assert_eq!(h.run(id).await.outcome(), RunOutcome::Cancelled);
        assert!(h.families.baselines(h.tenant.id).await.unwrap().is_empty());
    }
}
