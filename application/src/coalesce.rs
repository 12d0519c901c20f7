//! Coalesced records and claims: concurrent record (or claim) calls for the same run in one
//! process become one store call (one statement on PostgreSQL, one transaction on SQLite), as
//! a database's group commit does. No timer: the first caller writes at once; callers that
//! arrive while a write is under way wait for it and are written together by the next one. One
//! writer alone therefore pays nothing, and many writers share each round trip.
//!
//! Each caller gets exactly its own answer. The store names the keys a combined record entered,
//! and each caller is told which of its items were among them (a key two callers sent is the
//! first caller's). A combined record the store refuses is not a refusal of every item in it:
//! each caller's records are then written on their own, in the order they came, so one item
//! outside the work set or past the total refuses only its own caller. A combined claim answers
//! each key on its own ([`RunStore::claim_items`]), so it needs no such second pass.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use futures::channel::oneshot;
use futures::future::Either;
use opsrun_domain::{Claim, ItemKey, ItemRecord, RecordOutcome, RunError, RunId, Timestamp};

use crate::StoreError;
use crate::ports::RunStore;

/// The most records (or keys) one combined call carries: one statement's worth on PostgreSQL.
pub const MAX_COALESCED: usize = 256;

/// One caller in line: what it sent and where its answer goes.
pub struct Submission<C: Combine> {
    // Which caller sent it (to take it back if that caller goes away).
    seq: u64,
    input: Vec<C::Item>,
    at: Timestamp,
    reply: oneshot::Sender<Result<C::Answer, StoreError>>,
}

impl<C: Combine> Submission<C> {
    /// What the caller sent.
    #[must_use]
    pub fn items(&self) -> &[C::Item] {
        &self.input
    }

    /// When the caller sent it.
    #[must_use]
    pub fn at(&self) -> Timestamp {
        self.at
    }

    /// Answers the caller (a caller that went away is not told).
    pub fn answer(self, answer: Result<C::Answer, StoreError>) {
        let _ = self.reply.send(answer);
    }
}

/// Answers every caller of `batch` with the same failure: a combined call that failed for all
/// of them (each gets its own copy; a storage error is not `Clone`).
pub fn fail_all<C: Combine>(batch: Vec<Submission<C>>, error: &StoreError) {
    for submission in batch {
        submission.answer(Err(shared(error)));
    }
}

/// What a combined call carries: the time of its latest caller and every caller's items, in the
/// order the callers came (`None` for an empty batch).
#[must_use]
pub fn combined<C: Combine>(batch: &[Submission<C>]) -> Option<(Timestamp, Vec<C::Item>)> {
    let at = batch.iter().map(|s| s.at).max()?;
    Some((at, batch.iter().flat_map(|s| s.input.clone()).collect()))
}

/// What a [`Coalescer`] combines: the items one caller sends, the answer it gets back, and how
/// the submissions of several callers are written in one call to the target (a store).
#[async_trait]
pub trait Combine: Send + Sync + 'static {
    /// Where combined calls go.
    type Target: ?Sized + Send + Sync + 'static;
    /// What one caller sends (a record, a key).
    type Item: Clone + Send + Sync + 'static;
    /// What one caller is answered.
    type Answer: Send + 'static;

    /// Writes `batch` (the oldest callers in line, in the order they came, at most
    /// [`MAX_COALESCED`] items unless one caller sent more) for run `id`, answers each caller,
    /// and returns how many calls it made to the target.
    async fn write(target: &Self::Target, id: RunId, batch: Vec<Submission<Self>>) -> u64
    where
        Self: Sized;
}

/// The callers of one run: who waits to be written, and whose turn it is to write.
struct Lane<C: Combine> {
    pending: Mutex<Vec<Submission<C>>>,
    turn: futures::lock::Mutex<()>,
}

impl<C: Combine> Default for Lane<C> {
    fn default() -> Self {
        Self {
            pending: Mutex::new(Vec::new()),
            turn: futures::lock::Mutex::new(()),
        }
    }
}

