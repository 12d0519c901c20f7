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
use opsrun_application::families::Families;
use opsrun_application::ports::Role;
use opsrun_application::read_models::{CollectionFilter, RunSummary};
use opsrun_domain::{OperationType, ProgressDetail, RunId, RunOutcome, RunStatus, Slug};
use serde::Deserialize;
use tower_http::set_header::SetResponseHeaderLayer;

use super::api::dto::rfc3339;
use super::auth::{PageCaller, SESSION_COOKIE, same_origin};
use super::{ApiError, AppState};

/// The Content-Security-Policy of every page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A progress widget, as the templates draw it.
#[derive(Debug, Clone, Default)]
pub struct Widget {
    mode: String,
    label: String,
    percent: u8,
    processed: u64,
    total: u64,
    phase_index: usize,
    phase_count: usize,
    phase_label: String,
    components: Vec<(String, String)>,
    outcome: String,
    activity: String,
    stale: bool,
    anomaly: bool,
    paused: bool,
    estimate: Option<String>,
}

impl Widget {
    fn of(summary: &RunSummary, families: &Families) -> Self {
        let view = &summary.progress;
        let mut w = Self {
            mode: view.mode().key().to_owned(),
            label: families.label(summary.run.operation_type()),
            outcome: summary.run.outcome().key().to_owned(),
            stale: view.stale,
            anomaly: view.anomaly,
            paused: view.paused,
            estimate: view
                .pace
                .as_ref()
                .map(opsrun_application::read_models::eta_phrase),
            ..Self::default()
        };
        match &view.detail {
            ProgressDetail::Counted {
                processed,
                total,
                percent,
            } => {
                w.processed = *processed;
                w.total = *total;
                w.percent = *percent;
            }
            ProgressDetail::Phased(phase) => {
                w.phase_index = phase.index;
                w.phase_count = phase.count;
                w.phase_label = phase.label.clone();
            }
            ProgressDetail::Composite { components, .. } => {
                w.components = components
                    .iter()
                    .map(|c| (c.label.clone(), crate::render::component_line(c)))
                    .collect();
            }
            ProgressDetail::Activity { processed } => {
                // A queued run is waiting (for a worker, or its tenant's slot), not working.
                w.activity = match (&view.waiting, summary.run.status()) {
                    (Some(reason), _) => reason.clone(),
                    (None, opsrun_domain::RunStatus::Queued) => "waiting for a worker".to_owned(),
                    (None, _) => processed
                        .map_or("working".to_owned(), |n| format!("working, {n} processed")),
                };
            }
            ProgressDetail::None { .. } => {}
        }
        w
    }
}

/// A run as a page row.
#[derive(Debug, Clone)]
pub struct PageRun {
    id: i64,
    label: String,
    status: String,
    tenant: String,
    view_url: String,
    created_at: String,
    widget: Widget,
}

impl PageRun {
    fn of(summary: &RunSummary, families: &Families) -> Self {
        Self {
            id: summary.run.id().value(),
            label: families.label(summary.run.operation_type()),
            status: summary.run.status().key().to_owned(),
            tenant: summary.tenant.to_string(),
            view_url: summary.view_url.clone(),
            created_at: rfc3339(summary.run.created_at()),
            widget: Widget::of(summary, families),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    user: Option<String>,
    tenants: Vec<String>,
    csrf: String,
    owner: bool,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "shell.html")]
struct ShellPage {
    user: Option<String>,
    tenants: Vec<String>,
    csrf: String,
    owner: bool,
    tenant: String,
    runs: Vec<PageRun>,
}

#[derive(Template)]
#[template(path = "collection.html")]
struct CollectionPage {
    user: Option<String>,
    tenants: Vec<String>,
    csrf: String,
    owner: bool,
    runs: Vec<PageRun>,
    types: Vec<String>,
    statuses: Vec<String>,
    outcomes: Vec<String>,
    filter_tenant: String,
    filter_type: String,
    filter_status: String,
    filter_outcome: String,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "detail.html")]
