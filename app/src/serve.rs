//! `opsrun serve`: the HTTP API, the job workers and the maintenance loop in one process.

use anyhow::Context;
use opsrun_adapters::runtime::maintenance_loop;

use crate::cli::{WorkerArgs, runtime_settings, shutdown_signal};
use crate::http::{AppState, router};
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
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let maintenance = tokio::spawn(maintenance_loop(
        stack.service.clone(),
        runtime_settings(worker),
        stopped(stop_rx.clone()),
        |error| tracing::warn!(%error, "maintenance pass failed"),
    ));
    let queue = stack.queue.clone();
    let writers = stack.writers.clone();
    let workers_stop = stopped(stop_rx.clone());
    let workers = tokio::spawn(async move {
        queue
            .run_workers(writers, async move {
                workers_stop.await;
                Ok(())
            })
            .await
    });
    let app = router(AppState::new(stack));
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let served = server.await.context("the HTTP server failed");
    let _ = maintenance.await;
    workers
        .await
        .context("the workers panicked")?
        .context("the workers stopped on an error")?;
    served
}
