//! The `OpenAI` API under `/v1`, passed on to the `--upstream` model servers: clients change one
//! base URL and every call they make shows up live as a run. Answers reach the client byte for
//! byte as the upstream sends them; runboard reads a copy (`exchange`), and `body` is what the
//! client's connection reads. Calls are grouped into runs by `session`; `call` reads what a
//! call says about itself.

mod body;
mod call;
mod exchange;
mod session;
mod skim;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::failure::Failure;
use crate::producers::runs::{CreateError, Runs};
use crate::producers::upstream::{ResolveError, UpstreamPool};
use runboard_api::ErrorCode;
use skim::{Skim, SkimError};

pub use call::{AGENT_HEADER, CallOrigin, Endpoint, RUN_END_HEADER, RUN_HEADER, WORKER_HEADER};
pub use exchange::RUN_ID_HEADER;

/// How long a call waits for the store to catch up before it is refused (503).
const ADMISSION_WAIT: Duration = Duration::from_secs(2);

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// A run made of calls sharing `X-Runboard-Run` ends after this long without a call
    /// (`--proxy-run-idle-secs`).
    pub run_idle: Duration,
    /// The largest request body a client may send (prompts can be long).
    pub max_body_bytes: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            run_idle: Duration::from_secs(60),
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The proxy: the upstreams, and the runs its calls become. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Proxy {
    pool: UpstreamPool,
    sessions: session::Sessions,
    config: ProxyConfig,
}

impl Proxy {
    /// A proxy to `pool`'s upstreams whose calls become runs of `runs`.
    pub fn start(
        pool: UpstreamPool,
        runs: Runs,
        config: ProxyConfig,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            sessions: session::Sessions::start(runs, config.run_idle, shutdown),
            pool,
            config,
        }
    }

    /// The largest body a client may send.
    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    /// `GET /v1/models`: every upstream's models and the aliases, as `OpenAI` lists models.
    pub fn models(&self) -> Value {
        let (models, _) = self.pool.models();
        let mut data: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for model in &models {
            if seen.insert(model.id.clone()) {
                data.push(json!({
                    "id": model.id,
                    "object": "model",
                    "created": 0,
                    "owned_by": model.owned_by.clone().or_else(|| model.upstream.clone()),
                }));
            }
        }
        for (alias, target) in &self.pool.config().aliases {
            if seen.insert(alias.clone()) {
                data.push(json!({
                    "id": alias,
                    "object": "model",
                    "created": 0,
                    "owned_by": format!("alias of {target}"),
                }));
            }
        }
        json!({"object": "list", "data": data})
    }

    /// A completion call: routed by its model, passed on, and answered with the upstream's
    /// own status, headers and bytes.
    ///
    /// Everything after the body is read happens on a task of its own: a client that leaves
    /// drops this future, and must not leave a run half made (created but never started, or
    /// started but never ended). The task sees the client leave through the answer's channel.
    pub async fn call(
        &self,
        endpoint: Endpoint,
        headers: &HeaderMap,
        origin: CallOrigin,
        body: Bytes,
    ) -> Response {
        let (head_tx, head_rx) = oneshot::channel();
        let proxy = self.clone();
        let headers = headers.clone();
        tokio::spawn(async move {
            match proxy.prepare(endpoint, &headers, &origin, body).await {
                Ok(exchange) => exchange.run(head_tx).await,
                Err(failure) => {
                    let _ = head_tx.send(Err(failure.into_response()));
                }
            }
        });
        match head_rx.await {
            Ok(Ok(head)) => answer(head),
            Ok(Err(refusal)) => refusal,
            Err(_) => Failure::shutting_down().into_response(),
        }
    }

    async fn prepare(
        &self,
        endpoint: Endpoint,
        headers: &HeaderMap,
        origin: &CallOrigin,
        body: Bytes,
    ) -> Result<exchange::Exchange, Failure> {
        // Past what the store can keep up with, a call waits its turn a moment, then is
        // refused rather than every call being slowed down: the client retries when it says,
        // and what was taken is recorded whole.
        let recorder = self.sessions.runs().recorder();
        if !recorder.room_within(ADMISSION_WAIT).await {
            recorder.telemetry().call_refused();
            return Err(Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::RecorderBehind,
                format!(
                    "runboard's store is {} events behind; try again shortly",
                    recorder.backlog()
                ),
            )
            .retry_after(1));
        }
        let skim = Skim::read(&body).map_err(|error| match error {
            SkimError::NotJson(error) => Failure::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadJson,
                format!("the request body is not JSON: {error}"),
            ),
            SkimError::NotAnObject => Failure::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidBody,
                "the request body must be a JSON object",
            ),
        })?;
        // An unknown model is refused before anything more is read of the body.
        let asked = skim.model();
        let target = self
            .pool
            .resolve(asked.as_deref())
            .await
            .map_err(|error| match error {
                ResolveError::NotServed(message) => {
                    Failure::new(StatusCode::NOT_FOUND, ErrorCode::ModelNotFound, message)
                }
                ResolveError::Unavailable(message) => Failure::new(
                    StatusCode::BAD_GATEWAY,
                    ErrorCode::UpstreamUnavailable,
                    message,
                ),
            })?;
        let call = call::ClientCall::read(endpoint, &skim, headers, origin);
        // The body goes on as the client wrote it, unless an alias (or no model) has to be
        // replaced by the model the upstream knows.
        let body = if asked.as_deref() == Some(target.model.as_str()) {
            body.clone()
        } else {
            skim.with_model(&body, &target.model)
        };
        let params = session::run_params(
            &target.asked,
            &format!("/v1{}", endpoint.path()),
            call.run_key.as_deref(),
            &call.agent,
            &call.worker,
        );
        let (run, number) = self
            .sessions
            .begin(call.run_key.as_deref(), &call.task, params)
            .await
            .map_err(|error| match error {
                CreateError::Unwritable(reason) => Failure::store_unwritable(&reason),
                CreateError::QueueFull { .. } | CreateError::Stopped => Failure::shutting_down(),
            })?;
        // Its tokens are counted under the model it asked for, as a generated run's are.
        run.ctx
            .recorder
            .telemetry()
            .run_model(&run.ctx.run_id, &target.asked);
        Ok(exchange::Exchange {
            call,
            run,
            number,
            target,
            body,
            accept: headers.get(header::ACCEPT).cloned(),
            pool: self.pool.clone(),
            sessions: self.sessions.clone(),
            began: std::time::SystemTime::now(),
        })
    }
}

/// The client's response: the upstream's status and headers, and its body as it comes.
fn answer(head: exchange::Head) -> Response {
    let body = body::ClientBody::new(head.body, head.delivered);
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}
