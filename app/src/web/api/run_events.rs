//! One run's live progress (`GET /api/operations/{id}/events`). Many clients may follow one
//! busy run (a dashboard on every screen of a team): each stream sends at most one event per
//! [`THROTTLE`], and the reads behind those events are shared by every stream of that run
//! ([`crate::web::shared_reads`]), so a thousand clients cost about one read per change, not a
//! thousand.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use opsrun_application::access::Caller;
use opsrun_application::read_models::RunSummary;
use opsrun_domain::RunId;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::dto::{ErrorBody, RunDoc};
use super::handlers::run_id;
use crate::web::auth::StreamCaller;
use crate::web::{ApiError, AppState};

/// How often an open event stream re-checks the token or session behind it.
pub const CREDENTIAL_RECHECK: Duration = Duration::from_secs(15);

/// Shortest time between two events of one stream: a run that records hundreds of items a
/// second is shown ten times a second, each time as it is then.
pub const THROTTLE: Duration = Duration::from_millis(100);

/// What no notification reaches (another process on SQLite, a lagging subscriber) is seen at
/// least this often.
const REREAD: Duration = Duration::from_secs(2);

/// Live progress: a `progress` event with the run document on every change (at most one per
/// 100 ms, each the run as it then is); the stream ends after the terminal event, with a
/// `shutdown` event when the server stops, or with an `unauthorized` event within 15 s of its
/// token's revocation or expiry (or its session's end).
#[utoipa::path(get, path = "/api/operations/{id}/events", tag = "operations",
    params(("id" = i64, Path, minimum = 1, description = "the run's id")),
    responses((status = 200, content_type = "text/event-stream", body = String, description = "`progress` events, each with a run document; the stream ends after the terminal one"), (status = 400, body = ErrorBody, description = "malformed JSON, or a path or query that cannot be decoded"), (status = 401, body = ErrorBody, description = "no valid bearer token"), (status = 404, body = ErrorBody, description = "absent, or not visible to this token")))]
pub async fn operation_events(
    State(state): State<AppState>,
    StreamCaller(caller): StreamCaller,
    Path(id): Path<String>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let id = run_id(&id)?;
    // Subscribe before the first read, so no change between the two is missed.
    let receiver = state.stack.events.subscribe();
    // The first read is this caller's own: visible, or 404 like an absent run.
    let first = state.stack.models.run(&caller, id).await?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        // Counted as an open stream until the client goes.
        let _client = crate::web::metrics::StreamClient::open();
        follow(&state, &caller, id, receiver, &first, &tx).await;
    });
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}

async fn send(tx: &mpsc::Sender<Result<Event, Infallible>>, event: Event) -> bool {
    tx.send(Ok(event)).await.is_ok()
}

async fn follow(
    state: &AppState,
    caller: &Caller,
    id: RunId,
    mut receiver: broadcast::Receiver<RunId>,
    first: &RunSummary,
    tx: &mpsc::Sender<Result<Event, Infallible>>,
) {
    let mut last = serde_json::to_string(&RunDoc::new(first, false)).unwrap_or_default();
    if !send(tx, Event::default().event("progress").data(last.clone())).await
        || first.run.is_completed()
    {
        return;
    }
    let mut sent_at = Instant::now();
    let mut checked = Instant::now();
    loop {
        // A revoked or expired token, or an ended session, ends the stream within
        // CREDENTIAL_RECHECK (a store failure is not a revocation: checked again later).
        if checked.elapsed() >= CREDENTIAL_RECHECK {
            checked = Instant::now();
            if let Ok(false) = state.stack.authenticate.still_valid(caller).await {
                let reason =
                    r#"{"reason":"the token or session behind this stream is no longer valid"}"#;
                send(tx, Event::default().event("unauthorized").data(reason)).await;
                return;
            }
        }
        // Wait for a change of this run. A shutting-down server ends the stream with a last
        // event, so it never waits for clients. `since`: a read that starts after this moment
        // sees the change (it was committed before it was announced).
        let since = tokio::select! {
            () = tx.closed() => return,
            () = state.shutting_down() => {
                let reason = r#"{"reason":"the server is shutting down; reconnect to follow the run"}"#;
                send(tx, Event::default().event("shutdown").data(reason)).await;
                return;
            }
            changed = tokio::time::timeout(REREAD, receiver.recv()) => match changed {
                Ok(Ok(changed)) if changed != id => continue,
                Ok(Err(broadcast::error::RecvError::Closed)) => return,
                // A change of this run, a lag (changes were missed), or the periodic re-read.
                _ => Instant::now(),
            },
        };
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep_until(sent_at + THROTTLE) => {}
        }
        let Ok(doc) = state
            .run_reads
            .read(&state.stack.models, caller, id, since)
            .await
        else {
            return;
        };
        if doc.json != last {
            last.clone_from(&doc.json);
            if !send(tx, Event::default().event("progress").data(last.clone())).await {
                return;
            }
            sent_at = Instant::now();
        }
        if doc.done {
            return;
        }
    }
}
