//! The composition root: the use cases and read models every edge calls, wired on one
//! database's adapters. Edges (CLI, HTTP, pages, demo) hold a [`Stack`] and never an adapter.

use std::sync::Arc;

use opsrun_adapters::backend::{Backend, WorkerLoop};
use opsrun_adapters::clock::{OsEntropy, SystemClock};
use opsrun_adapters::events::BroadcastEvents;
use opsrun_application::OperationRunService;
use opsrun_application::admin::{AddTenant, IssueToken, IssueTokenPorts, ManageTokens};
use opsrun_application::auth::Authenticate;
use opsrun_application::catalog::TenantCatalog;
use opsrun_application::control::{ControlOperation, RetryOperation};
use opsrun_application::families::{Families, Family, RegistryError};
use opsrun_application::health::Readiness;
use opsrun_application::ports::{Directory, DirectoryAdmin, Retention, RunQueries};
use opsrun_application::read_models::ReadModels;
use opsrun_application::start::{CancelOperation, StartOperation};
use opsrun_application::webhooks::{ManageWebhooks, WebhookDispatch, WebhookPolicy};
use opsrun_application::writers::{WriterPorts, WriterSettings, Writers};

pub use opsrun_adapters::backend::{BackendOptions as StackOptions, redact};

/// Everything the edges use, wired on one backend.
#[derive(Clone)]
pub struct Stack {
    /// The run service (maintenance: stale runs, reconcile).
    pub service: OperationRunService,
    /// Every writer (what the workers run).
    pub writers: Writers,
    /// The run families this process knows (labels, parameters, modes).
    pub families: Families,
    /// The loop that runs the backend's jobs.
    pub workers: WorkerLoop,
    /// Live change notifications (what event streams wait on).
    pub events: BroadcastEvents,
    /// Read models of runs.
    pub models: ReadModels,
    /// Reads of runs (the demo's display).
    pub queries: Arc<dyn RunQueries>,
    /// Tenant and user lookups.
    pub directory: Arc<dyn Directory>,
    /// Workspaces and users.
    pub admin: Arc<dyn DirectoryAdmin>,
    /// Starting operations.
    pub start: StartOperation,
    /// Cancelling operations.
    pub cancel: CancelOperation,
    /// Pausing and resuming operations.
    pub control: ControlOperation,
    /// Retrying the failed items of operations.
    pub retry: RetryOperation,
    /// Backup sets, baselines and policies of a tenant.
    pub catalog: TenantCatalog,
    /// API tokens to callers.
    pub authenticate: Authenticate,
    /// Issuing API tokens.
    pub issue_token: IssueToken,
    /// Lists and revokes API tokens.
    pub tokens: ManageTokens,
    /// Adding tenants.
    pub add_tenant: AddTenant,
    /// Whether this process is ready (store accepts a write, workers alive).
    pub readiness: Readiness,
    /// What the maintenance pass prunes.
    pub retention: Arc<dyn Retention>,
    /// Webhook endpoints, their delivery logs, redelivery.
    pub webhooks: ManageWebhooks,
    /// Claims and settles webhook deliveries (what the dispatcher runs).
    pub dispatch: WebhookDispatch,
    /// The longest one webhook attempt takes.
    pub webhook_timeout: std::time::Duration,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack").finish_non_exhaustive()
    }
}

impl Stack {
    /// Opens the database the URL names (SQLite or PostgreSQL: connect, migrate) and wires
    /// everything on it.
    ///
    /// # Errors
    ///
    /// When the database cannot be opened or migrated.
    pub async fn open(options: &StackOptions) -> anyhow::Result<Self> {
        Ok(Self::wire(&Backend::open(options).await?, stale_after_ms()))
    }

    /// Wires the use cases on a backend's ports; runs without a sign of life for
    /// `stale_after_ms` are shown as stale.
    #[must_use]
    pub fn wire(backend: &Backend, stale_after_ms: i64) -> Self {
        let service = Self::service(backend);
        let families = Self::builtins(backend, &service);
        Self::build(backend, stale_after_ms, service, families)
    }

