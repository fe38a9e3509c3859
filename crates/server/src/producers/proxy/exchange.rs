//! One proxied call, from the moment it arrives to its answer's last byte. The upstream's
//! bytes go to the client as they come, unchanged; a copy is parsed on the side and turned into
//! the run's `node_update`s, its `step` figures and its active-request entry. The client
//! leaving closes the upstream request at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::call::ClientCall;
use super::session::{CallEnd, ProxyRun, Sessions};
use crate::failure::Failure;
use crate::observe::active_requests::{LiveFigures, NewRequest};
use crate::observe::otlp::FailedCall;
use crate::producers::upstream::answer::{Answer, AnswerBody, BodyKind, Unanswered};
use crate::producers::upstream::chain::interrupted_text;
use crate::producers::upstream::pace::Throttle;
use crate::producers::upstream::reading::Reading;
use crate::producers::upstream::request;
use crate::producers::upstream::scrub::Scrubber;
use crate::producers::upstream::{Target, UpstreamPool};
use runboard_api::clock::now_rfc3339;
use runboard_api::{DataAction, ErrorCode, RequestPhase, RunEvent, STEP_INTERRUPTED_ACTION, Step};

/// Chunks waiting for a slow client before the upstream is read further.
const CLIENT_BUFFER: usize = 64;

/// The response header that names the run a call was recorded in.
pub const RUN_ID_HEADER: &str = "x-runboard-run-id";

/// One body piece for the client: bytes, or an error that cuts the connection (as the
/// upstream's did).
pub type BodyPiece = Result<Bytes, std::io::Error>;

/// What the client is answered with before the body: the upstream's status and headers.
#[derive(Debug)]
pub struct Head {
    /// The upstream's status.
    pub status: StatusCode,
    /// The upstream's headers, hop-by-hop ones left out.
    pub headers: HeaderMap,
    /// The body, piece by piece as the upstream sends it.
    pub body: mpsc::Receiver<BodyPiece>,
    /// Bytes of the body handed to the client's connection so far.
    pub delivered: Arc<AtomicU64>,
}

/// Everything one call needs.
pub struct Exchange {
    /// What the client asked.
    pub call: ClientCall,
    /// The run it is a step of.
    pub run: Arc<ProxyRun>,
    /// Its number in that run.
    pub number: u64,
    /// Where it goes.
    pub target: Target,
    /// The body to send (the client's own, with an alias replaced by its model).
    pub body: Bytes,
    /// The client's `Accept`, passed on.
    pub accept: Option<HeaderValue>,
    /// The upstreams' HTTP client and settings.
    pub pool: UpstreamPool,
    /// Where the call's end is reported.
    pub sessions: Sessions,
    /// When the call came in (a failed call's span starts there).
    pub began: SystemTime,
}

/// Why a call stopped before its answer ended.
#[derive(Clone, Copy)]
enum Stop {
    ClientGone,
    Cancelled,
    Shutdown,
}

/// What became of a piece handed to the client.
enum Passed {
    /// It went, and brought tokens.
    Tokens,
    /// It went (or there was nothing to send).
    Bytes,
    /// The client's connection is gone.
    ClientGone,
}

impl Exchange {
    /// Runs the call: answers `head` once the upstream does (or with runboard's own error when
    /// it cannot be reached), relays the body, and reports the call's end to its run.
    pub async fn run(self, mut head: oneshot::Sender<Result<Head, Response>>) {
        let end = self.relay(&mut head).await;
        let ends_run = self.call.ends_run;
        self.sessions.end_call(&self.run, end, ends_run).await;
    }

