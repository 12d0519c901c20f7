//! Coalesced records: concurrent record calls for the same run in one process become one store
//! call (one statement on PostgreSQL, one transaction on SQLite), as a database's group commit
//! does. No timer: the first caller writes at once; callers that arrive while a write is under
//! way wait for it and are written together by the next one. One writer alone therefore pays
//! nothing, and many writers share each round trip.
//!
//! Each caller gets exactly its own answer. The store names the keys a combined record entered,
//! and each caller is told which of its items were among them (a key two callers sent is the
//! first caller's). A combined record the store refuses is not a refusal of every item in it:
//! each caller's records are then written on their own, in the order they came, so one item
//! outside the work set or past the total refuses only its own caller.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::channel::oneshot;
use futures::future::Either;
use opsrun_domain::{ItemKey, ItemRecord, RecordOutcome, RunId, Timestamp};

use crate::StoreError;
use crate::ports::RunStore;

/// The most records one combined call carries: one statement's worth on PostgreSQL.
pub const MAX_COALESCED: usize = 256;

struct Submission {
    // Which caller sent it (to take it back if that caller goes away).
    seq: u64,
    records: Vec<ItemRecord>,
    at: Timestamp,
    reply: oneshot::Sender<Result<RecordOutcome, StoreError>>,
}

/// The callers of one run: who waits to be written, and whose turn it is to write.
#[derive(Default)]
struct Lane {
    pending: Mutex<Vec<Submission>>,
    turn: futures::lock::Mutex<()>,
}

/// Combines concurrent record calls for the same run into one store call (see the module
/// documentation). Shared by every clone of [`crate::OperationRunService`].
pub struct RecordCoalescer {
    store: Arc<dyn RunStore>,
    lanes: Mutex<HashMap<RunId, Arc<Lane>>>,
    calls: AtomicU64,
    submissions: AtomicU64,
    next_seq: AtomicU64,
}

/// A caller's place in its run's lane. Dropped however the caller ends (answered, or its
/// future dropped): its submission leaves the line if nobody took it, and the lane is forgotten
/// once nobody uses it.
struct Place<'a> {
    coalescer: &'a RecordCoalescer,
    id: RunId,
    lane: Option<Arc<Lane>>,
    seq: u64,
}

impl Place<'_> {
    fn lane(&self) -> &Lane {
        // Set until drop.
        self.lane
            .as_deref()
            .unwrap_or_else(|| unreachable!("a place keeps its lane until dropped"))
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(lane) = self.lane.take() {
            let seq = self.seq;
            lock(&lane.pending).retain(|s| s.seq != seq);
            self.coalescer.release(self.id, lane);
        }
    }
}

impl std::fmt::Debug for RecordCoalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCoalescer")
            .field("store_calls", &self.store_calls())
            .field("submissions", &self.submissions())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks is a list and a map, each left whole by every step that
    // holds them; a panic elsewhere does not make them wrong.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn interrupted() -> StoreError {
    StoreError::Unavailable(
        "the combined record carrying this one was interrupted; retry (a record is written at most once)"
            .into(),
    )
}

impl RecordCoalescer {
    /// A coalescer writing to `store`.
    #[must_use]
    pub fn new(store: Arc<dyn RunStore>) -> Self {
        Self {
            store,
            lanes: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
            submissions: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
        }
    }

    /// Store record calls made so far (combined or not).
    #[must_use]
    pub fn store_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Runs with callers in line or writing now (none once every call has returned).
    #[must_use]
    pub fn runs_in_flight(&self) -> usize {
        lock(&self.lanes).len()
    }

    /// Record calls received so far.
    #[must_use]
    pub fn submissions(&self) -> u64 {
        self.submissions.load(Ordering::Relaxed)
    }

