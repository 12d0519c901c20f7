//! Readiness: what a process can tell about its own dependencies.

use async_trait::async_trait;

use crate::StoreError;

/// The jobs of one queue that are due and not started.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueGauge {
    /// The queue's name.
    pub queue: String,
    /// Jobs due (their time has come) and not yet started.
    pub due: u64,
    /// Seconds the oldest of them has been due (0 with none).
    pub oldest_due_secs: f64,
}

/// What the workers' side of the installation looks like now (for metrics).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkGauges {
    /// Per queue.
    pub queues: Vec<QueueGauge>,
    /// Workers of every process that said they are alive within their liveness window.
    pub workers_alive: u64,
}

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

    /// The queues and workers as they are now.
    async fn gauges(&self) -> Result<WorkGauges, StoreError>;
}
