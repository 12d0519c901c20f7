//! Run families as one public contract: a family is one value implementing [`Family`] (its type
//! key, label, designed mode, parameters, validation, writer and reason codes), registered in a
//! [`Families`] registry. The seven built-ins are registered through exactly the same API a host
//! uses for its own ([`Families::register`]); start validation, dispatch and the edges'
//! parameter parsing all go through the registry, so adding a family edits no `match`.
//!
//! A host's counted family implements [`CountedWork`] (plan the units, process one) and is
//! registered as [`Counted`], the generic driver that freezes, resumes, records and completes.

mod add_policies;
mod baseline_capture;
mod baseline_compare;
mod evidence;
mod inventory;
mod params;
mod restore;
mod review_pack;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use opsrun_domain::{
    ItemKey, OperationRun, OperationType, ProgressMode, ReasonCode, RunId, TenantId,
};

pub use add_policies::AddPoliciesToBackupSet;
pub use baseline_capture::{CAPTURE_PHASES, CaptureBaseline};
pub use baseline_compare::CompareBaseline;
pub use evidence::GenerateEvidenceSnapshot;
pub use inventory::RunInventorySync;
pub use params::{ParamError, ParamKind, ParamMap, ParamSpec, ParamValue, ParamValues};
pub use restore::{BackupSetRestore, BackupSetRestoreWorker, BulkBackupSetRestore};
pub use review_pack::GenerateReviewPack;

use crate::start::OperationError;
use crate::writers::{
    CountedWork, WriterError, WriterOutcome, WriterPorts, WriterSettings, run_counted,
};
use crate::{OperationRunService, RunParams};

/// What a run family is, apart from how it runs: the part every edge needs.
#[async_trait]
pub trait Describe: Send + Sync {
    /// The family's type key.
    fn operation_type(&self) -> OperationType;

    /// A human label for lists and notifications, e.g. "Inventory sync".
    fn label(&self) -> &'static str;

    /// The parameters the family takes (for the edges' parsing and their help).
    fn params(&self) -> &'static [ParamSpec] {
        &[]
    }

    /// The family's parameters from values the registry already checked against
    /// [`Describe::params`] (names known, kinds right, required ones present).
    ///
    /// # Errors
    ///
    /// [`ParamError`] when the values are well-typed but still invalid.
    fn parse_params(&self, values: &ParamValues) -> Result<RunParams, ParamError>;

    /// Validates parameters against what the tenant has, before a run is created; may
    /// normalize them (e.g. remove repeated entries). Nothing is changed when it refuses.
    ///
    /// # Errors
    ///
    /// [`OperationError::Invalid`] with a stable code, or a port failure.
    async fn validate(
        &self,
        _tenant: TenantId,
        params: RunParams,
    ) -> Result<RunParams, OperationError> {
        Ok(params)
    }

    /// Every reason code the family's runs and items may carry.
    fn reasons(&self) -> &'static [ReasonCode] {
        &[]
    }

    /// Whether a completed run's failed items can be retried (DESIGN §4): `false` by default
    /// (phased and composite families, whose items are not their units). A family that says
    /// `true` maps failed items to parameters in [`Describe::retry_params`]. Every surface
    /// (the retry use case, the pages' button, `GET /api/types`) asks this one question.
    fn retryable(&self) -> bool {
        false
    }

    /// The parameters of a run whose frozen work set is exactly `failed`, the failed items of
    /// a completed run started with `params`; `None` when they cannot be retried (the default,
    /// and the answer of a family that is not [`Describe::retryable`]).
    fn retry_params(&self, _params: &RunParams, _failed: &[ItemKey]) -> Option<RunParams> {
        None
    }

    /// What a person calls the items `keys` of a run started with `params` in `tenant`, e.g.
    /// `Policy 12 (compliance_policy)` for a backup item whose key is an id; keys it cannot
    /// name are left out. Surfaces show the name first and the key beside it. The default
    /// names none (a family whose keys read well already).
    ///
    /// # Errors
    ///
    /// A port failure (surfaces then show the keys alone).
    async fn item_names(
        &self,
        _tenant: TenantId,
        _params: &RunParams,
        _keys: &[ItemKey],
    ) -> Result<BTreeMap<ItemKey, String>, OperationError> {
        Ok(BTreeMap::new())
    }

    /// What run `run` produced (the default: nothing beyond its counts).
    ///
    /// # Errors
    ///
    /// A port failure (surfaces then show no results).
    async fn results(&self, _run: RunId) -> Result<Vec<RunResult>, OperationError> {
        Ok(Vec::new())
    }
}

