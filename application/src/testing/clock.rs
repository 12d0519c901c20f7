//! A manual clock and a queue that keeps its jobs.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use opsrun_domain::{ItemKey, RunId, Timestamp};

use super::lock;
use crate::QueueError;
use crate::ports::{Clock, Job, JobQueue};

/// A clock that moves only when told to, by 1 ms on each reading so instants stay ordered.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `millis`.
    #[must_use]
    pub fn at(millis: i64) -> Self {
        Self(AtomicI64::new(millis))
    }

    /// Moves the clock forward.
    pub fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

/// A queue that keeps its jobs in order until a test takes them.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    jobs: Mutex<VecDeque<Job>>,
    enqueue_calls: AtomicI64,
}

impl MemoryQueue {
    /// An empty queue.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next job.
    pub fn pop(&self) -> Option<Job> {
        lock(&self.jobs).pop_front()
    }

    /// Jobs waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.jobs).len()
    }

    /// Whether no job waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many enqueue calls were made (a fan-out is one call).
    #[must_use]
    pub fn enqueue_calls(&self) -> i64 {
        self.enqueue_calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        self.enqueue_calls.fetch_add(1, Ordering::SeqCst);
        lock(&self.jobs).push_back(job);
        Ok(())
    }

    async fn live_run_jobs(
        &self,
        runs: &[RunId],
    ) -> Result<std::collections::BTreeSet<RunId>, QueueError> {
        let jobs = lock(&self.jobs);
        Ok(runs
            .iter()
            .copied()
            .filter(|run| jobs.iter().any(|j| *j == Job::Run { run: *run }))
            .collect())
    }

    async fn enqueue_children(
        &self,
        parent: RunId,
        _first_job: u64,
        items: Vec<ItemKey>,
    ) -> Result<u64, QueueError> {
        self.enqueue_calls.fetch_add(1, Ordering::SeqCst);
        let count = items.len() as u64;
        let mut jobs = lock(&self.jobs);
        jobs.extend(
            items
                .into_iter()
                .map(|item| Job::RestoreChild { parent, item }),
        );
        Ok(count)
    }
}
