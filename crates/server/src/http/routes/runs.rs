//! `/api/runs` and the event streams: launching (queued or inline), listing, one run with its
//! events, cancelling, a run's stream and `/api/events`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use runboard_api::ErrorCode;
use runboard_api::{CreateRun, RunDetail, RunList, RunMode, RunStatus, RunSummary};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::events::stream::{self, Scope};
use crate::failure::Failure;
use crate::http::auth::Caller;
use crate::producers::generator;
use crate::producers::runs::{CancelOutcome, CreateError};
use crate::store::{RunFilter, RunRow, Store};

use super::{AppState, path_id, read_json, refuse_when_replaying, typed_query};

/// The routes of runs and their events (`/api/events` only when `events` is offered).
pub(super) fn routes(router: Router<AppState>, events: bool) -> Router<AppState> {
    let router = router
        .route("/api/runs", post(create_run).get(list_runs))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/cancel", post(cancel_run))
        .route("/api/runs/{id}/stream", get(run_stream));
    if events {
        router.route("/api/events", get(all_events))
    } else {
        router
    }
}

/// The most runs one list request returns.
pub const MAX_LIST_LIMIT: u32 = 500;

/// The list size when the request does not say.
pub const DEFAULT_LIST_LIMIT: u32 = 50;

/// How long an inline run may take before the request gives up waiting (the run goes on).
const INLINE_WAIT: Duration = Duration::from_mins(10);

/// What a client refused for a full queue is told to wait before it tries again.
const QUEUE_FULL_RETRY_SECS: u64 = 5;

/// The most runs one `/api/events?runs=` filter may name.
pub const MAX_FILTER_RUNS: usize = 1000;

/// `params` as an object within the generator's bounds: null becomes `{}`, anything else but
/// an object is refused, and so is a parameter out of its bounds (named in the message).
pub(super) fn params_object(params: Value) -> Result<Value, Failure> {
    let params = match params {
        Value::Null => Value::Object(serde_json::Map::new()),
        Value::Object(map) => Value::Object(map),
        _ => {
            return Err(Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidParams,
                "params must be a JSON object",
            ));
        }
    };
    generator::check_params(&params).map_err(|error| {
        Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidParams,
            error.to_string(),
        )
    })?;
    Ok(params)
}

async fn create_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, Failure> {
    refuse_when_replaying(&state, "starts no runs")?;
    let request: CreateRun = read_json(&state, body, "a run request").await?;
    let task = request.task.trim();
    if task.is_empty() {
        return Err(Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidTask,
            "the task is empty",
        ));
    }
    let task_chars = task.chars().count();
    if task_chars > state.limits.max_task_chars {
        return Err(Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TaskTooLong,
            format!(
                "the task has {task_chars} characters; the limit is {}",
                state.limits.max_task_chars
            ),
        ));
    }
    let params = params_object(request.params)?;
    // An inline request listens before the run exists, so it cannot miss the run's end.
    let mut ends = (request.mode == RunMode::Inline).then(|| state.streams.hub.subscribe());
    let summary = state
        .runs
        .create(task.to_owned(), params, caller.name.clone())
        .await
        .map_err(|error| match error {
            CreateError::Unwritable(reason) => Failure::store_unwritable(&reason),
            CreateError::QueueFull { .. } => Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::QueueFull,
                error.to_string(),
            )
            .retry_after(QUEUE_FULL_RETRY_SECS),
            CreateError::Stopped => Failure::shutting_down(),
        })?;
    tracing::info!(run = %summary.run_id, by = caller.label(), "run launched");
    let Some(ends) = ends.as_mut() else {
        return Ok((StatusCode::CREATED, Json(summary)).into_response());
    };
    let run_id = summary.run_id.clone();
    let finished = tokio::time::timeout(INLINE_WAIT, async {
        loop {
            match ends.recv().await {
                Ok(event) if event.run_id == run_id && event.is_stream_end => return true,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    let run = state.store.run(&run_id).await.ok().flatten();
                    if run.is_some_and(|run| run.summary.status.is_finished()) {
                        return true;
                    }
                }
                Err(RecvError::Closed) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    if !finished {
        return Err(Failure::new(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::InlineTimeout,
            format!("run {run_id} did not finish in time; it goes on, follow it by id"),
        ));
    }
    let detail = run_detail(&state.store, &run_id).await?;
    Ok((StatusCode::CREATED, Json(detail)).into_response())
}

/// `GET /api/runs`'s query. Values stay text here so each gets its own error message.
#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<String>,
    status: Option<String>,
    before: Option<String>,
    worker: Option<String>,
}

/// The query of the event streams.
#[derive(Debug, Deserialize)]
struct StreamQuery {
    /// For clients that cannot set `Last-Event-ID` (an `EventSource` after a page reload).
    last_event_id: Option<String>,
    /// `/api/events` only: the runs to follow, comma-separated.
    runs: Option<String>,
}

async fn list_runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RunList>, Failure> {
    let query = typed_query(query)?;
    let limit = match &query.limit {
        None => DEFAULT_LIST_LIMIT,
        Some(text) => text.parse::<u32>().map_err(|_| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadLimit,
                format!("limit must be a whole number, not {text:?}"),
            )
        })?,
    }
    .clamp(1, MAX_LIST_LIMIT);
    let status = match &query.status {
        None => None,
        Some(text) => Some(RunStatus::parse(text).ok_or_else(|| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadStatus,
                format!(
                    "status must be one of queued, running, completed, failed, cancelled, not {text:?}"
                ),
            )
        })?),
    };
    let before_ord = match &query.before {
        None => None,
        Some(run_id) => Some(
            state
                .store
                .run(run_id)
                .await?
                .ok_or_else(|| Failure::unknown_run(run_id))?
                .ord,
        ),
    };
    // One more than asked says whether another page exists.
    let filter = RunFilter {
        before_ord,
        status,
        worker: query.worker.filter(|worker| !worker.is_empty()),
    };
    let mut rows = state.store.list_runs(limit + 1, &filter).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_before = more
        .then(|| rows.last().map(|row| row.summary.run_id.clone()))
        .flatten();
    let mut runs: Vec<RunSummary> = rows.into_iter().map(|row| row.summary).collect();
    if let Some(mode) = caller.redaction {
        for summary in &mut runs {
            mode.summary(summary);
        }
    }
    Ok(Json(RunList { runs, next_before }))
}

