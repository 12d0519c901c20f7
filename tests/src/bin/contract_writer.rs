//! A separate OS process for the storage concurrency proof: records a range of a fan-out
//! parent's items through `OperationRunService` on the given database, calling
//! `maybe_complete_bulk_run` after each batch, and prints how many completions it won.
//!
//! Usage: `contract-writer DATABASE_URL RUN_ID FIRST COUNT BATCH`

use std::sync::Arc;

use opsrun_adapters::clock::SystemClock;
use opsrun_adapters::sql::{SqlRunStore, connect};
use opsrun_application::OperationRunService;
use opsrun_application::testing::MemoryQueue;
use opsrun_domain::{ItemKey, ItemRecord, RunError, RunId};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn arg(args: &[String], i: usize, name: &str) -> Result<String, Error> {
    args.get(i)
        .cloned()
        .ok_or_else(|| format!("missing {name}").into())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, 1, "DATABASE_URL")?;
    let run = RunId::new(arg(&args, 2, "RUN_ID")?.parse()?);
    let first: usize = arg(&args, 3, "FIRST")?.parse()?;
    let count: usize = arg(&args, 4, "COUNT")?.parse()?;
    let batch: usize = arg(&args, 5, "BATCH")?.parse()?;
    let store = Arc::new(SqlRunStore::new(connect(&url, 4).await?));
    let service =
        OperationRunService::new(store, Arc::new(MemoryQueue::new()), Arc::new(SystemClock));
    let keys = (first..first + count)
        .map(|i| ItemKey::parse(&format!("item-{:05}", i % 400)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut won = 0;
    for chunk in keys.chunks(batch.max(1)) {
        let records = chunk.iter().cloned().map(ItemRecord::succeeded).collect();
        match service.record_items(run, records).await {
            Ok(_) => {}
            Err(e) if e.rule() == Some(&RunError::RunAlreadyCompleted) => {}
            Err(e) => return Err(e.into()),
        }
        if service.maybe_complete_bulk_run(run).await?.is_some() {
            won += 1;
        }
    }
    #[expect(
        clippy::print_stdout,
        reason = "the parent test reads the count from stdout"
    )]
    {
        println!("{won}");
    }
    Ok(())
}
