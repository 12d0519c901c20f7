//! The tenant page: its live activity feed, its backup sets, and a form per run family to start
//! an operation (operators). Each form is built from the family's parameters (a host's own
//! family gets one too), with pickers for what the tenant has: backup sets, baselines, policy
//! types and policies. A refused start shows its error at its form, and starts nothing.

use std::collections::BTreeSet;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use opsrun_application::families::{Family, ParamKind};
use opsrun_application::ports::Role;
use opsrun_domain::Slug;

use super::{chrome, cross_site, form_ok, html, to_login};
use crate::web::auth::PageCaller;
use crate::web::live::{self, Follow};
use crate::web::{ApiError, AppState};

/// How a parameter is asked for.
#[derive(Debug, Clone)]
pub enum Input {
    /// A whole number.
    Number,
    /// A line of text (lists comma-separated).
    Text(String),
    /// One of these `(value, label)` (a backup set, a baseline).
    Pick(Vec<(String, String)>),
    /// Any of these `(value, label)` (policy types, policies).
    Many(Vec<(String, String)>),
}

/// One parameter of a start form.
#[derive(Debug, Clone)]
pub struct Field {
    name: String,
    help: String,
    required: bool,
    input: Input,
}

/// The start form of one family.
#[derive(Debug, Clone)]
pub struct StartForm {
    key: String,
    label: String,
    fields: Vec<Field>,
    /// Why the last attempt was refused (the form is shown open with it).
    error: Option<String>,
    /// What that attempt sent (`name`, `value`), shown again so nothing is typed twice.
    values: Vec<(String, String)>,
}

impl StartForm {
    /// The value sent for `name` in the refused attempt (empty otherwise).
    fn value(&self, name: &str) -> &str {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Whether the refused attempt sent `value` for `name` (a picked option, a ticked box).
    fn has(&self, name: &str, value: &str) -> bool {
        self.values.iter().any(|(n, v)| n == name && v == value)
    }
}

/// A refused start: the family, why, and what was sent.
struct Refused {
    key: String,
    message: String,
    values: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "shell.html")]
struct TenantPage {
    chrome: super::Chrome,
    tenant: String,
    items: Vec<String>,
    operate: bool,
    forms_open: bool,
    forms: Vec<StartForm>,
    backup_sets: Vec<(i64, String, u64)>,
    set_error: Option<String>,
}

/// What the tenant has, for the pickers.
struct Catalog {
    backup_sets: Vec<(i64, String, u64)>,
    baselines: Vec<(String, String)>,
    policy_types: Vec<(String, String)>,
    policies: Vec<(String, String)>,
}

async fn catalog(state: &AppState, page: &PageCaller, slug: &Slug) -> Result<Catalog, ApiError> {
    let catalog = &state.stack.catalog;
    let caller = &page.caller;
    let backup_sets = catalog
        .backup_sets(caller, slug)
        .await?
        .into_iter()
        .map(|s| (s.id, s.name, s.item_count))
        .collect();
    let baselines = catalog
        .baselines(caller, slug)
        .await?
        .into_iter()
        .map(|b| {
            (
                b.id.to_string(),
                format!(
                    "baseline {} of operation {} ({} policies)",
                    b.id,
                    b.captured_by,
                    b.items.len()
                ),
            )
        })
        .collect();
    let all = catalog.policies(caller, slug).await?;
    let types: BTreeSet<String> = all.iter().map(|p| p.policy_type.clone()).collect();
    Ok(Catalog {
        backup_sets,
        baselines,
        policy_types: types.into_iter().map(|t| (t.clone(), t)).collect(),
        policies: all
            .into_iter()
            .map(|p| (p.id.clone(), p.display_name()))
            .collect(),
    })
}

