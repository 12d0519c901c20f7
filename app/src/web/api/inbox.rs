//! Reading notifications: mark one, or every one the caller sees, read.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use opsrun_application::access::Caller;

use super::dto::ErrorBody;
use super::handlers::positive_id;
use crate::web::{ApiError, AppState};

/// Mark one of the caller's notifications read (reading a read one changes nothing).
#[utoipa::path(post, path = "/api/notifications/{id}/read", tag = "notifications",
    params(("id" = i64, Path, minimum = 1, description = "the notification's id")),
    responses((status = 204, description = "read"),
        (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"),
        (status = 401, body = ErrorBody, description = "no valid bearer token"),
        (status = 404, body = ErrorBody, description = "no such notification of the caller, or of a tenant the token cannot see")))]
pub async fn read_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = positive_id(&id).ok_or_else(|| ApiError::NotFound("notification not found".into()))?;
    state.stack.control.mark_read(&caller, Some(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mark every notification the caller sees read.
#[utoipa::path(post, path = "/api/notifications/read-all", tag = "notifications",
    responses((status = 204, description = "all read"),
        (status = 401, body = ErrorBody, description = "no valid bearer token")))]
pub async fn read_all(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    state.stack.control.mark_read(&caller, None).await?;
    Ok(StatusCode::NO_CONTENT)
}
