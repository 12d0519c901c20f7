//! Cross-crate and end-to-end tests of opsrun: one module per feature. Storage cases run on
//! every backend (memory, SQLite, PostgreSQL); each test's output names its backend.

mod browser;
mod cli;
mod crash;
mod http;
mod runtime;
mod serve;
mod storage;
mod storage_model;

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
