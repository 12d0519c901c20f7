//! One event stream per page (and per API client following many runs). A page's stream follows exactly what the page shows (a tenant's
//! activity feed, the Operations collection as filtered, or one run's detail), renders it with
//! the page's own templates, and sends each run's fragment whole when it changes, new runs with
//! their place, and the removal of runs the page no longer shows. A page therefore converges to
//! what a reload shows, whatever it missed: a reconnecting page (`Last-Event-ID`) is sent
//! everything it shows again.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use opsrun_application::read_models::CollectionFilter;
use opsrun_domain::{RunId, Slug};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::pages::views::{CollectionRow, FeedItem, PageRun, RunDetail};
use crate::web::auth::PageCaller;
use crate::web::{ApiError, AppState};

/// Rows of the Operations collection page.
pub const COLLECTION_PAGE: u32 = 25;
/// Runs an API collection stream follows (the first page of `GET /api/operations`).
pub const API_PAGE: u32 = 50;

/// Changes within this window are drawn together (a busy run records many items a second).
const COALESCE: Duration = Duration::from_millis(250);
/// What no notification reaches (another process's writes on SQLite, a stale run, a run
/// leaving the feed's one-minute window) is seen at least this often.
const REREAD: Duration = Duration::from_secs(2);
/// How often a stream re-checks the session behind it.
const RECHECK: Duration = Duration::from_secs(15);

/// What a page shows.
#[derive(Debug, Clone)]
pub enum Follow {
    /// A tenant's activity feed.
    Feed(Slug),
    /// A page of the Operations collection (newest first, below `before` when paging; with a
    /// window, only runs created within that many milliseconds of each read).
    Collection(CollectionFilter, Option<RunId>, Option<i64>),
    /// One run's detail.
    Run(RunId),
}

/// The filter with its time window (if any) ending now: a live page filtered to "the last
/// hour" keeps showing the last hour, as a reload would.
fn windowed(filter: &CollectionFilter, window: Option<i64>) -> CollectionFilter {
    let mut filter = filter.clone();
    if let Some(ms) = window {
        let now = crate::commands::now().as_millis();
        filter.created_since = Some(opsrun_domain::Timestamp::from_millis(now - ms));
    }
    filter
}

/// One rendered view: the id of its element and its HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// The element id (`run-42`, or the empty state's).
    pub id: String,
    /// The element, rendered.
    pub html: String,
}

/// What the page shows now, as fragments in page order, and whether it can no longer change
/// (a completed run's detail). Also the `next` cursor of a collection page.
pub struct Shown {
    /// The fragments, in page order.
    pub fragments: Vec<Fragment>,
    /// Nothing on it can change any more.
    pub done: bool,
    /// The collection's next page.
    pub next: Option<RunId>,
    /// A run detail's family label (its page's title).
    pub label: Option<String>,
}

fn rendered(id: String, page: &impl askama::Template) -> Result<Fragment, ApiError> {
    Ok(versioned(id, page.render().map_err(ApiError::internal)?))
}

/// A fragment whose root element carries `data-v`, a hash of its HTML: the page keeps an
/// element whose version it already shows (a stream's first events repeat what the page
/// rendered) instead of redrawing it, so nothing flickers and no focus is lost.
fn versioned(id: String, html: String) -> Fragment {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    html.hash(&mut hasher);
    // Every fragment starts with its root's start tag; askama escapes `>` in attribute
    // values, so the first `>` ends that tag.
    let html = html
        .trim()
        .replacen('>', &format!(" data-v=\"{:016x}\">", hasher.finish()), 1);
    Fragment { id, html }
}

