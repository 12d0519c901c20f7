//! The API against its own document: schemathesis (pip; `tests/run` installs it) runs every
//! check (`--checks all`) on every operation of a seeded `opsrun serve`, and must find nothing.
//!
//! What it proves: every status the server answers is documented with its schema, every
//! answer matches its schema, every schema-valid request is accepted and every schema-invalid
//! one refused, auth is never ignored, and no input reaches a 5xx. The seeded ids
//! (`tests/schemathesis.toml`) let half the generated ids name things that exist.

use std::time::Duration;

use serde_json::{Value, json};

use crate::serve::{Contoso, contoso_server};
use opsrun_tests::TestError;

/// schemathesis's `st` in python3's scripts folder (where pip puts it, on PATH or not), when it
/// is installed; under `OPSRUN_REQUIRE_TOOLS=1` it must be.
fn schemathesis_command() -> Result<Option<std::path::PathBuf>, TestError> {
    let scripts = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let st = scripts
        .map(|dir| std::path::Path::new(&dir).join("st"))
        .filter(|st| {
            std::process::Command::new(st)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if st.is_none() {
        if std::env::var("OPSRUN_REQUIRE_TOOLS").as_deref() == Ok("1") {
            return Err("OPSRUN_REQUIRE_TOOLS=1 but schemathesis (st) is missing".into());
        }
        #[expect(clippy::print_stderr, reason = "a skipped check must be visible")]
        {
            eprintln!("NOT RUN: schemathesis is not installed (tests/run installs it)");
        }
    }
    Ok(st)
}

async fn call(
    client: &reqwest::Client,
    server: &Contoso,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, TestError> {
    let mut request = client
        .request(method, format!("{}{path}", server.base))
        .bearer_auth(&server.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await?;
    let status = answer.status();
    let doc: Value = answer.json().await?;
    if !status.is_success() {
        return Err(format!("{path}: {status} {doc}").into());
    }
    Ok(doc)
}

/// Seeds what the ids point at: a backup set holding the tenant's policies (an add-policies
/// run with failed items, so retry and the failed-items filter have something; its
/// notification), and a spare token to revoke. Returns the template's values.
async fn seed(server: &Contoso) -> Result<Vec<(&'static str, String)>, TestError> {
    let client = reqwest::Client::new();
    let set = call(
        &client,
        server,
        reqwest::Method::POST,
        "/api/tenants/contoso/backup-sets",
        Some(json!({"name": "nightly"})),
    )
    .await?;
    let policies = call(
        &client,
        server,
        reqwest::Method::GET,
        "/api/tenants/contoso/policies?limit=200",
        None,
    )
    .await?;
    let ids: Vec<&Value> = policies["items"]
        .as_array()
        .ok_or("no policies")?
        .iter()
        .map(|p| &p["id"])
        .collect();
    let run = call(
        &client,
        server,
        reqwest::Method::POST,
        "/api/tenants/contoso/operations",
        Some(json!({"type": "backup_set.add_policies",
            "params": {"backup_set_id": set["id"], "policy_ids": ids}})),
    )
    .await?;
    let id = run["id"].as_i64().ok_or("no run id")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let doc = call(
            &client,
            server,
            reqwest::Method::GET,
            &format!("/api/operations/{id}"),
            None,
        )
        .await?;
        if doc["status"] == "completed" {
            break doc;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("run {id} did not complete: {doc}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["outcome"], "partially_succeeded", "{done}");
    let items = call(
        &client,
        server,
        reqwest::Method::GET,
        &format!("/api/operations/{id}/items?limit=1"),
        None,
    )
    .await?;
    let item = items["items"][0]["item_key"]
        .as_str()
        .ok_or("no item")?
        .to_owned();
    crate::output(
        &server.url,
        server.dir.path(),
        &[
            "token",
            "create",
            "--workspace",
            "acme",
            "--email",
            "spare@example.com",
            "--role",
            "readonly",
        ],
    )
    .await?;
    let tokens = call(&client, server, reqwest::Method::GET, "/api/tokens", None).await?;
    let spare_id = tokens["items"]
        .as_array()
        .ok_or("no tokens")?
        .iter()
        .find(|t| t["user"] == "spare@example.com")
        .and_then(|t| t["id"].as_i64())
        .ok_or("no spare token")?;
    let notifications = call(
        &client,
        server,
        reqwest::Method::GET,
        "/api/notifications",
        None,
    )
    .await?;
    let notification = notifications["items"][0]["id"]
        .as_i64()
        .ok_or("no notification")?;
    Ok(vec![
        ("@NOTIFICATION@", notification.to_string()),
        ("@RUN@", id.to_string()),
        ("@RETRIED_RUN@", id.to_string()),
        ("@ITEM@", item),
        ("@BACKUP_SET@", set["id"].to_string()),
        ("@SPARE_TOKEN@", spare_id.to_string()),
    ])
}

/// One `st run` over the operations `filter` selects; its report when it finds anything.
async fn schemathesis(
    st: &std::path::Path,
    server: &Contoso,
    config: &std::path::Path,
    filter: &[&str],
) -> Result<(), TestError> {
    let out = tokio::process::Command::new(st)
        // schemathesis keeps a cache (`.schemathesis/`) in its working folder: the run's own,
        // so nothing is written into the repository and every run starts alike.
        .current_dir(server.dir.path())
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{}/api/openapi.json", server.base))
        // One worker: hypothesis describes strategies with `ast.parse`, and on CPython 3.11 two
        // threads parsing at once can fail inside the parser ("AST constructor recursion depth
        // mismatch"), which schemathesis reports as a failure of the API under test.
        .args(["--checks", "all", "--max-examples", "60", "--workers", "1"])
        .args(["--generation-deterministic", "--request-timeout", "10"])
        .args(["-H", &format!("Authorization: Bearer {}", server.token)])
        .args(filter)
        .env("NO_COLOR", "1")
        .output()
        .await?;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis {filter:?} found failures:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains(" passed"), "{report}");
    Ok(())
}

/// Every check on every operation: nothing found. Revoking tokens runs on its own, with its own
/// owner token, so no generated revocation can take away the credentials of the main run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_with_every_check_finds_nothing() -> Result<(), TestError> {
    let Some(st) = schemathesis_command()? else {
        return Ok(());
    };
    let server = contoso_server(&["--policies", "24", "--failure-rate", "0.25"], &[]).await?;
    let values = seed(&server).await?;
    let mut config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml"))?;
    for (name, value) in &values {
        config = config.replace(name, value);
    }
    assert!(
        !config.contains("[@") && !config.contains("\"@"),
        "unfilled template value:\n{config}"
    );
    let file = server.dir.path().join("schemathesis.toml");
    std::fs::write(&file, config)?;

    schemathesis(&st, &server, &file, &["--exclude-path", "/api/tokens/{id}"]).await?;
    let revoker = Contoso {
        token: crate::output(
            &server.url,
            server.dir.path(),
            &[
                "token",
                "create",
                "--workspace",
                "acme",
                "--email",
                "revoker@example.com",
                "--role",
                "owner",
            ],
        )
        .await?,
        ..server
    };
    schemathesis(
        &st,
        &revoker,
        &file,
        &["--include-path", "/api/tokens/{id}"],
    )
    .await
}
