//! The one API error type and its status table.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use opsrun_application::access::AccessError;
use opsrun_application::auth::AuthError;
use opsrun_application::catalog::CatalogError;
use opsrun_application::start::OperationError;
use opsrun_application::{FamilyStoreError, ProviderError, StoreError};

use super::api::dto::{ErrorBody, ErrorDetail};

/// Everything a handler can answer instead of a result.
#[derive(Debug)]
pub enum ApiError {
    /// 400: malformed JSON.
    Malformed(String),
    /// 401: missing or unknown token.
    Unauthorized,
    /// 403: role too low.
    Forbidden(String),
    /// 404: absent or not visible.
    NotFound(String),
    /// 409: state conflict.
    Conflict(&'static str, String),
    /// 413: body over the limit.
    TooLarge,
    /// 415: not JSON.
    Unsupported,
    /// 422: well-formed but invalid.
    Invalid(&'static str, String),
    /// 500: logged, answered as "internal error".
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::Malformed(m) => (StatusCode::BAD_REQUEST, "malformed_json", m.clone()),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required".to_owned(),
            ),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            Self::Conflict(code, m) => (StatusCode::CONFLICT, code, m.clone()),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is over {} bytes", super::BODY_LIMIT),
            ),
            Self::Unsupported => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json".to_owned(),
            ),
            Self::Invalid(code, m) => (StatusCode::UNPROCESSABLE_ENTITY, code, m.clone()),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error".to_owned(),
            ),
        }
    }

    /// An internal failure, logged with its source.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(source) = &self {
            tracing::error!(%source, "request failed");
        }
        let (status, code, message) = self.parts();
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
        };
        (status, Json(body)).into_response()
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            AccessError::Forbidden { .. } => Self::Forbidden(error.to_string()),
            AccessError::Store(e) => Self::internal(e),
        }
    }
}

impl From<OperationError> for ApiError {
    fn from(error: OperationError) -> Self {
        match error {
            OperationError::Access(e) => e.into(),
            OperationError::Invalid { code, message } => Self::Invalid(code, message),
            OperationError::AlreadyCompleted(id) => Self::Conflict(
                "already_completed",
                format!("operation {id} is already completed"),
            ),
            OperationError::Provider(ProviderError::Unavailable(m)) => {
                Self::internal(format!("provider unavailable: {m}"))
            }
            other => Self::internal(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::RunNotFound(id) => Self::NotFound(format!("operation {id} not found")),
            StoreError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            other => Self::internal(other),
        }
    }
}

impl From<FamilyStoreError> for ApiError {
    fn from(error: FamilyStoreError) -> Self {
        match error {
            FamilyStoreError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            other => Self::internal(other),
        }
    }
}

impl From<ProviderError> for ApiError {
    fn from(error: ProviderError) -> Self {
        Self::internal(error)
    }
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Access(e) => e.into(),
            CatalogError::Invalid { code, message } => Self::Invalid(code, message),
            CatalogError::FamilyStore(e) => e.into(),
            CatalogError::Provider(e) => e.into(),
        }
    }
}

impl From<opsrun_application::admin::AdminError> for ApiError {
    fn from(error: opsrun_application::admin::AdminError) -> Self {
        use opsrun_application::admin::AdminError;
        match error {
            AdminError::Invalid(m) => Self::Invalid("invalid_token_request", m),
            AdminError::NotFound(m) => Self::NotFound(m),
            AdminError::Store(e) => e.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthorized => Self::Unauthorized,
            AuthError::Store(e) => Self::internal(e),
        }
    }
}
