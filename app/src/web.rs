//! The web edge: the JSON API (`api`), the server-rendered pages (`pages`), and what both share
//! (`state`, `auth`, `error`) as siblings, so neither imports the other.

pub mod api;
mod auth;
mod error;
pub mod pages;
mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use error::ApiError;
pub use state::AppState;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The router of the API and the pages.
pub fn router(state: AppState) -> Router {
    api::routes()
        .merge(pages::routes())
        .fallback(api::handlers::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
