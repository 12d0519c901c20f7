//! An in-process job queue for the in-memory backend: jobs wait in a channel and run on this
//! process's workers with the same attempt policy as the durable queue
//! ([`opsrun_application::worker::attempt`]). Nothing survives the process, which is what the
//! memory backend promises anyway.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use opsrun_application::QueueError;
use opsrun_application::ports::{Job, JobQueue};
use opsrun_application::worker::{Attempt, attempt};
use opsrun_application::writers::Writers;
use opsrun_domain::{ItemKey, RunId};
use tokio::sync::{Semaphore, mpsc};

/// A queued job, the attempt it is on (1-based), and a child job's sequence number among its
/// parent's child jobs.
type Queued = (Job, u32, Option<u64>);

/// The in-process queue.
#[derive(Clone)]
pub struct InProcessQueue {
    sender: mpsc::UnboundedSender<Queued>,
    receiver: Arc<Mutex<Option<mpsc::UnboundedReceiver<Queued>>>>,
    concurrency: usize,
    max_attempts: u32,
    retry_delay: Duration,
    running: Arc<std::sync::atomic::AtomicBool>,
    // Runs whose job waits or runs now.
    live: Arc<Mutex<std::collections::BTreeSet<RunId>>>,
}

impl std::fmt::Debug for InProcessQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessQueue")
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl InProcessQueue {
    /// A queue whose workers run `concurrency` jobs at once, each with `max_attempts`.
    #[must_use]
    pub fn new(concurrency: usize, max_attempts: u32, retry_delay: Duration) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            sender,
            receiver: Arc::new(Mutex::new(Some(receiver))),
            concurrency: concurrency.max(1),
            max_attempts: max_attempts.max(1),
            retry_delay,
            running: Arc::default(),
            live: Arc::default(),
        }
    }

    /// Whether a worker loop runs on this queue now.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<RunId>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, job: Job, attempt: u32) -> Result<(), QueueError> {
        self.send_numbered(job, attempt, None)
    }

    fn send_numbered(&self, job: Job, attempt: u32, child: Option<u64>) -> Result<(), QueueError> {
        if let Job::Run { run } = &job {
            self.live().insert(*run);
        }
        self.sender
            .send((job, attempt, child))
            .map_err(|_| QueueError::Unavailable("the in-process queue is closed".into()))
    }

    /// Runs jobs until `shutdown` resolves; jobs in flight finish first. Only one worker loop
    /// can run per queue (it owns the channel's receiving end).
    ///
    /// # Errors
    ///
    /// [`QueueError::Unavailable`] when a worker loop already runs on this queue.
    pub async fn run_workers<S>(&self, writers: Writers, shutdown: S) -> Result<(), QueueError>
    where
        S: Future<Output = ()> + Send,
    {
        let mut receiver = self
            .receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| QueueError::Unavailable("the workers already run".into()))?;
        self.running
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut running = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let queued = tokio::select! {
                () = &mut shutdown => break,
                queued = receiver.recv() => queued,
            };
            let Some((job, number, child)) = queued else {
                break;
            };
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let (writers, queue) = (writers.clone(), self.clone());
            running.spawn(async move {
                let _slot = slot;
                queue.run_one(&writers, job, number, child).await;
            });
        }
        while running.join_next().await.is_some() {}
        self.running
            .store(false, std::sync::atomic::Ordering::SeqCst);
        // Hand the receiver back so a later loop can take the jobs still waiting.
        *self.receiver.lock().unwrap_or_else(PoisonError::into_inner) = Some(receiver);
        Ok(())
    }

    async fn run_one(&self, writers: &Writers, job: Job, number: u32, child: Option<u64>) {
        match attempt(writers, &job, number, self.max_attempts).await {
            Ok(Attempt::Done(_) | Attempt::GaveUp(_)) => match (&job, child) {
                (Job::Run { run }, _) => {
                    self.live().remove(run);
                }
                (Job::RestoreChild { parent, .. }, Some(n)) => {
                    // The memory store this queue serves does not fail; a failure is logged.
                    if let Err(error) = writers.child_job_finished(*parent, n).await {
                        tracing::warn!(%error, parent = parent.value(), "a child job's end was not counted");
                    }
                }
                (Job::RestoreChild { .. }, None) => {}
            },
            Ok(Attempt::Wait(delay)) => {
                // Out of the queue for `delay`, without holding a worker: the run stays live.
                let queue = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = queue.send_numbered(job, number, child);
                });
            }
            Ok(Attempt::Retry(_)) | Err(_) => {
                // Transient: try again later (the attempt policy decides when to give up;
                // a failure even to give up is retried the same way).
                tokio::time::sleep(self.retry_delay).await;
                let next = number.saturating_add(1).min(self.max_attempts);
                let _ = self.send_numbered(job, next, child);
            }
        }
    }
}

#[async_trait]
impl JobQueue for InProcessQueue {
    async fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        self.send(job, 1)
    }

    async fn live_run_jobs(
        &self,
        runs: &[RunId],
    ) -> Result<std::collections::BTreeSet<RunId>, QueueError> {
        let live = self.live();
        Ok(runs.iter().copied().filter(|r| live.contains(r)).collect())
    }

    async fn enqueue_children(
        &self,
        parent: RunId,
        first_job: u64,
        items: Vec<ItemKey>,
    ) -> Result<u64, QueueError> {
        // One job per item: nothing is stored, so chunks would save nothing.
        let count = items.len() as u64;
        for (i, item) in items.into_iter().enumerate() {
            self.send_numbered(
                Job::RestoreChild { parent, item },
                1,
                Some(first_job + i as u64),
            )?;
        }
        Ok(count)
    }
}
