//! A host's own family (`opsrun_tests::host_family`, the example docs/embedding.md shows) runs
//! end to end beside the built-ins: registered through `Stack::wire_with`, started through the
//! same use case, parsed by the same registry, executed by the real queue on SQLite.

use std::sync::Arc;
use std::time::Duration;

use opsrun_adapters::backend::{BackendOptions, SqlBackend};
use opsrun_adapters::queue::QueueSettings;
use opsrun_app::wiring::Stack;
use opsrun_application::access::Caller;
use opsrun_application::families::{Counted, Family, ParamMap, ParamValue};
use opsrun_application::ports::{DirectoryAdmin, Role, TenantScope};
use opsrun_application::worker::RuntimeSettings;
use opsrun_application::writers::WriterSettings;
use opsrun_domain::{ProgressMode, RunOutcome, Slug, Timestamp};
use opsrun_tests::host_family::{EXCLUDED, PATCH_ROLLOUT, PatchRollout};
use opsrun_tests::{TestError, fresh_sqlite_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_family_runs_through_the_real_queue_beside_the_built_ins() -> Result<(), TestError> {
    let (dir, url) = fresh_sqlite_file()?;
    let backend = SqlBackend::open(&BackendOptions {
        database_url: url,
        artifacts: dir.path().join("artifacts"),
        queue: QueueSettings {
            poll_interval: Duration::from_millis(20),
            ..QueueSettings::default()
        },
        max_connections: 8,
    })
    .await?;
    let stack = Stack::wire_with(
        &backend.ports(),
        opsrun_app::config::STALE_AFTER_MS,
        |service| {
            let family: Arc<dyn Family> = Arc::new(Counted::new(
                service.clone(),
                WriterSettings::default(),
                PatchRollout,
            ));
            vec![family]
        },
    )?;
    let ws = backend
        .store
        .workspace(&Slug::parse("acme")?, true, Timestamp::from_millis(0))
        .await?;
    let tenant = backend
        .store
        .add_tenant(ws, &Slug::parse("contoso")?, Timestamp::from_millis(0))
        .await?;
    let user = backend
        .store
        .ensure_user(ws, "ops@acme.example", Timestamp::from_millis(0))
        .await?;
    let caller = Caller {
        user,
        role: Role::Operator,
        scope: TenantScope::All,
        via: opsrun_application::access::Via::Local,
    };
    let text = |s: &str| ParamValue::Text(s.to_owned());
    let params = stack.families.parse_params(
        PATCH_ROLLOUT.key(),
        ParamMap::from([
            ("devices".to_owned(), ParamValue::Int(12)),
            (
                "skip".to_owned(),
                ParamValue::List(vec![text("device-0003"), text("device-0007")]),
            ),
        ]),
    )?;
    let refused = stack.families.parse_params(
        PATCH_ROLLOUT.key(),
        ParamMap::from([("devices".to_owned(), ParamValue::Int(0))]),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let workers_stack = stack.clone();
    let workers = tokio::spawn(async move {
        opsrun_app::runtime::run_until_shutdown(
            &workers_stack,
            RuntimeSettings {
                requeue_after: Duration::from_secs(opsrun_app::config::REQUEUE_AFTER_SECS),
                retain_for: Duration::from_secs(14 * 86_400),
                stale_after: Duration::from_secs(opsrun_app::config::STALE_AFTER_SECS),
                maintenance_every: Duration::from_secs(30),
                max_attempts: 3,
            },
            async move {
                let _ = stopped.await;
            },
        )
        .await
    });

    let started = stack.start.execute(&caller, &tenant.slug, params).await?;
    let id = started.run.id();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let run = loop {
        let run = stack.queries.run(id).await?;
        if run.is_completed() || tokio::time::Instant::now() > deadline {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = stop.send(());
    workers.await??;

    let counts: Vec<(&str, u64)> = run.counts().iter().map(|(k, v)| (k.key(), v)).collect();
    assert_eq!(
        counts,
        vec![
            ("total", 12),
            ("processed", 12),
            ("succeeded", 10),
            ("skipped", 2)
        ]
    );
    assert_eq!(run.outcome(), RunOutcome::Succeeded);
    assert_eq!(run.operation_type(), &PATCH_ROLLOUT);
    assert_eq!(run.basis(), Some("12 devices"));
    let family = stack.families.get(&PATCH_ROLLOUT).ok_or("not registered")?;
    assert_eq!(family.designed_mode(), ProgressMode::Counted);
    assert_eq!(family.reasons(), &[EXCLUDED]);
    assert_eq!(stack.families.label(&PATCH_ROLLOUT), "Patch rollout");
    assert_eq!(refused.map_err(|e| e.code()), Err("invalid_params"));
    assert_eq!(stack.families.iter().count(), 8);
    // The API document describes the host family like a built-in one.
    let doc = opsrun_app::web::api::schema::document(&stack.families)?;
    let variant = doc["components"]["schemas"]["StartBody"]["oneOf"]
        .as_array()
        .and_then(|vs| {
            vs.iter()
                .find(|v| v["properties"]["type"]["enum"][0] == "acme.patch_rollout")
        })
        .ok_or("no start body for the host family")?;
    assert_eq!(variant["required"], serde_json::json!(["type", "params"]));
    let params = &variant["properties"]["params"];
    assert_eq!(params["required"], serde_json::json!(["devices"]));
    assert_eq!(params["properties"]["devices"]["type"], "integer");
    assert_eq!(
        params["properties"]["skip"]["type"],
        serde_json::json!(["array", "null"])
    );
    assert!(
        doc["components"]["schemas"]["RunDoc"]["properties"]["type"]["enum"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| k == "acme.patch_rollout"))
    );
    Ok(())
}

/// docs/embedding.md shows the example exactly as it compiles here.
#[test]
fn the_embedding_guide_shows_the_host_family_as_it_compiles() -> Result<(), TestError> {
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/embedding.md"))?;
    let source = include_str!("../../src/host_family.rs");

    assert!(
        guide.contains(source.trim()),
        "docs/embedding.md must show tests/src/host_family.rs verbatim"
    );
    Ok(())
}
