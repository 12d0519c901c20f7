//! `opsrun worker`: job workers and the maintenance loop, until SIGINT or SIGTERM.

use super::{CliError, open, shutdown_signal};
use crate::config::{Cli, WorkerArgs, runtime_settings};

/// Runs the workers until a signal.
///
/// # Errors
///
/// [`CliError`] when the database cannot be opened or the workers stop on an error.
pub(super) async fn command(cli: &Cli, args: &WorkerArgs) -> Result<(), CliError> {
    let stack = open(cli, Some(args)).await?;
    if let Some(metrics) = super::metrics_listener(&stack, args).await? {
        tracing::info!(%metrics, "metrics served at /metrics");
    }
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
