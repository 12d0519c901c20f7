//! `baseline.compare`: composite. Component `capture` (phased: resolve scope, capture
//! evidence) captures the tenant's current state; component `compare` (counted) compares each
//! baseline item once. Findings are counted in `items`. The run itself carries no total.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use opsrun_domain::{
    AuxDeltas, AuxiliaryKey, Component, ComponentState, Components, ItemRecord, OperationRun,
    RunId, RunOutcome,
};

use super::baseline_capture::{capture_phases, fetch_all};
use crate::families::{Describe, Family, ParamError, ParamKind, ParamSpec, ParamValues};
use crate::ports::{BaselineStore, Finding, FindingKind, PolicyProvider, WorkKey};
use crate::reasons;
use crate::start::OperationError;
use crate::writers::{
    Pulse, WriterError, WriterOutcome, WriterSettings, begin, finished, halted, record,
};
use crate::{OperationRunService, ProviderError, RunParams};
use async_trait::async_trait;
use opsrun_domain::{OperationType, ProgressMode, ReasonCode, TenantId};

const CAPTURE: &str = "capture";
const COMPARE: &str = "compare";
const CAPTURE_STEPS: [(&str, &str); 2] = [
    ("resolve_scope", "Resolving scope"),
    ("capture_evidence", "Capturing evidence"),
];

/// Compares a tenant's current policies with a baseline.
#[derive(Clone)]
pub struct CompareBaseline {
    service: OperationRunService,
    settings: WriterSettings,
    provider: Arc<dyn PolicyProvider>,
    baselines: Arc<dyn BaselineStore>,
}

fn invalid(e: impl std::fmt::Display) -> WriterError {
    WriterError::Provider(ProviderError::Failed {
        code: "baseline.invalid_components".into(),
        message: e.to_string(),
    })
}

fn component_state<'a>(run: &'a OperationRun, key: &str) -> Option<&'a ComponentState> {
    run.components()?
        .list()
        .iter()
        .find(|c| c.key() == key)
        .map(Component::state)
}

impl CompareBaseline {
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

    /// Executes (or resumes) the run: baseline items already in the ledger are not compared
    /// again.
    ///
    /// # Errors
    ///
    /// [`WriterError`] on a transient failure; a retry resumes.
    pub async fn execute(&self, id: RunId) -> Result<WriterOutcome, WriterError> {
        let (run, params) = match begin(&self.service, id).await? {
            Ok(begun) => begun,
            Err(outcome) => return Ok(outcome),
        };
        let RunParams::BaselineCompare { baseline_id } = params else {
            return Err(WriterError::WrongFamily { run: id });
        };
        let Some(baseline) = self.baselines.baseline(run.tenant(), baseline_id).await? else {
            let message = format!("baseline {baseline_id} no longer exists");
            let completed = self
                .service
                .complete_run(
                    id,
                    Some(RunOutcome::Blocked),
                    vec![(reasons::BASELINE_NOT_FOUND, message)],
                )
                .await?;
            return Ok(finished(&completed));
        };
        let components = Components::try_new(vec![
            Component::try_new(CAPTURE, "Capture current state").map_err(invalid)?,
            Component::try_new(COMPARE, "Compare items").map_err(invalid)?,
        ])
        .map_err(invalid)?;
        self.service.declare_components(id, components).await?;
        let run = self.service.queries().run(id).await?;
        let capture_done = matches!(component_state(&run, CAPTURE), Some(ComponentState::Done));
        let mut steps = capture_phases(&CAPTURE_STEPS).map_err(invalid)?;

        // Capture the current state (again, on a resume: it is not counted).
        if !capture_done {
            steps.enter(CAPTURE_STEPS[0].0)?;
            self.advance(id, CAPTURE, ComponentState::Phased(steps.clone()))
                .await?;
        }
        let present: BTreeSet<String> = self
            .provider
            .all_policies(run.tenant())
            .await
            .map_err(WriterError::Provider)?
            .into_iter()
            .map(|p| p.id)
            .collect();
        if !capture_done {
            steps.enter(CAPTURE_STEPS[1].0)?;
            self.advance(id, CAPTURE, ComponentState::Phased(steps.clone()))
                .await?;
        }
        let wanted = baseline
            .items
            .iter()
            .map(|i| i.policy.id.clone())
            .filter(|policy| present.contains(policy));
        let captured = match fetch_all(
            &self.service,
            self.settings,
            self.provider.as_ref(),
            id,
            run.tenant(),
            wanted,
        )
        .await?
        {
            Ok(captured) => captured,
            Err(outcome) => return Ok(outcome),
        };
        let current: BTreeMap<String, String> = captured
            .items
            .into_iter()
            .map(|i| (i.policy.id, i.body))
            .collect();
        if !capture_done {
            self.advance(id, CAPTURE, ComponentState::Done).await?;
        }

        // Compare each baseline item exactly once.
        if matches!(component_state(&run, COMPARE), Some(ComponentState::Done)) {
            let completed = self.service.complete_run(id, None, Vec::new()).await?;
            return Ok(finished(&completed));
        }
        let total = baseline.items.len() as u64;
        let done = self.service.queries().ledger_keys(id).await?;
        let mut processed = done.len() as u64;
        self.advance(id, COMPARE, ComponentState::Counted { processed, total })
            .await?;
        let mut pulse = Pulse::new(&self.service, self.settings);
        for item in &baseline.items {
            let unit = crate::writers::plan_key(&item.policy.id)?;
            if done.contains(&unit) {
                continue;
            }
            if let Some(halt) = halted(&self.service, id).await? {
                return Ok(halt);
            }
            let finding = if !present.contains(&item.policy.id) {
                Some(FindingKind::Missing)
            } else {
                match current.get(&item.policy.id) {
                    Some(body) if *body == item.body => None,
                    Some(_) => Some(FindingKind::Changed),
                    None => {
                        let failed = ItemRecord::failed(unit, reasons::COMPARE_FETCH_FAILED);
                        if record(&self.service, id, failed).await?.is_none() {
                            return Ok(WriterOutcome::Stopped);
                        }
                        processed += 1;
                        self.advance(id, COMPARE, ComponentState::Counted { processed, total })
                            .await?;
                        continue;
                    }
                }
            };
            let mut deltas = AuxDeltas::new();
            if let Some(kind) = finding {
                let key = WorkKey {
                    run: id,
                    item: unit.clone(),
                };
                let finding = Finding {
                    policy_id: item.policy.id.clone(),
                    kind,
                };
                self.baselines
                    .save_finding(&key, baseline.id, finding)
                    .await?;
                deltas = deltas.with(AuxiliaryKey::Items, 1);
            }
            if record(
                &self.service,
                id,
                ItemRecord::succeeded(unit).with_deltas(deltas),
            )
            .await?
            .is_none()
            {
                return Ok(WriterOutcome::Stopped);
            }
            processed += 1;
            self.advance(id, COMPARE, ComponentState::Counted { processed, total })
                .await?;
            pulse.beat(&self.service, id).await?;
        }
        self.advance(id, COMPARE, ComponentState::Done).await?;
        let completed = self.service.complete_run(id, None, Vec::new()).await?;
        Ok(finished(&completed))
    }

