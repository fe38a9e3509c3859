//! The runs API over HTTP: routes, request parsing and validation.

use runboard_api::{ErrorCode, Feature, Upstreams, WorkerFigures, WorkerList};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::events::stream::{self, Scope, StreamSource};
use crate::failure::Failure;
use crate::http::active_requests_stream::{self, RequestStreamSettings};
use crate::http::auth::{RequiredToken, require_token};
use crate::http::body_buffer::{self, BodyError};
use crate::http::guard::{Guard, guard};
use crate::http::listener::ClientAddr;
use crate::http::request_span::request_span;
use crate::http::upstreams_stream;
use crate::http::web_bundle::{self, WebBundle, is_api_path};
use crate::observe::active_requests::RequestTracker;
use crate::observe::scrape::UpstreamsBoard;
use crate::observe::telemetry::{self, Telemetry};
use crate::producers::benchmark::{
    self, BenchmarkBoard, BenchmarkRunner, Interval, Resume, StartError,
};
use crate::producers::generator;
use crate::producers::membership::Roster;
use crate::producers::proxy::{Endpoint, Proxy};
use crate::producers::runs::{CancelOutcome, CreateError, Runs};
use crate::store::health::StoreHealth;
use crate::store::retention::RetentionBoard;
use crate::store::{RunFilter, RunRow, Store};
use runboard_api::{
    BenchmarkStarted, CreateBenchmark, CreateRun, Health, RunDetail, RunList, RunMode, RunStatus,
};

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

/// The most tasks one benchmark may have.
pub const MAX_BENCHMARK_TASKS: u64 = 1000;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Run lifecycle.
    pub runs: Runs,
    /// Reads.
    pub store: Store,
    /// Streams.
    pub streams: StreamSource,
    /// Request body limit in bytes.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive (408 beyond).
    pub body_timeout: Duration,
    /// Whether the store accepts writes.
    pub health: StoreHealth,
    /// Task text limit in characters.
    pub max_task_chars: usize,
    /// Whether `/api/events` is offered.
    pub events_endpoint: bool,
    /// Requests in flight.
    pub requests: RequestTracker,
    /// How the active-requests stream behaves.
    pub request_stream: RequestStreamSettings,
    /// Benchmark progress.
    pub benchmark: BenchmarkBoard,
    /// Starts benchmarks.
    pub benchmark_runner: BenchmarkRunner,
    /// The web console served at `/`.
    pub web: WebBundle,
    /// The model servers read with `--scrape`.
    pub upstreams: UpstreamsBoard,
    /// runboard's own metrics.
    pub telemetry: Telemetry,
    /// The OpenAI-compatible proxy under `/v1`, with `--upstream`.
    pub proxy: Option<Proxy>,
    /// The instances sharing the store, as last read.
    pub roster: Roster,
    /// Retention's record, for health.
    pub retention: RetentionBoard,
    /// Set when the server replays a recording: it starts and cancels nothing.
    pub replaying: bool,
}

/// The router: every API route behind the token check, the web console for everything else,
/// and CORS for the origins allowed to call the API from a page hosted elsewhere.
pub fn router(
    state: AppState,
    token: RequiredToken,
    guard_settings: Guard,
    cors_origins: &[HeaderValue],
) -> Router {
    let mut router = Router::new()
        .route("/api/health", get(health))
        .route("/api/runs", post(create_run).get(list_runs))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/cancel", post(cancel_run))
        .route("/api/runs/{id}/stream", get(run_stream))
        .route("/api/benchmarks", post(create_benchmark))
        .route("/api/benchmark-sse", get(benchmark_stream))
        .route("/api/workers", get(workers))
        .route("/api/upstreams", get(upstreams))
        .route("/api/upstreams/stream", get(upstreams_stream))
        .route("/metrics", get(metrics))
        .route("/metrics/active-requests", get(active_requests))
        .route(
            "/metrics/active-requests/stream",
            get(active_requests_stream),
        )
        .route("/v1/chat/completions", post(proxy_chat))
        .route("/v1/completions", post(proxy_completions))
        .route("/v1/models", get(proxy_models));
    if state.events_endpoint {
        router = router.route("/api/events", get(all_events));
    }
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(token, require_token))
        .layer(axum::middleware::from_fn_with_state(guard_settings, guard))
        .layer(axum::middleware::from_fn(request_span))
        .with_state(state);
    if cors_origins.is_empty() {
        return router;
    }
    // Outermost, so a preflight (which carries no token) is answered before the token check.
    router.layer(
        tower_http::cors::CorsLayer::new()
            .allow_origin(tower_http::cors::AllowOrigin::list(
                cors_origins.iter().cloned(),
            ))
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([axum::http::HeaderName::from_static("x-benchmark-interval")])
            .max_age(Duration::from_secs(600)),
    )
}

