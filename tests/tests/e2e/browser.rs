//! The pages in a real headless Chromium (Debian's `chromium` and `chromium-driver`, installed
//! by the test command when missing): log in with a token, watch a run's bar advance on the
//! tenant shell, check the detail page's DOM. Screenshots are saved under `target/tmp/browser`.

use std::process::Stdio;
use std::time::Duration;

use crate::serve::{Contoso, contoso_server};
use fantoccini::{ClientBuilder, Locator};
use opsrun_tests::TestError;
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

/// A Chrome DevTools command through chromedriver (`goog/cdp/execute`): WebDriver itself
/// cannot emulate `prefers-color-scheme`.
#[derive(Debug)]
struct Cdp(Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(self.0.to_string()))
    }
}

/// Screenshots of the page as it is now at 1280 and 390 px wide, light and dark, as
/// `NAME-WIDTH-SCHEME.png`; at every width the page must not scroll sideways. Leaves the
/// browser at 1280 px, light.
async fn shots(
    browser: &fantoccini::Client,
    dir: &std::path::Path,
    name: &str,
) -> Result<(), TestError> {
    for scheme in ["light", "dark"] {
        browser
            .issue_cmd(Cdp(json!({"cmd": "Emulation.setEmulatedMedia",
                "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]}})))
            .await?;
        for width in [1280_u32, 390] {
            browser.set_window_size(width, 900).await?;
            tokio::time::sleep(Duration::from_millis(150)).await;
            let sideways = browser
                .execute(
                    "var d = document.documentElement; return [d.scrollWidth, d.clientWidth];",
                    vec![],
                )
                .await?;
            let (scroll, client) = (sideways[0].as_i64(), sideways[1].as_i64());
            assert!(
                scroll <= client,
                "{name} scrolls sideways at {width} px: {sideways}"
            );
            std::fs::write(
                dir.join(format!("{name}-{width}-{scheme}.png")),
                browser.screenshot().await?,
            )?;
        }
    }
    browser
        .issue_cmd(Cdp(json!({"cmd": "Emulation.setEmulatedMedia",
            "params": {"features": [{"name": "prefers-color-scheme", "value": "light"}]}})))
        .await?;
    browser.set_window_size(1280, 900).await?;
    Ok(())
}

fn free_port() -> Result<u16, TestError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A logged-in headless Chromium on a fresh `opsrun serve` (SQLite) with tenant `contoso` of
/// workspace `acme`, made with `tenant` as its extra `tenants add` options.
struct Session {
    browser: fantoccini::Client,
    base: String,
    token: String,
    shots: std::path::PathBuf,
    driver: tokio::process::Child,
    server: tokio::process::Child,
    _dirs: (
        Option<tempfile::TempDir>,
        tempfile::TempDir,
        tempfile::TempDir,
    ),
}

impl Session {
    /// `None` (after a loud NOT RUN) when Chromium is missing and not required.
    async fn open(tenant: &[&str], workers: &str) -> Result<Option<Self>, TestError> {
        if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists()
        {
            if std::env::var("OPSRUN_REQUIRE_BROWSER").as_deref() == Ok("1") {
                return Err("OPSRUN_REQUIRE_BROWSER=1 but chromium/chromedriver are missing (tests/run installs them)".into());
            }
            #[expect(clippy::print_stderr, reason = "a skipped test must be visible")]
            {
                eprintln!("NOT RUN: Chromium is not installed (tests/run installs it)");
            }
            return Ok(None);
        }
        let Contoso {
            server,
            base,
            token,
            dir,
            _db: db_dir,
            ..
        } = contoso_server(tenant, &["--workers", workers]).await?;

        let port = free_port()?;
        let driver = tokio::process::Command::new(CHROMEDRIVER)
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
        Ok(Some(Self {
            browser,
            base,
            token,
            shots,
            driver,
            server,
            _dirs: (db_dir, dir, profile),
        }))
    }

    /// `POST` (with `body`) or `GET` (without) on the API as the owner; the JSON answer.
    async fn api(&self, path: &str, body: Option<Value>) -> Result<Value, TestError> {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", self.base);
        let request = match body {
            Some(body) => client.post(url).json(&body),
            None => client.get(url),
        };
        Ok(request
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn close(mut self) -> Result<(), TestError> {
        self.browser.clone().close().await?;
        self.driver.start_kill()?;
        self.server.start_kill()?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pages_show_truthful_live_progress_in_a_real_browser() -> Result<(), TestError> {
    let Some(session) = Session::open(&["--policies", "60", "--latency-ms", "60"], "2").await?
    else {
        return Ok(());
    };
    let Session {
        browser,
        base,
        token,
        shots,
        ..
    } = &session;
    let (browser, base, token, shots) =
        (browser.clone(), base.clone(), token.clone(), shots.clone());

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
    // Both runs ended: two unread notifications, in the header and on their page; marking
    // them all read clears the count.
    browser.goto(&format!("{base}/notifications")).await?;
    let inbox = "return { badge: (document.querySelector('.top .badge') || {}).textContent || null, \
        unread: document.querySelectorAll('.notifications li.unread').length, \
        read: document.querySelectorAll('.notifications li.read').length };";
    let unread = browser.execute(inbox, vec![]).await?;
    std::fs::write(shots.join("notifications.png"), browser.screenshot().await?)?;
    click(&browser, "form.read-all button").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all_read = browser.execute(inbox, vec![]).await?;

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
    session.close().await?;

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
    assert_eq!(unread, json!({"badge": "2", "unread": 2, "read": 0}));
    assert_eq!(all_read, json!({"badge": null, "unread": 0, "read": 2}));
    assert!(after_logout.path().ends_with("/login"), "{after_logout}");
    assert!(after_revisit.path().ends_with("/login"), "{after_revisit}");
    Ok(())
}

/// Polls `script` in the page until it answers something other than `null` (or 60 s pass).
async fn until(browser: &fantoccini::Client, script: &str) -> Result<Value, TestError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let value = browser.execute(script, vec![]).await?;
        if !value.is_null() {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the page never answered: {script}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text a person reads in the page's live region (the run views), without the versions.
const LIVE_TEXT: &str = "return document.querySelector('[data-live]').innerText;";

/// The truth of live pages, as a person sees it:
/// - a restore's detail page opened while it waits behind another run ends showing exactly
///   what a reload shows (every count, the failed items, the outcome, no cancel);
/// - the tenant feed shows a run started after it loaded within 2 s;
/// - the collection with 50 active runs keeps the page's other requests under 1 s (one stream
///   per page, not one per row);
/// - cancelling asks first, naming what stops; a phased run lists its phases.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_page_ends_as_a_reload_shows_it() -> Result<(), TestError> {
    let tenant = [
        "--policies",
        "99",
        "--latency-ms",
        "30",
        "--failure-rate",
        "0.2",
    ];
    let Some(session) = Session::open(&tenant, "1").await? else {
        return Ok(());
    };
    let browser = session.browser.clone();
    let base = session.base.clone();
    let wait_done = |id: i64| {
        let session = &session;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            loop {
                let doc = session.api(&format!("/api/operations/{id}"), None).await?;
                if doc["status"] == "completed" {
                    return Ok::<Value, TestError>(doc);
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("run {id} did not complete: {doc}").into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let start = |body: Value| {
        let session = &session;
        async move {
            let doc = session
                .api("/api/tenants/contoso/operations", Some(body))
                .await?;
            doc["id"].as_i64().ok_or_else(|| TestError::from("no id"))
        }
    };
    let set = |name: &'static str| {
        let session = &session;
        async move {
            let doc = session
                .api(
                    "/api/tenants/contoso/backup-sets",
                    Some(json!({ "name": name })),
                )
                .await?;
            Ok::<Value, TestError>(doc["id"].clone())
        }
    };
    let all: Vec<String> = (1..=99).map(|i| format!("pol-{i:05}")).collect();

    // The feed is open before anything runs: the first run appears within 2 s.
    browser.goto(&format!("{base}/tenants/contoso")).await?;
    let source = set("source").await?;
    let filled = start(json!({"type": "backup_set.add_policies",
        "params": {"backup_set_id": source, "policy_ids": all}}))
    .await?;
    let started = tokio::time::Instant::now();
    until(
        &browser,
        &format!("return document.getElementById('run-{filled}') ? true : null;"),
    )
    .await?;
    let appeared = started.elapsed();
    wait_done(filled).await?;

    // One worker: a blocker holds it, so the restore waits when its page opens.
    let blocker_set = set("blocker").await?;
    let blocker = start(json!({"type": "backup_set.add_policies",
        "params": {"backup_set_id": blocker_set, "policy_ids": all}}))
    .await?;
    // The blocker holds the one worker before the restore is queued behind it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while session
        .api(&format!("/api/operations/{blocker}"), None)
        .await?["status"]
        != "running"
    {
        if tokio::time::Instant::now() > deadline {
            return Err("the blocker never started".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restore = start(json!({"type": "backup_set.restore",
        "params": {"backup_set_id": source}}))
    .await?;
    browser
        .goto(&format!("{base}/operations/{restore}"))
        .await?;
    let waiting = browser.execute(LIVE_TEXT, vec![]).await?;
    std::fs::write(
        session.shots.join("detail-waiting.png"),
        browser.screenshot().await?,
    )?;
    // While it runs, the page shows its child jobs apart from its items. Held (paused) as
    // soon as its jobs are out, so the page is read while it runs however fast the machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while session
        .api(&format!("/api/operations/{restore}"), None)
        .await?
        .get("children")
        .is_none()
    {
        if tokio::time::Instant::now() > deadline {
            return Err("the restore never dispatched its child jobs".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    session
        .api(&format!("/api/operations/{restore}/pause"), Some(json!({})))
        .await?;
    let child_jobs = until(
        &browser,
        "var c = document.querySelector('[data-live] .child-jobs'); return c ? c.textContent : null;",
    )
    .await?;
    std::fs::write(
        session.shots.join("detail-child-jobs.png"),
        browser.screenshot().await?,
    )?;
    session
        .api(
            &format!("/api/operations/{restore}/resume"),
            Some(json!({})),
        )
        .await?;
    let outcome = until(
        &browser,
        "var o = document.querySelector('[data-live] .progress .outcome'); return o ? o.textContent : null;",
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let live = browser.execute(LIVE_TEXT, vec![]).await?;
    let jobs_after = browser
        .execute(
            "return document.querySelectorAll('[data-live] .child-jobs').length;",
            vec![],
        )
        .await?;
    browser.refresh().await?;
    let reloaded = browser.execute(LIVE_TEXT, vec![]).await?;
    let doc = session
        .api(&format!("/api/operations/{restore}"), None)
        .await?;
    let controls = browser
        .execute(
            "return document.querySelectorAll('.controls form.cancel, .controls form.pause').length;",
            vec![],
        )
        .await?;
    // A completed run with failed items keeps following: a retry started elsewhere shows up.
    let retry = session
        .api(&format!("/api/operations/{restore}/retry"), Some(json!({})))
        .await?;
    let retry = retry["id"].as_i64().ok_or("no retry id")?;
    let retried_by = until(
        &browser,
        "var r = document.querySelector('[data-live] .retried-by'); return r ? r.textContent : null;",
    )
    .await?;

    // Failed backup items by the policy each captured, the key beside it.
    let named = browser
        .execute(
            "return Array.from(document.querySelectorAll('table.failed tbody td:first-child')) \
               .filter(function (c) { return /^Policy \\d+ \\(\\w+\\) \\d+$/.test(c.textContent); }).length;",
            vec![],
        )
        .await?;
    shots(&browser, &session.shots, "detail").await?;
    // Every failed item on its own page, named, with its position; and as CSV.
    browser
        .goto(&format!("{base}/operations/{restore}/items?outcome=failed"))
        .await?;
    let failed_page = browser
        .execute(
            "return { shown: document.querySelector('.shown').textContent, \
                      rows: document.querySelectorAll('table.items tbody tr').length, \
                      named: document.querySelectorAll('table.items tbody td .key').length };",
            vec![],
        )
        .await?;
    let csv = browser
        .execute_async(
            &format!(
                "var done = arguments[arguments.length - 1]; \
                 fetch('/operations/{restore}/items.csv?outcome=failed').then(function (r) {{ return r.text(); }}).then(done);"
            ),
            vec![],
        )
        .await?;
    // The fill run's 99 items over two pages of 50.
    browser
        .goto(&format!("{base}/operations/{filled}/items"))
        .await?;
    click(&browser, "a[rel=next]").await?;
    let second_page = until(
        &browser,
        "return location.search.indexOf('cursor=') >= 0 \
           ? document.querySelector('.shown').textContent : null;",
    )
    .await?;
    shots(&browser, &session.shots, "items").await?;
    browser.goto(&format!("{base}/tenants/contoso")).await?;
    shots(&browser, &session.shots, "feed").await?;
    wait_done(blocker).await?;

    // 50 active runs (one worker, a blocker ahead of them) on the collection page: a request
    // from the page still answers within 1 s.
    let slow_set = set("slow").await?;
    let slow = start(json!({"type": "backup_set.add_policies",
        "params": {"backup_set_id": slow_set, "policy_ids": all}}))
    .await?;
    // Held from its first item on (paused: it keeps its total and counts, starts nothing
    // new, and can still be cancelled), so it is active for the collection below and still
    // cancellable when the cancel question is asked, however slow the machine is.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while session
        .api(&format!("/api/operations/{slow}"), None)
        .await?["summary_counts"]["processed"]
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        if tokio::time::Instant::now() > deadline {
            return Err("the slow run never started".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    session
        .api(&format!("/api/operations/{slow}/pause"), Some(json!({})))
        .await?;
    for i in 0..49 {
        let one = set("one").await?;
        start(json!({"type": "backup_set.add_policies",
            "params": {"backup_set_id": one, "policy_ids": [format!("pol-{:05}", i + 1)]}}))
        .await?;
    }
    browser.goto(&format!("{base}/operations")).await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let timed = browser
        .execute_async(
            "var done = arguments[arguments.length - 1]; var t = performance.now(); \
             fetch('/healthz').then(function () { done(performance.now() - t); });",
            vec![],
        )
        .await?;
    let rows = browser
        .execute(
            "return document.querySelectorAll('tbody[data-live] tr').length;",
            vec![],
        )
        .await?;
    shots(&browser, &session.shots, "collection").await?;
    // Created in the last hour: every run here is.
    browser.goto(&format!("{base}/operations?since=1h")).await?;
    let recent = browser
        .execute(
            "return [document.querySelectorAll('tbody[data-live] tr').length, \
                     document.getElementById('f-since').value];",
            vec![],
        )
        .await?;
    browser.goto(&format!("{base}/operations")).await?;
    let first_position = browser
        .execute(
            "return document.querySelector('.pager .position').textContent;",
            vec![],
        )
        .await?;
    click(&browser, "a[rel=next]").await?;
    let second_position = until(
        &browser,
        "return location.search.indexOf('cursor=') >= 0 \
           ? [document.querySelector('.pager .position').textContent, \
              document.querySelectorAll('.pager a').length] : null;",
    )
    .await?;

    // Cancel asks first, naming what stops; only the confirmation cancels.
    browser.goto(&format!("{base}/operations/{slow}")).await?;
    click(&browser, "details.cancel summary").await?;
    let question = browser
        .execute(
            "var q = document.querySelector('details.cancel[open] p'); return q ? q.textContent : null;",
            vec![],
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = session
        .api(&format!("/api/operations/{slow}"), None)
        .await?;
    std::fs::write(
        session.shots.join("detail-cancel-question.png"),
        browser.screenshot().await?,
    )?;
    click(&browser, "details.cancel button.danger").await?;
    let cancelled = wait_done(slow).await?;

    // The overview counts what the API lists (read until both agree: runs move meanwhile).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let overview = loop {
        browser.goto(&format!("{base}/overview")).await?;
        let shown = browser
            .execute(
                "var c = document.querySelectorAll('table.overview tbody tr td'); \
                 return [c[0].textContent, c[1].textContent, c[2].textContent];",
                vec![],
            )
            .await?;
        let count = |status: &'static str| {
            let session = &session;
            async move {
                let page = session
                    .api(&format!("/api/operations?status={status}&limit=200"), None)
                    .await?;
                Ok::<usize, TestError>(page["items"].as_array().map_or(0, Vec::len))
            }
        };
        let expected = json!([
            "contoso",
            count("running").await?.to_string(),
            count("queued").await?.to_string()
        ]);
        if shown == expected {
            break shown;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the overview shows {shown}, the API {expected}").into());
        }
    };
    shots(&browser, &session.shots, "overview").await?;

    // Start forms on the tenant page: a refusal shows at its form; a start opens the run.
    browser.goto(&format!("{base}/tenants/contoso")).await?;
    let submit = |key: &str| {
        format!(
            "document.querySelector('details.start').open = true; \
             var d = document.getElementById('start-{key}'); d.open = true; \
             d.querySelector('button[type=submit]').click(); return true;"
        )
    };
    // The second backup set picked, no policy ticked: refused, and shown again as sent.
    browser
        .execute(
            "document.getElementById('start-backup_set.add_policies').querySelector('select').selectedIndex = 1; return true;",
            vec![],
        )
        .await?;
    browser
        .execute(&submit("backup_set.add_policies"), vec![])
        .await?;
    let refusal = until(
        &browser,
        "var d = document.getElementById('start-backup_set.add_policies'); \
         var e = d && d.open && d.querySelector('.form-error'); return e ? e.textContent : null;",
    )
    .await?;
    let kept = browser
        .execute(
            "return document.getElementById('start-backup_set.add_policies').querySelector('select').selectedIndex;",
            vec![],
        )
        .await?;
    std::fs::write(
        session.shots.join("tenant-start-refused.png"),
        browser.screenshot().await?,
    )?;
    browser.execute(&submit("inventory.sync"), vec![]).await?;
    let started_page = until(
        &browser,
        "return /\\/operations\\/\\d+$/.test(location.pathname) \
           ? document.querySelector('h1').textContent : null;",
    )
    .await?;

    // A phased run lists its phases, each done.
    let capture = start(json!({"type": "baseline.capture"})).await?;
    wait_done(capture).await?;
    browser
        .goto(&format!("{base}/operations/{capture}"))
        .await?;
    let phases = browser
        .execute(
            "return Array.from(document.querySelectorAll('.phases li')).map(function (l) { \
               return l.className + ' ' + /^done · \\d+\\.\\ds$/.test(l.querySelector('.phase-state').textContent); });",
            vec![],
        )
        .await?;
    shots(&browser, &session.shots, "detail-phased").await?;

    // Results: the review pack (downloadable), the evidence snapshot, the comparison's findings.
    let baselines = session.api("/api/tenants/contoso/baselines", None).await?;
    let baseline = baselines["items"][0]["id"].clone();
    let mut results = Vec::new();
    for body in [
        json!({"type": "review_pack.generate"}),
        json!({"type": "evidence_snapshot.generate"}),
        json!({"type": "baseline.compare", "params": {"baseline_id": baseline}}),
    ] {
        let id = start(body).await?;
        wait_done(id).await?;
        browser.goto(&format!("{base}/operations/{id}")).await?;
        let shown = browser
            .execute(
                "var r = document.querySelector('.results'); return r ? r.innerText : null;",
                vec![],
            )
            .await?;
        results.push((id, shown));
    }
    let pack = browser
        .execute_async(
            &format!(
                "var done = arguments[arguments.length - 1]; \
                 fetch('/operations/{}/artifact').then(function (r) {{ return r.text(); }}).then(done);",
                results[0].0
            ),
            vec![],
        )
        .await?;
    std::fs::write(
        session.shots.join("detail-results.png"),
        browser.screenshot().await?,
    )?;
    session.close().await?;

    assert!(appeared < Duration::from_secs(2), "{appeared:?}");
    let waiting = waiting.as_str().unwrap_or_default();
    assert!(waiting.starts_with("waiting"), "{waiting}");
    assert!(!waiting.contains("working"), "{waiting}");
    assert_eq!(doc["outcome"], "partially_succeeded", "{doc}");
    assert_eq!(outcome, "⚠ partially succeeded");
    assert_eq!(live, reloaded, "the live page ended apart from a reload");
    // One job per item for a fan-out this small (every worker gets some); a completed run
    // no longer shows them (its last job finishes just after it).
    let child_jobs = child_jobs.as_str().unwrap_or_default().to_owned();
    let expected_tail = format!(
        " of {} ended (the pause stops each before its next item; resuming hands out the rest as new jobs) · the bar counts items, not jobs",
        doc["summary_counts"]["total"]
    );
    assert!(
        child_jobs.starts_with("Child jobs: ") && child_jobs.ends_with(&expected_tail),
        "{child_jobs}"
    );
    assert_eq!(
        jobs_after,
        json!(0),
        "a completed run's page shows no child jobs"
    );
    let text = live.as_str().unwrap_or_default();
    let failed = doc["summary_counts"]["failed"].as_u64().unwrap_or_default();
    assert!(failed > 0, "{doc}");
    assert!(text.contains(&format!("failed\t{failed}")), "{text}");
    let total = doc["summary_counts"]["total"].as_u64().unwrap_or_default();
    assert_eq!(doc["summary_counts"]["processed"], json!(total), "{doc}");
    assert!(text.contains(&format!("processed\t{total}")), "{text}");
    assert!(
        text.contains(&format!("Showing {failed} of {failed} failed items")),
        "{text}"
    );
    assert_eq!(controls, json!(0));
    assert_eq!(
        retried_by,
        json!(format!("Failed items retried by operation {retry}."))
    );
    assert_eq!(
        named,
        json!(failed),
        "every failed item named by its policy"
    );
    assert_eq!(
        failed_page,
        json!({"shown": format!("Showing 1–{failed} of {failed} failed items, by key."),
               "rows": failed, "named": failed})
    );
    let csv = csv.as_str().unwrap_or_default();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"item_key,name,outcome,reason,recorded_at")
    );
    assert_eq!(lines.len() as u64, failed + 1, "{csv}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(",failed,simulated.item_failed,")),
        "{csv}"
    );
    assert_eq!(second_page, json!("Showing 51–99 of 99 items, by key."));
    assert_eq!(rows, json!(25), "a page of the collection");
    assert_eq!(first_position, json!("Operations 1–25, newest first"));
    assert_eq!(recent, json!([25, "1h"]));
    // The second page: its place, and both ways out (newest, older).
    assert_eq!(
        second_position,
        json!(["Operations 26–50, newest first", 2])
    );
    assert_eq!(overview[0], "contoso");
    let ms = timed.as_f64().unwrap_or(f64::MAX);
    assert!(ms < 1_000.0, "a request from the page took {ms} ms");
    let question = question.as_str().unwrap_or_default();
    assert!(
        question.starts_with("Cancel add policies to backup set of 99 items?"),
        "{question}"
    );
    assert_ne!(before["status"], "completed", "{before}");
    assert_eq!(cancelled["outcome"], "cancelled");
    // Each phase done, with how long it took.
    assert_eq!(
        phases,
        json!(["phase-done true", "phase-done true", "phase-done true"])
    );
    assert_eq!(
        refusal,
        json!("backup_set.add_policies needs the parameter 'policy_ids'")
    );
    assert_eq!(
        kept,
        json!(1),
        "the refused form keeps the backup set picked"
    );
    let text = |i: usize| results[i].1.as_str().unwrap_or_default().to_owned();
    assert!(text(0).contains("Review pack:"), "{}", text(0));
    assert!(text(0).contains("Download"), "{}", text(0));
    assert!(
        pack.as_str()
            .unwrap_or_default()
            .starts_with("# Review pack"),
        "{pack}"
    );
    assert!(text(1).contains("Evidence snapshot"), "{}", text(1));
    assert!(text(1).contains("sha256"), "{}", text(1));
    assert!(text(2).contains("Findings:"), "{}", text(2));
    let started_page = started_page.as_str().unwrap_or_default();
    assert!(started_page.ends_with(": Inventory sync"), "{started_page}");
    Ok(())
}

/// The webhooks page as an owner sees it: a refused URL says why and keeps what was typed; a
/// registered endpoint shows its secret once; a completed run appears in the endpoint's
/// delivery log with its failed attempts (the receiver's name does not resolve here), and
/// "Redeliver" adds a delivery of the same event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_manages_webhooks_and_reads_their_delivery_log() -> Result<(), TestError> {
    let Some(session) = Session::open(&["--policies", "4"], "2").await? else {
        return Ok(());
    };
    let browser = session.browser.clone();
    let base = session.base.clone();
    let text = |css: &'static str| {
        let browser = browser.clone();
        async move {
            let found = browser
                .execute(
                    "var e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                    vec![Value::String(css.to_owned())],
                )
                .await?;
            Ok::<String, TestError>(found.as_str().unwrap_or_default().to_owned())
        }
    };
    browser.goto(&format!("{base}/webhooks")).await?;
    assert!(text("main").await?.contains("No endpoint yet."));
    let fill = |url: &'static str| {
        let browser = browser.clone();
        async move {
            browser
                .execute(
                    "document.getElementById('webhook-url').value = arguments[0];",
                    vec![Value::String(url.to_owned())],
                )
                .await?;
            click(&browser, "form.add-webhook button").await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<(), TestError>(())
        }
    };
    fill("http://10.0.0.1/hook").await?;
    let error = text("p.error").await?;
    assert!(error.contains("https"), "{error}");
    let kept = browser
        .execute(
            "return document.getElementById('webhook-url').value;",
            vec![],
        )
        .await?;
    assert_eq!(kept, "http://10.0.0.1/hook");
    fill("https://hooks.example.com/opsrun").await?;
    let secret = text("code.secret").await?;
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );
    assert!(
        text("table.webhooks")
            .await?
            .contains("https://hooks.example.com/opsrun")
    );
    shots(&browser, &session.shots, "webhooks").await?;
    // Shown once: a reload lists the endpoint without it.
    browser.goto(&format!("{base}/webhooks")).await?;
    assert_eq!(text("code.secret").await?, "");

    let run = session
        .api(
            "/api/tenants/contoso/operations",
            Some(json!({"type": "inventory.sync"})),
        )
        .await?["id"]
        .as_i64()
        .ok_or("no id")?;
    let hooks = session.api("/api/webhooks", None).await?;
    let hook = hooks["items"][0]["id"].as_i64().ok_or("no webhook")?;
    let event = format!("evt_{run}_completed");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let log = session
            .api(&format!("/api/webhooks/{hook}/deliveries"), None)
            .await?;
        if log["items"][0]["attempts"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("no attempt: {log}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.goto(&format!("{base}/webhooks/{hook}")).await?;
    let log = text("table.deliveries").await?;
    assert!(log.contains(&event), "{log}");
    assert!(log.contains("pending"), "{log}");
    assert!(log.contains("could not connect"), "{log}");
    click(&browser, "form.redeliver button").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows = browser
        .execute(
            "return document.querySelectorAll('table.deliveries tbody tr').length;",
            vec![],
        )
        .await?;
    assert_eq!(rows, 2);
    assert!(text("table.deliveries").await?.contains("redelivery of"));
    shots(&browser, &session.shots, "webhook-deliveries").await?;
    session.close().await
}