/// One result a completed run produced, as surfaces show it: a review pack's file and hash, a
/// snapshot's hash, a comparison's findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// What it is, e.g. `Review pack`.
    pub label: String,
    /// Its value in words, e.g. `sha256 3f2a… · 4,210 bytes`.
    pub value: String,
    /// A file to download, where the family wrote one (the artifact store's location).
    pub file: Option<String>,
}

/// A run family: what it is ([`Describe`]) and how it runs.
#[async_trait]
pub trait Family: Describe {
    /// The progress mode its runs are designed to show.
    fn designed_mode(&self) -> ProgressMode;

    /// Whether its items are executed by child jobs (a fan-out parent completes when the last
    /// child records its item, and the reconcile pass completes parents whose items are done).
    fn fan_out(&self) -> bool {
        false
    }

    /// Executes (or resumes) a run of this family.
    ///
    /// # Errors
    ///
    /// [`WriterError`]; when [`WriterError::is_transient`], the job is retried.
    async fn execute(&self, run: RunId) -> Result<WriterOutcome, WriterError>;

    /// Executes one child item of a fan-out parent of this family.
    ///
    /// # Errors
    ///
    /// [`WriterError::WrongFamily`] for a family without children (the default).
    async fn execute_child(
        &self,
        parent: RunId,
        _item: ItemKey,
    ) -> Result<WriterOutcome, WriterError> {
        Err(WriterError::WrongFamily { run: parent })
    }

    /// Records a child item `failed` for good after its job used up its attempts.
    ///
    /// # Errors
    ///
    /// [`WriterError::WrongFamily`] for a family without children (the default).
    async fn give_up_child(
        &self,
        parent: RunId,
        _item: ItemKey,
    ) -> Result<WriterOutcome, WriterError> {
        Err(WriterError::WrongFamily { run: parent })
    }
}

/// The generic driver of a counted family: it freezes the work set the work plans, resumes
/// from the ledger, records each unit's final outcome exactly once, heartbeats, stops when the
/// run is cancelled, then finishes and completes the run.
pub struct Counted<W> {
    service: OperationRunService,
    settings: WriterSettings,
    work: W,
}

impl<W> std::fmt::Debug for Counted<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted").finish_non_exhaustive()
    }
}

impl<W: CountedWork> Counted<W> {
    /// The family running `work` through `service`.
    #[must_use]
    pub fn new(service: OperationRunService, settings: WriterSettings, work: W) -> Self {
        Self {
            service,
            settings,
            work,
        }
    }

    /// Executes (or resumes) a run of this family.
    ///
    /// # Errors
    ///
    /// [`WriterError`] on a transient failure; a retry resumes from the ledger.
    pub async fn execute(&self, run: RunId) -> Result<WriterOutcome, WriterError> {
        run_counted(&self.service, self.settings, &self.work, run).await
    }
}

#[async_trait]
impl<W: CountedWork> Describe for Counted<W> {
    fn operation_type(&self) -> OperationType {
        self.work.operation_type()
    }

    fn label(&self) -> &'static str {
        self.work.label()
    }

    fn params(&self) -> &'static [ParamSpec] {
        self.work.params()
    }

    fn parse_params(&self, values: &ParamValues) -> Result<RunParams, ParamError> {
        self.work.parse_params(values)
    }

    async fn validate(
        &self,
        tenant: TenantId,
        params: RunParams,
    ) -> Result<RunParams, OperationError> {
        self.work.validate(tenant, params).await
    }

    fn reasons(&self) -> &'static [ReasonCode] {
        self.work.reasons()
    }

    fn retryable(&self) -> bool {
        self.work.retryable()
    }

    fn retry_params(&self, params: &RunParams, failed: &[ItemKey]) -> Option<RunParams> {
        self.work.retry_params(params, failed)
    }

    async fn item_names(
        &self,
        tenant: TenantId,
        params: &RunParams,
        keys: &[ItemKey],
    ) -> Result<BTreeMap<ItemKey, String>, OperationError> {
        self.work.item_names(tenant, params, keys).await
    }

    async fn results(&self, run: RunId) -> Result<Vec<RunResult>, OperationError> {
        self.work.results(run).await
    }
}

