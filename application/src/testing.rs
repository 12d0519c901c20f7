//! The test world (feature `mocks`): a manual clock, a queue that keeps its jobs for a test to
//! run, a scripted tenant (provider, sources, restore target), in-memory family stores, and
//! (for this crate's own tests) the writers' harness that wires them with the reference store.
//! They are small and deterministic, for unit tests and for trying the writers out while
//! embedding; production adapters live in `opsrun-adapters`.

mod clock;
#[cfg(test)]
pub(crate) mod harness;
mod tenant;

/// The in-memory family stores.
pub use crate::memory::MemoryFamilies;
pub use clock::{ManualClock, MemoryQueue};
pub use tenant::{FAKE_DIMENSIONS, FAKE_POLICY_TYPES, FAKE_SECTIONS, FakeTenant};

/// The reference run store, for tests that want everything from one place.
pub use crate::memory::MemoryRunStore;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
