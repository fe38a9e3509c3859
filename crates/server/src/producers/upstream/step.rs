//! One agent step on a real model: a streaming `POST /chat/completions`, read chunk by chunk
//! with the SSE crate's one-response reader, measured, reported as `node_update`s at most every
//! `update_every`, and tried again (up to three times) when the upstream is overloaded,
//! failing, unreachable, cut or silent.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::chunk;
use super::pace::Throttle;
use super::reading::{Reading, StepResult, Taken};
use super::request;
use super::retry::{self, MAX_TRIES, TryFailure};
use super::spec::UpstreamSpec;
use super::{Target, UpstreamPool};
use crate::events::recorder::Stopped;
use crate::observe::active_requests::{LiveFigures, NewRequest, RequestGuard};
use crate::producers::run_context::RunContext;
use runboard_api::clock::now_rfc3339;
use runboard_api::{RequestPhase, RunEvent};
use runboard_sse::{Frame, ResponseEvents, SseError};

/// How much of an error answer's body is read for its message.
const MAX_ERROR_BODY: usize = 4096;

/// One step to generate.
#[derive(Debug, Clone)]
pub struct StepPlan<'a> {
    /// The agent.
    pub agent: &'a str,
    /// Its iteration.
    pub iteration: u64,
    /// The request body without `model`, `stream` and `stream_options`, which are added here.
    pub body: Value,
}

/// Why a step did not produce its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepStop {
    /// It failed for good, with this message.
    Failed(String),
    /// The run was cancelled.
    Cancelled,
    /// The server is shutting down.
    Interrupted,
}

impl From<Stopped> for StepStop {
    fn from(_: Stopped) -> Self {
        Self::Interrupted
    }
}

/// A run's state across its steps.
pub struct RunState<'a> {
    /// The run.
    pub ctx: &'a RunContext,
    /// The upstreams.
    pub pool: &'a UpstreamPool,
    /// Where its requests go.
    pub target: &'a Target,
    /// Output tokens of the whole run so far (every try's, as the upstream produced them).
    pub tokens_out: u64,
}

/// How one try ended without a result.
enum TryEnd {
    Stop(StepStop),
    Failed(TryFailure),
}

impl From<StepStop> for TryEnd {
    fn from(stop: StepStop) -> Self {
        Self::Stop(stop)
    }
}

