//! Wire types of the HTTP API (serde + OpenAPI schemas). Domain and application types never
//! derive serde; they are mapped here.

use std::collections::BTreeMap;

use opsrun_application::read_models::{Page, RunSummary};
use opsrun_domain::{ItemKey, LedgerEntry, ProgressDetail, ProgressView, RunId, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An instant as RFC 3339 UTC with milliseconds.
#[must_use]
pub fn rfc3339(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(t.as_millis()).map_or_else(String::new, |d| {
        d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    })
}

/// An error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "unknown_backup_set",
    "message": "backup set 9 does not exist in tenant 'contoso'", "request_id": "5f0c2a9e1b7d4c36"}}))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `unknown_backup_set`.
    pub code: String,
    /// A sentence a person understands.
    pub message: String,
    /// The request's id (as in the `x-request-id` header), to quote when reporting it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The current phase of a phased view.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhaseDoc {
    /// 1-based index.
    pub index: usize,
    /// Number of phases.
    pub count: usize,
    /// Phase key.
    pub key: String,
    /// Phase label.
    pub label: String,
}

/// One component of a composite view.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentDoc {
    /// Component key.
    pub key: String,
    /// Component label.
    pub label: String,
    /// `pending`, `active` or `done`.
    pub state: String,
    /// The component's own progress.
    #[schema(no_recursion)]
    pub progress: ProgressDoc,
}

/// A progress view: what a surface shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressDoc {
    /// `none`, `activity`, `counted`, `phased` or `composite`.
    pub mode: String,
    /// Units processed (counted; activity when known).
    pub processed: Option<u64>,
    /// Units in the frozen work set (counted only).
    pub total: Option<u64>,
    /// floor(100 × processed / total) (counted only).
    pub percent: Option<u8>,
    /// The current phase (phased only).
    pub phase: Option<PhaseDoc>,
    /// The components (composite only).
    pub components: Option<Vec<ComponentDoc>>,
    /// Index of the active component (composite only).
    pub current: Option<usize>,
    /// The counts break an invariant: never shown as a bar.
    pub anomaly: bool,
    /// Where the total came from.
    pub basis: Option<String>,
    /// Running, but no sign of life within the stale threshold (never while paused).
    pub stale: bool,
    /// An operator paused the run: its numbers hold, nothing new starts.
    pub paused: bool,
    /// Items per second over the recent window of records: an estimate, present only on a
    /// counted view (or counted component) of a running, unpaused, fresh run with enough
    /// evidence (at least 5 of its last 100 records over at least 3 s in the last 30 s, or
    /// all 100 over at least 1 s).
    pub rate: Option<f64>,
    /// Seconds left at `rate`, rounded up (0 only when nothing is left); an estimate, present
    /// exactly when `rate` is.
    pub eta_seconds: Option<u64>,
    /// Why a queued run has not started (its tenant's concurrency limit), when it waits.
    pub waiting_reason: Option<String>,
    /// `rate` and `eta_seconds` in the words every surface shows, e.g. "about 40 s left ·
    /// 2.5/s" (present exactly when they are).
    pub estimate: Option<String>,
}

impl From<&ProgressView> for ProgressDoc {
    fn from(view: &ProgressView) -> Self {
        Self {
            mode: view.mode().key().to_owned(),
            processed: view.processed(),
            total: view.total(),
            percent: view.percent(),
            phase: view.phase().map(|p| PhaseDoc {
                index: p.index,
                count: p.count,
                key: p.key.clone(),
                label: p.label.clone(),
            }),
            components: match &view.detail {
                ProgressDetail::Composite { components, .. } => Some(
                    components
                        .iter()
                        .map(|c| ComponentDoc {
                            key: c.key.clone(),
                            label: c.label.clone(),
                            state: c.state.key().to_owned(),
                            progress: ProgressDoc::from(&c.progress),
                        })
                        .collect(),
                ),
                _ => None,
            },
            current: view.current(),
            anomaly: view.anomaly,
            basis: view.basis.clone(),
            stale: view.stale,
            paused: view.paused,
            // Two decimals: an estimate does not need more, and the document stays stable.
            rate: view.pace.map(|p| (p.rate() * 100.0).round() / 100.0),
            eta_seconds: view.pace.map(|p| p.eta_seconds),
            waiting_reason: view.waiting.clone(),
            estimate: view
                .pace
                .as_ref()
                .map(opsrun_application::read_models::eta_phrase),
        }
    }
}

/// A failure line of a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailureDoc {
    /// Stable reason code.
    pub code: String,
    /// A sentence.
    pub message: String,
}

/// A fan-out's child jobs, apart from its item counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChildrenDoc {
    /// Child jobs enqueued (each carries a chunk of the parent's items).
    pub total: u64,
    /// Child jobs finished; never more than `total`.
    pub completed: u64,
}

