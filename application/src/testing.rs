//! The test world (feature `mocks`): a manual clock, a queue that keeps its jobs for a test to
//! run, a scripted tenant (provider, sources, restore target), in-memory family stores, and
//! (for this crate's own tests) the writers' harness that wires them with the reference store.
//! They are small and deterministic, for unit tests and for trying the writers out while
//! embedding; production adapters live in `opsrun-adapters`.

mod clock;
mod families;
#[cfg(test)]
pub(crate) mod harness;
mod tenant;

pub use clock::{ManualClock, MemoryQueue};
pub use families::{MemoryFamilies, fake_hash};
pub use tenant::{FAKE_DIMENSIONS, FAKE_POLICY_TYPES, FAKE_SECTIONS, FakeTenant};

/// The reference run store, for tests that want everything from one place.
pub use crate::memory::MemoryRunStore;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use opsrun_domain::{ItemKey, RunId, TenantId, Timestamp};

use crate::ports::{
    ArtifactStore, BackupItem, BackupItemAdded, BackupSet, BackupSetStore, Baseline, BaselineItem,
    BaselineStore, Clock, EvidenceSnapshot, EvidenceSource, Finding, InventoryChanges,
    InventoryStore, Job, JobQueue, Policy, PolicyPayload, PolicyProvider, RestoreTarget,
    ReviewPack, ReviewPackSource, SnapshotStore, WorkKey,
};
use crate::{FamilyStoreError, OperationRunService, ProviderError, QueueError};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
