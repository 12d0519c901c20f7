//! The HTTP API through `router(..).oneshot(..)`: every route and error code of API.md, each
//! case on the in-memory backend, on a fresh SQLite database and on a fresh PostgreSQL
//! database (no workers: runs stay queued unless a test says otherwise).

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use opsrun_adapters::backend::{Backend, BackendOptions, SqlBackend};
use opsrun_adapters::queue::QueueSettings;
use opsrun_app::web::{AppState, router};
use opsrun_app::wiring::Stack;
use opsrun_application::auth::PlainToken;
use opsrun_application::ports::{NewToken, Role, SimulationSettings, TenantScope};
use opsrun_domain::{Slug, Timestamp, WorkspaceId};
use opsrun_tests::{TestError, fresh_postgres_database};
use serde_json::{Value, json};
use tower::ServiceExt;

const OWNER: &str = "ops_owner_token";
const OPERATOR: &str = "ops_operator_token";
const READONLY: &str = "ops_readonly_token";
/// The owner of workspace `globex` (tenant `initech`).
const OTHER_WORKSPACE: &str = "ops_other_workspace_token";

struct Api {
    app: Router,
    _dir: tempfile::TempDir,
}

/// Declares one API case and runs it as three tests, one per backend.
macro_rules! api_case {
    ($name:ident, |$api:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn case($api: Api) -> Result<(), TestError> $body

            #[tokio::test]
            async fn memory() -> Result<(), TestError> {
                Api::run(opsrun_tests::Backend::Memory, case).await
            }

            #[tokio::test]
            async fn sqlite() -> Result<(), TestError> {
                Api::run(opsrun_tests::Backend::Sqlite, case).await
            }

            #[tokio::test]
            async fn postgres() -> Result<(), TestError> {
                Api::run(opsrun_tests::Backend::Postgres, case).await
            }
        }
    };
}

async fn token(
    backend: &Backend,
    ws: WorkspaceId,
    email: &str,
    token: &str,
    role: &str,
    tenants: Option<&[opsrun_domain::TenantId]>,
) -> Result<(), TestError> {
    let user = backend
        .admin
        .ensure_user(ws, email, Timestamp::from_millis(0))
        .await?;
    let hash = PlainToken::parse(token)
        .ok_or("a test token must be well-formed")?
        .hash();
    backend
        .tokens
        .add_token(NewToken {
            user: user.id,
            hash,
            role: Role::parse(role).ok_or("unknown role")?,
            scope: tenants.map_or(TenantScope::All, |ids| {
                TenantScope::Only(ids.iter().copied().collect())
            }),
            at: Timestamp::from_millis(0),
            expires_at: None,
        })
        .await?;
    Ok(())
}

async fn tenant(
    backend: &Backend,
    ws: WorkspaceId,
    slug: &str,
) -> Result<opsrun_application::ports::Tenant, TestError> {
    let tenant = backend
        .admin
        .add_tenant(ws, &Slug::parse(slug)?, Timestamp::from_millis(0))
        .await?;
    let settings = SimulationSettings {
        policies: 10,
        ..SimulationSettings::default()
    };
    backend.setup.configure(tenant.id, settings).await?;
    Ok(tenant)
}

impl Api {
    /// Runs `case` against a fresh API on `backend`; says so when PostgreSQL is not
    /// configured (and not required), so a skip is never silent.
    async fn run<F, Fut>(backend: opsrun_tests::Backend, case: F) -> Result<(), TestError>
    where
        F: FnOnce(Api) -> Fut,
        Fut: std::future::Future<Output = Result<(), TestError>>,
    {
        match Self::new(backend).await? {
            Some(api) => case(api).await,
            None => {
                crate::report_skip();
                Ok(())
            }
        }
    }

    async fn new(backend: opsrun_tests::Backend) -> Result<Option<Self>, TestError> {
        let dir = tempfile::tempdir()?;
        let url = match backend {
            opsrun_tests::Backend::Memory => None,
            opsrun_tests::Backend::Sqlite => Some(format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("opsrun.db").display()
            )),
            opsrun_tests::Backend::Postgres => match fresh_postgres_database().await? {
                Some(url) => Some(url),
                None => return Ok(None),
            },
        };
        let ports = match url {
            None => Backend::memory(QueueSettings::default()),
            Some(url) => SqlBackend::open(&BackendOptions {
                database_url: url,
                artifacts: dir.path().join("artifacts"),
                queue: QueueSettings::default(),
                max_connections: 8,
            })
            .await?
            .ports(),
        };
        let ws = ports
            .admin
            .workspace(&Slug::parse("acme")?, true, Timestamp::from_millis(0))
            .await?;
        let contoso = tenant(&ports, ws, "contoso").await?;
        tenant(&ports, ws, "fabrikam").await?;
        token(&ports, ws, "owner@example.com", OWNER, "owner", None).await?;
        token(
            &ports,
            ws,
            "operator@example.com",
            OPERATOR,
            "operator",
            Some(&[contoso.id]),
        )
        .await?;
        token(&ports, ws, "reader@example.com", READONLY, "readonly", None).await?;
        // Another workspace, whose owner must see nothing of acme's.
        let other = ports
            .admin
            .workspace(&Slug::parse("globex")?, true, Timestamp::from_millis(0))
            .await?;
        tenant(&ports, other, "initech").await?;
        token(
            &ports,
            other,
            "boss@globex.example",
            OTHER_WORKSPACE,
            "owner",
            None,
        )
        .await?;
        let stack = Stack::wire(&ports, opsrun_app::config::STALE_AFTER_MS);
        Ok(Some(Self {
            app: router(AppState::new(stack)),
            _dir: dir,
        }))
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Body>,
    ) -> Result<(StatusCode, Value), TestError> {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(body.unwrap_or_else(Body::empty))?)
            .await?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22).await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    async fn get(&self, uri: &str, token: &str) -> Result<(StatusCode, Value), TestError> {
        self.call("GET", uri, Some(token), None).await
    }

    async fn post(
        &self,
        uri: &str,
        token: &str,
        body: Value,
    ) -> Result<(StatusCode, Value), TestError> {
        self.call("POST", uri, Some(token), Some(Body::from(body.to_string())))
            .await
    }
}

fn code(value: &Value) -> &str {
    value["error"]["code"].as_str().unwrap_or("")
}

api_case!(health_and_openapi_need_no_token, |api| {
    let (health, _) = api.call("GET", "/healthz", None, None).await?;
    let (status, doc) = api.call("GET", "/api/openapi.json", None, None).await?;

    assert_eq!(health, StatusCode::OK);
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/api/operations/{id}/events"].is_object());
    assert!(doc["paths"]["/api/tenants/{tenant}/operations"]["post"].is_object());
    assert!(doc["components"]["schemas"]["RunDoc"].is_object());
    Ok(())
});

