//! The OpenAI-compatible API under `/v1`, handed to the proxy (with `--upstream`).

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use runboard_api::ErrorCode;

use crate::failure::Failure;
use crate::http::listener::ClientAddr;
use crate::producers::proxy::{Endpoint, Proxy};

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
