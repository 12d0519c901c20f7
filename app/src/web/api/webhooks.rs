//! Webhook endpoints of the caller's workspace (owners): register (the secret shown once),
//! list, remove, read a delivery log, redeliver.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use opsrun_application::access::{AccessPolicy, Caller};
use opsrun_application::ports::{Delivery, DeliveryId, Endpoint, Role, TenantScope, WebhookId};
use opsrun_application::webhooks::{EndpointRequest, Manager};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dto::{ErrorBody, rfc3339};
use super::handlers::{ApiJson, positive_id};
use crate::web::{ApiError, AppState};

/// A webhook endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDoc {
    /// Its id.
    #[schema(minimum = 1)]
    pub id: i64,
    /// Where deliveries are POSTed.
    #[schema(example = "https://hooks.example.com/opsrun")]
    pub url: String,
    /// The events it receives.
    #[schema(example = json!(["operation.completed"]))]
    pub events: Vec<String>,
    /// The tenants whose runs it receives (those of the token that registered it); null:
    /// every tenant of the workspace.
    pub tenants: Option<Vec<String>>,
    /// When it was registered (RFC 3339).
    pub created_at: String,
}

/// A webhook endpoint just registered: `secret` signs its deliveries and is shown this once.
#[derive(Serialize, ToSchema)]
pub struct RegisteredWebhookDoc {
    /// The endpoint.
    #[serde(flatten)]
    pub webhook: WebhookDoc,
    /// The signing secret (`whsec_` and 64 hex digits).
    #[schema(example = "whsec_4f0c…")]
    pub secret: String,
}

impl std::fmt::Debug for RegisteredWebhookDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredWebhookDoc")
            .field("webhook", &self.webhook)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The workspace's webhook endpoints, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// The endpoints.
    pub items: Vec<WebhookDoc>,
}

/// Register a webhook endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// An absolute https URL (http only where the server allows it), without credentials,
    /// at most 2,048 characters, not a loopback, private or link-local address.
    #[schema(example = "https://hooks.example.com/opsrun", max_length = 2048)]
    pub url: String,
    /// Event types; absent or empty: `operation.completed`.
    pub events: Option<Vec<String>>,
}

/// One delivery of one event to one endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDoc {
    /// Its id.
    #[schema(minimum = 1)]
    pub id: i64,
    /// The endpoint.
    pub webhook_id: i64,
    /// The event's stable id (the same on every delivery of this event).
    #[schema(example = "evt_42_completed")]
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The run the event is about.
    pub operation_id: i64,
    /// When the event happened (RFC 3339).
    pub occurred_at: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<String>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<String>,
    /// The HTTP status of the last attempt, if the endpoint answered.
    pub last_status: Option<u16>,
    /// How long the last attempt took, in milliseconds.
    pub last_latency_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The delivery this one sends again, if it is a redelivery.
    pub redelivery_of: Option<i64>,
}

/// An endpoint and its delivery log, newest first (at most 100).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// The endpoint.
    pub webhook: WebhookDoc,
    /// Its deliveries.
    pub items: Vec<DeliveryDoc>,
}