struct DetailPage {
    user: Option<String>,
    tenants: Vec<String>,
    csrf: String,
    owner: bool,
    r: PageRun,
    initiator: Option<String>,
    basis: Option<String>,
    counts: Vec<(String, u64)>,
    failures: Vec<(String, String)>,
    failed_items: Vec<(String, String)>,
    parent: Option<i64>,
    children: Vec<i64>,
    timeline: Vec<(String, String)>,
    controls: Controls,
    retry_of: Option<i64>,
    retried_by: Vec<i64>,
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

struct Chrome {
    user: Option<String>,
    tenants: Vec<String>,
    csrf: String,
    owner: bool,
}

async fn chrome(state: &AppState, page: &PageCaller) -> Chrome {
    let caller = &page.caller;
    let tenants = match state.stack.catalog.tenants(caller).await {
        Ok(visible) => visible.into_iter().map(|t| t.slug.to_string()).collect(),
        // The chrome is decoration: a failed lookup shows no tenant links, not an error page.
        Err(_) => Vec::new(),
    };
    Chrome {
        user: Some(caller.user.email.clone()),
        tenants,
        csrf: csrf_of(&page.session),
        owner: caller.role == Role::Owner,
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
        user: None,
        tenants: Vec::new(),
        csrf: String::new(),
        owner: false,
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
                user: None,
                tenants: Vec::new(),
                csrf: String::new(),
                owner: false,
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
struct CsrfForm {
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

async fn shell(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Path(tenant): Path<String>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    let caller = &page.caller;
    let Ok(slug) = Slug::parse(&tenant) else {
        return ApiError::NotFound("tenant not found".into()).into_response();
    };
    let feed = match state.stack.models.activity(caller, &slug).await {
        Ok(feed) => feed,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let chrome = chrome(&state, &page).await;
    html(&ShellPage {
        user: chrome.user,
        tenants: chrome.tenants,
        csrf: chrome.csrf,
        owner: chrome.owner,
        tenant: slug.to_string(),
        runs: feed
            .iter()
            .map(|s| PageRun::of(s, &state.stack.families))
            .collect(),
    })
}

async fn collection(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    let caller = &page.caller;
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let filter = CollectionFilter {
        tenant: get("tenant").and_then(|t| Slug::parse(t).ok()),
        operation_type: get("type").and_then(|t| OperationType::parse(t).ok()),
        status: get("status").and_then(|s| RunStatus::parse(s).ok()),
        outcome: get("outcome").and_then(|o| RunOutcome::parse(o).ok()),
    };
    let before = get("cursor")
        .and_then(|c| c.parse::<i64>().ok())
        .filter(|c| *c > 0)
        .map(RunId::new);
    let runs = match state
        .stack
        .models
        .collection(caller, filter.clone(), 25, before)
        .await
    {
        Ok(runs) => runs,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let chrome = chrome(&state, &page).await;
    let keep = |k: &str| get(k).map(|v| format!("&{k}={v}")).unwrap_or_default();
    let next = runs.next_cursor.map(|c| {
        format!(
            "/operations?cursor={c}{}{}{}{}",
            keep("tenant"),
            keep("type"),
            keep("status"),
            keep("outcome")
        )
    });
    html(&CollectionPage {
        user: chrome.user,
        tenants: chrome.tenants,
        csrf: chrome.csrf,
        owner: chrome.owner,
        runs: runs
            .items
            .iter()
            .map(|s| PageRun::of(s, &state.stack.families))
            .collect(),
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
        next,
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
    let caller = &page.caller;
    let Some(id) = id.parse::<i64>().ok().filter(|i| *i > 0) else {
        return ApiError::NotFound("operation not found".into()).into_response();
    };
    let detail = match state.stack.models.detail(caller, RunId::new(id)).await {
        Ok(detail) => detail,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let chrome = chrome(&state, &page).await;
    let run = &detail.summary.run;
    html(&DetailPage {
        user: chrome.user,
        tenants: chrome.tenants,
        csrf: chrome.csrf,
        owner: chrome.owner,
        r: PageRun::of(&detail.summary, &state.stack.families),
        initiator: detail.summary.initiator.clone(),
        basis: detail.summary.progress.basis.clone(),
        counts: run
            .counts()
            .iter()
            .map(|(k, v)| (k.key().to_owned(), v))
            .collect(),
        failures: run
            .failures()
            .iter()
            .map(|f| (f.code.to_string(), f.message.clone()))
            .collect(),
        failed_items: detail
            .failed_items
            .iter()
            .map(|(k, e)| {
                (
                    k.to_string(),
                    e.reason
                        .as_ref()
                        .map_or("-".to_owned(), ToString::to_string),
                )
            })
            .collect(),
        parent: detail.parent.map(RunId::value),
        children: detail.children.iter().map(|c| c.run.id().value()).collect(),
        timeline: detail
            .timeline
            .iter()
            .map(|t| {
                let who = t
                    .actor
                    .as_ref()
                    .map(|a| format!(" by {a}"))
                    .unwrap_or_default();
                (rfc3339(t.at), format!("{}{who}", t.event))
            })
            .collect(),
        controls: Controls::of(run, caller.role, &state.stack.families),
        retry_of: run.retry_of().map(RunId::value),
        retried_by: detail
            .summary
            .retried_by
            .iter()
            .flatten()
            .map(|r| r.value())
            .collect(),
    })
}

/// The run-control forms of the detail page. A form the caller's role allows is always
/// rendered, and shown only while the run allows its action; live.js applies the same rule
/// to every run document it receives (`data-when`), so a run that completes, pauses or resumes
/// on screen never keeps a button for an action it no longer allows.
#[derive(Debug, Clone, Copy)]
struct Controls {
    /// Pause/resume/retry forms exist (operator and above).
    operate: bool,
    /// The cancel form exists (owner).
    cancel: bool,
    /// The retry form exists (operator, and the family retries failed items).
    retry: bool,
    /// Shown now: pause (active, not paused), resume (paused), cancel (active), retry
    /// (completed with failed items).
    pause_shown: bool,
    resume_shown: bool,
    cancel_shown: bool,
    retry_shown: bool,
}

impl Controls {
    fn of(run: &opsrun_domain::OperationRun, role: Role, families: &Families) -> Self {
        let active = !run.is_completed();
        Self {
            operate: role >= Role::Operator,
            cancel: role == Role::Owner,
            retry: role >= Role::Operator && families.is_retryable(run.operation_type()),
            pause_shown: active && !run.is_paused(),
            resume_shown: run.is_paused(),
            cancel_shown: active,
            retry_shown: !active && run.counts().get_or_zero(opsrun_domain::SummaryKey::Failed) > 0,
        }
    }
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
    let Some(id) = id.parse::<i64>().ok().filter(|i| *i > 0) else {
        return ApiError::NotFound("operation not found".into()).into_response();
    };
    let id = RunId::new(id);
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
    user: Option<String>,
    tenants: Vec<String>,
    csrf: String,
    owner: bool,
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
        user: chrome.user,
        tenants: chrome.tenants,
        csrf: chrome.csrf,
        owner: chrome.owner,
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
    let Some(id) = id.parse::<i64>().ok().filter(|i| *i > 0) else {
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

/// The pages' routes, with their security headers.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/tenants/{tenant}", get(shell))
        .route("/operations", get(collection))
        .route("/operations/{id}", get(detail))
        .route("/operations/{id}/{action}", post(control))
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
