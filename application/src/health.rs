//! Readiness as a read model: whether this process can do its work now, check by check.

use std::sync::Arc;

use crate::ports::{HealthCheck, HealthProbe};

/// The answer of a readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessReport {
    /// Whether every check passed.
    pub ready: bool,
    /// Every check, in the probe's order.
    pub checks: Vec<HealthCheck>,
}

/// Whether this process is ready: its store accepts a write and its workers are alive.
#[derive(Clone)]
pub struct Readiness {
    probe: Arc<dyn HealthProbe>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").finish_non_exhaustive()
    }
}

impl Readiness {
    /// Readiness over a backend's probe.
    #[must_use]
    pub fn new(probe: Arc<dyn HealthProbe>) -> Self {
        Self { probe }
    }

    /// The queues and workers as they are now (for metrics).
    ///
    /// # Errors
    ///
    /// [`crate::StoreError`] when the queue's tables cannot be read.
    pub async fn gauges(&self) -> Result<crate::ports::WorkGauges, crate::StoreError> {
        self.probe.gauges().await
    }

    /// Runs every check; ready only when all pass (and there is at least one).
    pub async fn check(&self) -> ReadinessReport {
        let checks = self.probe.checks().await;
        ReadinessReport {
            ready: !checks.is_empty() && checks.iter().all(|c| c.ok),
            checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MockHealthProbe;

    fn check(name: &'static str, ok: bool) -> HealthCheck {
        HealthCheck {
            name,
            ok,
            detail: String::new(),
        }
    }

    #[tokio::test]
    async fn one_failing_check_makes_the_process_not_ready() {
        let mut probe = MockHealthProbe::new();
        probe
            .expect_checks()
            .times(1)
            .returning(|| vec![check("store", true), check("workers", false)]);
        let readiness = Readiness::new(Arc::new(probe));

        let report = readiness.check().await;

        assert!(!report.ready);
        assert_eq!(report.checks.len(), 2);
    }

    #[tokio::test]
    async fn no_check_at_all_is_not_ready() {
        let mut probe = MockHealthProbe::new();
        probe.expect_checks().returning(Vec::new);

        assert!(!Readiness::new(Arc::new(probe)).check().await.ready);
    }
}
