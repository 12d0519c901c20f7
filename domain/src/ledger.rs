//! The frozen work set and the item ledger of a run: what makes counting exactly-once.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    AuxiliaryKey, InvalidValue, ItemKey, ItemOutcome, ReasonCode, SummaryCounts, SummaryKey,
    Timestamp,
};

/// The deterministic set of units a run's total is frozen from, with the label that says where
/// the total came from (its basis, e.g. "8 selected policy types").
///
/// ```
/// use opsrun_domain::{ItemKey, WorkSet};
/// let units = ["a", "b"].map(|k| ItemKey::parse(k).unwrap());
/// let set = WorkSet::try_new(units.to_vec(), "2 selected policy types").unwrap();
/// assert_eq!(set.len(), 2);
/// assert!(WorkSet::try_new(vec![units[0].clone(), units[0].clone()], "dup").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkSet {
    units: Vec<ItemKey>,
    members: BTreeSet<ItemKey>,
    basis: String,
}

/// Longest basis label, in bytes.
const MAX_BASIS_LEN: usize = 200;

impl WorkSet {
    /// Freezes `units` (distinct, in work order) with a basis label.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] when a unit repeats or the basis is empty or longer than 200 bytes.
    pub fn try_new(units: Vec<ItemKey>, basis: impl Into<String>) -> Result<Self, InvalidValue> {
        let basis = basis.into();
        if basis.trim().is_empty() || basis.len() > MAX_BASIS_LEN {
            return Err(InvalidValue::new("basis", "must be 1 to 200 bytes of text"));
        }
        let members: BTreeSet<ItemKey> = units.iter().cloned().collect();
        if members.len() != units.len() {
            return Err(InvalidValue::new("work set", "units must be distinct"));
        }
        Ok(Self {
            units,
            members,
            basis,
        })
    }

    /// The units, in work order.
    #[must_use]
    pub fn units(&self) -> &[ItemKey] {
        &self.units
    }

    /// The basis label.
    #[must_use]
    pub fn basis(&self) -> &str {
        &self.basis
    }

    /// Number of units: the total it freezes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Whether the set has no unit.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Whether `key` is one of the units.
    #[must_use]
    pub fn contains(&self, key: &ItemKey) -> bool {
        self.members.contains(key)
    }

    /// Whether both sets hold the same units (order and basis label aside).
    #[must_use]
    pub fn same_units(&self, other: &Self) -> bool {
        self.members == other.members
    }
}

/// Auxiliary counter deltas (`created`, `updated`, `deleted`, `items`, `tenants`); zero deltas
/// are not stored.
///
/// ```
/// use opsrun_domain::{AuxDeltas, AuxiliaryKey};
/// let d = AuxDeltas::new().with(AuxiliaryKey::Created, 2).with(AuxiliaryKey::Updated, 0);
/// assert_eq!(d.iter().collect::<Vec<_>>(), vec![(AuxiliaryKey::Created, 2)]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AuxDeltas(BTreeMap<AuxiliaryKey, u64>);

impl AuxDeltas {
    /// No deltas.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// These deltas plus `delta` on `key` (saturating; a saturated delta is refused later as
    /// an overflow of the counter).
    #[must_use]
    pub fn with(mut self, key: AuxiliaryKey, delta: u64) -> Self {
        if delta > 0 {
            let slot = self.0.entry(key).or_insert(0);
            *slot = slot.saturating_add(delta);
        }
        self
    }

    /// The non-zero deltas in key order.
    pub fn iter(&self) -> impl Iterator<Item = (AuxiliaryKey, u64)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }

    /// Whether there is no delta.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One item's final outcome, to be recorded exactly once in its run's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRecord {
    key: ItemKey,
    outcome: ItemOutcome,
    reason: Option<ReasonCode>,
    deltas: AuxDeltas,
}

impl ItemRecord {
    /// The item succeeded.
    #[must_use]
    pub fn succeeded(key: ItemKey) -> Self {
        Self::with_outcome(key, ItemOutcome::Succeeded, None)
    }

    /// The item failed for good, for `reason`.
    #[must_use]
    pub fn failed(key: ItemKey, reason: ReasonCode) -> Self {
        Self::with_outcome(key, ItemOutcome::Failed, Some(reason))
    }

    /// The item needed no work, optionally saying why.
    #[must_use]
    pub fn skipped(key: ItemKey, reason: Option<ReasonCode>) -> Self {
        Self::with_outcome(key, ItemOutcome::Skipped, reason)
    }

    fn with_outcome(key: ItemKey, outcome: ItemOutcome, reason: Option<ReasonCode>) -> Self {
        Self {
            key,
            outcome,
            reason,
            deltas: AuxDeltas::new(),
        }
    }

    /// Attaches the auxiliary deltas that belong to this item; they are applied only if the
    /// item is recorded (not on a duplicate).
    #[must_use]
    pub fn with_deltas(mut self, deltas: AuxDeltas) -> Self {
        self.deltas = deltas;
        self
    }

    /// The item key.
    #[must_use]
    pub fn key(&self) -> &ItemKey {
        &self.key
    }

    /// The final outcome.
    #[must_use]
    pub fn outcome(&self) -> ItemOutcome {
        self.outcome
    }

    /// The reason code, always present for a failure.
    #[must_use]
    pub fn reason(&self) -> Option<&ReasonCode> {
        self.reason.as_ref()
    }

