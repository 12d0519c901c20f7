//! The API's handlers. Every input is parsed into domain types before a use case runs.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use opsrun_application::RunParams;
use opsrun_application::access::{AccessPolicy, Caller};
use opsrun_application::families::{Families, ParamMap, ParamValue};
use opsrun_application::ports::Role;
use opsrun_application::read_models::{CollectionFilter, DEFAULT_PAGE, MAX_PAGE, Page};
use opsrun_domain::{ItemKey, ItemOutcome, OperationType, RunId, RunOutcome, RunStatus, Slug};
use serde::de::DeserializeOwned;

use super::dto::{
    BackupSetBody, BackupSetDoc, BackupSetList, BaselineDoc, BaselineList, CheckDoc, ErrorBody,
    IssuedTokenDoc, ItemPage, NotificationDoc, NotificationList, PolicyDoc, PolicyList,
    ReadinessDoc, RunDoc, RunList, RunPage, StartBody, TokenBody, TokenDoc, TokenList, rfc3339,
};
use crate::web::{ApiError, AppState};

/// JSON bodies with the API's error codes: 400 malformed, 413 too large, 415 not JSON, 422
/// well-formed but invalid (unknown field, wrong type).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::Invalid(
                "invalid_body",
                crate::web::error::plain_json_error(&e.body_text()),
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::Malformed(e.body_text())),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::Unsupported),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::TooLarge)
            }
            Err(other) => Err(ApiError::Malformed(other.body_text())),
        }
    }
}

pub(crate) fn slug(text: &str) -> Result<Slug, ApiError> {
    // A slug that cannot exist is a tenant that does not exist.
    Slug::parse(text).map_err(|_| {
        ApiError::NotFound(format!(
            "tenant '{}' not found",
            text.chars().take(64).collect::<String>()
        ))
    })
}

/// An id as the document describes it: a positive integer in plain digits (no sign, no leading
/// zero), so what the server takes is exactly what the schema allows.
pub(crate) fn positive_id(text: &str) -> Option<i64> {
    let plain =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    plain.then(|| text.parse::<i64>().ok()).flatten()
}

pub(crate) fn run_id(text: &str) -> Result<RunId, ApiError> {
    positive_id(text)
        .map(RunId::new)
        .ok_or_else(|| ApiError::NotFound("operation not found".to_owned()))
}

/// The `cursor` of a list paged by a positive integer.
fn id_cursor(params: &HashMap<String, String>) -> Result<Option<i64>, ApiError> {
    parsed(params, "cursor", positive_id)
}

/// Query parameters: only `allowed` keys; each at most once (axum's map keeps the last).
pub(crate) fn query(params: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    if let Some(unknown) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::Invalid(
            "unknown_parameter",
            format!(
                "unknown query parameter '{}'",
                unknown.chars().take(64).collect::<String>()
            ),
        ));
    }
    Ok(())
}

fn limit(params: &HashMap<String, String>) -> Result<u32, ApiError> {
    match params.get("limit") {
        None => Ok(DEFAULT_PAGE),
        Some(v) => positive_id(v)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::Invalid("invalid_limit", format!("limit must be 1 to {MAX_PAGE}"))
            }),
    }
}

fn parsed<T>(
    params: &HashMap<String, String>,
    key: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    params
        .get(key)
        .map(|v| {
            parse(v).ok_or_else(|| {
                ApiError::Invalid(
                    "invalid_parameter",
                    format!(
                        "'{}' is not a valid {key}",
                        v.chars().take(64).collect::<String>()
                    ),
                )
            })
        })
        .transpose()
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "the process answers", content_type = "text/plain", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: 200 when this process's store accepts a write and its workers are alive, 503
/// naming the check that failed otherwise (for load balancers and orchestrators; `/healthz`
/// only says the process answers).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = ReadinessDoc, description = "ready"), (status = 503, body = ReadinessDoc, description = "not ready")))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<ReadinessDoc>) {
    let report = state.stack.readiness.check().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let doc = ReadinessDoc {
        status: if report.ready { "ready" } else { "not_ready" }.to_owned(),
        checks: report
            .checks
            .into_iter()
            .map(|c| {
                (
                    c.name.to_owned(),
                    CheckDoc {
                        ok: c.ok,
                        detail: c.detail,
                    },
                )
            })
            .collect(),
    };
    (status, Json(doc))
}

