//! Run control routes: cancel (owner), pause, resume and retry (operator). Each answers the
//! run document as it is after the action.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use opsrun_application::access::Caller;

use super::dto::{ErrorBody, RunDoc};
use super::handlers::run_id;
use crate::web::{ApiError, AppState};

/// Cancel a queued or running run (owner only).
#[utoipa::path(post, path = "/api/operations/{id}/cancel", tag = "operations",
    params(("id" = i64, Path, minimum = 1, description = "the run's id")),
    responses((status = 200, body = RunDoc, description = "the run document, cancelled"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 409, body = ErrorBody, description = "the run is already completed")))]
pub async fn cancel_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunDoc>, ApiError> {
    let id = run_id(&id)?;
    state.stack.cancel.execute(&caller, id).await?;
    let summary = state.stack.models.run(&caller, id).await?;
    Ok(Json(RunDoc::new(&summary, false)))
}

/// Pause a queued or running run (operator): it starts no new item or child, keeps its counts
/// and bar, and is never stale; pausing a paused run changes nothing.
#[utoipa::path(post, path = "/api/operations/{id}/pause", tag = "operations",
    params(("id" = i64, Path, minimum = 1, description = "the run's id")),
    responses((status = 200, body = RunDoc, description = "the run document, paused"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 409, body = ErrorBody, description = "the run is already completed")))]
pub async fn pause_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunDoc>, ApiError> {
    let id = run_id(&id)?;
    state.stack.control.pause(&caller, id).await?;
    let summary = state.stack.models.run(&caller, id).await?;
    Ok(Json(RunDoc::new(&summary, false)))
}

/// Resume a paused run where it stopped (operator); resuming a run that is not paused changes
/// nothing.
#[utoipa::path(post, path = "/api/operations/{id}/resume", tag = "operations",
    params(("id" = i64, Path, minimum = 1, description = "the run's id")),
    responses((status = 200, body = RunDoc, description = "the run document, running again"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 409, body = ErrorBody, description = "the run is completed, or not paused")))]
pub async fn resume_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunDoc>, ApiError> {
    let id = run_id(&id)?;
    state.stack.control.resume(&caller, id).await?;
    let summary = state.stack.models.run(&caller, id).await?;
    Ok(Json(RunDoc::new(&summary, false)))
}

/// Retry only what failed (operator): a new run of the same family over exactly the completed
/// run's failed items, linked both ways (`retry_of` / `retried_by`). 202 with the new run; 200
/// with `reused: true` when a run with the same identity is already active.
#[utoipa::path(post, path = "/api/operations/{id}/retry", tag = "operations",
    params(("id" = i64, Path, minimum = 1, description = "the run's id")),
    responses((status = 202, body = RunDoc, description = "the new run over exactly the failed items, queued"), (status = 200, body = RunDoc, description = "that retry is already active: that run, with `reused: true`"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 409, body = ErrorBody, description = "the run is not completed, or nothing of it failed"), (status = 422, body = ErrorBody, description = "the family has no items to retry (`not_retryable`)")))]
pub async fn retry_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RunDoc>), ApiError> {
    let id = run_id(&id)?;
    let started = state.stack.retry.execute(&caller, id).await?;
    let summary = state.stack.models.run(&caller, started.run.id()).await?;
    let status = if started.reused {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(RunDoc::new(&summary, started.reused))))
}
