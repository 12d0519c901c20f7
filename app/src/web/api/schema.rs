//! The OpenAPI document as served: the derived [`ApiDoc`](super::ApiDoc) completed with what a
//! derive cannot know.
//!
//! - The closed sets become enums, taken from the domain's own lists (a new status or outcome
//!   appears in the document by itself).
//! - The registered families: the type keys, and the start body as one schema per family built
//!   from its parameter specs, so a host's own family is documented like a built-in one.
//! - Security: bearer on every route by default; the probes say they need none.

use opsrun_application::admin::ManageTokens;
use opsrun_application::families::{Families, ParamKind, ParamSpec};
use opsrun_application::ports::Role;
use opsrun_domain::{ComponentStatus, ItemOutcome, ProgressMode, RunOutcome, RunStatus};
use serde_json::{Map, Value, json};

/// The document for a server running `families`.
///
/// # Errors
///
/// The name of a schema, property or parameter the derived document no longer has (a renamed
/// field): the document is then not served half-right.
pub fn document(families: &Families) -> Result<Value, String> {
    let mut doc = serde_json::to_value(<super::ApiDoc as utoipa::OpenApi>::openapi())
        .map_err(|e| e.to_string())?;
    let types: Vec<String> = families
        .iter()
        .map(|f| f.operation_type().key().to_owned())
        .collect();
    let statuses = keys(RunStatus::ALL.map(RunStatus::key));
    let outcomes = keys(RunOutcome::ALL.map(RunOutcome::key));
    let terminal = keys(
        RunOutcome::ALL
            .into_iter()
            .filter(|o| *o != RunOutcome::Pending)
            .map(RunOutcome::key),
    );
    let items = keys(ItemOutcome::ALL.map(ItemOutcome::key));
    let modes = keys(ProgressMode::ALL.map(ProgressMode::key));
    let roles = keys(Role::ALL.map(Role::key));

    for (schema, property, values) in [
        ("RunDoc", "type", &types),
        ("RunDoc", "status", &statuses),
        ("RunDoc", "outcome", &outcomes),
        ("ProgressDoc", "mode", &modes),
        (
            "ComponentDoc",
            "state",
            &keys(ComponentStatus::ALL.map(ComponentStatus::key)),
        ),
        ("ItemDoc", "outcome", &items),
        ("NotificationDoc", "type", &types),
        ("NotificationDoc", "outcome", &terminal),
        ("TokenDoc", "role", &roles),
        ("TokenDoc", "status", &keys(ManageTokens::STATUSES)),
        ("TokenBody", "role", &roles),
        ("MeDoc", "role", &roles),
        ("TypeDoc", "type", &types),
        ("TypeDoc", "mode", &modes),
        (
            "ParamDoc",
            "kind",
            &keys(ParamKind::ALL.map(super::discovery::kind)),
        ),
        ("ReadinessDoc", "status", &keys(["ready", "not_ready"])),
    ] {
        let target = doc
            .pointer_mut(&format!(
                "/components/schemas/{schema}/properties/{property}"
            ))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("no property {schema}.{property}"))?;
        target.insert("enum".to_owned(), json!(values));
    }
    for (path, method, name, values) in [
        ("/api/operations", "get", "type", &types),
        ("/api/operations", "get", "status", &statuses),
        ("/api/operations", "get", "outcome", &outcomes),
        ("/api/operations/{id}/items", "get", "outcome", &items),
        ("/api/events", "get", "type", &types),
        ("/api/events", "get", "status", &statuses),
        ("/api/events", "get", "outcome", &outcomes),
    ] {
        let escaped = path.replace('~', "~0").replace('/', "~1");
        let parameter = doc
            .pointer_mut(&format!("/paths/{escaped}/{method}/parameters"))
            .and_then(Value::as_array_mut)
            .and_then(|ps| ps.iter_mut().find(|p| p["name"] == name))
            .and_then(|p| p.get_mut("schema"))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("no parameter {name} of {method} {path}"))?;
        parameter.insert("type".to_owned(), json!("string"));
        parameter.insert("enum".to_owned(), json!(values));
    }

    // One server-sent event of each stream (OpenAPI 3.1 describes an event stream by its
    // events).
    for (path, events) in [
        (
            "/api/operations/{id}/events",
            &["progress", "unauthorized", "shutdown"][..],
        ),
        (
            "/api/tenants/{tenant}/events",
            &["progress", "removed", "synced", "unauthorized", "shutdown"][..],
        ),
        (
            "/api/events",
            &["progress", "removed", "synced", "unauthorized", "shutdown"][..],
        ),
    ] {
        let escaped = path.replace('~', "~0").replace('/', "~1");
        *doc.pointer_mut(&format!(
            "/paths/{escaped}/get/responses/200/content/text~1event-stream/schema"
        ))
        .ok_or_else(|| format!("no event stream response of {path}"))? = json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {
                    "type": "string",
                    "enum": events,
                    "description": "`progress`: `data` is a run document; `removed`: \
                        `{\"id\"}` of a run the stream no longer follows; `synced`: \
                        `{\"count\"}` once the first full state is sent; `unauthorized` and \
                        `shutdown` end the stream with `{\"reason\"}`",
                },
                "data": {"type": "string", "contentMediaType": "application/json"},
                "id": {"type": "string"},
            },
        });
    }

    // Tenant slugs in a token request: the same rule as every slug.
    doc.pointer_mut("/components/schemas/TokenBody/properties/tenants/items")
        .and_then(Value::as_object_mut)
        .ok_or("no property TokenBody.tenants")?
        .insert("pattern".to_owned(), json!(SLUG_PATTERN));

    let schemas = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
        .ok_or("no components")?;
    schemas.insert("StartBody".to_owned(), start_body(families));

    // Bearer everywhere by default; the probes (and the document itself, not in `paths`) are
    // open, which OpenAPI says with an empty list (`[{}]` would mean "optional").
    let root = doc.as_object_mut().ok_or("not an object")?;
    root.insert("security".to_owned(), json!([{"bearer": []}]));
    for probe in ["/healthz", "/readyz"] {
        let operation = doc
            .pointer_mut(&format!("/paths/~1{}/get", probe.trim_start_matches('/')))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("no path {probe}"))?;
        operation.insert("security".to_owned(), json!([]));
    }
    Ok(doc)
}