impl DeliveryDoc {
    /// The document of `d`.
    #[must_use]
    pub fn new(d: &Delivery) -> Self {
        Self {
            id: d.id.0,
            webhook_id: d.endpoint.0,
            event_id: d.event_id.clone(),
            event_type: d.event.key().to_owned(),
            operation_id: d.run.value(),
            occurred_at: rfc3339(d.occurred_at),
            state: d.state.key().to_owned(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(rfc3339),
            last_attempt_at: d.last_attempt_at.map(rfc3339),
            last_status: d.last_status,
            last_latency_ms: d.last_latency_ms,
            last_error: d.last_error.clone(),
            redelivery_of: d.redelivery_of.map(|r| r.0),
        }
    }
}

/// The manager a caller is: an owner of its workspace, with its tenant scope.
///
/// # Errors
///
/// 403 below `owner`.
pub fn manager(caller: &Caller) -> Result<Manager, ApiError> {
    AccessPolicy::require(caller, Role::Owner)?;
    Ok(Manager {
        workspace: Some(caller.workspace()),
        scope: caller.scope.clone(),
        user: Some(caller.user.id),
    })
}

/// The document of `endpoint`, with its tenants as slugs.
///
/// # Errors
///
/// When the directory cannot be read.
pub async fn webhook_doc(
    stack: &crate::wiring::Stack,
    endpoint: &Endpoint,
) -> Result<WebhookDoc, opsrun_application::StoreError> {
    let tenants = match &endpoint.scope {
        TenantScope::All => None,
        TenantScope::Only(ids) => Some(
            stack
                .directory
                .tenants_of(endpoint.workspace)
                .await?
                .into_iter()
                .filter(|t| ids.contains(&t.id))
                .map(|t| t.slug.to_string())
                .collect(),
        ),
    };
    Ok(WebhookDoc {
        id: endpoint.id.0,
        url: endpoint.url.clone(),
        events: endpoint.events.iter().map(|e| e.key().to_owned()).collect(),
        tenants,
        created_at: rfc3339(endpoint.created_at),
    })
}

fn webhook_id(text: &str) -> Result<WebhookId, ApiError> {
    positive_id(text)
        .map(WebhookId)
        .ok_or_else(|| ApiError::NotFound("webhook not found".into()))
}

/// The workspace's webhook endpoints (owner only).
#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookList, description = "the endpoints, newest first"),
        (status = 401, body = ErrorBody, description = "no valid bearer token"),
        (status = 403, body = ErrorBody, description = "the token's role is too low")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WebhookList>, ApiError> {
    let manager = manager(&caller)?;
    let mut items = Vec::new();
    for endpoint in state.stack.webhooks.list(&manager).await? {
        items.push(webhook_doc(&state.stack, &endpoint).await?);
    }
    Ok(Json(WebhookList { items }))
}

/// Register a webhook endpoint (owner only); its runs' events are delivered to it from now on.
#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", request_body = WebhookBody,
    responses((status = 201, body = RegisteredWebhookDoc, description = "the endpoint, with its signing secret shown this once"),
        (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"),
        (status = 401, body = ErrorBody, description = "no valid bearer token"),
        (status = 403, body = ErrorBody, description = "the token's role is too low"),
        (status = 413, body = ErrorBody, description = "the body is over 64 KiB"),
        (status = 415, body = ErrorBody, description = "the body is not sent as application/json"),
        (status = 422, body = ErrorBody, description = "invalid_webhook_url, webhook_url_not_https, webhook_url_private, invalid_webhook_events or too_many_webhooks")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<WebhookBody>,
) -> Result<(StatusCode, Json<RegisteredWebhookDoc>), ApiError> {
    let manager = manager(&caller)?;
    let registered = state
        .stack
        .webhooks
        .add(
            &manager,
            EndpointRequest {
                workspace: caller.workspace(),
                url: body.url,
                events: body.events.unwrap_or_default(),
            },
        )
        .await?;
    let webhook = webhook_doc(&state.stack, &registered.endpoint).await?;
    Ok((
        StatusCode::CREATED,
        Json(RegisteredWebhookDoc {
            webhook,
            secret: registered.secret,
        }),
    ))
}

/// Remove a webhook endpoint and its delivery log (owner only); pending deliveries are not sent.
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, minimum = 1, description = "the endpoint's id")),
    responses((status = 200, body = WebhookDoc, description = "the endpoint, removed"),
        (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"),
        (status = 401, body = ErrorBody, description = "no valid bearer token"),
        (status = 403, body = ErrorBody, description = "the token's role is too low"),
        (status = 404, body = ErrorBody, description = "no such endpoint in the workspace")))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookDoc>, ApiError> {
    let manager = manager(&caller)?;
    let removed = state
        .stack
        .webhooks
        .remove(&manager, webhook_id(&id)?)
        .await?;
    Ok(Json(webhook_doc(&state.stack, &removed).await?))
}

/// An endpoint's delivery log, newest first (owner only).
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = i64, Path, minimum = 1, description = "the endpoint's id")),
    responses((status = 200, body = DeliveryList, description = "the endpoint and its last 100 deliveries"),
        (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"),
        (status = 401, body = ErrorBody, description = "no valid bearer token"),
        (status = 403, body = ErrorBody, description = "the token's role is too low"),
        (status = 404, body = ErrorBody, description = "no such endpoint in the workspace")))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeliveryList>, ApiError> {
    let manager = manager(&caller)?;
    let (endpoint, log) = state
        .stack
        .webhooks
        .deliveries(&manager, webhook_id(&id)?)
        .await?;
    Ok(Json(DeliveryList {
        webhook: webhook_doc(&state.stack, &endpoint).await?,
        items: log.iter().map(DeliveryDoc::new).collect(),
    }))
}

/// Send a delivery again (owner only): a new delivery of the same event, with the same
/// `event_id`, due now.
#[utoipa::path(post, path = "/api/webhooks/{id}/deliveries/{delivery}/redeliver", tag = "webhooks",
    params(("id" = i64, Path, minimum = 1, description = "the endpoint's id"),
        ("delivery" = i64, Path, minimum = 1, description = "the delivery's id")),
    responses((status = 202, body = DeliveryDoc, description = "the new delivery, pending"),
        (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"),
        (status = 401, body = ErrorBody, description = "no valid bearer token"),
        (status = 403, body = ErrorBody, description = "the token's role is too low"),
        (status = 404, body = ErrorBody, description = "no such endpoint in the workspace, or no such delivery of it")))]
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<DeliveryDoc>), ApiError> {
    let manager = manager(&caller)?;
    let delivery = positive_id(&delivery)
        .map(DeliveryId)
        .ok_or_else(|| ApiError::NotFound("delivery not found".into()))?;
    let again = state
        .stack
        .webhooks
        .redeliver(&manager, webhook_id(&id)?, delivery)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryDoc::new(&again))))
}
