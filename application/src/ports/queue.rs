//! The durable job queue port.

use std::collections::BTreeSet;

use async_trait::async_trait;
use opsrun_domain::{ItemKey, RunId};

use crate::QueueError;

/// A unit of work for a worker. Jobs carry ids only: everything else is read from storage, so
/// a job delivered twice or after a crash works on the current truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Execute (or resume) the writer of a run.
    Run {
        /// The run.
        run: RunId,
    },
    /// Execute one child item of a fan-out parent (`backup_set.restore`).
    RestoreChild {
        /// The parent run.
        parent: RunId,
        /// The item of the parent's frozen work set.
        item: ItemKey,
    },
}

/// A durable queue with at-least-once delivery.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues one job durably.
    ///
    /// # Errors
    ///
    /// [`QueueError::Unavailable`] when the job could not be stored; nothing was enqueued.
    async fn enqueue(&self, job: Job) -> Result<(), QueueError>;

    /// Enqueues one job durably that no worker takes before `delay` has passed (a run that
    /// waits for its tenant's slot asks again later). A queue without schedules may deliver it
    /// at once.
    ///
    /// # Errors
    ///
    /// [`QueueError::Unavailable`] when the job could not be stored; nothing was enqueued.
    async fn enqueue_after(&self, job: Job, delay: std::time::Duration) -> Result<(), QueueError> {
        let _ = delay;
        self.enqueue(job).await
    }

    /// Enqueues the children of a fan-out in one call (not one round trip per child): one
    /// [`Job::RestoreChild`] per item, or a durable queue may carry several items per job
    /// (chunks of [`opsrun_domain::chunk_size`]) as long as each item is still executed, and
    /// recorded, on its own. Either all jobs are stored or none. The answer is how many jobs
    /// were stored (at most one per item), numbered from `first_job` (the caller reserved one
    /// number per item, [`crate::ports::RunStore::reserve_child_jobs`]); when job
    /// `first_job + i` has finished, the queue
    /// says so with [`crate::writers::Writers::child_job_finished`], so the parent shows its
    /// child jobs ([`opsrun_domain::ChildJobs`]).
    ///
    /// # Errors
    ///
    /// [`QueueError::Unavailable`] when the jobs could not be stored; none was enqueued.
    async fn enqueue_children(
        &self,
        parent: RunId,
        first_job: u64,
        items: Vec<ItemKey>,
    ) -> Result<u64, QueueError>;

    /// Which of `runs` have a [`Job::Run`] that still waits, runs or will be retried (not
    /// done, not dead-lettered, not lost), looked up in as few round trips as the queue can.
    ///
    /// # Errors
    ///
    /// [`QueueError::Unavailable`] when the queue cannot be read.
    async fn live_run_jobs(&self, runs: &[RunId]) -> Result<BTreeSet<RunId>, QueueError>;

    /// Whether `run` has a live [`Job::Run`] (see [`JobQueue::live_run_jobs`]).
    ///
    /// # Errors
    ///
    /// [`QueueError::Unavailable`] when the queue cannot be read.
    async fn has_run_job(&self, run: RunId) -> Result<bool, QueueError> {
        Ok(self.live_run_jobs(&[run]).await?.contains(&run))
    }
}
