//! The API's handlers. Every input is parsed into domain types before a use case runs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use opsrun_application::RunParams;
use opsrun_application::access::{AccessPolicy, Caller};
use opsrun_application::families::{Families, ParamMap, ParamValue};
use opsrun_application::ports::Role;
use opsrun_application::read_models::{CollectionFilter, DEFAULT_PAGE, MAX_PAGE};
use opsrun_domain::{ItemKey, ItemOutcome, OperationType, RunId, RunOutcome, RunStatus, Slug};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;

use super::ApiDoc;
use super::dto::{
    BackupSetBody, BackupSetDoc, BackupSetList, BaselineDoc, BaselineList, CheckDoc, ErrorBody,
    IssuedTokenDoc, ItemPage, NotificationDoc, NotificationList, PolicyDoc, PolicyList,
    ReadinessDoc, RunDoc, RunList, RunPage, StartBody, TokenBody, TokenDoc, TokenList, rfc3339,
};
use crate::web::auth::StreamCaller;
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

pub(crate) fn run_id(text: &str) -> Result<RunId, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(RunId::new)
        .ok_or_else(|| ApiError::NotFound("operation not found".to_owned()))
}

/// Query parameters: only `allowed` keys; each at most once (axum's map keeps the last).
fn query(params: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
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
        Some(v) => v
            .parse::<u32>()
            .ok()
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
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: 200 when this process's store accepts a write and its workers are alive, 503
/// naming the check that failed otherwise (for load balancers and orchestrators; `/healthz`
/// only says the process answers).
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = ReadinessDoc, description = "ready"),
    (status = 503, body = ReadinessDoc, description = "not ready")))]
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

/// The OpenAPI 3 document.
pub async fn openapi() -> Response {
    match ApiDoc::openapi().to_pretty_json() {
        Ok(json) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response(),
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
#[utoipa::path(post, path = "/api/tenants/{tenant}/operations", request_body = StartBody,
    params(("tenant" = String, Path, description = "tenant slug")),
    responses((status = 202, body = RunDoc, description = "the new run, queued"), (status = 200, body = RunDoc, description = "already active"),
        (status = 400, body = ErrorBody, description = "malformed JSON or path"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"),
        (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 413, body = ErrorBody, description = "the body is over 64 KiB"), (status = 422, body = ErrorBody, description = "well-formed but invalid")),
    security(("bearer" = [])))]
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

/// Top-level runs the caller may see, newest first.
#[utoipa::path(get, path = "/api/operations",
    params(("tenant" = Option<String>, Query), ("type" = Option<String>, Query), ("status" = Option<String>, Query),
        ("outcome" = Option<String>, Query), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = RunPage, description = "a page of runs, newest first"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 422, body = ErrorBody, description = "well-formed but invalid")),
    security(("bearer" = [])))]
pub async fn list_operations(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<RunPage>, ApiError> {
    query(
        &params,
        &["tenant", "type", "status", "outcome", "limit", "cursor"],
    )?;
    let filter = CollectionFilter {
        tenant: params.get("tenant").map(|t| slug(t)).transpose()?,
        operation_type: parsed(&params, "type", |v| OperationType::parse(v).ok())?,
        status: parsed(&params, "status", |v| RunStatus::parse(v).ok())?,
        outcome: parsed(&params, "outcome", |v| RunOutcome::parse(v).ok())?,
    };
    let before = parsed(&params, "cursor", |v| {
        v.parse::<i64>().ok().filter(|n| *n > 0).map(RunId::new)
    })?;
    let page = state
        .stack
        .models
        .collection(&caller, filter, limit(&params)?, before)
        .await?;
    Ok(Json(RunPage::of(&page)))
}

/// One run.
#[utoipa::path(get, path = "/api/operations/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = RunDoc, description = "the run document"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token")),
    security(("bearer" = [])))]
pub async fn get_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunDoc>, ApiError> {
    let summary = state.stack.models.run(&caller, run_id(&id)?).await?;
    Ok(Json(RunDoc::new(&summary, false)))
}

