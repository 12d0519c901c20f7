//! The `opsrun` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use opsrun_adapters::queue::QueueSettings;
use opsrun_application::ports::SimulationSettings;
use opsrun_application::worker::RuntimeSettings;
use opsrun_domain::{Slug, Timestamp};

use crate::wiring::{Stack, StackOptions};

/// Default database: the embedded SQLite file in the current folder.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://opsrun.db?mode=rwc";

/// opsrun runs long operations for many tenants with truthful progress: a determinate bar only
/// when the work has a deterministic number of units, and a count that never passes its total,
/// never goes backwards and never counts an item twice, through retries, crashes and many
/// workers.
///
/// Every command migrates the schema on start if needed. Exit status: 0 success, 2 bad usage or
/// bad input, 1 any other failure.
#[derive(Debug, Parser)]
#[command(name = "opsrun", version, about, long_about)]
pub struct Cli {
    /// Database: an SQLite file (sqlite://FILE?mode=rwc) or a PostgreSQL URL
    /// (postgres://USER:PASS@HOST/DB). Swapping one for the other needs no other change.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true, hide_env_values = true)]
    pub database_url: String,

    /// Folder review-pack artifacts are written to.
    #[arg(
        long,
        env = "OPSRUN_ARTIFACTS",
        default_value = "artifacts",
        global = true
    )]
    pub artifacts: PathBuf,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the schema (runs, ledger, directory, family tables, job queue).
    Migrate,
    /// Seed a demo workspace with two simulated tenants, run every run family with live
    /// progress, and print a summary. Needs no setup: uses the embedded SQLite file by default.
    Demo,
    /// Serve the HTTP API and run job workers in one process, until SIGINT or SIGTERM.
    ///
    /// Prints the bound address as the first line of stdout (`listening on http://...`), so
    /// `--bind 127.0.0.1:0` can be used by scripts.
    Serve(ServeArgs),
    /// Run job workers until SIGINT or SIGTERM (for more machines against one PostgreSQL).
    ///
    /// In-flight jobs finish before exit; jobs fetched but not started go back to the queue.
    /// The worker also ends runs whose job is gone (no heartbeat within --stale-after-secs)
    /// and reconciles counts, every --maintenance-secs.
    Worker(WorkerArgs),
    /// Manage simulated tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(crate::ops::TokenCommand),
    /// List, show, start and cancel operations (as the workspace's owner).
    #[command(subcommand)]
    Ops(crate::ops::OpsCommand),
    /// End every running run with no sign of life for --stale-after-secs as failed (run.stale).
    FailStale {
        /// Seconds without a heartbeat after which a running run is stale.
        #[arg(long, default_value_t = crate::config::STALE_AFTER_SECS)]
        stale_after_secs: u64,
    },
    /// Recount every active run from its ledger (repairing drift) and complete fan-out parents
    /// whose children are all done.
    Reconcile,
}

