//! The webhooks pages (owners): the workspace's endpoints with a form to add one (its secret
//! shown once, on the answer to the form) and to remove one; an endpoint's delivery log with
//! "Redeliver" on each delivery. Every change goes through the same use case as the API.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use opsrun_application::ports::{DeliveryId, WebhookId};
use opsrun_application::webhooks::{EndpointRequest, WebhookError};
use serde::Deserialize;

use super::{Chrome, CsrfForm, chrome, cross_site, form_ok, html, to_login};
use crate::web::api::handlers::positive_id;
use crate::web::api::webhooks::{DeliveryDoc, WebhookDoc, manager, webhook_doc};
use crate::web::auth::PageCaller;
use crate::web::{ApiError, AppState};

/// An endpoint as the list shows it.
struct Row {
    id: i64,
    url: String,
    events: String,
    tenants: String,
    created: String,
}

impl From<WebhookDoc> for Row {
    fn from(doc: WebhookDoc) -> Self {
        Self {
            id: doc.id,
            url: doc.url,
            events: doc.events.join(", "),
            tenants: doc
                .tenants
                .map_or_else(|| "all".to_owned(), |t| t.join(", ")),
            created: doc.created_at,
        }
    }
}

/// An endpoint just registered, with its secret.
struct Registered {
    id: i64,
    url: String,
    secret: String,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    chrome: Chrome,
    items: Vec<Row>,
    registered: Option<Registered>,
    error: Option<String>,
    url: String,
}

/// A delivery as the log shows it.
struct DeliveryRow {
    id: i64,
    event_id: String,
    run: i64,
    state: String,
    attempts: u32,
    last_attempt: Option<String>,
    next_attempt: Option<String>,
    answer: String,
    redelivery_of: Option<i64>,
}

impl From<DeliveryDoc> for DeliveryRow {
    fn from(d: DeliveryDoc) -> Self {
        let answer = match (d.last_status, d.last_error, d.last_latency_ms) {
            (Some(status), None, Some(ms)) => format!("{status} in {ms} ms"),
            (_, Some(error), _) => error,
            _ => "—".to_owned(),
        };
        // Past its time a pending delivery's `next_attempt_at` is a claim's lease: not news.
        let next_attempt = d.next_attempt_at.filter(|_| d.state == "pending");
        Self {
            id: d.id,
            event_id: d.event_id,
            run: d.operation_id,
            state: d.state,
            attempts: d.attempts,
            last_attempt: d.last_attempt_at,
            next_attempt,
            answer,
            redelivery_of: d.redelivery_of,
        }
    }
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    chrome: Chrome,
    id: i64,
    url: String,
    events: String,
    tenants: String,
    items: Vec<DeliveryRow>,
}

/// The form that adds an endpoint.
#[derive(Debug, Deserialize)]
pub(crate) struct AddForm {
    csrf: String,
    url: String,
}

async fn list_page(
    state: &AppState,
    page: &PageCaller,
    registered: Option<Registered>,
    error: Option<String>,
    url: String,
) -> Result<Response, ApiError> {
    let manager = manager(&page.caller)?;
    let mut items = Vec::new();
    for endpoint in state.stack.webhooks.list(&manager).await? {
        items.push(Row::from(webhook_doc(&state.stack, &endpoint).await?));
    }
    Ok(html(&WebhooksPage {
        chrome: chrome(state, page).await,
        items,
        registered,
        error,
        url,
    }))
}

/// `GET /webhooks`.
pub(crate) async fn page(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    list_page(&state, &page, None, None, String::new())
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /webhooks`: registers an endpoint; the answer shows its secret once. A refused URL
/// shows the page again with the reason and what was typed.
pub(crate) async fn add(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    headers: HeaderMap,
    Form(form): Form<AddForm>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    if !form_ok(&headers, &page, &form.csrf) {
        return cross_site();
    }
    let answer = async {
        let manager = manager(&page.caller)?;
        let request = EndpointRequest {
            workspace: page.caller.workspace(),
            url: form.url.clone(),
            events: Vec::new(),
        };
        match state.stack.webhooks.add(&manager, request).await {
            Ok(new) => {
                let registered = Registered {
                    id: new.endpoint.id.0,
                    url: new.endpoint.url.clone(),
                    secret: new.secret,
                };
                list_page(&state, &page, Some(registered), None, String::new()).await
            }
            Err(WebhookError::Invalid { message, .. }) => {
                let mut answer =
                    list_page(&state, &page, None, Some(message), form.url.clone()).await?;
                *answer.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
                Ok(answer)
            }
            Err(other) => Err(ApiError::from(other)),
        }
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /webhooks/{id}`: the endpoint's delivery log.
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    let answer = async {
        let manager = manager(&page.caller)?;
        let id = positive_id(&id).ok_or_else(|| ApiError::NotFound("webhook not found".into()))?;
        let (endpoint, log) = state
            .stack
            .webhooks
            .deliveries(&manager, WebhookId(id))
            .await?;
        let doc = webhook_doc(&state.stack, &endpoint).await?;
        let row = Row::from(doc);
        Ok::<_, ApiError>(html(&WebhookPage {
            chrome: chrome(&state, &page).await,
            id: row.id,
            url: row.url,
            events: row.events,
            tenants: row.tenants,
            items: log
                .iter()
                .map(|d| DeliveryRow::from(DeliveryDoc::new(d)))
                .collect(),
        }))
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /webhooks/{id}/remove`.
pub(crate) async fn remove(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    if !form_ok(&headers, &page, &form.csrf) {
        return cross_site();
    }
    let answer = async {
        let manager = manager(&page.caller)?;
        let id = positive_id(&id).ok_or_else(|| ApiError::NotFound("webhook not found".into()))?;
        state.stack.webhooks.remove(&manager, WebhookId(id)).await?;
        Ok::<_, ApiError>(Redirect::to("/webhooks").into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /webhooks/{id}/deliveries/{delivery}/redeliver`.
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    headers: HeaderMap,
    Path((id, delivery)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    if !form_ok(&headers, &page, &form.csrf) {
        return cross_site();
    }
    let answer = async {
        let manager = manager(&page.caller)?;
        let not_found = || ApiError::NotFound("delivery not found".into());
        let id = positive_id(&id).ok_or_else(not_found)?;
        let delivery = positive_id(&delivery).ok_or_else(not_found)?;
        state
            .stack
            .webhooks
            .redeliver(&manager, WebhookId(id), DeliveryId(delivery))
            .await?;
        Ok::<_, ApiError>(Redirect::to(&format!("/webhooks/{id}")).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}
