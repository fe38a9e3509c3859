//! The OpenAI-compatible API under `/v1`, handed to the proxy (with `--upstream`).

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use runboard_api::{ErrorCode, Role};

use crate::failure::Failure;
use crate::http::auth::Caller;
use crate::http::listener::ClientAddr;
use crate::producers::proxy::{CallOrigin, Endpoint, Proxy};

use super::{AppState, read_body};

/// The routes of the OpenAI-compatible API.
pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/v1/chat/completions", post(proxy_chat))
        .route("/v1/completions", post(proxy_completions))
        .route("/v1/models", get(proxy_models))
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

/// `POST /v1/chat/completions`, passed on to the upstream serving the model.
async fn proxy_chat(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let proxy = proxy(&state)?;
    let bytes = read_body(&state, body, proxy.max_body_bytes()).await?;
    let client = origin(client, caller);
    Ok(proxy.call(Endpoint::Chat, &headers, client, bytes).await)
}

/// `POST /v1/completions`, passed on to the upstream serving the model.
async fn proxy_completions(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let proxy = proxy(&state)?;
    let bytes = read_body(&state, body, proxy.max_body_bytes()).await?;
    let client = origin(client, caller);
    Ok(proxy
        .call(Endpoint::Completions, &headers, client, bytes)
        .await)
}

/// Where a call comes from: its connection's address, and the name of the worker token it
/// carries.
fn origin(client: Option<Extension<ClientAddr>>, caller: Option<Extension<Caller>>) -> CallOrigin {
    CallOrigin {
        addr: client.map(|Extension(ClientAddr(addr))| addr.ip()),
        worker_token: caller
            .filter(|Extension(caller)| caller.role == Role::Worker)
            .and_then(|Extension(caller)| caller.name),
    }
}

/// `GET /v1/models`: the upstreams' models and the aliases.
async fn proxy_models(State(state): State<AppState>) -> Result<Response, Failure> {
    Ok(Json(proxy(&state)?.models()).into_response())
}
