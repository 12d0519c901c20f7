//! The clock port.

use opsrun_domain::Timestamp;

/// Tells the time. The application never reads the system clock itself, so tests can fix it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> Timestamp;
}
