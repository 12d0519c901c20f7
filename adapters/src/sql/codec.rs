//! How domain values are stored: JSON for the run's parameters, stages and failure lines, and
//! the mapping of a run row back to the domain (a legacy row that breaks a rule is carried with
//! anomaly notes, never a panic).

use opsrun_application::families::ParamValue;
use opsrun_application::{RunParams, StoreError};
use opsrun_domain::{
    ChildJobs, Component, ComponentState, Components, Failure, OperationRun, OperationType, Phase,
    Phases, RawCount, ReasonCode, RunId, RunOutcome, RunParts, RunStatus, SummaryCountsNormalizer,
    TenantId, Timestamp, UserId, WorkspaceId,
};
use sea_orm::FromQueryResult;
use serde::{Deserialize, Serialize};

/// The columns of `operation_runs`, in the order [`RunRow`] reads them.
pub(crate) const RUN_COLUMNS: &str = "id, workspace_id, tenant_id, operation_type, target, \
    initiator_id, parent_id, status, outcome, total, processed, succeeded, failed, skipped, \
    created, updated, deleted, items, tenants, basis, phases, components, failures, created_at, \
    started_at, completed_at, heartbeat_at, retry_of, paused_at, waiting, children_total, \
    children_completed";

/// A row of `operation_runs`.
#[derive(Debug, Clone, FromQueryResult)]
pub(crate) struct RunRow {
    pub id: i64,
    pub workspace_id: i64,
    pub tenant_id: i64,
    pub operation_type: String,
    pub target: String,
    pub initiator_id: Option<i64>,
    pub parent_id: Option<i64>,
    pub status: String,
    pub outcome: String,
    pub total: Option<i64>,
    pub processed: Option<i64>,
    pub succeeded: Option<i64>,
    pub failed: Option<i64>,
    pub skipped: Option<i64>,
    pub created: Option<i64>,
    pub updated: Option<i64>,
    pub deleted: Option<i64>,
    pub items: Option<i64>,
    pub tenants: Option<i64>,
    pub basis: Option<String>,
    pub phases: Option<String>,
    pub components: Option<String>,
    pub failures: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub heartbeat_at: Option<i64>,
    pub retry_of: Option<i64>,
    pub paused_at: Option<i64>,
    pub waiting: Option<String>,
    pub children_total: Option<i64>,
    pub children_completed: Option<i64>,
}

fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

impl RunRow {
    /// The run this row holds. Counts that are negative or out of range are dropped, and an
    /// unknown status or outcome is read as running/pending; each such repair is noted as an
    /// anomaly so the run never shows a bar.
    pub(crate) fn into_run(self) -> Result<OperationRun, StoreError> {
        let mut anomalies = Vec::new();
        let operation_type =
            OperationType::parse(&self.operation_type).map_err(|e| corrupt("operation type", e))?;
        let status = RunStatus::parse(&self.status).unwrap_or_else(|_| {
            anomalies.push(format!("unknown status '{}'", self.status));
            RunStatus::Running
        });
        let outcome = RunOutcome::parse(&self.outcome).unwrap_or_else(|_| {
            anomalies.push(format!("unknown outcome '{}'", self.outcome));
            RunOutcome::Pending
        });
        let raw = [
            ("total", self.total),
            ("processed", self.processed),
            ("succeeded", self.succeeded),
            ("failed", self.failed),
            ("skipped", self.skipped),
            ("created", self.created),
            ("updated", self.updated),
            ("deleted", self.deleted),
            ("items", self.items),
            ("tenants", self.tenants),
        ];
        let normalized = SummaryCountsNormalizer::normalize(
            raw.into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, RawCount::Integer(i128::from(v))))),
        );
        anomalies.extend(normalized.dropped.iter().map(ToString::to_string));
        let phases = match &self.phases {
            Some(json) => Some(decode_phases(json)?),
            None => None,
        };
        let components = match &self.components {
            Some(json) => Some(decode_components(json)?),
            None => None,
        };
        Ok(OperationRun::restore(RunParts {
            id: RunId::new(self.id),
            workspace: WorkspaceId::new(self.workspace_id),
            tenant: TenantId::new(self.tenant_id),
            operation_type,
            target: self.target,
            initiator: self.initiator_id.map(UserId::new),
            parent: self.parent_id.map(RunId::new),
            status,
            outcome,
            counts: normalized.counts,
            basis: self.basis,
            phases,
            components,
            failures: decode_failures(&self.failures)?,
            created_at: Timestamp::from_millis(self.created_at),
            started_at: self.started_at.map(Timestamp::from_millis),
            completed_at: self.completed_at.map(Timestamp::from_millis),
            heartbeat_at: self.heartbeat_at.map(Timestamp::from_millis),
            retry_of: self.retry_of.map(RunId::new),
            paused_at: self.paused_at.map(Timestamp::from_millis),
            waiting: self.waiting,
            children: self.children_total.map(|total| ChildJobs {
                total: u64::try_from(total).unwrap_or(0),
                completed: self
                    .children_completed
                    .and_then(|c| u64::try_from(c).ok())
                    .unwrap_or(0),
            }),
            anomalies,
        }))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum ParamsDto {
    #[serde(rename = "inventory.sync")]
    InventorySync { policy_types: Option<Vec<String>> },
    #[serde(rename = "review_pack.generate")]
    ReviewPackGenerate { sections: Option<Vec<String>> },
    #[serde(rename = "evidence_snapshot.generate")]
    EvidenceSnapshotGenerate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dimensions: Option<Vec<String>>,
    },
    #[serde(rename = "backup_set.add_policies")]
    BackupSetAddPolicies {
        backup_set_id: i64,
        policy_ids: Vec<String>,
    },
    #[serde(rename = "backup_set.restore")]
    BackupSetRestore {
        backup_set_id: i64,
        item_ids: Option<Vec<i64>>,
    },
    #[serde(rename = "baseline.capture")]
    BaselineCapture,
    #[serde(rename = "baseline.compare")]
    BaselineCompare { baseline_id: i64 },
}

