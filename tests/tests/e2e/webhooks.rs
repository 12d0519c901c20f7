//! Webhooks end to end: `opsrun serve` delivers signed run completions to a receiver on
//! loopback that checks every signature and fails each event's first two attempts; the server
//! is SIGKILLed while deliveries are pending and restarted, and every completion is still
//! accepted exactly once. Redelivery, the delivery log, role rules and the SSRF refusals are
//! checked through the API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use opsrun_tests::{TestError, fresh_postgres_database, fresh_sqlite_file};
use serde_json::{Value, json};

use crate::output;

/// What the receiver saw.
#[derive(Debug, Default)]
struct Seen {
    secret: Option<String>,
    /// Attempts per event id, in order.
    attempts: HashMap<String, u32>,
    /// Accepted (2xx) deliveries per event id.
    accepted: HashMap<String, u32>,
    /// Bodies accepted, per event id (the last one).
    bodies: HashMap<String, Value>,
    bad_signatures: u32,
    /// Every request that reached the receiver, signed or not.
    requests: u32,
}

type Receiver = Arc<Mutex<Seen>>;

fn lock(seen: &Receiver) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Verifies `opsrun-signature: t=T,v1=HEX` over `T.body` the way docs/webhooks.md tells a
/// receiver to (independently of the server's code).
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers
        .get("opsrun-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(sent) = t.parse::<i64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    if (now - sent).abs() > 300 {
        return false;
    }
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == v1
}

async fn receive(State(seen): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut seen = lock(&seen);
    seen.requests += 1;
    let Some(secret) = seen.secret.clone() else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    if !verify(&secret, &headers, &body) {
        seen.bad_signatures += 1;
        return StatusCode::BAD_REQUEST;
    }
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        seen.bad_signatures += 1;
        return StatusCode::BAD_REQUEST;
    };
    let event = doc["event_id"].as_str().unwrap_or_default().to_owned();
    let header = headers.get("opsrun-event-id").and_then(|v| v.to_str().ok());
    if header != Some(event.as_str()) {
        seen.bad_signatures += 1;
        return StatusCode::BAD_REQUEST;
    }
    let n = {
        let n = seen.attempts.entry(event.clone()).or_insert(0);
        *n += 1;
        *n
    };
    if n <= 2 {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    *seen.accepted.entry(event.clone()).or_insert(0) += 1;
    seen.bodies.insert(event, doc);
    StatusCode::NO_CONTENT
}

/// A receiver listening on `ip`, port 0; its URL.
async fn receiver(ip: &str) -> Result<(Receiver, String), TestError> {
    let seen = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((seen, format!("http://{ip}:{port}/hook")))
}