/// The OpenAPI 3.1 document, completed with this server's families (see [`super::schema`]).
pub async fn openapi(State(state): State<AppState>) -> Response {
    match super::schema::document(&state.stack.families) {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// Anything else.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

/// A JSON parameter value as the families take it: integers, texts and lists of them.
fn param_value(name: &str, value: &serde_json::Value) -> Result<ParamValue, ApiError> {
    let refuse = || {
        ApiError::Invalid(
            "invalid_params",
            format!(
                "parameter '{}' must be an integer, a text or a list of them",
                name.chars().take(64).collect::<String>()
            ),
        )
    };
    Ok(match value {
        serde_json::Value::Null => ParamValue::Null,
        serde_json::Value::String(t) => ParamValue::Text(t.clone()),
        serde_json::Value::Number(n) => ParamValue::Int(n.as_i64().ok_or_else(refuse)?),
        serde_json::Value::Array(items) => ParamValue::List(
            items
                .iter()
                .map(|item| match item {
                    serde_json::Value::Array(_) => Err(refuse()),
                    other => param_value(name, other),
                })
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Bool(_) | serde_json::Value::Object(_) => return Err(refuse()),
    })
}

/// The body's parameters, parsed by the registry for the body's type (every family alike).
fn run_params(families: &Families, body: StartBody) -> Result<RunParams, ApiError> {
    let values = match body.params {
        None | Some(serde_json::Value::Null) => ParamMap::new(),
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), param_value(k, v)?)))
            .collect::<Result<_, ApiError>>()?,
        Some(_) => {
            return Err(ApiError::Invalid(
                "invalid_params",
                "params must be an object".to_owned(),
            ));
        }
    };
    families
        .parse_params(&body.operation_type, values)
        .map_err(|e| ApiError::Invalid(e.code(), e.to_string()))
}

/// Start an operation: 202 with a new run, or 200 with the already active run (`reused`).
#[utoipa::path(post, path = "/api/tenants/{tenant}/operations", request_body = StartBody, tag = "operations",
    params(("tenant" = String, Path, pattern = r"^[a-z][a-z0-9-]{0,62}$", description = "the tenant's slug")),
    responses((status = 202, body = RunDoc, description = "the new run, queued"), (status = 200, body = RunDoc, description = "the same operation is already active: that run, with `reused: true`"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 413, body = ErrorBody, description = "the body is over 64 KiB"), (status = 415, body = ErrorBody, description = "the body is not sent as application/json"), (status = 422, body = ErrorBody, description = "well-formed but invalid: an unknown type or parameter, or one naming what the tenant does not have (`unknown_backup_set`, ...)")))]
pub async fn start_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<(StatusCode, Json<RunDoc>), ApiError> {
    let tenant = slug(&tenant)?;
    let params = run_params(&state.stack.families, body)?;
    let started = state.stack.start.execute(&caller, &tenant, params).await?;
    let summary = state.stack.models.run(&caller, started.run.id()).await?;
    let status = if started.reused {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(RunDoc::new(&summary, started.reused))))
}

/// The collection's filter from its query parameters.
pub(crate) fn collection_filter(
    params: &HashMap<String, String>,
) -> Result<CollectionFilter, ApiError> {
    Ok(CollectionFilter {
        tenant: params.get("tenant").map(|t| slug(t)).transpose()?,
        operation_type: parsed(params, "type", |v| OperationType::parse(v).ok())?,
        status: parsed(params, "status", |v| RunStatus::parse(v).ok())?,
        outcome: parsed(params, "outcome", |v| RunOutcome::parse(v).ok())?,
        created_since: None,
    })
}

/// Top-level runs the caller may see, newest first.
#[utoipa::path(get, path = "/api/operations", tag = "operations",
    params(("tenant" = Option<String>, Query, pattern = r"^[a-z][a-z0-9-]{0,62}$", description = "only this tenant (slug); one the token cannot see answers 404"), ("type" = Option<String>, Query, description = "only this type"), ("status" = Option<String>, Query, description = "only this status"), ("outcome" = Option<String>, Query, description = "only this outcome"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "entries per page (default 50)"), ("cursor" = Option<i64>, Query, minimum = 1, description = "the previous page's `next_cursor`")),
    responses((status = 200, body = RunPage, description = "a page of runs, newest first"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "the tenant filter names a tenant that is absent or not visible"), (status = 422, body = ErrorBody, description = "well-formed but invalid")))]
