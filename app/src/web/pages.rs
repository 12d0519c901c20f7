//! The server-rendered pages: login, the tenant shell activity feed, the Operations
//! collection and the Operations detail. Every value is escaped by askama; a strict
//! Content-Security-Policy allows only this origin's script and style; state-changing forms
//! carry a CSRF token derived from the session token, and the session cookie is
//! `HttpOnly; SameSite=Strict`.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use opsrun_application::ports::Role;
use opsrun_application::read_models::CollectionFilter;
use opsrun_domain::{OperationType, RunId, RunOutcome, RunStatus, Slug};
use serde::Deserialize;
use tower_http::set_header::SetResponseHeaderLayer;

use super::api::dto::rfc3339;
use super::api::handlers::{positive_id, run_id};
use super::live::{self, Follow};

pub mod inbox;
pub mod items;
pub mod overview;
pub mod tenant;
pub mod views;
pub mod webhooks;
use super::auth::{PageCaller, SESSION_COOKIE, same_origin};
use super::{ApiError, AppState};

/// The Content-Security-Policy of every page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "collection.html")]
struct CollectionPage {
    chrome: Chrome,
    items: Vec<String>,
    live: String,
    types: Vec<String>,
    statuses: Vec<String>,
    outcomes: Vec<String>,
    filter_tenant: String,
    filter_type: String,
    filter_status: String,
    filter_outcome: String,
    /// The time ranges `(key, label)`.
    since: Vec<(String, String)>,
    filter_since: String,
    next: Option<String>,
    /// `26–50`: the runs this page shows.
    position: Option<String>,
    /// The first page, when this is not it.
    newest: Option<String>,
}

#[derive(Template)]
#[template(path = "detail.html")]
struct DetailPage {
    chrome: Chrome,
    id: i64,
    label: String,
    body: String,
}

fn html(page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// The CSRF token of a session: only the holder of the session secret can compute it, and a
/// new session (every login) has a new one.
fn csrf_of(session: &str) -> String {
    opsrun_application::auth::csrf_token(session)
}

/// A state-changing form is this site's own: same origin, and the session's CSRF token.
fn form_ok(headers: &HeaderMap, page: &PageCaller, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    same_origin(headers) && bool::from(csrf_of(&page.session).as_bytes().ct_eq(given.as_bytes()))
}

fn cross_site() -> Response {
    ApiError::Forbidden("cross-site request refused".into()).into_response()
}

/// What the header of every page shows: who is logged in, the tenants to go to, the session's
/// CSRF token (for log out), whether the tokens page is theirs, and unread notifications.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chrome {
    pub(crate) user: Option<String>,
    pub(crate) tenants: Vec<String>,
    pub(crate) csrf: String,
    pub(crate) owner: bool,
    pub(crate) unread: usize,
}

async fn chrome(state: &AppState, page: &PageCaller) -> Chrome {
    let caller = &page.caller;
    let tenants = match state.stack.catalog.tenants(caller).await {
        Ok(visible) => visible.into_iter().map(|t| t.slug.to_string()).collect(),
        // The chrome is decoration: a failed lookup shows no tenant links, not an error page.
        Err(_) => Vec::new(),
    };
    let unread = match state.stack.models.notifications(caller).await {
        Ok(all) => all.iter().filter(|(n, _)| !n.read).count(),
        Err(_) => 0,
    };
    Chrome {
        user: Some(caller.user.email.clone()),
        tenants,
        csrf: csrf_of(&page.session),
        owner: caller.role == Role::Owner,
        unread,
    }
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

async fn index(State(state): State<AppState>, page: Result<PageCaller, ApiError>) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    let chrome = chrome(&state, &page).await;
    match chrome.tenants.first() {
        Some(t) => Redirect::to(&format!("/tenants/{t}")).into_response(),
        None => Redirect::to("/operations").into_response(),
    }
}

