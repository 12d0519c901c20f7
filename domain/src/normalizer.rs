//! Turning untrusted key/value input into [`SummaryCounts`] without guessing.

use std::collections::BTreeSet;
use std::fmt;

use crate::{MAX_COUNT, SummaryCounts, SummaryKey};

/// One untrusted value, as it came from a legacy row or outside JSON. The adapter that parsed
/// the input maps its own value type onto this one.
#[derive(Debug, Clone, PartialEq)]
pub enum RawCount {
    /// A whole number (wide enough for any JSON integer a parser accepts).
    Integer(i128),
    /// A number with a fraction or an exponent, even when its value is whole (`3.0`).
    Float(f64),
    /// Text, even when it spells a number (`"12"`).
    Text(String),
    /// A boolean.
    Bool(bool),
    /// An explicit null.
    Null,
    /// Anything else (a list, an object), named by its kind.
    Other(String),
}

/// Why the normalizer dropped an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The key is not one of the ten summary keys.
    UnknownKey,
    /// The value is not an integer (float, text, bool, null, list, object).
    NotAnInteger,
    /// The value is below zero.
    Negative,
    /// The value is above [`MAX_COUNT`].
    Overflow,
    /// The key appeared earlier in the same input; the first value is kept.
    DuplicateKey,
}

impl DropReason {
    /// A stable snake_case code.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::UnknownKey => "unknown_key",
            Self::NotAnInteger => "not_an_integer",
            Self::Negative => "negative",
            Self::Overflow => "overflow",
            Self::DuplicateKey => "duplicate_key",
        }
    }
}

/// An entry the normalizer dropped, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedCount {
    /// The key as it was given.
    pub key: String,
    /// The value as it was given.
    pub value: RawCount,
    /// Why it was dropped.
    pub reason: DropReason,
}

impl fmt::Display for DroppedCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dropped '{}': {}", self.key, self.reason.code())
    }
}

/// The result of normalizing: the counts that were valid, and everything that was not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NormalizedCounts {
    /// The valid counts.
    pub counts: SummaryCounts,
    /// The dropped entries, in input order.
    pub dropped: Vec<DroppedCount>,
}

/// Turns untrusted key/value pairs into [`SummaryCounts`]: unknown keys, non-integers,
/// negatives, overflow and repeated keys are dropped and reported, never guessed.
///
/// ```
/// use opsrun_domain::{DropReason, RawCount, SummaryCountsNormalizer, SummaryKey};
/// let out = SummaryCountsNormalizer::normalize([
///     ("total", RawCount::Integer(12)),
///     ("progress", RawCount::Integer(3)),
///     ("processed", RawCount::Text("4".into())),
/// ]);
/// assert_eq!(out.counts.get(SummaryKey::Total), Some(12));
/// assert_eq!(out.counts.get(SummaryKey::Processed), None);
/// assert_eq!(out.dropped[0].reason, DropReason::UnknownKey);
/// assert_eq!(out.dropped[1].reason, DropReason::NotAnInteger);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SummaryCountsNormalizer;

impl SummaryCountsNormalizer {
    /// Normalizes `input` (pairs in their original order).
    pub fn normalize<K, I>(input: I) -> NormalizedCounts
    where
        K: AsRef<str>,
        I: IntoIterator<Item = (K, RawCount)>,
    {
        let mut out = NormalizedCounts::default();
        let mut seen = BTreeSet::new();
        for (key, value) in input {
            let key = key.as_ref();
            match Self::check(key, &value, &seen) {
                Ok((summary_key, count)) => {
                    seen.insert(summary_key);
                    // `check` already bounded the value by MAX_COUNT, so `set` cannot refuse it.
                    if out.counts.set(summary_key, count).is_err() {
                        out.dropped.push(DroppedCount {
                            key: key.to_owned(),
                            value,
                            reason: DropReason::Overflow,
                        });
                    }
                }
                Err(reason) => out.dropped.push(DroppedCount {
                    key: key.to_owned(),
                    value,
                    reason,
                }),
            }
        }
        out
    }

