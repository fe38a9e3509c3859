//! The runs API over HTTP: routes, request parsing and validation.

mod benchmarks;
mod openai;
mod runs;
mod status;

pub use benchmarks::MAX_BENCHMARK_TASKS;
pub use runs::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use runboard_api::ErrorCode;

use crate::events::stream::StreamSource;
use crate::failure::Failure;
use crate::http::active_requests_stream::RequestStreamSettings;
use crate::http::auth::require_token;
use crate::http::body_buffer::{self, BodyError};
use crate::http::guard::{Guard, guard};
use crate::http::request_span::request_span;
use crate::http::tokens::Keyring;
use crate::http::web_bundle::{self, WebBundle, is_api_path};
use crate::observe::active_requests::RequestTracker;
use crate::observe::scrape::UpstreamsBoard;
use crate::observe::telemetry::Telemetry;
use crate::producers::benchmark::{BenchmarkBoard, BenchmarkRunner};
use crate::producers::membership::Roster;
use crate::producers::proxy::Proxy;
use crate::producers::runs::Runs;
use crate::store::Store;
use crate::store::health::StoreHealth;
use crate::store::retention::RetentionBoard;

/// What the handlers share, behind one pointer: axum hands every request its own copy of
/// the state, and a copy is then one count raised rather than one per part.
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    /// The state made of `parts`.
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct AppParts {
    /// Run lifecycle.
    pub runs: Runs,
    /// Reads.
    pub store: Store,
    /// Streams.
    pub streams: StreamSource,
    /// What one request may carry, and how long it may take to arrive.
    pub limits: RequestLimits,
    /// Whether the store accepts writes.
    pub health: StoreHealth,
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

/// What one request may carry, and how long it may take to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Request body limit in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive (408 beyond).
    pub body_timeout: Duration,
    /// Task text limit in characters (422 beyond).
    pub max_task_chars: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            body_timeout: Duration::from_secs(30),
            max_task_chars: 4096,
        }
    }
}

/// The router: every API route behind the token check, the web console for everything else,
/// and CORS for the origins allowed to call the API from a page hosted elsewhere.
pub fn router(
    state: AppState,
    keyring: Keyring,
    guard_settings: Guard,
    cors_origins: &[HeaderValue],
) -> Router {
    let router = runs::routes(Router::new(), state.events_endpoint);
    let router = benchmarks::routes(router);
    let router = status::routes(router);
    let router = openai::routes(router);
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(keyring, require_token))
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
    let bytes = read_body(state, body, state.limits.max_body_bytes).await?;
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
    tokio::time::timeout(state.limits.body_timeout, body_buffer::collect(body, limit))
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::BodyTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    state.limits.body_timeout.as_secs_f64()
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
