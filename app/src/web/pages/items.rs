//! A run's items, as many as it has: a page of 50 by key with a filter by outcome and the
//! position ("Showing 101–200 of 981 failed items"), named by the family where it names them,
//! and the whole list as CSV.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use opsrun_domain::{ItemKey, ItemOutcome, RunId, SummaryKey};

use super::{Chrome, chrome, html, to_login};
use crate::web::api::dto::rfc3339;
use crate::web::api::handlers::run_id;
use crate::web::auth::PageCaller;
use crate::web::{ApiError, AppState};

/// Items on one page.
const PER_PAGE: u32 = 50;
/// Items read at a time for the CSV.
const CSV_BATCH: u32 = 200;

#[derive(Debug, Clone)]
struct Row {
    name: Option<String>,
    key: String,
    outcome: String,
    reason: String,
    at: String,
    at_words: String,
}

#[derive(Template)]
#[template(path = "items.html")]
struct ItemsPage {
    chrome: Chrome,
    id: i64,
    label: String,
    /// `(query, label, current)` of each filter.
    filters: Vec<(String, String, bool)>,
    outcome: String,
    query: String,
    rows: Vec<Row>,
    first: u64,
    last: u64,
    of: u64,
    per_page: u32,
    next: Option<String>,
}

/// The outcome filter of the query (`None`: every item); an unknown one is refused.
fn outcome(params: &HashMap<String, String>) -> Result<Option<ItemOutcome>, ApiError> {
    match params.get("outcome").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(text) => ItemOutcome::parse(text).map(Some).map_err(|_| {
            ApiError::Invalid(
                "invalid_parameter",
                "outcome must be succeeded, failed or skipped".into(),
            )
        }),
    }
}

/// What the family calls these keys of the run (empty when it names none).
async fn names(
    state: &AppState,
    page: &PageCaller,
    id: RunId,
    keys: &[ItemKey],
) -> BTreeMap<ItemKey, String> {
    let (Ok(summary), Ok(params)) = (
        state.stack.models.run(&page.caller, id).await,
        state.stack.queries.run_params(id).await,
    ) else {
        return BTreeMap::new();
    };
    state
        .stack
        .families
        .item_names(&summary.run, &params, keys)
        .await
}

/// `GET /operations/{id}/items?outcome=&cursor=`.
pub(super) async fn page(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Ok(page) = page else {
        return to_login();
    };
    let result = async {
        let id = run_id(&id)?;
        let outcome = outcome(&params)?;
        let after = match params.get("cursor").map(String::as_str) {
            None | Some("") => None,
            Some(text) => Some(ItemKey::parse(text).map_err(|_| {
                ApiError::Invalid("invalid_parameter", "not a valid cursor".into())
            })?),
        };
        let summary = state.stack.models.run(&page.caller, id).await?;
        let items = state
            .stack
            .models
            .items(&page.caller, id, outcome, PER_PAGE, after.clone())
            .await?;
        // The position of this page: the link to it says how many came before (a hand-made
        // link can only mislabel its own page, never change what is listed).
        let before = params
            .get("from")
            .and_then(|f| f.parse::<u64>().ok())
            .filter(|_| after.is_some())
            .unwrap_or(0);
        let counts = summary.run.counts();
        let of = match outcome {
            None => counts.get_or_zero(SummaryKey::Processed),
            Some(ItemOutcome::Succeeded) => counts.get_or_zero(SummaryKey::Succeeded),
            Some(ItemOutcome::Failed) => counts.get_or_zero(SummaryKey::Failed),
            Some(ItemOutcome::Skipped) => counts.get_or_zero(SummaryKey::Skipped),
        };
        let keys: Vec<ItemKey> = items.items.iter().map(|(k, _)| k.clone()).collect();
        let named = names(&state, &page, id, &keys).await;
        let rows: Vec<Row> = items
            .items
            .iter()
            .map(|(key, entry)| Row {
                name: named.get(key).cloned(),
                key: key.to_string(),
                outcome: entry.outcome.key().to_owned(),
                reason: entry
                    .reason
                    .as_ref()
                    .map_or("-".to_owned(), ToString::to_string),
                at: rfc3339(entry.recorded_at),
                at_words: super::views::utc_words(entry.recorded_at),
            })
            .collect();
        let filter_query =
            |o: Option<ItemOutcome>| o.map_or(String::new(), |o| format!("?outcome={}", o.key()));
        let query = filter_query(outcome);
        let mut filters = vec![(String::new(), "All".to_owned(), outcome.is_none())];
        for o in ItemOutcome::ALL {
            let label = crate::render::words(o.key());
            filters.push((filter_query(Some(o)), label, outcome == Some(o)));
        }
        let next = items.next_cursor.map(|c| {
            let sep = if query.is_empty() { "?" } else { "&" };
            format!(
                "{query}{sep}cursor={}&from={}",
                urlencode(c.as_str()),
                before.saturating_add(u64::from(PER_PAGE))
            )
        });
        Ok::<_, ApiError>(ItemsPage {
            chrome: Chrome::default(),
            id: id.value(),
            label: state.stack.families.label(summary.run.operation_type()),
            filters,
            outcome: outcome.map(|o| o.key().to_owned()).unwrap_or_default(),
            query,
            first: before.saturating_add(1),
            last: before.saturating_add(rows.len() as u64),
            of: of.max(before.saturating_add(rows.len() as u64)),
            rows,
            per_page: PER_PAGE,
            next,
        })
    }
    .await;
    match result {
        Ok(mut shown) => {
            shown.chrome = chrome(&state, &page).await;
            html(&shown)
        }
        Err(e) => e.into_response(),
    }
}