/// A run's ledger entries by item key.
#[utoipa::path(get, path = "/api/operations/{id}/items",
    params(("id" = i64, Path), ("outcome" = Option<String>, Query), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ItemPage, description = "a page of the run's items"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 422, body = ErrorBody, description = "well-formed but invalid")),
    security(("bearer" = [])))]
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

/// How often an open event stream re-checks the token or session behind it.
pub const CREDENTIAL_RECHECK: Duration = Duration::from_secs(15);

/// Live progress: a `progress` event with the run document on every change; the stream ends
/// after the terminal event, with a `shutdown` event when the server stops, or with an
/// `unauthorized` event within 15 s of its token's revocation or expiry (or its session's end).
#[utoipa::path(get, path = "/api/operations/{id}/events", params(("id" = i64, Path)),
    responses((status = 200, content_type = "text/event-stream", description = "progress events"),
        (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token")),
    security(("bearer" = [])))]
pub async fn operation_events(
    State(state): State<AppState>,
    StreamCaller(caller): StreamCaller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = run_id(&id)?;
    // Subscribe before the first read, so no change between the two is missed.
    let receiver = state.stack.events.subscribe();
    let first = state.stack.models.run(&caller, id).await?;
    let checked = tokio::time::Instant::now();
    let stream = futures::stream::unfold(
        (
            state,
            caller,
            receiver,
            Some(first),
            String::new(),
            false,
            checked,
        ),
        move |(state, caller, mut receiver, pending, mut last, ended, mut checked)| async move {
            if ended {
                return None;
            }
            let mut next = pending;
            loop {
                // A revoked or expired token, or an ended session, ends the stream within
                // CREDENTIAL_RECHECK (a store failure is not a revocation: checked again later).
                if checked.elapsed() >= CREDENTIAL_RECHECK {
                    checked = tokio::time::Instant::now();
                    if let Ok(false) = state.stack.authenticate.still_valid(&caller).await {
                        let event = Event::default()
                            .event("unauthorized")
                            .data(r#"{"reason":"the token or session behind this stream is no longer valid"}"#);
                        return Some((
                            Ok(event),
                            (state, caller, receiver, None, last, true, checked),
                        ));
                    }
                }
                if let Some(summary) = next.take() {
                    let doc = RunDoc::new(&summary, false);
                    let json = serde_json::to_string(&doc).unwrap_or_default();
                    if json != last {
                        last = json.clone();
                        let done = summary.run.is_completed();
                        let event = Event::default().event("progress").data(json);
                        return Some((
                            Ok(event),
                            (state, caller, receiver, None, last, done, checked),
                        ));
                    }
                }
                // Wait for a change of this run. The 2 s re-read covers what no notification
                // reaches (another process on SQLite, a lagging subscriber). A shutting-down
                // server ends the stream with a last event, so it never waits for clients.
                let changed = tokio::select! {
                    () = state.shutting_down() => {
                        let event = Event::default()
                            .event("shutdown")
                            .data(r#"{"reason":"the server is shutting down; reconnect to follow the run"}"#);
                        return Some((
                            Ok(event),
                            (state, caller, receiver, None, last, true, checked),
                        ));
                    }
                    changed = tokio::time::timeout(Duration::from_secs(2), receiver.recv()) => changed,
                };
                match changed {
                    Ok(Ok(changed)) if changed != id => continue,
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
                    _ => {}
                }
                match state.stack.models.run(&caller, id).await {
                    Ok(summary) => next = Some(summary),
                    Err(_) => return None,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The tenant's queued and running runs plus those completed in the last 60 s.
#[utoipa::path(get, path = "/api/tenants/{tenant}/activity", params(("tenant" = String, Path)),
    responses((status = 200, body = RunList, description = "the runs"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token")),
    security(("bearer" = [])))]
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
#[utoipa::path(post, path = "/api/tenants/{tenant}/backup-sets", request_body = BackupSetBody, params(("tenant" = String, Path)),
    responses((status = 201, body = BackupSetDoc, description = "the new backup set"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low"),
        (status = 404, body = ErrorBody, description = "absent, or not visible to this token"), (status = 422, body = ErrorBody, description = "well-formed but invalid")),
    security(("bearer" = [])))]
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
#[utoipa::path(get, path = "/api/tenants/{tenant}/backup-sets", params(("tenant" = String, Path)),
    responses((status = 200, body = BackupSetList, description = "the tenant's backup sets"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token")),
    security(("bearer" = [])))]
pub async fn list_backup_sets(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<BackupSetList>, ApiError> {
    let sets = state
        .stack
        .catalog
        .backup_sets(&caller, &slug(&tenant)?)
        .await?;
    Ok(Json(BackupSetList {
        items: sets
            .into_iter()
            .map(|s| BackupSetDoc {
                id: s.id,
                name: s.name,
                item_count: s.item_count,
            })
            .collect(),
    }))
}

/// The tenant's baselines.
#[utoipa::path(get, path = "/api/tenants/{tenant}/baselines", params(("tenant" = String, Path)),
    responses((status = 200, body = BaselineList, description = "the tenant's baselines"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token")),
    security(("bearer" = [])))]
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
#[utoipa::path(get, path = "/api/tenants/{tenant}/policies", params(("tenant" = String, Path)),
    responses((status = 200, body = PolicyList, description = "the tenant's policies"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token")),
    security(("bearer" = [])))]
pub async fn list_policies(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<PolicyList>, ApiError> {
    let policies = state
        .stack
        .catalog
        .policies(&caller, &slug(&tenant)?)
        .await?;
    Ok(Json(PolicyList {
        items: policies
            .into_iter()
            .map(|p| PolicyDoc {
                id: p.id,
                policy_type: p.policy_type,
                name: p.name,
            })
            .collect(),
    }))
}

/// Terminal notifications of runs the caller started, exactly one per run.
#[utoipa::path(get, path = "/api/notifications",
    responses((status = 200, body = NotificationList, description = "the caller's notifications"), (status = 401, body = ErrorBody, description = "no valid bearer token")),
    security(("bearer" = [])))]
pub async fn notifications(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<NotificationList>, ApiError> {
    let list = state.stack.models.notifications(&caller).await?;
    Ok(Json(NotificationList {
        items: list
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
    Ok(TokenDoc {
        id: record.id.0,
        user: record.email,
        role: record.role.key().to_owned(),
        tenants,
        created_at: rfc3339(record.created_at),
        expires_at: record.expires_at.map(rfc3339),
        last_used_at: record.last_used_at.map(rfc3339),
        revoked_at: record.revoked_at.map(rfc3339),
        status: status.to_owned(),
    })
}

/// The caller's workspace's API tokens (owner only).
#[utoipa::path(get, path = "/api/tokens",
    responses((status = 200, body = TokenList, description = "the workspace's tokens"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 403, body = ErrorBody, description = "the token's role is too low")),
    security(("bearer" = [])))]
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
#[utoipa::path(post, path = "/api/tokens", request_body = TokenBody,
    responses((status = 201, body = IssuedTokenDoc, description = "the new token, with its secret shown this once"), (status = 401, body = ErrorBody, description = "no valid bearer token"),
        (status = 403, body = ErrorBody, description = "the token's role is too low"), (status = 422, body = ErrorBody, description = "well-formed but invalid")),
    security(("bearer" = [])))]
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
#[utoipa::path(delete, path = "/api/tokens/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = TokenDoc, description = "the token"), (status = 401, body = ErrorBody, description = "no valid bearer token"),
        (status = 403, body = ErrorBody, description = "the token's role is too low"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token")),
    security(("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenDoc>, ApiError> {
    AccessPolicy::require(&caller, Role::Owner)?;
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| ApiError::NotFound("token not found".into()))?;
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
