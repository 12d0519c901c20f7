//! One read of a run's document shared by every API event stream that follows that run. A
//! thousand clients watching one busy fan-out would otherwise each read the run after every
//! change: a thousand reads where one says the same. A stream asks for the document as read
//! after the change it was told of; a read that started after that moment, whether still under
//! way or just finished, answers every stream that asks, and only when there is none does a
//! stream start one. The document is serialized once, too.
//!
//! A run's document is the same for every caller who may see the run (its tenant and
//! workspace never change), and each stream's first read is its own, through its caller's
//! visibility; a stream whose token is revoked is ended by its own periodic check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use opsrun_application::access::Caller;
use opsrun_application::read_models::ReadModels;
use opsrun_domain::RunId;
use tokio::time::Instant;

use super::ApiError;

/// A run's document, serialized, and whether the run is completed.
#[derive(Debug)]
pub(crate) struct SharedDoc {
    pub(crate) json: String,
    pub(crate) done: bool,
}

type Read = Shared<BoxFuture<'static, Result<Arc<SharedDoc>, ApiError>>>;

/// Reads older than this are forgotten (a stream never asks for one that old).
const KEEP: Duration = Duration::from_secs(5);

/// The latest read of each followed run (see the module documentation).
#[derive(Default)]
pub(crate) struct SharedRunReads {
    reads: Mutex<HashMap<RunId, (Instant, Read)>>,
}

impl std::fmt::Debug for SharedRunReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRunReads").finish_non_exhaustive()
    }
}

impl SharedRunReads {
    /// Run `id`'s document as read at or after `since`, through `caller`'s view when this
    /// call starts the read.
    pub(crate) async fn read(
        &self,
        models: &ReadModels,
        caller: &Caller,
        id: RunId,
        since: Instant,
    ) -> Result<Arc<SharedDoc>, ApiError> {
        let (started, read) = {
            let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
            match reads.get(&id) {
                Some((started, read)) if *started >= since => (*started, read.clone()),
                _ => {
                    let now = Instant::now();
                    reads.retain(|_, (started, _)| now.duration_since(*started) < KEEP);
                    let (models, caller) = (models.clone(), caller.clone());
                    let read = async move {
                        let summary = models.run(&caller, id).await?;
                        let doc = super::api::dto::RunDoc::new(&summary, false);
                        Ok(Arc::new(SharedDoc {
                            json: serde_json::to_string(&doc)
                                .map_err(|e| ApiError::Internal(e.to_string()))?,
                            done: summary.run.is_completed(),
                        }))
                    }
                    .boxed()
                    .shared();
                    reads.insert(id, (now, read.clone()));
                    (now, read)
                }
            }
        };
        let answer = read.await;
        if answer.is_err() {
            // A failure is not shared with streams that ask later: they read again.
            let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
            if reads.get(&id).is_some_and(|(at, _)| *at == started) {
                reads.remove(&id);
            }
        }
        answer
    }
}
