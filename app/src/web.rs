//! The web edge: the JSON API (`api`), the server-rendered pages (`pages`), and what both share
//! (`state`, `auth`, `error`) as siblings, so neither imports the other.

pub mod api;
pub(crate) mod auth;
mod error;
pub mod pages;
pub mod server;
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

/// The router of the API and the pages.
pub fn router(state: AppState) -> Router {
    api::routes()
        .merge(pages::routes())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .merge(api::stream_routes())
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
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
