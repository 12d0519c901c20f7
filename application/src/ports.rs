//! The ports: everything outside the application, as async traits. Adapters implement them;
//! use cases hold them as `Arc<dyn Port>`.

mod clock;
mod directory;
mod events;
mod family;
mod queue;
mod store;

pub use clock::Clock;
pub use directory::{Directory, Role, Tenant, TenantScope, User};
pub use events::RunEvents;
pub use family::{
    ArtifactStore, BackupItem, BackupItemAdded, BackupSet, BackupSetStore, Baseline, BaselineItem,
    BaselineStore, EvidenceSnapshot, EvidenceSource, Finding, FindingKind, InventoryChanges,
    InventoryStore, Policy, PolicyPayload, PolicyProvider, RestoreTarget, ReviewPack,
    ReviewPackSource, SnapshotStore, WorkKey,
};
pub use queue::{Job, JobQueue};
pub use store::{
    AuditEvent, Completed, CreateRun, LedgerQuery, NamedRun, Notification, OperationRunStore,
    RunQuery, Started, TenantActivity, TerminalEffects,
};

#[cfg(any(test, feature = "mocks"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mocks"))]
pub use directory::MockDirectory;
#[cfg(any(test, feature = "mocks"))]
pub use events::MockRunEvents;
#[cfg(any(test, feature = "mocks"))]
pub use family::{
    MockArtifactStore, MockBackupSetStore, MockBaselineStore, MockEvidenceSource,
    MockInventoryStore, MockPolicyProvider, MockRestoreTarget, MockReviewPackSource,
    MockSnapshotStore,
};
#[cfg(any(test, feature = "mocks"))]
pub use queue::MockJobQueue;
#[cfg(any(test, feature = "mocks"))]
pub use store::MockOperationRunStore;
