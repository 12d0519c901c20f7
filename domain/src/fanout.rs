//! How a fan-out's work set is split into child jobs (chunks): enough chunks to keep every
//! worker busy, each of at most [`MAX_CHUNK`] items, so a 10,000-item fan-out is about 100 durable
//! jobs instead of 10,000 while a small one still spreads over the workers. Items are still
//! counted one by one (I7): a chunk is a unit of scheduling, never of counting.

/// Most items one child job carries.
pub const MAX_CHUNK: usize = 256;

/// Fewest chunks a fan-out is split into when it has that many items: with fewer, a large
/// fan-out's chunks would be so long that one slow chunk holds the whole run's end.
pub const MIN_CHUNKS: usize = 100;

/// Items per chunk for `items` items on `workers` concurrent worker slots: the items spread over
/// at least `max(MIN_CHUNKS, 4 × workers)` chunks (so every worker gets several), at most
/// [`MAX_CHUNK`] per chunk, at least 1.
///
/// ```
/// use opsrun_domain::chunk_size;
/// assert_eq!(chunk_size(10_000, 8), 100); // ~100 jobs, not 10,000
/// assert_eq!(chunk_size(30, 8), 1);       // a small fan-out: one item per job, on every worker
/// assert_eq!(chunk_size(100_000, 8), 256);
/// ```
#[must_use]
pub fn chunk_size(items: usize, workers: usize) -> usize {
    let chunks = MIN_CHUNKS.max(workers.saturating_mul(4));
    items.div_ceil(chunks).clamp(1, MAX_CHUNK)
}

/// A fan-out's child jobs, apart from its item counts (a run document's `children`): how many
/// were enqueued and how many have finished. `completed <= total` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChildJobs {
    /// Child jobs enqueued (each carries a chunk of the parent's items).
    pub total: u64,
    /// Child jobs that finished: every item they carried was tried and recorded, or the run
    /// was cancelled or paused before the rest. A job that runs again after a crash is
    /// finished once.
    pub completed: u64,
}

/// The child jobs of one fan-out parent, each by its sequence number (a dispatch reserves its
/// numbers before it enqueues the jobs, so no two jobs share one): which were enqueued and
/// which finished, each counted once however often it is announced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChildJobLedger {
    // Sequence number → finished.
    jobs: std::collections::BTreeMap<u64, bool>,
    // The first number no dispatch has reserved yet.
    next: u64,
}

impl ChildJobLedger {
    /// An empty ledger.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves `count` job numbers for a dispatch about to enqueue its jobs, and returns the
    /// first: numbers no job of this parent has had, not even one a dispatch stored and then
    /// died before announcing (its retry reserves new numbers, so the two sets of jobs never
    /// share one). Numbers a dispatch reserved but did not use are never used.
    pub fn reserve(&mut self, count: u64) -> u64 {
        let known = self
            .jobs
            .keys()
            .next_back()
            .map_or(0, |last| last.saturating_add(1));
        let first = self.next.max(known);
        self.next = first.saturating_add(count);
        first
    }

    /// Jobs `first..first + count` were enqueued. A number already known (announced twice, or
    /// finished before it was announced) is not counted again. Whether anything was new.
    pub fn enqueued(&mut self, first: u64, count: u64) -> bool {
        let mut new = false;
        for job in first..first.saturating_add(count) {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.jobs.entry(job) {
                slot.insert(false);
                new = true;
            }
        }
        new
    }

    /// Job `job` finished. A job not announced (its dispatcher died after storing it and
    /// before announcing it) counts as enqueued too, so `completed` never passes `total`.
    /// Whether this is the first time.
    pub fn finished(&mut self, job: u64) -> bool {
        let done = self.jobs.entry(job).or_insert(false);
        !std::mem::replace(done, true)
    }

    /// The counts.
    #[must_use]
    pub fn counts(&self) -> ChildJobs {
        ChildJobs {
            total: self.jobs.len() as u64,
            completed: self.jobs.values().filter(|done| **done).count() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_every_worker_busy_and_stay_bounded() {
        for workers in [1, 2, 8, 32, 64] {
            for items in [
                0, 1, 7, 30, 99, 100, 101, 1_000, 10_000, 100_000, 10_000_000,
            ] {
                let size = chunk_size(items, workers);
                assert!(
                    (1..=MAX_CHUNK).contains(&size),
                    "{items} on {workers}: {size}"
                );
                let chunks = items.div_ceil(size);
                // Every worker gets at least one chunk while there are items enough.
                assert!(
                    chunks >= items.min(workers),
                    "{items} items on {workers} workers: only {chunks} chunks"
                );
                // Never more chunks than items.
                assert!(chunks <= items.max(1));
            }
        }
        assert_eq!(10_000_usize.div_ceil(chunk_size(10_000, 8)), 100);
        assert_eq!(30_usize.div_ceil(chunk_size(30, 8)), 30);
        assert_eq!(1_000_usize.div_ceil(chunk_size(1_000, 64)), 250);
    }

    #[test]
    fn child_jobs_count_each_job_once_and_never_finish_more_than_were_enqueued() {
        let mut jobs = ChildJobLedger::new();
        assert!(jobs.enqueued(0, 3));
        assert!(!jobs.enqueued(0, 3), "announced twice");
        assert!(jobs.finished(1));
        assert!(!jobs.finished(1), "a job run again after a crash");
        assert_eq!(
            jobs.counts(),
            ChildJobs {
                total: 3,
                completed: 1
            }
        );
        // A job that finished before it was announced.
        assert!(jobs.finished(7));
        // A dispatch reserves numbers after every number known; the next after those.
        assert_eq!(jobs.reserve(10), 8);
        assert_eq!(jobs.reserve(2), 18);
        assert_eq!(
            jobs.counts(),
            ChildJobs {
                total: 4,
                completed: 2
            }
        );
        assert!(jobs.enqueued(3, 5));
        assert_eq!(
            jobs.counts(),
            ChildJobs {
                total: 8,
                completed: 2
            }
        );
    }
}
