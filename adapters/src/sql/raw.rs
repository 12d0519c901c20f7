//! The few raw-SQL steps every SQL store takes (statements, rows, write transactions, typed
//! columns), written once, and the one translation of driver errors at the SQL boundary:
//! [`SqlError`] converts into each port's error type, so a store writes `map_err(raw::sql)`
//! (or `?` on a [`SqlError`]) and never its own wrapper.

use opsrun_application::{FamilyStoreError, StoreError};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, QueryResult,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait, Value,
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

/// A statement of `sql` written with numbered parameters (`$1`, `$2`, …) and its `values`,
/// for `backend`.
///
/// On SQLite the numbered parameters become anonymous `?` in the order they appear, with
/// `values` repeated to match. A numbered parameter is a *named* one to SQLite, and sqlx
/// resolves every parameter of a statement by name (`sqlite3_bind_parameter_name`, a linear
/// scan of the statement's names), so binding n numbered parameters costs n² steps: 15% of
/// the CPU of the SQLite benchmark with 8-item coalesced records, and more for the 100- to
/// 800-parameter statements of a fan-out. Anonymous parameters have no names to scan.
/// Quoted text (`'…'`, `"…"`) and comments are left as they are.
pub(crate) fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    if backend != DbBackend::Sqlite {
        return Statement::from_sql_and_values(backend, sql, values);
    }
    match positional(sql, &values) {
        Some((sql, values)) => Statement::from_sql_and_values(backend, sql, values),
        // A parameter past `values` (SQLite reads it as NULL): leave the statement as written.
        None => Statement::from_sql_and_values(backend, sql, values),
    }
}

/// `sql` with each `$n` outside quotes and comments replaced by `?`, and the values in the
/// order of the replacements; `None` when some `$n` has no value.
fn positional(sql: &str, values: &[Value]) -> Option<(String, Vec<Value>)> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut ordered = Vec::with_capacity(values.len());
    let (mut i, mut copied) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                // A doubled quote inside is an escaped one: the scan resumes after it.
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let n: usize = sql[start + 1..i].parse().ok()?;
                ordered.push(values.get(n.checked_sub(1)?)?.clone());
                out.push_str(&sql[copied..start]);
                out.push('?');
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    Some((out, ordered))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(sql: &str, values: Vec<Value>) -> (String, Vec<Value>) {
        let stmt = statement(DbBackend::Sqlite, sql, values);
        (stmt.sql, stmt.values.map(|v| v.0).unwrap_or_default())
    }

    #[test]
    fn numbered_parameters_become_positional_in_order_of_appearance() {
        let (sql, values) = sqlite(
            "SELECT $2, $1 FROM t WHERE a = $1 AND b = $10",
            (1..=10).map(|i: i64| Value::from(i)).collect(),
        );
        assert_eq!(sql, "SELECT ?, ? FROM t WHERE a = ? AND b = ?");
        assert_eq!(
            values,
            vec![Value::from(2i64), 1i64.into(), 1i64.into(), 10i64.into()]
        );
    }

    #[test]
    fn quoted_text_and_comments_are_left_alone() {
        let (sql, values) = sqlite(
            "SELECT json_extract(p, '$.a'), \"$1\", 'it''s $1' -- $1\n, /* $1 */ $1",
            vec![Value::from("x")],
        );
        assert_eq!(
            sql,
            "SELECT json_extract(p, '$.a'), \"$1\", 'it''s $1' -- $1\n, /* $1 */ ?"
        );
        assert_eq!(values, vec![Value::from("x")]);
    }

    #[test]
    fn a_parameter_without_a_value_leaves_the_statement_as_written() {
        let (sql, values) = sqlite("SELECT $1, $2", vec![Value::from(1i64)]);
        assert_eq!(sql, "SELECT $1, $2");
        assert_eq!(values, vec![Value::from(1i64)]);
        let (sql, _) = sqlite("SELECT $0", vec![Value::from(1i64)]);
        assert_eq!(sql, "SELECT $0");
    }

    #[test]
    fn other_backends_keep_numbered_parameters() {
        let stmt = statement(
            DbBackend::Postgres,
            "SELECT $1, $1",
            vec![Value::from(1i64)],
        );
        assert_eq!(stmt.sql, "SELECT $1, $1");
        assert_eq!(stmt.values.map(|v| v.0.len()), Some(1));
    }
}
