//! The command line's contract: exit 0 on success, 2 with one line on stderr for bad usage or
//! bad input (nothing written), 1 for other failures.

use opsrun_tests::{TestError, fresh_sqlite_file};

async fn run(url: &str, args: &[&str]) -> Result<(i32, String, String), TestError> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsrun-under-test"))
        .args(["--database-url", url])
        .args(args)
        .env("OPSRUN_LOG", "error")
        .output()
        .await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

#[tokio::test]
async fn bad_usage_and_bad_input_exit_2_with_one_line() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    let cases: [&[&str]; 6] = [
        &["no-such-command"],
        &["tenants", "add", "Bad_Slug", "--workspace", "acme"],
        &[
            "tenants",
            "add",
            "ok",
            "--workspace",
            "acme",
            "--failure-rate",
            "2",
        ],
        &[
            "token",
            "create",
            "--workspace",
            "acme",
            "--email",
            "a@b.c",
            "--role",
            "root",
        ],
        &["ops", "start", "nope.type", "--tenant", "ok"],
        &["ops", "show", "not-a-number"],
    ];
    for args in cases {
        let (code, stdout, stderr) = run(&url, args).await?;

        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("opsrun: "), "{args:?}: {stderr}");
    }
    Ok(())
}

#[tokio::test]
async fn tenants_add_prints_the_slug_and_refuses_a_duplicate() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;

    let first = run(
        &url,
        &[
            "tenants",
            "add",
            "contoso",
            "--workspace",
            "acme",
            "--policies",
            "3",
        ],
    )
    .await?;
    let again = run(&url, &["tenants", "add", "contoso", "--workspace", "acme"]).await?;
    let token = run(
        &url,
        &[
            "token",
            "create",
            "--workspace",
            "acme",
            "--email",
            "ops@example.com",
            "--role",
            "owner",
        ],
    )
    .await?;
    let listed = run(&url, &["ops", "list"]).await?;

    assert_eq!((first.0, first.1.as_str()), (0, "contoso\n"));
    assert_eq!(again.0, 2);
    assert_eq!(token.0, 0);
    assert_eq!(token.1.trim().len(), 4 + 64);
    assert!(token.1.starts_with("ops_"));
    assert_eq!(listed.0, 0);
    assert_eq!(listed.1.lines().count(), 1, "only the header: {}", listed.1);
    Ok(())
}

/// apalis-sqlite measures worker liveness in whole seconds: a window under 3 s would mark live
/// workers dead and run their jobs twice, so `worker` and `serve` refuse it before opening
/// anything (the database file is not even created).
#[tokio::test]
async fn a_liveness_window_sqlite_cannot_measure_is_refused() -> Result<(), TestError> {
    let (dir, url) = fresh_sqlite_file()?;
    let short = ["--heartbeat-ms", "500", "--missed-heartbeats", "2"];

    let (worker, _, worker_err) = run(&url, &[&["worker"][..], &short].concat()).await?;
    let (serve, _, serve_err) = run(
        &url,
        &[&["serve", "--bind", "127.0.0.1:0"][..], &short].concat(),
    )
    .await?;

    for (code, stderr) in [(worker, &worker_err), (serve, &serve_err)] {
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("at least 3000 ms"), "{stderr}");
    }
    assert!(!dir.path().join("opsrun.db").exists());
    Ok(())
}

