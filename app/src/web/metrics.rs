//! Prometheus metrics: the process's recorder (installed once), what is read at scrape time
//! (runs by family, status and outcome; stale runs; due jobs per queue and the oldest one's age;
//! workers alive; webhook deliveries by state), and the listener of `--metrics-bind`. Labels
//! are closed sets (families, statuses, outcomes, queues, route templates), never tenant or
//! run ids. Names are listed in docs/operations.md.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::wiring::Stack;

/// Buckets of every `*_seconds` histogram: 1 ms to 1 h.
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0, 600.0,
    3_600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use; `None` when another recorder was installed
/// first (a host's own), whose exporter then has these metrics.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match built {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "metrics: another recorder is installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Label sets of the scrape-time gauges set before, so one that is gone is set to 0 instead of
/// keeping its last value.
static SEEN_RUNS: Mutex<BTreeSet<(String, &'static str, &'static str)>> =
    Mutex::new(BTreeSet::new());
static SEEN_QUEUES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn seen<T: Ord + Clone>(set: &Mutex<BTreeSet<T>>, now: &BTreeSet<T>) -> Vec<T> {
    let mut before = set
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let gone: Vec<T> = before.difference(now).cloned().collect();
    before.extend(now.iter().cloned());
    gone
}

/// Reads what is counted at scrape time and renders every metric as Prometheus text.
pub async fn render(stack: &Stack) -> String {
    let Some(handle) = handle() else {
        return String::new();
    };
    let mut errors = 0_u32;
    match stack.models.census().await {
        Ok((census, stale)) => {
            let mut now = BTreeSet::new();
            for row in &census {
                let key = (
                    row.operation_type.key().to_owned(),
                    row.status.key(),
                    row.outcome.key(),
                );
                metrics::gauge!("opsrun_runs", "family" => key.0.clone(), "status" => key.1, "outcome" => key.2)
                    .set(row.count as f64);
                now.insert(key);
            }
            for (family, status, outcome) in seen(&SEEN_RUNS, &now) {
                if !now.contains(&(family.clone(), status, outcome)) {
                    metrics::gauge!("opsrun_runs", "family" => family, "status" => status, "outcome" => outcome)
                        .set(0.0);
                }
            }
            metrics::gauge!("opsrun_runs_stale").set(stale as f64);
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: runs could not be counted");
            errors += 1;
        }
    }
    match stack.readiness.gauges().await {
        Ok(work) => {
            let mut now = BTreeSet::new();
            for q in &work.queues {
                metrics::gauge!("opsrun_queue_due_jobs", "queue" => q.queue.clone())
                    .set(q.due as f64);
                metrics::gauge!("opsrun_queue_oldest_due_seconds", "queue" => q.queue.clone())
                    .set(q.oldest_due_secs);
                now.insert(q.queue.clone());
            }
            for queue in seen(&SEEN_QUEUES, &now) {
                if !now.contains(&queue) {
                    metrics::gauge!("opsrun_queue_due_jobs", "queue" => queue.clone()).set(0.0);
                    metrics::gauge!("opsrun_queue_oldest_due_seconds", "queue" => queue).set(0.0);
                }
            }
            metrics::gauge!("opsrun_workers_alive").set(work.workers_alive as f64);
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: the queues could not be read");
            errors += 1;
        }
    }
    match stack.webhooks.delivery_counts().await {
        Ok(counts) => {
            for (state, n) in counts {
                metrics::gauge!("opsrun_webhook_deliveries", "state" => state.key()).set(n as f64);
            }
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: webhook deliveries could not be counted");
            errors += 1;
        }
    }
    metrics::gauge!("opsrun_scrape_errors").set(f64::from(errors));
    // The exporter has no task of its own here: drain histogram buffers on each scrape.
    handle.run_upkeep();
    handle.render()
}

/// The method as a label: the standard ones, `_OTHER` for the rest (a client can send any
/// token as a method; the label set stays bounded).
#[must_use]
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// Counts an HTTP request (the access log's middleware calls it).
pub fn request(method: &'static str, route: &str, status: u16, seconds: f64) {
    metrics::counter!("opsrun_http_requests_total", "method" => method, "route" => route.to_owned(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("opsrun_http_request_seconds", "method" => method, "route" => route.to_owned())
        .record(seconds);
}

/// Counts an open event stream while it lives.
#[derive(Debug)]
pub struct StreamClient(());

impl StreamClient {
    /// One more client.
    #[must_use]
    pub fn open() -> Self {
        metrics::gauge!("opsrun_event_stream_clients").increment(1.0);
        Self(())
    }
}

impl Drop for StreamClient {
    fn drop(&mut self) {
        metrics::gauge!("opsrun_event_stream_clients").decrement(1.0);
    }
}

/// Prometheus metrics of this process and the installation (owner token): the same text as
/// the `--metrics-bind` listener serves without auth.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, body = crate::web::api::dto::ErrorBody, description = "no valid bearer token"),
        (status = 403, body = crate::web::api::dto::ErrorBody, description = "the token's role is too low")))]
pub async fn with_token(
    State(state): State<crate::web::AppState>,
    caller: opsrun_application::access::Caller,
) -> Result<Response, crate::web::ApiError> {
    // Metrics count every workspace: only an owner sees them on the API's port.
    opsrun_application::access::AccessPolicy::require(
        &caller,
        opsrun_application::ports::Role::Owner,
    )?;
    Ok(scrape(State(state.stack.clone())).await)
}

async fn scrape(State(stack): State<Stack>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&stack).await,
    )
        .into_response()
}

/// Serves `GET /metrics` (no auth: bind it to a private address) on `listener` until
/// `shutdown` resolves.
///
/// # Errors
///
/// When the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    stack: Stack,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    handle();
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(stack);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
