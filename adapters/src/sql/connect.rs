//! Opening a database and bringing its schema up to date.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend, DbErr};
use sea_orm_migration::MigratorTrait;

use super::migration::Migrator;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (`sqlite://path?mode=rwc`).
    Sqlite,
    /// A PostgreSQL server (`postgres://...`).
    Postgres,
}

impl Backend {
    /// The backend of a database URL, or `None` for an unsupported scheme.
    #[must_use]
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    /// The backend of an open connection.
    #[must_use]
    pub fn of(db: &DatabaseConnection) -> Self {
        match db.get_database_backend() {
            DbBackend::Postgres => Self::Postgres,
            _ => Self::Sqlite,
        }
    }
}

/// Opens a pool. SQLite runs in WAL mode with a busy timeout and foreign keys on (every write
/// transaction begins `IMMEDIATE`, so writers queue on the busy timeout instead of failing);
/// PostgreSQL gets a pool of `max_connections`.
///
/// # Errors
///
/// [`DbErr`] when the URL is unsupported or the database cannot be opened.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let backend = Backend::of_url(url).ok_or_else(|| {
        DbErr::Custom(format!(
            "unsupported database URL '{url}': use sqlite://FILE?mode=rwc or postgres://..."
        ))
    })?;
    if backend == Backend::Sqlite {
        return connect_sqlite(url, max_connections).await;
    }
    reach_postgres(url).await?;
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    Database::connect(options).await
}

/// Prepared statements each SQLite connection keeps (see `connect_sqlite`).
const SQLITE_STATEMENT_CACHE: usize = 24;

/// How long opening a PostgreSQL connection may take before the command says why it failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection first, so an unreachable or refusing server is named with its cause within
/// [`CONNECT_TIMEOUT`] (a pool retries until its acquire timeout and then reports only
/// "pool timed out", losing the cause).
async fn reach_postgres(url: &str) -> Result<(), DbErr> {
    use sea_orm::sqlx::Connection as _;
    use sea_orm::sqlx::postgres::PgConnection;
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(error)) => Err(DbErr::Custom(format!(
            "cannot connect to PostgreSQL: {error}"
        ))),
        Err(_) => Err(DbErr::Custom(format!(
            "cannot connect to PostgreSQL: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// `url` with `mode=rwc` when it is an SQLite URL naming no mode, so that `sqlite://file.db`
/// creates the file like the default does.
#[must_use]
pub fn sqlite_creating(url: &str) -> String {
    if Backend::of_url(url) != Some(Backend::Sqlite) || url.contains("mode=") {
        return url.to_owned();
    }
    let joint = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joint}mode=rwc")
}

/// The file an SQLite URL names, when it names one (not `:memory:` or `mode=memory`).
#[must_use]
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// The SQLite pool. A connection is never handed out again while the driver still counts it
/// inside a transaction: when SQLite rolls a transaction back by itself (a full disk), the
/// driver's `ROLLBACK` fails and it would go on believing the transaction open, so the next
/// `BEGIN` would become a `SAVEPOINT` of nothing and acknowledged writes would be lost. Such a
/// connection is closed on release instead.
async fn connect_sqlite(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    use sea_orm::sqlx::sqlite::{
        SqliteConnectOptions, SqlitePoolOptions, SqliteTransactionManager,
    };
    use sqlx_core::transaction::TransactionManager;

    let options = url
        .parse::<SqliteConnectOptions>()
        .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())))?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true)
        // Combined statements have one text per batch size (claims, records, restore rows of 1
        // to ~128 keys), and on SQLite each cached one is a compiled program in this process:
        // with sqlx's default of 100 per connection, `serve` peaked at 148 MiB during a
        // 100,000-item fan-out, with 24 at 114 MiB (10,000 items: 62 → 45 MiB), as fast.
        // Re-preparing an evicted one costs microseconds beside its commit.
        .statement_cache_capacity(SQLITE_STATEMENT_CACHE);
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .after_release(|conn, _| {
            let clean = SqliteTransactionManager::get_transaction_depth(conn) == 0;
            Box::pin(async move {
                if !clean {
                    tracing::warn!("closing a SQLite connection left inside a transaction");
                }
                Ok(clean)
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())))?;
    Ok(sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

/// Creates or upgrades the schema.
///
/// # Errors
///
/// [`DbErr`] when a migration fails.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}
