//! One SQL database with every adapter opened on it: what a composition root wires its use
//! cases from. It is the only place that knows all the SQL adapters belong together.

use std::path::PathBuf;
use std::sync::Arc;

use crate::events::BroadcastEvents;
use crate::queue::{ApalisQueue, QueueRunError, QueueSettings};
use crate::simulated::{SimulatedProvider, SqlSimulatedTenants};
use crate::sql::{SqlFamilies, SqlRunStore, connect, migrate};

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
    /// The job queue's tables could not be set up.
    #[error("failed to set up the job queue: {0}")]
    Queue(#[from] QueueRunError),
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
            families: Arc::new(SqlFamilies::new(db, options.artifacts.clone())),
            provider: Arc::new(SimulatedProvider::new(simulated.as_ref().clone())),
            simulated,
            queue,
            events,
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
