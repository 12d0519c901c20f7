//! The web edge: the JSON API (`api`), the server-rendered pages (`pages`), and what both share
//! (`state`, `auth`, `error`) as siblings, so neither imports the other.

pub mod api;
pub(crate) mod auth;
mod error;
pub mod live;
pub mod metrics;
pub mod pages;
pub mod server;
mod shared_reads;
mod state;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

pub use error::ApiError;
pub use state::AppState;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;
/// A request body must arrive within this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// A request other than an event stream must be answered within this (503 otherwise).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The request id header: taken from the request when it is a sane one, generated otherwise,
/// and echoed in the response.
pub const REQUEST_ID: &str = "x-request-id";

/// A request id of up to 64 visible ASCII characters, or a new random one.
fn request_id(given: Option<&HeaderValue>) -> HeaderValue {
    if let Some(value) = given
        && let Ok(text) = value.to_str()
        && (1..=64).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_graphic())
    {
        return value.clone();
    }
    let mut bytes = [0u8; 8];
    // Without entropy the id is still unique enough per process: the clock's nanoseconds.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64).to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&hex).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// An API error answer (`{"error": {...}}`) with `error.request_id` added, so the id a user
/// quotes is in what they copy; every other answer as it is.
async fn with_request_id(
    response: axum::response::Response,
    id: &HeaderValue,
) -> axum::response::Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let status = response.status();
    if !json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return axum::response::IntoResponse::into_response((parts.status, "internal error"));
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut doc) if doc["error"].is_object() => {
            doc["error"]["request_id"] = serde_json::Value::from(id.to_str().unwrap_or("-"));
            parts.headers.remove(header::CONTENT_LENGTH);
            serde_json::to_vec(&doc).unwrap_or_else(|_| bytes.to_vec())
        }
        _ => bytes.to_vec(),
    };
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

/// One access-log line per request (method, route template, status, duration, request id;
/// never a token or a query), and the request id on the request and the response.
async fn access_log(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "(unmatched)".to_owned(), |p| p.as_str().to_owned());
    let id = request_id(request.headers().get(REQUEST_ID));
    request.headers_mut().insert(REQUEST_ID, id.clone());
    // The request's span (exported with an OTLP endpoint configured): what it starts (a run's
    // job) continues its trace.
    let span = tracing::info_span!(
        target: "opsrun::http",
        "http.request",
        otel.name = %format!("{} {route}", metrics::method_label(&method)),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        opsrun.request_id = id.to_str().unwrap_or("-"),
    );
    let answered = {
        use tracing::Instrument as _;
        next.run(request).instrument(span.clone()).await
    };
    span.record("http.response.status_code", answered.status().as_u16());
    let mut response = with_request_id(answered, &id).await;
    response.headers_mut().insert(REQUEST_ID, id.clone());
    metrics::request(
        metrics::method_label(&method),
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    tracing::info!(
        target: "opsrun::access",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        request_id = id.to_str().unwrap_or("-"),
        "request"
    );
    response
}

/// The router of the API and the pages.
pub fn router(state: AppState) -> Router {
    api::routes()
        .merge(pages::routes())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .merge(api::stream_routes())
        .merge(pages::stream_routes())
        .fallback(api::handlers::not_found)
        // Every answer: no MIME sniffing, and nothing (a page, a run document, a token) kept
        // in a shared or browser cache.
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(axum::middleware::from_fn(error::one_error_shape))
        .layer(axum::middleware::from_fn(access_log))
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
