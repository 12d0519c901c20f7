//! OpenTelemetry traces end to end: `opsrun serve` with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing
//! at an OTLP/HTTP receiver on loopback. The receiver decodes the exported spans and finds the
//! HTTP request that started a fan-out as the parent of the run's job span (with the run's id,
//! family, tenant slug), and each of the fan-out's child job spans in a trace of its own,
//! linked to the run's span.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use opsrun_tests::{TestError, fresh_sqlite_file};
use serde_json::{Value, json};

type Received = Arc<Mutex<Vec<Value>>>;

async fn export(State(received): State<Received>, body: Bytes) -> (StatusCode, &'static str) {
    match serde_json::from_slice::<Value>(&body) {
        Ok(doc) => {
            received
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(doc);
            (StatusCode::OK, "{}")
        }
        Err(_) => (StatusCode::BAD_REQUEST, "{}"),
    }
}

/// Every span the receiver got.
fn spans(received: &Received) -> Vec<Value> {
    received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .flat_map(|doc| doc["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// A span's attribute as text (`stringValue`, or `intValue`, which OTLP JSON writes as text).
fn attribute(span: &Value, key: &str) -> Option<String> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| {
            let v = &a["value"];
            v["stringValue"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| v["intValue"].as_str().map(str::to_owned))
                .or_else(|| v["intValue"].as_i64().map(|i| i.to_string()))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_is_traced_from_its_request_with_linked_children() -> Result<(), TestError> {
    let received = Received::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(export))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (db, url) = fresh_sqlite_file()?;
    let crate::serve::Contoso {
        mut server,
        base,
        token,
        _db,
        ..
    } = crate::serve::contoso_on(
        url,
        Some(db),
        &["--policies", "4"],
        &["--workers", "2"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await?;
    let client = reqwest::Client::new();
    let post = |path: String, body: Value| {
        let client = client.clone();
        let token = token.clone();
        async move {
            client
                .post(path)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await?
                .error_for_status()?
                .json::<Value>()
                .await
        }
    };
    let wait = |id: i64| {
        let client = client.clone();
        let token = token.clone();
        let base = base.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let doc: Value = client
                    .get(format!("{base}/api/operations/{id}"))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .json()
                    .await?;
                if doc["status"] == "completed" {
                    return Ok::<Value, TestError>(doc);
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("run {id} did not complete").into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let set = post(
        format!("{base}/api/tenants/contoso/backup-sets"),
        json!({"name": "nightly"}),
    )
    .await?;
    let ids: Vec<String> = (1..=4).map(|i| format!("pol-{i:05}")).collect();
    let add = post(
        format!("{base}/api/tenants/contoso/operations"),
        json!({"type": "backup_set.add_policies", "params": {"backup_set_id": set["id"], "policy_ids": ids}}),
    )
    .await?["id"]
        .as_i64()
        .ok_or("no id")?;
    wait(add).await?;
    let restore = post(
        format!("{base}/api/tenants/contoso/operations"),
        json!({"type": "backup_set.restore", "params": {"backup_set_id": set["id"]}}),
    )
    .await?["id"]
        .as_i64()
        .ok_or("no id")?;
    let done = wait(restore).await?;
    assert_eq!(done["outcome"], "succeeded");

    // SIGTERM: the server flushes its spans before it exits.
    let pid = server.id().ok_or("no pid")?;
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(30), server.wait()).await??;

    let spans = spans(&received);
    let named =
        |name: &str| -> Vec<&Value> { spans.iter().filter(|s| s["name"] == name).collect() };
    let of_run = |name: &str, id: i64| -> Vec<&Value> {
        named(name)
            .into_iter()
            .filter(|s| attribute(s, "opsrun.run_id").as_deref() == Some(id.to_string().as_str()))
            .collect()
    };
    let starts = named("POST /api/tenants/{tenant}/operations");
    assert_eq!(starts.len(), 2, "one server span per start request");
    for start in &starts {
        assert_eq!(
            attribute(start, "http.response.status_code").as_deref(),
            Some("202")
        );
        assert_eq!(
            attribute(start, "http.route").as_deref(),
            Some("/api/tenants/{tenant}/operations")
        );
    }

    // The run's job span: a child of the request that started it, with the run's attributes.
    let runs = of_run("opsrun.run", restore);
    assert_eq!(
        runs.len(),
        1,
        "one attempt of the restore's run job: {runs:?}"
    );
    let run = runs[0];
    assert_eq!(
        attribute(run, "opsrun.family").as_deref(),
        Some("backup_set.restore")
    );
    assert_eq!(attribute(run, "opsrun.tenant").as_deref(), Some("contoso"));
    let parent = starts
        .iter()
        .find(|s| s["spanId"] == run["parentSpanId"])
        .ok_or("the run's span is not a child of a start request")?;
    assert_eq!(parent["traceId"], run["traceId"]);

    // A counted run completed by its own job carries its outcome.
    let adds = of_run("opsrun.run", add);
    assert_eq!(adds.len(), 1);
    assert_eq!(
        attribute(adds[0], "opsrun.outcome").as_deref(),
        Some("succeeded")
    );

    // Each child: its own trace, linked to the run's span.
    let children = of_run("opsrun.item", restore);
    assert_eq!(children.len(), 4, "one span per child job attempt");
    for child in &children {
        assert_ne!(
            child["traceId"], run["traceId"],
            "a child is not in the run's trace"
        );
        let links = child["links"].as_array().ok_or("no links")?;
        assert!(
            links
                .iter()
                .any(|l| l["traceId"] == run["traceId"] && l["spanId"] == run["spanId"]),
            "a child links to its run: {child}"
        );
        assert_eq!(
            attribute(child, "opsrun.family").as_deref(),
            Some("backup_set.restore")
        );
    }
    // The child that recorded the last item completed the fan-out: its span has the outcome.
    let finished: Vec<&&Value> = children
        .iter()
        .filter(|c| attribute(c, "opsrun.outcome").is_some())
        .collect();
    assert_eq!(finished.len(), 1);
    assert_eq!(
        attribute(finished[0], "opsrun.outcome").as_deref(),
        Some("succeeded")
    );
    Ok(())
}
