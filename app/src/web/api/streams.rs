//! Event streams of many runs: what a tenant's activity feed shows, or what the collection
//! shows for a filter. One connection follows them all (a client with many runs to watch never
//! needs one stream per run), with the same documents as `GET /api/operations/{id}`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::handlers::{collection_filter, query, slug};
use crate::web::auth::StreamCaller;
use crate::web::live::{self, Follow, Wire};
use crate::web::{ApiError, AppState};

/// Live run documents of a tenant's activity: its queued and running runs and those completed
/// in the last 60 s, as `GET /api/tenants/{tenant}/activity` lists them. A `progress` event
/// carries a run document whenever one appears or changes, `removed` (`{"id"}`) when a run
/// leaves the feed, `synced` (`{"count"}`) once the stream's first full state is sent (also
/// after a reconnect, which is sent everything again); a comment every 15 s keeps it open. It
/// ends with `unauthorized` when its token is revoked, `shutdown` when the server stops.
#[utoipa::path(get, path = "/api/tenants/{tenant}/events", tag = "operations",
    params(("tenant" = String, Path, pattern = r"^[a-z][a-z0-9-]{0,62}$", description = "the tenant's slug")),
    responses((status = 200, content_type = "text/event-stream", body = String, description = "`progress`, `removed` and `synced` events"),
        (status = 400, body = super::dto::ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"),
        (status = 401, body = super::dto::ErrorBody, description = "no valid bearer token"),
        (status = 404, body = super::dto::ErrorBody, description = "absent, or not visible to this token")))]
pub async fn tenant_events(
    State(state): State<AppState>,
    StreamCaller(caller): StreamCaller,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = slug(&tenant)?;
    // Visible, or 404 like an absent tenant, before the stream starts.
    state.stack.models.activity(&caller, &tenant).await?;
    Ok(live::stream(state, Wire::Api(caller), Follow::Feed(tenant)).into_response())
}

/// Live run documents of the collection's first page (50 runs, newest first) for a filter, as
/// `GET /api/operations` lists them: the same events as the tenant stream.
#[utoipa::path(get, path = "/api/events", tag = "operations",
    params(("tenant" = Option<String>, Query, pattern = r"^[a-z][a-z0-9-]{0,62}$", description = "only this tenant (slug); one the token cannot see answers 404"),
        ("type" = Option<String>, Query, description = "only this type"),
        ("status" = Option<String>, Query, description = "only this status"),
        ("outcome" = Option<String>, Query, description = "only this outcome")),
    responses((status = 200, content_type = "text/event-stream", body = String, description = "`progress`, `removed` and `synced` events"),
        (status = 400, body = super::dto::ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"),
        (status = 401, body = super::dto::ErrorBody, description = "no valid bearer token"),
        (status = 404, body = super::dto::ErrorBody, description = "the tenant filter names a tenant that is absent or not visible"),
        (status = 422, body = super::dto::ErrorBody, description = "well-formed but invalid")))]
pub async fn events(
    State(state): State<AppState>,
    StreamCaller(caller): StreamCaller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    query(&params, &["tenant", "type", "status", "outcome"])?;
    let filter = collection_filter(&params)?;
    // The filter's tenant is visible, or 404 like an absent one, before the stream starts.
    state
        .stack
        .models
        .collection(&caller, filter.clone(), 1, None)
        .await?;
    Ok(live::stream(
        state,
        Wire::Api(caller),
        Follow::Collection(filter, None, None),
    )
    .into_response())
}
