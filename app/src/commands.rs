//! The subcommands, one file each; [`run`] dispatches a parsed command line to them.

mod demo;
mod error;
mod maintenance;
mod migrate;
mod ops;
mod serve;
mod tenants;
mod token;
mod watch;
mod webhooks;
mod worker;

use anyhow::Context;
use opsrun_domain::Timestamp;

pub use error::CliError;
pub use ops::parse_params;

use crate::config::{
    Cli, Command, TenantsCommand, TokenCommand, WebhooksCommand, WorkerArgs, WorkspacesCommand,
    queue_settings,
};
use crate::wiring::{Stack, StackOptions};

/// Binds `--metrics-bind` (when given) and serves `/metrics` there until a signal; returns
/// the bound address.
///
/// # Errors
///
/// [`CliError::Input`] for an address that does not parse; a failure when it cannot be bound.
async fn metrics_listener(
    stack: &Stack,
    worker: &WorkerArgs,
) -> Result<Option<std::net::SocketAddr>, CliError> {
    let Some(bind) = worker.metrics_bind.as_deref() else {
        return Ok(None);
    };
    let addr: std::net::SocketAddr = bind.parse().map_err(|_| {
        input(format!(
            "--metrics-bind '{bind}' is not an address like 127.0.0.1:9100"
        ))
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to bind {addr} (--metrics-bind)"))?;
    let bound = listener
        .local_addr()
        .context("failed to read the bound metrics address")?;
    // The recorder is installed before anything is served or run, so nothing counted
    // before the first scrape is lost.
    crate::web::metrics::handle();
    let stack = stack.clone();
    tokio::spawn(async move {
        let stopped = crate::web::metrics::serve(listener, stack, async {
            let _ = shutdown_signal().await;
        })
        .await;
        if let Err(error) = stopped {
            tracing::warn!(%error, "the metrics listener stopped");
        }
    });
    Ok(Some(bound))
}

/// Bad input: exit 2 with `message`.
pub(crate) fn input(message: impl Into<String>) -> CliError {
    CliError::Input(message.into())
}

/// Writes one line of a command's output.
pub(crate) fn write_line(out: &mut dyn std::io::Write, line: &str) -> Result<(), CliError> {
    writeln!(out, "{line}")
        .context("failed to write to stdout")
        .map_err(CliError::from)
}

/// Prints `doc` as pretty JSON (`-o json`): the API's document where the API has one.
pub(crate) fn write_json(
    out: &mut dyn std::io::Write,
    doc: &impl serde::Serialize,
) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(doc).context("failed to encode JSON")?;
    write_line(out, &text)
}

/// Opens the database the command line names and wires everything on it.
async fn open(cli: &Cli, worker: Option<&WorkerArgs>) -> Result<Stack, CliError> {
    open_url(cli, cli.database_url.expose(), worker).await
}

/// As [`open`] for a command that only reads or changes what exists: an SQLite file that does
/// not exist is bad input, and no file is created (exit 2 writes nothing).
async fn open_existing(cli: &Cli) -> Result<Stack, CliError> {
    if let Some(path) = opsrun_adapters::sql::sqlite_file(cli.database_url.expose())
        && !path.exists()
    {
        return Err(input(format!(
            "there is no database at {}: create it with `opsrun tenants add` (or `opsrun demo`), \
             or name another with --database-url",
            path.display()
        )));
    }
    open(cli, None).await
}

/// Opens `url` (an SQLite URL without a mode creates its file) and wires everything on it.
async fn open_url(cli: &Cli, url: &str, worker: Option<&WorkerArgs>) -> Result<Stack, CliError> {
    // The in-memory backend is for embedding and tests: a CLI process on it could not share
    // anything with another, so the command line takes only databases.
    let Some(backend) = opsrun_adapters::sql::Backend::of_url(url) else {
        return Err(input(format!(
            "unsupported --database-url '{}': use sqlite://FILE or postgres://...",
            crate::wiring::redact(url)
        )));
    };
    let url = opsrun_adapters::sql::sqlite_creating(url);
    let queue = queue_settings(worker);
    // Refused before anything is opened, so bad settings change nothing.
    if let Some(worker) = worker {
        queue.check(backend).map_err(input)?;
        if !(1..=1_000).contains(&worker.tenant_concurrency) {
            return Err(input("--tenant-concurrency must be 1 to 1000"));
        }
        worker.webhooks.policy().map_err(input)?;
    }
    let stack = Stack::open(&StackOptions {
        database_url: url,
        artifacts: cli.artifacts.clone(),
        queue,
        max_connections: 16,
    })
    .await?;
    if let Some(worker) = worker {
        stack
            .service
            .set_tenant_limit_default(worker.tenant_concurrency);
        let policy = worker.webhooks.policy().map_err(input)?;
        return Ok(stack.with_webhook_policy(policy, worker.webhooks.timeout()));
    }
    Ok(stack)
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
    match &cli.command {
        Command::Demo => demo::command(&cli, out).await,
        Command::Migrate => migrate::command(&cli, out).await,
        Command::Tenants(TenantsCommand::Add(args)) => tenants::add(&cli, args, out).await,
        Command::Tenants(TenantsCommand::Limit(args)) => tenants::limit(&cli, args, out).await,
        Command::Tenants(TenantsCommand::List { workspace, output }) => {
            let stack = open_existing(&cli).await?;
            tenants::list(&stack, workspace.as_deref(), output.is_json(), out).await
        }
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            let shell: clap_complete::Shell = shell
                .parse()
                .map_err(|_| input(format!("unknown shell '{shell}'")))?;
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "opsrun", out);
            Ok(())
        }
        Command::Man => {
            use clap::CommandFactory as _;
            clap_mangen::Man::new(Cli::command())
                .render(out)
                .context("failed to write the manual page")?;
            Ok(())
        }
        Command::Workspaces(WorkspacesCommand::List { output }) => {
            let stack = open_existing(&cli).await?;
            let slugs: Vec<String> = stack
                .admin
                .workspaces()
                .await
                .context("failed to read workspaces")?
                .into_iter()
                .map(|(_, slug)| slug.to_string())
                .collect();
            if output.is_json() {
                let items: Vec<_> = slugs
                    .iter()
                    .map(|slug| serde_json::json!({ "slug": slug }))
                    .collect();
                return write_json(out, &serde_json::json!({ "items": items }));
            }
            for slug in slugs {
                write_line(out, &slug)?;
            }
            Ok(())
        }
        Command::Serve(args) => serve::command(&cli, args, out).await,
        Command::Worker(args) => worker::command(&cli, args).await,
        Command::Token(TokenCommand::Create(args)) => {
            let stack = open(&cli, None).await?;
            token::create_token(&stack, args, out).await
        }
        Command::Token(TokenCommand::List { workspace, output }) => {
            let stack = open_existing(&cli).await?;
            token::list_tokens(&stack, workspace.as_deref(), output.is_json(), out).await
        }
        Command::Webhooks(WebhooksCommand::Add(args)) => {
            let stack = open_existing(&cli).await?;
            webhooks::add(stack, args, out).await
        }
        Command::Webhooks(WebhooksCommand::List { workspace, output }) => {
            let stack = open_existing(&cli).await?;
            webhooks::list(&stack, workspace.as_deref(), output.is_json(), out).await
        }
        Command::Webhooks(WebhooksCommand::Remove { id }) => {
            let stack = open_existing(&cli).await?;
            webhooks::remove(&stack, id, out).await
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            let stack = open_existing(&cli).await?;
            token::revoke_token(&stack, id, out).await
        }
        Command::Ops(command) => {
            let stack = open_existing(&cli).await?;
            ops::run(&stack, command, out).await
        }
        Command::FailStale { stale_after_secs } => {
            maintenance::fail_stale(&cli, *stale_after_secs, out).await
        }
        Command::Reconcile => maintenance::reconcile(&cli, out).await,
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
