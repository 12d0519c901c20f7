//! `opsrun serve`: the HTTP API, the job workers and the maintenance loop in one process.

use anyhow::Context;

use super::{CliError, input, open, shutdown_signal, write_line};
use crate::config::{Cli, ServeArgs, WorkerArgs, runtime_settings};
use crate::runtime::run_until_shutdown;
use crate::web::server::HttpLimits;
use crate::web::{AppState, router};
use crate::wiring::Stack;

/// Binds, prints the bound address as the first line, then serves until a signal.
///
/// # Errors
///
/// [`CliError::Input`] for a bad `--bind`; a failure when binding or serving fails.
pub(super) async fn command(
    cli: &Cli,
    args: &ServeArgs,
    out: &mut dyn std::io::Write,
) -> Result<(), CliError> {
    let addr: std::net::SocketAddr = args.bind.parse().map_err(|_| {
        input(format!(
            "--bind '{}' is not an address like 127.0.0.1:8080",
            args.bind
        ))
    })?;
    let stack = open(cli, Some(&args.worker)).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to bind {addr}"))?;
    let bound = listener
        .local_addr()
        .context("failed to read the bound address")?;
    // `/metrics` on this port (owner token) counts from the start, with or without a listener.
    crate::web::metrics::handle();
    let metrics = super::metrics_listener(&stack, &args.worker).await?;
    write_line(out, &format!("listening on http://{bound}"))?;
    if let Some(metrics) = metrics {
        tracing::info!(%metrics, "metrics served at /metrics");
    }
    out.flush().context("failed to write to stdout")?;
    let limits = HttpLimits {
        header_read_timeout: std::time::Duration::from_secs(args.header_timeout_secs.max(1)),
        max_connections: args.max_connections.max(1),
        shutdown_grace: std::time::Duration::from_secs(10),
    };
    serve(stack, listener, &args.worker, limits, args.secure_cookies).await?;
    Ok(())
}

/// Serves until SIGINT or SIGTERM, then stops accepting requests, lets in-flight jobs finish
/// and returns.
///
/// # Errors
///
/// When the server or the workers stop on an error.
pub async fn serve(
    stack: Stack,
    listener: tokio::net::TcpListener,
    worker: &WorkerArgs,
    limits: HttpLimits,
    secure_cookies: bool,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runtime = runtime_settings(worker);
    let workers_stack = stack.clone();
    let workers_stop = stop_rx.clone();
    // Workers that give up (their store stayed unusable) stop the server too, so the process
    // exits non-zero and its service manager restarts it, instead of serving without workers.
    let gave_up = std::sync::Arc::new(tokio::sync::Notify::new());
    let workers_gave_up = gave_up.clone();
    let workers = tokio::spawn(async move {
        let result = run_until_shutdown(&workers_stack, runtime, async move {
            let mut rx = workers_stop;
            let _ = rx.wait_for(|stop| *stop).await;
        })
        .await;
        if result.is_err() {
            workers_gave_up.notify_one();
        }
        result
    });
    let app = router(AppState::with_shutdown(stack, stop_rx).with_secure_cookies(secure_cookies));
    let served = crate::web::server::serve(listener, app, limits, async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            () = gave_up.notified() => {}
        }
        let _ = stop_tx.send(true);
    })
    .await
    .context("the HTTP server failed");
    workers.await.context("the workers panicked")??;
    served
}