    fn check(
        key: &str,
        value: &RawCount,
        seen: &BTreeSet<SummaryKey>,
    ) -> Result<(SummaryKey, u64), DropReason> {
        let summary_key = SummaryKey::parse(key).map_err(|_| DropReason::UnknownKey)?;
        if seen.contains(&summary_key) {
            return Err(DropReason::DuplicateKey);
        }
        let RawCount::Integer(number) = value else {
            return Err(DropReason::NotAnInteger);
        };
        if *number < 0 {
            return Err(DropReason::Negative);
        }
        let count = u64::try_from(*number).map_err(|_| DropReason::Overflow)?;
        if count > MAX_COUNT {
            return Err(DropReason::Overflow);
        }
        Ok((summary_key, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(out: &NormalizedCounts) -> Vec<DropReason> {
        out.dropped.iter().map(|d| d.reason).collect()
    }

    #[test]
    fn valid_integers_for_known_keys_are_kept() {
        let out = SummaryCountsNormalizer::normalize([
            ("total", RawCount::Integer(10)),
            ("processed", RawCount::Integer(0)),
            ("tenants", RawCount::Integer(i128::from(MAX_COUNT))),
        ]);

        assert!(out.dropped.is_empty());
        assert_eq!(out.counts.get(SummaryKey::Total), Some(10));
        assert_eq!(out.counts.get(SummaryKey::Processed), Some(0));
        assert_eq!(out.counts.get(SummaryKey::Tenants), Some(MAX_COUNT));
    }

    #[test]
    fn unknown_keys_are_dropped() {
        let out = SummaryCountsNormalizer::normalize([
            ("percent", RawCount::Integer(50)),
            ("Total", RawCount::Integer(5)),
        ]);

        assert!(out.counts.is_empty());
        assert_eq!(reasons(&out), vec![DropReason::UnknownKey; 2]);
    }

    #[test]
    fn negatives_are_dropped_not_clamped() {
        let out = SummaryCountsNormalizer::normalize([("failed", RawCount::Integer(-1))]);

        assert_eq!(out.counts.get(SummaryKey::Failed), None);
        assert_eq!(reasons(&out), vec![DropReason::Negative]);
    }

    #[test]
    fn floats_are_dropped_even_when_whole() {
        let out = SummaryCountsNormalizer::normalize([
            ("total", RawCount::Float(3.0)),
            ("processed", RawCount::Float(1.5)),
        ]);

        assert!(out.counts.is_empty());
        assert_eq!(reasons(&out), vec![DropReason::NotAnInteger; 2]);
    }

    #[test]
    fn strings_bools_nulls_and_objects_are_dropped() {
        let out = SummaryCountsNormalizer::normalize([
            ("total", RawCount::Text("12".into())),
            ("processed", RawCount::Bool(true)),
            ("succeeded", RawCount::Null),
            ("failed", RawCount::Other("array".into())),
        ]);

        assert!(out.counts.is_empty());
        assert_eq!(reasons(&out), vec![DropReason::NotAnInteger; 4]);
    }

    #[test]
    fn huge_values_overflow() {
        let out = SummaryCountsNormalizer::normalize([
            ("total", RawCount::Integer(i128::from(MAX_COUNT) + 1)),
            ("items", RawCount::Integer(i128::MAX)),
        ]);

        assert!(out.counts.is_empty());
        assert_eq!(reasons(&out), vec![DropReason::Overflow; 2]);
    }

    #[test]
    fn a_repeated_key_keeps_the_first_value() {
        let out = SummaryCountsNormalizer::normalize([
            ("total", RawCount::Integer(4)),
            ("total", RawCount::Integer(9)),
        ]);

        assert_eq!(out.counts.get(SummaryKey::Total), Some(4));
        assert_eq!(reasons(&out), vec![DropReason::DuplicateKey]);
    }
}
