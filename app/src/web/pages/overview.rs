//! The workspace overview: every tenant the caller sees, with what runs now, what waits, what
//! failed in the last 24 hours and what shows no sign of life.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use opsrun_application::read_models::{CollectionFilter, MAX_PAGE};
use opsrun_domain::{RunOutcome, RunStatus, Timestamp};

use super::{Chrome, chrome, html, to_login};
use crate::web::auth::PageCaller;
use crate::web::{ApiError, AppState};

/// Failures of runs created this recently count (the collection's `since=24h`).
const FAILED_WINDOW_MS: i64 = 24 * 3_600_000;

#[derive(Debug, Clone)]
struct Row {
    slug: String,
    running: usize,
    queued: usize,
    /// More than one page of active runs: the numbers are lower bounds.
    capped: bool,
    failed: usize,
    /// More than one page of failures.
    failed_capped: bool,
    stale: usize,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    rows: Vec<Row>,
}

/// `GET /overview`.
pub(super) async fn page(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    let caller = &page.caller;
    let models = &state.stack.models;
    let result = async {
        let mut rows = Vec::new();
        let now = crate::commands::now();
        for tenant in state.stack.catalog.tenants(caller).await? {
            let of = |status, outcome, created_since| CollectionFilter {
                tenant: Some(tenant.slug.clone()),
                status,
                outcome,
                created_since,
                ..CollectionFilter::default()
            };
            let running = models
                .collection(
                    caller,
                    of(Some(RunStatus::Running), None, None),
                    MAX_PAGE,
                    None,
                )
                .await?;
            let queued = models
                .collection(
                    caller,
                    of(Some(RunStatus::Queued), None, None),
                    MAX_PAGE,
                    None,
                )
                .await?;
            // The same query as the collection's link below, so both say the same number.
            let day_ago = Timestamp::from_millis(now.as_millis() - FAILED_WINDOW_MS);
            let failed = models
                .collection(
                    caller,
                    of(None, Some(RunOutcome::Failed), Some(day_ago)),
                    MAX_PAGE,
                    None,
                )
                .await?;
            rows.push(Row {
                slug: tenant.slug.to_string(),
                running: running.items.len(),
                queued: queued.items.len(),
                capped: running.next_cursor.is_some() || queued.next_cursor.is_some(),
                failed: failed.items.len(),
                failed_capped: failed.next_cursor.is_some(),
                stale: running.items.iter().filter(|s| s.progress.stale).count(),
            });
        }
        Ok::<_, ApiError>(rows)
    }
    .await;
    match result {
        Ok(rows) => html(&OverviewPage {
            chrome: chrome(&state, &page).await,
            rows,
        }),
        Err(e) => e.into_response(),
    }
}