/// Options of `opsrun serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "OPSRUN_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Worker settings of the in-process workers.
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Options of `opsrun worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Jobs run at once per queue.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Milliseconds between worker heartbeats.
    #[arg(long, env = "OPSRUN_HEARTBEAT_MS", default_value_t = 5_000)]
    pub heartbeat_ms: u64,
    /// Missed heartbeats after which a worker is dead and its jobs run again elsewhere.
    #[arg(long, env = "OPSRUN_MISSED_HEARTBEATS", default_value_t = 3)]
    pub missed_heartbeats: u32,
    /// Attempts per job before its run (or fan-out item) ends failed.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// Seconds without a sign of life after which a running run is failed as stale.
    #[arg(long, default_value_t = crate::config::STALE_AFTER_SECS)]
    pub stale_after_secs: u64,
    /// Seconds between maintenance passes (stale runs, reconcile).
    #[arg(long, default_value_t = 30)]
    pub maintenance_secs: u64,
}

/// `opsrun tenants ...`.
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create the workspace if missing and a tenant backed by the simulated provider; prints the
    /// tenant slug.
    Add(TenantAddArgs),
}

/// Options of `opsrun tenants add`.
#[derive(Debug, Clone, Args)]
pub struct TenantAddArgs {
    /// Tenant slug: lowercase letters, digits and '-', 1 to 63 characters, starting with a letter.
    pub slug: String,
    /// Workspace slug (created if missing).
    #[arg(long)]
    pub workspace: String,
    /// Number of policies the simulated tenant has, spread over the 8 policy types.
    #[arg(long, default_value_t = 40)]
    pub policies: u32,
    /// Milliseconds each provider call sleeps.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u32,
    /// Fraction of items that fail (0 to 1), chosen deterministically by --seed.
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Seed that chooses which items fail.
    #[arg(long, default_value_t = 1)]
    pub seed: i64,
}

/// A command's failure, with its exit status.
#[derive(Debug)]
pub enum CliError {
    /// Bad input: exit 2.
    Input(String),
    /// Anything else: exit 1.
    Failure(anyhow::Error),
}

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        Self::Failure(error)
    }
}

impl CliError {
    /// The exit status.
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Input(_) => ExitCode::from(2),
            Self::Failure(_) => ExitCode::from(1),
        }
    }

    /// The one line printed on stderr.
    #[must_use]
    pub fn line(&self) -> String {
        match self {
            Self::Input(message) => format!("opsrun: {message}"),
            Self::Failure(error) => format!("opsrun: {error:#}"),
        }
    }
}

pub(crate) fn runtime_settings(args: &WorkerArgs) -> RuntimeSettings {
    RuntimeSettings {
        stale_after: Duration::from_secs(args.stale_after_secs),
        maintenance_every: Duration::from_secs(args.maintenance_secs.max(1)),
        max_attempts: args.max_attempts.max(1),
    }
}

fn queue_settings(args: Option<&WorkerArgs>) -> QueueSettings {
    let defaults = QueueSettings::default();
    match args {
        None => defaults,
        Some(a) => QueueSettings {
            concurrency: a.workers.max(1),
            batch_size: a.workers.max(1),
            heartbeat: Duration::from_millis(a.heartbeat_ms.max(100)),
            missed_heartbeats: a.missed_heartbeats.max(1),
            max_attempts: a.max_attempts.max(1),
            ..defaults
        },
    }
}

async fn open(cli: &Cli, worker: Option<&WorkerArgs>) -> Result<Stack, CliError> {
    // The in-memory backend is for embedding and tests: a CLI process on it could not share
    // anything with another, so the command line takes only databases.
    if opsrun_adapters::sql::Backend::of_url(&cli.database_url).is_none() {
        return Err(CliError::Input(format!(
            "unsupported --database-url '{}': use sqlite://FILE?mode=rwc or postgres://...",
            crate::wiring::redact(&cli.database_url)
        )));
    }
    Ok(Stack::open(&StackOptions {
        database_url: cli.database_url.clone(),
        artifacts: cli.artifacts.clone(),
        queue: queue_settings(worker),
        max_connections: 16,
    })
    .await?)
}

/// Now, from the system clock (the one place the app reads it).
pub(crate) fn now() -> Timestamp {
    use opsrun_application::ports::Clock;
    opsrun_adapters::clock::SystemClock.now()
}

/// Runs a parsed command line; what it prints on success goes to `out`.
///
/// # Errors
///
/// [`CliError`] with the exit status and the line for stderr.
pub async fn run(cli: Cli, out: &mut dyn std::io::Write) -> Result<(), CliError> {
    let write = |out: &mut dyn std::io::Write, line: String| -> Result<(), CliError> {
        writeln!(out, "{line}")
            .context("failed to write to stdout")
            .map_err(CliError::from)
    };
    match &cli.command {
        Command::Demo => {
            let demo_workers = WorkerArgs {
                workers: 8,
                heartbeat_ms: 2_000,
                missed_heartbeats: 3,
                max_attempts: 5,
                stale_after_secs: crate::config::STALE_AFTER_SECS,
                maintenance_secs: 30,
            };
            let stack = open(&cli, Some(&demo_workers)).await?;
            crate::demo::run(stack, runtime_settings(&demo_workers), out).await
        }
        Command::Migrate => {
            open(&cli, None).await?;
            write(
                out,
                format!(
                    "schema is up to date ({})",
                    crate::wiring::redact(&cli.database_url)
                ),
            )
        }
        Command::Tenants(TenantsCommand::Add(args)) => {
            let slug =
                Slug::parse(&args.slug).map_err(|e| CliError::Input(format!("tenant {e}")))?;
            let workspace = Slug::parse(&args.workspace)
                .map_err(|e| CliError::Input(format!("workspace {e}")))?;
            if !(0.0..=1.0).contains(&args.failure_rate) {
                return Err(CliError::Input(
                    "--failure-rate must be between 0 and 1".into(),
                ));
            }
            let stack = open(&cli, None).await?;
            let settings = SimulationSettings {
                policies: i64::from(args.policies),
                latency_ms: i64::from(args.latency_ms),
                failure_rate: args.failure_rate,
                seed: args.seed,
            };
            stack
                .add_tenant
                .execute(&workspace, &slug, settings, false)
                .await
                .map_err(crate::ops::admin)?;
            write(out, slug.to_string())
        }
        Command::Serve(args) => {
            let addr: std::net::SocketAddr = args.bind.parse().map_err(|_| {
                CliError::Input(format!(
                    "--bind '{}' is not an address like 127.0.0.1:8080",
                    args.bind
                ))
            })?;
            let stack = open(&cli, Some(&args.worker)).await?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("failed to bind {addr}"))?;
            let bound = listener
                .local_addr()
                .context("failed to read the bound address")?;
            write(out, format!("listening on http://{bound}"))?;
            out.flush().context("failed to write to stdout")?;
            crate::serve::serve(stack, listener, &args.worker).await?;
            Ok(())
        }
        Command::Worker(args) => {
            let stack = open(&cli, Some(args)).await?;
            tracing::info!("worker started");
            crate::runtime::run_until_shutdown(&stack, runtime_settings(args), async {
                if let Err(error) = shutdown_signal().await {
                    tracing::warn!(%error, "no signal handler: stopping");
                }
            })
            .await?;
            tracing::info!("worker stopped");
            Ok(())
        }
        Command::Token(crate::ops::TokenCommand::Create(args)) => {
            let stack = open(&cli, None).await?;
            crate::ops::create_token(&stack, args, out).await
        }
        Command::Ops(command) => {
            let stack = open(&cli, None).await?;
            crate::ops::run(&stack, command, out).await
        }
        Command::FailStale { stale_after_secs } => {
            let stack = open(&cli, None).await?;
            let ms = i64::try_from(stale_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            let failed = stack
                .service
                .fail_stale_runs(ms)
                .await
                .context("failed to end stale runs")?;
            write(
                out,
                format!("{} stale run(s) ended as failed", failed.len()),
            )
        }
        Command::Reconcile => {
            let stack = open(&cli, None).await?;
            let report = stack
                .service
                .reconcile()
                .await
                .context("failed to reconcile")?;
            write(
                out,
                format!(
                    "{} active run(s) recounted, {} drifted and repaired, {} fan-out parent(s) completed",
                    report.recounted,
                    report.drifted.len(),
                    report.completed.len()
                ),
            )
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