/// The run document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 42, "type": "backup_set.restore", "tenant": "contoso", "status": "running",
    "outcome": "pending",
    "summary_counts": {"total": 120, "processed": 37, "succeeded": 35, "failed": 2},
    "progress": {"mode": "counted", "processed": 37, "total": 120, "percent": 30,
        "phase": null, "components": null, "current": null, "anomaly": false,
        "basis": "120 selected backup items", "stale": false, "paused": false, "rate": 4.2,
        "eta_seconds": 20, "waiting_reason": null, "estimate": "about 20 s left · 4.2/s"},
    "parent_id": null, "initiator": "ops@example.com",
    "created_at": "2026-12-05T09:30:00.000Z", "started_at": "2026-12-05T09:30:00.120Z",
    "completed_at": null,
    "failures": [{"code": "restore.item_failed", "message": "2 items failed to restore"}],
    "paused_at": null, "waiting_reason": null, "retry_of": null,
    "children": {"total": 2, "completed": 0},
    "view_url": "/operations/42", "reused": false
}))]
pub struct RunDoc {
    /// Run id.
    pub id: i64,
    /// Operation type key.
    #[serde(rename = "type")]
    pub operation_type: String,
    /// Tenant slug.
    pub tenant: String,
    /// `queued`, `running` or `completed`.
    pub status: String,
    /// `pending` until completed; then the outcome.
    pub outcome: String,
    /// Only the summary keys that are set.
    pub summary_counts: BTreeMap<String, u64>,
    /// The progress view.
    pub progress: ProgressDoc,
    /// The parent run.
    pub parent_id: Option<i64>,
    /// The initiator's e-mail.
    pub initiator: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub started_at: Option<String>,
    /// RFC 3339 UTC.
    pub completed_at: Option<String>,
    /// Failure summary lines.
    pub failures: Vec<FailureDoc>,
    /// RFC 3339 UTC: when an operator paused it; `null` while not paused.
    pub paused_at: Option<String>,
    /// Why a queued run has not started (its tenant's concurrency limit); the same sentence
    /// as `progress.waiting_reason`.
    pub waiting_reason: Option<String>,
    /// The completed run whose failed items this run retries.
    pub retry_of: Option<i64>,
    /// A fan-out's child jobs, apart from the item counts (present on fan-out parents once
    /// their children are enqueued).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<ChildrenDoc>,
    /// The runs started as retries of this run's failed items, oldest first (in the document
    /// of one run; absent from lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retried_by: Option<Vec<i64>>,
    /// The one place to view the run.
    pub view_url: String,
    /// Whether a start request returned an already active run.
    pub reused: bool,
}

impl RunDoc {
    /// The document of a run summary.
    #[must_use]
    pub fn new(summary: &RunSummary, reused: bool) -> Self {
        let run = &summary.run;
        Self {
            id: run.id().value(),
            operation_type: run.operation_type().key().to_owned(),
            tenant: summary.tenant.to_string(),
            status: run.status().key().to_owned(),
            outcome: run.outcome().key().to_owned(),
            summary_counts: run
                .counts()
                .iter()
                .map(|(k, v)| (k.key().to_owned(), v))
                .collect(),
            progress: ProgressDoc::from(&summary.progress),
            parent_id: run.parent().map(|p| p.value()),
            initiator: summary.initiator.clone(),
            created_at: rfc3339(run.created_at()),
            started_at: run.started_at().map(rfc3339),
            completed_at: run.completed_at().map(rfc3339),
            failures: run
                .failures()
                .iter()
                .map(|f| FailureDoc {
                    code: f.code.to_string(),
                    message: f.message.clone(),
                })
                .collect(),
            paused_at: run.paused_at().filter(|_| run.is_paused()).map(rfc3339),
            waiting_reason: summary.progress.waiting.clone(),
            retry_of: run.retry_of().map(|r| r.value()),
            children: run.children().map(|c| ChildrenDoc {
                total: c.total,
                completed: c.completed,
            }),
            retried_by: summary
                .retried_by
                .as_ref()
                .map(|ids| ids.iter().map(|r| r.value()).collect()),
            view_url: summary.view_url.clone(),
            reused,
        }
    }
}

/// A page of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunPage {
    /// The runs, newest first.
    pub items: Vec<RunDoc>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl RunPage {
    /// The document of a page of the collection (the API's and `ops list -o json`'s).
    #[must_use]
    pub fn of(page: &Page<RunSummary, RunId>) -> Self {
        Self {
            items: page.items.iter().map(|s| RunDoc::new(s, false)).collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        }
    }
}

/// A list of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// The runs, newest first.
    pub items: Vec<RunDoc>,
}

/// A ledger entry of a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemDoc {
    /// The item key.
    pub item_key: String,
    /// `succeeded`, `failed` or `skipped`.
    pub outcome: String,
    /// Reason code, if any.
    pub reason: Option<String>,
    /// RFC 3339 UTC.
    pub recorded_at: String,
}

impl ItemPage {
    /// The document of a page of a run's items (the API's and `ops items -o json`'s).
    #[must_use]
    pub fn of(page: &Page<(ItemKey, LedgerEntry), ItemKey>) -> Self {
        Self {
            items: page
                .items
                .iter()
                .map(|(key, entry)| ItemDoc {
                    item_key: key.to_string(),
                    outcome: entry.outcome.key().to_owned(),
                    reason: entry.reason.as_ref().map(ToString::to_string),
                    recorded_at: rfc3339(entry.recorded_at),
                })
                .collect(),
            next_cursor: page.next_cursor.as_ref().map(ToString::to_string),
        }
    }
}