    async fn relay(&self, head: &mut oneshot::Sender<Result<Head, Response>>) -> CallEnd {
        let ctx = &self.run.ctx;
        let spec = &self.target.upstream.spec;
        let intro = format!(
            "{} calls {} at {} (call {})",
            self.call.agent, self.target.asked, spec.name, self.number
        );
        self.narrate("info", "agent_start", &intro).await;
        let request = ctx.requests.start(&NewRequest {
            run_id: &ctx.run_id,
            agent: &self.call.agent,
            worker: Some(&self.call.worker),
            model: &self.target.asked,
            resolved_model: &self.target.model,
            streaming: self.call.stream,
            input_tokens: u64::try_from(self.call.prompt_chars / 4).unwrap_or(u64::MAX),
            upstream: Some(&spec.name),
        });
        let mut figures = LiveFigures {
            phase: RequestPhase::Queued,
            attempt: 1,
            output_tokens: 0,
            input_tokens: None,
            ttft_ms: None,
            tok_per_sec: None,
        };
        request.set_live(&figures);
        let _slot = match self.until(head, self.target.upstream.slot()).await {
            Ok(slot) => slot,
            Err(stop) => return self.stopped(stop, 0),
        };
        figures.phase = RequestPhase::WaitingForFirstToken;
        request.set_live(&figures);
        let sent_at = Instant::now();
        let response = match self.until(head, self.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(message)) => {
                let _ = std::mem::replace(head, oneshot::channel().0)
                    .send(Err(self.unreachable(&message)));
                return self
                    .failed(message, "upstream_unreachable".to_owned(), 0)
                    .await;
            }
            Err(stop) => return self.stopped(stop, 0),
        };
        let status = response.status();
        let kind = BodyKind::of(&response);
        let (body_tx, body_rx) = mpsc::channel(CLIENT_BUFFER);
        let delivered = Arc::new(AtomicU64::new(0));
        let content_length = (kind != BodyKind::Stream)
            .then(|| response.content_length())
            .flatten();
        let answer = Head {
            status: StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
            headers: self.passed_headers(response.headers(), content_length),
            body: body_rx,
            delivered: Arc::clone(&delivered),
        };
        if std::mem::replace(head, oneshot::channel().0)
            .send(Ok(answer))
            .is_err()
        {
            return self.stopped(Stop::ClientGone, 0);
        }
        let mut reader = BodyReader {
            exchange: self,
            answer: Answer::new(
                kind,
                status.as_u16(),
                Reading::new(sent_at, self.run.tokens_done()),
            ),
            request,
            figures,
            sent: 0,
            complete_at: None,
            content_length,
            delivered,
            scrubber: Scrubber::new(spec.secrets()),
        };
        let body = AnswerBody::new(response, self.pool.config().idle_timeout);
        reader.read(body, &body_tx).await
    }

    /// runboard's own 502 for an upstream it could not reach; it still names the run the
    /// call became.
    fn unreachable(&self, message: &str) -> Response {
        let failure = Failure::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamUnavailable,
            message,
        );
        let mut refusal = failure.into_response();
        if let Ok(run_id) = HeaderValue::from_str(&self.run.ctx.run_id) {
            refusal
                .headers_mut()
                .insert(HeaderName::from_static(RUN_ID_HEADER), run_id);
        }
        refusal
    }

    /// Sends the call upstream; the error says why it could not be.
    async fn send(&self) -> Result<reqwest::Response, String> {
        let spec = &self.target.upstream.spec;
        let path = self.call.endpoint.path();
        let mut request = request::post(&self.pool, spec, path, self.body.clone());
        if let Some(accept) = &self.accept {
            request = request.header(reqwest::header::ACCEPT, accept.as_bytes());
        }
        let upstream = &self.target.upstream;
        let streamed = self.call.stream;
        if streamed && upstream.streams.own_connection() {
            request = request.header(reqwest::header::CONNECTION, "close");
        }
        match request::send(&self.pool, spec, request).await {
            Ok(response) => {
                upstream.streams.heard(response.headers(), &spec.name);
                Ok(response)
            }
            Err(unsent) => {
                if streamed && unsent.broke_after_sending {
                    upstream.streams.broke(&spec.name);
                }
                Err(unsent.message)
            }
        }
    }

    /// The upstream's headers for the client, without the ones that describe one connection
    /// (the client's has its own framing), its key masked in any that quotes it, and with the
    /// run's id. A whole answer keeps its
    /// `Content-Length` (its bytes pass unchanged), so the client's framing is the upstream's.
    fn passed_headers(
        &self,
        upstream: &reqwest::header::HeaderMap,
        content_length: Option<u64>,
    ) -> HeaderMap {
        let secrets = self.target.upstream.spec.secrets();
        let mut headers = HeaderMap::new();
        for (name, value) in upstream {
            let hop = matches!(
                name.as_str(),
                "connection"
                    | "keep-alive"
                    | "proxy-authenticate"
                    | "proxy-connection"
                    | "te"
                    | "trailer"
                    | "transfer-encoding"
                    | "upgrade"
                    | "content-length"
            );
            if hop {
                continue;
            }
            let masked = secrets.mask(value.as_bytes());
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_str().as_bytes()),
                HeaderValue::from_bytes(masked.as_deref().unwrap_or(value.as_bytes())),
            ) {
                headers.append(name, value);
            }
        }
        if let Some(length) = content_length {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        if let Ok(run_id) = HeaderValue::from_str(&self.run.ctx.run_id) {
            headers.insert(HeaderName::from_static(RUN_ID_HEADER), run_id);
        }
        headers
    }

    /// Waits for `work` unless the client leaves, the run is cancelled or the server stops.
    async fn until<T>(
        &self,
        head: &mut oneshot::Sender<Result<Head, Response>>,
        work: impl Future<Output = T>,
    ) -> Result<T, Stop> {
        let ctx = &self.run.ctx;
        tokio::select! {
            () = head.closed() => Err(Stop::ClientGone),
            () = ctx.cancel.cancelled() => Err(Stop::Cancelled),
            () = ctx.shutdown.cancelled() => Err(Stop::Shutdown),
            done = work => Ok(done),
        }
    }

    fn stopped(&self, stop: Stop, tokens: u64) -> CallEnd {
        match stop {
            Stop::ClientGone => CallEnd::Cancelled(format!(
                "the client closed the connection during call {} of {} after {tokens} tokens",
                self.number, self.call.agent
            )),
            Stop::Cancelled => CallEnd::Cancelled("cancelled by request".to_owned()),
            Stop::Shutdown => CallEnd::Interrupted,
        }
    }

    /// The call failed with `message` after `tokens` output tokens: narrated, and told to the
    /// telemetry (no `step` event will describe it).
    async fn failed(&self, message: String, error_type: String, tokens: u64) -> CallEnd {
        self.narrate("error", "upstream_error", &message).await;
        let endpoint = format!("/v1{}", self.call.endpoint.path());
        self.run.ctx.recorder.telemetry().call_failed(
            &self.run.ctx.run_id,
            &FailedCall {
                endpoint: Some(&endpoint),
                model: &self.target.asked,
                upstream: &self.target.upstream.spec.name,
                agent: &self.call.agent,
                iteration: Some(self.number),
                stream: Some(self.call.stream),
                started: self.began,
                output_tokens: tokens,
                error_type,
                message: &message,
            },
        );
        CallEnd::Failed(message)
    }

    async fn narrate(&self, level: &str, action: &str, text: &str) {
        // A proxied call's record is best effort: the client's answer never waits on it.
        let _ = self.run.ctx.narrate(level, action, text).await;
    }
}

