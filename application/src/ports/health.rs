//! Readiness: what a process can tell about its own dependencies.

use async_trait::async_trait;

/// One named check of a process's readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Stable name, e.g. `store` or `workers`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen, for an operator.
    pub detail: String,
}

/// Checks a backend's readiness: its store accepts a write, its workers are alive. Each call
/// must answer within a few seconds (a check that does not finish in time has failed).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait HealthProbe: Send + Sync {
    /// Every check, each with its outcome.
    async fn checks(&self) -> Vec<HealthCheck>;
}