#[tokio::test]
async fn run_control_from_the_command_line() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    let ok = |r: (i32, String, String)| -> Result<String, TestError> {
        if r.0 == 0 {
            Ok(r.1)
        } else {
            Err(format!("exit {}: {}", r.0, r.2).into())
        }
    };
    ok(run(&url, &["tenants", "add", "contoso", "--workspace", "acme"]).await?)?;
    let started = ok(run(
        &url,
        &["ops", "start", "baseline.capture", "--tenant", "contoso"],
    )
    .await?)?;
    let id = started.split_whitespace().next().ok_or("no id")?.to_owned();

    let paused = ok(run(&url, &["ops", "pause", &id]).await?)?;
    let listed = ok(run(&url, &["ops", "list"]).await?)?;
    let resumed = ok(run(&url, &["ops", "resume", &id]).await?)?;
    let active = run(&url, &["ops", "retry", &id]).await?;
    let limit = ok(run(&url, &["tenants", "limit", "contoso", "--max-running", "2"]).await?)?;
    let tenants = ok(run(&url, &["tenants", "list"]).await?)?;
    let workspaces = ok(run(&url, &["workspaces", "list"]).await?)?;
    let back = ok(run(&url, &["tenants", "limit", "contoso", "--default"]).await?)?;
    let bad_limit = run(&url, &["tenants", "limit", "contoso", "--max-running", "0"]).await?;
    let unknown = run(&url, &["tenants", "limit", "nosuch", "--max-running", "2"]).await?;
    let shown = ok(run(&url, &["ops", "show", &id]).await?)?;
    let paused_doc: serde_json::Value =
        serde_json::from_str(&ok(run(&url, &["ops", "pause", &id, "-o", "json"]).await?)?)?;
    let cancelled_doc: serde_json::Value =
        serde_json::from_str(&ok(run(&url, &["ops", "cancel", &id, "--json"]).await?)?)?;
    let started_doc: serde_json::Value = serde_json::from_str(&ok(run(
        &url,
        &[
            "ops",
            "start",
            "inventory.sync",
            "--tenant",
            "contoso",
            "-o",
            "json",
        ],
    )
    .await?)?)?;

    assert_eq!(
        paused
            .lines()
            .next()
            .map(|l| l.starts_with(&format!("{id} paused"))),
        Some(true),
        "{paused}"
    );
    assert!(listed.contains("waiting for a worker (paused)"), "{listed}");
    assert_eq!(resumed.trim(), format!("{id} resumed"));
    assert_eq!(active.0, 2, "{active:?}");
    assert!(active.2.contains("not_completed"), "{active:?}");
    assert_eq!(limit.trim(), "contoso: at most 2 runs at once");
    assert_eq!(tenants, "tenant\tmax_running\ncontoso\t2\n");
    assert_eq!(workspaces, "acme\n");
    assert_eq!(
        back.trim(),
        "contoso: the workers' --tenant-concurrency applies"
    );
    assert_eq!((bad_limit.0, bad_limit.1.as_str()), (2, ""));
    assert_eq!((unknown.0, unknown.1.as_str()), (2, ""));
    assert!(
        unknown.2.contains("tenant 'nosuch' not found"),
        "{unknown:?}"
    );
    assert_eq!(
        (&paused_doc["id"], &paused_doc["progress"]["paused"]),
        (
            &serde_json::json!(id.parse::<i64>()?),
            &serde_json::json!(true)
        )
    );
    assert_eq!(
        (&cancelled_doc["status"], &cancelled_doc["outcome"]),
        (
            &serde_json::json!("completed"),
            &serde_json::json!("cancelled")
        )
    );
    assert_eq!(
        (&started_doc["type"], &started_doc["reused"]),
        (
            &serde_json::json!("inventory.sync"),
            &serde_json::json!(false)
        )
    );
    assert!(shown.contains("retry of   -"), "{shown}");
    assert!(shown.contains("estimate   -"), "{shown}");
    Ok(())
}

#[tokio::test]
async fn an_unknown_workspace_is_refused_and_a_closed_pipe_is_quiet() -> Result<(), TestError> {
    let (_dir, url) = fresh_sqlite_file()?;
    let token = |extra: &'static [&'static str]| {
        let url = url.clone();
        async move {
            let args = [
                &[
                    "token",
                    "create",
                    "--workspace",
                    "nosuch",
                    "--email",
                    "a@b.c",
                    "--role",
                    "owner",
                ][..],
                extra,
            ]
            .concat();
            run(&url, &args).await
        }
    };
    let refused = token(&[]).await?;
    let created = token(&["--create-workspace"]).await?;

    // The reader of stdout is gone before the program writes: no error line, exit 0.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsrun-under-test"))
        .args(["--database-url", &url, "token", "list"])
        .env("OPSRUN_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    drop(child.stdout.take());
    let out = child.wait_with_output().await?;

    assert_eq!((refused.0, refused.1.as_str()), (2, ""), "{refused:?}");
    assert!(
        refused.2.contains("workspace 'nosuch' does not exist"),
        "{refused:?}"
    );
    assert_eq!(created.0, 0, "{created:?}");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    Ok(())
}

