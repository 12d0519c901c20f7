//! The few raw-SQL steps both SQL stores take (statements, rows, write transactions, typed
//! columns), written once; each store maps [`DbErr`] to its own error type.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, QueryResult,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

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
