//! Fairness between tenants (DESIGN §4): a per-tenant limit on the runs that hold a slot, so
//! that one tenant's slow runs cannot occupy every worker.
//!
//! A top-level run holds one of its tenant's slots from the moment it starts running until it
//! completes (a paused running run keeps its slot, so a resume never waits). Child runs and a
//! fan-out's child jobs work inside their parent's slot. A queued run starts only when fewer
//! than `limit` other runs of its tenant hold a slot; otherwise it stays queued and says why.

use crate::Change;

/// How many slots of a run's tenant are taken, and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLoad {
    /// Other top-level runs of the tenant that hold a slot (running, paused or not).
    pub running: u32,
    /// The tenant's limit (at least 1).
    pub limit: u32,
}

impl TenantLoad {
    /// Whether one more run may start: `running < limit` (a limit of 0 is read as 1, so a
    /// tenant can never be locked out).
    #[must_use]
    pub fn admits(self) -> bool {
        self.running < self.limit.max(1)
    }

    /// The sentence a waiting run shows, e.g. "waiting: 3 runs of this tenant are running
    /// (limit 3)".
    ///
    /// ```
    /// use opsrun_domain::TenantLoad;
    /// let load = TenantLoad { running: 1, limit: 1 };
    /// assert_eq!(load.waiting_reason(), "waiting: 1 run of this tenant is running (limit 1)");
    /// ```
    #[must_use]
    pub fn waiting_reason(self) -> String {
        let (runs, are) = if self.running == 1 {
            ("run", "is")
        } else {
            ("runs", "are")
        };
        format!(
            "waiting: {} {runs} of this tenant {are} running (limit {})",
            self.running,
            self.limit.max(1)
        )
    }
}

/// What asking to start a run answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The run is running (`Applied`: it started now; `Unchanged`: it already was).
    Started(Change),
    /// Its tenant's slots are taken: the run stays queued with this reason.
    Waiting(String),
    /// The run is paused: it does not start until it is resumed.
    Paused,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_admitted_below_the_limit_only() {
        assert!(
            TenantLoad {
                running: 0,
                limit: 1
            }
            .admits()
        );
        assert!(
            TenantLoad {
                running: 3,
                limit: 4
            }
            .admits()
        );
        assert!(
            !TenantLoad {
                running: 4,
                limit: 4
            }
            .admits()
        );
        assert!(
            !TenantLoad {
                running: 9,
                limit: 4
            }
            .admits()
        );
        assert!(
            TenantLoad {
                running: 0,
                limit: 0
            }
            .admits()
        );
        assert!(
            !TenantLoad {
                running: 1,
                limit: 0
            }
            .admits()
        );
    }

    #[test]
    fn the_reason_names_the_count_and_the_limit() {
        assert_eq!(
            TenantLoad {
                running: 3,
                limit: 3
            }
            .waiting_reason(),
            "waiting: 3 runs of this tenant are running (limit 3)"
        );
    }
}