    /// Records `records` on run `id` as [`RunStore::record_items`] does, combined with the
    /// records of concurrent callers for the same run. The answer is this caller's own: its
    /// items entered, its duplicates, and whether every unit of the run is now recorded.
    ///
    /// A caller whose future is dropped while it writes for others leaves them an
    /// [`StoreError::Unavailable`] to retry: the write may or may not have happened, and the
    /// ledger makes the retry count nothing twice.
    ///
    /// # Errors
    ///
    /// As [`RunStore::record_items`], for this caller's records alone.
    pub async fn record(
        &self,
        id: RunId,
        records: Vec<ItemRecord>,
        at: Timestamp,
    ) -> Result<RecordOutcome, StoreError> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let place = Place {
            coalescer: self,
            id,
            lane: Some(self.lane(id)),
            seq,
        };
        let lane = place.lane();
        let (reply, mut answer) = oneshot::channel();
        lock(&lane.pending).push(Submission {
            seq,
            records,
            at,
            reply,
        });
        // Counted once it waits in line, so a count seen elsewhere means it is queued.
        self.submissions.fetch_add(1, Ordering::Relaxed);
        let result = loop {
            // This caller's answer (another caller wrote it), or its turn to write. Waiting for
            // the answer without the turn matters: a caller that had to take the turn only to
            // learn it was answered would not send its next record meanwhile, and nothing
            // would be there to combine.
            let turn = {
                let turn = lane.turn.lock();
                futures::pin_mut!(turn);
                match futures::future::select(&mut answer, turn).await {
                    Either::Left((answered, _)) => {
                        break answered.unwrap_or_else(|oneshot::Canceled| Err(interrupted()));
                    }
                    Either::Right((turn, _)) => turn,
                }
            };
            match answer.try_recv() {
                Ok(Some(result)) => break result,
                Err(oneshot::Canceled) => break Err(interrupted()),
                Ok(None) => {}
            }
            // Still waiting: write the oldest waiting submissions, which include this one or
            // come before it.
            let batch = self.take(lane);
            if batch.is_empty() {
                break Err(interrupted());
            }
            self.write(id, batch).await;
            drop(turn);
        };
        drop(place);
        result
    }

    fn lane(&self, id: RunId) -> Arc<Lane> {
        lock(&self.lanes).entry(id).or_default().clone()
    }

    /// Forgets the run's lane once nobody uses it, so finished runs leave nothing behind.
    fn release(&self, id: RunId, lane: Arc<Lane>) {
        let mut lanes = lock(&self.lanes);
        // Every user holds a clone taken under this lock; with this one dropped under it too,
        // the map's alone means nobody.
        drop(lane);
        if lanes
            .get(&id)
            .is_some_and(|lane| Arc::strong_count(lane) == 1 && lock(&lane.pending).is_empty())
        {
            lanes.remove(&id);
        }
    }

    /// The oldest waiting submissions, up to [`MAX_COALESCED`] records (at least one).
    fn take(&self, lane: &Lane) -> Vec<Submission> {
        let mut pending = lock(&lane.pending);
        let mut records = 0;
        let count = pending
            .iter()
            .take_while(|s| {
                let fits = records == 0 || records + s.records.len() <= MAX_COALESCED;
                records += s.records.len();
                fits
            })
            .count()
            .max(1)
            .min(pending.len());
        pending.drain(..count).collect()
    }

    async fn write(&self, id: RunId, mut batch: Vec<Submission>) {
        if batch.len() == 1 {
            let Some(one) = batch.pop() else { return };
            let result = self.alone(id, one.records, one.at).await;
            let _ = one.reply.send(result);
            return;
        }
        let at = batch.iter().map(|s| s.at).max().unwrap_or(batch[0].at);
        let all: Vec<ItemRecord> = batch.iter().flat_map(|s| s.records.clone()).collect();
        self.calls.fetch_add(1, Ordering::Relaxed);
        match self.store.record_items_keyed(id, all, at).await {
            Ok(recorded) => {
                let mut fresh: HashSet<&ItemKey> = recorded.fresh.iter().collect();
                let own: Vec<u64> = batch
                    .iter()
                    .map(|s| s.records.iter().filter(|r| fresh.remove(r.key())).count() as u64)
                    .collect();
                // As if written one after another: the run became whole with the last caller
                // that entered something (or before this call, if nobody did), so only that
                // caller and those after it learn it. One caller, not all of them, then goes
                // on to complete a fan-out's parent.
                let whole_from = if recorded.outcome.all_recorded {
                    own.iter().rposition(|n| *n > 0).unwrap_or(0)
                } else {
                    batch.len()
                };
                for (index, (submission, own)) in batch.into_iter().zip(own).enumerate() {
                    let _ = submission.reply.send(Ok(RecordOutcome {
                        recorded: own,
                        duplicates: submission.records.len() as u64 - own,
                        all_recorded: index >= whole_from,
                    }));
                }
            }
            // The storage failed: every caller's write failed with it, and each may retry.
            Err(StoreError::Unavailable(error)) => {
                let message = error.to_string();
                for submission in batch {
                    let _ = submission
                        .reply
                        .send(Err(StoreError::Unavailable(message.clone().into())));
                }
            }
            // Refused as a whole: each caller's records on their own, in order, so a refusal
            // names only the caller whose item caused it.
            Err(_) => {
                for submission in batch {
                    let result = self.alone(id, submission.records, submission.at).await;
                    let _ = submission.reply.send(result);
                }
            }
        }
    }

    async fn alone(
        &self,
        id: RunId,
        records: Vec<ItemRecord>,
        at: Timestamp,
    ) -> Result<RecordOutcome, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.store.record_items(id, records, at).await
    }
}