/// A slug as [`opsrun_domain::Slug::parse`] takes it.
pub const SLUG_PATTERN: &str = "^[a-z][a-z0-9-]{0,62}$";

fn keys<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    values.into_iter().map(str::to_owned).collect()
}

/// A start body: one schema per family (its `type`, its parameters with their kinds, which
/// are required, and nothing else), as the server parses it.
fn start_body(families: &Families) -> Value {
    let variants: Vec<Value> = families
        .iter()
        .map(|family| {
            let specs = family.params();
            let required: Vec<&str> = specs
                .iter()
                .filter(|p| p.required)
                .map(|p| p.name)
                .collect();
            let properties: Map<String, Value> = specs
                .iter()
                .map(|p| (p.name.to_owned(), param_schema(p)))
                .collect();
            let mut params = json!({
                "type": "object",
                "additionalProperties": false,
                "properties": properties,
            });
            if !required.is_empty() {
                params["required"] = json!(required);
            }
            // `params` may be left out or null exactly when nothing in it is required.
            let mut body_required = vec!["type"];
            if required.is_empty() {
                params["type"] = json!(["object", "null"]);
            } else {
                body_required.push("params");
            }
            json!({
                "title": family.label(),
                "description": format!(
                    "Start a {} run (progress: {}).",
                    family.operation_type().key(),
                    family.designed_mode().key()
                ),
                "type": "object",
                "additionalProperties": false,
                "required": body_required,
                "properties": {
                    "type": {"type": "string", "enum": [family.operation_type().key()]},
                    "params": params,
                },
            })
        })
        .collect();
    json!({
        "description": "Start an operation: `type` names the family (GET /api/types lists \
            them); `params` are that family's parameters. A parameter that names something \
            the tenant does not have is refused with 422 and a code such as \
            `unknown_backup_set`.",
        "oneOf": variants,
        "example": {"type": "inventory.sync", "params": {"policy_types": ["compliance_policy"]}},
    })
}

fn param_schema(spec: &ParamSpec) -> Value {
    let one = match spec.kind {
        ParamKind::Int | ParamKind::IntList => {
            json!({"type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX})
        }
        ParamKind::Text | ParamKind::TextList => json!({"type": "string"}),
    };
    let mut schema = match spec.kind {
        ParamKind::Int | ParamKind::Text => one,
        ParamKind::IntList | ParamKind::TextList => json!({"type": "array", "items": one}),
    };
    // An optional parameter may be null: the same as leaving it out.
    if !spec.required {
        let kind = schema["type"].clone();
        schema["type"] = json!([kind, "null"]);
    }
    schema["description"] = json!(spec.help);
    schema
}
