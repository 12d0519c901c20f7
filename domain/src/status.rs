//! Run status, run outcome and item outcome.

use crate::{InvalidValue, SummaryKey};

/// Where a run is in its life: `queued -> running -> completed`, or `queued -> completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker is executing it.
    Running,
    /// Finished; immutable from now on.
    Completed,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [Self; 3] = [Self::Queued, Self::Running, Self::Completed];

    /// The wire key.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
        }
    }

    /// Parses a wire key.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] for any other text.
    pub fn parse(key: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|s| s.key() == key)
            .ok_or_else(|| InvalidValue::new("status", format!("'{key}' is not a run status")))
    }

    /// Whether the status machine allows moving from `self` to `to`.
    #[must_use]
    pub fn can_move_to(self, to: Self) -> bool {
        matches!(
            (self, to),
            (Self::Queued, Self::Running | Self::Completed) | (Self::Running, Self::Completed)
        )
    }

    /// Queued or running.
    #[must_use]
    pub fn is_active(self) -> bool {
        self != Self::Completed
    }
}

/// How a run ended; `pending` until it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunOutcome {
    /// Not completed yet.
    Pending,
    /// Every item succeeded or was skipped.
    Succeeded,
    /// Some items failed, at least one succeeded or was skipped.
    PartiallySucceeded,
    /// The run could not start (precondition not met).
    Blocked,
    /// Nothing succeeded, or the run itself failed.
    Failed,
    /// An operator cancelled it.
    Cancelled,
}

impl RunOutcome {
    /// Every outcome.
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Succeeded,
        Self::PartiallySucceeded,
        Self::Blocked,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The wire key.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::PartiallySucceeded => "partially_succeeded",
            Self::Blocked => "blocked",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a wire key.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] for any other text.
    pub fn parse(key: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|s| s.key() == key)
            .ok_or_else(|| InvalidValue::new("outcome", format!("'{key}' is not a run outcome")))
    }
}

/// The final outcome of one item of a run (attempts are not outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemOutcome {
    /// The item's work was done.
    Succeeded,
    /// The item's work failed for good.
    Failed,
    /// Nothing had to be done (e.g. already in the backup set).
    Skipped,
}

impl ItemOutcome {
    /// Every item outcome.
    pub const ALL: [Self; 3] = [Self::Succeeded, Self::Failed, Self::Skipped];

    /// The wire key.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// Parses a wire key.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] for any other text.
    pub fn parse(key: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|s| s.key() == key)
            .ok_or_else(|| {
                InvalidValue::new("item outcome", format!("'{key}' is not an item outcome"))
            })
    }

    /// The outcome counter this outcome increments.
    #[must_use]
    pub fn summary_key(self) -> SummaryKey {
        match self {
            Self::Succeeded => SummaryKey::Succeeded,
            Self::Failed => SummaryKey::Failed,
            Self::Skipped => SummaryKey::Skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_machine_allows_exactly_three_moves() {
        let allowed: Vec<_> = RunStatus::ALL
            .iter()
            .flat_map(|from| RunStatus::ALL.iter().map(move |to| (*from, *to)))
            .filter(|(from, to)| from.can_move_to(*to))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (RunStatus::Queued, RunStatus::Running),
                (RunStatus::Queued, RunStatus::Completed),
                (RunStatus::Running, RunStatus::Completed),
            ]
        );
    }

    #[test]
    fn keys_round_trip() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.key()), Ok(s));
        }
        for o in RunOutcome::ALL {
            assert_eq!(RunOutcome::parse(o.key()), Ok(o));
        }
        for o in ItemOutcome::ALL {
            assert_eq!(ItemOutcome::parse(o.key()), Ok(o));
        }
        assert!(RunStatus::parse("paused").is_err());
    }
}