/// Renders what `follow` shows for `page`'s caller: the one rendering of the page and its
/// stream.
///
/// # Errors
///
/// [`ApiError`] when the caller may not see it, or the store fails.
pub async fn shown(
    state: &AppState,
    page: &PageCaller,
    follow: &Follow,
) -> Result<Shown, ApiError> {
    let families = &state.stack.families;
    let caller = &page.caller;
    match follow {
        Follow::Feed(tenant) => {
            let feed = state.stack.models.activity(caller, tenant).await?;
            let mut fragments = Vec::with_capacity(feed.len().max(1));
            for summary in &feed {
                let r = PageRun::of(summary, families);
                fragments.push(rendered(format!("run-{}", r.id), &FeedItem { r: &r })?);
            }
            if fragments.is_empty() {
                fragments.push(versioned(
                    "feed-empty".to_owned(),
                    "<li id=\"feed-empty\" class=\"empty\">No operation is running, and none \
                     finished in the last minute.</li>"
                        .to_owned(),
                ));
            }
            Ok(Shown {
                fragments,
                done: false,
                next: None,
                label: None,
            })
        }
        Follow::Collection(filter, before, window) => {
            let runs = state
                .stack
                .models
                .collection(caller, windowed(filter, *window), COLLECTION_PAGE, *before)
                .await?;
            let mut fragments = Vec::with_capacity(runs.items.len().max(1));
            for summary in &runs.items {
                let r = PageRun::of(summary, families);
                fragments.push(rendered(format!("run-{}", r.id), &CollectionRow { r: &r })?);
            }
            if fragments.is_empty() {
                fragments.push(versioned(
                    "runs-empty".to_owned(),
                    "<tr id=\"runs-empty\" class=\"empty\"><td colspan=\"6\">No operation \
                     matches.</td></tr>"
                        .to_owned(),
                ));
            }
            Ok(Shown {
                fragments,
                done: false,
                next: runs.next_cursor,
                label: None,
            })
        }
        Follow::Run(id) => {
            let detail = state.stack.models.detail(caller, *id).await?;
            let csrf = opsrun_application::auth::csrf_token(&page.session);
            // The failed items by what a person calls them (a policy's name for a backup
            // item); names are decoration: without params or names, the keys show alone.
            let keys: Vec<_> = detail.failed_items.iter().map(|(k, _)| k.clone()).collect();
            let names = match state.stack.queries.run_params(*id).await {
                Ok(params) => {
                    families
                        .item_names(&detail.summary.run, &params, &keys)
                        .await
                }
                Err(_) => std::collections::BTreeMap::new(),
            };
            let results = if detail.summary.run.is_completed() {
                families.results(&detail.summary.run).await
            } else {
                Vec::new()
            };
            let mut body = RunDetail::of(&detail, &names, caller.role, &csrf, families);
            body.results = results;
            // A completed run can still be retried (its failed items), and its page then says
            // by which run: such a page keeps following; any other completed run is final.
            let run = &detail.summary.run;
            let retry_possible = families.is_retryable(run.operation_type())
                && run.counts().get_or_zero(opsrun_domain::SummaryKey::Failed) > 0;
            let done = run.is_completed() && !retry_possible;
            Ok(Shown {
                label: Some(body.r.label.clone()),
                fragments: vec![rendered(format!("run-{}", id.value()), &body)?],
                done,
                next: None,
            })
        }
    }
}

/// Who a stream is for, and so how it speaks: a page gets rendered fragments, an API client
/// run documents.
#[derive(Debug, Clone)]
pub enum Wire {
    /// A page of a session: `put` events with HTML fragments.
    Page(PageCaller),
    /// An API client: `progress` events with run documents, `removed` when a run leaves what
    /// the stream follows, and `synced` once the first full state is sent.
    Api(opsrun_application::access::Caller),
}

impl Wire {
    fn caller(&self) -> &opsrun_application::access::Caller {
        match self {
            Self::Page(page) => &page.caller,
            Self::Api(caller) => caller,
        }
    }
}

/// The run documents `follow` shows (each with its run id as the fragment id).
async fn documents(
    state: &AppState,
    caller: &opsrun_application::access::Caller,
    follow: &Follow,
) -> Result<Shown, ApiError> {
    use crate::web::api::dto::RunDoc;
    let (summaries, done) = match follow {
        Follow::Feed(tenant) => (state.stack.models.activity(caller, tenant).await?, false),
        Follow::Collection(filter, before, window) => {
            let page = state
                .stack
                .models
                .collection(caller, windowed(filter, *window), API_PAGE, *before)
                .await?;
            (page.items, false)
        }
        Follow::Run(id) => {
            let summary = state.stack.models.run(caller, *id).await?;
            let done = summary.run.is_completed();
            (vec![summary], done)
        }
    };
    let fragments = summaries
        .iter()
        .map(|s| {
            let doc = RunDoc::new(s, false);
            Fragment {
                id: doc.id.to_string(),
                html: serde_json::to_string(&doc).unwrap_or_default(),
            }
        })
        .collect();
    Ok(Shown {
        fragments,
        done,
        next: None,
        label: None,
    })
}

/// The stream: for a page, `put` events (`{"id", "html", "after"}` to place a fragment,
/// `{"remove"}` to drop one), then `end` once nothing can change (a completed run's detail, a
/// session that ended, a server that stops); for the API, as [`Wire::Api`] says.
pub fn stream(state: AppState, wire: Wire, follow: Follow) -> impl IntoResponse {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let _client = super::metrics::StreamClient::open();
        // A closed page ends the task at its next wait; send errors mean the same.
        let _ = follow_page(&state, &wire, &follow, &tx).await;
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}

type Sender = mpsc::Sender<Result<Event, Infallible>>;

async fn send(tx: &Sender, seq: &mut u64, event: &str, data: String) -> Result<(), ()> {
    *seq += 1;
    let event = Event::default().event(event).id(seq.to_string()).data(data);
    tx.send(Ok(event)).await.map_err(|_| ())
}