    async fn advance(
        &self,
        id: RunId,
        component: &str,
        state: ComponentState,
    ) -> Result<(), WriterError> {
        self.service.update_component(id, component, state).await?;
        Ok(())
    }
}

#[async_trait]
impl Describe for CompareBaseline {
    fn operation_type(&self) -> OperationType {
        OperationType::BASELINE_COMPARE
    }

    fn label(&self) -> &'static str {
        "Baseline compare"
    }

    fn params(&self) -> &'static [ParamSpec] {
        &[ParamSpec {
            name: "baseline_id",
            kind: ParamKind::Int,
            required: true,
            help: "the baseline to compare the tenant against",
        }]
    }

    fn parse_params(&self, values: &ParamValues) -> Result<RunParams, ParamError> {
        Ok(RunParams::BaselineCompare {
            baseline_id: values.required_int("baseline_id")?,
        })
    }

    async fn validate(
        &self,
        tenant: TenantId,
        params: RunParams,
    ) -> Result<RunParams, OperationError> {
        let RunParams::BaselineCompare { baseline_id } = params else {
            return Ok(params);
        };
        if self
            .baselines
            .baseline(tenant, baseline_id)
            .await?
            .is_none()
        {
            return Err(OperationError::Invalid {
                code: "unknown_baseline",
                message: format!("baseline {baseline_id} does not exist in this tenant"),
            });
        }
        Ok(params)
    }

    fn reasons(&self) -> &'static [ReasonCode] {
        const REASONS: &[ReasonCode] =
            &[reasons::BASELINE_NOT_FOUND, reasons::COMPARE_FETCH_FAILED];
        REASONS
    }

    async fn results(
        &self,
        run: opsrun_domain::RunId,
    ) -> Result<Vec<crate::families::RunResult>, OperationError> {
        let findings = self.baselines.findings_of(run).await?;
        let mut results = vec![crate::families::RunResult {
            label: "Findings".to_owned(),
            value: match findings.len() {
                0 => "none: every policy matches the baseline".to_owned(),
                n => format!("{n} policies differ from the baseline"),
            },
            file: None,
        }];
        results.extend(findings.into_iter().map(|f| crate::families::RunResult {
            label: f.policy_id,
            value: match f.kind {
                FindingKind::Missing => "missing: no longer in the tenant".to_owned(),
                FindingKind::Changed => "changed since the baseline".to_owned(),
            },
            file: None,
        }));
        Ok(results)
    }
}

#[async_trait]
impl Family for CompareBaseline {
    fn designed_mode(&self) -> ProgressMode {
        ProgressMode::Composite
    }

    async fn execute(&self, run: RunId) -> Result<WriterOutcome, WriterError> {
        Self::execute(self, run).await
    }
}

