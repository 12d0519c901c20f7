//! The backends a composition root wires its use cases from: every port of the application
//! implemented on one storage, plus the loop that runs its jobs. [`SqlBackend`] is one SQL
//! database (SQLite or PostgreSQL) with every SQL adapter opened on it; [`Backend::memory`]
//! is the in-memory reference implementation. [`Backend`] is what both give the use cases:
//! ports only, so the edges above them never know which storage they run on.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use opsrun_application::memory::{MemoryFamilies, MemoryRunStore};
use opsrun_application::ports::{
    ArtifactStore, BackupSetStore, BaselineStore, Directory, DirectoryAdmin, EvidenceSource,
    HealthProbe, InventoryStore, JobQueue, PolicyProvider, RestoreTarget, Retention,
    ReviewPackSource, RunQueries, RunStore, SnapshotStore, TenantSetup, Tokens, WebhookStore,
};
use opsrun_application::writers::Writers;

use crate::events::BroadcastEvents;
use crate::health::{MemoryHealth, SqlHealth};
use crate::in_process::InProcessQueue;
use crate::queue::{ApalisQueue, QueueRunError, QueueSettings};
use crate::retention::SqlRetention;
use crate::simulated::{MemorySimulatedTenants, SimulatedProvider, SqlSimulatedTenants};
use crate::sql::{SqlFamilies, SqlRunStore, connect, migrate};

/// The URL of the in-memory backend.
pub const MEMORY_URL: &str = "memory://";

/// How to open a [`SqlBackend`].
#[derive(Clone)]
pub struct BackendOptions {
    /// SQLite or PostgreSQL URL.
    pub database_url: String,
    /// Folder review-pack artifacts are written to.
    pub artifacts: PathBuf,
    /// Queue and worker settings.
    pub queue: QueueSettings,
    /// Pool size.
    pub max_connections: u32,
}

impl std::fmt::Debug for BackendOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("BackendOptions")
            .field("database_url", &redact(&self.database_url))
            .field("artifacts", &self.artifacts)
            .field("queue", &self.queue)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Why a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The database could not be opened.
    #[error("failed to open database {url}: {source}")]
    Open {
        /// The URL, without its password.
        url: String,
        /// The driver's error.
        source: sea_orm::DbErr,
    },
    /// The schema could not be migrated.
    #[error("failed to migrate the schema: {0}")]
    Migrate(sea_orm::DbErr),
    /// The job queue's tables could not be set up, or its workers stopped on an error.
    #[error("job queue: {0}")]
    Queue(#[from] QueueRunError),
    /// The in-process workers could not run.
    #[error("workers: {0}")]
    Workers(String),
}

/// Every SQL adapter on one database.
#[derive(Clone)]
pub struct SqlBackend {
    /// Runs, ledger, directory and tokens.
    pub store: Arc<SqlRunStore>,
    /// Family stores.
    pub families: Arc<SqlFamilies>,
    /// The simulated tenant provider.
    pub provider: Arc<SimulatedProvider>,
    /// The simulated tenants' settings.
    pub simulated: Arc<SqlSimulatedTenants>,
    /// The durable queue.
    pub queue: ApalisQueue,
    /// Live change notifications (fed by the service and, on PostgreSQL, by other processes).
    pub events: BroadcastEvents,
    // The pool, for the readiness probe.
    db: sea_orm::DatabaseConnection,
}

impl std::fmt::Debug for SqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlBackend").finish_non_exhaustive()
    }
}

impl SqlBackend {
    /// Connects, migrates (schema and queue tables) and opens every adapter.
    ///
    /// # Errors
    ///
    /// [`BackendError`] naming the step that failed.
    pub async fn open(options: &BackendOptions) -> Result<Self, BackendError> {
        let db = connect(&options.database_url, options.max_connections)
            .await
            .map_err(|source| BackendError::Open {
                url: redact(&options.database_url),
                source,
            })?;
        migrate(&db).await.map_err(BackendError::Migrate)?;
        let queue = ApalisQueue::setup(&db, options.queue).await?;
        let simulated = Arc::new(SqlSimulatedTenants::new(db.clone()));
        let events = BroadcastEvents::new();
        events.listen(&db);
        Ok(Self {
            store: Arc::new(SqlRunStore::new(db.clone())),
            families: Arc::new(SqlFamilies::new(db.clone(), options.artifacts.clone())),
            provider: Arc::new(SimulatedProvider::new(simulated.clone())),
            simulated,
            queue,
            events,
            db,
        })
    }
}

/// A database URL without its password, for messages.
#[must_use]
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl SqlBackend {
    /// The ports of this backend, for wiring use cases.
    #[must_use]
    pub fn ports(&self) -> Backend {
        Backend {
            store: self.store.clone(),
            queries: self.store.clone(),
            directory: self.store.clone(),
            admin: self.store.clone(),
            tokens: self.store.clone(),
            webhooks: self.store.clone(),
            setup: self.simulated.clone(),
            provider: self.provider.clone(),
            review_source: self.provider.clone(),
            evidence_source: self.provider.clone(),
            restore_target: self.provider.clone(),
            inventory: self.families.clone(),
            artifacts: self.families.clone(),
            snapshots: self.families.clone(),
            backup_sets: self.families.clone(),
            baselines: self.families.clone(),
            queue: Arc::new(self.queue.clone()),
            workers: WorkerLoop::Durable(Box::new(self.queue.clone())),
            events: self.events.clone(),
            health: Arc::new(SqlHealth::new(self.db.clone(), self.queue.clone())),
            retention: Arc::new(SqlRetention::new(self.db.clone())),
        }
    }
}

