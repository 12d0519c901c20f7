//! End to end: `opsrun serve` on port 0 (a separate process) against a fresh SQLite file and a
//! fresh PostgreSQL database; every family started through the API, each followed through its
//! event stream to the terminal event.

use std::time::Duration;

use crate::output;
use futures::StreamExt;
use opsrun_tests::{TestError, fresh_postgres_database, fresh_sqlite_file};
use serde_json::{Value, json};

/// Follows a run's event stream to its end; returns every progress document.
async fn follow(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: i64,
) -> Result<Vec<Value>, TestError> {
    let response = client
        .get(format!("{base}/api/operations/{id}/events"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut docs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, body.next()).await {
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if frame.contains("event: progress")
                && let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: "))
            {
                docs.push(serde_json::from_str(data)?);
            }
        }
    }
    Ok(docs)
}

async fn start(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    body: Value,
) -> Result<i64, TestError> {
    let doc: Value = client
        .post(format!("{base}/api/tenants/contoso/operations"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    doc["id"].as_i64().ok_or_else(|| "no id".into())
}

async fn every_family_through_the_api(url: String) -> Result<(), TestError> {
    let dir = tempfile::tempdir()?;
    output(
        &url,
        dir.path(),
        &[
            "tenants",
            "add",
            "contoso",
            "--workspace",
            "acme",
            "--policies",
            "24",
            "--latency-ms",
            "2",
        ],
    )
    .await?;
    let token = crate::owner_token(&url, dir.path()).await?;
    let (mut server, base) = crate::start_server(&url, dir.path(), "4").await?;
    let client = reqwest::Client::new();

    let mut finished = Vec::new();
    for body in [
        json!({"type": "inventory.sync"}),
        json!({"type": "review_pack.generate", "params": {"sections": ["summary", "inventory"]}}),
        json!({"type": "evidence_snapshot.generate"}),
        json!({"type": "baseline.capture"}),
    ] {
        let id = start(&client, &base, &token, body).await?;
        finished.push((id, follow(&client, &base, &token, id).await?));
    }
    let set: Value = client
        .post(format!("{base}/api/tenants/contoso/backup-sets"))
        .bearer_auth(&token)
        .json(&json!({"name": "nightly"}))
        .send()
        .await?
        .json()
        .await?;
    let ids: Vec<String> = (1..=24).map(|i| format!("pol-{i:05}")).collect();
    let add = start(&client, &base, &token, json!({"type": "backup_set.add_policies", "params": {"backup_set_id": set["id"], "policy_ids": ids}})).await?;
    finished.push((add, follow(&client, &base, &token, add).await?));
    let restore = start(
        &client,
        &base,
        &token,
        json!({"type": "backup_set.restore", "params": {"backup_set_id": set["id"]}}),
    )
    .await?;
    finished.push((restore, follow(&client, &base, &token, restore).await?));
    let baselines: Value = client
        .get(format!("{base}/api/tenants/contoso/baselines"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let compare = start(
        &client,
        &base,
        &token,
        json!({"type": "baseline.compare", "params": {"baseline_id": baselines["items"][0]["id"]}}),
    )
    .await?;
    finished.push((compare, follow(&client, &base, &token, compare).await?));

    for (id, docs) in &finished {
        let last = docs.last().ok_or_else(|| format!("run {id}: no events"))?;
        assert_eq!(last["status"], "completed", "run {id}");
        assert_eq!(last["outcome"], "succeeded", "run {id}: {last}");
        assert_eq!(last["progress"]["mode"], "none");
        // A bar never goes back and never passes 100%.
        let percents: Vec<i64> = docs
            .iter()
            .filter_map(|d| d["progress"]["percent"].as_i64())
            .collect();
        assert!(
            percents.windows(2).all(|w| w[0] <= w[1]),
            "run {id}: {percents:?}"
        );
        assert!(percents.iter().all(|p| *p <= 100));
    }
    let restore_docs = &finished[5].1;
    assert_eq!(
        restore_docs.last().map(|d| d["summary_counts"].clone()),
        Some(json!({"total": 24, "processed": 24, "succeeded": 24}))
    );
    // Apart from its items, the restore shows its child jobs: 24 items are 24 jobs of one (a
    // small fan-out spreads over every worker). The job of the last item finishes just after
    // the run completed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let children = loop {
        let doc: Value = client
            .get(format!("{base}/api/operations/{restore}"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let children = doc["children"].clone();
        if children["completed"] == children["total"] || tokio::time::Instant::now() > deadline {
            break children;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(children, json!({"total": 24, "completed": 24}));
    assert!(
        restore_docs
            .iter()
            .filter_map(|d| d["children"]["completed"].as_u64())
            .all(|c| c <= 24),
        "never more jobs finished than enqueued"
    );
    assert!(
        finished[..5]
            .iter()
            .all(|(_, docs)| docs.iter().all(|d| d.get("children").is_none())),
        "only a fan-out has child jobs"
    );
    let notes: Value = client
        .get(format!("{base}/api/notifications"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(notes["items"].as_array().map(Vec::len), Some(7));

    #[cfg(unix)]
    {
        // SIGTERM: graceful shutdown, exit 0.
        let pid = server.id().ok_or("no pid")?;
        tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        let status = tokio::time::timeout(Duration::from_secs(60), server.wait()).await??;
        assert!(status.success(), "serve exited with {status}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_runs_every_family_through_the_api_on_sqlite() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    every_family_through_the_api(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_runs_every_family_through_the_api_on_postgres() -> Result<(), TestError> {
    let Some(url) = fresh_postgres_database().await? else {
        crate::report_skip();
        return Ok(());
    };
    every_family_through_the_api(url).await
}

/// `serve` on a fresh SQLite database with tenant `contoso` of workspace `acme` (created with
/// `tenant` as its extra `tenants add` options) and an owner token.
pub(crate) struct Contoso {
    pub(crate) server: tokio::process::Child,
    pub(crate) base: String,
    pub(crate) token: String,
    pub(crate) url: String,
    pub(crate) dir: tempfile::TempDir,
    /// The SQLite file's folder (none on PostgreSQL).
    pub(crate) _db: Option<tempfile::TempDir>,
}

/// `opsrun serve` (with `serve` options) on a fresh SQLite file with tenant `contoso` of
/// workspace `acme` (with `tenant` options) and an owner token.
pub(crate) async fn contoso_server(tenant: &[&str], serve: &[&str]) -> Result<Contoso, TestError> {
    let (db, url) = fresh_sqlite_file()?;
    contoso_on(url, Some(db), tenant, serve, &[]).await
}

/// As [`contoso_server`] on database `url` (`db` keeps an SQLite file alive), with `env` set for
/// the server.
pub(crate) async fn contoso_on(
    url: String,
    db: Option<tempfile::TempDir>,
    tenant: &[&str],
    serve: &[&str],
    env: &[(&str, &str)],
) -> Result<Contoso, TestError> {
    let dir = tempfile::tempdir()?;
    let add = [
        &["tenants", "add", "contoso", "--workspace", "acme"][..],
        tenant,
    ]
    .concat();
    output(&url, dir.path(), &add).await?;
    let token = crate::owner_token(&url, dir.path()).await?;
    let (server, base) = crate::start_server_env(&url, dir.path(), serve, env).await?;
    Ok(Contoso {
        server,
        base,
        token,
        url,
        dir,
        _db: db,
    })
}

/// Another connection holding SQLite's write lock, as an operator's `BEGIN IMMEDIATE` does.
async fn hold_write_lock(url: &str) -> Result<sea_orm::DatabaseTransaction, TestError> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    let operator = opsrun_adapters::sql::connect(url, 1).await?;
    Ok(operator
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?)
}

/// Polls `/readyz` until it answers 200 (or 30 s pass); the last answer.
async fn until_ready(client: &reqwest::Client, base: &str) -> Result<(u16, Value), TestError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut answer = readyz(client, base).await?;
    while answer.0 != 200 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        answer = readyz(client, base).await?;
    }
    Ok(answer)
}

/// SIGTERM with an event stream open: the stream gets a `shutdown` event and ends, and the
/// server exits 0 promptly instead of waiting for the client (it used to take 20-74 s). With
/// one worker, the first run holds it and the followed run stays queued, so the only thing
/// left to wait for at shutdown is the stream (and the short in-flight job).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_ends_open_event_streams_and_exits_promptly() -> Result<(), TestError> {
    let Contoso {
        mut server,
        base,
        token,
        url: _url,
        dir: _dir,
        _db,
    } = contoso_server(
        &["--policies", "8", "--latency-ms", "250"],
        &["--workers", "1"],
    )
    .await?;
    let client = reqwest::Client::new();
    start(&client, &base, &token, json!({"type": "inventory.sync"})).await?;
    let queued = start(
        &client,
        &base,
        &token,
        json!({"type": "evidence_snapshot.generate"}),
    )
    .await?;
    let response = client
        .get(format!("{base}/api/operations/{queued}/events"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?;
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await?
        .ok_or("the stream sent nothing")??;
    assert!(String::from_utf8_lossy(&first).contains("event: progress"));

    let pid = server.id().ok_or("no pid")?;
    tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    let began = tokio::time::Instant::now();
    let mut rest = String::new();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(10), body.next()).await {
        rest.push_str(&String::from_utf8_lossy(&chunk?));
    }
    let status = tokio::time::timeout(Duration::from_secs(10), server.wait()).await??;
    let took = began.elapsed();

    assert!(rest.contains("event: shutdown"), "{rest}");
    assert!(status.success(), "serve exited with {status}");
    assert!(took < Duration::from_secs(10), "exit took {took:?}");
    Ok(())
}

async fn readyz(client: &reqwest::Client, base: &str) -> Result<(u16, Value), TestError> {
    let response = client
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(20))
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

/// `/readyz` tells the truth: 200 once the workers run and the store takes a write; 503 naming
/// the store while another process holds SQLite's write lock (an operator's `BEGIN IMMEDIATE`);
/// 200 again once it is released. `/healthz` answers 200 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_a_held_sqlite_write_lock() -> Result<(), TestError> {
    let Contoso {
        mut server,
        base,
        url,
        token: _token,
        dir: _dir,
        _db,
    } = contoso_server(&[], &["--workers", "2"]).await?;
    let client = reqwest::Client::new();
    let ready = until_ready(&client, &base).await?;

    let lock = hold_write_lock(&url).await?;
    let held = readyz(&client, &base).await?;
    let health = client.get(format!("{base}/healthz")).send().await?.status();
    lock.rollback().await?;
    let after = until_ready(&client, &base).await?;
    let _ = server.start_kill();

    assert_eq!(ready.0, 200, "{}", ready.1);
    assert_eq!(ready.1["checks"]["store"]["ok"], true);
    assert_eq!(ready.1["checks"]["workers"]["ok"], true);
    assert_eq!(held.0, 503, "{}", held.1);
    assert_eq!(held.1["status"], "not_ready");
    assert_eq!(held.1["checks"]["store"]["ok"], false);
    assert_eq!(health.as_u16(), 200);
    assert_eq!(after.0, 200, "{}", after.1);
    Ok(())
}

/// One long SQLite lock used to kill the workers for good (apalis logged "worker future ended
/// with error" and nothing restarted them: every new run stayed queued). Another connection
/// holds `BEGIN IMMEDIATE` for 40 s, longer than the 30 s busy timeout, while `serve` runs;
/// once it is released, a new run starts and finishes with exact counts. A second `serve`
/// allowed only 5 s of an unusable queue gives up instead and exits non-zero (for its service
/// manager to restart it), rather than serving on without workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_heal_after_a_long_external_sqlite_lock() -> Result<(), TestError> {
    let Contoso {
        mut server,
        base,
        token,
        url,
        dir,
        _db,
    } = contoso_server(&["--policies", "16"], &["--workers", "2"]).await?;
    let mut impatient = crate::opsrun(&url, dir.path())
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--give-up-after-secs",
            "5",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let client = reqwest::Client::new();
    until_ready(&client, &base).await?;

    let lock = hold_write_lock(&url).await?;
    tokio::time::sleep(Duration::from_secs(40)).await;
    lock.rollback().await?;
    let id = start(&client, &base, &token, json!({"type": "inventory.sync"})).await?;
    let docs = follow(&client, &base, &token, id).await?;
    let _ = server.start_kill();
    let gave_up = tokio::time::timeout(Duration::from_secs(60), impatient.wait()).await??;

    assert!(
        !gave_up.success(),
        "the impatient serve exited with {gave_up}"
    );
    let last = docs.last().ok_or("no progress event")?;
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["outcome"], "succeeded", "{last}");
    assert_eq!(
        last["summary_counts"]["total"], 8,
        "{}",
        last["summary_counts"]
    );
    assert_eq!(last["summary_counts"]["processed"], 8);
    Ok(())
}

/// The soft open-file limit of this process (the server inherits it).
fn open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(1_024)
}

/// Slowloris: thousands of half-open connections (headers begun, never finished) used to
/// exhaust the server's file descriptors and time `/healthz` out for the whole hold. Now a fresh
/// connection is answered at once while they are held, and every stalled one is closed after
/// the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_connections_do_not_starve_the_server() -> Result<(), TestError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (_db, url) = fresh_sqlite_file()?;
    let dir = tempfile::tempdir()?;
    output(&url, dir.path(), &["migrate"]).await?;
    let mut server = crate::opsrun(&url, dir.path())
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--header-timeout-secs",
            "3",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = server.stdout.take().ok_or("no stdout")?;
    let first = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout))
        .next_line()
        .await?
        .ok_or("serve printed nothing")?;
    let base = first
        .strip_prefix("listening on ")
        .ok_or("no address")?
        .to_owned();
    let addr = base.trim_start_matches("http://").to_owned();
    // Both ends of every connection live in this machine's open-file budget.
    let held = 3_000.min(open_file_limit() / 2 - 200);
    let mut stalled = Vec::with_capacity(held);
    for _ in 0..held {
        let mut socket = tokio::net::TcpStream::connect(&addr).await?;
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-a: ")
            .await?;
        stalled.push(socket);
    }

    let asked = tokio::time::Instant::now();
    let health = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .status();
    let answered_in = asked.elapsed();
    let closed = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join_all(stalled.iter_mut().map(|socket| async move {
            let mut buffer = [0u8; 256];
            // Closed: end of stream, or a reset.
            loop {
                match socket.read(&mut buffer).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        })),
    )
    .await?;
    let _ = server.start_kill();

    assert!(
        held >= 1_000,
        "only {held} connections fit this machine's limits"
    );
    assert_eq!(health.as_u16(), 200);
    assert!(answered_in < Duration::from_secs(2), "{answered_in:?}");
    assert_eq!(closed.iter().filter(|c| **c).count(), held);
    Ok(())
}

/// A private PostgreSQL cluster this test may restart (the shared one serves other tests).
struct PrivateCluster {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    url: String,
}

impl PrivateCluster {
    fn as_postgres(&self, tool: &str) -> std::process::Command {
        let mut command = std::process::Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool));
        command
    }

    /// `None` when this machine cannot run one (not root, or no PostgreSQL binaries).
    fn start() -> Result<Option<Self>, TestError> {
        let root = std::fs::read_to_string("/proc/self/status")?
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|mut dirs| dirs.find_map(|d| d.ok().map(|d| d.path().join("bin"))));
        let (true, Some(bin)) = (root, bin) else {
            return Ok(None);
        };
        let dir = tempfile::tempdir()?;
        std::process::Command::new("chown")
            .args(["postgres", &dir.path().display().to_string()])
            .status()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cluster = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin,
            dir,
        };
        let data = cluster.dir.path().join("data");
        let ok = cluster
            .as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .status()?
            .success()
            && cluster.pg_ctl(&[
                "start",
                "-o",
                &format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                    cluster.dir.path().display()
                ),
            ])?;
        if !ok {
            return Err("the private PostgreSQL cluster did not start".into());
        }
        Ok(Some(cluster))
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<bool, TestError> {
        let data = self.dir.path().join("data");
        Ok(self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .arg("-w")
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()?
            .success())
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

/// PostgreSQL restarts (`pg_ctl restart -m fast`) in the middle of a fan-out: the workers lose
/// their connections, restart, and the run ends with exact counts; a run started afterwards
/// finishes too. Needs root (PostgreSQL runs as its own user): NOT RUN otherwise, and a failure
/// under `OPSRUN_REQUIRE_ROOT_TESTS=1` (CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_heal_after_a_postgres_restart() -> Result<(), TestError> {
    let Some(cluster) = PrivateCluster::start()? else {
        if std::env::var("OPSRUN_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
            return Err(
                "OPSRUN_REQUIRE_ROOT_TESTS=1 but no private PostgreSQL can run here".into(),
            );
        }
        eprintln!("NOT RUN: the PostgreSQL restart test needs root and PostgreSQL binaries");
        return Ok(());
    };
    let url = cluster.url.clone();
    let dir = tempfile::tempdir()?;
    output(
        &url,
        dir.path(),
        &[
            "tenants",
            "add",
            "contoso",
            "--workspace",
            "acme",
            "--policies",
            "60",
            "--latency-ms",
            "40",
        ],
    )
    .await?;
    let token = crate::owner_token(&url, dir.path()).await?;
    let (mut server, base) = crate::start_server(&url, dir.path(), "2").await?;
    let client = reqwest::Client::new();
    let set: Value = client
        .post(format!("{base}/api/tenants/contoso/backup-sets"))
        .bearer_auth(&token)
        .json(&json!({"name": "nightly"}))
        .send()
        .await?
        .json()
        .await?;
    let ids: Vec<String> = (1..=60).map(|i| format!("pol-{i:05}")).collect();
    let add = start(&client, &base, &token, json!({"type": "backup_set.add_policies", "params": {"backup_set_id": set["id"], "policy_ids": ids}})).await?;
    follow(&client, &base, &token, add).await?;
    let restore = start(
        &client,
        &base,
        &token,
        json!({"type": "backup_set.restore", "params": {"backup_set_id": set["id"]}}),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let restarted = cluster.pg_ctl(&["-m", "fast", "restart"])?;
    // Generous: under a loaded machine the workers wait out their in-flight jobs first.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let doc = loop {
        let doc: Value = match client
            .get(format!("{base}/api/operations/{restore}"))
            .bearer_auth(&token)
            .send()
            .await
        {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if doc["status"] == "completed" || tokio::time::Instant::now() > deadline {
            break doc;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let after = start(
        &client,
        &base,
        &token,
        json!({"type": "evidence_snapshot.generate"}),
    )
    .await?;
    let after_docs = follow(&client, &base, &token, after).await?;
    let _ = server.start_kill();

    assert!(restarted);
    assert_eq!(
        doc["status"],
        "completed",
        "{doc}\nserver log:\n{}",
        crate::server_log(dir.path())
    );
    assert_eq!(
        doc["summary_counts"],
        json!({"total": 60, "processed": 60, "succeeded": 60}),
        "{doc}"
    );
    assert_eq!(
        after_docs.last().map(|d| d["outcome"].clone()),
        Some(json!("succeeded"))
    );
    Ok(())
}

/// Whether this process runs as root (the fault tests that mount or run services need it).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// A full disk: the SQLite file lives on a 16 MiB tmpfs that another file fills up. While it is
/// full, writes fail (never a 2xx that is then lost) and `/readyz` says so; once space is freed,
/// every write acknowledged with 201 is in the file (read by a fresh connection), and a new run
/// completes. Needs root to mount: NOT RUN otherwise, a failure under
/// `OPSRUN_REQUIRE_ROOT_TESTS=1` (CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_loses_no_acknowledged_write() -> Result<(), TestError> {
    use sea_orm::ConnectionTrait;

    if !is_root() {
        if std::env::var("OPSRUN_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
            return Err("OPSRUN_REQUIRE_ROOT_TESTS=1 but this test cannot mount a tmpfs".into());
        }
        eprintln!("NOT RUN: the full-disk test needs root to mount a tmpfs");
        return Ok(());
    }
    let disk = tempfile::tempdir()?;
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(disk.path())
        .status()?
        .success();
    assert!(mounted, "mount tmpfs failed");
    let unmount = scopeguard(disk.path().to_owned());
    let url = format!(
        "sqlite://{}?mode=rwc",
        disk.path().join("opsrun.db").display()
    );
    let dir = tempfile::tempdir()?;
    output(
        &url,
        dir.path(),
        &[
            "tenants",
            "add",
            "contoso",
            "--workspace",
            "acme",
            "--policies",
            "8",
        ],
    )
    .await?;
    let token = crate::owner_token(&url, dir.path()).await?;
    let (mut server, base) = crate::start_server(&url, dir.path(), "2").await?;
    let client = reqwest::Client::new();
    until_ready(&client, &base).await?;
    let create = |name: String| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            client
                .post(format!("{base}/api/tenants/contoso/backup-sets"))
                .bearer_auth(&token)
                .timeout(Duration::from_secs(60))
                .json(&json!({ "name": name }))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let name = format!("before-{i}");
        if create(name.clone()).await == 201 {
            acknowledged.push(name);
        }
    }
    // Fill the disk to the last byte.
    let filler = disk.path().join("filler");
    let _ = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", filler.display()),
            "bs=64k",
        ])
        .stderr(std::process::Stdio::null())
        .status()?;
    let mut refused = 0;
    for i in 0..20 {
        let name = format!("full-{i}");
        match create(name.clone()).await {
            201 => acknowledged.push(name),
            _ => refused += 1,
        }
    }
    let full = readyz(&client, &base).await?;
    std::fs::remove_file(&filler)?;
    for i in 0..5 {
        let name = format!("after-{i}");
        if create(name.clone()).await == 201 {
            acknowledged.push(name);
        }
    }
    let run = start(
        &client,
        &base,
        &token,
        json!({"type": "evidence_snapshot.generate"}),
    )
    .await?;
    let docs = follow(&client, &base, &token, run).await?;
    let ready = until_ready(&client, &base).await?;
    let _ = server.start_kill();
    let _ = server.wait().await;
    let fresh = opsrun_adapters::sql::connect(&url, 1).await?;
    let stored: Vec<String> = fresh
        .query_all_raw(sea_orm::Statement::from_string(
            fresh.get_database_backend(),
            "SELECT name FROM backup_sets",
        ))
        .await?
        .iter()
        .filter_map(|r| r.try_get::<String>("", "name").ok())
        .collect();
    fresh.close().await?;
    drop(unmount);

    assert!(refused > 0, "the full disk refused no write");
    assert_eq!(full.0, 503, "{}", full.1);
    for name in &acknowledged {
        assert!(
            stored.contains(name),
            "{name} was acknowledged but is not in the file"
        );
    }
    assert!(acknowledged.iter().any(|n| n.starts_with("after-")));
    assert_eq!(
        docs.last().map(|d| d["outcome"].clone()),
        Some(json!("succeeded"))
    );
    assert_eq!(ready.0, 200, "{}", ready.1);
    Ok(())
}