pub async fn list_operations(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<RunPage>, ApiError> {
    query(
        &params,
        &["tenant", "type", "status", "outcome", "limit", "cursor"],
    )?;
    let filter = collection_filter(&params)?;
    let before = id_cursor(&params)?.map(RunId::new);
    let page = state
        .stack
        .models
        .collection(&caller, filter, limit(&params)?, before)
        .await?;
    Ok(Json(RunPage::of(&page)))
}

/// One run.
#[utoipa::path(get, path = "/api/operations/{id}", tag = "operations",
    params(("id" = i64, Path, minimum = 1, description = "the run's id")),
    responses((status = 200, body = RunDoc, description = "the run document"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token")))]
pub async fn get_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunDoc>, ApiError> {
    let summary = state.stack.models.run(&caller, run_id(&id)?).await?;
    Ok(Json(RunDoc::new(&summary, false)))
}

/// A run's ledger entries by item key.
#[utoipa::path(get, path = "/api/operations/{id}/items", tag = "operations",
    params(("id" = i64, Path, minimum = 1, description = "the run's id"), ("outcome" = Option<String>, Query, description = "only items of this outcome"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "entries per page (default 50)"), ("cursor" = Option<String>, Query, max_length = 200, pattern = r"^[^\u0000-\u0020\u007f-\u009f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]([^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u009f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?$", description = "the previous page's `next_cursor` (an item key: at most 200 bytes, no control characters, no surrounding whitespace)")),
    responses((status = 200, body = ItemPage, description = "a page of the run's items, by item key"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 422, body = ErrorBody, description = "well-formed but invalid")))]
pub async fn operation_items(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<ItemPage>, ApiError> {
    let id = run_id(&id)?;
    query(&params, &["outcome", "limit", "cursor"])?;
    let outcome = parsed(&params, "outcome", |v| ItemOutcome::parse(v).ok())?;
    let after = parsed(&params, "cursor", |v| ItemKey::parse(v).ok())?;
    let page = state
        .stack
        .models
        .items(&caller, id, outcome, limit(&params)?, after)
        .await?;
    Ok(Json(ItemPage::of(&page)))
}

/// The tenant's queued and running runs plus those completed in the last 60 s.
#[utoipa::path(get, path = "/api/tenants/{tenant}/activity", tag = "operations",
    params(("tenant" = String, Path, pattern = r"^[a-z][a-z0-9-]{0,62}$", description = "the tenant's slug")),
    responses((status = 200, body = RunList, description = "the tenant's queued and running runs, and those completed in the last 60 s"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token")))]
pub async fn activity(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<RunList>, ApiError> {
    let feed = state
        .stack
        .models
        .activity(&caller, &slug(&tenant)?)
        .await?;
    Ok(Json(RunList {
        items: feed.iter().map(|s| RunDoc::new(s, false)).collect(),
    }))
}

/// Create a backup set (operator).
#[utoipa::path(post, path = "/api/tenants/{tenant}/backup-sets", tag = "catalog", request_body = BackupSetBody,
    params(("tenant" = String, Path, pattern = r"^[a-z][a-z0-9-]{0,62}$", description = "the tenant's slug")),
    responses((status = 201, body = BackupSetDoc, description = "the new backup set"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 413, body = ErrorBody, description = "the body is over 64 KiB"), (status = 415, body = ErrorBody, description = "the body is not sent as application/json"), (status = 422, body = ErrorBody, description = "well-formed but invalid")))]
pub async fn create_backup_set(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<BackupSetBody>,
) -> Result<(StatusCode, Json<BackupSetDoc>), ApiError> {
    let set = state
        .stack
        .catalog
        .create_backup_set(&caller, &slug(&tenant)?, &body.name)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(BackupSetDoc {
            id: set.id,
            name: set.name,
            item_count: set.item_count,
        }),
    ))
}

/// The tenant's backup sets.
#[utoipa::path(get, path = "/api/tenants/{tenant}/backup-sets", tag = "catalog",
    params(("tenant" = String, Path, pattern = r"^[a-z][a-z0-9-]{0,62}$", description = "the tenant's slug"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "entries per page (default 50)"), ("cursor" = Option<i64>, Query, minimum = 1, description = "the previous page's `next_cursor`")),
    responses((status = 200, body = BackupSetList, description = "a page of the tenant's backup sets, oldest first"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 422, body = ErrorBody, description = "well-formed but invalid")))]
