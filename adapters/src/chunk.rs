//! Running one chunk of a fan-out (a child job that carries several items, see
//! [`opsrun_domain::chunk_size`]): its items run a few at a time, each recorded on the parent as
//! it finishes, so the bar moves item by item, never in chunk-sized jumps. An item that fails
//! transiently is tried again after a backoff, up to the job's attempts, and then recorded
//! `failed` by its family: a failing item never fails its chunk. A parent that is cancelled or
//! paused stops the chunk before its next item. A chunk that runs again (its worker died)
//! finds its recorded items in the ledger and does only what is missing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use opsrun_application::families::Family;
use opsrun_application::worker::{Attempt, attempt_child};
use opsrun_application::writers::{WriterError, WriterOutcome, Writers};
use opsrun_domain::{ItemKey, RunId};
use tracing::Instrument as _;

/// Items of one chunk in flight at once.
pub const CHUNK_CONCURRENCY: usize = 16;

/// Longest wait before an item's next attempt.
const MAX_ITEM_BACKOFF: Duration = Duration::from_secs(30);

/// How a chunk's items are retried.
#[derive(Debug, Clone, Copy)]
pub struct ItemRetries {
    /// Attempts per item.
    pub max_attempts: u32,
    /// Wait before the second attempt; it doubles per attempt up to 30 s.
    pub first_delay: Duration,
}

impl ItemRetries {
    fn delay(self, failed_attempts: u32) -> Duration {
        let factor = 1_u32 << failed_attempts.saturating_sub(1).min(16);
        self.first_delay
            .saturating_mul(factor)
            .min(MAX_ITEM_BACKOFF)
    }
}

/// Runs `items` of fan-out `parent`. Each item gets a span of its own linked to `trace` (the
/// run that fanned it out).
///
/// # Errors
///
/// [`WriterError`] when an item could not even be given up (storage unusable): the chunk job
/// is retried, and its recorded items are skipped then.
pub async fn run_chunk(
    writers: &Writers,
    parent: RunId,
    items: Vec<ItemKey>,
    retries: ItemRetries,
    trace: Option<&str>,
) -> Result<(), WriterError> {
    // One read for the whole chunk: every item has the same parent, so the same family.
    let family = writers.family_for(parent).await?;
    let family = family.as_ref();
    let stop = AtomicBool::new(false);
    let results: Vec<Result<(), WriterError>> = futures::stream::iter(items)
        .map(|item| {
            let stop = &stop;
            let span = tracing::info_span!(
                target: "opsrun::jobs",
                "opsrun.item",
                otel.name = "opsrun.item",
                otel.kind = "consumer",
                opsrun.run_id = parent.value(),
                opsrun.item = %item,
                opsrun.family = family.operation_type().key(),
                opsrun.tenant = tracing::field::Empty,
                opsrun.outcome = tracing::field::Empty,
            );
            crate::trace::link_to(&span, trace);
            async move {
                // A cancelled or paused parent stops the chunk before its next item.
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let outcome = one_item(family, parent, item, retries).await?;
                if matches!(outcome, WriterOutcome::Stopped | WriterOutcome::Paused) {
                    stop.store(true, Ordering::Relaxed);
                }
                Ok(())
            }
            .instrument(span)
        })
        .buffer_unordered(CHUNK_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn one_item(
    family: &dyn Family,
    parent: RunId,
    item: ItemKey,
    retries: ItemRetries,
) -> Result<WriterOutcome, WriterError> {
    let mut number = 1;
    loop {
        match attempt_child(family, parent, &item, number, retries.max_attempts.max(1)).await? {
            Attempt::Done(outcome) | Attempt::GaveUp(outcome) => return Ok(outcome),
            // A child never waits for a tenant slot (its parent holds one).
            Attempt::Wait(_) => return Ok(WriterOutcome::ItemRecorded),
            Attempt::Retry(error) => {
                tracing::debug!(%error, attempt = number, "a fan-out item will be tried again");
                tokio::time::sleep(retries.delay(number)).await;
                number += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_retries_back_off_exponentially_up_to_thirty_seconds() {
        let r = ItemRetries {
            max_attempts: 5,
            first_delay: Duration::from_millis(500),
        };
        let delays: Vec<u128> = (1..=8).map(|n| r.delay(n).as_millis()).collect();
        assert_eq!(
            delays,
            vec![500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
    }
}
