//! One agent step on a real model: a streaming `POST /chat/completions`, read chunk by chunk
//! with the SSE crate's one-response reader, measured, reported as `node_update`s at most every
//! `update_every`, and tried again (up to three times) when the upstream is overloaded,
//! failing, unreachable, cut or silent.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::answer::{Answer, AnswerBody, BodyKind, Unanswered};
use super::pace::Throttle;
use super::reading::{Reading, StepResult};
use super::request;
use super::retry::{self, MAX_TRIES, TryFailure};
use super::{Target, UpstreamPool};
use crate::events::recorder::Stopped;
use crate::observe::active_requests::{LiveFigures, NewRequest, RequestGuard};
use crate::producers::run_context::RunContext;
use runboard_api::clock::now_rfc3339;
use runboard_api::{RequestPhase, RunEvent};

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
    /// It failed for good.
    Failed(StepFailure),
    /// The run was cancelled.
    Cancelled,
    /// The server is shutting down.
    Interrupted,
}

/// A step that failed for good: why, for people, and the kind of failure as OpenTelemetry's
/// `error.type` names it (a refusal's HTTP status, `upstream_error`, `upstream_cut`,
/// `upstream_timeout`, `upstream_unreachable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// What happened (the upstream's own message where it gave one).
    pub message: String,
    /// The kind of failure.
    pub error_type: String,
}

impl StepFailure {
    /// A failure of the run itself rather than of one call: `upstream_error`.
    pub fn upstream_error(message: String) -> Self {
        Self {
            message,
            error_type: UPSTREAM_ERROR.to_owned(),
        }
    }
}

/// `error.type` of an answer that failed otherwise than by its status or its connection.
const UPSTREAM_ERROR: &str = "upstream_error";

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

/// How one try ended without a result; a failure with its `error.type`.
enum TryEnd {
    Stop(StepStop),
    Failed(TryFailure, String),
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
            let (failure, error_type) = match self.try_once(plan, attempt).await {
                Ok(result) => return Ok(result),
                Err(TryEnd::Stop(stop)) => return Err(stop),
                Err(TryEnd::Failed(failure, error_type)) => (failure, error_type),
            };
            let failed = |message: String| {
                StepStop::Failed(StepFailure {
                    message,
                    error_type: error_type.clone(),
                })
            };
            let (message, retry_after) = match failure {
                TryFailure::Final(message) => return Err(failed(upstream.redact(&message))),
                TryFailure::Transient {
                    message,
                    retry_after,
                } => (upstream.redact(&message), retry_after),
            };
            if attempt == MAX_TRIES {
                return Err(failed(format!(
                    "{message} (gave up after {MAX_TRIES} tries)"
                )));
            }
            let Some(wait) = retry::wait_before(attempt + 1, retry_after) else {
                return Err(failed(format!(
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
        let kind = BodyKind::of(&response);
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, time::OffsetDateTime::now_utc()));
        let mut answer = Answer::new(
            kind,
            response.status().as_u16(),
            Reading::new(sent_at, self.tokens_out),
        );
        let mut body = AnswerBody::new(response, self.pool.config().idle_timeout);
        self.read(plan, &mut body, &mut answer, &mut live).await?;
        match answer.finish(spec) {
            Ok(()) => {}
            Err(Unanswered::Refused { status, message }) => {
                let failure = if retry::transient_status(status) {
                    TryFailure::Transient {
                        message,
                        retry_after,
                    }
                } else {
                    TryFailure::Final(message)
                };
                // The conventions' `error.type` of an HTTP error: its status code.
                return Err(TryEnd::Failed(failure, status.to_string()));
            }
            Err(Unanswered::Failed(message) | Unanswered::NotACompletion(message)) => {
                return Err(final_error(message));
            }
        }
        self.tokens_out = answer.reading.run_tokens();
        // The latest text and counts always reach the clients, whatever the rate limit held
        // (and a whole answer's only update says all of it, as a stream's last one would).
        self.update(plan, &answer.reading, &mut live).await?;
        Ok(answer.reading.result(Instant::now(), attempt))
    }

    /// Sends the request; a transport failure or silence is worth another try.
    async fn send(&self, body: &Value) -> Result<reqwest::Response, TryEnd> {
        let spec = &self.target.upstream.spec;
        let request = request::post(self.pool, spec, "/chat/completions", body.to_string())
            .header(reqwest::header::ACCEPT, "text/event-stream");
        self.until_stopped(request::send(self.pool, spec, request))
            .await?
            .map_err(|unsent| transient(unsent.message, "upstream_unreachable"))
    }

    /// Reads one try's answer until it is complete (`[DONE]`, its body's end, or a refusal's
    /// message kept), reporting a stream's progress as it goes.
    async fn read(
        &mut self,
        plan: &StepPlan<'_>,
        body: &mut AnswerBody,
        answer: &mut Answer,
        live: &mut Live,
    ) -> Result<(), TryEnd> {
        let spec = &self.target.upstream.spec;
        let mut pace = Throttle::new(self.pool.config().update_every);
        loop {
            let next = tokio::select! {
                stop = self.stopped() => return Err(stop.into()),
                () = pace.due(), if pace.held() => {
                    self.update(plan, &answer.reading, live).await?;
                    pace.sent(Instant::now());
                    continue;
                }
                next = body.next() => next,
            };
            let bytes = match next {
                Ok(Some(bytes)) => body.join_ready(bytes).await,
                Ok(None) => return Ok(()),
                Err(broken) => {
                    if pace.held() {
                        self.update(plan, &answer.reading, live).await?;
                    }
                    let tokens = answer.reading.meter.output_tokens().0;
                    return Err(transient(broken.message(spec, tokens), broken.error_type()));
                }
            };
            let took = answer.take(&bytes, spec, plan.agent);
            if let Some(warning) = &took.warning {
                self.narrate("warn", "upstream_chunk", warning).await?;
            }
            if let Some(message) = answer.failure() {
                return Err(final_error(message.to_owned()));
            }
            if took.tokens {
                self.tokens_out = answer.reading.run_tokens();
                if pace.tokens(Instant::now()) {
                    self.update(plan, &answer.reading, live).await?;
                    pace.sent(Instant::now());
                }
            }
            if took.done || took.enough {
                return Ok(());
            }
        }
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

    /// Resolves when the run is cancelled or the server stops.
    async fn stopped(&self) -> StepStop {
        tokio::select! {
            () = self.ctx.cancel.cancelled() => StepStop::Cancelled,
            () = self.ctx.shutdown.cancelled() => StepStop::Interrupted,
        }
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

fn transient(message: String, error_type: &str) -> TryEnd {
    TryEnd::Failed(
        TryFailure::Transient {
            message,
            retry_after: None,
        },
        error_type.to_owned(),
    )
}

/// A try that failed in a way another would repeat: an error frame, an answer that is not one.
fn final_error(message: String) -> TryEnd {
    TryEnd::Failed(TryFailure::Final(message), UPSTREAM_ERROR.to_owned())
}