    /// The auxiliary deltas riding on this item.
    #[must_use]
    pub fn deltas(&self) -> &AuxDeltas {
        &self.deltas
    }
}

/// A recorded item in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The item's final outcome.
    pub outcome: ItemOutcome,
    /// Its reason code, if any.
    pub reason: Option<ReasonCode>,
    /// The auxiliary deltas applied with it.
    pub deltas: AuxDeltas,
    /// When it was recorded.
    pub recorded_at: Timestamp,
}

/// What a record call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordOutcome {
    /// Items newly entered into the ledger (and counted).
    pub recorded: u64,
    /// Items already in the ledger, or repeated in the same batch: not counted again.
    pub duplicates: u64,
    /// After this call every unit of the run's total is recorded (`processed == total`): the
    /// caller of a fan-out child learns here, without another read, that the parent is ready
    /// to complete.
    pub all_recorded: bool,
}

/// What a record call did, with the keys it entered: what a caller needs to split one
/// combined record among the callers whose items it carried.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recorded {
    /// The counts, as [`RecordOutcome`].
    pub outcome: RecordOutcome,
    /// The keys newly entered into the ledger, each once, in the order they were given.
    pub fresh: Vec<ItemKey>,
}

/// Per run: the frozen work set (once the total is set), every recorded item keyed by its
/// item key, and the keys of run-level auxiliary increments already applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemLedger {
    pub(crate) work_set: Option<WorkSet>,
    pub(crate) entries: BTreeMap<ItemKey, LedgerEntry>,
    pub(crate) increments: BTreeMap<ItemKey, AuxDeltas>,
    // Items a worker announced it is about to hand to the provider (see
    // `OperationRun::claim_item`); kept only while the run is open.
    pub(crate) claims: BTreeSet<ItemKey>,
}

/// What claiming an item before its provider call answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The item may be handed to the provider now; if the run is cancelled before its record,
    /// the cancellation counts it as in flight.
    Claimed,
    /// The item is already in the ledger: its work is done, the provider must not be called
    /// again.
    AlreadyRecorded,
    /// The run is paused: the item must not start; a resume hands it out again.
    Paused,
}

impl ItemLedger {
    /// An empty ledger (a new run).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a ledger from storage. Entries are taken as stored; a mismatch with the run's
    /// counts is what [`crate::OperationRun::reconcile_counts`] finds and repairs.
    #[must_use]
    pub fn restore(
        work_set: Option<WorkSet>,
        entries: BTreeMap<ItemKey, LedgerEntry>,
        increments: BTreeMap<ItemKey, AuxDeltas>,
    ) -> Self {
        Self {
            work_set,
            entries,
            increments,
            claims: BTreeSet::new(),
        }
    }

    /// The same ledger with the stored claims of items handed to the provider.
    #[must_use]
    pub fn with_claims(mut self, claims: impl IntoIterator<Item = ItemKey>) -> Self {
        self.claims.extend(claims);
        self
    }

    /// Items claimed for a provider call and not recorded yet: the calls that may be in
    /// flight.
    pub fn in_flight(&self) -> impl Iterator<Item = &ItemKey> {
        self.claims
            .iter()
            .filter(|k| !self.entries.contains_key(*k))
    }

    /// The frozen work set, once a total is set.
    #[must_use]
    pub fn work_set(&self) -> Option<&WorkSet> {
        self.work_set.as_ref()
    }

    /// The entry of `key`, if recorded.
    #[must_use]
    pub fn get(&self, key: &ItemKey) -> Option<&LedgerEntry> {
        self.entries.get(key)
    }

    /// Whether `key` is recorded.
    #[must_use]
    pub fn contains(&self, key: &ItemKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Number of recorded items.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no item is recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every recorded item, by key order.
    pub fn entries(&self) -> impl Iterator<Item = (&ItemKey, &LedgerEntry)> {
        self.entries.iter()
    }

    /// The applied run-level increments, by key order.
    pub fn increments(&self) -> impl Iterator<Item = (&ItemKey, &AuxDeltas)> {
        self.increments.iter()
    }

    /// The counts this ledger implies: `total` from the work set; `processed` once a total is
    /// set or an item is recorded; every other key only when it is above zero. A run whose
    /// counts differ from this has drifted.
    #[must_use]
    pub fn recount(&self) -> SummaryCounts {
        let mut sums = [0u128; 10];
        // The enum's discriminants are the canonical key order, 0..10.
        let index = |key: SummaryKey| key as usize;
        for entry in self.entries.values() {
            sums[index(entry.outcome.summary_key())] += 1;
            for (key, delta) in entry.deltas.iter() {
                sums[index(key.summary_key())] += u128::from(delta);
            }
        }
        for deltas in self.increments.values() {
            for (key, delta) in deltas.iter() {
                sums[index(key.summary_key())] += u128::from(delta);
            }
        }
        let mut counts = SummaryCounts::new();
        let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX).min(crate::MAX_COUNT);
        if let Some(work_set) = &self.work_set {
            let _ = counts.set(SummaryKey::Total, clamp(work_set.len() as u128));
        }
        if self.work_set.is_some() || !self.entries.is_empty() {
            let _ = counts.set(SummaryKey::Processed, clamp(self.entries.len() as u128));
        }
        for key in crate::OperationSummaryKeys::ALL {
            let sum = sums[index(key)];
            if !matches!(key, SummaryKey::Total | SummaryKey::Processed) && sum > 0 {
                let _ = counts.set(key, clamp(sum));
            }
        }
        counts
    }
}