/// Reads the upstream's body to its end, passing each piece on before looking at it.
struct BodyReader<'a> {
    exchange: &'a Exchange,
    answer: Answer,
    request: crate::observe::active_requests::RequestGuard,
    figures: LiveFigures,
    /// Bytes passed to the client's channel.
    sent: u64,
    /// Where the answer was complete (the end of the piece with `[DONE]`, or the whole
    /// body's length), once it was.
    complete_at: Option<u64>,
    /// A whole answer's `Content-Length`.
    content_length: Option<u64>,
    /// Bytes the client's connection took from the channel.
    delivered: Arc<AtomicU64>,
    /// Keeps the upstream's key out of the body the client gets.
    scrubber: Scrubber,
}

impl BodyReader<'_> {
    async fn read(&mut self, mut body: AnswerBody, client: &mpsc::Sender<BodyPiece>) -> CallEnd {
        let exchange = self.exchange;
        let ctx = &exchange.run.ctx;
        let spec = &exchange.target.upstream.spec;
        let mut pace = Throttle::new(exchange.pool.config().update_every);
        loop {
            let next = tokio::select! {
                () = client.closed() => {
                    // A client may close as soon as it has read `[DONE]` (the `openai`
                    // package does), before the upstream's body has ended: that is a whole
                    // answer, not a client that left.
                    if self.answer_delivered() {
                        break;
                    }
                    return exchange.stopped(Stop::ClientGone, self.tokens());
                }
                () = ctx.cancel.cancelled() => {
                    let _ = client.try_send(Err(cut("the run was cancelled in runboard")));
                    return exchange.stopped(Stop::Cancelled, 0);
                }
                () = ctx.shutdown.cancelled() => {
                    let _ = client.try_send(Err(cut("runboard is shutting down")));
                    return exchange.stopped(Stop::Shutdown, 0);
                }
                () = pace.due(), if pace.held() => {
                    self.update_mid_answer();
                    pace.sent(Instant::now());
                    continue;
                }
                next = body.next() => next,
            };
            let bytes = match next {
                Ok(Some(bytes)) => body.join_ready(bytes).await,
                Ok(None) => break,
                Err(broken) => {
                    let _ = client.send(Err(cut(broken.client_reason()))).await;
                    self.update().await;
                    let message = broken.message(spec, self.tokens());
                    let error_type = broken.error_type().to_owned();
                    return exchange.failed(message, error_type, self.tokens()).await;
                }
            };
            let bytes = self.scrubber.pass(bytes);
            match self.pass_on(bytes, client).await {
                Passed::Tokens => {
                    if pace.tokens(Instant::now()) {
                        self.update_mid_answer();
                        pace.sent(Instant::now());
                    }
                }
                Passed::Bytes => {}
                Passed::ClientGone if self.answer_delivered() => break,
                Passed::ClientGone => {
                    return exchange.stopped(Stop::ClientGone, self.tokens());
                }
            }
        }
        // What the scrubber held back began like a key but the body ended before it was one.
        if let Some(tail) = self.scrubber.finish() {
            let _ = self.pass_on(tail, client).await;
        }
        self.finish().await
    }

    /// Output tokens of the answer so far.
    fn tokens(&self) -> u64 {
        self.answer.reading.meter.output_tokens().0
    }

    /// Hands `bytes` to the client (first: what runboard makes of them never delays them),
    /// then reads them.
    async fn pass_on(&mut self, bytes: Bytes, client: &mpsc::Sender<BodyPiece>) -> Passed {
        if bytes.is_empty() {
            return Passed::Bytes;
        }
        if client.send(Ok(bytes.clone())).await.is_err() {
            return Passed::ClientGone;
        }
        self.sent += bytes.len() as u64;
        // A whole answer or a refusal is complete at its length: a client that read it all
        // and closed before the upstream's body ended got its answer (a refusal's is its
        // error, and the run fails with it rather than counting as cancelled).
        if self.answer.kind() != BodyKind::Stream && self.content_length == Some(self.sent) {
            self.complete_at = Some(self.sent);
        }
        if self.take(&bytes).await {
            Passed::Tokens
        } else {
            Passed::Bytes
        }
    }

    /// Reads one piece of the body; whether it brought tokens.
    async fn take(&mut self, bytes: &[u8]) -> bool {
        let exchange = self.exchange;
        let spec = &exchange.target.upstream.spec;
        let took = self.answer.take(bytes, spec, &exchange.call.agent);
        if took.done {
            self.complete_at = Some(self.sent);
        }
        if let Some(warning) = &took.warning {
            exchange.narrate("warn", "upstream_chunk", warning).await;
        }
        took.tokens
    }

    /// Whether the client's connection took the whole answer before it closed.
    fn answer_delivered(&self) -> bool {
        let delivered = self.delivered.load(Ordering::Acquire);
        match self.complete_at {
            Some(at) => delivered >= at,
            // A whole answer or a refusal without a length: complete when all of it went and
            // it reads as one JSON document.
            None => {
                self.answer.kind() != BodyKind::Stream
                    && delivered >= self.sent
                    && self.sent > 0
                    && serde_json::from_slice::<serde::de::IgnoredAny>(self.answer.copy()).is_ok()
            }
        }
    }

    /// The body ended: the call's last update, and its figures or its failure.
    async fn finish(&mut self) -> CallEnd {
        let exchange = self.exchange;
        let spec = &exchange.target.upstream.spec;
        let end = self.answer.finish(spec);
        if let Err(Unanswered::Refused { status, message }) = end {
            // The conventions' `error.type` of an HTTP error: its status code.
            return exchange.failed(message, status.to_string(), 0).await;
        }
        self.update().await;
        // A 2xx answer that is not a completion went to the client as it was: the client
        // reads it; the call is still answered.
        if let Err(Unanswered::Failed(message)) = end {
            let tokens = self.tokens();
            return exchange
                .failed(message, "upstream_error".to_owned(), tokens)
                .await;
        }
        let reading = std::mem::replace(&mut self.answer.reading, Reading::new(Instant::now(), 0));
        let result = reading.result(Instant::now(), 1);
        let interrupted = result.interrupted;
        let ctx = &exchange.run.ctx;
        for call in &result.tool_calls {
            let call = call.event(&exchange.call.agent, exchange.number);
            let _ = ctx
                .recorder
                .event(
                    &ctx.run_id,
                    RunEvent::data(DataAction::ToolCall(call)),
                    now_rfc3339(),
                )
                .await;
        }
        let step = Step {
            figures: result.figures.clone(),
            agent: exchange.call.agent.clone(),
            iteration: Some(exchange.number),
            model: exchange.target.asked.clone(),
            resolved_model: exchange.target.model.clone(),
            upstream: spec.name.clone(),
            tries: 1,
            finish_reason: result.finish_reason.clone(),
            tokens_out: exchange.run.tokens_done() + result.figures.output_tokens,
            endpoint: Some(format!("/v1{}", exchange.call.endpoint.path())),
            stream: Some(exchange.call.stream),
            interrupted,
        };
        let _ = ctx
            .recorder
            .event(
                &ctx.run_id,
                RunEvent::data(DataAction::Step(Box::new(step))),
                now_rfc3339(),
            )
            .await;
        if interrupted {
            let text = interrupted_text(
                &exchange.call.agent,
                &format!("call {}", exchange.number),
                &spec.name,
                result.figures.output_tokens,
            );
            exchange
                .narrate("warn", STEP_INTERRUPTED_ACTION, &text)
                .await;
        }
        CallEnd::Answered {
            figures: result.figures,
            interrupted,
        }
    }

    /// A `node_update` while the answer streams: left out when the store is behind (the
    /// relay never waits for the record; the next update, and the last one, carry it all).
    fn update_mid_answer(&mut self) {
        let (ts, update) = self.next_update();
        let ctx = &self.exchange.run.ctx;
        ctx.recorder.update_or_skip(&ctx.run_id, update, ts);
    }

    /// Records a `node_update` with the call's latest text and counts, and its live figures.
    async fn update(&mut self) {
        let (ts, update) = self.next_update();
        let ctx = &self.exchange.run.ctx;
        let _ = ctx.recorder.event(&ctx.run_id, update, ts).await;
    }

    /// The call's latest text and counts as a `node_update` stamped now, with its live
    /// figures brought up to date on the way.
    fn next_update(&mut self) -> (String, RunEvent) {
        let exchange = self.exchange;
        let ts = now_rfc3339();
        let reading = &self.answer.reading;
        let update = reading.node_update(&exchange.call.agent, exchange.number, &ts);
        reading.live_figures(&mut self.figures);
        self.request.set_live(&self.figures);
        (ts, RunEvent::NodeUpdate(update))
    }
}

/// An error that cuts the client's connection, as the upstream's was cut.
fn cut(reason: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, reason.to_owned())
}
