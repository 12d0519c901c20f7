//! The operation type (a run family's validated, open key) and the progress modes.

use std::borrow::Cow;
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
    /// Every mode, in the contract's order.
    pub const ALL: [Self; 5] = [
        Self::None,
        Self::Activity,
        Self::Counted,
        Self::Phased,
        Self::Composite,
    ];

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

/// Longest operation type key.
pub const MAX_TYPE_KEY_LEN: usize = 64;

/// A run family's type key (DESIGN §6): an open, validated key such as `inventory.sync`. The
/// application's family registry says which keys exist and what each family is (label,
/// designed mode, parameters); the domain only needs the key to be well-formed and stable.
///
/// A key is 1 to 64 characters: two or more dot-separated segments, each a lowercase ASCII
/// letter followed by lowercase letters, digits or `_`.
///
/// ```
/// use opsrun_domain::OperationType;
/// let t: OperationType = "backup_set.restore".parse().unwrap();
/// assert_eq!(t, OperationType::BACKUP_SET_RESTORE);
/// assert_eq!(t.key(), "backup_set.restore");
/// assert!(OperationType::parse("acme.patch_rollout").is_ok());
/// assert!(OperationType::parse("Inventory.Sync").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperationType(Cow<'static, str>);

impl OperationType {
    /// `inventory.sync`: one unit per selected policy type.
    pub const INVENTORY_SYNC: Self = Self::from_static("inventory.sync");
    /// `review_pack.generate`: one unit per pack section.
    pub const REVIEW_PACK_GENERATE: Self = Self::from_static("review_pack.generate");
    /// `evidence_snapshot.generate`: one unit per evidence dimension.
    pub const EVIDENCE_SNAPSHOT_GENERATE: Self = Self::from_static("evidence_snapshot.generate");
    /// `backup_set.add_policies`: one unit per distinct policy id requested.
    pub const BACKUP_SET_ADD_POLICIES: Self = Self::from_static("backup_set.add_policies");
    /// `backup_set.restore`: a fan-out parent with child jobs over its backup-set items.
    pub const BACKUP_SET_RESTORE: Self = Self::from_static("backup_set.restore");
    /// `baseline.capture`: three phases, no counted total.
    pub const BASELINE_CAPTURE: Self = Self::from_static("baseline.capture");
    /// `baseline.compare`: two components (capture, compare).
    pub const BASELINE_COMPARE: Self = Self::from_static("baseline.compare");

    /// A key known at compile time (a family's own constant). It must be well-formed; the
    /// family registry checks it again when the family is registered.
    #[must_use]
    pub const fn from_static(key: &'static str) -> Self {
        Self(Cow::Borrowed(key))
    }

    /// The stable type key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.0
    }

    /// Whether `key` is well-formed (see the type's documentation).
    #[must_use]
    pub fn is_well_formed(key: &str) -> bool {
        let segment = |s: &str| {
            let mut chars = s.chars();
            chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        !key.is_empty()
            && key.len() <= MAX_TYPE_KEY_LEN
            && key.split('.').count() >= 2
            && key.split('.').all(segment)
    }

    /// Parses a type key.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] when the key is not well-formed.
    pub fn parse(key: &str) -> Result<Self, InvalidValue> {
        if !Self::is_well_formed(key) {
            let shown: String = key.chars().take(MAX_TYPE_KEY_LEN).collect();
            return Err(InvalidValue::new(
                "operation type",
                format!("'{shown}' is not a type key like 'inventory.sync'"),
            ));
        }
        Ok(Self(Cow::Owned(key.to_owned())))
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

    const BUILT_IN: [OperationType; 7] = [
        OperationType::INVENTORY_SYNC,
        OperationType::REVIEW_PACK_GENERATE,
        OperationType::EVIDENCE_SNAPSHOT_GENERATE,
        OperationType::BACKUP_SET_ADD_POLICIES,
        OperationType::BACKUP_SET_RESTORE,
        OperationType::BASELINE_CAPTURE,
        OperationType::BASELINE_COMPARE,
    ];

    #[test]
    fn every_type_key_round_trips_and_keys_are_distinct() {
        let mut keys: Vec<_> = BUILT_IN.iter().map(|t| t.key().to_owned()).collect();
        for t in BUILT_IN {
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
    fn malformed_keys_are_refused_and_host_keys_accepted() {
        let long = format!("a.{}", "b".repeat(MAX_TYPE_KEY_LEN));

        for bad in [
            "inventory",
            ".sync",
            "inventory.",
            "1nv.sync",
            "inv.sy nc",
            "inv..sync",
            &long,
        ] {
            assert!(OperationType::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            OperationType::parse("acme.patch_rollout_2").map(|t| t.key().to_owned()),
            Ok("acme.patch_rollout_2".to_owned())
        );
    }
}
