//! The closed set of summary counts (DESIGN §3).

use crate::{InvalidValue, RunError};

/// The largest count a run can carry: the largest value of a signed 64-bit database column.
pub const MAX_COUNT: u64 = i64::MAX as u64;

/// One of the ten summary count keys. No other key exists anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SummaryKey {
    /// Units in the frozen work set.
    Total,
    /// Distinct units that reached a final outcome.
    Processed,
    /// Units that succeeded.
    Succeeded,
    /// Units that failed for good.
    Failed,
    /// Units that needed no work.
    Skipped,
    /// Auxiliary: records created.
    Created,
    /// Auxiliary: records updated.
    Updated,
    /// Auxiliary: records deleted.
    Deleted,
    /// Auxiliary: things found (e.g. policies during an inventory sync, findings of a compare).
    Items,
    /// Auxiliary: tenants touched.
    Tenants,
}

/// The closed key set, in its canonical order.
///
/// ```
/// use opsrun_domain::OperationSummaryKeys;
/// assert_eq!(OperationSummaryKeys::ALL.len(), 10);
/// assert!(OperationSummaryKeys::contains("processed"));
/// assert!(!OperationSummaryKeys::contains("progress"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OperationSummaryKeys;

impl OperationSummaryKeys {
    /// Every key, in canonical order (also the column order of the schema).
    pub const ALL: [SummaryKey; 10] = [
        SummaryKey::Total,
        SummaryKey::Processed,
        SummaryKey::Succeeded,
        SummaryKey::Failed,
        SummaryKey::Skipped,
        SummaryKey::Created,
        SummaryKey::Updated,
        SummaryKey::Deleted,
        SummaryKey::Items,
        SummaryKey::Tenants,
    ];

    /// Whether `key` is one of the ten.
    #[must_use]
    pub fn contains(key: &str) -> bool {
        SummaryKey::parse(key).is_ok()
    }
}

impl SummaryKey {
    /// The key text, identical to its column name.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::Processed => "processed",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::Items => "items",
            Self::Tenants => "tenants",
        }
    }

    /// Parses a key.
    ///
    /// # Errors
    ///
    /// [`RunError::UnknownSummaryKey`] for anything outside the closed set.
    pub fn parse(key: &str) -> Result<Self, RunError> {
        OperationSummaryKeys::ALL
            .into_iter()
            .find(|k| k.key() == key)
            .ok_or_else(|| RunError::UnknownSummaryKey {
                key: key.to_owned(),
            })
    }

    /// Whether this key may be incremented directly (`created`, `updated`, `deleted`, `items`,
    /// `tenants`). `total`, `processed` and the outcome counters may not.
    #[must_use]
    pub fn is_auxiliary(self) -> bool {
        AuxiliaryKey::try_from(self).is_ok()
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A summary key that may be incremented directly, by an item's record or by a keyed run-level
/// increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuxiliaryKey {
    /// `created`.
    Created,
    /// `updated`.
    Updated,
    /// `deleted`.
    Deleted,
    /// `items`.
    Items,
    /// `tenants`.
    Tenants,
}

impl AuxiliaryKey {
    /// Every auxiliary key.
    pub const ALL: [Self; 5] = [
        Self::Created,
        Self::Updated,
        Self::Deleted,
        Self::Items,
        Self::Tenants,
    ];

    /// The summary key this auxiliary key is.
    #[must_use]
    pub fn summary_key(self) -> SummaryKey {
        match self {
            Self::Created => SummaryKey::Created,
            Self::Updated => SummaryKey::Updated,
            Self::Deleted => SummaryKey::Deleted,
            Self::Items => SummaryKey::Items,
            Self::Tenants => SummaryKey::Tenants,
        }
    }

    /// Parses a key given as text.
    ///
    /// # Errors
    ///
    /// [`RunError::UnknownSummaryKey`] for text outside the closed set,
    /// [`RunError::NotAuxiliaryKey`] for `total`, `processed` and the outcome counters.
    pub fn parse(key: &str) -> Result<Self, RunError> {
        Self::try_from(SummaryKey::parse(key)?)
    }
}

impl TryFrom<SummaryKey> for AuxiliaryKey {
    type Error = RunError;

    fn try_from(key: SummaryKey) -> Result<Self, Self::Error> {
        match key {
            SummaryKey::Created => Ok(Self::Created),
            SummaryKey::Updated => Ok(Self::Updated),
            SummaryKey::Deleted => Ok(Self::Deleted),
            SummaryKey::Items => Ok(Self::Items),
            SummaryKey::Tenants => Ok(Self::Tenants),
            other => Err(RunError::NotAuxiliaryKey { key: other }),
        }
    }
}

/// The summary counts of a run: only keys that are set carry a value.
///
/// ```
/// use opsrun_domain::{SummaryCounts, SummaryKey};
/// let mut counts = SummaryCounts::new();
/// assert_eq!(counts.get(SummaryKey::Total), None);
/// counts.set(SummaryKey::Total, 12).unwrap();
/// assert_eq!(counts.get(SummaryKey::Total), Some(12));
/// assert_eq!(counts.iter().collect::<Vec<_>>(), vec![(SummaryKey::Total, 12)]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SummaryCounts([Option<u64>; 10]);