/// Unmounts the tmpfs when dropped.
struct Unmount(std::path::PathBuf);

fn scopeguard(path: std::path::PathBuf) -> Unmount {
    Unmount(path)
}

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(&self.0)
            .status();
    }
}

/// `serve` with the default log filter and `format`, its stderr in `dir/serve.log`; one run
/// started through the API and followed to its end.
async fn logged_run(format: &str) -> Result<String, TestError> {
    use tokio::io::AsyncBufReadExt;
    let (_db, url) = fresh_sqlite_file()?;
    let dir = tempfile::tempdir()?;
    output(
        &url,
        dir.path(),
        &["tenants", "add", "contoso", "--workspace", "acme"],
    )
    .await?;
    let token = crate::owner_token(&url, dir.path()).await?;
    let mut server = crate::opsrun(&url, dir.path())
        .env_remove("OPSRUN_LOG")
        .args(["serve", "--bind", "127.0.0.1:0", "--log-format", format])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("serve.log"))?)
        .spawn()?;
    let stdout = server.stdout.take().ok_or("no stdout")?;
    let first = tokio::io::BufReader::new(stdout)
        .lines()
        .next_line()
        .await?
        .ok_or("serve printed nothing")?;
    let base = first
        .strip_prefix("listening on ")
        .ok_or("no address")?
        .to_owned();
    let client = reqwest::Client::new();
    let id = start(
        &client,
        &base,
        &token,
        json!({"type": "evidence_snapshot.generate"}),
    )
    .await?;
    let docs = follow(&client, &base, &token, id).await?;
    let last = docs.last().ok_or("no event")?;
    assert_eq!(last["status"], "completed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.start_kill()?;
    server.wait().await?;
    Ok(std::fs::read_to_string(dir.path().join("serve.log"))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_logs_requests_and_run_lifecycle_without_colour_codes() -> Result<(), TestError> {
    let text = logged_run("text").await?;
    let json = logged_run("json").await?;

    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file:\n{text}"
    );
    assert!(text.contains("run started"), "{text}");
    assert!(text.contains("run completed"), "{text}");
    assert!(
        text.contains("route=/api/tenants/{tenant}/operations"),
        "{text}"
    );
    let lines: Vec<Value> = json
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let access = lines
        .iter()
        .find(|l| l["fields"]["route"] == "/api/tenants/{tenant}/operations")
        .ok_or_else(|| format!("no access line:\n{json}"))?;
    assert_eq!(access["fields"]["status"], 202);
    assert_eq!(access["fields"]["method"], "POST");
    assert!(
        access["fields"]["request_id"]
            .as_str()
            .is_some_and(|id| id.len() == 16)
    );
    let completed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "run completed")
        .ok_or_else(|| format!("no lifecycle line:\n{json}"))?;
    assert_eq!(completed["fields"]["outcome"], "succeeded");
    assert_eq!(completed["fields"]["type"], "evidence_snapshot.generate");
    // Never a token in the log.
    assert!(!json.contains("ops_"), "{json}");
    Ok(())
}