api_case!(api_routes_need_a_known_token, |api| {
    let (missing, body) = api.call("GET", "/api/operations", None, None).await?;
    let (unknown, _) = api.get("/api/operations", "nope").await?;
    let (route, _) = api.get("/api/nothing-here", OWNER).await?;

    assert_eq!(missing, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "unauthorized");
    assert_eq!(unknown, StatusCode::UNAUTHORIZED);
    assert_eq!(route, StatusCode::NOT_FOUND);
    Ok(())
});

api_case!(starting_answers_202_then_200_reused, |api| {
    let body = json!({"type": "inventory.sync", "params": {"policy_types": ["compliance_policy"]}});

    let (first, doc) = api
        .post("/api/tenants/contoso/operations", OPERATOR, body.clone())
        .await?;
    let (second, again) = api
        .post("/api/tenants/contoso/operations", OWNER, body)
        .await?;

    assert_eq!(first, StatusCode::ACCEPTED);
    assert_eq!(doc["status"], "queued");
    assert_eq!(doc["outcome"], "pending");
    assert_eq!(doc["reused"], false);
    assert_eq!(doc["progress"]["mode"], "activity");
    assert_eq!(doc["summary_counts"], json!({}));
    assert_eq!(doc["initiator"], "operator@example.com");
    assert_eq!(doc["view_url"], format!("/operations/{}", doc["id"]));
    assert_eq!(second, StatusCode::OK);
    assert_eq!(again["reused"], true);
    assert_eq!(again["id"], doc["id"]);
    Ok(())
});

