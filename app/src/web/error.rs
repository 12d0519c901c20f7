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
#[derive(Debug, Clone)]
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

    /// The status it answers with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The sentence it answers with (for a page that shows it at the form that caused it).
    #[must_use]
    pub fn message(&self) -> String {
        clip_quotes(&self.parts().2)
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
                message: clip_quotes(&message),
                // Set by the access layer, which knows the request's id.
                request_id: None,
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
            OperationError::Conflict { code, message } => Self::Conflict(code, message),
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

impl From<opsrun_application::webhooks::WebhookError> for ApiError {
    fn from(error: opsrun_application::webhooks::WebhookError) -> Self {
        use opsrun_application::webhooks::WebhookError;
        match error {
            WebhookError::Invalid { code, message } => Self::Invalid(code, message),
            WebhookError::NotFound(m) => Self::NotFound(m),
            WebhookError::Store(e) => e.into(),
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

/// Longest part of the caller's input an error message quotes.
const MAX_QUOTED: usize = 64;

/// `message` with every quoted input (`'...'`) cut to [`MAX_QUOTED`] characters: an error
/// never echoes a 60,000-character id back whole.
fn clip_quotes(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(512));
    let mut quoted: Option<usize> = None;
    for c in message.chars() {
        match (c, quoted) {
            ('\'', None) => {
                quoted = Some(0);
                out.push(c);
            }
            ('\'', Some(_)) => {
                quoted = None;
                out.push(c);
            }
            (c, Some(n)) => {
                if n < MAX_QUOTED {
                    out.push(c);
                } else if n == MAX_QUOTED {
                    out.push('…');
                }
                quoted = Some(n + 1);
            }
            (c, None) => out.push(c),
        }
    }
    out
}

fn escape_html(text: &str) -> String {
    text.chars()
        .fold(String::with_capacity(text.len()), |mut out, c| {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
            out
        })
}

/// One error shape everywhere: an error answer the framework produced itself (405, a path
/// that does not decode, a form it could not read, a request timeout) is rewritten to the
/// API's `{"error": {...}}` on API routes and to an HTML error page with the same code and
/// message on the pages. Answers opsrun wrote (JSON or HTML) pass unchanged.
pub(super) async fn one_error_shape(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE) {
        return response;
    }
    let content_type = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let page = !(path.starts_with("/api")
        || path == "/healthz"
        || path == "/readyz"
        || path == "/metrics");
    let json = content_type.starts_with("application/json");
    // opsrun's own answers pass: HTML anywhere, JSON on the API.
    if content_type.starts_with("text/html") || (json && !page) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    // A JSON error on a page (a page handler's refusal) keeps its code and message.
    let own: Option<(String, String)> = json
        .then(|| serde_json::from_str::<serde_json::Value>(&text).ok())
        .flatten()
        .and_then(|v| {
            Some((
                v["error"]["code"].as_str()?.to_owned(),
                v["error"]["message"].as_str()?.to_owned(),
            ))
        });
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        StatusCode::SERVICE_UNAVAILABLE => "timeout",
        _ => "bad_request",
    };
    let mut message: String = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text.chars().take(MAX_QUOTED).collect()
    };
    if text.chars().count() > MAX_QUOTED {
        message.push('…');
    }
    let (code, message) = match &own {
        Some((code, message)) => (code.as_str(), message.clone()),
        None => (code, message),
    };
    let mut answer = if page {
        let title = status.canonical_reason().unwrap_or("Error");
        axum::response::Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <meta name=\"viewport\" content=\"width=device-width\">\
             <link rel=\"stylesheet\" href=\"/static/app.css\"></head><body>\
             <header class=\"top\"><a class=\"brand\" href=\"/\">opsrun</a>\
             <nav aria-label=\"Main\"><a href=\"/overview\">Overview</a>\
             <a href=\"/operations\">Operations</a></nav></header><main>\
             <h1>{} {title}</h1><p><code>{code}</code>: {}</p><p><a href=\"/\">Back to opsrun</a></p>\
             </main></body></html>",
            status.as_u16(),
            escape_html(&message)
        ))
        .into_response()
    } else {
        axum::Json(serde_json::json!({"error": {"code": code, "message": message}})).into_response()
    };
    *answer.status_mut() = status;
    // Keep what the framework said about the request (e.g. `Allow` on a 405).
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_input_is_cut_to_64_characters() {
        let long = "p".repeat(60_000);

        let clipped = clip_quotes(&format!(
            "policy_ids: '{long}' does not exist in this tenant"
        ));

        assert_eq!(
            clipped,
            format!(
                "policy_ids: '{}…' does not exist in this tenant",
                "p".repeat(64)
            )
        );
        assert_eq!(
            clip_quotes("tenant 'contoso' not found"),
            "tenant 'contoso' not found"
        );
    }
}

/// A deserializer's message (`prams: unknown field \`prams\`, expected \`type\` or
/// \`params\` at line 1 column 9`) in plain words, without the library's prefix, Rust type
/// names or positions: `unknown field 'prams' (expected: type, params)`.
#[must_use]
pub fn plain_json_error(text: &str) -> String {
    let text = text
        .trim_start_matches("Failed to deserialize the JSON body into the target type: ")
        .trim();
    // Drop the position: the body is small, and the field path says where.
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => text,
    };
    // `path: message` names the field the message is about (`.` is the whole body).
    let (path, message) = match text.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => (Some(path), message),
        _ => (None, text),
    };
    let kind = |t: &str| match t {
        "i64" | "i32" | "u64" | "u32" | "usize" | "integer" => "a whole number".to_owned(),
        "a string" | "string" => "a text".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a boolean" | "bool" => "true or false".to_owned(),
        other => other.trim_start_matches("a ").to_owned(),
    };
    let words = if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let expected: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        if expected.is_empty() {
            format!("unknown field '{field}'")
        } else {
            format!(
                "unknown field '{field}' (expected: {})",
                expected.join(", ")
            )
        }
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        format!(
            "the required field '{}' is missing",
            rest.trim_end_matches('`')
        )
    } else if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (got, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let got = got.split(' ').next().unwrap_or(got);
        format!("expected {}, got {}", kind(expected), kind(got))
    } else {
        message.replace('`', "'")
    };
    match path {
        Some(path) if path != "." && !words.starts_with("unknown field") => {
            format!("{path}: {words}")
        }
        _ => words,
    }
}

#[cfg(test)]
mod plain_tests {
    use super::plain_json_error;

    #[test]
    fn deserializer_messages_are_plain_words() {
        assert_eq!(
            plain_json_error(
                "Failed to deserialize the JSON body into the target type: prams: unknown field `prams`, expected `type` or `params` at line 1 column 9"
            ),
            "unknown field 'prams' (expected: type, params)"
        );
        assert_eq!(
            plain_json_error(
                "expires_in_days: invalid type: string \"1\", expected i64 at line 1 column 30"
            ),
            "expires_in_days: expected a whole number, got a text"
        );
        assert_eq!(
            plain_json_error("missing field `type` at line 1 column 2"),
            "the required field 'type' is missing"
        );
    }
}