/// A CSV cell a spreadsheet shows as text: one that would start a formula (`=`, `+`, `-`,
/// `@`, a tab or a carriage return, as OWASP lists them) is prefixed with `'`. Names and
/// reasons come from providers, and an export must not run what they say.
fn cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// A query value, percent-encoded.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `GET /operations/{id}/items.csv?outcome=`: every item (of that outcome) as CSV:
/// `item_key,name,outcome,reason,recorded_at`.
pub(super) async fn csv(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let page = match page {
        Ok(page) => page,
        Err(e) => return e.into_response(),
    };
    let result = async {
        let id = run_id(&id)?;
        let outcome = outcome(&params)?;
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer
            .write_record(["item_key", "name", "outcome", "reason", "recorded_at"])
            .map_err(ApiError::internal)?;
        let mut after = None;
        loop {
            let items = state
                .stack
                .models
                .items(&page.caller, id, outcome, CSV_BATCH, after)
                .await?;
            let keys: Vec<ItemKey> = items.items.iter().map(|(k, _)| k.clone()).collect();
            let named = names(&state, &page, id, &keys).await;
            for (key, entry) in &items.items {
                let reason = entry
                    .reason
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                writer
                    .write_record([
                        cell(key.as_str()),
                        cell(named.get(key).map_or("", String::as_str)),
                        entry.outcome.key().to_owned(),
                        cell(&reason),
                        rfc3339(entry.recorded_at),
                    ])
                    .map_err(ApiError::internal)?;
            }
            match items.next_cursor {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        writer.into_inner().map_err(ApiError::internal)
    }
    .await;
    match result {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"operation-{id}-items.csv\""),
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /operations/{id}/artifact`: the file the completed run produced (a review pack).
pub(super) async fn artifact(
    State(state): State<AppState>,
    page: Result<PageCaller, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let page = match page {
        Ok(page) => page,
        Err(e) => return e.into_response(),
    };
    let result = async {
        let id = run_id(&id)?;
        let summary = state.stack.models.run(&page.caller, id).await?;
        let results = state.stack.families.results(&summary.run).await;
        let location = results
            .into_iter()
            .find_map(|r| r.file)
            .ok_or_else(|| ApiError::NotFound(format!("a file of operation {id}")))?;
        let path = std::path::PathBuf::from(&location);
        let body = tokio::fs::read(&path)
            .await
            .map_err(|_| ApiError::NotFound(format!("the file of operation {id}")))?;
        let name = path.file_name().map_or_else(
            || format!("operation-{id}"),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok::<_, ApiError>((name, body))
    }
    .await;
    match result {
        Ok((name, body)) => (
            [
                (
                    header::CONTENT_TYPE,
                    "text/markdown; charset=utf-8".to_owned(),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_that_would_start_a_formula_are_text() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("@sum"), "'@sum");
        assert_eq!(
            cell("Policy 12 (compliance_policy)"),
            "Policy 12 (compliance_policy)"
        );
    }
}