#[async_trait]
impl<W: CountedWork> Family for Counted<W> {
    fn designed_mode(&self) -> ProgressMode {
        ProgressMode::Counted
    }

    async fn execute(&self, run: RunId) -> Result<WriterOutcome, WriterError> {
        Self::execute(self, run).await
    }
}

impl Families {
    /// The seven built-in families over one service and the family ports, registered through
    /// [`Families::register`] like a host's own.
    #[must_use]
    pub fn builtin(
        service: &OperationRunService,
        settings: WriterSettings,
        ports: WriterPorts,
    ) -> Self {
        let builtins: [Arc<dyn Family>; 7] = [
            Arc::new(Counted::new(
                service.clone(),
                settings,
                RunInventorySync::new(ports.provider.clone(), ports.inventory),
            )),
            Arc::new(Counted::new(
                service.clone(),
                settings,
                GenerateReviewPack::new(ports.review_source, ports.artifacts),
            )),
            Arc::new(Counted::new(
                service.clone(),
                settings,
                GenerateEvidenceSnapshot::new(ports.evidence_source, ports.snapshots),
            )),
            Arc::new(Counted::new(
                service.clone(),
                settings,
                AddPoliciesToBackupSet::new(ports.provider.clone(), ports.backup_sets.clone()),
            )),
            Arc::new(BackupSetRestore::new(
                BulkBackupSetRestore::new(service.clone(), ports.backup_sets.clone(), ports.queue),
                BackupSetRestoreWorker::new(
                    service.clone(),
                    ports.backup_sets,
                    ports.restore_target,
                ),
            )),
            Arc::new(CaptureBaseline::new(
                service.clone(),
                settings,
                ports.provider.clone(),
                ports.baselines.clone(),
            )),
            Arc::new(CompareBaseline::new(
                service.clone(),
                settings,
                ports.provider,
                ports.baselines,
            )),
        ];
        let mut families = Self::new();
        for family in builtins {
            // The built-in keys are distinct constants: registering them cannot collide.
            let _ = families.register(family);
        }
        families
    }
}

/// Why a family could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Another family has this type key.
    #[error("a family with type '{0}' is already registered")]
    Duplicate(OperationType),
    /// The type key is not well-formed.
    #[error("'{0}' is not a well-formed type key")]
    Malformed(String),
}

/// The registry: every family a process runs, by type key.
#[derive(Clone, Default)]
pub struct Families {
    by_type: BTreeMap<OperationType, Arc<dyn Family>>,
}

impl std::fmt::Debug for Families {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_type.keys()).finish()
    }
}

