//! A host's own run family, registered beside the built-ins (docs/embedding.md shows this file):
//! `acme.patch_rollout` patches `devices` devices of a tenant, one counted unit per device;
//! the devices named in `skip` are recorded skipped.

use async_trait::async_trait;
use opsrun_application::RunParams;
use opsrun_application::families::{Describe, ParamError, ParamKind, ParamSpec, ParamValues};
use opsrun_application::writers::{CountedWork, Plan, WriterError, plan_units};
use opsrun_domain::{ItemKey, ItemRecord, OperationRun, OperationType, ReasonCode};

/// The family's type key.
pub const PATCH_ROLLOUT: OperationType = OperationType::from_static("acme.patch_rollout");
/// The reason a device was left out.
pub const EXCLUDED: ReasonCode = ReasonCode::from_static("acme.device_excluded");

/// The family: no ports of its own, so the whole family is this value.
#[derive(Debug, Default)]
pub struct PatchRollout;

#[async_trait]
impl Describe for PatchRollout {
    fn operation_type(&self) -> OperationType {
        PATCH_ROLLOUT
    }

    fn label(&self) -> &'static str {
        "Patch rollout"
    }

    fn params(&self) -> &'static [ParamSpec] {
        const PARAMS: &[ParamSpec] = &[
            ParamSpec::new(
                "devices",
                ParamKind::Int,
                true,
                "how many devices, 1 to 1000",
            ),
            ParamSpec::new("skip", ParamKind::TextList, false, "devices to leave out"),
        ];
        PARAMS
    }

    fn parse_params(&self, values: &ParamValues) -> Result<RunParams, ParamError> {
        if !(1..=1000).contains(&values.required_int("devices")?) {
            return Err(ParamError::invalid("devices must be 1 to 1000"));
        }
        Ok(values.to_custom("tenant"))
    }

    fn reasons(&self) -> &'static [ReasonCode] {
        const REASONS: &[ReasonCode] = &[EXCLUDED];
        REASONS
    }
}

#[async_trait]
impl CountedWork for PatchRollout {
    async fn plan(&self, run: &OperationRun, params: &RunParams) -> Result<Plan, WriterError> {
        let values = ParamValues::of(params).ok_or(WriterError::WrongFamily { run: run.id() })?;
        let devices = values.int("devices").unwrap_or(0);
        let units = (1..=devices).map(|i| format!("device-{i:04}"));
        Ok(plan_units(units, |n| format!("{n} devices")))
    }

    async fn process(
        &self,
        run: &OperationRun,
        params: &RunParams,
        unit: &ItemKey,
    ) -> Result<ItemRecord, WriterError> {
        let values = ParamValues::of(params).ok_or(WriterError::WrongFamily { run: run.id() })?;
        let skip = values.texts("skip").unwrap_or_default();
        Ok(if skip.iter().any(|d| d == unit.as_str()) {
            ItemRecord::skipped(unit.clone(), Some(EXCLUDED))
        } else {
            ItemRecord::succeeded(unit.clone())
        })
    }
}
