//! The pure rules of opsrun: the closed set of summary counts, the count invariants I1–I7, the run
//! state machine and the progress contract that turns a run into a truthful progress view.
//!
//! This crate is the reference model every storage adapter is checked against. It uses `std`
//! only: no I/O, no clock (time is always passed in as a [`Timestamp`]), no async, no serde.

mod error;
mod fairness;
mod fanout;
mod ids;
mod ledger;
mod normalizer;
mod operation_type;
mod pace;
mod progress;
mod run;
mod stages;
mod status;
mod summary;
mod webhook;

pub use error::{InvalidValue, RunError};
pub use fairness::{Admission, TenantLoad};
pub use fanout::{ChildJobLedger, ChildJobs, MAX_CHUNK, MIN_CHUNKS, chunk_size};
pub use ids::{ItemKey, ReasonCode, RunId, Slug, TenantId, Timestamp, UserId, WorkspaceId};
pub use ledger::{
    AuxDeltas, Claim, ItemLedger, ItemRecord, LedgerEntry, RecordOutcome, Recorded, WorkSet,
};
pub use normalizer::{
    DropReason, DroppedCount, NormalizedCounts, RawCount, SummaryCountsNormalizer,
};
pub use operation_type::{OperationType, ProgressMode};
pub use pace::{
    PACE_MAX_RECORDS, PACE_MIN_FULL_SPAN_MS, PACE_MIN_RECORDS, PACE_MIN_SPAN_MS, PACE_WINDOW_MS,
    Pace, RecordWindow,
};
pub use progress::{
    ComponentStatus, ComponentView, OperationRunProgressContract, PhaseView, ProgressDetail,
    ProgressView, Staleness,
};
pub use run::{
    Change, Completion, Drift, Failure, MAX_FAILURES, NewRun, OperationRun, RunParts, identity,
};
pub use stages::{Component, ComponentState, Components, Phase, Phases};
pub use status::{ItemOutcome, RunOutcome, RunStatus};
pub use summary::{AuxiliaryKey, MAX_COUNT, OperationSummaryKeys, SummaryCounts, SummaryKey};
pub use webhook::{DeliveryState, RetrySchedule, WebhookEvent, is_public_address};