async fn login_form() -> Response {
    html(&LoginPage {
        chrome: Chrome::default(),
        error: None,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // Login CSRF: a cross-site form must not log the victim in as someone else.
    if !same_origin(&headers) {
        return cross_site();
    }
    let opened = match state.stack.authenticate.login(&form.token).await {
        Ok(opened) => opened,
        Err(opsrun_application::auth::AuthError::Unauthorized) => {
            let page = LoginPage {
                chrome: Chrome::default(),
                error: Some("That token is not valid.".to_owned()),
            };
            return (StatusCode::UNAUTHORIZED, html(&page)).into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let secure = state.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/{}",
        opened.secret.expose(),
        if secure { "; Secure" } else { "" }
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    if !form_ok(&headers, &page, &form.csrf) {
        return cross_site();
    }
    // The session ends on the server: the old cookie value opens nothing any more.
    if let Err(e) = state.stack.authenticate.logout(&page.session).await {
        return ApiError::from(e).into_response();
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("opsrun_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

/// The time ranges of the collection's filter: `(key, label, milliseconds back)`.
const SINCE: [(&str, &str, i64); 4] = [
    ("1h", "last hour", 3_600_000),
    ("24h", "last 24 hours", 86_400_000),
    ("7d", "last 7 days", 7 * 86_400_000),
    ("30d", "last 30 days", 30 * 86_400_000),
];

/// The collection's filter, page and time window (ms) from its query (unknown values are
/// ignored, as a form that sends empty selects needs).
fn collection_query(
    params: &HashMap<String, String>,
) -> (CollectionFilter, Option<RunId>, Option<i64>) {
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let filter = CollectionFilter {
        tenant: get("tenant").and_then(|t| Slug::parse(t).ok()),
        operation_type: get("type").and_then(|t| OperationType::parse(t).ok()),
        status: get("status").and_then(|s| RunStatus::parse(s).ok()),
        outcome: get("outcome").and_then(|o| RunOutcome::parse(o).ok()),
        created_since: None,
    };
    let window = get("since")
        .and_then(|s| SINCE.iter().find(|(key, _, _)| *key == s))
        .map(|(_, _, ms)| *ms);
    let before = get("cursor")
        .and_then(|c| c.parse::<i64>().ok())
        .filter(|c| *c > 0)
        .map(RunId::new);
    (filter, before, window)
}

/// The collection page's live stream, for the same query as the page.
async fn collection_live(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let page = match page {
        Ok(page) => page,
        Err(e) => return e.into_response(),
    };
    let (filter, before, window) = collection_query(&params);
    let follow = Follow::Collection(filter, before, window);
    // What the page may show, or its refusal (an invisible tenant filter), before streaming.
    if let Err(e) = live::shown(&state, &page, &follow).await {
        return e.into_response();
    }
    live::stream(state, live::Wire::Page(page), follow).into_response()
}

/// The detail page's live stream.
async fn detail_live(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let page = match page {
        Ok(page) => page,
        Err(e) => return e.into_response(),
    };
    let id = match run_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = state.stack.models.run(&page.caller, id).await {
        return ApiError::from(e).into_response();
    }
    live::stream(state, live::Wire::Page(page), Follow::Run(id)).into_response()
}

async fn collection(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    let (filter, before, window) = collection_query(&params);
    let follow = Follow::Collection(filter.clone(), before, window);
    let shown = match live::shown(&state, &page, &follow).await {
        Ok(shown) => shown,
        Err(e) => return e.into_response(),
    };
    let chrome = chrome(&state, &page).await;
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let keep = |k: &str| get(k).map(|v| format!("&{k}={v}")).unwrap_or_default();
    let filters = format!(
        "{}{}{}{}{}",
        keep("tenant"),
        keep("type"),
        keep("status"),
        keep("outcome"),
        keep("since")
    );
    // The page's place in the list: the link to it says how many came before.
    let from = get("from")
        .and_then(|f| f.parse::<usize>().ok())
        .filter(|_| before.is_some())
        .unwrap_or(0);
    let count = shown
        .fragments
        .iter()
        .filter(|f| f.id.starts_with("run-"))
        .count();
    let next = shown.next.map(|c| {
        format!(
            "/operations?cursor={c}&from={}{filters}",
            from.saturating_add(live::COLLECTION_PAGE as usize)
        )
    });
    let position =
        (count > 0).then(|| format!("{}–{}", from.saturating_add(1), from.saturating_add(count)));
    let newest = before.map(|_| format!("/operations?{}", filters.trim_start_matches('&')));
    let live = format!(
        "/operations/live?cursor={}{filters}",
        before.map(|b| b.to_string()).unwrap_or_default()
    );
    html(&CollectionPage {
        chrome,
        items: shown.fragments.into_iter().map(|f| f.html).collect(),
        live,
        types: state
            .stack
            .families
            .iter()
            .map(|f| f.operation_type().key().to_owned())
            .collect(),
        statuses: RunStatus::ALL.iter().map(|s| s.key().to_owned()).collect(),
        outcomes: RunOutcome::ALL.iter().map(|o| o.key().to_owned()).collect(),
        filter_tenant: filter.tenant.map(|t| t.to_string()).unwrap_or_default(),
        filter_type: filter
            .operation_type
            .map(|t| t.key().to_owned())
            .unwrap_or_default(),
        filter_status: filter
            .status
            .map(|s| s.key().to_owned())
            .unwrap_or_default(),
        filter_outcome: filter
            .outcome
            .map(|o| o.key().to_owned())
            .unwrap_or_default(),
        since: SINCE
            .iter()
            .map(|(key, label, _)| ((*key).to_owned(), (*label).to_owned()))
            .collect(),
        filter_since: get("since").unwrap_or_default().to_owned(),
        next,
        position,
        newest,
    })
}

async fn detail(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    let id = match run_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let shown = match live::shown(&state, &page, &Follow::Run(id)).await {
        Ok(shown) => shown,
        Err(e) => return e.into_response(),
    };
    let chrome = chrome(&state, &page).await;
    html(&DetailPage {
        chrome,
        id: id.value(),
        label: shown.label.unwrap_or_default(),
        body: shown
            .fragments
            .into_iter()
            .map(|f| f.html)
            .collect::<String>(),
    })
}

/// A run-control form of the detail page: pause, resume, retry or cancel.
async fn control(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    let caller = &page.caller;
    if !form_ok(&headers, &page, &form.csrf) {
        return cross_site();
    }
    let id = match run_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let result = match action.as_str() {
        "pause" => state.stack.control.pause(caller, id).await.map(|r| r.id()),
        "resume" => state.stack.control.resume(caller, id).await.map(|r| r.id()),
        "retry" => state
            .stack
            .retry
            .execute(caller, id)
            .await
            .map(|s| s.run.id()),
        "cancel" => state.stack.cancel.execute(caller, id).await.map(|r| r.id()),
        _ => return ApiError::NotFound("page not found".into()).into_response(),
    };
    match result {
        Ok(shown) => Redirect::to(&format!("/operations/{shown}")).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A token row of the tokens page.
#[derive(Debug, Clone)]
struct TokenRow {
    id: i64,
    user: String,
    role: String,
    tenants: String,
    created: String,
    expires: String,
    last_used: String,
    status: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    chrome: Chrome,
    tokens: Vec<TokenRow>,
}

async fn tokens(State(state): State<AppState>, page: Result<PageCaller, ApiError>) -> Response {
    use opsrun_application::access::AccessPolicy;
    use opsrun_application::ports::TenantScope;
    let Ok(page) = page else {
        return to_login();
    };
    let caller = &page.caller;
    if let Err(e) = AccessPolicy::require(caller, Role::Owner) {
        return ApiError::from(e).into_response();
    }
    let records = match state.stack.tokens.list(Some(caller.workspace())).await {
        Ok(records) => records,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let slugs = match state.stack.directory.tenants_of(caller.workspace()).await {
        Ok(all) => all,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let when = |t: Option<opsrun_domain::Timestamp>| t.map_or_else(|| "never".to_owned(), rfc3339);
    let rows = records
        .into_iter()
        .map(|r| TokenRow {
            status: state.stack.tokens.status(&r).to_owned(),
            id: r.id.0,
            user: r.email,
            role: r.role.key().to_owned(),
            tenants: match &r.scope {
                TenantScope::All => "all".to_owned(),
                TenantScope::Only(ids) => slugs
                    .iter()
                    .filter(|t| ids.contains(&t.id))
                    .map(|t| t.slug.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            created: rfc3339(r.created_at),
            expires: when(r.expires_at),
            last_used: when(r.last_used_at),
        })
        .collect();
    let chrome = chrome(&state, &page).await;
    html(&TokensPage {
        chrome,
        tokens: rows,
    })
}

async fn revoke(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    use opsrun_application::access::AccessPolicy;
    let Ok(page) = page else {
        return to_login();
    };
    if !form_ok(&headers, &page, &form.csrf) {
        return cross_site();
    }
    if let Err(e) = AccessPolicy::require(&page.caller, Role::Owner) {
        return ApiError::from(e).into_response();
    }
    let Some(id) = positive_id(&id) else {
        return ApiError::NotFound("token not found".into()).into_response();
    };
    let revoked = state
        .stack
        .tokens
        .revoke(
            Some(page.caller.workspace()),
            opsrun_application::ports::TokenId(id),
        )
        .await;
    match revoked {
        // Revoking the token of this very session ends it: back to login.
        Ok(_) => Redirect::to("/tokens").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/live.js"),
    )
        .into_response()
}

/// The pages' live streams (long-lived: no request timeout).
pub(super) fn stream_routes() -> Router<AppState> {
    Router::new()
        .route("/tenants/{tenant}/live", get(tenant::live))
        .route("/operations/live", get(collection_live))
        .route("/operations/{id}/live", get(detail_live))
}

/// The pages' routes, with their security headers.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/tenants/{tenant}", get(tenant::page))
        .route("/tenants/{tenant}/start", post(tenant::start))
        .route(
            "/tenants/{tenant}/backup-sets",
            post(tenant::create_backup_set),
        )
        .route("/operations", get(collection))
        .route("/operations/{id}", get(detail))
        .route("/operations/{id}/{action}", post(control))
        .route("/operations/{id}/items", get(items::page))
        .route("/operations/{id}/items.csv", get(items::csv))
        .route("/operations/{id}/artifact", get(items::artifact))
        .route("/overview", get(overview::page))
        .route("/notifications", get(inbox::page))
        .route("/notifications/read-all", post(inbox::read_all))
        .route("/notifications/{id}/read", post(inbox::read_one))
        .route("/webhooks", get(webhooks::page).post(webhooks::add))
        .route("/webhooks/{id}", get(webhooks::deliveries))
        .route("/webhooks/{id}/remove", post(webhooks::remove))
        .route(
            "/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/tokens", get(tokens))
        .route("/tokens/{id}/revoke", post(revoke))
        .route("/static/app.css", get(stylesheet))
        .route("/static/live.js", get(script))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            // Same-origin requests keep their origin (forms are checked against it); other
            // sites learn nothing.
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
}
