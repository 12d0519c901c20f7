//! Who is calling, turned into a [`Caller`] by the `Authenticate` use case (the one token and
//! session rule, in `application::auth`):
//! - the API takes `Authorization: Bearer` only ([`Caller`] as an extractor), so no
//!   state-changing API route can be driven by a browser's cookie;
//! - the pages take the server-side session cookie only ([`PageCaller`]);
//! - the event stream, which pages open with `EventSource`, takes either ([`StreamCaller`]).

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use opsrun_application::access::Caller;

use super::{ApiError, AppState};

/// The name of the page session cookie.
pub const SESSION_COOKIE: &str = "opsrun_session";

/// The bearer token of the `Authorization` header (the scheme is case-insensitive, RFC 9110).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// The session cookie's value (the one cookie parser of the app). Two or more cookies of that
/// name are refused as none: a cookie set by a sibling domain must not be able to shadow the
/// real one (cookie tossing).
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let mut found = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| {
            c.trim()
                .strip_prefix(SESSION_COOKIE)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_owned)
        });
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// Whether a state-changing browser request comes from this site: `Sec-Fetch-Site` (when the
/// browser sends it) must be `same-origin` or `none` (typed by the user), and `Origin` (when
/// sent) must name this host. A request with neither is not a browser's cross-site form.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // A page cannot set `Sec-Fetch-Site`: when the browser sends it, it is the answer. (Its
    // `Origin` may then be `null`, as under a `no-referrer` policy.)
    if let Some(site) = text("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    match (text("origin"), text("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        Ok(state.stack.authenticate.execute(token).await?)
    }
}

/// A caller of the pages: the holder of a live page session.
#[derive(Debug, Clone)]
pub struct PageCaller {
    /// Who it is.
    pub caller: Caller,
    /// The session secret (the CSRF token of its forms is derived from it).
    pub session: String,
}

impl FromRequestParts<AppState> for PageCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = session_cookie(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let caller = state.stack.authenticate.session(&session).await?;
        Ok(Self { caller, session })
    }
}

/// A caller of the event stream: a bearer token, or else the page session cookie.
#[derive(Debug, Clone)]
pub struct StreamCaller(pub Caller);

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = bearer(&parts.headers) {
            return Ok(Self(state.stack.authenticate.execute(token).await?));
        }
        let session = session_cookie(&parts.headers).ok_or(ApiError::Unauthorized)?;
        Ok(Self(state.stack.authenticate.session(&session).await?))
    }
}
