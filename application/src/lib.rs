//! Use cases of opsrun: the ports (async traits) the outside world implements,
//! [`OperationRunService`] (the only mutation path for counts and status), one writer per run
//! family, the read models and the access policy.
//!
//! Nothing here may use a storage, queue or HTTP crate: everything outside is a port. The
//! [`memory`] module holds the reference implementation of the storage ports, built directly
//! on the domain model, for embedding, fast tests and as the model of the storage contract
//! suite.

pub mod access;
pub mod admin;
pub mod auth;
pub mod catalog;
pub mod coalesce;
pub mod control;
mod error;
pub mod families;
pub mod health;
pub mod memory;
mod params;
pub mod ports;
pub mod read_models;
pub mod reasons;
mod service;
pub mod start;
pub mod telemetry;
#[cfg(any(test, feature = "mocks"))]
pub mod testing;
pub mod webhooks;
pub mod worker;
pub mod writers;

pub use coalesce::{ClaimCoalescer, RecordCoalescer};
pub use error::{BoxError, FamilyStoreError, ProviderError, QueueError, StoreError};
pub use params::{MAX_POLICY_IDS, RunParams};
pub use ports::{Role, TenantScope, TerminalEffects};
pub use service::{
    DEFAULT_TENANT_LIMIT, OperationRunService, ReconcileReport, ServiceError, StartRun,
};