async fn run_detail(store: &Store, run_id: &str) -> Result<RunDetail, Failure> {
    let run = store
        .run(run_id)
        .await?
        .ok_or_else(|| Failure::unknown_run(run_id))?;
    let events = store.run_events(run_id).await?;
    Ok(RunDetail {
        summary: run.summary,
        events,
    })
}

async fn get_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RunDetail>, Failure> {
    let run_id = path_id(path)?;
    stored_run(&state, &run_id).await?;
    let mut detail = run_detail(&state.store, &run_id).await?;
    if let Some(mode) = caller.redaction {
        mode.summary(&mut detail.summary);
        for event in &mut detail.events {
            mode.stored_event(event);
        }
    }
    Ok(Json(detail))
}

/// The run as stored. A proxied call's run is answered for before its commit, so a client
/// that read its id from the answer's headers may ask before it is written: such a run is
/// looked up again once the writer has caught up.
async fn stored_run(state: &AppState, run_id: &str) -> Result<RunRow, Failure> {
    if let Some(run) = state.store.run(run_id).await? {
        return Ok(run);
    }
    // Read again either way: one confirmed between the two looks is stored by now.
    if state.runs.is_unconfirmed(run_id) {
        state.runs.settle().await;
    }
    state
        .store
        .run(run_id)
        .await?
        .ok_or_else(|| Failure::unknown_run(run_id))
}

async fn cancel_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Failure> {
    let run_id = path_id(path)?;
    refuse_when_replaying(&state, "cancels no runs")?;
    match state.runs.cancel(&run_id, caller.name.as_deref()).await? {
        CancelOutcome::Cancelling => {
            tracing::info!(run = %run_id, by = caller.label(), "run cancelled");
            let run = stored_run(&state, &run_id).await?;
            Ok((StatusCode::ACCEPTED, Json(run.summary)).into_response())
        }
        CancelOutcome::AlreadyFinished => Err(Failure::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyFinished,
            format!("run {run_id} has already finished"),
        )),
        CancelOutcome::Unknown => Err(Failure::unknown_run(&run_id)),
    }
}

/// The last event id a client has: the `Last-Event-ID` header, else `?last_event_id=` (for
/// clients that cannot set headers). Text that is not an id replays from the start; an id
/// above `head`, the newest event (one from another database, or too large to be one), starts
/// at `head`: live from now, rather than holding every event until the ids pass it.
fn last_event_id(headers: &HeaderMap, query: &StreamQuery, head: i64) -> i64 {
    let Some(text) = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .or(query.last_event_id.as_deref())
        .map(str::trim)
    else {
        return 0;
    };
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return 0;
    }
    text.parse::<i64>().map_or(head, |id| id.min(head))
}

async fn run_stream(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, Failure> {
    let run_id = path_id(path)?;
    let query = typed_query(query)?;
    let run = stored_run(&state, &run_id).await?;
    let last_id = last_event_id(&headers, &query, state.streams.hub.head());
    if run.summary.status.is_finished() && last_id >= state.store.last_run_seq(&run_id).await? {
        // Everything was delivered and nothing more will come: tell the client to stop.
        return Ok(stream::closed_for_good());
    }
    Ok(stream::response(
        state.streams.clone(),
        Scope::Run { run_id },
        last_id,
        caller.redaction.is_some(),
    ))
}

async fn all_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, Failure> {
    let query = typed_query(query)?;
    let runs = query
        .runs
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|run| !run.is_empty())
                .map(str::to_owned)
                .collect::<HashSet<_>>()
        })
        .filter(|runs| !runs.is_empty());
    if runs
        .as_ref()
        .is_some_and(|runs| runs.len() > MAX_FILTER_RUNS)
    {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::TooManyRuns,
            format!("runs= may name at most {MAX_FILTER_RUNS} runs"),
        ));
    }
    Ok(stream::response(
        state.streams.clone(),
        Scope::All {
            runs: runs.map(Arc::new),
        },
        last_event_id(&headers, &query, state.streams.hub.head()),
        caller.redaction.is_some(),
    ))
}
