//! Who is calling: the bearer token of the API or the page cookie, turned into a [`Caller`]
//! by the `Authenticate` use case (the one token rule, in `application::auth`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use opsrun_application::access::Caller;

use super::{ApiError, AppState};

/// The name of the cookie the pages carry the token in.
pub const TOKEN_COOKIE: &str = "opsrun_token";

/// The value of the first page cookie (the one cookie parser of the app).
pub(crate) fn token_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(TOKEN_COOKIE)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_owned)
        })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let token = match header {
            Some(token) => token.to_owned(),
            None => token_cookie(&parts.headers).ok_or(ApiError::Unauthorized)?,
        };
        Ok(state.stack.authenticate.execute(&token).await?)
    }
}