/// `opsrun ARGS` on the server's database; (exit status, stdout).
async fn cli(server: &Contoso, args: &[&str]) -> Result<(i32, String), TestError> {
    let out = crate::opsrun(&server.url, server.dir.path())
        .args(args)
        .output()
        .await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_prints_the_api_documents_and_watch_exits_by_outcome() -> Result<(), TestError> {
    let server = contoso_server(
        &["--policies", "16", "--failure-rate", "0.3", "--seed", "3"],
        &[],
    )
    .await?;
    let client = reqwest::Client::new();
    let api = |path: String| {
        let (client, base, token) = (client.clone(), server.base.clone(), server.token.clone());
        async move {
            let doc: Value = client
                .get(format!("{base}{path}"))
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            Ok::<Value, TestError>(doc)
        }
    };
    let partial = start(
        &client,
        &server.base,
        &server.token,
        json!({"type": "inventory.sync"}),
    )
    .await?;
    let watched = cli(&server, &["ops", "watch", &partial.to_string()]).await?;
    let clean = start(
        &client,
        &server.base,
        &server.token,
        json!({"type": "evidence_snapshot.generate"}),
    )
    .await?;
    let watched_clean = cli(&server, &["ops", "watch", &clean.to_string()]).await?;

    let shown: Value = serde_json::from_str(
        &cli(
            &server,
            &["ops", "show", &partial.to_string(), "-o", "json"],
        )
        .await?
        .1,
    )?;
    let listed: Value = serde_json::from_str(&cli(&server, &["ops", "list", "--json"]).await?.1)?;
    let items: Value = serde_json::from_str(
        &cli(
            &server,
            &[
                "ops",
                "items",
                &partial.to_string(),
                "--outcome",
                "failed",
                "-o",
                "json",
            ],
        )
        .await?
        .1,
    )?;

    let partial_outcome = api(format!("/api/operations/{partial}")).await?["outcome"].clone();
    assert_eq!(partial_outcome, "partially_succeeded");
    assert_eq!(watched.0, 3, "partially succeeded: {}", watched.1);
    assert!(watched.1.trim_end().ends_with(')'), "{}", watched.1);
    assert!(
        watched.1.contains("completed: partially succeeded"),
        "{}",
        watched.1
    );
    // The second run's exit status follows its outcome too (0 only for `succeeded`).
    let outcome = api(format!("/api/operations/{clean}")).await?["outcome"].clone();
    let expected = match outcome.as_str() {
        Some("succeeded") => 0,
        Some("partially_succeeded") => 3,
        _ => 1,
    };
    assert_eq!(watched_clean.0, expected, "{outcome}: {}", watched_clean.1);
    assert_eq!(shown, api(format!("/api/operations/{partial}")).await?);
    assert_eq!(listed, api("/api/operations".to_owned()).await?);
    assert_eq!(
        items,
        api(format!("/api/operations/{partial}/items?outcome=failed")).await?
    );
    assert!(items["items"].as_array().is_some_and(|i| !i.is_empty()));

    // Tokens, tenants and workspaces: the API's documents (with the CLI's `workspace` and
    // `max_running` added); the token that just read the API is listed as the API lists it.
    // The API first: its own request may move `last_used_at` (kept to the minute).
    let mut from_api = api("/api/tokens".to_owned()).await?;
    let tokens: Value =
        serde_json::from_str(&cli(&server, &["token", "list", "-o", "json"]).await?.1)?;
    for token in from_api["items"].as_array_mut().ok_or("no tokens")? {
        token["workspace"] = json!("acme");
    }
    let tenants: Value =
        serde_json::from_str(&cli(&server, &["tenants", "list", "--json"]).await?.1)?;
    let workspaces: Value =
        serde_json::from_str(&cli(&server, &["workspaces", "list", "-o", "json"]).await?.1)?;
    assert_eq!(tokens, from_api);
    assert_eq!(
        tenants,
        json!({"items": [{"slug": "contoso", "max_running": null}]})
    );
    assert_eq!(
        api("/api/tenants".to_owned()).await?,
        json!({"items": [{"slug": "contoso"}]})
    );
    assert_eq!(workspaces, json!({"items": [{"slug": "acme"}]}));
    Ok(())
}