api_case!(
    bad_start_requests_get_stable_codes_and_change_nothing,
    |api| {
        let uri = "/api/tenants/contoso/operations";
        let big = "x".repeat(70 * 1024);
        let cases: Vec<(Body, StatusCode, &str)> = vec![
        (Body::from(r#"{"type": "inventory.sync""#), StatusCode::BAD_REQUEST, "malformed_json"),
        (Body::from(json!({"type": "nope"}).to_string()), StatusCode::UNPROCESSABLE_ENTITY, "unknown_type"),
        (Body::from(json!({"type": "inventory.sync", "extra": 1}).to_string()), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (Body::from(json!({"type": "inventory.sync", "params": {"x": 1}}).to_string()), StatusCode::UNPROCESSABLE_ENTITY, "invalid_params"),
        (Body::from(json!({"type": "inventory.sync", "params": {"policy_types": ["nope"]}}).to_string()), StatusCode::UNPROCESSABLE_ENTITY, "unknown_policy_type"),
        (Body::from(json!({"type": "backup_set.add_policies", "params": {"backup_set_id": 9, "policy_ids": ["pol-00001"]}}).to_string()), StatusCode::UNPROCESSABLE_ENTITY, "unknown_backup_set"),
        (Body::from(json!({"type": "backup_set.add_policies", "params": {"backup_set_id": 9}}).to_string()), StatusCode::UNPROCESSABLE_ENTITY, "invalid_params"),
        (Body::from(json!({"type": "baseline.compare", "params": {"baseline_id": 1}}).to_string()), StatusCode::UNPROCESSABLE_ENTITY, "unknown_baseline"),
        (Body::from(json!({"type": "inventory.sync", "params": {"policy_types": [big]}}).to_string()), StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
    ];
        for (body, status, expected) in cases {
            let (got, value) = api.call("POST", uri, Some(OWNER), Some(body)).await?;

            assert_eq!((got, code(&value)), (status, expected), "{value}");
        }
        let plain = Request::builder()
            .method("POST")
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {OWNER}"))
            .body(Body::from("{}"))?;
        let response = api.app.clone().oneshot(plain).await?;
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (_, list) = api.get("/api/operations", OWNER).await?;
        assert_eq!(list["items"], json!([]));
        Ok(())
    }
);

api_case!(roles_and_tenant_scope_are_enforced, |api| {
    let body = json!({"type": "baseline.capture"});

    let (readonly, r) = api
        .post("/api/tenants/contoso/operations", READONLY, body.clone())
        .await?;
    let (hidden, h) = api
        .post("/api/tenants/fabrikam/operations", OPERATOR, body.clone())
        .await?;
    let (_, run) = api
        .post("/api/tenants/fabrikam/operations", OWNER, body)
        .await?;
    let id = run["id"].as_i64().unwrap_or(0);
    let (cross, _) = api.get(&format!("/api/operations/{id}"), OPERATOR).await?;
    let (absent, _) = api.get("/api/operations/999999", OWNER).await?;
    let (garbage, _) = api.get("/api/operations/abc", OWNER).await?;
    let (feed, _) = api.get("/api/tenants/fabrikam/activity", OPERATOR).await?;
    let (cancel_operator, c) = api
        .post(&format!("/api/operations/{id}/cancel"), OPERATOR, json!({}))
        .await?;

    assert_eq!((readonly, code(&r)), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!((hidden, code(&h)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(cross, StatusCode::NOT_FOUND);
    assert_eq!(absent, StatusCode::NOT_FOUND);
    assert_eq!(garbage, StatusCode::NOT_FOUND);
    assert_eq!(feed, StatusCode::NOT_FOUND);
    // The operator cannot see fabrikam at all, so its runs are not found rather than forbidden.
    assert_eq!(
        (cancel_operator, code(&c)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    Ok(())
});

api_case!(cancel_is_owner_only_and_conflicts_when_completed, |api| {
    let (_, run) = api
        .post(
            "/api/tenants/contoso/operations",
            OPERATOR,
            json!({"type": "evidence_snapshot.generate"}),
        )
        .await?;
    let id = run["id"].as_i64().unwrap_or(0);
    let uri = format!("/api/operations/{id}/cancel");

    let (operator, _) = api.post(&uri, OPERATOR, json!({})).await?;
    let (owner, doc) = api.post(&uri, OWNER, json!({})).await?;
    let (again, conflict) = api.post(&uri, OWNER, json!({})).await?;
    let (_, notes) = api.get("/api/notifications", OPERATOR).await?;

    assert_eq!(operator, StatusCode::FORBIDDEN);
    assert_eq!(owner, StatusCode::OK);
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["outcome"], "cancelled");
    assert_eq!(doc["progress"]["mode"], "none");
    assert_eq!(
        (again, code(&conflict)),
        (StatusCode::CONFLICT, "already_completed")
    );
    assert_eq!(notes["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(notes["items"][0]["run_id"], id);
    assert_eq!(notes["items"][0]["outcome"], "cancelled");
    assert_eq!(notes["items"][0]["read"], false);
    Ok(())
});

api_case!(
    the_collection_pages_with_a_cursor_and_validates_filters,
    |api| {
        for kind in [
            "baseline.capture",
            "evidence_snapshot.generate",
            "review_pack.generate",
        ] {
            api.post(
                "/api/tenants/contoso/operations",
                OWNER,
                json!({"type": kind}),
            )
            .await?;
        }

        let (_, first) = api.get("/api/operations?limit=2", OWNER).await?;
        let cursor = first["next_cursor"].as_str().unwrap_or("").to_owned();
        let (_, second) = api
            .get(&format!("/api/operations?limit=2&cursor={cursor}"), OWNER)
            .await?;
        let (_, by_type) = api
            .get(
                "/api/operations?type=baseline.capture&tenant=contoso&status=queued",
                OWNER,
            )
            .await?;
        let (bad_status, b) = api.get("/api/operations?status=paused", OWNER).await?;
        let (unknown, u) = api.get("/api/operations?sort=asc", OWNER).await?;
        let (bad_limit, l) = api.get("/api/operations?limit=5000", OWNER).await?;

        assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
        assert_eq!(first["items"][0]["type"], "review_pack.generate");
        assert_eq!(second["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(second["items"][0]["type"], "baseline.capture");
        assert_eq!(second["next_cursor"], Value::Null);
        assert_eq!(by_type["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            (bad_status, code(&b)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_parameter")
        );
        assert_eq!(
            (unknown, code(&u)),
            (StatusCode::UNPROCESSABLE_ENTITY, "unknown_parameter")
        );
        assert_eq!(
            (bad_limit, code(&l)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_limit")
        );
        Ok(())
    }
);

api_case!(
    policies_backup_sets_and_notifications_page_with_a_cursor,
    |api| {
        let ids = |doc: &Value| -> Vec<Value> {
            doc["items"]
                .as_array()
                .map(|items| items.iter().map(|i| i["id"].clone()).collect())
                .unwrap_or_default()
        };
        let mut pages = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = api
                .get(
                    &format!("/api/tenants/contoso/policies?limit=4{cursor}"),
                    READONLY,
                )
                .await?;
            assert_eq!(status, StatusCode::OK);
            pages.push(ids(&page).len());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        for name in ["a", "b", "c"] {
            api.post(
                "/api/tenants/contoso/backup-sets",
                OPERATOR,
                json!({"name": name}),
            )
            .await?;
        }
        let (_, first) = api
            .get("/api/tenants/contoso/backup-sets?limit=2", READONLY)
            .await?;
        let next = first["next_cursor"].as_str().ok_or("no cursor")?.to_owned();
        let (_, second) = api
            .get(
                &format!("/api/tenants/contoso/backup-sets?limit=2&cursor={next}"),
                READONLY,
            )
            .await?;
        let (_, notifications) = api.get("/api/notifications?limit=1", OWNER).await?;
        let (empty, e) = api.get("/api/notifications?cursor=", OWNER).await?;
        let (signed, _) = api
            .get("/api/tenants/contoso/policies?cursor=%2B4", READONLY)
            .await?;
        let (zero, _) = api
            .get("/api/tenants/contoso/backup-sets?limit=0", READONLY)
            .await?;

        assert_eq!(pages, vec![4, 4, 2]);
        assert_eq!(
            (ids(&first), ids(&second)),
            (vec![json!(1), json!(2)], vec![json!(3)])
        );
        assert_eq!(second["next_cursor"], Value::Null);
        assert_eq!(
            (
                notifications["items"].clone(),
                notifications["next_cursor"].clone()
            ),
            (json!([]), Value::Null)
        );
        assert_eq!(
            (empty, code(&e)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_parameter")
        );
        assert_eq!(signed, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(zero, StatusCode::UNPROCESSABLE_ENTITY);
        Ok(())
    }
);

api_case!(tenant_lists_show_what_exists, |api| {
    let (created, set) = api
        .post(
            "/api/tenants/contoso/backup-sets",
            OPERATOR,
            json!({"name": "nightly"}),
        )
        .await?;
    let (bad, b) = api
        .post(
            "/api/tenants/contoso/backup-sets",
            OPERATOR,
            json!({"name": ""}),
        )
        .await?;
    let (readonly, _) = api
        .post(
            "/api/tenants/contoso/backup-sets",
            READONLY,
            json!({"name": "x"}),
        )
        .await?;
    let (_, sets) = api
        .get("/api/tenants/contoso/backup-sets", READONLY)
        .await?;
    let (_, baselines) = api.get("/api/tenants/contoso/baselines", READONLY).await?;
    let (_, policies) = api.get("/api/tenants/contoso/policies", READONLY).await?;
    let (_, feed) = api.get("/api/tenants/contoso/activity", READONLY).await?;

    assert_eq!(created, StatusCode::CREATED);
    assert_eq!(set["name"], "nightly");
    assert_eq!(set["item_count"], 0);
    assert_eq!(
        (bad, code(&b)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_name")
    );
    assert_eq!(readonly, StatusCode::FORBIDDEN);
    assert_eq!(sets["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(baselines["items"], json!([]));
    assert_eq!(policies["items"].as_array().map(Vec::len), Some(10));
    assert_eq!(
        policies["items"][0],
        json!({"id": "pol-00001", "type": "device_configuration", "name": "Policy 1"})
    );
    assert_eq!(feed["items"], json!([]));
    Ok(())
});

api_case!(a_completed_run_streams_one_progress_event_and_ends, |api| {
    let (_, run) = api
        .post(
            "/api/tenants/contoso/operations",
            OWNER,
            json!({"type": "baseline.capture"}),
        )
        .await?;
    let id = run["id"].as_i64().unwrap_or(0);
    api.post(&format!("/api/operations/{id}/cancel"), OWNER, json!({}))
        .await?;

    let request = Request::builder()
        .uri(format!("/api/operations/{id}/events"))
        .header(header::AUTHORIZATION, format!("Bearer {OWNER}"))
        .body(Body::empty())?;
    let response = api.app.clone().oneshot(request).await?;
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    let text = String::from_utf8(body.to_vec())?;

    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    assert_eq!(text.matches("event: progress").count(), 1);
    assert!(text.contains("\"outcome\":\"cancelled\""));
    Ok(())
});

/// Reads server-sent events from `body` until one named `name` whose data satisfies `wanted`
/// (or 20 s pass); that event's data.
async fn next_event(
    body: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    buffer: &mut String,
    name: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Result<Value, TestError> {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let event = frame.lines().find_map(|l| l.strip_prefix("event: "));
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(event), Some(data)) = (event, data)
                && event == name
            {
                let data: Value = serde_json::from_str(data)?;
                if wanted(&data) {
                    return Ok(data);
                }
            }
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .map_err(|_| format!("no '{name}' event in time; last: {buffer}"))?
            .ok_or("the stream ended")??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

api_case!(
    one_stream_follows_a_tenants_runs_as_they_appear_change_and_end,
    |api| {
        let open = |uri: String, token: &'static str| {
            let app = api.app.clone();
            async move {
                let request = Request::builder()
                    .uri(uri)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::empty())?;
                Ok::<_, TestError>(app.oneshot(request).await?)
            }
        };
        let response = open("/api/tenants/contoso/events".into(), OPERATOR).await?;
        let status = response.status();
        let mut body = response.into_body().into_data_stream();
        let mut buffer = String::new();
        let synced = next_event(&mut body, &mut buffer, "synced", |_| true).await?;
        let (_, run) = api
            .post(
                "/api/tenants/contoso/operations",
                OPERATOR,
                json!({"type": "inventory.sync"}),
            )
            .await?;
        let id = run["id"].as_i64().ok_or("no id")?;
        let appeared = next_event(&mut body, &mut buffer, "progress", |d| d["id"] == id).await?;
        api.post(&format!("/api/operations/{id}/cancel"), OWNER, json!({}))
            .await?;
        let ended = next_event(&mut body, &mut buffer, "progress", |d| {
            d["id"] == id && d["status"] == "completed"
        })
        .await?;
        let (_, shown) = api.get(&format!("/api/operations/{id}"), OPERATOR).await?;
        let filtered = open("/api/events?status=completed".into(), OWNER).await?;
        let mut filtered_body = filtered.into_body().into_data_stream();
        let mut filtered_buffer = String::new();
        let listed = next_event(&mut filtered_body, &mut filtered_buffer, "progress", |d| {
            d["id"] == id
        })
        .await?;
        let invisible = open("/api/tenants/fabrikam/events".into(), OPERATOR)
            .await?
            .status();
        let bad = open("/api/events?status=done".into(), OWNER)
            .await?
            .status();

        assert_eq!(status, StatusCode::OK);
        assert_eq!(synced, json!({"count": 0}));
        assert_eq!(appeared["status"], "queued");
        assert_eq!(ended["outcome"], "cancelled");
        // The stream's last document is the run document.
        let mut ended = ended;
        ended["retried_by"] = json!([]);
        assert_eq!(ended, shown);
        assert_eq!(listed["outcome"], "cancelled");
        assert_eq!(invisible, StatusCode::NOT_FOUND);
        assert_eq!(bad, StatusCode::UNPROCESSABLE_ENTITY);
        Ok(())
    }
);

api_case!(
    notifications_are_marked_read_by_their_own_user_only,
    |api| {
        let mut ids = Vec::new();
        for (token, body) in [
            (OWNER, json!({"type": "baseline.capture"})),
            (OWNER, json!({"type": "evidence_snapshot.generate"})),
            (OPERATOR, json!({"type": "review_pack.generate"})),
        ] {
            let (_, run) = api
                .post("/api/tenants/contoso/operations", token, body)
                .await?;
            let id = run["id"].as_i64().ok_or("no id")?;
            api.post(&format!("/api/operations/{id}/cancel"), OWNER, json!({}))
                .await?;
            ids.push(id);
        }
        let read = |doc: &Value| -> Vec<(i64, bool)> {
            doc["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|n| (n["run_id"].as_i64().unwrap_or(0), n["read"] == true))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (_, before) = api.get("/api/notifications", OWNER).await?;
        let first = before["items"][1]["id"].as_i64().ok_or("no notification")?;
        let (_, operators) = api.get("/api/notifications", OPERATOR).await?;
        let theirs = operators["items"][0]["id"]
            .as_i64()
            .ok_or("no notification")?;
        let (one, _) = api
            .post(
                &format!("/api/notifications/{first}/read"),
                OWNER,
                json!({}),
            )
            .await?;
        let (again, _) = api
            .post(
                &format!("/api/notifications/{first}/read"),
                OWNER,
                json!({}),
            )
            .await?;
        let (_, after_one) = api.get("/api/notifications", OWNER).await?;
        let (other_user, o) = api
            .post(
                &format!("/api/notifications/{theirs}/read"),
                OWNER,
                json!({}),
            )
            .await?;
        let (absent, _) = api
            .post("/api/notifications/999999/read", OWNER, json!({}))
            .await?;
        let (all, _) = api
            .post("/api/notifications/read-all", OWNER, json!({}))
            .await?;
        let (_, after_all) = api.get("/api/notifications", OWNER).await?;
        let (_, operators_after) = api.get("/api/notifications", OPERATOR).await?;

        assert_eq!(read(&before), vec![(ids[1], false), (ids[0], false)]);
        assert_eq!(
            (one, again),
            (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT)
        );
        assert_eq!(read(&after_one), vec![(ids[1], false), (ids[0], true)]);
        assert_eq!((other_user, code(&o)), (StatusCode::NOT_FOUND, "not_found"));
        assert_eq!(absent, StatusCode::NOT_FOUND);
        assert_eq!(all, StatusCode::NO_CONTENT);
        assert_eq!(read(&after_all), vec![(ids[1], true), (ids[0], true)]);
        // Another user's notifications are untouched.
        assert_eq!(read(&operators_after), vec![(ids[2], false)]);
        Ok(())
    }
);

api_case!(readiness_names_each_check_and_needs_no_token, |api| {
    let (status, doc) = api.call("GET", "/readyz", None, None).await?;

    // No workers run in these tests: the store takes a write, the workers are not started.
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(doc["status"], "not_ready");
    assert_eq!(doc["checks"]["store"]["ok"], true);
    assert_eq!(doc["checks"]["workers"]["ok"], false);
    assert_eq!(doc["checks"]["workers"]["detail"], "not started");
    Ok(())
});

/// A raw request's status, headers and body text.
async fn send(
    api: &Api,
    request: Request<Body>,
) -> Result<(StatusCode, axum::http::HeaderMap, String), TestError> {
    let response = api.app.clone().oneshot(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 22).await?;
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// Logs in through the page form with `token`; the session cookie (`name=value`).
async fn login(api: &Api, token: &str) -> Result<String, TestError> {
    let request = Request::builder()
        .method("POST")
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "opsrun.test")
        .header(header::ORIGIN, "http://opsrun.test")
        .body(Body::from(format!("token={token}")))?;
    let (status, headers, _) = send(api, request).await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .ok_or("login set no cookie")?;
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

async fn page(api: &Api, uri: &str, cookie: &str) -> Result<StatusCode, TestError> {
    let request = Request::builder()
        .uri(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())?;
    Ok(send(api, request).await?.0)
}

async fn queued_run(api: &Api) -> Result<i64, TestError> {
    let (_, run) = api
        .post(
            "/api/tenants/contoso/operations",
            OWNER,
            json!({"type": "baseline.capture"}),
        )
        .await?;
    run["id"].as_i64().ok_or_else(|| "no run id".into())
}

api_case!(no_state_changing_api_route_takes_the_page_cookie, |api| {
    let id = queued_run(&api).await?;
    let cookie = login(&api, OWNER).await?;

    let request = Request::builder()
        .method("POST")
        .uri(format!("/api/operations/{id}/cancel"))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::empty())?;
    let (status, _, body) = send(&api, request).await?;
    let (_, run) = api.get(&format!("/api/operations/{id}"), OWNER).await?;

    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("\"unauthorized\""));
    assert_eq!(run["status"], "queued");
    // The raw API token is no page cookie either.
    let old_cookie = format!("opsrun_session={OWNER}");
    assert_eq!(
        page(&api, "/operations", &old_cookie).await?,
        StatusCode::SEE_OTHER
    );
    Ok(())
});

api_case!(logout_ends_the_session_on_the_server, |api| {
    let cookie = login(&api, OWNER).await?;
    let secret = cookie.trim_start_matches("opsrun_session=").to_owned();
    assert_eq!(page(&api, "/operations", &cookie).await?, StatusCode::OK);

    let request = Request::builder()
        .method("POST")
        .uri("/logout")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "csrf={}",
            opsrun_application::auth::csrf_token(&secret)
        )))?;
    let (status, _, _) = send(&api, request).await?;

    assert_eq!(status, StatusCode::SEE_OTHER);
    // The same cookie value, replayed after logout, opens nothing.
    assert_eq!(
        page(&api, "/operations", &cookie).await?,
        StatusCode::SEE_OTHER
    );
    Ok(())
});

api_case!(cross_site_logins_and_duplicate_cookies_are_refused, |api| {
    for (name, value) in [
        (header::ORIGIN.as_str(), "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let request = Request::builder()
            .method("POST")
            .uri("/login")
            .header(header::HOST, "opsrun.test")
            .header(name, value)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={OWNER}")))?;
        let (status, headers, _) = send(&api, request).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {value}");
        assert!(headers.get(header::SET_COOKIE).is_none());
    }
    let cookie = login(&api, OWNER).await?;
    let doubled = format!("{cookie}; {cookie}");
    assert_eq!(
        page(&api, "/operations", &doubled).await?,
        StatusCode::SEE_OTHER
    );
    assert_eq!(page(&api, "/operations", &cookie).await?, StatusCode::OK);
    Ok(())
});

api_case!(
    a_revoked_token_fails_at_once_on_the_api_and_the_pages,
    |api| {
        let (created, issued) = api
        .post(
            "/api/tokens",
            OWNER,
            json!({"email": "temp@example.com", "role": "operator", "tenants": ["contoso"], "expires_in_days": 30}),
        )
        .await?;
        let secret = issued["token"].as_str().ok_or("no secret")?.to_owned();
        let id = issued["id"].as_i64().ok_or("no id")?;
        let (before, _) = api.get("/api/operations", &secret).await?;
        let cookie = login(&api, &secret).await?;
        let (listed_status, listed) = api.get("/api/tokens", OWNER).await?;
        let (refused, _) = api.get("/api/tokens", OPERATOR).await?;

        let (revoked, doc) = api
            .call("DELETE", &format!("/api/tokens/{id}"), Some(OWNER), None)
            .await?;
        let (after, _) = api.get("/api/operations", &secret).await?;
        let (missing, _) = api
            .call("DELETE", "/api/tokens/9999", Some(OWNER), None)
            .await?;

        assert_eq!(created, StatusCode::CREATED);
        assert!(secret.starts_with("ops_"));
        assert_eq!(issued["tenants"], json!(["contoso"]));
        assert_eq!(issued["status"], "active");
        assert!(issued["expires_at"].is_string());
        assert_eq!(before, StatusCode::OK);
        assert_eq!(listed_status, StatusCode::OK);
        assert_eq!(listed["items"][0]["id"], id);
        assert!(
            !listed.to_string().contains(&secret),
            "a list never shows a secret"
        );
        assert_eq!(refused, StatusCode::FORBIDDEN);
        assert_eq!(revoked, StatusCode::OK);
        assert_eq!(doc["status"], "revoked");
        assert_eq!(after, StatusCode::UNAUTHORIZED);
        assert_eq!(
            page(&api, "/operations", &cookie).await?,
            StatusCode::SEE_OTHER
        );
        assert_eq!(missing, StatusCode::NOT_FOUND);
        Ok(())
    }
);

api_case!(an_open_stream_ends_when_its_token_is_revoked, |api| {
    use futures::StreamExt;
    let (_, issued) = api
        .post(
            "/api/tokens",
            OWNER,
            json!({"email": "watcher@example.com", "role": "readonly"}),
        )
        .await?;
    let secret = issued["token"].as_str().ok_or("no secret")?.to_owned();
    let id = queued_run(&api).await?;
    let request = Request::builder()
        .uri(format!("/api/operations/{id}/events"))
        .header(header::AUTHORIZATION, format!("bearer {secret}"))
        .body(Body::empty())?;
    let response = api.app.clone().oneshot(request).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    while !text.contains("event: progress") {
        let chunk = body.next().await.ok_or("the stream ended early")??;
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    api.call(
        "DELETE",
        &format!("/api/tokens/{}", issued["id"]),
        Some(OWNER),
        None,
    )
    .await?;

    // The stream re-checks its token every 15 s: it must end within 30 s, with a last event.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk?));
        }
        Ok::<_, TestError>(())
    })
    .await;

    assert!(
        ended.is_ok(),
        "the stream of a revoked token is still open: {text}"
    );
    assert!(text.contains("event: unauthorized"), "{text}");
    Ok(())
});

api_case!(every_answer_has_the_security_headers, |api| {
    let request = Request::builder()
        .uri("/api/operations")
        .header(header::AUTHORIZATION, format!("BEARER {OWNER}"))
        .body(Body::empty())?;
    let (api_status, api_headers, _) = send(&api, request).await?;
    let cookie = login(&api, OWNER).await?;
    let request = Request::builder()
        .uri("/operations")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())?;
    let (page_status, page_headers, _) = send(&api, request).await?;

    let value = |h: &axum::http::HeaderMap, name: &str| {
        h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    assert_eq!(api_status, StatusCode::OK, "the scheme is case-insensitive");
    assert_eq!(page_status, StatusCode::OK);
    for headers in [&api_headers, &page_headers] {
        assert_eq!(
            value(headers, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert_eq!(value(headers, "cache-control").as_deref(), Some("no-store"));
    }
    assert_eq!(
        value(&page_headers, "x-frame-options").as_deref(),
        Some("DENY")
    );
    Ok(())
});

/// What an answer shows a caller: its status, its headers but the length, and its body with
/// the one value that differs between the two requests compared (`probe`) blanked out.
async fn seen(
    api: &Api,
    uri: &str,
    auth: (&str, &str),
    probe: &str,
) -> Result<(StatusCode, Vec<(String, String)>, String), TestError> {
    let request = Request::builder()
        .uri(uri)
        .header(auth.0, auth.1)
        .body(Body::empty())?;
    let (status, headers, body) = send(api, request).await?;
    let mut shown: Vec<(String, String)> = headers
        .iter()
        // The length follows the probe's digits; the request id is new per request.
        .filter(|(name, _)| *name != header::CONTENT_LENGTH && name.as_str() != "x-request-id")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    shown.sort();
    // The request id is new per request, in the body of an error as in its header.
    let id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let body = body.replace(id, "REQUEST_ID");
    Ok((status, shown, blank(&body, probe)))
}

/// `text` with each whole-word occurrence of `probe` (not inside a longer word or number, so
/// run `1` leaves `<h1>` alone) replaced by `PROBE`.
fn blank(text: &str, probe: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(probe) {
        let before = rest[..at].chars().last().or_else(|| out.chars().last());
        let after = rest[at + probe.len()..].chars().next();
        out.push_str(&rest[..at]);
        if word(before) || word(after) {
            out.push_str(probe);
        } else {
            out.push_str("PROBE");
        }
        rest = &rest[at + probe.len()..];
    }
    out.push_str(rest);
    out
}

// Item 1 of the access contract: for every read route of the API (taken from the OpenAPI
// document, so a new documented route cannot skip this) and every page, and for every token
// shape (a one-tenant token, another workspace's owner), what the caller may not see answers
// exactly like what does not exist: status, headers and body.
api_case!(
    invisible_answers_exactly_like_absent_on_every_read_route,
    |api| {
        // A run and a backup set in each acme tenant.
        let mut runs = std::collections::HashMap::new();
        let mut sets = std::collections::HashMap::new();
        for tenant in ["contoso", "fabrikam"] {
            let (_, run) = api
                .post(
                    &format!("/api/tenants/{tenant}/operations"),
                    OWNER,
                    json!({"type": "evidence_snapshot.generate"}),
                )
                .await?;
            runs.insert(tenant, run["id"].as_i64().ok_or("no run id")?.to_string());
            let (_, set) = api
                .post(
                    &format!("/api/tenants/{tenant}/backup-sets"),
                    OWNER,
                    json!({"name": format!("{tenant} set")}),
                )
                .await?;
            sets.insert(tenant, set["id"].as_i64().ok_or("no set id")?.to_string());
        }
        // And one in the other workspace's tenant, invisible to every acme token.
        let (_, run) = api
            .post(
                "/api/tenants/initech/operations",
                OTHER_WORKSPACE,
                json!({"type": "evidence_snapshot.generate"}),
            )
            .await?;
        runs.insert(
            "initech",
            run["id"].as_i64().ok_or("no run id")?.to_string(),
        );
        let absent_run = "987654".to_owned();
        let absent_tenant = "nowhere".to_owned();
        let (_, spec) = api.call("GET", "/api/openapi.json", None, None).await?;
        let mut routes: Vec<String> = spec["paths"]
            .as_object()
            .ok_or("the API document has no paths")?
            .iter()
            // Webhook ids are not run ids: their rule (an endpoint of another workspace answers
            // like none) is checked below.
            .filter(|(path, item)| {
                item.get("get").is_some()
                    && !path.starts_with("/api/webhooks")
                    && (path.contains("{id}") || path.contains("{tenant}"))
            })
            .map(|(path, _)| path.clone())
            .collect();
        // The pages that name a tenant or a run.
        routes.extend([
            "/tenants/{tenant}".to_owned(),
            "/operations/{id}".to_owned(),
        ]);
        assert!(routes.len() >= 9, "too few read routes found: {routes:?}");

        // (token, a tenant it cannot see): the one-tenant operator cannot see fabrikam; no acme
        // role sees globex's initech, and globex's owner sees no acme tenant.
        let shapes = [
            (OPERATOR, "fabrikam"),
            (OTHER_WORKSPACE, "contoso"),
            (OTHER_WORKSPACE, "fabrikam"),
            (OWNER, "initech"),
            (OPERATOR, "initech"),
            (READONLY, "initech"),
        ];
        let mut compared = 0;
        for (token, hidden) in shapes {
            let cookie = login(&api, token).await?;
            for route in &routes {
                let page = !route.starts_with("/api/");
                let bearer = format!("Bearer {token}");
                let auth = if page {
                    (header::COOKIE.as_str(), cookie.as_str())
                } else {
                    (header::AUTHORIZATION.as_str(), bearer.as_str())
                };
                let (invisible, absent, probe_a, probe_b) = if route.contains("{id}") {
                    (
                        route.replace("{id}", &runs[hidden]),
                        route.replace("{id}", &absent_run),
                        runs[hidden].clone(),
                        absent_run.clone(),
                    )
                } else {
                    (
                        route.replace("{tenant}", hidden),
                        route.replace("{tenant}", &absent_tenant),
                        hidden.to_owned(),
                        absent_tenant.clone(),
                    )
                };
                let a = seen(&api, &invisible, auth, &probe_a).await?;
                let b = seen(&api, &absent, auth, &probe_b).await?;
                assert_eq!(
                    a, b,
                    "{route} with {token}: invisible {invisible} differs from absent {absent}"
                );
                assert_eq!(a.0, StatusCode::NOT_FOUND, "{route} with {token}: {}", a.2);
                compared += 1;
            }
        }
        // A webhook endpoint of another workspace answers exactly like none.
        let (status, hook) = api
            .post(
                "/api/webhooks",
                OWNER,
                json!({"url": "https://hooks.example.com/opsrun"}),
            )
            .await?;
        assert_eq!(status, StatusCode::CREATED, "{hook}");
        let hook = hook["id"].as_i64().ok_or("no webhook id")?;
        let auth = format!("Bearer {OTHER_WORKSPACE}");
        let foreign = seen(
            &api,
            &format!("/api/webhooks/{hook}/deliveries"),
            (header::AUTHORIZATION.as_str(), auth.as_str()),
            &hook.to_string(),
        )
        .await?;
        let none = seen(
            &api,
            "/api/webhooks/987654/deliveries",
            (header::AUTHORIZATION.as_str(), auth.as_str()),
            "987654",
        )
        .await?;
        assert_eq!(foreign, none);
        assert_eq!(foreign.0, StatusCode::NOT_FOUND);

        // The backup-set id of a hidden tenant is not a way in either.
        let (status, _) = api
            .get(
                &format!(
                    "/api/tenants/contoso/backup-sets/{}/items",
                    sets["fabrikam"]
                ),
                OWNER,
            )
            .await?;
        assert!(status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(compared, routes.len() * shapes.len());

        // Notifications belong to the user, but a token of that user scoped to one tenant lists
        // only that tenant's.
        for tenant in ["contoso", "fabrikam"] {
            api.post(
                &format!("/api/operations/{}/cancel", runs[tenant]),
                OWNER,
                json!({}),
            )
            .await?;
        }
        let (_, scoped) = api
            .post(
                "/api/tokens",
                OWNER,
                json!({"email": "owner@example.com", "role": "readonly", "tenants": ["contoso"]}),
            )
            .await?;
        let scoped = scoped["token"].as_str().ok_or("no secret")?.to_owned();
        let (_, all) = api.get("/api/notifications", OWNER).await?;
        let (_, mine) = api.get("/api/notifications", &scoped).await?;
        let tenants = |doc: &Value| -> Vec<String> {
            let mut t: Vec<String> = doc["items"]
                .as_array()
                .map(|items| items.iter().map(|n| n["tenant"].to_string()).collect())
                .unwrap_or_default();
            t.sort();
            t
        };
        assert_eq!(tenants(&all), vec!["\"contoso\"", "\"fabrikam\""]);
        assert_eq!(tenants(&mine), vec!["\"contoso\""]);
        Ok(())
    }
);

api_case!(framework_rejections_answer_the_one_error_shape, |api| {
    let raw = |method: &str,
               uri: &str,
               auth: Option<(&str, String)>|
     -> Result<Request<Body>, TestError> {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some((name, value)) = auth {
            request = request.header(name, value);
        }
        Ok(request.body(Body::empty())?)
    };
    let bearer = Some((header::AUTHORIZATION.as_str(), format!("Bearer {OWNER}")));
    let (not_allowed, allow_headers, not_allowed_body) =
        send(&api, raw("DELETE", "/api/operations", bearer.clone())?).await?;
    let (bad_path, bad_path_headers, bad_path_body) =
        send(&api, raw("GET", "/api/operations/%FF", bearer)?).await?;
    let cookie = login(&api, OWNER).await?;
    let session = Some((header::COOKIE.as_str(), cookie.clone()));
    let (page_bad, page_headers, page_body) =
        send(&api, raw("GET", "/operations/%FF", session.clone())?).await?;
    let (page_form, page_form_headers, page_form_body) =
        send(&api, raw("POST", "/operations/1/cancel", session)?).await?;
    let (name_status, name) = api
        .post(
            "/api/tenants/contoso/backup-sets",
            OWNER,
            json!({"name": "invoice\u{202E}fdp.exe"}),
        )
        .await?;

    let json_error = |body: &str| -> Result<Value, TestError> {
        let doc: Value = serde_json::from_str(body)?;
        Ok(doc["error"].clone())
    };
    let content_type = |h: &axum::http::HeaderMap| {
        h.get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(not_allowed, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json_error(&not_allowed_body)?["code"], "method_not_allowed");
    assert!(
        allow_headers.get(header::ALLOW).is_some(),
        "405 keeps Allow"
    );
    assert_eq!(bad_path, StatusCode::BAD_REQUEST);
    assert!(content_type(&bad_path_headers).starts_with("application/json"));
    assert_eq!(json_error(&bad_path_body)?["code"], "bad_request");
    assert!(
        json_error(&bad_path_body)?["message"]
            .as_str()
            .unwrap_or("")
            .chars()
            .count()
            <= 65
    );
    assert_eq!(page_bad, StatusCode::BAD_REQUEST);
    assert!(content_type(&page_headers).starts_with("text/html"));
    assert!(page_body.contains("bad_request"), "{page_body}");
    assert!(page_form.is_client_error(), "{page_form}");
    assert!(
        content_type(&page_form_headers).starts_with("text/html"),
        "{page_form_body}"
    );
    assert_eq!(name_status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(name["error"]["code"], "invalid_name");
    // A 60,000-character policy id is not echoed back whole.
    let (set_status, set) = api
        .post(
            "/api/tenants/contoso/backup-sets",
            OWNER,
            json!({"name": "long ids"}),
        )
        .await?;
    assert_eq!(set_status, StatusCode::CREATED);
    let (long_status, long) = api
        .post(
            "/api/tenants/contoso/operations",
            OWNER,
            json!({"type": "backup_set.add_policies",
                   "params": {"backup_set_id": set["id"], "policy_ids": ["p".repeat(60_000)]}}),
        )
        .await?;
    assert_eq!(long_status, StatusCode::UNPROCESSABLE_ENTITY, "{long}");
    let message = long["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.chars().count() < 200,
        "{} characters",
        message.len()
    );
    Ok(())
});

api_case!(owners_list_and_revoke_tokens_on_the_tokens_page, |api| {
    let (_, issued) = api
        .post(
            "/api/tokens",
            OWNER,
            json!({"email": "temp@example.com", "role": "readonly"}),
        )
        .await?;
    let secret = issued["token"].as_str().ok_or("no secret")?.to_owned();
    let id = issued["id"].as_i64().ok_or("no id")?;
    let cookie = login(&api, OWNER).await?;
    let session = cookie.trim_start_matches("opsrun_session=").to_owned();
    let reader = login(&api, READONLY).await?;
    let get = |cookie: String| {
        Request::builder()
            .uri("/tokens")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
    };
    let (listed, _, list) = send(&api, get(cookie.clone())?).await?;
    let (refused, refused_headers, _) = send(&api, get(reader)?).await?;
    let revoke = Request::builder()
        .method("POST")
        .uri(format!("/tokens/{id}/revoke"))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "csrf={}",
            opsrun_application::auth::csrf_token(&session)
        )))?;
    let (revoked, _, _) = send(&api, revoke).await?;
    let (after, _, after_list) = send(&api, get(cookie)?).await?;
    let (api_after, _) = api.get("/api/operations", &secret).await?;

    assert_eq!(listed, StatusCode::OK);
    assert!(list.contains(&format!("data-token-id=\"{id}\"")), "{list}");
    assert!(list.contains("temp@example.com"));
    assert!(!list.contains(&secret), "the page never shows a secret");
    assert_eq!(refused, StatusCode::FORBIDDEN);
    assert!(
        refused_headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"))
    );
    assert_eq!(revoked, StatusCode::SEE_OTHER);
    assert_eq!(after, StatusCode::OK);
    let row = after_list
        .split("<tr data-token-id=")
        .find(|r| r.starts_with(&format!("\"{id}\"")))
        .ok_or("the revoked token is not listed")?;
    assert!(row.contains(">revoked<"), "{row}");
    assert_eq!(api_after, StatusCode::UNAUTHORIZED);
    Ok(())
});

api_case!(pause_resume_and_retry_answer_by_role_and_state, |api| {
    let id = queued_run(&api).await?;
    let pause = format!("/api/operations/{id}/pause");
    let resume = format!("/api/operations/{id}/resume");
    let retry = format!("/api/operations/{id}/retry");

    let (readonly, r) = api.post(&pause, READONLY, json!({})).await?;
    let (paused, p) = api.post(&pause, OPERATOR, json!({})).await?;
    let (again, a) = api.post(&pause, OPERATOR, json!({})).await?;
    let (_, shown) = api.get(&format!("/api/operations/{id}"), OPERATOR).await?;
    let (resumed, q) = api.post(&resume, OPERATOR, json!({})).await?;
    let (active, act) = api.post(&retry, OPERATOR, json!({})).await?;
    api.post(&format!("/api/operations/{id}/cancel"), OWNER, json!({}))
        .await?;
    let (phased, ph) = api.post(&retry, OPERATOR, json!({})).await?;
    let (completed, c) = api.post(&pause, OPERATOR, json!({})).await?;
    let (absent, _) = api
        .post("/api/operations/999999/retry", OPERATOR, json!({}))
        .await?;
    let (_, evidence) = api
        .post(
            "/api/tenants/contoso/operations",
            OPERATOR,
            json!({"type": "evidence_snapshot.generate"}),
        )
        .await?;
    let evidence = evidence["id"].as_i64().ok_or("no id")?;
    api.post(
        &format!("/api/operations/{evidence}/cancel"),
        OWNER,
        json!({}),
    )
    .await?;
    let (clean, cl) = api
        .post(
            &format!("/api/operations/{evidence}/retry"),
            OPERATOR,
            json!({}),
        )
        .await?;

    assert_eq!((readonly, code(&r)), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(paused, StatusCode::OK);
    assert_eq!(p["progress"]["paused"], true);
    assert!(p["paused_at"].is_string(), "{p}");
    assert_eq!(p["progress"]["rate"], Value::Null);
    assert_eq!(
        (again, a["progress"]["paused"].clone()),
        (StatusCode::OK, json!(true))
    );
    assert_eq!(shown["retried_by"], json!([]));
    assert_eq!(resumed, StatusCode::OK);
    assert_eq!(q["progress"]["paused"], false);
    assert_eq!(q["paused_at"], Value::Null);
    assert_eq!(
        (active, code(&act)),
        (StatusCode::CONFLICT, "not_completed")
    );
    assert_eq!(
        (phased, code(&ph)),
        (StatusCode::UNPROCESSABLE_ENTITY, "not_retryable")
    );
    assert_eq!(
        (completed, code(&c)),
        (StatusCode::CONFLICT, "already_completed")
    );
    assert_eq!(absent, StatusCode::NOT_FOUND);
    assert_eq!(
        (clean, code(&cl)),
        (StatusCode::CONFLICT, "no_failed_items")
    );
    Ok(())
});

api_case!(
    discovery_names_the_caller_its_tenants_types_and_items,
    |api| {
        let (_, me) = api.get("/api/me", OPERATOR).await?;
        let (_, tenants) = api.get("/api/tenants", OPERATOR).await?;
        let (_, all) = api.get("/api/tenants", OWNER).await?;
        let (_, types) = api.get("/api/types", READONLY).await?;
        let (_, set) = api
            .post(
                "/api/tenants/contoso/backup-sets",
                OPERATOR,
                json!({"name": "discover"}),
            )
            .await?;
        let set = set["id"].as_i64().ok_or("no set id")?;
        let (listed, items) = api
            .get(
                &format!("/api/tenants/contoso/backup-sets/{set}/items"),
                OPERATOR,
            )
            .await?;
        let (elsewhere, _) = api
            .get(
                &format!("/api/tenants/fabrikam/backup-sets/{set}/items"),
                OWNER,
            )
            .await?;
        let (absent, _) = api
            .get("/api/tenants/contoso/backup-sets/987654/items", OPERATOR)
            .await?;
        let (anonymous, _) = api.get("/api/me", "").await?;

        assert_eq!(me["role"], "operator");
        assert_eq!(me["workspace"], "acme");
        assert_eq!(me["tenants"], json!(["contoso"]));
        assert_eq!(tenants["items"], json!([{"slug": "contoso"}]));
        assert!(
            all["items"].as_array().is_some_and(|t| t.len() >= 2),
            "{all}"
        );
        let kinds: Vec<&str> = types["items"]
            .as_array()
            .ok_or("no types")?
            .iter()
            .filter_map(|t| t["type"].as_str())
            .collect();
        assert_eq!(kinds.len(), 7, "{kinds:?}");
        let restore = types["items"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "backup_set.restore"))
            .ok_or("no restore")?;
        assert_eq!(restore["mode"], "counted");
        assert_eq!(restore["retryable"], true);
        assert_eq!(restore["params"][0]["name"], "backup_set_id");
        assert_eq!(restore["params"][0]["kind"], "integer");
        assert_eq!(restore["params"][1]["kind"], "integer[]");
        assert_eq!(
            (listed, items["items"].clone()),
            (StatusCode::OK, json!([]))
        );
        assert_eq!(elsewhere, StatusCode::NOT_FOUND);
        assert_eq!(absent, StatusCode::NOT_FOUND);
        assert_eq!(anonymous, StatusCode::UNAUTHORIZED);
        Ok(())
    }
);

api_case!(
    refusals_speak_plain_words_and_list_the_valid_choices,
    |api| {
        let (typo, t) = api
            .post(
                "/api/tenants/contoso/operations",
                OPERATOR,
                json!({"type": "inventory.sync", "prams": {}}),
            )
            .await?;
        let (unknown, u) = api
            .post(
                "/api/tenants/contoso/operations",
                OPERATOR,
                json!({"type": "inventory.snyc"}),
            )
            .await?;

        assert_eq!(
            (typo, code(&t)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
        );
        assert_eq!(
            t["error"]["message"],
            "unknown field 'prams' (expected: type, params)"
        );
        assert_eq!(
            (unknown, code(&u)),
            (StatusCode::UNPROCESSABLE_ENTITY, "unknown_type")
        );
        let message = u["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("valid types: backup_set.add_policies, backup_set.restore"),
            "{message}"
        );
        assert!(!message.contains("Failed to deserialize"), "{message}");
        Ok(())
    }
);

/// The served OpenAPI document passes `openapi-spec-validator` (pip; `tests/run` installs it).
async fn openapi_case(api: Api) -> Result<(), TestError> {
    let (status, doc) = api.get("/api/openapi.json", "").await?;
    assert_eq!(status, StatusCode::OK);
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc)?)?;
    let installed = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        if std::env::var("OPSRUN_REQUIRE_TOOLS").as_deref() == Ok("1") {
            return Err("OPSRUN_REQUIRE_TOOLS=1 but openapi-spec-validator is missing".into());
        }
        #[expect(clippy::print_stderr, reason = "a skipped check must be visible")]
        {
            eprintln!("NOT RUN: openapi-spec-validator is not installed (tests/run installs it)");
        }
        return Ok(());
    }
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()?;
    assert!(
        output.status.success(),
        "the OpenAPI document is invalid:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Closed sets are enums from the domain's lists; the start body is one schema per family.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["RunDoc"]["properties"]["status"]["enum"],
        json!(["queued", "running", "completed"])
    );
    assert_eq!(
        schemas["RunDoc"]["properties"]["outcome"]["enum"],
        json!([
            "pending",
            "succeeded",
            "partially_succeeded",
            "blocked",
            "failed",
            "cancelled"
        ])
    );
    assert_eq!(
        schemas["ProgressDoc"]["properties"]["mode"]["enum"],
        json!(["none", "activity", "counted", "phased", "composite"])
    );
    let starts: Vec<&Value> = schemas["StartBody"]["oneOf"]
        .as_array()
        .ok_or("no oneOf")?
        .iter()
        .map(|v| &v["properties"]["type"]["enum"][0])
        .collect();
    assert_eq!(starts.len(), 7, "{starts:?}");
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
    let list = &doc["paths"]["/api/operations"]["get"]["parameters"];
    let limit = list
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "limit"))
        .ok_or("no limit")?;
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!(1), &json!(200))
    );
    // Every response of every operation says what it means; every operation has a resource tag.
    for (path, item) in doc["paths"].as_object().ok_or("no paths")? {
        for (method, op) in item.as_object().ok_or("no operations")? {
            let tag = op["tags"][0].as_str().unwrap_or_default();
            assert!(
                [
                    "operations",
                    "catalog",
                    "discovery",
                    "notifications",
                    "tokens",
                    "webhooks",
                    "health"
                ]
                .contains(&tag),
                "{method} {path} is tagged '{tag}'"
            );
            for (code, response) in op["responses"].as_object().ok_or("no responses")? {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {code} has no description"
                );
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_is_valid() -> Result<(), TestError> {
    Api::run(opsrun_tests::Backend::Memory, openapi_case).await
}