async fn health(State(state): State<AppState>) -> Json<Health> {
    let head = state.streams.hub.head();
    let store = state.health.current();
    let features = Feature::ALL
        .into_iter()
        .filter(|feature| state.events_endpoint || *feature != Feature::Events)
        .filter(|feature| state.upstreams.enabled() || *feature != Feature::Upstreams)
        .collect();
    Json(Health {
        status: if store.writable { "ok" } else { "degraded" }.into(),
        version: Some(env!("CARGO_PKG_VERSION").into()),
        features,
        events_head: state
            .events_endpoint
            .then(|| u64::try_from(head).ok())
            .flatten(),
        store: Some(store),
        backend: Some(state.store.backend().name().to_owned()),
        instances: state.roster.snapshot(),
        recorder_backlog: Some(state.runs.recorder().backlog() as u64),
        retention: state.retention.snapshot(),
    })
}

/// runboard's own metrics in the `OpenMetrics` text format, for Prometheus.
async fn metrics(State(state): State<AppState>) -> Response {
    let runs = match state.store.count_by_status().await {
        Ok(runs) => runs,
        Err(error) => return Failure::from(error).into_response(),
    };
    state
        .telemetry
        .set_recorder_backlog(state.runs.recorder().backlog());
    let page = state.telemetry.render(
        &runs,
        state.streams.hub.head(),
        state.streams.hub.subscribers(),
    );
    (
        [(axum::http::header::CONTENT_TYPE, telemetry::CONTENT_TYPE)],
        page,
    )
        .into_response()
}

/// The model servers read, as last read (an empty list without `--scrape`).
async fn upstreams(State(state): State<AppState>) -> Json<Upstreams> {
    Json(state.upstreams.snapshot())
}

/// Every new read of the model servers, as it happens.
async fn upstreams_stream(State(state): State<AppState>) -> Response {
    let settings = &state.streams.settings;
    upstreams_stream::response(
        state.upstreams.clone(),
        settings.retry,
        settings.keepalive,
        state.streams.shutdown.clone(),
    )
}

/// Unknown API paths get the JSON 404; anything else is a file of the web console.
async fn not_found(State(state): State<AppState>, uri: axum::http::Uri) -> Response {
    if is_api_path(uri.path()) {
        Failure::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such endpoint",
        )
        .into_response()
    } else {
        web_bundle::serve(&state.web, uri.path()).await
    }
}

async fn method_not_allowed() -> Failure {
    Failure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}

/// Reads a JSON body of at most `max_body_bytes` within `body_timeout`: 413 beyond the size,
/// 408 beyond the time, 400 for bad JSON, 422 for JSON that is not the request.
async fn read_json<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: Body,
    what: &str,
) -> Result<T, Failure> {
    let bytes = read_body(state, body, state.max_body_bytes).await?;
    serde_json::from_slice(&bytes).map_err(|error| {
        if error.is_data() {
            Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidBody,
                format!("the body is not {what}: {error}"),
            )
        } else {
            Failure::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadJson,
                format!("the body is not valid JSON: {error}"),
            )
        }
    })
}

