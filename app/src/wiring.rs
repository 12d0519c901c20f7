//! The composition root: one database, and every adapter and use case wired on it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use opsrun_adapters::clock::SystemClock;
use opsrun_adapters::events::BroadcastEvents;
use opsrun_adapters::queue::{ApalisQueue, QueueSettings};
use opsrun_adapters::simulated::SimulatedProvider;
use opsrun_adapters::sql::{SqlFamilies, SqlRunStore, connect, migrate};
use opsrun_application::OperationRunService;
use opsrun_application::start::{StartOperation, StartPorts};
use opsrun_application::writers::{WriterPorts, WriterSettings, Writers};
use sea_orm::DatabaseConnection;

/// Everything that runs on one database.
#[derive(Clone)]
pub struct Stack {
    /// The connection pool.
    pub db: DatabaseConnection,
    /// Runs, ledger, directory.
    pub store: Arc<SqlRunStore>,
    /// Family stores.
    pub families: Arc<SqlFamilies>,
    /// The simulated tenant provider.
    pub provider: Arc<SimulatedProvider>,
    /// The durable queue.
    pub queue: ApalisQueue,
    /// The run service.
    pub service: OperationRunService,
    /// Every writer.
    pub writers: Writers,
    /// Live change notifications.
    pub events: BroadcastEvents,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack").finish_non_exhaustive()
    }
}

/// How to open a [`Stack`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// SQLite or PostgreSQL URL.
    pub database_url: String,
    /// Folder review-pack artifacts are written to.
    pub artifacts: PathBuf,
    /// Queue and worker settings.
    pub queue: QueueSettings,
    /// Pool size.
    pub max_connections: u32,
}

impl Stack {
    /// Connects, migrates (schema and queue tables) and wires everything.
    ///
    /// # Errors
    ///
    /// When the database cannot be opened or migrated.
    pub async fn open(options: &StackOptions) -> anyhow::Result<Self> {
        let db = connect(&options.database_url, options.max_connections)
            .await
            .with_context(|| {
                format!("failed to open database {}", redact(&options.database_url))
            })?;
        migrate(&db).await.context("failed to migrate the schema")?;
        let queue = ApalisQueue::setup(&db, options.queue)
            .await
            .context("failed to set up the job queue")?;
        let store = Arc::new(SqlRunStore::new(db.clone()));
        let families = Arc::new(SqlFamilies::new(db.clone(), options.artifacts.clone()));
        let provider = Arc::new(SimulatedProvider::new(SqlRunStore::new(db.clone())));
        let events = BroadcastEvents::new();
        events.listen(&db);
        let service = OperationRunService::new(
            store.clone(),
            Arc::new(queue.clone()),
            Arc::new(SystemClock),
        )
        .with_events(Arc::new(events.clone()));
        let writers = Writers::new(
            service.clone(),
            WriterSettings::default(),
            WriterPorts {
                provider: provider.clone(),
                inventory: families.clone(),
                review_source: provider.clone(),
                artifacts: families.clone(),
                evidence_source: provider.clone(),
                snapshots: families.clone(),
                backup_sets: families.clone(),
                restore_target: provider.clone(),
                baselines: families.clone(),
                queue: Arc::new(queue.clone()),
            },
        );
        Ok(Self {
            db,
            store,
            families,
            provider,
            queue,
            service,
            writers,
            events,
        })
    }
}

impl Stack {
    /// The start use case over this stack's ports (the HTTP API and `opsrun ops start` share it).
    #[must_use]
    pub fn start_operation(&self) -> StartOperation {
        StartOperation::new(
            self.service.clone(),
            StartPorts {
                directory: self.store.clone(),
                provider: self.provider.clone(),
                review_source: self.provider.clone(),
                backup_sets: self.families.clone(),
                baselines: self.families.clone(),
            },
        )
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
