//! The notifications page: one notification per operation the caller started, when it ended,
//! newest first; unread ones can be marked read (one, or all).

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use opsrun_application::read_models::Page;

use super::views::outcome_words;
use super::{Chrome, CsrfForm, chrome, cross_site, form_ok, html, to_login};
use crate::web::api::dto::rfc3339;
use crate::web::auth::PageCaller;
use crate::web::{ApiError, AppState};

/// Notifications on one page.
const PER_PAGE: u32 = 50;

/// A notification as the page lists it.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    run: i64,
    label: String,
    tenant: String,
    outcome: String,
    outcome_words: String,
    at: String,
    at_words: String,
    read: bool,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    chrome: Chrome,
    items: Vec<Row>,
    next: Option<i64>,
}

/// `GET /notifications[?cursor=ID]`.
pub(super) async fn page(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    let before = params.get("cursor").and_then(|c| c.parse::<i64>().ok());
    let all = match state.stack.models.notifications(&page.caller).await {
        Ok(all) => all,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let shown = Page::after(
        all,
        |(n, _)| before.is_some_and(|b| n.id >= b),
        PER_PAGE,
        |(n, _)| n.id,
    );
    let families = &state.stack.families;
    let items = shown
        .items
        .into_iter()
        .map(|(n, tenant)| Row {
            id: n.id,
            run: n.run.value(),
            label: families.label(&n.operation_type),
            tenant: tenant.to_string(),
            outcome: n.outcome.key().to_owned(),
            outcome_words: outcome_words(n.outcome),
            at: rfc3339(n.created_at),
            at_words: super::views::utc_words(n.created_at),
            read: n.read,
        })
        .collect();
    html(&NotificationsPage {
        chrome: chrome(&state, &page).await,
        items,
        next: shown.next_cursor,
    })
}

/// `POST /notifications/{id}/read` (form `csrf`).
pub(super) async fn read_one(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(id) = crate::web::api::handlers::positive_id(&id) else {
        return ApiError::NotFound("notification not found".into()).into_response();
    };
    mark(state, page, &headers, &form, Some(id)).await
}

/// `POST /notifications/read-all` (form `csrf`).
pub(super) async fn read_all(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    mark(state, page, &headers, &form, None).await
}

async fn mark(
    state: AppState,
    page: Result<PageCaller, ApiError>,
    headers: &HeaderMap,
    form: &CsrfForm,
    id: Option<i64>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    if !form_ok(headers, &page, &form.csrf) {
        return cross_site();
    }
    match state.stack.control.mark_read(&page.caller, id).await {
        Ok(_) => Redirect::to("/notifications").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