/// A group commit per run: concurrent calls for the same run become one call to the target
/// (see the module documentation). [`RecordCoalescer`] and [`ClaimCoalescer`] are the
/// service's; a store of a host (or the simulated tenant) can coalesce its own writes with a
/// [`Combine`] of its own.
pub struct Coalescer<C: Combine> {
    target: Arc<C::Target>,
    lanes: Mutex<HashMap<RunId, Arc<Lane<C>>>>,
    calls: AtomicU64,
    submissions: AtomicU64,
    next_seq: AtomicU64,
}

/// A caller's place in its run's lane. Dropped however the caller ends (answered, or its
/// future dropped): its submission leaves the line if nobody took it, and the lane is forgotten
/// once nobody uses it.
struct Place<'a, C: Combine> {
    group: &'a Coalescer<C>,
    id: RunId,
    lane: Option<Arc<Lane<C>>>,
    seq: u64,
}

impl<C: Combine> Place<'_, C> {
    fn lane(&self) -> &Lane<C> {
        // Set until drop.
        self.lane
            .as_deref()
            .unwrap_or_else(|| unreachable!("a place keeps its lane until dropped"))
    }
}

impl<C: Combine> Drop for Place<'_, C> {
    fn drop(&mut self) {
        if let Some(lane) = self.lane.take() {
            let seq = self.seq;
            lock(&lane.pending).retain(|s| s.seq != seq);
            self.group.release(self.id, lane);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks is a list and a map, each left whole by every step that
    // holds them; a panic elsewhere does not make them wrong.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn interrupted() -> StoreError {
    StoreError::Unavailable(
        "the combined call carrying this one was interrupted; retry (a record is written at most once)"
            .into(),
    )
}

/// The same failure for another caller of a combined call (a storage error is not `Clone`).
fn shared(error: &StoreError) -> StoreError {
    match error {
        StoreError::RunNotFound(id) => StoreError::RunNotFound(*id),
        StoreError::NotFound(what) => StoreError::NotFound(what.clone()),
        StoreError::Rule(rule) => StoreError::Rule(rule.clone()),
        StoreError::Corrupt(what) => StoreError::Corrupt(what.clone()),
        StoreError::Unavailable(error) => StoreError::Unavailable(error.to_string().into()),
    }
}

impl<C: Combine> std::fmt::Debug for Coalescer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("store_calls", &self.store_calls())
            .field("submissions", &self.submissions())
            .finish_non_exhaustive()
    }
}

impl<C: Combine> Coalescer<C> {
    /// A coalescer writing to `target`.
    #[must_use]
    pub fn new(target: Arc<C::Target>) -> Self {
        Self {
            target,
            lanes: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
            submissions: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
        }
    }

    /// Calls made to the target so far (combined or not).
    #[must_use]
    pub fn store_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Runs with callers in line or writing now (none once every call has returned).
    #[must_use]
    pub fn runs_in_flight(&self) -> usize {
        lock(&self.lanes).len()
    }

    /// Calls received so far.
    #[must_use]
    pub fn submissions(&self) -> u64 {
        self.submissions.load(Ordering::Relaxed)
    }

    /// Sends `input` for run `id` and waits for this caller's answer, writing for the callers
    /// in line when it is this caller's turn.
    ///
    /// A caller whose future is dropped while it writes for others leaves them an
    /// [`StoreError::Unavailable`] to retry.
    ///
    /// # Errors
    ///
    /// Whatever [`Combine::write`] answers this caller.
    pub async fn submit(
        &self,
        id: RunId,
        input: Vec<C::Item>,
        at: Timestamp,
    ) -> Result<C::Answer, StoreError> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let place = Place {
            group: self,
            id,
            lane: Some(self.lane(id)),
            seq,
        };
        let lane = place.lane();
        let (reply, mut answer) = oneshot::channel();
        lock(&lane.pending).push(Submission {
            seq,
            input,
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
            let calls = C::write(self.target.as_ref(), id, batch).await;
            self.calls.fetch_add(calls, Ordering::Relaxed);
            drop(turn);
        };
        drop(place);
        result
    }

    fn lane(&self, id: RunId) -> Arc<Lane<C>> {
        lock(&self.lanes).entry(id).or_default().clone()
    }

