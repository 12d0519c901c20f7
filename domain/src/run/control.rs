//! Run control on the aggregate: admission under the tenant's concurrency limit, pause and
//! resume (DESIGN §4). The claim of a paused run is answered in `claim_item`.

use super::OperationRun;
use crate::{Admission, Change, RunError, RunStatus, TenantLoad, Timestamp};

impl OperationRun {
    /// Starts the run if its tenant has a free slot (see [`TenantLoad`]): a queued run
    /// with `load.admits()` moves to running (`Started(Applied)`), one without stays queued and
    /// keeps the reason (`Waiting`); a running run answers `Started(Unchanged)` (it holds its
    /// slot). A paused run never starts (`Paused`).
    ///
    /// Checks, in order: completed; running; paused; the load.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`].
    pub fn admit(&mut self, at: Timestamp, load: TenantLoad) -> Result<Admission, RunError> {
        self.ensure_open()?;
        if self.parts.status == RunStatus::Running {
            return Ok(Admission::Started(Change::Unchanged));
        }
        if self.parts.paused_at.is_some() {
            return Ok(Admission::Paused);
        }
        if !load.admits() {
            let reason = load.waiting_reason();
            self.parts.waiting = Some(reason.clone());
            return Ok(Admission::Waiting(reason));
        }
        self.parts.waiting = None;
        self.mark_running(at).map(Admission::Started)
    }

    /// Pauses the run: from now on it starts no new item, child or phase (items in flight
    /// finish and are recorded), keeps its counts, and is never stale. Already paused is
    /// `Unchanged`.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`].
    pub fn pause(&mut self, at: Timestamp) -> Result<Change, RunError> {
        self.ensure_open()?;
        if self.parts.paused_at.is_some() {
            return Ok(Change::Unchanged);
        }
        self.parts.paused_at = Some(at);
        Ok(Change::Applied)
    }

    /// Resumes a paused run where it stopped. The heartbeat moves to `at`, so the time spent
    /// paused never counts as silence. Not paused is `Unchanged`.
    ///
    /// # Errors
    ///
    /// [`RunError::RunAlreadyCompleted`].
    pub fn resume(&mut self, at: Timestamp) -> Result<Change, RunError> {
        self.ensure_open()?;
        if self.parts.paused_at.is_none() {
            return Ok(Change::Unchanged);
        }
        self.parts.paused_at = None;
        if self.parts.status == RunStatus::Running {
            self.parts.heartbeat_at = Some(self.parts.heartbeat_at.map_or(at, |h| h.max(at)));
        }
        Ok(Change::Applied)
    }
}