/// `opsrun ARGS` in folder `cwd` with no `DATABASE_URL`: (exit, stdout, stderr).
async fn run_in(cwd: &std::path::Path, args: &[&str]) -> Result<(i32, String, String), TestError> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsrun-under-test"))
        .current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env("OPSRUN_LOG", "error")
        .args(args)
        .output()
        .await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_seeds_only_its_own_database_and_reads_create_nothing() -> Result<(), TestError> {
    let cwd = tempfile::tempdir()?;
    let path = cwd.path();

    let read = run_in(path, &["ops", "list"]).await?;
    let created_by_read = path.join("opsrun.db").exists();
    let demo = run_in(path, &["demo"]).await?;
    // An SQLite URL without a mode creates its file; a database of other workspaces is refused.
    let add = run_in(
        path,
        &[
            "--database-url",
            "sqlite://other.db",
            "tenants",
            "add",
            "t",
            "--workspace",
            "acme",
        ],
    )
    .await?;
    let refused = run_in(path, &["--database-url", "sqlite://other.db", "demo"]).await?;
    let began = std::time::Instant::now();
    let unreachable = run_in(
        path,
        &[
            "--database-url",
            "postgres://opsrun@127.0.0.1:1/none",
            "ops",
            "list",
        ],
    )
    .await?;
    let waited = began.elapsed();

    assert_eq!((read.0, read.1.as_str()), (2, ""), "{read:?}");
    assert!(
        read.2.contains("there is no database at opsrun.db"),
        "{read:?}"
    );
    assert!(!created_by_read, "a read created the database");
    assert_eq!(demo.0, 0, "{}", demo.2);
    assert!(path.join("opsrun-demo.db").exists());
    assert!(
        !path.join("opsrun.db").exists(),
        "the demo used the default database"
    );
    assert!(demo.1.contains("succeeded"), "{}", demo.1);
    assert_eq!(add.0, 0, "{add:?}");
    assert!(path.join("other.db").exists());
    assert_eq!((refused.0, refused.1.as_str()), (2, ""), "{refused:?}");
    assert!(
        refused.2.contains("other workspaces than demo (acme)"),
        "{refused:?}"
    );
    assert_eq!(unreachable.0, 1, "{unreachable:?}");
    assert!(
        unreachable.2.contains("cannot connect to PostgreSQL"),
        "{unreachable:?}"
    );
    assert!(
        unreachable.2.to_lowercase().contains("refused"),
        "{unreachable:?}"
    );
    assert!(waited < std::time::Duration::from_secs(6), "{waited:?}");
    Ok(())
}

#[tokio::test]
async fn help_has_examples_completions_and_a_man_page() -> Result<(), TestError> {
    let cwd = tempfile::tempdir()?;
    let short = run_in(cwd.path(), &["-h"]).await?;
    let long = run_in(cwd.path(), &["--help"]).await?;
    let start = run_in(cwd.path(), &["ops", "start", "--help"]).await?;
    let typo = run_in(cwd.path(), &["ops", "lst"]).await?;
    let bash = run_in(cwd.path(), &["completions", "bash"]).await?;
    let zsh = run_in(cwd.path(), &["completions", "zsh"]).await?;
    let man = run_in(cwd.path(), &["man"]).await?;

    // clap drops the summary's final period in the short help only.
    let first = |text: &str| {
        text.lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches('.')
            .to_owned()
    };
    assert_eq!(
        first(&short.1),
        first(&long.1),
        "-h and --help describe opsrun alike"
    );
    assert!(
        short.1.starts_with("opsrun runs long operations"),
        "{}",
        short.1
    );
    assert!(
        long.1.contains("Examples:") && long.1.contains("OPSRUN_LOG"),
        "{}",
        long.1
    );
    assert!(
        !long.1.contains("OPSRUN_ARTIFACTS="),
        "an empty env value is shown: {}",
        long.1
    );
    assert!(
        start
            .1
            .contains("backup_set.restore          backup_set_id=N"),
        "{}",
        start.1
    );
    assert_eq!(typo.0, 2);
    assert_eq!(typo.2.trim().lines().count(), 1, "{}", typo.2);
    assert!(
        typo.2.contains("similar subcommand exists: 'list'"),
        "{}",
        typo.2
    );
    assert_eq!(bash.0, 0);
    assert!(
        bash.1.contains("_opsrun()"),
        "{}",
        &bash.1[..bash.1.len().min(200)]
    );
    assert!(zsh.1.contains("#compdef opsrun"));
    assert!(
        man.1.contains(".TH opsrun"),
        "{}",
        &man.1[..man.1.len().min(200)]
    );
    // Nothing was created for help, completions or the manual.
    assert_eq!(std::fs::read_dir(cwd.path())?.count(), 0);
    Ok(())
}
