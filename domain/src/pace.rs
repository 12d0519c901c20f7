//! Rate and ETA (DESIGN §5): estimates, shown only when the ledger's record times give enough
//! evidence. Nothing is written for them: the window is read from the `recorded_at` of the most
//! recent ledger entries.

use crate::Timestamp;

/// Only records this recent count as evidence.
pub const PACE_WINDOW_MS: i64 = 30_000;
/// At most this many of the most recent records count as evidence.
pub const PACE_MAX_RECORDS: u64 = 100;
/// Fewer records than this in the window: no estimate.
pub const PACE_MIN_RECORDS: u64 = 5;
/// A window shorter than this (from its oldest record to now): no estimate, unless the window
/// is full.
pub const PACE_MIN_SPAN_MS: i64 = 3_000;
/// A full window ([`PACE_MAX_RECORDS`] records: a fast run) needs only this span, so a run that
/// records more than 33 items per second still gets an estimate.
pub const PACE_MIN_FULL_SPAN_MS: i64 = 1_000;

/// The evidence an estimate is made from: how many of the run's most recent records fall in
/// the window (at most [`PACE_MAX_RECORDS`], none older than [`PACE_WINDOW_MS`]), and the time
/// of the oldest of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordWindow {
    /// Records in the window.
    pub records: u64,
    /// The oldest record in the window.
    pub first_at: Timestamp,
}

impl RecordWindow {
    /// The window at `now` over record times in any order (the in-memory store's way; SQL
    /// stores compute the same with one aggregate). `None` when no record is recent enough.
    #[must_use]
    pub fn from_times(times: impl IntoIterator<Item = Timestamp>, now: Timestamp) -> Option<Self> {
        let since = now.as_millis().saturating_sub(PACE_WINDOW_MS);
        let mut recent: Vec<Timestamp> = times
            .into_iter()
            .filter(|t| t.as_millis() >= since)
            .collect();
        recent.sort_unstable_by(|a, b| b.cmp(a));
        let max = usize::try_from(PACE_MAX_RECORDS).unwrap_or(usize::MAX);
        recent.truncate(max);
        let first_at = *recent.last()?;
        Some(Self {
            records: recent.len() as u64,
            first_at,
        })
    }
}

/// An estimate of a counted run's pace: `items` records over `over_ms` milliseconds, and the
/// seconds left at that rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Records after the window's first one.
    pub items: u64,
    /// Milliseconds from the window's first record to now.
    pub over_ms: u64,
    /// Seconds left at this rate, rounded up; 0 only when nothing is left.
    pub eta_seconds: u64,
}

impl Pace {
    /// Items per second.
    #[must_use]
    #[expect(
        clippy::cast_precision_loss,
        reason = "an estimate: f64 is the display type"
    )]
    pub fn rate(&self) -> f64 {
        self.items as f64 * 1000.0 / self.over_ms.max(1) as f64
    }

    /// The estimate for a counted run with `processed` of `total` done, from `window` at
    /// `now`: `None` without a window, with fewer than [`PACE_MIN_RECORDS`] records in it, or
    /// over less than [`PACE_MIN_SPAN_MS`] (less than [`PACE_MIN_FULL_SPAN_MS`] for a full
    /// window of [`PACE_MAX_RECORDS`]). The rate counts the records after the window's
    /// first one over the time from it to now, so a run that stops recording slows its rate
    /// and then loses its estimate as its records leave the window.
    ///
    /// ```
    /// use opsrun_domain::{Pace, RecordWindow, Timestamp};
    /// let window = RecordWindow { records: 11, first_at: Timestamp::from_millis(0) };
    /// let pace = Pace::estimate(Some(window), Timestamp::from_millis(5_000), 40, 100).unwrap();
    /// assert_eq!(pace.rate(), 2.0);
    /// assert_eq!(pace.eta_seconds, 30);
    /// ```
    #[must_use]
    pub fn estimate(
        window: Option<RecordWindow>,
        now: Timestamp,
        processed: u64,
        total: u64,
    ) -> Option<Self> {
        let window = window?;
        let span = now.millis_since(window.first_at);
        let min_span = if window.records >= PACE_MAX_RECORDS {
            PACE_MIN_FULL_SPAN_MS
        } else {
            PACE_MIN_SPAN_MS
        };
        if window.records < PACE_MIN_RECORDS || span < min_span {
            return None;
        }
        let over_ms = u64::try_from(span).ok()?;
        let items = window.records - 1;
        let remaining = u128::from(total.saturating_sub(processed));
        // remaining / (items / over_ms s) in seconds, rounded up.
        let per = u128::from(items) * 1000;
        let eta = (remaining * u128::from(over_ms)).div_ceil(per);
        Some(Self {
            items,
            over_ms,
            eta_seconds: u64::try_from(eta).unwrap_or(u64::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn thin_evidence_gives_no_estimate() {
        let four = RecordWindow {
            records: 4,
            first_at: t(0),
        };
        let short = RecordWindow {
            records: 50,
            first_at: t(0),
        };
        assert_eq!(Pace::estimate(None, t(10_000), 1, 10), None);
        assert_eq!(Pace::estimate(Some(four), t(10_000), 4, 10), None);
        assert_eq!(Pace::estimate(Some(short), t(2_999), 50, 100), None);
        assert!(Pace::estimate(Some(short), t(3_000), 50, 100).is_some());
        // A full window is evidence enough after 1 s: a fast run has an estimate too.
        let full = RecordWindow {
            records: PACE_MAX_RECORDS,
            first_at: t(0),
        };
        assert_eq!(Pace::estimate(Some(full), t(999), 100, 1_000), None);
        let fast = Pace::estimate(Some(full), t(2_000), 100, 1_000).unwrap();
        assert_eq!((fast.items, fast.eta_seconds), (99, 19));
    }

    #[test]
    fn eta_is_zero_only_when_nothing_is_left() {
        let w = RecordWindow {
            records: 5,
            first_at: t(0),
        };
        assert_eq!(
            Pace::estimate(Some(w), t(4_000), 10, 10)
                .unwrap()
                .eta_seconds,
            0
        );
        // 4 items over 4 s = 1/s: 1 left is 1 s; rounding never makes a remainder 0.
        assert_eq!(
            Pace::estimate(Some(w), t(4_000), 9, 10)
                .unwrap()
                .eta_seconds,
            1
        );
        let slow = Pace::estimate(Some(w), t(4_000_000), 9, 10).unwrap();
        assert_eq!(slow.eta_seconds, 1_000);
    }

    #[test]
    fn the_window_keeps_the_most_recent_records_only() {
        let now = t(100_000);
        // 200 records, one every 100 ms, the last at `now`.
        let times = (0..200).map(|i| t(100_000 - i * 100));
        let w = RecordWindow::from_times(times, now).unwrap();
        assert_eq!(w.records, PACE_MAX_RECORDS);
        assert_eq!(w.first_at, t(100_000 - 99 * 100));
        // Everything older than the window: no window at all.
        assert_eq!(RecordWindow::from_times([t(0), t(1)], now), None);
    }
}