fn form(family: &dyn Family, catalog: &Catalog) -> StartForm {
    let fields = family
        .params()
        .iter()
        .map(|spec| {
            let input = match (spec.name, spec.kind) {
                ("backup_set_id", _) => Input::Pick(
                    catalog
                        .backup_sets
                        .iter()
                        .map(|(id, name, n)| (id.to_string(), format!("{name} ({n} items)")))
                        .collect(),
                ),
                ("baseline_id", _) => Input::Pick(catalog.baselines.clone()),
                ("policy_types", _) => Input::Many(catalog.policy_types.clone()),
                ("policy_ids", _) => Input::Many(catalog.policies.clone()),
                (_, ParamKind::Int) => Input::Number,
                (_, ParamKind::Text) => Input::Text(String::new()),
                (_, ParamKind::IntList | ParamKind::TextList) => {
                    Input::Text("comma-separated".to_owned())
                }
            };
            Field {
                name: spec.name.to_owned(),
                help: spec.help.to_owned(),
                required: spec.required,
                input,
            }
        })
        .collect();
    StartForm {
        key: family.operation_type().key().to_owned(),
        label: family.label().to_owned(),
        fields,
        error: None,
        values: Vec::new(),
    }
}

/// Renders the tenant page with `status`, a refused start's `(type, error)` shown at its form,
/// or a refused backup set's error at that form.
async fn render(
    state: &AppState,
    page: &PageCaller,
    slug: Slug,
    status: StatusCode,
    refused: Option<Refused>,
    set_error: Option<String>,
) -> Response {
    let shown = match live::shown(state, page, &Follow::Feed(slug.clone())).await {
        Ok(shown) => shown,
        Err(e) => return e.into_response(),
    };
    let operate = page.caller.role >= Role::Operator;
    let (forms, backup_sets) = if operate {
        let catalog = match catalog(state, page, &slug).await {
            Ok(catalog) => catalog,
            Err(e) => return e.into_response(),
        };
        let forms = state
            .stack
            .families
            .iter()
            .map(|family| {
                let mut form = form(family.as_ref(), &catalog);
                if let Some(refused) = &refused
                    && refused.key == form.key
                {
                    form.error = Some(refused.message.clone());
                    form.values.clone_from(&refused.values);
                }
                form
            })
            .collect();
        (forms, catalog.backup_sets)
    } else {
        (Vec::new(), Vec::new())
    };
    let chrome = chrome(state, page).await;
    let body = html(&TenantPage {
        chrome,
        tenant: slug.to_string(),
        items: shown.fragments.into_iter().map(|f| f.html).collect(),
        operate,
        forms_open: forms.iter().any(|f: &StartForm| f.error.is_some()),
        forms,
        backup_sets,
        set_error,
    });
    (status, body).into_response()
}

/// `GET /tenants/{tenant}`.
pub(super) async fn page(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Path(tenant): Path<String>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    let Ok(slug) = Slug::parse(&tenant) else {
        return ApiError::NotFound("tenant not found".into()).into_response();
    };
    render(&state, &page, slug, StatusCode::OK, None, None).await
}

/// A form's fields as `key=value` pairs the registry parses like the CLI's `--param`: the
/// values of one name (checkboxes, a multiple select) joined by commas, empty ones left out.
fn pairs(fields: &[(String, String)]) -> Vec<String> {
    let mut joined: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in fields {
        let Some(name) = name.strip_prefix("p.") else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match joined.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value.to_owned()),
            None => joined.push((name.to_owned(), vec![value.to_owned()])),
        }
    }
    joined
        .into_iter()
        .map(|(name, values)| format!("{name}={}", values.join(",")))
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

/// A tenant form's caller and tenant: a session (else the login page), this site's form with
/// the session's CSRF token (else 403), and a tenant slug (else 404).
#[expect(clippy::result_large_err, reason = "the error is the answer itself")]
fn checked(
    page: Result<PageCaller, ApiError>,
    headers: &HeaderMap,
    fields: &[(String, String)],
    tenant: &str,
) -> Result<(PageCaller, Slug), Response> {
    let Ok(page) = page else {
        return Err(to_login());
    };
    if !form_ok(headers, &page, field(fields, "csrf")) {
        return Err(cross_site());
    }
    let Ok(slug) = Slug::parse(tenant) else {
        return Err(ApiError::NotFound("tenant not found".into()).into_response());
    };
    Ok((page, slug))
}