pub async fn list_backup_sets(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<BackupSetList>, ApiError> {
    query(&params, &["limit", "cursor"])?;
    let (limit, after) = (limit(&params)?, id_cursor(&params)?);
    let sets = state
        .stack
        .catalog
        .backup_sets(&caller, &slug(&tenant)?)
        .await?;
    // Oldest first: the page starts after the cursor's id.
    let page = Page::after(sets, |s| after.is_some_and(|a| s.id <= a), limit, |s| s.id);
    Ok(Json(BackupSetList {
        items: page
            .items
            .into_iter()
            .map(|s| BackupSetDoc {
                id: s.id,
                name: s.name,
                item_count: s.item_count,
            })
            .collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

/// The tenant's baselines.
#[utoipa::path(get, path = "/api/tenants/{tenant}/baselines", tag = "catalog",
    params(("tenant" = String, Path, pattern = r"^[a-z][a-z0-9-]{0,62}$", description = "the tenant's slug")),
    responses((status = 200, body = BaselineList, description = "the tenant's baselines, oldest first"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token")))]
pub async fn list_baselines(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<BaselineList>, ApiError> {
    let baselines = state
        .stack
        .catalog
        .baselines(&caller, &slug(&tenant)?)
        .await?;
    Ok(Json(BaselineList {
        items: baselines
            .into_iter()
            .map(|b| BaselineDoc {
                id: b.id,
                run_id: b.captured_by.value(),
                item_count: b.items.len() as u64,
            })
            .collect(),
    }))
}

/// The tenant's policies at its provider.
#[utoipa::path(get, path = "/api/tenants/{tenant}/policies", tag = "catalog",
    params(("tenant" = String, Path, pattern = r"^[a-z][a-z0-9-]{0,62}$", description = "the tenant's slug"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "entries per page (default 50)"), ("cursor" = Option<i64>, Query, minimum = 1, description = "the previous page's `next_cursor`")),
    responses((status = 200, body = PolicyList, description = "a page of the tenant's policies, in the provider's order"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 422, body = ErrorBody, description = "well-formed but invalid")))]
pub async fn list_policies(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<PolicyList>, ApiError> {
    query(&params, &["limit", "cursor"])?;
    let (limit, after) = (limit(&params)?, id_cursor(&params)?);
    let policies = state
        .stack
        .catalog
        .policies(&caller, &slug(&tenant)?)
        .await?;
    // Policy ids are the provider's texts: the cursor is a position in the provider's order
    // (the count of policies before the page).
    let skip = after.and_then(|a| usize::try_from(a).ok()).unwrap_or(0);
    let page = Page::after(
        policies.into_iter().enumerate(),
        |(i, _)| *i < skip,
        limit,
        |(i, _)| i + 1,
    );
    Ok(Json(PolicyList {
        items: page
            .items
            .into_iter()
            .map(|(_, p)| PolicyDoc {
                id: p.id,
                policy_type: p.policy_type,
                name: p.name,
            })
            .collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

/// Terminal notifications of runs the caller started, exactly one per run.
#[utoipa::path(get, path = "/api/notifications", tag = "notifications",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "entries per page (default 50)"), ("cursor" = Option<i64>, Query, minimum = 1, description = "the previous page's `next_cursor`")),
    responses((status = 200, body = NotificationList, description = "a page of the caller's notifications, newest first"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 422, body = ErrorBody, description = "well-formed but invalid")))]
pub async fn notifications(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<NotificationList>, ApiError> {
    query(&params, &["limit", "cursor"])?;
    let (limit, before) = (limit(&params)?, id_cursor(&params)?);
    let list = state.stack.models.notifications(&caller).await?;
    // Newest first: the page starts below the cursor's id.
    let page = Page::after(
        list,
        |(n, _)| before.is_some_and(|b| n.id >= b),
        limit,
        |(n, _)| n.id,
    );
    Ok(Json(NotificationList {
        next_cursor: page.next_cursor.map(|c| c.to_string()),
        items: page
            .items
            .into_iter()
            .map(|(n, tenant)| NotificationDoc {
                id: n.id,
                run_id: n.run.value(),
                operation_type: n.operation_type.key().to_owned(),
                tenant: tenant.to_string(),
                outcome: n.outcome.key().to_owned(),
                created_at: rfc3339(n.created_at),
                read: n.read,
            })
            .collect(),
    }))
}

async fn token_doc(
    state: &AppState,
    record: opsrun_application::ports::TokenRecord,
) -> Result<TokenDoc, ApiError> {
    use opsrun_application::ports::TenantScope;
    let tenants = match &record.scope {
        TenantScope::All => None,
        TenantScope::Only(ids) => {
            let all = state.stack.directory.tenants_of(record.workspace).await?;
            Some(
                all.into_iter()
                    .filter(|t| ids.contains(&t.id))
                    .map(|t| t.slug.to_string())
                    .collect(),
            )
        }
    };
    let status = state.stack.tokens.status(&record);
    Ok(TokenDoc::new(&record, status, tenants))
}

/// The caller's workspace's API tokens (owner only).
#[utoipa::path(get, path = "/api/tokens", tag = "tokens",
    responses((status = 200, body = TokenList, description = "the workspace's tokens, newest first"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low")))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TokenList>, ApiError> {
    AccessPolicy::require(&caller, Role::Owner)?;
    let mut items = Vec::new();
    for record in state.stack.tokens.list(Some(caller.workspace())).await? {
        items.push(token_doc(&state, record).await?);
    }
    Ok(Json(TokenList { items }))
}

/// Issue an API token for a user of the caller's workspace (owner only); the secret is in
/// this answer only.
#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = TokenBody,
    responses((status = 201, body = IssuedTokenDoc, description = "the new token, with its secret shown this once"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"), (status = 413, body = ErrorBody, description = "the body is over 64 KiB"), (status = 415, body = ErrorBody, description = "the body is not sent as application/json"), (status = 422, body = ErrorBody, description = "well-formed but invalid")))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<(StatusCode, Json<IssuedTokenDoc>), ApiError> {
    use opsrun_application::admin::TokenRequest;
    AccessPolicy::require(&caller, Role::Owner)?;
    let invalid = |m: &str| ApiError::Invalid("invalid_token_request", m.to_owned());
    let role = Role::parse(&body.role)
        .ok_or_else(|| invalid("role must be readonly, operator or owner"))?;
    let mut tenants = Vec::new();
    for slug in body.tenants.unwrap_or_default() {
        tenants.push(Slug::parse(&slug).map_err(|_| invalid("tenants must be tenant slugs"))?);
    }
    let expires_in = match body.expires_in_days {
        None => None,
        Some(days @ 1..=3660) => Some(Duration::from_secs(u64::from(days) * 86_400)),
        Some(_) => return Err(invalid("expires_in_days must be between 1 and 3660")),
    };
    let workspace = state
        .stack
        .admin
        .workspaces()
        .await?
        .into_iter()
        .find(|(id, _)| *id == caller.workspace())
        .map(|(_, slug)| slug)
        .ok_or_else(|| ApiError::internal("the caller's workspace is gone"))?;
    let issued = state
        .stack
        .issue_token
        .execute(TokenRequest {
            workspace,
            create_workspace: false,
            email: body.email,
            role,
            tenants,
            expires_in,
        })
        .await?;
    let record = state
        .stack
        .tokens
        .list(Some(caller.workspace()))
        .await?
        .into_iter()
        .find(|r| r.id == issued.id)
        .ok_or_else(|| ApiError::internal("the issued token is not listed"))?;
    let doc = token_doc(&state, record).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedTokenDoc {
            token: issued.token.expose().to_owned(),
            doc,
        }),
    ))
}

/// Revoke an API token of the caller's workspace (owner only): it fails at once, its page
/// sessions end, and its open event streams end within 15 s.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, minimum = 1, description = "the token's id")),
    responses((status = 200, body = TokenDoc, description = "the token, revoked"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"), (status = 404, body = ErrorBody, description = "no such token in the workspace")))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenDoc>, ApiError> {
    AccessPolicy::require(&caller, Role::Owner)?;
    let id = positive_id(&id).ok_or_else(|| ApiError::NotFound("token not found".into()))?;
    let record = state
        .stack
        .tokens
        .revoke(
            Some(caller.workspace()),
            opsrun_application::ports::TokenId(id),
        )
        .await?;
    Ok(Json(token_doc(&state, record).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_parameters_and_bad_limits_are_refused() {
        let params: HashMap<String, String> = [("sort".to_owned(), "x".to_owned())].into();
        let bad_limit: HashMap<String, String> = [("limit".to_owned(), "0".to_owned())].into();

        assert!(matches!(
            query(&params, &["limit"]),
            Err(ApiError::Invalid("unknown_parameter", _))
        ));
        assert!(matches!(
            limit(&bad_limit),
            Err(ApiError::Invalid("invalid_limit", _))
        ));
        assert!(matches!(run_id("-1"), Err(ApiError::NotFound(_))));
    }
}
