//! The ports: everything outside the application, as async traits. Adapters implement them;
//! use cases hold them as `Arc<dyn Port>`.

mod clock;
mod directory;
mod events;
mod family;
mod health;
mod queue;
mod retention;
mod runs;
mod webhooks;

pub use clock::Clock;
pub use directory::{
    Directory, DirectoryAdmin, Entropy, NewSession, NewToken, Role, SessionOwner,
    SimulationSettings, Tenant, TenantScope, TenantSetup, TokenId, TokenOwner, TokenRecord, Tokens,
    User,
};
pub use events::RunEvents;
pub use family::{
    ArtifactStore, BackupItem, BackupItemAdded, BackupSet, BackupSetStore, Baseline, BaselineItem,
    BaselineStore, EvidenceSnapshot, EvidenceSource, Finding, FindingKind, InventoryChanges,
    InventoryStore, Policy, PolicyPayload, PolicyProvider, RestoreTarget, ReviewPack,
    ReviewPackSource, SnapshotStore, WorkKey,
};
pub use health::{HealthCheck, HealthProbe, QueueGauge, WorkGauges};
pub use queue::{Job, JobQueue};
pub use retention::{Pruned, Retention};
pub use runs::{
    AuditEvent, Completed, CreateRun, LedgerQuery, NamedRun, Notification, RunCensus, RunQueries,
    RunQuery, RunStore, Started, TenantActivity, TerminalEffects, completion_action,
};

pub use webhooks::{
    AttemptRecord, Delivery, DeliveryId, DueDelivery, Endpoint, NewEndpoint, WebhookId,
    WebhookStore,
};

#[cfg(any(test, feature = "mocks"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mocks"))]
pub use directory::{MockDirectory, MockDirectoryAdmin, MockEntropy, MockTenantSetup, MockTokens};
#[cfg(any(test, feature = "mocks"))]
pub use events::MockRunEvents;
#[cfg(any(test, feature = "mocks"))]
pub use family::{
    MockArtifactStore, MockBackupSetStore, MockBaselineStore, MockEvidenceSource,
    MockInventoryStore, MockPolicyProvider, MockRestoreTarget, MockReviewPackSource,
    MockSnapshotStore,
};
#[cfg(any(test, feature = "mocks"))]
pub use health::MockHealthProbe;
#[cfg(any(test, feature = "mocks"))]
pub use queue::MockJobQueue;
#[cfg(any(test, feature = "mocks"))]
pub use retention::MockRetention;
#[cfg(any(test, feature = "mocks"))]
pub use runs::{MockRunQueries, MockRunStore};
#[cfg(any(test, feature = "mocks"))]
pub use webhooks::MockWebhookStore;