    /// Forgets the run's lane once nobody uses it, so finished runs leave nothing behind.
    fn release(&self, id: RunId, lane: Arc<Lane<C>>) {
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

    /// The oldest waiting submissions, up to [`MAX_COALESCED`] items (at least one).
    fn take(&self, lane: &Lane<C>) -> Vec<Submission<C>> {
        let mut pending = lock(&lane.pending);
        let mut items = 0;
        let count = pending
            .iter()
            .take_while(|s| {
                let fits = items == 0 || items + s.input.len() <= MAX_COALESCED;
                items += s.input.len();
                fits
            })
            .count()
            .max(1)
            .min(pending.len());
        pending.drain(..count).collect()
    }
}

/// Combines concurrent record calls for the same run into one store call (see the module
/// documentation). Shared by every clone of [`crate::OperationRunService`].
pub type RecordCoalescer = Coalescer<Records>;

/// Combines concurrent claims for the same run into one store call (see the module
/// documentation). Shared by every clone of [`crate::OperationRunService`].
pub type ClaimCoalescer = Coalescer<Claims>;

impl Coalescer<Records> {
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
        self.submit(id, records, at).await
    }
}

impl Coalescer<Claims> {
    /// Claims `keys` of run `id` as [`RunStore::claim_items`] does, combined with the claims of
    /// concurrent callers for the same run; the answers are this caller's own, one per key.
    ///
    /// # Errors
    ///
    /// As [`RunStore::claim_items`].
    pub async fn claim(
        &self,
        id: RunId,
        keys: Vec<ItemKey>,
        at: Timestamp,
    ) -> Result<Vec<Result<Claim, RunError>>, StoreError> {
        self.submit(id, keys, at).await
    }
}

/// Records: one `record_items_keyed` call, split among the callers by the keys it entered.
#[derive(Debug)]
pub struct Records;

#[async_trait]
impl Combine for Records {
    type Target = dyn RunStore;
    type Item = ItemRecord;
    type Answer = RecordOutcome;

    async fn write(store: &dyn RunStore, id: RunId, mut batch: Vec<Submission<Self>>) -> u64 {
        if batch.len() == 1 {
            let Some(one) = batch.pop() else { return 0 };
            let result = store.record_items(id, one.input.clone(), one.at).await;
            one.answer(result);
            return 1;
        }
        let Some((at, all)) = combined(&batch) else {
            return 0;
        };
        match store.record_items_keyed(id, all, at).await {
            Ok(recorded) => {
                let mut fresh: HashSet<&ItemKey> = recorded.fresh.iter().collect();
                let own: Vec<u64> = batch
                    .iter()
                    .map(|s| s.input.iter().filter(|r| fresh.remove(r.key())).count() as u64)
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
                    let duplicates = submission.input.len() as u64 - own;
                    submission.answer(Ok(RecordOutcome {
                        recorded: own,
                        duplicates,
                        all_recorded: index >= whole_from,
                    }));
                }
                1
            }
            // The storage failed: every caller's write failed with it, and each may retry.
            Err(error @ StoreError::Unavailable(_)) => {
                fail_all(batch, &error);
                1
            }
            // Refused as a whole: each caller's records on their own, in order, so a refusal
            // names only the caller whose item caused it.
            Err(_) => {
                let calls = 1 + batch.len() as u64;
                for submission in batch {
                    let result = store
                        .record_items(id, submission.input.clone(), submission.at)
                        .await;
                    submission.answer(result);
                }
                calls
            }
        }
    }
}

/// Claims: one `claim_items` call over every caller's keys in the order they came, its answers
/// split among the callers (two callers claiming one key are both told it is claimed, as two
/// claims one after another would be).
#[derive(Debug)]
pub struct Claims;

#[async_trait]
impl Combine for Claims {
    type Target = dyn RunStore;
    type Item = ItemKey;
    type Answer = Vec<Result<Claim, RunError>>;