async fn follow_page(
    state: &AppState,
    wire: &Wire,
    follow: &Follow,
    tx: &Sender,
) -> Result<(), ()> {
    let mut receiver = state.stack.events.subscribe();
    let mut sent: HashMap<String, String> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut seq = 0_u64;
    let mut synced = false;
    let mut checked = tokio::time::Instant::now();
    let end = "end";
    let put = match wire {
        Wire::Page(_) => "put",
        Wire::Api(_) => "progress",
    };
    loop {
        if checked.elapsed() >= RECHECK {
            checked = tokio::time::Instant::now();
            if let Ok(false) = state.stack.authenticate.still_valid(wire.caller()).await {
                let event = match wire {
                    Wire::Page(_) => end,
                    Wire::Api(_) => "unauthorized",
                };
                let reason =
                    r#"{"reason":"the token or session behind this stream is no longer valid"}"#;
                return send(tx, &mut seq, event, reason.into()).await;
            }
        }
        let now = match wire {
            Wire::Page(page) => shown(state, page, follow).await,
            Wire::Api(caller) => documents(state, caller, follow).await,
        };
        // What the caller may no longer see (a run, a tenant) ends the stream; any other failed
        // read (a store hiccup) keeps what is shown and tries again later.
        if let Err(e) = &now
            && matches!(
                e.status(),
                axum::http::StatusCode::NOT_FOUND | axum::http::StatusCode::FORBIDDEN
            )
        {
            return send(tx, &mut seq, end, r#"{"reason":"not visible"}"#.into()).await;
        }
        if let Ok(now) = now {
            let ids: Vec<String> = now.fragments.iter().map(|f| f.id.clone()).collect();
            for (i, fragment) in now.fragments.into_iter().enumerate() {
                if sent.get(&fragment.id) == Some(&fragment.html) {
                    continue;
                }
                let data = match wire {
                    Wire::Page(_) => {
                        let after = i.checked_sub(1).map(|j| ids[j].clone());
                        serde_json::json!({"id": fragment.id, "html": fragment.html, "after": after})
                            .to_string()
                    }
                    Wire::Api(_) => fragment.html.clone(),
                };
                send(tx, &mut seq, put, data).await?;
                sent.insert(fragment.id, fragment.html);
            }
            for gone in order.iter().filter(|id| !ids.contains(id)) {
                sent.remove(gone);
                let (event, data) = match wire {
                    Wire::Page(_) => ("put", serde_json::json!({ "remove": gone })),
                    Wire::Api(_) => (
                        "removed",
                        serde_json::json!({ "id": gone.parse::<i64>().unwrap_or_default() }),
                    ),
                };
                send(tx, &mut seq, event, data.to_string()).await?;
            }
            if !synced {
                match wire {
                    // A page that reconnects may hold views that left meanwhile: the first
                    // state says which ids are all there is, and the page drops the others.
                    Wire::Page(_) => {
                        let data = serde_json::json!({ "only": ids }).to_string();
                        send(tx, &mut seq, "put", data).await?;
                    }
                    // The client now holds everything the stream follows (as a Kubernetes
                    // watch's initial-events-end bookmark says); after a reconnect, whatever it
                    // holds that was not sent again is gone.
                    Wire::Api(_) => {
                        let data = serde_json::json!({ "count": ids.len() }).to_string();
                        send(tx, &mut seq, "synced", data).await?;
                    }
                }
            }
            synced = true;
            order = ids;
            if now.done {
                return send(tx, &mut seq, end, r#"{"reason":"completed"}"#.into()).await;
            }
        }
        // Wait for a change the page may show, the periodic re-read, the page closing, or the
        // server stopping.
        let deadline = tokio::time::sleep(REREAD);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = tx.closed() => return Err(()),
                () = state.shutting_down() => {
                    // A page is not told to stop following: its EventSource reconnects to the
                    // next server by itself.
                    let event = match wire {
                        Wire::Page(_) => "restart",
                        Wire::Api(_) => "shutdown",
                    };
                    let reason = r#"{"reason":"the server is shutting down; reconnect to follow"}"#;
                    return send(tx, &mut seq, event, reason.into()).await;
                }
                () = &mut deadline => break,
                changed = receiver.recv() => match (changed, follow) {
                    (Ok(id), Follow::Run(followed)) if id != *followed => {}
                    (Err(tokio::sync::broadcast::error::RecvError::Closed), _) => {
                        // No notifications (a state without a server): re-read on the clock.
                        (&mut deadline).await;
                        break;
                    }
                    _ => {
                        tokio::time::sleep(COALESCE).await;
                        break;
                    }
                },
            }
        }
    }
}
