//! The pages in a real headless Chromium (Debian's `chromium` and `chromium-driver`, installed
//! by the test command when missing): log in with a token, watch a run's bar advance on the
//! tenant shell, check the detail page's DOM. Screenshots are saved under `target/tmp/browser`.

use std::process::Stdio;
use std::time::Duration;

use crate::output;
use fantoccini::{ClientBuilder, Locator};
use opsrun_tests::{TestError, fresh_sqlite_file};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Clicks the element `css` selects now (one script call: a live page may have just replaced
/// the element a WebDriver handle pointed at).
async fn click(browser: &fantoccini::Client, css: &str) -> Result<(), TestError> {
    let clicked = browser
        .execute(
            "var e = document.querySelector(arguments[0]); if (!e) { return false; } e.click(); return true;",
            vec![Value::String(css.to_owned())],
        )
        .await?;
    if clicked != Value::Bool(true) {
        return Err(format!("nothing to click at {css}").into());
    }
    Ok(())
}

fn free_port() -> Result<u16, TestError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pages_show_truthful_live_progress_in_a_real_browser() -> Result<(), TestError> {
    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists() {
        if std::env::var("OPSRUN_REQUIRE_BROWSER").as_deref() == Ok("1") {
            return Err("OPSRUN_REQUIRE_BROWSER=1 but chromium/chromedriver are missing (tests/run installs them)".into());
        }
        eprintln!("NOT RUN: Chromium is not installed (tests/run installs it)");
        return Ok(());
    }
    let (_db_dir, url) = fresh_sqlite_file()?;
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
            "60",
        ],
    )
    .await?;
    let token = crate::owner_token(&url, dir.path()).await?;
    let (mut server, base) = crate::start_server(&url, dir.path(), "2").await?;

    let port = free_port()?;
    let mut driver = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let profile = tempfile::tempdir()?;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
                     "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())]
        }),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    let mut browser = None;
    for _ in 0..50 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&webdriver)
            .await
        {
            Ok(client) => {
                browser = Some(client);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let browser = browser.ok_or("chromedriver did not start")?;
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots)?;

    // Log in through the form.
    browser.goto(&format!("{base}/login")).await?;
    browser
        .find(Locator::Css("#token"))
        .await?
        .send_keys(&token)
        .await?;
    browser
        .find(Locator::Css("form.login button"))
        .await?
        .click()
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let landed = browser.current_url().await?;
    assert!(
        landed.path().ends_with("/tenants/contoso"),
        "landed on {landed}"
    );

    // Start a counted run (60 policies, 60 ms each) and watch its bar on the shell page.
    let api = reqwest::Client::new();
    let set: Value = api
        .post(format!("{base}/api/tenants/contoso/backup-sets"))
        .bearer_auth(&token)
        .json(&json!({"name": "n"}))
        .send()
        .await?
        .json()
        .await?;
    let ids: Vec<String> = (1..=60).map(|i| format!("pol-{i:05}")).collect();
    let run: Value = api
        .post(format!("{base}/api/tenants/contoso/operations"))
        .bearer_auth(&token)
        .json(&json!({"type": "backup_set.add_policies", "params": {"backup_set_id": set["id"], "policy_ids": ids}}))
        .send()
        .await?
        .json()
        .await?;
    let id = run["id"].as_i64().ok_or("no id")?;
    browser.goto(&format!("{base}/tenants/contoso")).await?;
    let mut seen = Vec::new();
    let mut shot_taken = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Read the widget in one script call: live.js replaces it on every event.
    let probe = format!(
        "var run = document.getElementById('run-{id}'); if (!run) {{ return null; }} \
         var outcome = run.querySelector('.outcome'); var bar = run.querySelector(\"progress[role='progressbar']\"); \
         return {{ outcome: outcome ? outcome.textContent : null, now: bar ? bar.getAttribute('aria-valuenow') : null }};"
    );
    loop {
        let state = browser.execute(&probe, vec![]).await?;
        if let Some(outcome) = state["outcome"].as_str() {
            assert_eq!(outcome, "✓ succeeded");
            break;
        }
        if let Some(now) = state["now"].as_str() {
            let now: i64 = now.parse()?;
            if seen.last() != Some(&now) {
                seen.push(now);
            }
            if !shot_taken && now > 20 {
                std::fs::write(shots.join("shell.png"), browser.screenshot().await?)?;
                shot_taken = true;
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(
                format!("the run did not finish in the page; bar values seen: {seen:?}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 3, "the bar should advance live; saw {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "the bar went back: {seen:?}"
    );
    assert!(seen.iter().all(|p| (0..=100).contains(p)));

    // The detail page.
    browser.goto(&format!("{base}/operations/{id}")).await?;
    let heading = browser.find(Locator::Css("h1")).await?.text().await?;
    let processed = browser
        .find(Locator::Css("[data-count='processed']"))
        .await?
        .text()
        .await?;
    let basis = browser.find(Locator::Css(".basis")).await?.text().await?;
    let timeline = browser
        .find(Locator::Css(".timeline"))
        .await?
        .text()
        .await?;
    let bars = browser
        .find_all(Locator::Css("[role='progressbar']"))
        .await?;
    std::fs::write(shots.join("detail.png"), browser.screenshot().await?)?;

    // Pause a second run from its detail page, see it held, resume it, see the estimate.
    let set2: Value = api
        .post(format!("{base}/api/tenants/contoso/backup-sets"))
        .bearer_auth(&token)
        .json(&json!({"name": "held"}))
        .send()
        .await?
        .json()
        .await?;
    let run2: Value = api
        .post(format!("{base}/api/tenants/contoso/operations"))
        .bearer_auth(&token)
        .json(&json!({"type": "backup_set.add_policies", "params": {"backup_set_id": set2["id"], "policy_ids": ids}}))
        .send()
        .await?
        .json()
        .await?;
    let id2 = run2["id"].as_i64().ok_or("no id")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let doc: Value = api
            .get(format!("{base}/api/operations/{id2}"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        if doc["progress"]["processed"].as_i64().unwrap_or(0) >= 5 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the second run did not start: {doc}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // live.js redraws the widget on every event: read it in one script call.
    let widget = "var q = function (c) { var e = document.querySelector(c); return e ? e.textContent : null; }; \
        return { paused: q('.paused'), numbers: q('.numbers'), estimate: q('.estimate'), \
                 resume: document.querySelectorAll('form.resume button').length, \
                 controls: Array.from(document.querySelectorAll('.controls > form, .controls > details')) \
                   .map(function (f) { return f.className; }) };";
    browser.goto(&format!("{base}/operations/{id2}")).await?;
    // The live stream redraws the detail body whole: click through one script call, so the
    // button clicked is the one on screen now.
    click(&browser, "form.pause button").await?;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    browser.goto(&format!("{base}/operations/{id2}")).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused = browser.execute(widget, vec![]).await?;
    std::fs::write(shots.join("detail-paused.png"), browser.screenshot().await?)?;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let still = browser.execute(widget, vec![]).await?;
    // The live stream redraws the detail body whole: click through one script call, so the
    // button clicked is the one on screen now.
    click(&browser, "form.resume button").await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    browser.goto(&format!("{base}/operations/{id2}")).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resumed = browser.execute(widget, vec![]).await?;
    std::fs::write(
        shots.join("detail-estimate.png"),
        browser.screenshot().await?,
    )?;
    // Watched to its end without a reload: the page offers no action the run no longer allows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // The outcome and the forms in one script call, so both come from one render.
    let ended = format!(
        "var w = (function () {{ {widget} }})(); var o = document.querySelector('.outcome'); \
         w.outcome = o ? o.textContent : null; return w;"
    );
    let finished = loop {
        let now = browser.execute(&ended, vec![]).await?;
        if now["outcome"].is_string() {
            break now;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the second run did not finish in the page: {now}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let paused_note = paused["paused"].as_str().unwrap_or_default().to_owned();
    let resume_buttons = paused["resume"].as_i64();
    let (held_at, still_held) = (paused["numbers"].clone(), still["numbers"].clone());
    let estimate = resumed["estimate"].as_str().unwrap_or_default().to_owned();
    let paused_after_resume = resumed["paused"].is_string();
    assert!(paused_note.starts_with("Paused:"), "{paused_note}");
    assert_eq!(resume_buttons, Some(1));
    assert!(held_at.is_string(), "{paused}");
    assert_eq!(held_at, still_held, "a paused run's numbers moved");
    assert!(estimate.starts_with("Estimate: about "), "{estimate}");
    assert!(!paused_after_resume, "{resumed}");
    assert_eq!(paused["controls"], json!(["resume", "cancel"]), "{paused}");
    assert_eq!(resumed["controls"], json!(["pause", "cancel"]), "{resumed}");
    assert_eq!(finished["controls"], json!([]), "{finished}");
    // The owner's tokens page lists the token this session was opened with.
    browser.goto(&format!("{base}/tokens")).await?;
    let token_rows = browser
        .find_all(Locator::Css("tr[data-token-id]"))
        .await?
        .len();
    std::fs::write(shots.join("tokens.png"), browser.screenshot().await?)?;
    // Logging out ends the session on the server: the pages send the browser back to login.
    browser
        .find(Locator::Css("form.logout button"))
        .await?
        .click()
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_logout = browser.current_url().await?;
    browser.goto(&format!("{base}/operations")).await?;
    let after_revisit = browser.current_url().await?;
    browser.close().await?;
    driver.start_kill()?;
    server.start_kill()?;

    assert_eq!(
        heading,
        format!("Operation {id}: Add policies to backup set")
    );
    assert_eq!(processed, "60");
    assert_eq!(basis, "Total from: 60 requested policies");
    assert!(timeline.contains("operation completed"), "{timeline}");
    // A completed run shows its outcome, never a bar.
    assert!(bars.is_empty());
    assert_eq!(token_rows, 1);
    assert!(after_logout.path().ends_with("/login"), "{after_logout}");
    assert!(after_revisit.path().ends_with("/login"), "{after_revisit}");
    Ok(())
}
