//! Running the workers: the one loop `serve`, `worker` and `demo` share.

use std::future::Future;

use anyhow::Context;
use opsrun_adapters::runtime::maintenance_loop;
use opsrun_application::worker::RuntimeSettings;

use crate::wiring::Stack;

/// Runs the job workers and the maintenance loop (stale runs, reconcile) until `shutdown`
/// resolves; in-flight jobs finish first, jobs fetched but not started go back to the queue.
///
/// # Errors
///
/// When the workers stop on an error.
pub async fn run_until_shutdown<S>(
    stack: &Stack,
    runtime: RuntimeSettings,
    shutdown: S,
) -> anyhow::Result<()>
where
    S: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let maintenance = tokio::spawn(maintenance_loop(
        stack.service.clone(),
        stack.families.clone(),
        stack.retention.clone(),
        runtime,
        async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|stop| *stop).await;
        },
        |error| tracing::warn!(%error, "maintenance pass failed"),
    ));
    let dispatcher = match opsrun_adapters::webhooks::WebhookSender::new(
        stack.dispatch.policy(),
        stack.webhook_timeout,
    ) {
        Ok(sender) => Some(tokio::spawn(crate::webhooks::dispatch_loop(
            stack.clone(),
            sender,
            stop_tx.subscribe(),
        ))),
        Err(error) => {
            tracing::error!(%error, "webhooks cannot be sent: the HTTP client could not be built");
            None
        }
    };
    let result = stack.workers.run(stack.writers.clone(), shutdown).await;
    let _ = stop_tx.send(true);
    let _ = maintenance.await;
    if let Some(dispatcher) = dispatcher {
        let _ = dispatcher.await;
    }
    result.context("the workers stopped on an error")
}
