//! `/api/benchmarks` (start one) and `/api/benchmark-sse` (follow its progress).

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use runboard_api::ErrorCode;
use runboard_api::{BenchmarkStarted, CreateBenchmark};
use serde::Deserialize;

use crate::failure::Failure;
use crate::http::auth::Caller;
use crate::producers::benchmark::{self, Interval, Resume, StartError};

use super::runs::params_object;
use super::{AppState, read_json, refuse_when_replaying, typed_query};

/// The routes of benchmarks.
pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/api/benchmarks", post(create_benchmark))
        .route("/api/benchmark-sse", get(benchmark_stream))
}

/// The most tasks one benchmark may have.
pub const MAX_BENCHMARK_TASKS: u64 = 1000;

/// `GET /api/benchmark-sse`'s query.
#[derive(Debug, Deserialize)]
struct BenchmarkQuery {
    interval: Option<String>,
}

async fn create_benchmark(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
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
    let started = state
        .benchmark_runner
        .start(&request, caller.name.clone())
        .map_err(|error| {
            let code = match error {
                StartError::Busy => ErrorCode::BenchmarkRunning,
                StartError::WatchingLog => ErrorCode::BenchmarkSourceIsLog,
            };
            Failure::new(StatusCode::CONFLICT, code, error.to_string())
        })?;
    tracing::info!(
        tasks = request.tasks,
        by = caller.label(),
        "benchmark started"
    );
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