/// A host family's parameters as stored: its type, target and checked values.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomParamsDto {
    #[serde(rename = "type")]
    operation_type: String,
    target: String,
    values: serde_json::Map<String, serde_json::Value>,
}

fn param_to_json(value: &ParamValue) -> serde_json::Value {
    match value {
        ParamValue::Null => serde_json::Value::Null,
        ParamValue::Int(i) => serde_json::Value::from(*i),
        ParamValue::Text(t) => serde_json::Value::from(t.clone()),
        ParamValue::List(items) => items.iter().map(param_to_json).collect(),
    }
}

fn json_to_param(value: &serde_json::Value) -> Result<ParamValue, StoreError> {
    Ok(match value {
        serde_json::Value::Null => ParamValue::Null,
        serde_json::Value::String(t) => ParamValue::Text(t.clone()),
        serde_json::Value::Number(n) => ParamValue::Int(
            n.as_i64()
                .ok_or_else(|| StoreError::Corrupt(format!("parameter value {n}")))?,
        ),
        serde_json::Value::Array(items) => {
            ParamValue::List(items.iter().map(json_to_param).collect::<Result<_, _>>()?)
        }
        other => return Err(StoreError::Corrupt(format!("parameter value {other}"))),
    })
}

/// The run's parameters as JSON.
pub(crate) fn encode_params(params: &RunParams) -> String {
    let dto = match params.clone() {
        RunParams::InventorySync { policy_types } => ParamsDto::InventorySync { policy_types },
        RunParams::ReviewPackGenerate { sections } => ParamsDto::ReviewPackGenerate { sections },
        RunParams::EvidenceSnapshotGenerate { dimensions } => {
            ParamsDto::EvidenceSnapshotGenerate { dimensions }
        }
        RunParams::BackupSetAddPolicies {
            backup_set_id,
            policy_ids,
        } => ParamsDto::BackupSetAddPolicies {
            backup_set_id,
            policy_ids,
        },
        RunParams::BackupSetRestore {
            backup_set_id,
            item_ids,
        } => ParamsDto::BackupSetRestore {
            backup_set_id,
            item_ids,
        },
        RunParams::BaselineCapture => ParamsDto::BaselineCapture,
        RunParams::BaselineCompare { baseline_id } => ParamsDto::BaselineCompare { baseline_id },
        RunParams::Custom {
            operation_type,
            target,
            values,
        } => {
            let dto = CustomParamsDto {
                operation_type: operation_type.key().to_owned(),
                target,
                values: values
                    .iter()
                    .map(|(k, v)| (k.clone(), param_to_json(v)))
                    .collect(),
            };
            return serde_json::to_string(&dto).unwrap_or_default();
        }
    };
    // Serializing a plain enum of strings and numbers cannot fail.
    serde_json::to_string(&dto).unwrap_or_default()
}

/// Parameters from their JSON.
pub(crate) fn decode_params(json: &str) -> Result<RunParams, StoreError> {
    let dto: ParamsDto = match serde_json::from_str(json) {
        Ok(dto) => dto,
        // Not a built-in family's parameters: a host family's, or corrupt.
        Err(builtin) => {
            let Ok(custom) = serde_json::from_str::<CustomParamsDto>(json) else {
                return Err(corrupt("run parameters", builtin));
            };
            return Ok(RunParams::Custom {
                operation_type: OperationType::parse(&custom.operation_type)?,
                target: custom.target,
                values: custom
                    .values
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), json_to_param(v)?)))
                    .collect::<Result<_, StoreError>>()?,
            });
        }
    };
    Ok(match dto {
        ParamsDto::InventorySync { policy_types } => RunParams::InventorySync { policy_types },
        ParamsDto::ReviewPackGenerate { sections } => RunParams::ReviewPackGenerate { sections },
        ParamsDto::EvidenceSnapshotGenerate { dimensions } => {
            RunParams::EvidenceSnapshotGenerate { dimensions }
        }
        ParamsDto::BackupSetAddPolicies {
            backup_set_id,
            policy_ids,
        } => RunParams::BackupSetAddPolicies {
            backup_set_id,
            policy_ids,
        },
        ParamsDto::BackupSetRestore {
            backup_set_id,
            item_ids,
        } => RunParams::BackupSetRestore {
            backup_set_id,
            item_ids,
        },
        ParamsDto::BaselineCapture => RunParams::BaselineCapture,
        ParamsDto::BaselineCompare { baseline_id } => RunParams::BaselineCompare { baseline_id },
    })
}

