//! Shared fixtures of the opsrun cross-crate tests: a fresh, migrated store on each backend.
//!
//! PostgreSQL is reached at `OPSRUN_TEST_POSTGRES_URL` (the README's test command starts a
//! throwaway cluster and sets it). Without it, PostgreSQL cases print that they did not run;
//! with `OPSRUN_REQUIRE_POSTGRES=1` (CI) a missing server fails them instead.

pub mod host_family;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opsrun_adapters::MemoryRunStore;
use opsrun_adapters::simulated::SqlSimulatedTenants;
use opsrun_adapters::sql::{SqlRunStore, connect, migrate};
use opsrun_application::ports::{
    Directory, DirectoryAdmin, RunQueries, RunStore, SimulationSettings, Tenant, TenantSetup, User,
};
use opsrun_domain::{ItemLedger, OperationRun, RunId, Slug, Timestamp, WorkspaceId};
use sea_orm::ConnectionTrait;

/// Error type of test helpers.
pub type TestError = Box<dyn std::error::Error + Send + Sync>;

/// A storage backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory reference store.
    Memory,
    /// SQLite in a fresh temporary file.
    Sqlite,
    /// A fresh database on the PostgreSQL server at `OPSRUN_TEST_POSTGRES_URL`.
    Postgres,
}

enum Inner {
    Memory(Arc<MemoryRunStore>),
    Sql {
        store: Arc<SqlRunStore>,
        simulated: SqlSimulatedTenants,
        workspace: WorkspaceId,
        // Kept so the SQLite file lives as long as the store.
        _dir: Option<tempfile::TempDir>,
    },
}

/// A fresh, migrated store.
pub struct TestStore {
    /// Which backend.
    pub backend: Backend,
    inner: Inner,
    /// The database URL (SQL backends), for tests that start other processes on it.
    pub url: Option<String>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The PostgreSQL server URL, `None` when the tests may skip PostgreSQL.
///
/// # Errors
///
/// When `OPSRUN_REQUIRE_POSTGRES=1` and no server URL is set.
pub fn postgres_url() -> Result<Option<String>, TestError> {
    match std::env::var("OPSRUN_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Ok(Some(url)),
        _ if std::env::var("OPSRUN_REQUIRE_POSTGRES").as_deref() == Ok("1") => Err(
            "OPSRUN_REQUIRE_POSTGRES=1 but OPSRUN_TEST_POSTGRES_URL is not set: start PostgreSQL (tests/run does)"
                .into(),
        ),
        _ => Ok(None),
    }
}

/// A URL naming `database` on the server of `url`.
#[must_use]
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(q) => format!("{server}/{database}?{q}"),
        None => format!("{server}/{database}"),
    }
}

/// Creates a fresh, empty PostgreSQL database and returns its URL (`None`: not available).
///
/// # Errors
///
/// When PostgreSQL is required but missing, or the database cannot be created.
pub async fn fresh_postgres_database() -> Result<Option<String>, TestError> {
    let Some(admin) = postgres_url()? else {
        return Ok(None);
    };
    let name = format!(
        "opsrun_t_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let db = connect(&admin, 1).await?;
    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    db.close().await?;
    Ok(Some(with_database(&admin, &name)))
}

/// Adds a tenant backed by the simulated provider to a SQL database: its directory row and its
/// simulator settings, as `opsrun tenants add` does.
///
/// # Errors
///
/// When the slug is taken or storage fails.
pub async fn add_simulated_tenant(
    store: &SqlRunStore,
    simulated: &SqlSimulatedTenants,
    workspace: WorkspaceId,
    slug: &Slug,
    settings: SimulationSettings,
) -> Result<Tenant, TestError> {
    let tenant = store
        .add_tenant(workspace, slug, Timestamp::from_millis(0))
        .await?;
    simulated.configure(tenant.id, settings).await?;
    Ok(tenant)
}

/// Creates a fresh SQLite file in a new temporary folder and returns the folder and URL.
///
/// # Errors
///
/// When the temporary folder cannot be made.
pub fn fresh_sqlite_file() -> Result<(tempfile::TempDir, String), TestError> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("opsrun.db").display()
    );
    Ok((dir, url))
}

impl TestStore {
    /// A fresh store on `backend`; `None` when that backend is PostgreSQL and no server is
    /// configured (and none is required). The caller reports the skip.
    ///
    /// # Errors
    ///
    /// When the database cannot be created or migrated.
    pub async fn open(backend: Backend) -> Result<Option<Self>, TestError> {
        let (url, dir) = match backend {
            Backend::Memory => {
                return Ok(Some(Self {
                    backend,
                    inner: Inner::Memory(Arc::new(MemoryRunStore::new())),
                    url: None,
                }));
            }
            Backend::Sqlite => {
                let (dir, url) = fresh_sqlite_file()?;
                (url, Some(dir))
            }
            Backend::Postgres => match fresh_postgres_database().await? {
                Some(url) => (url, None),
                None => return Ok(None),
            },
        };
        let db = connect(&url, 16).await?;
        migrate(&db).await?;
        let store = SqlRunStore::new(db.clone());
        let workspace = store
            .workspace(&Slug::parse("test")?, true, Timestamp::from_millis(0))
            .await?;
        Ok(Some(Self {
            backend,
            inner: Inner::Sql {
                store: Arc::new(store),
                simulated: SqlSimulatedTenants::new(db),
                workspace,
                _dir: dir,
            },
            url: Some(url),
        }))
    }

