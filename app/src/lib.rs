//! The `opsrun` application: configuration, wiring and the command line. This crate is the
//! composition root and the only one that reads the environment; the HTTP API and pages are
//! wired here as they land.

pub mod commands;
pub mod config;
pub mod render;
pub mod runtime;
pub mod web;
pub mod wiring;

pub use config::{Cli, DEFAULT_DATABASE_URL};

/// The whole `opsrun` program: logging, command line, exit status. `main.rs` calls it; test
/// harnesses that need the real program as a separate process call it too.
pub async fn main_entry() -> std::process::ExitCode {
    use clap::Parser as _;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPSRUN_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,opsrun_app=info,opsrun_adapters=info")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
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
            let line = rendered
                .lines()
                .next()
                .unwrap_or("bad usage")
                .trim_start_matches("error: ");
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
    let mut stdout = std::io::stdout();
    match commands::run(cli, &mut stdout).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            #[expect(clippy::print_stderr, reason = "the one line a failed command prints")]
            {
                eprintln!("{}", error.line());
            }
            error.exit_code()
        }
    }
}
