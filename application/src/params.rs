//! The typed parameters of each run family, stored with the run so a resumed job works on
//! exactly what was requested.

use opsrun_domain::OperationType;

use crate::families::ParamMap;

/// Most policy ids one `backup_set.add_policies` run may take.
pub const MAX_POLICY_IDS: usize = 10_000;

/// Parameters of a run, one variant per family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunParams {
    /// `inventory.sync`.
    InventorySync {
        /// Policy types to sync; `None` means every type the provider has.
        policy_types: Option<Vec<String>>,
    },
    /// `review_pack.generate`.
    ReviewPackGenerate {
        /// Sections to include; `None` means every section.
        sections: Option<Vec<String>>,
    },
    /// `evidence_snapshot.generate`.
    EvidenceSnapshotGenerate {
        /// Dimensions to collect; `None` means every dimension.
        dimensions: Option<Vec<String>>,
    },
    /// `backup_set.add_policies`.
    BackupSetAddPolicies {
        /// The backup set.
        backup_set_id: i64,
        /// Distinct policy ids, in request order.
        policy_ids: Vec<String>,
    },
    /// `backup_set.restore`.
    BackupSetRestore {
        /// The backup set.
        backup_set_id: i64,
        /// Items to restore; `None` means every item of the set.
        item_ids: Option<Vec<i64>>,
    },
    /// `baseline.capture`.
    BaselineCapture,
    /// `baseline.compare`.
    BaselineCompare {
        /// The baseline to compare against.
        baseline_id: i64,
    },
    /// A host family's parameters: its checked values, stored and shown as they are.
    Custom {
        /// The family.
        operation_type: OperationType,
        /// What the run works on inside its tenant (with tenant and type, its dedupe
        /// identity), as the family decided when it parsed the values.
        target: String,
        /// The values.
        values: ParamMap,
    },
}

impl RunParams {
    /// The family these parameters belong to.
    #[must_use]
    pub fn operation_type(&self) -> OperationType {
        match self {
            Self::Custom { operation_type, .. } => operation_type.clone(),
            Self::InventorySync { .. } => OperationType::INVENTORY_SYNC,
            Self::ReviewPackGenerate { .. } => OperationType::REVIEW_PACK_GENERATE,
            Self::EvidenceSnapshotGenerate { .. } => OperationType::EVIDENCE_SNAPSHOT_GENERATE,
            Self::BackupSetAddPolicies { .. } => OperationType::BACKUP_SET_ADD_POLICIES,
            Self::BackupSetRestore { .. } => OperationType::BACKUP_SET_RESTORE,
            Self::BaselineCapture => OperationType::BASELINE_CAPTURE,
            Self::BaselineCompare { .. } => OperationType::BASELINE_COMPARE,
        }
    }

    /// What the run works on inside its tenant; with the tenant and type it is the run's
    /// dedupe identity. A second request for the same target while a run is active returns
    /// that run.
    #[must_use]
    pub fn target(&self) -> String {
        match self {
            Self::InventorySync { .. }
            | Self::ReviewPackGenerate { .. }
            | Self::EvidenceSnapshotGenerate { .. }
            | Self::BaselineCapture => "tenant".to_owned(),
            Self::BackupSetAddPolicies { backup_set_id, .. }
            | Self::BackupSetRestore { backup_set_id, .. } => format!("backup_set:{backup_set_id}"),
            Self::BaselineCompare { baseline_id } => format!("baseline:{baseline_id}"),
            Self::Custom { target, .. } => target.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_what_the_run_works_on() {
        let add = RunParams::BackupSetAddPolicies {
            backup_set_id: 4,
            policy_ids: vec!["p1".into()],
        };
        let compare = RunParams::BaselineCompare { baseline_id: 9 };

        assert_eq!(add.target(), "backup_set:4");
        assert_eq!(compare.target(), "baseline:9");
        assert_eq!(RunParams::BaselineCapture.target(), "tenant");
        assert_eq!(add.operation_type(), OperationType::BACKUP_SET_ADD_POLICIES);
    }
}