/// A page of ledger entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemPage {
    /// The entries, by item key.
    pub items: Vec<ItemDoc>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A terminal notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationDoc {
    /// Id.
    pub id: i64,
    /// The run.
    pub run_id: i64,
    /// The run's type.
    #[serde(rename = "type")]
    pub operation_type: String,
    /// The run's tenant slug.
    pub tenant: String,
    /// The run's outcome.
    pub outcome: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Whether it was read.
    pub read: bool,
}

/// The caller's notifications.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    /// Newest first.
    pub items: Vec<NotificationDoc>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Start an operation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The operation type key.
    #[serde(rename = "type")]
    pub operation_type: String,
    /// The type's parameters (see the API guide).
    #[schema(value_type = Object)]
    pub params: Option<serde_json::Value>,
}

/// One readiness check.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckDoc {
    /// Whether it passed.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// Readiness: `ready` only when every check passed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessDoc {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Each check by name (`store`, `workers`).
    pub checks: std::collections::BTreeMap<String, CheckDoc>,
}

/// Create a backup set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupSetBody {
    /// 1 to 100 characters of visible text once surrounding whitespace is trimmed: no control,
    /// bidirectional-override or zero-width characters (the pattern says exactly which).
    #[schema(
        example = "nightly",
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000-\u0020\u007f-\u00a0\u061c\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u2069\u3000\ufeff]([^\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]{0,98}[^\u0000-\u0020\u007f-\u00a0\u061c\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u2069\u3000\ufeff])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub name: String,
}

/// A backup set.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupSetDoc {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Items it holds.
    pub item_count: u64,
}

/// Backup sets of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupSetList {
    /// Oldest first.
    pub items: Vec<BackupSetDoc>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A baseline.
#[derive(Debug, Serialize, ToSchema)]
pub struct BaselineDoc {
    /// Id.
    pub id: i64,
    /// The run that captured it.
    pub run_id: i64,
    /// Policies it holds.
    pub item_count: u64,
}

/// Baselines of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct BaselineList {
    /// Oldest first.
    pub items: Vec<BaselineDoc>,
}

/// A policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyDoc {
    /// Id.
    pub id: String,
    /// Policy type key.
    #[serde(rename = "type")]
    pub policy_type: String,
    /// Name.
    pub name: String,
}

/// Policies of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyList {
    /// In provider order.
    pub items: Vec<PolicyDoc>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// An API token as its workspace's owners see it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenDoc {
    /// Its id (`DELETE /api/tokens/{id}` revokes it).
    pub id: i64,
    /// The e-mail of the user it stands for.
    pub user: String,
    /// `readonly`, `operator` or `owner`.
    pub role: String,
    /// The tenant slugs it may see; `null`: every tenant.
    pub tenants: Option<Vec<String>>,
    /// When it was issued.
    pub created_at: String,
    /// When it stops working; `null`: until revoked.
    pub expires_at: Option<String>,
    /// When it was last used (to the minute).
    pub last_used_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

impl TokenDoc {
    /// The document of a token record: `status` as [`ManageTokens::status`] says it, and the
    /// slugs of the tenants it is limited to (`None`: every tenant).
    ///
    /// [`ManageTokens::status`]: opsrun_application::admin::ManageTokens::status
    #[must_use]
    pub fn new(
        record: &opsrun_application::ports::TokenRecord,
        status: &str,
        tenants: Option<Vec<String>>,
    ) -> Self {
        Self {
            id: record.id.0,
            user: record.email.clone(),
            role: record.role.key().to_owned(),
            tenants,
            created_at: rfc3339(record.created_at),
            expires_at: record.expires_at.map(rfc3339),
            last_used_at: record.last_used_at.map(rfc3339),
            revoked_at: record.revoked_at.map(rfc3339),
            status: status.to_owned(),
        }
    }
}

/// A workspace's tokens, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// The tokens.
    pub items: Vec<TokenDoc>,
}

/// Issue a token for a user of the caller's workspace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The user's e-mail (created if missing): an `@` and no whitespace once trimmed, at most
    /// 254 bytes.
    #[schema(
        example = "ops@example.com",
        max_length = 254,
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*@[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub email: String,
    /// `readonly`, `operator` or `owner`.
    #[schema(example = "operator")]
    pub role: String,
    /// Tenant slugs it may see; absent, null or empty: every tenant.
    pub tenants: Option<Vec<String>>,
    /// Lifetime in days (1 to 3660); absent or null: until revoked.
    #[schema(minimum = 1, maximum = 3660)]
    pub expires_in_days: Option<u32>,
}

/// A token just issued: `token` is its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedTokenDoc {
    /// The secret.
    pub token: String,
    /// The token as listed.
    #[serde(flatten)]
    pub doc: TokenDoc,
}