impl SummaryCounts {
    /// Counts with no key set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, or `None` when it is not set.
    #[must_use]
    pub fn get(&self, key: SummaryKey) -> Option<u64> {
        self.0[key.index()]
    }

    /// The value of `key`, with an unset key read as 0.
    #[must_use]
    pub fn get_or_zero(&self, key: SummaryKey) -> u64 {
        self.get(key).unwrap_or(0)
    }

    /// Sets `key` to `value`. This is a plain value setter for building counts (from storage,
    /// from the normalizer); the run rules live on [`crate::OperationRun`].
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] when `value` is above [`MAX_COUNT`].
    pub fn set(&mut self, key: SummaryKey, value: u64) -> Result<(), InvalidValue> {
        if value > MAX_COUNT {
            return Err(InvalidValue::new(
                "summary count",
                format!("'{}' is above the largest storable count", key.key()),
            ));
        }
        self.0[key.index()] = Some(value);
        Ok(())
    }

    /// Unsets `key`.
    pub fn clear(&mut self, key: SummaryKey) {
        self.0[key.index()] = None;
    }

    /// The keys that are set with their values, in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (SummaryKey, u64)> + '_ {
        OperationSummaryKeys::ALL
            .into_iter()
            .filter_map(|k| self.get(k).map(|v| (k, v)))
    }

    /// Whether no key is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    /// Adds `delta` to `key` (an unset key starts at 0).
    pub(crate) fn add(&mut self, key: SummaryKey, delta: u64) -> Result<(), RunError> {
        let next = self
            .get_or_zero(key)
            .checked_add(delta)
            .filter(|v| *v <= MAX_COUNT)
            .ok_or(RunError::CountOverflow { key })?;
        self.0[key.index()] = Some(next);
        Ok(())
    }

    /// The invariants that a set of counts can break on its own (I2, I4), as lowercase notes;
    /// empty when the counts are consistent.
    #[must_use]
    pub fn violations(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let (Some(total), Some(processed)) =
            (self.get(SummaryKey::Total), self.get(SummaryKey::Processed))
            && processed > total
        {
            notes.push(format!("processed {processed} is above total {total}"));
        }
        let outcomes = [
            SummaryKey::Succeeded,
            SummaryKey::Failed,
            SummaryKey::Skipped,
        ]
        .into_iter()
        .map(|k| u128::from(self.get_or_zero(k)))
        .sum::<u128>();
        let processed = u128::from(self.get_or_zero(SummaryKey::Processed));
        if outcomes > processed {
            notes.push(format!(
                "succeeded + failed + skipped = {outcomes} is above processed {processed}"
            ));
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closed_set_has_ten_distinct_keys_that_round_trip() {
        for k in OperationSummaryKeys::ALL {
            assert_eq!(SummaryKey::parse(k.key()), Ok(k));
        }
        assert_eq!(OperationSummaryKeys::ALL.len(), 10);
        assert_eq!(
            SummaryKey::parse("percent"),
            Err(RunError::UnknownSummaryKey {
                key: "percent".into()
            })
        );
    }

    #[test]
    fn only_five_keys_are_auxiliary() {
        let aux: Vec<_> = OperationSummaryKeys::ALL
            .into_iter()
            .filter(|k| k.is_auxiliary())
            .map(SummaryKey::key)
            .collect();
        assert_eq!(
            aux,
            vec!["created", "updated", "deleted", "items", "tenants"]
        );
        assert_eq!(
            AuxiliaryKey::parse("processed"),
            Err(RunError::NotAuxiliaryKey {
                key: SummaryKey::Processed
            })
        );
    }

    #[test]
    fn setting_above_the_storable_maximum_is_refused() {
        let mut counts = SummaryCounts::new();

        let result = counts.set(SummaryKey::Items, MAX_COUNT + 1);

        assert!(result.is_err());
        assert_eq!(counts.get(SummaryKey::Items), None);
    }

    #[test]
    fn add_refuses_overflow_and_leaves_the_value() {
        let mut counts = SummaryCounts::new();
        counts.set(SummaryKey::Items, MAX_COUNT).unwrap();

        let result = counts.add(SummaryKey::Items, 1);

        assert_eq!(
            result,
            Err(RunError::CountOverflow {
                key: SummaryKey::Items
            })
        );
        assert_eq!(counts.get(SummaryKey::Items), Some(MAX_COUNT));
    }

    #[test]
    fn violations_name_processed_above_total_and_outcomes_above_processed() {
        let mut counts = SummaryCounts::new();
        counts.set(SummaryKey::Total, 3).unwrap();
        counts.set(SummaryKey::Processed, 4).unwrap();
        counts.set(SummaryKey::Succeeded, 5).unwrap();

        let notes = counts.violations();

        assert_eq!(notes.len(), 2);
        assert!(notes[0].contains("processed 4 is above total 3"));
    }
}
