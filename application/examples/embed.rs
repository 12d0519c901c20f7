//! Embedding opsrun: the service and writers over in-memory ports, with the host's own "queue"
//! being a loop that takes jobs and hands them to the writers. Run it with
//! `cargo run -p opsrun-application --features mocks --example embed`.

use std::sync::Arc;

use opsrun_application::memory::MemoryRunStore;
use opsrun_application::ports::{BackupSetStore, RunQueries};
use opsrun_application::testing::{FakeTenant, ManualClock, MemoryFamilies, MemoryQueue};
use opsrun_application::writers::{WriterPorts, WriterSettings, Writers};
use opsrun_application::{OperationRunService, RunParams, StartRun};
use opsrun_domain::{OperationRunProgressContract, Slug, WorkspaceId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The ports: here the in-memory reference store and test fakes; a host plugs in its own
    //    storage (or opsrun's SQL adapters), its queue and its tenant provider.
    let store = Arc::new(MemoryRunStore::new());
    let queue = Arc::new(MemoryQueue::new());
    let clock = Arc::new(ManualClock::at(0));
    let tenant_api = Arc::new(FakeTenant::new(12, &["3"]));
    let families = Arc::new(MemoryFamilies::new());
    let service = OperationRunService::new(store.clone(), queue.clone(), clock);
    let writers = Writers::new(
        service.clone(),
        WriterSettings::default(),
        WriterPorts {
            provider: tenant_api.clone(),
            inventory: families.clone(),
            review_source: tenant_api.clone(),
            artifacts: families.clone(),
            evidence_source: tenant_api.clone(),
            snapshots: families.clone(),
            backup_sets: families.clone(),
            restore_target: tenant_api.clone(),
            baselines: families.clone(),
            queue: queue.clone(),
        },
    );
    let tenant = store.add_tenant(WorkspaceId::new(1), Slug::parse("contoso")?);

    // 2. Some state to work on: a backup set with 12 items.
    let set = families.create_backup_set(tenant.id, "nightly").await?;
    for policy in tenant_api.policies() {
        families.put_backup_item(set.id, policy.clone());
    }

    // 3. Start a fan-out restore. The service enqueues the run's job.
    let started = service
        .start_run(StartRun {
            workspace: tenant.workspace,
            tenant: tenant.id,
            params: RunParams::BackupSetRestore {
                backup_set_id: set.id,
                item_ids: None,
            },
            initiator: None,
            parent: None,
            retry_of: None,
        })
        .await?;
    let id = started.run.id();

    // 4. The host's worker loop: take a job, execute it, show truthful progress.
    let mut report = Vec::new();
    while let Some(job) = queue.pop() {
        writers.execute(&job).await?;
        let view = OperationRunProgressContract::resolve(&store.run(id).await?);
        report.push(format!(
            "{:<9} {:?}/{:?} {:?}%",
            view.mode().key(),
            view.processed(),
            view.total(),
            view.percent()
        ));
    }
    let run = store.run(id).await?;
    report.push(format!(
        "{} ended {} with {:?}",
        writers.families().label(run.operation_type()),
        run.outcome().key(),
        run.counts().iter().collect::<Vec<_>>()
    ));
    #[expect(clippy::print_stdout, reason = "an example shows its result on stdout")]
    {
        println!("{}", report.join("\n"));
    }
    Ok(())
}
