//! The JSON API: its routes, and the OpenAPI document generated from the handlers' types.

pub(crate) mod control;
pub mod discovery;
pub mod dto;
pub(crate) mod handlers;
pub(crate) mod inbox;
pub(crate) mod run_events;
pub mod schema;
pub(crate) mod streams;
pub mod webhooks;

use axum::Router;
use axum::routing::{delete, get, post};
use utoipa::OpenApi;

use super::AppState;

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "opsrun", description = "Operation runs with truthful progress."),
    paths(
        handlers::healthz,
        handlers::readyz,
        crate::web::metrics::with_token,
        handlers::start_operation,
        handlers::list_operations,
        handlers::get_operation,
        handlers::operation_items,
        run_events::operation_events,
        streams::tenant_events,
        streams::events,
        control::cancel_operation,
        control::pause_operation,
        control::resume_operation,
        control::retry_operation,
        handlers::activity,
        handlers::create_backup_set,
        handlers::list_backup_sets,
        handlers::list_baselines,
        handlers::list_policies,
        handlers::notifications,
        inbox::read_one,
        inbox::read_all,
        handlers::list_tokens,
        handlers::create_token,
        handlers::revoke_token,
        webhooks::list,
        webhooks::create,
        webhooks::remove,
        webhooks::deliveries,
        webhooks::redeliver,
        discovery::me,
        discovery::tenants,
        discovery::types,
        discovery::backup_set_items,
    ),
    components(schemas(
        dto::ErrorBody,
        dto::ReadinessDoc,
        dto::CheckDoc,
        dto::RunDoc,
        dto::RunPage,
        dto::RunList,
        dto::ItemPage,
        dto::NotificationList,
        dto::StartBody,
        dto::BackupSetBody,
        dto::BackupSetDoc,
        dto::BackupSetList,
        dto::BaselineList,
        dto::PolicyList,
        dto::TokenDoc,
        dto::TokenList,
        dto::TokenBody,
        dto::IssuedTokenDoc,
        webhooks::WebhookDoc,
        webhooks::RegisteredWebhookDoc,
        webhooks::WebhookList,
        webhooks::WebhookBody,
        webhooks::DeliveryDoc,
        webhooks::DeliveryList,
        crate::webhooks::WebhookPayload,
        discovery::MeDoc,
        discovery::TenantList,
        discovery::TypeList,
        discovery::BackupItemList,
    )),
    tags(
        (name = "operations", description = "Start, read, follow and control operation runs."),
        (name = "catalog", description = "What a tenant has: backup sets, baselines, policies."),
        (name = "discovery", description = "Who the caller is, its tenants, the run families."),
        (name = "notifications", description = "One notification per completed run the caller started."),
        (name = "tokens", description = "API tokens of the workspace (owners)."),
        (name = "webhooks", description = "Signed webhook endpoints of the workspace and their delivery logs (owners)."),
        (name = "health", description = "Probes for load balancers and orchestrators (no auth)."),
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The API's event streams (long-lived: no request timeout).
pub(super) fn stream_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/operations/{id}/events",
            get(run_events::operation_events),
        )
        .route("/api/tenants/{tenant}/events", get(streams::tenant_events))
        .route("/api/events", get(streams::events))
}

/// The API's other routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(crate::web::metrics::with_token))
        .route("/readyz", get(handlers::readyz))
        .route("/api/openapi.json", get(handlers::openapi))
        .route("/api/operations", get(handlers::list_operations))
        .route("/api/operations/{id}", get(handlers::get_operation))
        .route("/api/operations/{id}/items", get(handlers::operation_items))
        .route(
            "/api/operations/{id}/cancel",
            post(control::cancel_operation),
        )
        .route("/api/operations/{id}/pause", post(control::pause_operation))
        .route(
            "/api/operations/{id}/resume",
            post(control::resume_operation),
        )
        .route("/api/operations/{id}/retry", post(control::retry_operation))
        .route(
            "/api/tenants/{tenant}/operations",
            post(handlers::start_operation),
        )
        .route("/api/tenants/{tenant}/activity", get(handlers::activity))
        .route(
            "/api/tenants/{tenant}/backup-sets",
            get(handlers::list_backup_sets).post(handlers::create_backup_set),
        )
        .route(
            "/api/tenants/{tenant}/backup-sets/{id}/items",
            get(discovery::backup_set_items),
        )
        .route("/api/me", get(discovery::me))
        .route("/api/tenants", get(discovery::tenants))
        .route("/api/types", get(discovery::types))
        .route(
            "/api/tenants/{tenant}/baselines",
            get(handlers::list_baselines),
        )
        .route(
            "/api/tenants/{tenant}/policies",
            get(handlers::list_policies),
        )
        .route("/api/notifications", get(handlers::notifications))
        .route("/api/notifications/{id}/read", post(inbox::read_one))
        .route("/api/notifications/read-all", post(inbox::read_all))
        .route(
            "/api/tokens",
            get(handlers::list_tokens).post(handlers::create_token),
        )
        .route("/api/tokens/{id}", delete(handlers::revoke_token))
        .route("/api/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/api/webhooks/{id}", delete(webhooks::remove))
        .route("/api/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/api/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(webhooks::redeliver),
        )
}