    /// As [`Stack::wire`], with a host's own families registered beside the built-ins:
    /// `extra` builds them from the run service (the one door for their counts).
    ///
    /// # Errors
    ///
    /// [`RegistryError`] when an extra family's key is taken or malformed.
    pub fn wire_with(
        backend: &Backend,
        stale_after_ms: i64,
        extra: impl FnOnce(&OperationRunService) -> Vec<Arc<dyn Family>>,
    ) -> Result<Self, RegistryError> {
        let service = Self::service(backend);
        let mut families = Self::builtins(backend, &service);
        for family in extra(&service) {
            families.register(family)?;
        }
        Ok(Self::build(backend, stale_after_ms, service, families))
    }

    fn service(backend: &Backend) -> OperationRunService {
        OperationRunService::new(
            backend.store.clone(),
            backend.queue.clone(),
            Arc::new(SystemClock),
        )
        .with_events(Arc::new(backend.events.clone()))
    }

    fn builtins(backend: &Backend, service: &OperationRunService) -> Families {
        Families::builtin(
            service,
            WriterSettings::default(),
            WriterPorts {
                provider: backend.provider.clone(),
                inventory: backend.inventory.clone(),
                review_source: backend.review_source.clone(),
                artifacts: backend.artifacts.clone(),
                evidence_source: backend.evidence_source.clone(),
                snapshots: backend.snapshots.clone(),
                backup_sets: backend.backup_sets.clone(),
                restore_target: backend.restore_target.clone(),
                baselines: backend.baselines.clone(),
                queue: backend.queue.clone(),
            },
        )
    }

    fn build(
        backend: &Backend,
        stale_after_ms: i64,
        service: OperationRunService,
        families: Families,
    ) -> Self {
        let clock = Arc::new(SystemClock);
        let writers = Writers::with_families(service.clone(), families.clone());
        let start =
            StartOperation::new(service.clone(), backend.directory.clone(), families.clone());
        let webhooks = ManageWebhooks::new(
            backend.webhooks.clone(),
            Arc::new(OsEntropy),
            clock.clone(),
            WebhookPolicy::default(),
        );
        Self {
            models: ReadModels::new(
                backend.queries.clone(),
                backend.directory.clone(),
                clock.clone(),
                stale_after_ms,
            ),
            queries: backend.queries.clone(),
            directory: backend.directory.clone(),
            admin: backend.admin.clone(),
            cancel: CancelOperation::new(service.clone()),
            control: ControlOperation::new(service.clone()),
            retry: RetryOperation::new(service.clone(), families.clone()),
            catalog: TenantCatalog::new(
                backend.directory.clone(),
                backend.backup_sets.clone(),
                backend.baselines.clone(),
                backend.provider.clone(),
            ),
            authenticate: Authenticate::new(
                backend.tokens.clone(),
                clock.clone(),
                Arc::new(OsEntropy),
            ),
            tokens: ManageTokens::new(backend.tokens.clone(), clock.clone()),
            issue_token: IssueToken::new(IssueTokenPorts {
                directory: backend.directory.clone(),
                admin: backend.admin.clone(),
                tokens: backend.tokens.clone(),
                entropy: Arc::new(OsEntropy),
                clock: clock.clone(),
            }),
            add_tenant: AddTenant::new(
                backend.directory.clone(),
                backend.admin.clone(),
                backend.setup.clone(),
                clock.clone(),
            ),
            readiness: Readiness::new(backend.health.clone()),
            retention: backend.retention.clone(),
            dispatch: WebhookDispatch::new(webhooks.clone()),
            webhooks,
            webhook_timeout: std::time::Duration::from_secs(10),
            start,
            service,
            writers,
            families,
            workers: backend.workers.clone(),
            events: backend.events.clone(),
        }
    }
}

impl Stack {
    /// The same stack with the installation's webhook `policy` (what endpoints may be
    /// registered, what deliveries may reach, the retry schedule) and attempt `timeout`.
    #[must_use]
    pub fn with_webhook_policy(
        mut self,
        policy: WebhookPolicy,
        timeout: std::time::Duration,
    ) -> Self {
        self.webhook_timeout = timeout;
        self.webhooks = self.webhooks.with_policy(policy);
        self.dispatch = WebhookDispatch::new(self.webhooks.clone());
        self
    }
}

/// The stale threshold surfaces show (the one configured value; see `config`).
fn stale_after_ms() -> i64 {
    crate::config::STALE_AFTER_MS
}