/// `POST /tenants/{tenant}/start` (form `csrf`, `type`, `p.NAME`...): starts the operation and
/// shows it, or shows the tenant page again with the refusal at the family's form.
pub(super) async fn start(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (page, slug) = match checked(page, &headers, &fields, &tenant) {
        Ok(checked) => checked,
        Err(answer) => return answer,
    };
    let key = field(&fields, "type").to_owned();
    let sent: Vec<(String, String)> = fields
        .iter()
        .filter_map(|(n, v)| n.strip_prefix("p.").map(|n| (n.to_owned(), v.clone())))
        .collect();
    let refused = |message: String| Refused {
        key: key.clone(),
        message,
        values: sent.clone(),
    };
    let params = match crate::commands::parse_params(&state.stack.families, &key, &pairs(&fields)) {
        Ok(params) => params,
        Err(e) => {
            let message = match e {
                crate::commands::CliError::Input(message) => message,
                other => format!("{other:?}"),
            };
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return render(&state, &page, slug, status, Some(refused(message)), None).await;
        }
    };
    match state.stack.start.execute(&page.caller, &slug, params).await {
        Ok(started) => Redirect::to(&format!("/operations/{}", started.run.id())).into_response(),
        Err(e) => {
            let error = ApiError::from(e);
            let status = error.status();
            match status {
                StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT => {
                    let message = error.message();
                    render(&state, &page, slug, status, Some(refused(message)), None).await
                }
                _ => error.into_response(),
            }
        }
    }
}

/// `POST /tenants/{tenant}/backup-sets` (form `csrf`, `name`): creates an empty backup set.
pub(super) async fn create_backup_set(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (page, slug) = match checked(page, &headers, &fields, &tenant) {
        Ok(checked) => checked,
        Err(answer) => return answer,
    };
    let name = field(&fields, "name").to_owned();
    match state
        .stack
        .catalog
        .create_backup_set(&page.caller, &slug, &name)
        .await
    {
        Ok(_) => Redirect::to(&format!("/tenants/{slug}#backup-sets")).into_response(),
        Err(e) => {
            let error = ApiError::from(e);
            if error.status() == StatusCode::UNPROCESSABLE_ENTITY {
                let message = error.message();
                let status = StatusCode::UNPROCESSABLE_ENTITY;
                return render(&state, &page, slug, status, None, Some(message)).await;
            }
            error.into_response()
        }
    }
}

/// `GET /tenants/{tenant}/live`: the page's live stream.
pub(super) async fn live(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Path(tenant): Path<String>,
) -> Response {
    let page = match page {
        Ok(page) => page,
        Err(e) => return e.into_response(),
    };
    let Ok(slug) = Slug::parse(&tenant) else {
        return ApiError::NotFound("tenant not found".into()).into_response();
    };
    // The tenant must be visible: an invisible one answers like an absent one.
    if let Err(e) = state.stack.models.activity(&page.caller, &slug).await {
        return ApiError::from(e).into_response();
    }
    live::stream(state, live::Wire::Page(page), Follow::Feed(slug)).into_response()
}

#[cfg(test)]
mod tests {
    use super::pairs;

    #[test]
    fn form_fields_become_the_registrys_pairs() {
        let fields: Vec<(String, String)> = [
            ("csrf", "x"),
            ("type", "inventory.sync"),
            ("p.policy_types", "a"),
            ("p.policy_types", "b"),
            ("p.backup_set_id", " 3 "),
            ("p.item_ids", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();

        assert_eq!(pairs(&fields), vec!["policy_types=a,b", "backup_set_id=3"]);
    }
}
