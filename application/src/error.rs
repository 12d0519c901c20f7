//! Errors of the ports and use cases.

use opsrun_domain::{InvalidValue, RunError, RunId};

/// A boxed error from outside the application (a driver, a file system, a network).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a storage port can answer instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No run has this id.
    #[error("run {0} not found")]
    RunNotFound(RunId),
    /// Something else named by the call does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A domain rule refused the change; nothing was written.
    #[error(transparent)]
    Rule(#[from] RunError),
    /// Stored data could not be read back as a domain value.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The storage could not be reached or failed; the call may be retried.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

impl From<InvalidValue> for StoreError {
    fn from(value: InvalidValue) -> Self {
        Self::Corrupt(value.to_string())
    }
}

/// What the job queue can answer instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue could not take the job; nothing was enqueued.
    #[error("queue unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

/// What a tenant-facing family port (provider, restore target) can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// A transient failure: the attempt may be retried, and is not an item outcome.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// A final failure of this item, with a stable reason code.
    #[error("{message}")]
    Failed {
        /// Stable reason code, e.g. `policy.fetch_failed`.
        code: String,
        /// Human sentence.
        message: String,
    },
    /// The named thing does not exist at the provider.
    #[error("{0} not found at the provider")]
    NotFound(String),
}

/// What a family store port (inventory, artifacts, backup sets, baselines) can answer.
#[derive(Debug, thiserror::Error)]
pub enum FamilyStoreError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The store could not be reached or failed; the call may be retried.
    #[error("family store unavailable: {0}")]
    Unavailable(#[source] BoxError),
}