impl Families {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a family.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] for a taken or malformed type key; nothing is registered then.
    pub fn register(&mut self, family: Arc<dyn Family>) -> Result<(), RegistryError> {
        let key = family.operation_type();
        if !OperationType::is_well_formed(key.key()) {
            return Err(RegistryError::Malformed(key.key().to_owned()));
        }
        if self.by_type.contains_key(&key) {
            return Err(RegistryError::Duplicate(key));
        }
        self.by_type.insert(key, family);
        Ok(())
    }

    /// The family of `operation_type`, if one is registered.
    #[must_use]
    pub fn get(&self, operation_type: &OperationType) -> Option<&Arc<dyn Family>> {
        self.by_type.get(operation_type)
    }

    /// Every registered family, by type key.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Family>> {
        self.by_type.values()
    }

    /// The label of `operation_type`; its key when no family is registered for it (a run of
    /// a family this process does not run is still shown).
    #[must_use]
    pub fn label(&self, operation_type: &OperationType) -> String {
        self.get(operation_type)
            .map_or_else(|| operation_type.key().to_owned(), |f| f.label().to_owned())
    }

    /// Every registered type key, in order.
    #[must_use]
    pub fn keys(&self) -> Vec<String> {
        self.by_type.keys().map(|k| k.key().to_owned()).collect()
    }

    /// What a person calls the items `keys` of `run`, started with `params` (see
    /// [`Describe::item_names`]); empty when its family names none or a port fails, so
    /// surfaces show the keys alone.
    pub async fn item_names(
        &self,
        run: &OperationRun,
        params: &RunParams,
        keys: &[ItemKey],
    ) -> BTreeMap<ItemKey, String> {
        match self.get(run.operation_type()) {
            Some(family) if !keys.is_empty() => family
                .item_names(run.tenant(), params, keys)
                .await
                .unwrap_or_default(),
            _ => BTreeMap::new(),
        }
    }

    /// What `run` produced (see [`Describe::results`]); empty when its family says nothing or
    /// a port fails.
    pub async fn results(&self, run: &OperationRun) -> Vec<RunResult> {
        match self.get(run.operation_type()) {
            Some(family) => family.results(run.id()).await.unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Whether the failed items of a completed run of `operation_type` can be retried.
    #[must_use]
    pub fn is_retryable(&self, operation_type: &OperationType) -> bool {
        self.get(operation_type).is_some_and(|f| f.retryable())
    }

    /// Whether runs of `operation_type` are fan-out parents.
    #[must_use]
    pub fn is_fan_out(&self, operation_type: &OperationType) -> bool {
        self.get(operation_type).is_some_and(|f| f.fan_out())
    }

    /// Parses an edge's parameters for the type `key` names: the family must be registered,
    /// every name must be one it takes, each value of its kind, and the required ones present.
    ///
    /// # Errors
    ///
    /// [`ParamError`] with code `unknown_type` or `invalid_params`.
    pub fn parse_params(&self, key: &str, values: ParamMap) -> Result<RunParams, ParamError> {
        let family = OperationType::parse(key)
            .ok()
            .and_then(|t| self.get(&t).cloned())
            .ok_or_else(|| ParamError::unknown_type_of(key, &self.keys()))?;
        let values = ParamValues::check(family.operation_type(), family.params(), values)?;
        family.parse_params(&values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::harness::Harness;

    #[test]
    fn the_built_in_families_are_registered_with_their_modes() {
        let h = Harness::new(4, &[]);

        let families = h.families_registry();

        let modes: Vec<(String, ProgressMode)> = families
            .iter()
            .map(|f| (f.operation_type().key().to_owned(), f.designed_mode()))
            .collect();
        assert_eq!(modes.len(), 7);
        let counted = modes
            .iter()
            .filter(|(_, m)| *m == ProgressMode::Counted)
            .count();
        assert_eq!(counted, 5);
        assert!(modes.contains(&("baseline.capture".to_owned(), ProgressMode::Phased)));
        assert!(modes.contains(&("baseline.compare".to_owned(), ProgressMode::Composite)));
        assert!(families.is_fan_out(&OperationType::BACKUP_SET_RESTORE));
        assert!(!families.is_fan_out(&OperationType::INVENTORY_SYNC));
    }

    #[test]
    fn a_second_family_with_a_taken_key_is_refused() {
        let h = Harness::new(4, &[]);
        let mut families = h.families_registry();
        let again = h.families_registry();
        let inventory = again.get(&OperationType::INVENTORY_SYNC).cloned().unwrap();

        let result = families.register(inventory);

        assert_eq!(
            result,
            Err(RegistryError::Duplicate(OperationType::INVENTORY_SYNC))
        );
    }

    #[test]
    fn edge_parameters_are_checked_against_the_family() {
        let h = Harness::new(4, &[]);
        let families = h.families_registry();
        let text = |s: &str| ParamValue::Text(s.to_owned());

        let unknown_type = families.parse_params("nosuch.family", ParamMap::new());
        let unknown_name = families.parse_params(
            "inventory.sync",
            ParamMap::from([("sections".to_owned(), ParamValue::List(vec![text("a")]))]),
        );
        let missing = families.parse_params("baseline.compare", ParamMap::new());
        let wrong_kind = families.parse_params(
            "baseline.compare",
            ParamMap::from([("baseline_id".to_owned(), text("x"))]),
        );
        let ok = families.parse_params(
            "baseline.compare",
            ParamMap::from([("baseline_id".to_owned(), ParamValue::Int(3))]),
        );

        assert_eq!(unknown_type.unwrap_err().code(), "unknown_type");
        for refused in [unknown_name, missing, wrong_kind] {
            assert_eq!(refused.unwrap_err().code(), "invalid_params");
        }
        assert_eq!(ok, Ok(RunParams::BaselineCompare { baseline_id: 3 }));
    }
}
