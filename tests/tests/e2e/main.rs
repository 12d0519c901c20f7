//! Cross-crate and end-to-end tests of opsrun: one module per feature. Storage cases run on
//! every backend (memory, SQLite, PostgreSQL); each test's output names its backend.

mod browser;
mod cli;
mod control;
mod crash;
mod fanout;
mod host;
mod http;
mod metrics;
mod pool;
mod runtime;
mod schemathesis;
mod serve;
mod storage;
mod storage_coalesce;
mod storage_control;
mod storage_model;
mod storage_webhooks;
mod traces;
mod webhooks;

use opsrun_tests::{Backend, TestError, TestStore};

/// Runs `case` on a fresh store of `backend`; says so on stderr when PostgreSQL is not
/// configured (and not required), so a skip is never silent.
async fn on_backend<F, Fut>(backend: Backend, case: F) -> Result<(), TestError>
where
    F: FnOnce(TestStore) -> Fut,
    Fut: std::future::Future<Output = Result<(), TestError>>,
{
    match TestStore::open(backend).await? {
        Some(store) => case(store).await,
        None => {
            report_skip();
            Ok(())
        }
    }
}

/// Says on stderr that PostgreSQL cases did not run, so a skip is never silent.
pub(crate) fn report_skip() {
    #[expect(clippy::print_stderr, reason = "a skipped backend must be visible")]
    {
        eprintln!("NOT RUN on PostgreSQL: OPSRUN_TEST_POSTGRES_URL is not set (tests/run sets it)");
    }
}

/// Declares one storage contract case and runs it as three tests, one per backend.
macro_rules! contract {
    ($name:ident, |$store:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn case($store: opsrun_tests::TestStore) -> Result<(), opsrun_tests::TestError> $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() -> Result<(), opsrun_tests::TestError> {
                crate::on_backend(opsrun_tests::Backend::Memory, case).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() -> Result<(), opsrun_tests::TestError> {
                crate::on_backend(opsrun_tests::Backend::Sqlite, case).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() -> Result<(), opsrun_tests::TestError> {
                crate::on_backend(opsrun_tests::Backend::Postgres, case).await
            }
        }
    };
}
pub(crate) use contract;

/// The real `opsrun` program on a database, as a separate process.
pub(crate) fn opsrun(url: &str, dir: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsrun-under-test"));
    command
        .args([
            "--database-url",
            url,
            "--artifacts",
            &dir.join("artifacts").display().to_string(),
        ])
        .env("OPSRUN_LOG", "warn")
        .kill_on_drop(true);
    command
}

/// Runs an `opsrun` command to its end and returns its stdout, trimmed.
pub(crate) async fn output(
    url: &str,
    dir: &std::path::Path,
    args: &[&str],
) -> Result<String, TestError> {
    let out = opsrun(url, dir).args(args).output().await?;
    if !out.status.success() {
        return Err(format!(
            "opsrun {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// An API token of `email` with `role` in workspace `acme` (`opsrun token create`).
pub(crate) async fn token(
    url: &str,
    dir: &std::path::Path,
    email: &str,
    role: &str,
) -> Result<String, TestError> {
    output(
        url,
        dir,
        &[
            "token",
            "create",
            "--workspace",
            "acme",
            "--email",
            email,
            "--role",
            role,
        ],
    )
    .await
}

/// An API token of `ops@example.com`, owner of workspace `acme` (`opsrun token create`).
pub(crate) async fn owner_token(url: &str, dir: &std::path::Path) -> Result<String, TestError> {
    output(
        url,
        dir,
        &[
            "token",
            "create",
            "--workspace",
            "acme",
            "--email",
            "ops@example.com",
            "--role",
            "owner",
        ],
    )
    .await
}

/// Starts `opsrun serve` on port 0 and returns the process and its base URL (from the first
/// line of its stdout).
pub(crate) async fn start_server(
    url: &str,
    dir: &std::path::Path,
    workers: &str,
) -> Result<(tokio::process::Child, String), TestError> {
    start_server_with(url, dir, &["--workers", workers]).await
}

/// The last lines the server started in `dir` wrote to its log.
pub(crate) fn server_log(dir: &std::path::Path) -> String {
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// As [`start_server`], with `args` after `serve --bind 127.0.0.1:0`. The server's log goes to
/// `serve.log` in `dir` (see [`server_log`]), so a failing test can show what it said.
pub(crate) async fn start_server_with(
    url: &str,
    dir: &std::path::Path,
    args: &[&str],
) -> Result<(tokio::process::Child, String), TestError> {
    start_server_env(url, dir, args, &[]).await
}

/// As [`start_server_with`], with `env` set for the server.
pub(crate) async fn start_server_env(
    url: &str,
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(tokio::process::Child, String), TestError> {
    use tokio::io::AsyncBufReadExt;
    let mut server = opsrun(url, dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.join("serve.log"))?)
        .spawn()?;
    let stdout = server.stdout.take().ok_or("no stdout")?;
    let first = tokio::io::BufReader::new(stdout)
        .lines()
        .next_line()
        .await?
        .ok_or("serve printed nothing")?;
    let base = first
        .strip_prefix("listening on ")
        .ok_or("the first line is not the address")?
        .to_owned();
    Ok((server, base))
}