/// Every port the use cases need, on one storage, and the loop that runs its jobs.
#[derive(Clone)]
pub struct Backend {
    /// Run mutations (only the run service may hold it).
    pub store: Arc<dyn RunStore>,
    /// Run reads.
    pub queries: Arc<dyn RunQueries>,
    /// Tenant and user lookups.
    pub directory: Arc<dyn Directory>,
    /// Workspaces, tenants and users created.
    pub admin: Arc<dyn DirectoryAdmin>,
    /// API tokens.
    pub tokens: Arc<dyn Tokens>,
    /// Webhook endpoints and deliveries.
    pub webhooks: Arc<dyn WebhookStore>,
    /// Connecting a new tenant to its (simulated) provider.
    pub setup: Arc<dyn TenantSetup>,
    /// The tenants' policy provider.
    pub provider: Arc<dyn PolicyProvider>,
    /// Review-pack sections.
    pub review_source: Arc<dyn ReviewPackSource>,
    /// Evidence.
    pub evidence_source: Arc<dyn EvidenceSource>,
    /// Where restores go.
    pub restore_target: Arc<dyn RestoreTarget>,
    /// The policy inventory.
    pub inventory: Arc<dyn InventoryStore>,
    /// Review-pack artifacts.
    pub artifacts: Arc<dyn ArtifactStore>,
    /// Evidence snapshots.
    pub snapshots: Arc<dyn SnapshotStore>,
    /// Backup sets.
    pub backup_sets: Arc<dyn BackupSetStore>,
    /// Baselines.
    pub baselines: Arc<dyn BaselineStore>,
    /// The job queue jobs are enqueued on.
    pub queue: Arc<dyn JobQueue>,
    /// The loop that runs the queue's jobs.
    pub workers: WorkerLoop,
    /// Live change notifications.
    pub events: BroadcastEvents,
    /// Readiness: the store accepts a write, the workers are alive.
    pub health: Arc<dyn HealthProbe>,
    /// What the maintenance pass prunes.
    pub retention: Arc<dyn Retention>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").finish_non_exhaustive()
    }
}

impl Backend {
    /// The in-memory backend: the reference stores, the simulated provider with its state in
    /// memory, and an in-process queue. Nothing survives the process.
    #[must_use]
    pub fn memory(queue: QueueSettings) -> Self {
        let store = Arc::new(MemoryRunStore::new());
        let families = Arc::new(MemoryFamilies::new());
        let simulated = Arc::new(MemorySimulatedTenants::default());
        let provider = Arc::new(SimulatedProvider::new(simulated.clone()));
        let jobs = InProcessQueue::new(queue.concurrency, queue.max_attempts, queue.retry_delay);
        Self {
            store: store.clone(),
            queries: store.clone(),
            directory: store.clone(),
            admin: store.clone(),
            tokens: store.clone(),
            webhooks: store.clone(),
            retention: store,
            setup: simulated,
            provider: provider.clone(),
            review_source: provider.clone(),
            evidence_source: provider.clone(),
            restore_target: provider,
            inventory: families.clone(),
            artifacts: families.clone(),
            snapshots: families.clone(),
            backup_sets: families.clone(),
            baselines: families,
            queue: Arc::new(jobs.clone()),
            health: Arc::new(MemoryHealth::new(jobs.clone())),
            workers: WorkerLoop::InProcess(jobs),
            events: BroadcastEvents::new(),
        }
    }

    /// Opens the backend `options.database_url` names: [`MEMORY_URL`], or an SQL database.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the database cannot be opened or migrated.
    pub async fn open(options: &BackendOptions) -> Result<Self, BackendError> {
        if options.database_url == MEMORY_URL {
            return Ok(Self::memory(options.queue));
        }
        Ok(SqlBackend::open(options).await?.ports())
    }
}

/// The loop that runs a backend's jobs.
#[derive(Debug, Clone)]
pub enum WorkerLoop {
    /// The durable queue (apalis) in the database (boxed: it is large, and cloned rarely).
    Durable(Box<ApalisQueue>),
    /// The in-process queue of the memory backend.
    InProcess(InProcessQueue),
}

impl WorkerLoop {
    /// Runs the workers until `shutdown` resolves; in-flight jobs finish first.
    ///
    /// # Errors
    ///
    /// When the workers stop on a backend error.
    pub async fn run<S>(&self, writers: Writers, shutdown: S) -> Result<(), BackendError>
    where
        S: Future<Output = ()> + Send + 'static,
    {
        match self {
            Self::Durable(queue) => Ok(queue
                .run_workers(writers, async move {
                    shutdown.await;
                    Ok(())
                })
                .await?),
            Self::InProcess(queue) => queue
                .run_workers(writers, shutdown)
                .await
                .map_err(|e| BackendError::Workers(e.to_string())),
        }
    }
}