/// The delivery log of `webhook`, as its owner reads it.
async fn delivery_log(
    client: &reqwest::Client,
    base: &str,
    webhook: i64,
    token: &str,
) -> Result<Value, TestError> {
    Ok(client
        .get(format!("{base}/api/webhooks/{webhook}/deliveries"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<(), TestError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Local endpoints allowed; retries 1–2 s apart at first (so the kill lands between the
/// first attempts and the accepted ones); a short timeout, so a lease left by the killed
/// server is short too.
const LOCAL: [&str; 8] = [
    "--workers",
    "4",
    "--allow-http-webhooks",
    "--allow-private-webhooks",
    "--webhook-retry-base-ms",
    "2000",
    "--webhook-timeout-secs",
    "2",
];

async fn every_completion_is_accepted_exactly_once(
    url: String,
    db: Option<tempfile::TempDir>,
) -> Result<(), TestError> {
    let (seen, hook) = receiver("127.0.0.1").await?;
    let crate::serve::Contoso {
        mut server,
        base,
        token,
        url,
        dir,
        _db,
    } = crate::serve::contoso_on(url, db, &["--policies", "6"], &LOCAL, &[]).await?;
    let readonly = crate::token(&url, dir.path(), "ro@example.com", "readonly").await?;
    let client = reqwest::Client::new();

    // Readonly sees nothing of webhooks; an owner registers one.
    let refused = client
        .get(format!("{base}/api/webhooks"))
        .bearer_auth(&readonly)
        .send()
        .await?;
    assert_eq!(refused.status(), 403);
    let created = client
        .post(format!("{base}/api/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"url": hook}))
        .send()
        .await?;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await?;
    let secret = created["secret"].as_str().ok_or("no secret")?.to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );
    assert_eq!(created["events"], json!(["operation.completed"]));
    let webhook = created["id"].as_i64().ok_or("no id")?;
    let listed: Value = client
        .get(format!("{base}/api/webhooks"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert!(
        listed["items"][0].get("secret").is_none(),
        "the secret is shown once"
    );
    lock(&seen).secret = Some(secret);

    let mut runs = Vec::new();
    for body in [
        json!({"type": "inventory.sync"}),
        json!({"type": "evidence_snapshot.generate"}),
        json!({"type": "baseline.capture"}),
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
        runs.push(doc["id"].as_i64().ok_or("no id")?);
    }
    let events: Vec<String> = runs
        .iter()
        .map(|id| format!("evt_{id}_completed"))
        .collect();
    // Every completion has been tried once (and refused): the transitions happened, the
    // deliveries are pending. Kill the server now, before any is accepted.
    wait_for("a first attempt of every completion", || {
        let seen = lock(&seen);
        events
            .iter()
            .all(|e| seen.attempts.get(e).is_some_and(|n| *n >= 1))
    })
    .await?;
    // ... and recorded: a kill between the receiver's answer and its record would lose that
    // attempt from the log (the receiver saw it, the log did not), which is at-least-once
    // delivery working, not what this test is about.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let log = delivery_log(&client, &base, webhook, &token).await?;
        let items = log["items"].as_array().ok_or("no items")?;
        let recorded = events.iter().all(|e| {
            items
                .iter()
                .any(|d| d["event_id"] == *e && d["attempts"].as_u64() >= Some(1))
        });
        if recorded {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the first attempts were never recorded: {log}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.start_kill()?; // SIGKILL
    server.wait().await?;
    assert!(
        lock(&seen).accepted.is_empty(),
        "a delivery was accepted before the kill: the kill came too late to test anything"
    );

    let (mut server, base) = crate::start_server_with(&url, dir.path(), &LOCAL).await?;
    wait_for("every completion accepted", || {
        let seen = lock(&seen);
        events.iter().all(|e| seen.accepted.contains_key(e))
    })
    .await?;
    // Time for a duplicate to show, if one were coming.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    {
        let seen = lock(&seen);
        assert_eq!(seen.bad_signatures, 0);
        for (event, id) in events.iter().zip(&runs) {
            assert_eq!(seen.accepted.get(event), Some(&1), "{event}");
            assert_eq!(seen.attempts.get(event), Some(&3), "{event}");
            let body = &seen.bodies[event];
            assert_eq!(body["event_type"], "operation.completed");
            assert_eq!(body["run"]["id"], *id);
            assert_eq!(body["run"]["status"], "completed");
            assert_eq!(body["run"]["tenant"], "contoso");
        }
        // Every event received is one of the workspace's completed runs, each once.
        assert!(seen.accepted.values().all(|n| *n == 1));
    }

    // The delivery log says the same.
    let log = delivery_log(&client, &base, webhook, &token).await?;
    let items = log["items"].as_array().ok_or("no items")?;
    for event in &events {
        let rows: Vec<&Value> = items.iter().filter(|d| d["event_id"] == *event).collect();
        assert_eq!(rows.len(), 1, "{event}: one delivery row");
        assert_eq!(rows[0]["state"], "delivered");
        assert_eq!(rows[0]["attempts"], 3);
        assert_eq!(rows[0]["last_status"], 204);
        assert_eq!(rows[0]["last_error"], Value::Null);
    }

    // Redeliver: a new delivery of the same event, with the same id.
    let first = items
        .iter()
        .find(|d| d["event_id"] == events[0])
        .ok_or("no delivery")?;
    let again = client
        .post(format!(
            "{base}/api/webhooks/{webhook}/deliveries/{}/redeliver",
            first["id"]
        ))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(again.status(), 202);
    let again: Value = again.json().await?;
    assert_eq!(again["event_id"], events[0]);
    assert_eq!(again["redelivery_of"], first["id"]);
    wait_for("the redelivery", || {
        lock(&seen).accepted.get(&events[0]) == Some(&2)
    })
    .await?;
    let missing = client
        .post(format!(
            "{base}/api/webhooks/{webhook}/deliveries/999999/redeliver"
        ))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(missing.status(), 404);

    // Removal: 200 with the endpoint, then 404.
    let removed = client
        .delete(format!("{base}/api/webhooks/{webhook}"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(removed.status(), 200);
    let gone = client
        .get(format!("{base}/api/webhooks/{webhook}/deliveries"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(gone.status(), 404);
    server.start_kill()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_completion_is_accepted_exactly_once_across_a_sigkill_on_sqlite()
-> Result<(), TestError> {
    let (db, url) = fresh_sqlite_file()?;
    every_completion_is_accepted_exactly_once(url, Some(db)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_completion_is_accepted_exactly_once_across_a_sigkill_on_postgres()
-> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    every_completion_is_accepted_exactly_once(url, None).await
}

/// Without `--allow-private-webhooks`, loopback, private and link-local targets are refused
/// when registered (literal addresses, `localhost`), and a name that resolves to one is
/// refused when delivered: nothing reaches the receiver, and the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_never_reach_private_addresses_unless_allowed() -> Result<(), TestError> {
    let (seen, hook) = receiver("127.0.0.1").await?;
    lock(&seen).secret = Some("unused".to_owned());
    let crate::serve::Contoso {
        mut server,
        base,
        token,
        url,
        dir,
        _db,
    } = crate::serve::contoso_server(
        &["--policies", "3"],
        &[
            "--workers",
            "2",
            "--allow-http-webhooks",
            "--webhook-retry-base-ms",
            "200",
        ],
    )
    .await?;
    let client = reqwest::Client::new();
    let port = hook
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .ok_or("no port")?
        .to_owned();
    for target in [
        hook.clone(),
        format!("http://localhost:{port}/hook"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://[::1]/".to_owned(),
        "http://0x7f000001/".to_owned(),
    ] {
        let refused = client
            .post(format!("{base}/api/webhooks"))
            .bearer_auth(&token)
            .json(&json!({"url": target}))
            .send()
            .await?;
        assert_eq!(refused.status(), 422, "{target}");
        let body: Value = refused.json().await?;
        assert_eq!(body["error"]["code"], "webhook_url_private", "{target}");
    }
    // Plain http is refused where the server does not allow it (checked by the CLI too).
    let cli = crate::opsrun(&url, dir.path())
        .args([
            "webhooks",
            "add",
            "http://hooks.example.com/x",
            "--workspace",
            "acme",
        ])
        .output()
        .await?;
    assert_eq!(cli.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&cli.stderr).contains("https"));
    assert_eq!(
        output(&url, dir.path(), &["webhooks", "list"])
            .await?
            .lines()
            .count(),
        1
    );

    // A name (this machine's) that resolves to loopback passes registration, and the
    // delivery is refused by the resolver.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_owned();
    let resolved: Vec<std::net::IpAddr> = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .map(|a| a.map(|a| a.ip()).collect())
        .unwrap_or_default();
    if resolved.is_empty()
        || resolved
            .iter()
            .any(|ip| opsrun_domain::is_public_address(*ip))
    {
        not_run(&format!(
            "the resolver refusal needs a host name resolving to a private address ({host}: {resolved:?})"
        ));
        server.start_kill()?;
        return Ok(());
    }
    let named = format!("http://{host}:{port}/hook");
    let created = client
        .post(format!("{base}/api/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"url": named}))
        .send()
        .await?;
    assert_eq!(created.status(), 201);
    let webhook = created.json::<Value>().await?["id"].clone();
    client
        .post(format!("{base}/api/tenants/contoso/operations"))
        .bearer_auth(&token)
        .json(&json!({"type": "inventory.sync"}))
        .send()
        .await?
        .error_for_status()?;
    let mut last_error = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let log: Value = client
            .get(format!("{base}/api/webhooks/{webhook}/deliveries"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        if let Some(error) = log["items"][0]["last_error"].as_str() {
            last_error = error.to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        last_error.contains("does not call"),
        "the delivery was not refused for its address: {last_error:?}"
    );
    assert_eq!(lock(&seen).requests, 0, "a request reached the receiver");
    server.start_kill()?;
    Ok(())
}

/// Says on stderr that a part of a test did not run, so it is never silent.
fn not_run(what: &str) {
    #[expect(clippy::print_stderr, reason = "a part not run must be visible")]
    {
        eprintln!("NOT RUN: {what}");
    }
}
