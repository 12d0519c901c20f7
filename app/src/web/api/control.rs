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
#[utoipa::path(post, path = "/api/operations/{id}/cancel", params(("id" = i64, Path)),
    responses((status = 200, body = RunDoc, description = "the run document"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"),
        (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 409, body = ErrorBody, description = "the run's state does not allow it")),
    security(("bearer" = [])))]
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
#[utoipa::path(post, path = "/api/operations/{id}/pause", params(("id" = i64, Path)),
    responses((status = 200, body = RunDoc, description = "the run document"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"),
        (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 409, body = ErrorBody, description = "the run's state does not allow it")),
    security(("bearer" = [])))]
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
#[utoipa::path(post, path = "/api/operations/{id}/resume", params(("id" = i64, Path)),
    responses((status = 200, body = RunDoc, description = "the run document"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"),
        (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 409, body = ErrorBody, description = "the run's state does not allow it")),
    security(("bearer" = [])))]
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
/// run's failed items, linked both ways (`retry_of` / `retried_by`). 201 with the new run; 200
/// with `reused: true` when a run with the same identity is already active.
#[utoipa::path(post, path = "/api/operations/{id}/retry", params(("id" = i64, Path)),
    responses((status = 201, body = RunDoc, description = "the new run (a retry)"), (status = 200, body = RunDoc, description = "the run document"), (status = 401, body = ErrorBody, description = "no valid bearer token"),
        (status = 403, body = ErrorBody, description = "the token's role is too low"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 409, body = ErrorBody, description = "the run's state does not allow it"),
        (status = 422, body = ErrorBody, description = "well-formed but invalid")),
    security(("bearer" = [])))]
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
        StatusCode::CREATED
    };
    Ok((status, Json(RunDoc::new(&summary, started.reused))))
}