    async fn write(store: &dyn RunStore, id: RunId, batch: Vec<Submission<Self>>) -> u64 {
        let Some((at, all)) = combined(&batch) else {
            return 0;
        };
        let sent = all.len();
        match store.claim_items(id, all, at).await {
            Ok(answers) if answers.len() == sent => {
                // In the order the keys were sent: each caller's answers follow the last
                // caller's.
                let mut answers = answers.into_iter();
                for submission in batch {
                    let own = answers.by_ref().take(submission.input.len()).collect();
                    submission.answer(Ok(own));
                }
            }
            Ok(answers) => {
                let message = format!(
                    "the store answered {} claims for {sent} keys",
                    answers.len()
                );
                fail_all(batch, &StoreError::Corrupt(message));
            }
            // No such run, or the storage failed: the same for every key of every caller.
            Err(error) => fail_all(batch, &error),
        }
        1
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use super::*;

    /// A target whose first call waits for the test to let it go, and whose calls succeed or
    /// fail as planned, one plan per call: what a combined call meets when the storage fails
    /// under it (a full disk, a dropped connection).
    #[derive(Default)]
    struct Flaky {
        calls: Mutex<Vec<Vec<u32>>>,
        gate: Mutex<Option<oneshot::Receiver<()>>>,
        fails: Mutex<VecDeque<bool>>,
    }

    struct Echo;

    #[async_trait]
    impl Combine for Echo {
        type Target = Flaky;
        type Item = u32;
        type Answer = Vec<u32>;

        async fn write(target: &Flaky, _id: RunId, batch: Vec<Submission<Self>>) -> u64 {
            let Some((_, all)) = combined(&batch) else {
                return 0;
            };
            lock(&target.calls).push(all);
            let gate = lock(&target.gate).take();
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            if lock(&target.fails).pop_front().unwrap_or(false) {
                fail_all(
                    batch,
                    &StoreError::Unavailable("database or disk is full".into()),
                );
            } else {
                for submission in batch {
                    let own = submission.items().to_vec();
                    submission.answer(Ok(own));
                }
            }
            1
        }
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..1_000 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("the coalescer did not get there in 2 s");
    }

    /// A caller's answer, or a failed test when none comes within 5 s (a caller left waiting).
    async fn answer(caller: tokio::task::JoinHandle<Result<Vec<u32>, StoreError>>) -> String {
        match tokio::time::timeout(Duration::from_secs(5), caller).await {
            Err(_) => "no answer in 5 s".to_owned(),
            Ok(joined) => match joined.expect("a caller panicked") {
                Ok(items) => format!("ok {items:?}"),
                Err(StoreError::Unavailable(error)) => format!("unavailable: {error}"),
                Err(other) => format!("other: {other}"),
            },
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_combined_call_fails_each_of_its_callers_and_the_next_call_goes_through() {
        let target = Arc::new(Flaky::default());
        let (open, gate) = oneshot::channel();
        *lock(&target.gate) = Some(gate);
        // The first call succeeds, the combined one after it fails, the one after that succeeds.
        *lock(&target.fails) = VecDeque::from([false, true, false]);
        let group = Arc::new(Coalescer::<Echo>::new(target.clone()));
        let id = RunId::new(1);
        let call = |item: u32| {
            let group = group.clone();
            tokio::spawn(async move {
                group
                    .submit(id, vec![item], Timestamp::from_millis(0))
                    .await
            })
        };
        // The first caller writes at once and is held there; three more queue behind it.
        let first = call(1);
        until(|| lock(&target.calls).len() == 1).await;
        // One by one, so the line's order is theirs.
        let mut queued = Vec::new();
        for item in 2..=4 {
            queued.push(call(item));
            until(|| group.submissions() == u64::from(item)).await;
        }
        let _ = open.send(());
        assert_eq!(answer(first).await, "ok [1]");
        // The three queued callers went in one call, and each got the failure as its own
        // answer (none is left waiting, none is told it was written).
        let mut answers = Vec::new();
        for caller in queued {
            answers.push(answer(caller).await);
        }
        assert_eq!(answers, vec!["unavailable: database or disk is full"; 3]);
        assert_eq!(*lock(&target.calls), vec![vec![1], vec![2, 3, 4]]);
        // The failure is not remembered: the next call is written.
        assert_eq!(answer(call(5)).await, "ok [5]");
        assert_eq!(group.store_calls(), 3);
        assert_eq!(group.runs_in_flight(), 0, "the lane is forgotten");
    }
}