    /// The store, as the port.
    #[must_use]
    pub fn store(&self) -> Arc<dyn RunStore> {
        match &self.inner {
            Inner::Memory(store) => store.clone(),
            Inner::Sql { store, .. } => store.clone(),
        }
    }

    /// The webhook store, as the port.
    #[must_use]
    pub fn webhooks(&self) -> Arc<dyn opsrun_application::ports::WebhookStore> {
        match &self.inner {
            Inner::Memory(store) => store.clone(),
            Inner::Sql { store, .. } => store.clone(),
        }
    }

    /// The directory, as the port.
    #[must_use]
    pub fn directory(&self) -> Arc<dyn Directory> {
        match &self.inner {
            Inner::Memory(store) => store.clone(),
            Inner::Sql { store, .. } => store.clone(),
        }
    }

    /// The SQL store, for SQL-only checks.
    #[must_use]
    pub fn sql(&self) -> Option<&Arc<SqlRunStore>> {
        match &self.inner {
            Inner::Memory(_) => None,
            Inner::Sql { store, .. } => Some(store),
        }
    }

    /// The workspace tenants and users are created in.
    #[must_use]
    pub fn workspace(&self) -> WorkspaceId {
        match &self.inner {
            Inner::Memory(_) => WorkspaceId::new(1),
            Inner::Sql { workspace, .. } => *workspace,
        }
    }

    /// Adds a tenant, or returns the one with this slug.
    ///
    /// # Errors
    ///
    /// When the slug is invalid or storage fails.
    pub async fn tenant(&self, slug: &str) -> Result<Tenant, TestError> {
        let slug = Slug::parse(slug)?;
        if let Ok(existing) = self
            .directory()
            .tenant_by_slug(self.workspace(), &slug)
            .await
        {
            return Ok(existing);
        }
        Ok(match &self.inner {
            Inner::Memory(store) => store.add_tenant(self.workspace(), slug),
            Inner::Sql {
                store, simulated, ..
            } => {
                add_simulated_tenant(
                    store,
                    simulated,
                    self.workspace(),
                    &slug,
                    SimulationSettings::default(),
                )
                .await?
            }
        })
    }

    /// Adds a user, or returns the one with this e-mail.
    ///
    /// # Errors
    ///
    /// When storage fails.
    pub async fn user(&self, email: &str) -> Result<User, TestError> {
        Ok(match &self.inner {
            Inner::Memory(store) => store.add_user(self.workspace(), email),
            Inner::Sql { store, .. } => {
                store
                    .ensure_user(self.workspace(), email, Timestamp::from_millis(0))
                    .await?
            }
        })
    }

    /// The run's whole ledger.
    ///
    /// # Errors
    ///
    /// When the run does not exist or storage fails.
    pub async fn ledger(&self, id: RunId) -> Result<ItemLedger, TestError> {
        Ok(match &self.inner {
            Inner::Memory(store) => store.ledger(id)?,
            Inner::Sql { store, .. } => store.ledger(id).await?,
        })
    }

    /// Overwrites a run's counts and status as a legacy writer might have, bypassing every
    /// rule (`None` for a count stores NULL).
    ///
    /// # Errors
    ///
    /// When storage fails.
    pub async fn write_legacy(
        &self,
        id: RunId,
        counts: &[(&str, Option<i64>)],
        status: &str,
    ) -> Result<(), TestError> {
        match &self.inner {
            Inner::Sql { store, .. } => Ok(store.put_raw_counts(id, counts, status).await?),
            Inner::Memory(store) => {
                // The memory store holds domain values only: a negative count or an unknown
                // status cannot exist there, so they are dropped as the SQL reader drops them.
                let run: OperationRun = store.run(id).await?;
                let mut parts = run.parts().clone();
                let raw = counts.iter().filter_map(|(k, v)| {
                    v.map(|v| (*k, opsrun_domain::RawCount::Integer(i128::from(v))))
                });
                let normalized = opsrun_domain::SummaryCountsNormalizer::normalize(raw);
                for (key, value) in normalized.counts.iter() {
                    parts.counts.set(key, value)?;
                }
                for (k, v) in counts {
                    if v.is_none() {
                        parts.counts.clear(opsrun_domain::SummaryKey::parse(k)?);
                    }
                }
                parts
                    .anomalies
                    .extend(normalized.dropped.iter().map(ToString::to_string));
                match opsrun_domain::RunStatus::parse(status) {
                    Ok(s) => parts.status = s,
                    Err(_) => parts.anomalies.push(format!("unknown status '{status}'")),
                }
                let ledger = store.ledger(id)?;
                let params = store.run_params(id).await?;
                store.put_raw(OperationRun::restore(parts), ledger, params);
                Ok(())
            }
        }
    }
}

/// `run` without its child-job counts, for comparing a completed run over time: everything
/// else about a completed run is final, but its child jobs may still finish after it (the job
/// that recorded the last item, or jobs a cancel stopped between items).
#[must_use]
pub fn without_child_jobs(run: &opsrun_domain::OperationRun) -> opsrun_domain::OperationRun {
    let mut parts = run.parts().clone();
    parts.children = None;
    opsrun_domain::OperationRun::restore(parts)
}