#[cfg(test)]
mod tests {
    use opsrun_domain::{
        ComponentState, OperationRunProgressContract, ProgressMode, RunId, RunOutcome, SummaryKey,
    };

    use crate::RunParams;
    use crate::ports::{BaselineItem, BaselineStore, FindingKind, Policy};
    use crate::testing::harness::Harness;
    use crate::writers::WriterOutcome;

    /// A baseline of p1..p4 as they are now, plus p99 that the tenant does not have.
    async fn baseline(h: &Harness) -> i64 {
        let mut items: Vec<BaselineItem> = h
            .fake
            .policies()
            .iter()
            .take(4)
            .map(|p| BaselineItem {
                policy: p.clone(),
                body: format!("{{\"id\":\"{}\"}}", p.id),
            })
            .collect();
        items.push(BaselineItem {
            policy: Policy {
                id: "p99".into(),
                policy_type: "app_protection".into(),
                name: "Gone".into(),
            },
            body: "{}".into(),
        });
        h.families
            .save_baseline(RunId::new(999), h.tenant.id, items)
            .await
            .unwrap()
            .id
    }

    #[tokio::test]
    async fn compares_every_baseline_item_once_and_counts_findings_in_items() {
        let h = Harness::new(6, &[]);
        let baseline_id = baseline(&h).await;
        h.fake.change_policy("p2");
        let id = h.start(RunParams::BaselineCompare { baseline_id }).await;

        let outcome = h.compare().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(
            h.counts(id).await,
            vec![("processed", 5), ("succeeded", 5), ("items", 2)]
        );
        let mut kinds: Vec<_> = h
            .families
            .findings(baseline_id)
            .into_iter()
            .map(|f| (f.policy_id, f.kind))
            .collect();
        kinds.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            kinds,
            vec![
                ("p2".into(), FindingKind::Changed),
                ("p99".into(), FindingKind::Missing)
            ]
        );
        let run = h.run(id).await;
        let components = run.components().unwrap().list();
        assert_eq!(components[0].state(), &ComponentState::Done);
        assert_eq!(components[1].state(), &ComponentState::Done);
    }

    #[tokio::test]
    async fn a_policy_that_cannot_be_fetched_fails_its_item() {
        let h = Harness::new(6, &["p3"]);
        let baseline_id = baseline(&h).await;
        let id = h.start(RunParams::BaselineCompare { baseline_id }).await;

        let outcome = h.compare().execute(id).await.unwrap();

        assert_eq!(
            outcome,
            WriterOutcome::Completed(RunOutcome::PartiallySucceeded)
        );
        assert_eq!(
            h.failed_reasons(id),
            vec![("p3".into(), "compare.fetch_failed".into())]
        );
        assert_eq!(
            h.counts(id).await,
            vec![
                ("processed", 5),
                ("succeeded", 4),
                ("failed", 1),
                ("items", 1)
            ]
        );
    }

    #[tokio::test]
    async fn a_retry_after_a_crash_halfway_does_not_count_twice_and_stays_composite() {
        let h = Harness::new(6, &[]);
        let baseline_id = baseline(&h).await;
        h.fake.change_policy("p1");
        let id = h.start(RunParams::BaselineCompare { baseline_id }).await;
        // Write 1 stored the baseline; write 2, the first finding, lands but its
        // acknowledgement is lost.
        h.families.lose_ack_at(2);

        assert!(h.compare().execute(id).await.is_err());
        let view = OperationRunProgressContract::resolve(&h.run(id).await);
        let resumed = h.compare().execute(id).await.unwrap();

        assert_eq!(view.mode(), ProgressMode::Composite);
        assert_eq!(resumed, WriterOutcome::Completed(RunOutcome::Succeeded));
        assert_eq!(
            h.counts(id).await,
            vec![("processed", 5), ("succeeded", 5), ("items", 2)]
        );
        assert_eq!(h.families.findings(baseline_id).len(), 2);
        assert_eq!(h.run(id).await.counts().get(SummaryKey::Total), None);
    }

    #[tokio::test]
    async fn cancellation_stops_between_items() {
        let h = Harness::new(6, &[]);
        let baseline_id = baseline(&h).await;
        let id = h.start(RunParams::BaselineCompare { baseline_id }).await;
        h.fake.cancel_before(2, h.service.clone(), id);

        let outcome = h.compare().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Stopped);
        assert_eq!(h.run(id).await.outcome(), RunOutcome::Cancelled);
        assert_eq!(h.counts(id).await, vec![]);
    }

    #[tokio::test]
    async fn a_missing_baseline_blocks_the_run() {
        let h = Harness::new(6, &[]);
        let id = h.start(RunParams::BaselineCompare { baseline_id: 5 }).await;

        let outcome = h.compare().execute(id).await.unwrap();

        assert_eq!(outcome, WriterOutcome::Completed(RunOutcome::Blocked));
        assert_eq!(
            h.run(id).await.failures()[0].code.as_str(),
            "baseline.not_found"
        );
    }
}
