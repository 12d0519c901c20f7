//! The system clock and the system's random source.

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

/// The operating system's secure random source.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl opsrun_application::ports::Entropy for OsEntropy {
    fn bytes(&self) -> Result<[u8; 32], opsrun_application::StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| {
            opsrun_application::StoreError::Unavailable(format!("no randomness: {e}").into())
        })?;
        Ok(bytes)
    }
}
