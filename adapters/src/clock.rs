//! The system clock.

use std::time::{SystemTime, UNIX_EPOCH};

use opsrun_application::ports::Clock;
use opsrun_domain::Timestamp;

/// Reads the system's UTC clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // A clock before 1970 is a broken machine; read it as the epoch rather than panic.
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp::from_millis(millis)
    }
}
