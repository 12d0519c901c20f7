//! Retention: what a long-running installation prunes so that it does not grow for ever.

use async_trait::async_trait;
use opsrun_domain::Timestamp;

use crate::StoreError;

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Finished queue jobs.
    pub jobs: u64,
    /// Rows of workers that are long gone.
    pub workers: u64,
    /// Notifications.
    pub notifications: u64,
    /// Webhook deliveries that ended (delivered or failed); pending ones are kept.
    pub webhook_deliveries: u64,
}

/// Prunes what no active run needs, older than a cutoff, at most `batch` rows of each kind per
/// call (so a pass never holds the store for long).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Retention: Send + Sync {
    /// Removes finished (`Done`) queue jobs and rows of workers last seen before `before`
    /// (never a worker a job still names), and notifications created before `before`. Jobs
    /// that wait, run or may be retried are never removed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn prune(&self, before: Timestamp, batch: u32) -> Result<Pruned, StoreError>;
}
