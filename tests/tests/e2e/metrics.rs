//! Prometheus metrics end to end: `opsrun serve --metrics-bind` after a demo-sized workload,
//! scraped and parsed by the reference parser of the text format (the official Python
//! client's, `prometheus_client.parser`); every value equals what the API says.

use std::collections::BTreeMap;
use std::time::Duration;

use opsrun_tests::TestError;
use serde_json::{Value, json};

/// One sample of a scrape: metric name (with `_bucket`, `_count`, `_sum` for histograms),
/// labels, value.
#[derive(Debug)]
struct Sample {
    metric: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// What the reference parser makes of a scrape; `None` (after a loud NOT RUN) when the parser
/// is not installed and not required.
async fn scrape(client: &reqwest::Client, url: &str) -> Result<Option<Vec<Sample>>, TestError> {
    use tokio::io::AsyncWriteExt;
    let text = client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families as parse\n\
        print(json.dumps([[s.name, s.labels, s.value] for f in parse(sys.stdin.read()) for s in f.samples]))";
    let Ok(mut python) = tokio::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        return missing();
    };
    let mut stdin = python.stdin.take().ok_or("no stdin")?;
    stdin.write_all(text.as_bytes()).await?;
    drop(stdin);
    let out = python.wait_with_output().await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'prometheus_client'") {
        return missing();
    }
    if !out.status.success() {
        return Err(format!("the scrape does not parse: {stderr}\n{text}").into());
    }
    let rows: Vec<(String, BTreeMap<String, String>, f64)> = serde_json::from_slice(&out.stdout)?;
    Ok(Some(
        rows.into_iter()
            .map(|(metric, labels, value)| Sample {
                metric,
                labels,
                value,
            })
            .collect(),
    ))
}

fn missing() -> Result<Option<Vec<Sample>>, TestError> {
    if std::env::var("OPSRUN_REQUIRE_TOOLS").as_deref() == Ok("1") {
        return Err("OPSRUN_REQUIRE_TOOLS=1 but prometheus_client (pip) is missing".into());
    }
    #[expect(clippy::print_stderr, reason = "a skipped check must be visible")]
    {
        eprintln!("NOT RUN: prometheus_client is not installed (tests/run installs it)");
    }
    Ok(None)
}

