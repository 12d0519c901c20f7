//! The few raw-SQL steps every SQL store takes (statements, rows, write transactions, typed
//! columns), written once, and the one translation of driver errors at the SQL boundary:
//! [`SqlError`] converts into each port's error type, so a store writes `map_err(raw::sql)`
//! (or `?` on a [`SqlError`]) and never its own wrapper.

use opsrun_application::{FamilyStoreError, StoreError};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, QueryResult,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

/// A driver error at the SQL boundary. The port errors take it as `Unavailable`: a failed
/// statement is storage that is down or refusing, never a rule the domain decides.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct SqlError(#[from] DbErr);

impl From<SqlError> for StoreError {
    fn from(error: SqlError) -> Self {
        Self::Unavailable(Box::new(error.0))
    }
}

impl From<SqlError> for FamilyStoreError {
    fn from(error: SqlError) -> Self {
        Self::Unavailable(Box::new(error.0))
    }
}

/// A driver error as the caller's port error (`map_err(raw::sql)`).
pub(crate) fn sql<E: From<SqlError>>(error: DbErr) -> E {
    E::from(SqlError(error))
}

/// Runs `stmt` on `conn`; the number of rows it changed.
pub(crate) async fn exec<C: ConnectionTrait>(conn: &C, stmt: Statement) -> Result<u64, DbErr> {
    Ok(conn.execute_raw(stmt).await?.rows_affected())
}

/// The rows `stmt` answers on `conn`.
pub(crate) async fn rows<C: ConnectionTrait>(
    conn: &C,
    stmt: Statement,
) -> Result<Vec<QueryResult>, DbErr> {
    conn.query_all_raw(stmt).await
}

/// A write transaction; on SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), so
/// concurrent writers wait on the busy timeout instead of failing on a lock upgrade.
pub(crate) async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Column `col` of `row` as text.
pub(crate) fn text(row: &QueryResult, col: &str) -> Result<String, DbErr> {
    row.try_get::<String>("", col)
}

/// Column `col` of `row` as an integer.
pub(crate) fn int(row: &QueryResult, col: &str) -> Result<i64, DbErr> {
    row.try_get::<i64>("", col)
}

/// Column `col` of `row` as a nullable integer.
pub(crate) fn opt_int(row: &QueryResult, col: &str) -> Result<Option<i64>, DbErr> {
    row.try_get::<Option<i64>>("", col)
}
