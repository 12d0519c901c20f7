//! The `opsrun` application: configuration, wiring and the command line. This crate is the
//! composition root and the only one that reads the environment; the HTTP API and pages are
//! wired here as they land.

pub mod commands;
pub mod config;
pub mod render;
pub mod runtime;
pub mod telemetry;
pub mod web;
pub mod webhooks;
pub mod wiring;

pub use config::{Cli, DEFAULT_DATABASE_URL};

/// The whole `opsrun` program: logging, command line, exit status. `main.rs` calls it; test
/// harnesses that need the real program as a separate process call it too.
pub async fn main_entry() -> std::process::ExitCode {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let parsed = Cli::command().try_get_matches().and_then(|matches| {
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.database_url_given =
            matches.value_source("database_url") == Some(clap::parser::ValueSource::CommandLine);
        Ok(cli)
    });
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = error.print();
                return if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    std::process::ExitCode::from(2)
                } else {
                    std::process::ExitCode::SUCCESS
                };
            }
            // Bad usage: one clear line on stderr, exit 2.
            let rendered = error.render().to_string();
            let mut line = rendered
                .lines()
                .next()
                .unwrap_or("bad usage")
                .trim_start_matches("error: ")
                .to_owned();
            // Keep clap's suggestion ("a similar subcommand exists: 'list'") on the one line.
            if let Some(tip) = rendered
                .lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix("tip: "))
                .filter(|tip| tip.contains("similar"))
            {
                line.push_str(&format!(" ({tip})"));
            }
            #[expect(
                clippy::print_stderr,
                reason = "the one line a bad command line prints"
            )]
            {
                eprintln!("opsrun: {line} (see opsrun --help)");
            }
            return std::process::ExitCode::from(2);
        }
    };
    let exporter = init_logging(&cli.log_format);
    let mut stdout = std::io::stdout();
    let result = commands::run(cli, &mut stdout).await;
    // The spans of the last moments (a shutdown) go out before the process ends.
    if let Some(exporter) = exporter {
        exporter.shutdown().await;
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A reader that went away (`| head`) is not an error worth a line.
        Err(error) if error.is_broken_pipe() => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let line = error.line();
            if !line.is_empty() {
                #[expect(clippy::print_stderr, reason = "the one line a failed command prints")]
                {
                    eprintln!("{line}");
                }
            }
            error.exit_code()
        }
    }
}

/// The default log filter: warnings, plus the access log, run lifecycle and worker lines.
pub const DEFAULT_LOG_FILTER: &str =
    "warn,opsrun::access=info,opsrun::runs=info,opsrun_app=info,opsrun_adapters=info";

/// Logs to stderr: `OPSRUN_LOG` (else [`DEFAULT_LOG_FILTER`]) as `text` or `json` lines; ANSI
/// colours only when stderr is a terminal, so a log file never holds escape codes. With an
/// OTLP endpoint configured, opsrun's spans are exported too (see [`telemetry`]); the log
/// filter applies to the log only.
fn init_logging(format: &str) -> Option<telemetry::Exporter> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPSRUN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = if format == "json" {
        log.json()
            .with_current_span(false)
            .with_filter(filter)
            .boxed()
    } else {
        log.with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed()
    };
    let (traces, exporter) = match telemetry::layer() {
        Some((layer, exporter)) => (Some(layer), Some(exporter)),
        None => (None, None),
    };
    tracing_subscriber::registry().with(log).with(traces).init();
    if exporter.is_none() && telemetry::configured() {
        tracing::warn!("OTEL_EXPORTER_OTLP_ENDPOINT is set but this build cannot export traces");
    }
    exporter
}
