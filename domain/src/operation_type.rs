//! The seven run families and the progress mode each is designed for.

use std::fmt;
use std::str::FromStr;

use crate::InvalidValue;

/// The five progress modes of the progress contract (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgressMode {
    /// The run is completed; only its outcome is shown.
    None,
    /// Work is happening but has no deterministic unit count (spinner).
    Activity,
    /// A determinate bar: processed of total.
    Counted,
    /// A labelled step of a declared list of phases.
    Phased,
    /// One sub-view per declared component.
    Composite,
}

impl ProgressMode {
    /// The wire key, e.g. `"counted"`.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Activity => "activity",
            Self::Counted => "counted",
            Self::Phased => "phased",
            Self::Composite => "composite",
        }
    }
}

/// A run family (DESIGN §6).
///
/// ```
/// use opsrun_domain::{OperationType, ProgressMode};
/// let t: OperationType = "backup_set.restore".parse().unwrap();
/// assert_eq!(t, OperationType::BackupSetRestore);
/// assert_eq!(t.key(), "backup_set.restore");
/// assert_eq!(t.designed_mode(), ProgressMode::Counted);
/// assert!(t.is_fan_out());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OperationType {
    /// `inventory.sync`: one unit per selected policy type.
    InventorySync,
    /// `review_pack.generate`: one unit per pack section.
    ReviewPackGenerate,
    /// `evidence_snapshot.generate`: one unit per evidence dimension.
    EvidenceSnapshotGenerate,
    /// `backup_set.add_policies`: one unit per distinct policy id requested.
    BackupSetAddPolicies,
    /// `backup_set.restore`: a fan-out parent with one child job per backup-set item.
    BackupSetRestore,
    /// `baseline.capture`: three phases, no counted total.
    BaselineCapture,
    /// `baseline.compare`: two components (capture, compare).
    BaselineCompare,
}

impl OperationType {
    /// Every family, in a stable order.
    pub const ALL: [Self; 7] = [
        Self::InventorySync,
        Self::ReviewPackGenerate,
        Self::EvidenceSnapshotGenerate,
        Self::BackupSetAddPolicies,
        Self::BackupSetRestore,
        Self::BaselineCapture,
        Self::BaselineCompare,
    ];

    /// The stable type key.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::InventorySync => "inventory.sync",
            Self::ReviewPackGenerate => "review_pack.generate",
            Self::EvidenceSnapshotGenerate => "evidence_snapshot.generate",
            Self::BackupSetAddPolicies => "backup_set.add_policies",
            Self::BackupSetRestore => "backup_set.restore",
            Self::BaselineCapture => "baseline.capture",
            Self::BaselineCompare => "baseline.compare",
        }
    }

    /// A human label for lists and notifications.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::InventorySync => "Inventory sync",
            Self::ReviewPackGenerate => "Review pack generation",
            Self::EvidenceSnapshotGenerate => "Evidence snapshot",
            Self::BackupSetAddPolicies => "Add policies to backup set",
            Self::BackupSetRestore => "Backup set restore",
            Self::BaselineCapture => "Baseline capture",
            Self::BaselineCompare => "Baseline compare",
        }
    }

    /// The progress mode the family is designed to show while it runs.
    #[must_use]
    pub fn designed_mode(self) -> ProgressMode {
        match self {
            Self::InventorySync
            | Self::ReviewPackGenerate
            | Self::EvidenceSnapshotGenerate
            | Self::BackupSetAddPolicies
            | Self::BackupSetRestore => ProgressMode::Counted,
            Self::BaselineCapture => ProgressMode::Phased,
            Self::BaselineCompare => ProgressMode::Composite,
        }
    }

    /// Whether the family's items are executed by separate child jobs.
    #[must_use]
    pub fn is_fan_out(self) -> bool {
        self == Self::BackupSetRestore
    }

    /// Parses a type key.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] when the key names no family.
    pub fn parse(key: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|t| t.key() == key)
            .ok_or_else(|| {
                InvalidValue::new("operation type", format!("'{key}' is not a known type"))
            })
    }
}

impl FromStr for OperationType {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for OperationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_key_round_trips_and_keys_are_distinct() {
        let mut keys: Vec<_> = OperationType::ALL.iter().map(|t| t.key()).collect();
        for t in OperationType::ALL {
            assert_eq!(OperationType::parse(t.key()), Ok(t));
        }
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 7);
    }

    #[test]
    fn unknown_type_key_is_refused() {
        assert!(OperationType::parse("inventory.Sync").is_err());
        assert!(OperationType::parse("").is_err());
    }

    #[test]
    fn only_baseline_families_are_not_counted() {
        assert_eq!(
            OperationType::BaselineCapture.designed_mode(),
            ProgressMode::Phased
        );
        assert_eq!(
            OperationType::BaselineCompare.designed_mode(),
            ProgressMode::Composite
        );
        let counted = OperationType::ALL
            .iter()
            .filter(|t| t.designed_mode() == ProgressMode::Counted)
            .count();
        assert_eq!(counted, 5);
    }
}
