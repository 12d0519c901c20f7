//! `baseline.capture`: phased (resolve scope, capture evidence, persist baseline). It has no
//! deterministic unit count of its own to show, so it never carries a counted total.

use std::sync::Arc;

use opsrun_domain::{InvalidValue, Phase, Phases, ReasonCode, RunId, RunOutcome};

use super::{Pulse, WriterError, WriterOutcome, WriterSettings, begin, finished, is_stopped};
use crate::ports::{BaselineItem, BaselineStore, PolicyProvider};
use crate::{OperationRunService, ProviderError, RunParams};

/// The phases of a baseline capture: key and label.
pub const CAPTURE_PHASES: [(&str, &str); 3] = [
    ("resolve_scope", "Resolving scope"),
    ("capture_evidence", "Capturing evidence"),
    ("persist_baseline", "Persisting baseline"),
];

/// Reason code of a capture that could not fetch some policies.
pub const REASON_NOT_CAPTURED: ReasonCode =
    ReasonCode::from_static("baseline.policies_not_captured");

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
/// the execution (a retry starts the fetches again).
pub(crate) async fn fetch_all(
    service: &OperationRunService,
    settings: WriterSettings,
    provider: &dyn PolicyProvider,
    run: RunId,
    tenant: opsrun_domain::TenantId,
    policy_ids: impl Iterator<Item = String>,
) -> Result<Option<Captured>, WriterError> {
    let mut pulse = Pulse::new(service, settings);
    let mut captured = Captured {
        items: Vec::new(),
        missed: 0,
    };
    for id in policy_ids {
        if is_stopped(service, run).await? {
            return Ok(None);
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
    Ok(Some(captured))
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
        let Some((run, params)) = begin(&self.service, id).await? else {
            return Ok(WriterOutcome::AlreadyCompleted);
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
        let Some(captured) = fetch_all(
            &self.service,
            self.settings,
            self.provider.as_ref(),
            id,
            run.tenant(),
            policies.into_iter().map(|p| p.id),
        )
        .await?
        else {
            return Ok(WriterOutcome::Stopped);
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
            (outcome, vec![(REASON_NOT_CAPTURED, message)])
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
