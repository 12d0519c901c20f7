//! Settings decided once: defaults and thresholds every command shares.

/// Seconds without a sign of life after which a running run is stale: surfaces say so, and
/// the maintenance pass ends it `failed` (`run.stale`). The one place this default is set.
pub const STALE_AFTER_SECS: u64 = 600;
/// [`STALE_AFTER_SECS`] in milliseconds, as the read models take it.
#[expect(
    clippy::cast_possible_wrap,
    reason = "600 s fits an i64 of milliseconds"
)]
pub const STALE_AFTER_MS: i64 = (STALE_AFTER_SECS * 1000) as i64;
