//! `opsrun serve`: the HTTP API, the job workers and the maintenance loop in one process.

use anyhow::Context;

use crate::cli::{WorkerArgs, runtime_settings, shutdown_signal};
use crate::http::{AppState, router};
use crate::runtime::run_until_shutdown;
use crate::wiring::Stack;

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
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runtime = runtime_settings(worker);
    let workers_stack = stack.clone();
    let workers = tokio::spawn(async move {
        run_until_shutdown(&workers_stack, runtime, async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|stop| *stop).await;
        })
        .await
    });
    let app = router(AppState::new(stack));
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let served = server.await.context("the HTTP server failed");
    workers.await.context("the workers panicked")??;
    served
}