/// Reads a body of at most `limit` bytes within `body_timeout` (413 beyond the size, 408
/// beyond the time).
async fn read_body(state: &AppState, body: Body, limit: usize) -> Result<bytes::Bytes, Failure> {
    tokio::time::timeout(state.body_timeout, body_buffer::collect(body, limit))
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::BodyTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    state.body_timeout.as_secs_f64()
                ),
            )
        })?
        .map_err(|error| match error {
            BodyError::TooLarge => Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                format!("the request body is larger than {limit} bytes"),
            ),
            BodyError::Broken => Failure::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidBody,
                "the request body broke off before its end",
            ),
        })
}

/// The proxy, or why there is none.
fn proxy(state: &AppState) -> Result<&Proxy, Failure> {
    state.proxy.as_ref().ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "this server passes the OpenAI API on only to model servers given with --upstream; \
             it has none",
        )
    })
}

/// `GET /api/workers`: every worker with its totals from the store and its live figures,
/// the most recently seen first, and the fleet's last minute.
async fn workers(State(state): State<AppState>) -> Result<Json<WorkerList>, Failure> {
    let totals = state.store.worker_totals().await?;
    let now = tokio::time::Instant::now();
    let fleet = state.telemetry.fleet();
    let live = fleet.workers(now);
    let mut workers: Vec<WorkerFigures> = totals
        .into_iter()
        .map(|totals| {
            let now = live.get(&totals.worker).copied().unwrap_or_default();
            WorkerFigures {
                done: totals.done,
                failed: totals.failed,
                cancelled: totals.cancelled,
                in_flight: totals.in_flight,
                tokens_out: totals.tokens_out,
                tok_per_sec: now.tok_per_sec,
                ttft_p50_ms: now.ttft_p50_ms,
                last_seen: totals.last_seen,
                worker: totals.worker,
            }
        })
        .collect();
    workers.sort_by(|a, b| {
        b.last_seen
            .cmp(&a.last_seen)
            .then_with(|| a.worker.cmp(&b.worker))
    });
    Ok(Json(WorkerList {
        workers,
        fleet: fleet.figures(now),
    }))
}

/// `POST /v1/chat/completions`, passed on to the upstream serving the model.
async fn proxy_chat(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let proxy = proxy(&state)?;
    let bytes = read_body(&state, body, proxy.max_body_bytes()).await?;
    let client = client.map(|Extension(ClientAddr(addr))| addr.ip());
    Ok(proxy.call(Endpoint::Chat, &headers, client, bytes).await)
}

/// `POST /v1/completions`, passed on to the upstream serving the model.
async fn proxy_completions(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let proxy = proxy(&state)?;
    let bytes = read_body(&state, body, proxy.max_body_bytes()).await?;
    let client = client.map(|Extension(ClientAddr(addr))| addr.ip());
    Ok(proxy
        .call(Endpoint::Completions, &headers, client, bytes)
        .await)
}

/// `GET /v1/models`: the upstreams' models and the aliases.
async fn proxy_models(State(state): State<AppState>) -> Result<Response, Failure> {
    Ok(Json(proxy(&state)?.models()).into_response())
}

/// `params` as an object within the generator's bounds: null becomes `{}`, anything else but
/// an object is refused, and so is a parameter out of its bounds (named in the message).
fn params_object(params: Value) -> Result<Value, Failure> {
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

/// The `{id}` of a path, or our error shape (axum's own rejection is plain text), e.g. for an
/// id that is not UTF-8 once decoded.
fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, Failure> {
    path.map(|Path(id)| id).map_err(|rejection| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadPath,
            rejection.body_text(),
        )
    })
}

/// A replaying server only plays what was recorded: writes are refused with 409, saying why.
fn refuse_when_replaying(state: &AppState, what: &str) -> Result<(), Failure> {
    if state.replaying {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            ErrorCode::Replaying,
            format!("this server replays a recording (--replay) and {what}"),
        ));
    }
    Ok(())
}