/// The sum of `metric` over the samples with `labels` (among others), 0 when absent.
fn value(scrape: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .iter()
        .filter(|s| {
            s.metric == metric
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_equal_the_apis_counts_after_a_workload() -> Result<(), TestError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let bind = format!("127.0.0.1:{port}");
    let crate::serve::Contoso {
        mut server,
        base,
        token,
        url,
        dir,
        _db,
    } = crate::serve::contoso_server(
        &["--policies", "30", "--failure-rate", "0.2"],
        &["--workers", "4", "--metrics-bind", &bind],
    )
    .await?;
    let metrics = format!("http://{bind}/metrics");
    let client = reqwest::Client::new();

    // On the main port only with an owner token.
    let anonymous = client.get(format!("{base}/metrics")).send().await?;
    assert_eq!(anonymous.status(), 401);
    let readonly = crate::token(&url, dir.path(), "ro@example.com", "readonly").await?;
    let low = client
        .get(format!("{base}/metrics"))
        .bearer_auth(&readonly)
        .send()
        .await?;
    assert_eq!(low.status(), 403);

    let mut ids = Vec::new();
    for body in [
        json!({"type": "inventory.sync"}),
        json!({"type": "evidence_snapshot.generate"}),
        json!({"type": "baseline.capture"}),
        json!({"type": "review_pack.generate"}),
    ] {
        let doc: Value = client
            .post(format!("{base}/api/tenants/contoso/operations"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ids.push(doc["id"].as_i64().ok_or("no id")?);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let runs: Vec<Value> = loop {
        let list: Value = client
            .get(format!("{base}/api/operations?limit=200"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        if items.len() == ids.len() && items.iter().all(|r| r["status"] == "completed") {
            break items;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the runs did not complete: {list}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // One stream open while scraping.
    let stream = client
        .get(format!("{base}/api/events"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(stream.status(), 200);
    let Some(open) = scrape(&client, &metrics).await? else {
        server.start_kill()?;
        return Ok(());
    };
    assert_eq!(value(&open, "opsrun_event_stream_clients", &[]), 1.0);
    drop(stream);

    let mut by: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut items: BTreeMap<&str, f64> = BTreeMap::new();
    for run in &runs {
        let key = (
            run["type"].as_str().unwrap_or_default().to_owned(),
            run["outcome"].as_str().unwrap_or_default().to_owned(),
        );
        *by.entry(key).or_insert(0.0) += 1.0;
        for outcome in ["succeeded", "failed", "skipped"] {
            *items.entry(outcome).or_insert(0.0) +=
                run["summary_counts"][outcome].as_f64().unwrap_or(0.0);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = scrape(&client, &metrics).await?.ok_or("no parser")?;
        if value(&s, "opsrun_event_stream_clients", &[]) == 0.0 {
            break s;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the closed stream is still counted".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for ((family, outcome), n) in &by {
        let labels = [
            ("family", family.as_str()),
            ("status", "completed"),
            ("outcome", outcome.as_str()),
        ];
        assert_eq!(value(&s, "opsrun_runs", &labels), *n, "{labels:?}");
        assert_eq!(
            value(
                &s,
                "opsrun_runs_completed_total",
                &[("family", family.as_str()), ("outcome", outcome.as_str())]
            ),
            *n,
            "{family} {outcome}"
        );
    }
    assert_eq!(value(&s, "opsrun_runs", &[]), runs.len() as f64);
    assert_eq!(value(&s, "opsrun_runs", &[("status", "running")]), 0.0);
    for (outcome, n) in &items {
        assert_eq!(
            value(&s, "opsrun_items_recorded_total", &[("outcome", outcome)]),
            *n,
            "items {outcome}"
        );
    }
    assert!(
        items["failed"] > 0.0,
        "the workload should have failed items"
    );
    assert_eq!(
        value(
            &s,
            "opsrun_items_recorded_total",
            &[("outcome", "unattributed")]
        ),
        0.0
    );
    assert_eq!(value(&s, "opsrun_runs_stale", &[]), 0.0);
    assert!(value(&s, "opsrun_workers_alive", &[]) >= 1.0);
    assert_eq!(value(&s, "opsrun_queue_due_jobs", &[]), 0.0);
    let http: Vec<String> = s
        .iter()
        .filter(|x| x.metric == "opsrun_http_requests_total")
        .map(|x| format!("{:?} {}", x.labels, x.value))
        .collect();
    assert_eq!(
        value(
            &s,
            "opsrun_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/tenants/{tenant}/operations"),
                ("status", "202")
            ]
        ),
        ids.len() as f64,
        "{http:?}"
    );
    assert_eq!(value(&s, "opsrun_webhook_deliveries", &[]), 0.0);
    for name in [
        "opsrun_record_seconds",
        "opsrun_run_duration_seconds",
        "opsrun_http_request_seconds",
    ] {
        assert!(
            value(&s, &format!("{name}_count"), &[]) > 0.0,
            "{name} is a histogram with observations"
        );
        assert!(
            value(&s, &format!("{name}_bucket"), &[("le", "+Inf")]) > 0.0,
            "{name} has buckets"
        );
    }
    // Every run's duration is observed once.
    assert_eq!(
        value(&s, "opsrun_run_duration_seconds_count", &[]),
        runs.len() as f64
    );
    // The owner's view on the main port is the same exposition.
    let via_api = client
        .get(format!("{base}/metrics"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(via_api.status(), 200);
    let kind = via_api
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(kind.starts_with("text/plain"), "{kind}");
    let text = via_api.text().await?;
    for (family, outcome) in by.keys() {
        let line =
            format!("opsrun_runs_completed_total{{family=\"{family}\",outcome=\"{outcome}\"}}");
        assert!(text.contains(&line), "{line} in the main port's metrics");
    }
    // Bounded labels: no run or tenant id anywhere.
    for sample in &s {
        for key in sample.labels.keys() {
            assert!(
                [
                    "family", "status", "outcome", "queue", "method", "route", "result", "state",
                    "le"
                ]
                .contains(&key.as_str()),
                "unexpected label {key} on {}",
                sample.metric
            );
        }
    }
    server.start_kill()?;
    Ok(())
}
