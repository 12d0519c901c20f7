//! Adapters of opsrun: the implementations of the application's ports (storage on SQLite and
//! PostgreSQL, the durable job queue, the simulated tenant provider). Nothing here decides a
//! count rule; every rule comes from `opsrun-domain` and is only enforced atomically here.

pub mod backend;
pub mod chunk;
pub mod clock;
pub mod events;
pub mod health;
pub mod in_process;
pub mod queue;
pub mod retention;
pub mod runtime;
pub mod simulated;
pub mod sql;
pub mod trace;
pub mod webhooks;

/// The in-memory reference store lives with the application (it is the domain model behind the
/// port); it is re-exported here so that hosts find every storage adapter in one crate.
pub use opsrun_application::memory::MemoryRunStore;
