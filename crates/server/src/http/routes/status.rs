//! What the server says about itself and what it measures: `/api/access` (what the caller's
//! token may do), `/api/health`, `/metrics` (and the
//! active requests, with their stream), `/api/workers`, `/api/upstreams` (and its stream).

use axum::Json;
use axum::Router;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use runboard_api::{AccessInfo, Health};
use runboard_api::{Feature, Upstreams, WorkerFigures, WorkerList};

use crate::failure::Failure;
use crate::http::active_requests_stream;
use crate::http::auth::Caller;
use crate::http::upstreams_stream;
use crate::observe::{telemetry, text_format};

use super::AppState;

/// The routes of the server's status and measurements.
pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/api/access", get(access))
        .route("/api/health", get(health))
        .route("/api/workers", get(workers))
        .route("/api/upstreams", get(upstreams))
        .route("/api/upstreams/stream", get(upstreams_stream))
        .route("/metrics", get(metrics))
        .route("/metrics/active-requests", get(active_requests))
        .route(
            "/metrics/active-requests/stream",
            get(active_requests_stream),
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
        redaction: state.runs.recorder().redaction(),
    })
}

/// runboard's own metrics in the `OpenMetrics` text format, for Prometheus; in the older
/// Prometheus text format for a client that asks for `text/plain` only (`promtool`).
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let runs = match state.store.count_by_status().await {
        Ok(runs) => runs,
        Err(error) => return Failure::from(error).into_response(),
    };
    state
        .telemetry
        .set_recorder_backlog(state.runs.recorder().backlog());
    state
        .telemetry
        .set_store_writable(state.health.current().writable);
    let page = state.telemetry.render(
        &runs,
        state.streams.hub.head(),
        state.streams.hub.subscribers(),
    );
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let (content_type, page) = if text_format::wanted(accept) {
        (
            text_format::CONTENT_TYPE,
            text_format::from_openmetrics(&page),
        )
    } else {
        (telemetry::CONTENT_TYPE, page)
    };
    ([(axum::http::header::CONTENT_TYPE, content_type)], page).into_response()
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

/// `GET /api/access`: what the caller's token may do.
async fn access(Extension(caller): Extension<Caller>) -> Json<AccessInfo> {
    Json(caller.access_info())
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