impl RunState<'_> {
    /// Generates one step, trying again on transient failures; each retry is narrated.
    pub async fn step(&mut self, plan: &StepPlan<'_>) -> Result<StepResult, StepStop> {
        let upstream = &self.target.upstream.spec;
        for attempt in 1..=MAX_TRIES {
            let failure = match self.try_once(plan, attempt).await {
                Ok(result) => return Ok(result),
                Err(TryEnd::Stop(stop)) => return Err(stop),
                Err(TryEnd::Failed(failure)) => failure,
            };
            let (message, retry_after) = match failure {
                TryFailure::Final(message) => {
                    return Err(StepStop::Failed(upstream.redact(&message)));
                }
                TryFailure::Transient {
                    message,
                    retry_after,
                } => (upstream.redact(&message), retry_after),
            };
            if attempt == MAX_TRIES {
                return Err(StepStop::Failed(format!(
                    "{message} (gave up after {MAX_TRIES} tries)"
                )));
            }
            let Some(wait) = retry::wait_before(attempt + 1, retry_after) else {
                return Err(StepStop::Failed(format!(
                    "{message}; it asks to be retried after more than {} s",
                    retry::MAX_RETRY_AFTER.as_secs()
                )));
            };
            let text = format!(
                "{}: {message}; try {} of {MAX_TRIES} in {:.1} s",
                plan.agent,
                attempt + 1,
                wait.as_secs_f64()
            );
            self.narrate("warn", "upstream_retry", &text).await?;
            self.pause(wait).await?;
        }
        unreachable!("the loop returns on its last try")
    }

    async fn try_once(&mut self, plan: &StepPlan<'_>, attempt: u32) -> Result<StepResult, TryEnd> {
        let ctx = self.ctx;
        let target = self.target;
        let spec = &target.upstream.spec;
        let mut body = plan.body.clone();
        if let Some(object) = body.as_object_mut() {
            object.insert("model".into(), json!(target.model));
            object.insert("stream".into(), json!(true));
            object.insert("stream_options".into(), json!({"include_usage": true}));
        }
        let prompt_chars = body.get("messages").map_or(0, |m| m.to_string().len());
        let request = ctx.requests.start(&NewRequest {
            run_id: &ctx.run_id,
            worker: None,
            agent: plan.agent,
            model: &target.asked,
            resolved_model: &target.model,
            streaming: true,
            input_tokens: u64::try_from(prompt_chars / 4).unwrap_or(u64::MAX),
            upstream: Some(&spec.name),
        });
        // Shown from the start: `queued` while the upstream's slots are all taken.
        let mut live = Live {
            request,
            figures: LiveFigures {
                phase: RequestPhase::Queued,
                attempt,
                output_tokens: 0,
                input_tokens: None,
                ttft_ms: None,
                tok_per_sec: None,
            },
        };
        live.request.set_live(&live.figures);
        let _slot = self.until_stopped(target.upstream.slot()).await?;
        live.figures.phase = RequestPhase::WaitingForFirstToken;
        live.request.set_live(&live.figures);
        let sent_at = Instant::now();
        let response = self.send(&body).await?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(self.refused(response).await);
        }
        let is_stream = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_stream {
            return self
                .whole_answer(plan, response, sent_at, attempt, &mut live)
                .await;
        }
        self.read_stream(plan, response, sent_at, attempt, &mut live)
            .await
    }

    /// Sends the request; a transport failure or silence is worth another try.
    async fn send(&self, body: &Value) -> Result<reqwest::Response, TryEnd> {
        let spec = &self.target.upstream.spec;
        let request = request::post(self.pool, spec, "/chat/completions", body.to_string())
            .header(reqwest::header::ACCEPT, "text/event-stream");
        self.until_stopped(request::send(self.pool, spec, request))
            .await?
            .map_err(transient)
    }

    /// Reads the event stream of one try to its end, reporting as it goes.
    async fn read_stream(
        &mut self,
        plan: &StepPlan<'_>,
        response: reqwest::Response,
        sent_at: Instant,
        attempt: u32,
        live: &mut Live,
    ) -> Result<StepResult, TryEnd> {
        let ctx = self.ctx;
        let spec = &self.target.upstream.spec;
        let idle = self.pool.config().idle_timeout;
        let mut reading = Reading::new(sent_at, self.tokens_out);
        let mut events = ResponseEvents::new(response, Some(idle));
        let mut pace = Throttle::new(self.pool.config().update_every);
        let stopped = async {
            tokio::select! {
                () = ctx.cancel.cancelled() => StepStop::Cancelled,
                () = ctx.shutdown.cancelled() => StepStop::Interrupted,
            }
        };
        tokio::pin!(stopped);
        loop {
            let frame = tokio::select! {
                stop = &mut stopped => return Err(stop.into()),
                () = pace.due(), if pace.held() => {
                    self.update(plan, &reading, live).await?;
                    pace.sent(Instant::now());
                    continue;
                }
                frame = events.next() => frame,
            };
            let data = match frame {
                None => break,
                Some(Ok(Frame::Event(event))) => event.data,
                Some(Ok(_)) => continue,
                Some(Err(error)) => {
                    if pace.held() {
                        self.update(plan, &reading, live).await?;
                    }
                    return Err(self.broken(&error, &reading));
                }
            };
            match reading.take_data(&data, Instant::now(), spec, plan.agent) {
                Taken::Done => break,
                Taken::Chunk(true) => {
                    self.tokens_out = reading.run_tokens();
                    if pace.tokens(Instant::now()) {
                        self.update(plan, &reading, live).await?;
                        pace.sent(Instant::now());
                    }
                }
                Taken::Chunk(false) | Taken::Skipped(None) => {}
                Taken::UpstreamError(message) => {
                    return Err(TryEnd::Failed(TryFailure::Final(message)));
                }
                Taken::Skipped(Some(warning)) => {
                    self.narrate("warn", "upstream_chunk", &warning).await?;
                }
            }
        }
        self.tokens_out = reading.run_tokens();
        // The latest text and counts always reach the clients, whatever the rate limit held.
        self.update(plan, &reading, live).await?;
        Ok(reading.result(Instant::now(), attempt))
    }

    /// A non-2xx answer: its message, and whether it is worth another try.
    async fn refused(&self, response: reqwest::Response) -> TryEnd {
        let spec = &self.target.upstream.spec;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, time::OffsetDateTime::now_utc()));
        let body = read_some(response).await;
        let message = spec.redact(&format!(
            "upstream {} answered HTTP {status}{}",
            spec.name,
            error_detail(&body, spec)
        ));
        TryEnd::Failed(if retry::transient_status(status) {
            TryFailure::Transient {
                message,
                retry_after,
            }
        } else {
            TryFailure::Final(message)
        })
    }

    /// A stream that broke or fell silent: worth another try.
    fn broken(&self, error: &SseError, reading: &Reading) -> TryEnd {
        let spec = &self.target.upstream.spec;
        let tokens = reading.meter.output_tokens().0;
        let message = match error {
            SseError::IdleTimeout { after, .. } => {
                request::silent(spec, after.as_secs_f64(), tokens)
            }
            other => format!(
                "the stream from upstream {} was cut after {tokens} tokens: {other}",
                spec.name
            ),
        };
        transient(message)
    }

    /// A 200 that is not a stream: a server that ignored `stream: true` and answered whole.
    async fn whole_answer(
        &mut self,
        plan: &StepPlan<'_>,
        response: reqwest::Response,
        sent_at: Instant,
        attempt: u32,
        live: &mut Live,
    ) -> Result<StepResult, TryEnd> {
        let spec = &self.target.upstream.spec;
        let body = self
            .until_stopped(response.bytes())
            .await?
            .map_err(|error| transient(format!("the answer broke off: {error}")))?;
        let value: Value = serde_json::from_slice(&body).map_err(|_| {
            TryEnd::Failed(TryFailure::Final(format!(
                "upstream {} answered neither an event stream nor a completion{}",
                spec.name,
                error_detail(&body, spec)
            )))
        })?;
        let message = &value["choices"][0]["message"];
        let text = |key: &str| message.get(key).and_then(Value::as_str).unwrap_or_default();
        let chunk = chunk::decode(
            &json!({
                "choices": [{"delta": {
                    "content": text("content"),
                    "reasoning_content": text("reasoning_content"),
                    "reasoning": text("reasoning"),
                }, "finish_reason": value["choices"][0]["finish_reason"]}],
                "usage": value.get("usage"),
            })
            .to_string(),
        )
        .map_err(|error| TryEnd::Failed(TryFailure::Final(error.to_string())))?;
        let mut reading = Reading::new(sent_at, self.tokens_out);
        reading.take(&chunk, Instant::now());
        self.tokens_out = reading.run_tokens();
        // One update with the whole text and count, as a stream's last one would be.
        self.update(plan, &reading, live).await?;
        Ok(reading.result(Instant::now(), attempt))
    }

    /// Records a `node_update` with the step's latest text and counts, and the request's
    /// live figures.
    async fn update(
        &self,
        plan: &StepPlan<'_>,
        reading: &Reading,
        live: &mut Live,
    ) -> Result<(), StepStop> {
        let ts = now_rfc3339();
        let update = RunEvent::NodeUpdate(reading.node_update(plan.agent, plan.iteration, &ts));
        self.ctx
            .recorder
            .event(&self.ctx.run_id, update, ts)
            .await
            .map_err(|_| StepStop::Interrupted)?;
        reading.live_figures(&mut live.figures);
        live.request.set_live(&live.figures);
        Ok(())
    }

    /// Records a narration line.
    pub async fn narrate(&self, level: &str, action: &str, text: &str) -> Result<(), StepStop> {
        Ok(self.ctx.narrate(level, action, text).await?)
    }

    async fn pause(&self, wait: Duration) -> Result<(), StepStop> {
        self.until_stopped(tokio::time::sleep(wait)).await
    }

    /// Waits for `work` unless the run is cancelled or the server stops first; dropping the
    /// work drops its connection, which is how the upstream learns of it.
    async fn until_stopped<T>(&self, work: impl Future<Output = T>) -> Result<T, StepStop> {
        tokio::select! {
            () = self.ctx.cancel.cancelled() => Err(StepStop::Cancelled),
            () = self.ctx.shutdown.cancelled() => Err(StepStop::Interrupted),
            done = work => Ok(done),
        }
    }
}

/// A request in flight and what the active-requests view last heard of it.
struct Live {
    request: RequestGuard,
    figures: LiveFigures,
}

fn transient(message: String) -> TryEnd {
    TryEnd::Failed(TryFailure::Transient {
        message,
        retry_after: None,
    })
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of an answer's body.
async fn read_some(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match tokio::time::timeout(Duration::from_secs(2), response.chunk()).await {
            Ok(Ok(Some(bytes))) => body.extend_from_slice(&bytes),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    body
}

/// `": message"` from an error answer's body (the `OpenAI` error shape, or its text), or
/// nothing when it says nothing. At most 300 characters, cut after `spec`'s secrets are
/// blotted out, so no part of a key survives the cut.
pub fn error_detail(body: &[u8], spec: &UpstreamSpec) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| {
            chunk::error_message(&value).or_else(|| {
                value
                    .get("detail")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let message = spec.redact_cut(&message, 300);
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}
