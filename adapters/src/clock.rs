//! The system clock.

use std::time::{SystemTime, UNIX_EPOCH};

use opsrun_application::ports::Clock;
use opsrun_domain::Timestamp;

/// Reads the system's UTC clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(now_millis())
    }
}

/// Milliseconds since the Unix epoch. A clock before 1970 is a broken machine; it reads as the
/// epoch rather than panicking.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