async fn create_run(State(state): State<AppState>, body: Body) -> Result<Response, Failure> {
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
    if task_chars > state.max_task_chars {
        return Err(Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TaskTooLong,
            format!(
                "the task has {task_chars} characters; the limit is {}",
                state.max_task_chars
            ),
        ));
    }
    let params = params_object(request.params)?;
    // An inline request listens before the run exists, so it cannot miss the run's end.
    let mut ends = (request.mode == RunMode::Inline).then(|| state.streams.hub.subscribe());
    let summary =
        state
            .runs
            .create(task.to_owned(), params)
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

/// `GET /api/benchmark-sse`'s query.
#[derive(Debug, Deserialize)]
struct BenchmarkQuery {
    interval: Option<String>,
}

/// The typed query, or our error shape (axum's own rejection is plain text).
fn typed_query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Failure> {
    query.map(|Query(query)| query).map_err(|rejection| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadQuery,
            rejection.body_text(),
        )
    })
}

async fn list_runs(
    State(state): State<AppState>,
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
    Ok(Json(RunList {
        runs: rows.into_iter().map(|row| row.summary).collect(),
        next_before,
    }))
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
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RunDetail>, Failure> {
    let run_id = path_id(path)?;
    stored_run(&state, &run_id).await?;
    run_detail(&state.store, &run_id).await.map(Json)
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
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Failure> {
    let run_id = path_id(path)?;
    refuse_when_replaying(&state, "cancels no runs")?;
    match state.runs.cancel(&run_id).await? {
        CancelOutcome::Cancelling => {
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
    ))
}

async fn all_events(
    State(state): State<AppState>,
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
    ))
}

async fn create_benchmark(
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<BenchmarkStarted>), Failure> {
    refuse_when_replaying(&state, "runs no benchmarks")?;
    let mut request: CreateBenchmark = read_json(&state, body, "a benchmark request").await?;
    if !(1..=MAX_BENCHMARK_TASKS).contains(&request.tasks) {
        return Err(Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidTasks,
            format!(
                "tasks must be 1 to {MAX_BENCHMARK_TASKS}, not {}",
                request.tasks
            ),
        ));
    }
    request.params = params_object(request.params)?;
    let started = state.benchmark_runner.start(&request).map_err(|error| {
        let code = match error {
            StartError::Busy => ErrorCode::BenchmarkRunning,
            StartError::WatchingLog => ErrorCode::BenchmarkSourceIsLog,
        };
        Failure::new(StatusCode::CONFLICT, code, error.to_string())
    })?;
    Ok((StatusCode::CREATED, Json(started)))
}

async fn benchmark_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<BenchmarkQuery>, QueryRejection>,
) -> Result<Response, Failure> {
    let query = typed_query(query)?;
    let interval = Interval::parse(query.interval.as_deref()).map_err(|error| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadInterval,
            error.to_string(),
        )
    })?;
    let resume = Resume::parse(
        headers
            .get("last-event-id")
            .and_then(|value| value.to_str().ok()),
    );
    let mut response = benchmark::response(
        state.benchmark.clone(),
        interval,
        resume,
        state.streams.settings.clone(),
        state.streams.shutdown.clone(),
    );
    // The interval in force after clamping, for clients and people debugging them.
    if let Ok(value) = axum::http::HeaderValue::from_str(&interval.0.as_secs_f64().to_string()) {
        response.headers_mut().insert("x-benchmark-interval", value);
    }
    Ok(response)
}

async fn active_requests(State(state): State<AppState>) -> Json<runboard_api::ActiveRequests> {
    Json(state.requests.snapshot().1)
}

async fn active_requests_stream(State(state): State<AppState>) -> Response {
    if !state.request_stream.enabled {
        let (_, mut body) = state.requests.snapshot();
        body.disabled = true;
        body.active_requests.clear();
        body.message = Some(
            "the active-requests stream is off; poll /metrics/active-requests, or start the \
             server with --requests-sse true (RUNBOARD_REQUESTS_SSE_ENABLED=true)"
                .to_owned(),
        );
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    active_requests_stream::response(
        state.requests.clone(),
        state.request_stream.clone(),
        state.streams.shutdown.clone(),
    )
}
