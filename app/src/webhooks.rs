//! The webhook dispatcher: claims due deliveries, renders each event's body (the run document
//! as the endpoint's scope sees it), sends it signed and settles the attempt. It runs beside
//! the job workers in `serve`, `worker` and `demo`; several processes share the work through
//! the claim's lease.

use std::time::Duration;

use opsrun_adapters::webhooks::WebhookSender;
use opsrun_application::ports::DueDelivery;
use opsrun_application::read_models::RunSummary;
use opsrun_domain::{DeliveryState, Timestamp};
use serde::Serialize;

use crate::web::api::dto::{RunDoc, rfc3339};
use crate::wiring::Stack;

/// Deliveries claimed per round: all of them are sent at once, so each is attempted within
/// its lease (a claim of more than are sent at once could outlive its lease while waiting).
const BATCH: u32 = 8;
/// How often due retries are looked for when nothing wakes the dispatcher sooner.
const POLL: Duration = Duration::from_millis(500);

/// The body of a delivery.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookPayload {
    /// The event's stable id: the same on every retry and redelivery (de-duplicate by it).
    pub event_id: String,
    /// `operation.completed`.
    pub event_type: String,
    /// When the event happened (RFC 3339).
    pub occurred_at: String,
    /// The run document, as of the delivery.
    pub run: RunDoc,
}

/// The body of `due` from the run `summary`.
#[must_use]
pub fn body(due: &DueDelivery, summary: &RunSummary) -> WebhookPayload {
    WebhookPayload {
        event_id: due.delivery.event_id.clone(),
        event_type: due.delivery.event.key().to_owned(),
        occurred_at: rfc3339(due.delivery.occurred_at),
        run: RunDoc::new(summary, false),
    }
}

/// Sends due deliveries until `stop` turns true: woken by run changes (a completion writes
/// its deliveries), and at least every 500 ms for retries that come due.
pub async fn dispatch_loop(
    stack: Stack,
    sender: WebhookSender,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut changes = stack.events.subscribe();
    // The lease covers the slowest attempt, so a delivery is not sent twice at once.
    let lease_ms = i64::try_from(sender.timeout().as_millis())
        .unwrap_or(i64::MAX / 2)
        .saturating_mul(2)
        .saturating_add(5_000);
    loop {
        if *stop.borrow() {
            return;
        }
        let claimed = match stack.dispatch.claim(BATCH, lease_ms).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "webhook deliveries could not be claimed");
                Vec::new()
            }
        };
        let full = claimed.len() == BATCH as usize;
        let round =
            futures::future::join_all(claimed.into_iter().map(|due| attempt(&stack, &sender, due)));
        // A stopping process does not wait out slow endpoints: the attempts cut short are
        // claimed again once their leases end (at least once).
        tokio::select! {
            _ = round => {}
            _ = stop.changed() => return,
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = changes.recv() => {
                // A burst of completions wakes one round, not one per run.
                tokio::time::sleep(Duration::from_millis(20)).await;
                changes = changes.resubscribe();
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn attempt(stack: &Stack, sender: &WebhookSender, due: DueDelivery) {
    let at = now();
    let endpoint = &due.endpoint;
    let result = match stack
        .models
        .run_in(endpoint.workspace, &endpoint.scope, due.delivery.run)
        .await
    {
        Ok(summary) => match serde_json::to_vec(&body(&due, &summary)) {
            Ok(bytes) => sender.send(&due, bytes, at).await,
            Err(error) => {
                failed_before_sending(at, format!("the body could not be written: {error}"))
            }
        },
        // The run is out of the endpoint's scope now (its token's tenants changed) or the
        // store failed: the attempt fails and is retried like any other.
        Err(error) => failed_before_sending(at, format!("the run could not be read: {error}")),
    };
    let status = result.status;
    let latency = result.latency_ms;
    match stack.dispatch.settle(&due, result).await {
        Ok(None) => tracing::warn!(
            delivery = due.delivery.id.0,
            "a webhook attempt outlived its claim; another dispatcher has the delivery"
        ),
        Ok(Some(state)) => {
            let outcome = match state {
                DeliveryState::Delivered => "delivered",
                DeliveryState::Pending => "retry",
                DeliveryState::Failed => "failed",
            };
            metrics::counter!("opsrun_webhook_attempts_total", "result" => outcome).increment(1);
            metrics::histogram!("opsrun_webhook_attempt_seconds")
                .record(latency.max(0) as f64 / 1_000.0);
            tracing::info!(
                delivery = due.delivery.id.0,
                event_id = %due.delivery.event_id,
                status = ?status,
                latency_ms = latency,
                outcome,
                "webhook attempt"
            );
        }
        Err(error) => {
            tracing::warn!(%error, delivery = due.delivery.id.0, "a webhook attempt could not be recorded")
        }
    }
}

fn failed_before_sending(
    at: Timestamp,
    error: String,
) -> opsrun_application::webhooks::AttemptResult {
    opsrun_application::webhooks::AttemptResult {
        at,
        status: None,
        latency_ms: 0,
        error: Some(error),
    }
}

fn now() -> Timestamp {
    use opsrun_application::ports::Clock;
    opsrun_adapters::clock::SystemClock.now()
}
