//! Discovery: who the caller is, which tenants it sees, the families it can start with their
//! parameters, and a backup set's items (what a restore's `item_ids` name).

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::dto::ErrorBody;
use super::handlers::{positive_id, slug};
use crate::web::{ApiError, AppState};
use opsrun_application::access::Caller;
use opsrun_application::families::ParamKind;

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeDoc {
    /// The token's user.
    pub user: String,
    /// `readonly`, `operator` or `owner`.
    pub role: String,
    /// The workspace's slug.
    pub workspace: String,
    /// The tenants the token may see, by slug.
    pub tenants: Vec<String>,
}

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantDoc {
    /// Slug.
    pub slug: String,
}

/// The tenants the caller may see.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    /// By slug.
    pub items: Vec<TenantDoc>,
}

/// One item of a backup set: one captured policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupItemDoc {
    /// The item's id (what `item_ids` of `backup_set.restore` name).
    pub id: i64,
    /// The captured policy's id.
    pub policy_id: String,
    /// Its policy type.
    pub policy_type: String,
    /// Its name.
    pub name: String,
    /// The run that added it, if a run did.
    pub added_by: Option<i64>,
}

/// A backup set's items.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupItemList {
    /// By id.
    pub items: Vec<BackupItemDoc>,
}

/// A parameter of a family.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParamDoc {
    /// Its name in `params`.
    pub name: String,
    /// `string`, `integer`, `string[]` or `integer[]`.
    pub kind: String,
    /// Whether a start must give it.
    pub required: bool,
    /// What it means.
    pub help: String,
}

/// A run family the caller can start.
#[derive(Debug, Serialize, ToSchema)]
pub struct TypeDoc {
    /// The type key (`type` of a start body).
    #[serde(rename = "type")]
    pub operation_type: String,
    /// A human label.
    pub label: String,
    /// The progress mode its runs are designed to show.
    pub mode: String,
    /// Whether a completed run's failed items can be retried.
    pub retryable: bool,
    /// Its parameters.
    pub params: Vec<ParamDoc>,
}

/// Every registered family.
#[derive(Debug, Serialize, ToSchema)]
pub struct TypeList {
    /// By type key.
    pub items: Vec<TypeDoc>,
}

/// A parameter kind's name in `GET /api/types`.
pub(crate) fn kind(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::Text => "string",
        ParamKind::Int => "integer",
        ParamKind::TextList => "string[]",
        ParamKind::IntList => "integer[]",
    }
}

/// Who the token is: user, role, workspace and the tenants it may see.
#[utoipa::path(get, path = "/api/me", tag = "discovery",
    responses((status = 200, body = MeDoc, description = "the caller"), (status = 401, body = ErrorBody, description = "no valid bearer token")))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<MeDoc>, ApiError> {
    let workspace = state
        .stack
        .admin
        .workspaces()
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .find(|(id, _)| *id == caller.workspace())
        .map(|(_, slug)| slug.to_string())
        .unwrap_or_default();
    let tenants = state.stack.catalog.tenants(&caller).await?;
    Ok(Json(MeDoc {
        user: caller.user.email.clone(),
        role: caller.role.key().to_owned(),
        workspace,
        tenants: tenants.into_iter().map(|t| t.slug.to_string()).collect(),
    }))
}

/// The tenants the token may see.
#[utoipa::path(get, path = "/api/tenants", tag = "discovery",
    responses((status = 200, body = TenantList, description = "the visible tenants, by slug"), (status = 401, body = ErrorBody, description = "no valid bearer token")))]
pub async fn tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TenantList>, ApiError> {
    let tenants = state.stack.catalog.tenants(&caller).await?;
    Ok(Json(TenantList {
        items: tenants
            .into_iter()
            .map(|t| TenantDoc {
                slug: t.slug.to_string(),
            })
            .collect(),
    }))
}

/// The run families this server runs, with their parameters.
#[utoipa::path(get, path = "/api/types", tag = "discovery",
    responses((status = 200, body = TypeList, description = "every family, by type key"), (status = 401, body = ErrorBody, description = "no valid bearer token")))]
pub async fn types(State(state): State<AppState>, _caller: Caller) -> Json<TypeList> {
    let items = state
        .stack
        .families
        .iter()
        .map(|family| TypeDoc {
            operation_type: family.operation_type().key().to_owned(),
            label: family.label().to_owned(),
            mode: family.designed_mode().key().to_owned(),
            retryable: family.retryable(),
            params: family
                .params()
                .iter()
                .map(|p| ParamDoc {
                    name: p.name.to_owned(),
                    kind: kind(p.kind).to_owned(),
                    required: p.required,
                    help: p.help.to_owned(),
                })
                .collect(),
        })
        .collect();
    Json(TypeList { items })
}

/// The items of a backup set of the tenant.
#[utoipa::path(get, path = "/api/tenants/{tenant}/backup-sets/{id}/items", tag = "catalog",
    params(("tenant" = String, Path, pattern = r"^[a-z][a-z0-9-]{0,62}$", description = "the tenant's slug"), ("id" = i64, Path, minimum = 1, description = "the backup set's id")),
    responses((status = 200, body = BackupItemList, description = "the set's items, by id"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "no such tenant or set, or not visible")))]
pub async fn backup_set_items(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<BackupItemList>, ApiError> {
    let id = positive_id(&id).ok_or_else(|| ApiError::NotFound("backup set not found".into()))?;
    let items = state
        .stack
        .catalog
        .backup_set_items(&caller, &slug(&tenant)?, id)
        .await?;
    Ok(Json(BackupItemList {
        items: items
            .into_iter()
            .map(|item| BackupItemDoc {
                id: item.id,
                policy_id: item.policy.id,
                policy_type: item.policy.policy_type,
                name: item.policy.name,
                added_by: item.added_by.map(|r| r.value()),
            })
            .collect(),
    }))
}