#[derive(Serialize, Deserialize)]
struct PhasesDto {
    list: Vec<(String, String)>,
    current: Option<usize>,
    /// When each phase was entered (ms); absent in rows written before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    entered: Vec<Option<i64>>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StateDto {
    Pending,
    Activity { processed: Option<u64> },
    Phased { phases: PhasesDto },
    Counted { processed: u64, total: u64 },
    Done,
}

#[derive(Serialize, Deserialize)]
struct ComponentDto {
    key: String,
    label: String,
    state: StateDto,
}

#[derive(Serialize, Deserialize)]
struct ComponentsDto {
    list: Vec<ComponentDto>,
    current: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct FailureDto {
    code: String,
    message: String,
}

fn phases_dto(phases: &Phases) -> PhasesDto {
    PhasesDto {
        list: phases
            .list()
            .iter()
            .map(|p| (p.key().to_owned(), p.label().to_owned()))
            .collect(),
        current: phases.current_index(),
        // Nothing recorded yet writes what older rows hold, so their comparisons still match.
        entered: if phases.entered().iter().all(Option::is_none) {
            Vec::new()
        } else {
            phases
                .entered()
                .iter()
                .map(|t| t.map(Timestamp::as_millis))
                .collect()
        },
    }
}

fn phases_from(dto: PhasesDto) -> Result<Phases, StoreError> {
    let list = dto
        .list
        .iter()
        .map(|(k, l)| Phase::try_new(k, l))
        .collect::<Result<Vec<_>, _>>()?;
    let entered = dto
        .entered
        .iter()
        .map(|t| t.map(Timestamp::from_millis))
        .collect();
    Ok(Phases::restore(list, dto.current)?.with_entered(entered))
}

/// Phases as JSON.
pub(crate) fn encode_phases(phases: &Phases) -> String {
    serde_json::to_string(&phases_dto(phases)).unwrap_or_default()
}

/// Phases from JSON.
pub(crate) fn decode_phases(json: &str) -> Result<Phases, StoreError> {
    phases_from(serde_json::from_str(json).map_err(|e| corrupt("phases", e))?)
}

/// Components as JSON.
pub(crate) fn encode_components(components: &Components) -> String {
    let dto = ComponentsDto {
        list: components
            .list()
            .iter()
            .map(|c| ComponentDto {
                key: c.key().to_owned(),
                label: c.label().to_owned(),
                state: match c.state() {
                    ComponentState::Pending => StateDto::Pending,
                    ComponentState::Activity { processed } => StateDto::Activity {
                        processed: *processed,
                    },
                    ComponentState::Phased(phases) => StateDto::Phased {
                        phases: phases_dto(phases),
                    },
                    ComponentState::Counted { processed, total } => StateDto::Counted {
                        processed: *processed,
                        total: *total,
                    },
                    ComponentState::Done => StateDto::Done,
                },
            })
            .collect(),
        current: components.current(),
    };
    serde_json::to_string(&dto).unwrap_or_default()
}

/// Components from JSON.
pub(crate) fn decode_components(json: &str) -> Result<Components, StoreError> {
    let dto: ComponentsDto = serde_json::from_str(json).map_err(|e| corrupt("components", e))?;
    let list = dto
        .list
        .into_iter()
        .map(|c| {
            let state = match c.state {
                StateDto::Pending => ComponentState::Pending,
                StateDto::Activity { processed } => ComponentState::Activity { processed },
                StateDto::Phased { phases } => ComponentState::Phased(phases_from(phases)?),
                StateDto::Counted { processed, total } => {
                    ComponentState::Counted { processed, total }
                }
                StateDto::Done => ComponentState::Done,
            };
            Ok(Component::restore(&c.key, &c.label, state)?)
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Components::restore(list, dto.current)?)
}

/// Failure lines as JSON.
pub(crate) fn encode_failures(failures: &[Failure]) -> String {
    let dto: Vec<FailureDto> = failures
        .iter()
        .map(|f| FailureDto {
            code: f.code.as_str().to_owned(),
            message: f.message.clone(),
        })
        .collect();
    serde_json::to_string(&dto).unwrap_or_else(|_| "[]".to_owned())
}

/// Failure lines from JSON.
pub(crate) fn decode_failures(json: &str) -> Result<Vec<Failure>, StoreError> {
    let dto: Vec<FailureDto> = serde_json::from_str(json).map_err(|e| corrupt("failures", e))?;
    dto.into_iter()
        .map(|f| {
            Ok(Failure {
                code: ReasonCode::parse(&f.code)?,
                message: f.message,
            })
        })
        .collect()
}
