//! Runs made into traces as their events are recorded: a root span per run, from its creation
//! to its end, and a child per step. A step the producer measured (a `step` event: a model
//! call of a run on a real model, or a proxied call) becomes a span with its own figures; a
//! synthetic run's steps are read from its agent changes (`node_update`).
//!
//! Spans are made when they end, with the times they had, so a step that a `step` event later
//! describes exactly is never sent twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use runboard_api::{DataAction, NodeUpdate, RunEvent, RunStatus, RunSummary, Step};

use super::gen_ai::{self, Call, FailedCall, Instruments};

/// What a run's open trace holds until the run ends.
struct OpenRun {
    /// The context holding the run's root span.
    root: Context,
    /// Its worker, repeated on each step for searching.
    worker: Option<String>,
    /// The model a synthetic run generates with.
    model: Option<String>,
    /// The run's output tokens so far.
    tokens: u64,
    /// Whether its steps come as `step` events.
    measured: bool,
    /// The synthetic step going on.
    step: Option<OpenStep>,
    /// When its last event was recorded: where a synthetic step starts.
    last_seen: SystemTime,
    /// The error it failed with.
    error: Option<String>,
}

impl OpenRun {
    /// What a step's span hangs on, to make it with the table let go.
    fn parent(&self) -> Parent {
        Parent {
            root: self.root.clone(),
            worker: self.worker.clone(),
            model: self.model.clone(),
            tokens: self.tokens,
        }
    }

    /// Follows a `node_update`: a synthetic step begins at an agent change (the one before
    /// it ends, given back), and the tokens move on.
    fn progress(&mut self, update: &NodeUpdate, now: SystemTime) -> Option<Ending> {
        let mut ending = None;
        if !self.measured
            && let Some(agent) = &update.agent
        {
            let same = self
                .step
                .as_ref()
                .is_some_and(|step| step.agent == *agent && step.iteration == update.iteration);
            if !same {
                let next = OpenStep {
                    agent: agent.clone(),
                    iteration: update.iteration,
                    started: self.last_seen,
                    tokens_before: self.tokens,
                    first_token: None,
                    last_token: None,
                };
                ending = self.step.replace(next).map(|step| Ending::Step {
                    parent: self.parent(),
                    step,
                });
            }
        }
        if let Some(tokens) = update.tokens_out
            && tokens > self.tokens
        {
            self.tokens = tokens;
            if let Some(step) = &mut self.step {
                step.first_token.get_or_insert((now, tokens));
                step.last_token = Some(now);
            }
        }
        ending
    }
}

/// What a step's span needs of its run.
struct Parent {
    root: Context,
    worker: Option<String>,
    model: Option<String>,
    /// The run's output tokens when the step ended.
    tokens: u64,
}

/// What an event ended, to be made into spans once the table is let go.
enum Ending {
    /// A synthetic step.
    Step { parent: Parent, step: OpenStep },
    /// A step the producer measured.
    Measured { parent: Parent, step: Box<Step> },
    /// The run.
    Run {
        open: Box<OpenRun>,
        status: RunStatus,
        message: Option<String>,
    },
}

/// A synthetic run's step, between two agent changes.
struct OpenStep {
    agent: String,
    iteration: Option<u32>,
    started: SystemTime,
    tokens_before: u64,
    first_token: Option<(SystemTime, u64)>,
    last_token: Option<SystemTime>,
}

/// Every open run's trace, and what makes and measures spans.
pub(super) struct RunSpans {
    tracer: SdkTracer,
    metrics: Instruments,
    runs: Mutex<HashMap<String, OpenRun>>,
}

impl RunSpans {
    /// Spans from `tracer`, calls measured into `metrics`.
    pub fn new(tracer: SdkTracer, metrics: Instruments) -> Self {
        Self {
            tracer,
            metrics,
            runs: Mutex::new(HashMap::new()),
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, OpenRun>> {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a run's trace (or names the run on one already open).
    pub fn run_created(&self, run: &RunSummary) {
        let now = SystemTime::now();
        let mut runs = self.runs();
        let open = runs
            .entry(run.run_id.clone())
            .or_insert_with(|| self.open(&run.run_id, now));
        let root = open.root.span();
        if let Some(worker) = &run.worker {
            root.update_name(format!("invoke_agent {worker}"));
            root.set_attribute(KeyValue::new("gen_ai.agent.name", worker.clone()));
            root.set_attribute(KeyValue::new("runboard.worker", worker.clone()));
            open.worker = Some(worker.clone());
        }
        if let Some(name) = &run.launched_by {
            root.set_attribute(KeyValue::new("runboard.launched_by", name.clone()));
        }
        // As stored: with `--redact`, the marker that stands for the withheld prompt.
        root.set_attribute(KeyValue::new("runboard.task", run.task.clone()));
    }

    fn open(&self, run_id: &str, now: SystemTime) -> OpenRun {
        let span = self
            .tracer
            .span_builder("invoke_agent")
            .with_kind(SpanKind::Internal)
            .with_start_time(now)
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                KeyValue::new("runboard.run.id", run_id.to_owned()),
            ])
            .start_with_context(&self.tracer, &Context::new());
        OpenRun {
            root: Context::new().with_span(span),
            worker: None,
            model: None,
            tokens: 0,
            measured: false,
            step: None,
            last_seen: now,
            error: None,
        }
    }

    /// The model a synthetic run generates with.
    pub fn run_model(&self, run_id: &str, model: &str) {
        let now = SystemTime::now();
        let mut runs = self.runs();
        let open = runs
            .entry(run_id.to_owned())
            .or_insert_with(|| self.open(run_id, now));
        open.model = Some(model.to_owned());
    }

    /// Follows an event of a run. Spans are made and metrics recorded after the table of
    /// open runs is let go, so the events of other runs do not wait for them.
    pub fn observe(&self, run_id: &str, event: &RunEvent) {
        if let RunEvent::RunCreated(run) = event {
            self.run_created(run);
            return;
        }
        let now = SystemTime::now();
        let ending = self.follow(run_id, event, now);
        match ending {
            Some(Ending::Step { parent, step }) => self.end_step(run_id, &parent, step, now, None),
            Some(Ending::Measured { parent, step }) => {
                self.measured_step(run_id, &parent, &step, now);
            }
            Some(Ending::Run {
                open,
                status,
                message,
            }) => self.end_run(run_id, *open, status, message, now),
            None => {}
        }
    }

    /// Takes `event` into the run's open trace, and gives back what it ended.
    fn follow(&self, run_id: &str, event: &RunEvent, now: SystemTime) -> Option<Ending> {
        let mut runs = self.runs();
        // A run this server did not open (recovered at start, or not made here) has no root
        // to hang steps on; its end is not worth a trace of its own.
        let open = runs.get_mut(run_id)?;
        let ending = match event {
            RunEvent::Status(change) if change.status == RunStatus::Running => {
                open.root
                    .span()
                    .add_event_with_timestamp("running", now, Vec::new());
                None
            }
            RunEvent::NodeUpdate(update) => open.progress(update, now),
            RunEvent::Data(data) => match data.decode() {
                Ok(DataAction::Step(step)) => {
                    open.measured = true;
                    open.step = None;
                    open.tokens = open.tokens.max(step.tokens_out);
                    Some(Ending::Measured {
                        parent: open.parent(),
                        step,
                    })
                }
                Ok(DataAction::RunMetrics(metrics)) => {
                    let root = open.root.span();
                    root.set_attribute(KeyValue::new("runboard.steps", signed(metrics.steps)));
                    root.set_attribute(KeyValue::new(
                        "runboard.input_tokens",
                        signed(metrics.prompt_tokens),
                    ));
                    None
                }
                _ => None,
            },
            RunEvent::Error(error) => {
                open.error = Some(error.message.clone());
                None
            }
            RunEvent::Status(change) if change.status.is_finished() => {
                return runs.remove(run_id).map(|open| Ending::Run {
                    open: Box::new(open),
                    status: change.status,
                    message: change.message.clone(),
                });
            }
            RunEvent::StreamEnd(_) => {
                return runs.remove(run_id).map(|open| Ending::Run {
                    open: Box::new(open),
                    status: RunStatus::Completed,
                    message: None,
                });
            }
            _ => None,
        };
        open.last_seen = now;
        ending
    }

    /// Ends the traces of the runs still going (the server is stopping; they stay `running`
    /// in the store and are failed at its next start).
    pub fn end_all_open(&self) {
        let now = SystemTime::now();
        let open: Vec<(String, OpenRun)> = self.runs().drain().collect();
        for (run_id, mut run) in open {
            run.error = Some("the server stopped while the run was going on".to_owned());
            self.end_run(&run_id, run, RunStatus::Running, None, now);
        }
    }

    /// Another instance took the run over (this one's lease had expired): nothing more of it
    /// is recorded here, so its trace ends now as interrupted, saying why.
    pub fn run_lost(&self, run_id: &str) {
        let Some(mut open) = self.runs().remove(run_id) else {
            return;
        };
        open.error =
            Some("another instance took the run over (this one's lease had expired)".to_owned());
        self.end_run(run_id, open, RunStatus::Running, None, SystemTime::now());
    }

    fn end_run(
        &self,
        run_id: &str,
        mut open: OpenRun,
        status: RunStatus,
        message: Option<String>,
        now: SystemTime,
    ) {
        let failed = matches!(status, RunStatus::Failed | RunStatus::Running);
        let error_type = failed.then(|| status_error_type(status).to_owned());
        if let Some(step) = open.step.take() {
            self.end_step(run_id, &open.parent(), step, now, error_type.clone());
        }
        let root = open.root.span();
        root.set_attribute(KeyValue::new(
            "runboard.status",
            if status == RunStatus::Running {
                "interrupted"
            } else {
                status.as_str()
            },
        ));
        root.set_attribute(KeyValue::new("runboard.output_tokens", signed(open.tokens)));
        let description = open.error.or(message);
        match (status, error_type) {
            (RunStatus::Completed, _) => root.set_status(Status::Ok),
            (_, Some(error_type)) => {
                root.set_attribute(KeyValue::new("error.type", error_type));
                root.set_status(Status::error(description.unwrap_or_default()));
            }
            (_, None) => {
                if let Some(message) = description {
                    root.set_attribute(KeyValue::new("runboard.status_message", message));
                }
            }
        }
        root.end_with_timestamp(now);
    }

    /// Ends a synthetic step, as a span and in the metrics.
    fn end_step(
        &self,
        run_id: &str,
        parent: &Parent,
        step: OpenStep,
        now: SystemTime,
        error_type: Option<String>,
    ) {
        let since = |from: SystemTime, to: SystemTime| {
            to.duration_since(from)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64()
        };
        let output_tokens = parent.tokens - step.tokens_before;
        let time_per_output_token = match (step.first_token, step.last_token) {
            (Some((first, at_first)), Some(last)) if parent.tokens > at_first => {
                #[allow(clippy::cast_precision_loss)] // Token counts far below 2^52.
                let per_token = since(first, last) / (parent.tokens - at_first) as f64;
                Some(per_token)
            }
            _ => None,
        };
        let call = Call {
            operation: "chat",
            provider: gen_ai::SYNTHETIC,
            request_model: parent
                .model
                .clone()
                .unwrap_or_else(|| "synthetic".to_owned()),
            response_model: None,
            input_tokens: None,
            output_tokens,
            duration: since(step.started, now),
            time_to_first_token: step.first_token.map(|(at, _)| since(step.started, at)),
            time_per_output_token,
            finish_reason: None,
            upstream: None,
            error_type,
        };
        let mut attributes = vec![KeyValue::new("gen_ai.agent.name", step.agent)];
        if let Some(iteration) = step.iteration {
            attributes.push(KeyValue::new("runboard.iteration", i64::from(iteration)));
        }
        let ended = Ended {
            at: now,
            message: None,
        };
        self.send_call(run_id, parent, &call, step.started, ended, attributes);
    }

    /// A step the producer measured: its span runs from the request to the answer's end.
    fn measured_step(&self, run_id: &str, parent: &Parent, step: &Step, now: SystemTime) {
        let figures = &step.figures;
        let seconds = |ms: f64| ms / 1000.0;
        let call = Call {
            operation: gen_ai::operation_of(step.endpoint.as_deref()),
            provider: gen_ai::OPENAI_COMPATIBLE,
            request_model: step.model.clone(),
            response_model: Some(step.resolved_model.clone()).filter(|model| !model.is_empty()),
            input_tokens: figures.prompt_tokens,
            output_tokens: figures.output_tokens,
            duration: seconds(figures.duration_ms),
            time_to_first_token: figures.ttft_ms.map(seconds),
            time_per_output_token: figures.tpot_ms.map(seconds),
            finish_reason: step.finish_reason.clone(),
            upstream: Some(step.upstream.clone()).filter(|name| !name.is_empty()),
            error_type: None,
        };
        let started = now
            .checked_sub(Duration::from_secs_f64(call.duration.max(0.0)))
            .unwrap_or(now);
        let mut attributes = Vec::new();
        if !step.agent.is_empty() {
            attributes.push(KeyValue::new("gen_ai.agent.name", step.agent.clone()));
        }
        if let Some(iteration) = step.iteration {
            attributes.push(KeyValue::new("runboard.iteration", signed(iteration)));
        }
        attributes.push(KeyValue::new("runboard.tries", i64::from(step.tries)));
        attributes.push(KeyValue::new(
            "runboard.output_tokens_estimated",
            figures.estimated,
        ));
        if let Some(stream) = step.stream {
            attributes.push(KeyValue::new("gen_ai.request.stream", stream));
        }
        // The inter-token latency's median and 99th percentile and the decode rate, as the
        // step measured them (seconds, tokens a second).
        for (key, figure) in [
            ("runboard.itl_p50", figures.itl_p50_ms.map(seconds)),
            ("runboard.itl_p99", figures.itl_p99_ms.map(seconds)),
            ("runboard.output_tokens_per_second", figures.tok_per_sec),
        ] {
            if let Some(figure) = figure {
                attributes.push(KeyValue::new(key, figure));
            }
        }
        if let Some(tokens) = figures.reasoning_tokens {
            attributes.push(KeyValue::new(
                "gen_ai.usage.reasoning_tokens",
                signed(tokens),
            ));
        }
        if step.interrupted {
            attributes.push(KeyValue::new("runboard.interrupted", true));
        }
        let ended = Ended {
            at: now,
            message: None,
        };
        self.send_call(run_id, parent, &call, started, ended, attributes);
    }

    /// A call that failed before its answer was whole: a span in error from its start to now,
    /// and the metrics with its `error.type`. It is the run's measured step from then on, so
    /// no synthetic step stands for it when the run ends.
    pub fn call_failed(&self, run_id: &str, failed: &FailedCall<'_>) {
        let now = SystemTime::now();
        let parent = {
            let mut runs = self.runs();
            let Some(open) = runs.get_mut(run_id) else {
                return;
            };
            open.measured = true;
            open.step = None;
            open.last_seen = now;
            open.parent()
        };
        let call = Call {
            operation: gen_ai::operation_of(failed.endpoint),
            provider: gen_ai::OPENAI_COMPATIBLE,
            request_model: failed.model.to_owned(),
            response_model: None,
            input_tokens: None,
            output_tokens: failed.output_tokens,
            duration: now
                .duration_since(failed.started)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64(),
            time_to_first_token: None,
            time_per_output_token: None,
            finish_reason: None,
            upstream: Some(failed.upstream.to_owned()).filter(|name| !name.is_empty()),
            error_type: Some(failed.error_type.clone()),
        };
        let mut attributes = Vec::new();
        if !failed.agent.is_empty() {
            attributes.push(KeyValue::new("gen_ai.agent.name", failed.agent.to_owned()));
        }
        if let Some(iteration) = failed.iteration {
            attributes.push(KeyValue::new("runboard.iteration", signed(iteration)));
        }
        if let Some(stream) = failed.stream {
            attributes.push(KeyValue::new("gen_ai.request.stream", stream));
        }
        let ended = Ended {
            at: now,
            message: Some(failed.message),
        };
        self.send_call(run_id, &parent, &call, failed.started, ended, attributes);
    }

    /// Makes a call's span under the run's root, with its times, and records its metrics.
    fn send_call(
        &self,
        run_id: &str,
        parent: &Parent,
        call: &Call,
        started: SystemTime,
        ended: Ended<'_>,
        extra: Vec<KeyValue>,
    ) {
        self.metrics.record(call);
        let mut attributes = call.span_attributes();
        attributes.extend(extra);
        attributes.push(KeyValue::new("runboard.run.id", run_id.to_owned()));
        if let Some(worker) = &parent.worker {
            attributes.push(KeyValue::new("runboard.worker", worker.clone()));
        }
        let span = self
            .tracer
            .span_builder(call.span_name())
            .with_kind(SpanKind::Client)
            .with_start_time(started)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent.root);
        let cx = Context::new().with_span(span);
        let span = cx.span();
        if let Some(error_type) = &call.error_type {
            let description = ended.message.unwrap_or(error_type);
            span.set_status(Status::error(description.to_owned()));
        }
        span.end_with_timestamp(ended.at);
    }
}

/// When a call's span ends, and the message of its error status when it has one to give
/// (else the status says its `error.type`).
#[derive(Clone, Copy)]
struct Ended<'a> {
    at: SystemTime,
    message: Option<&'a str>,
}

/// The `error.type` of a run that ended badly.
fn status_error_type(status: RunStatus) -> &'static str {
    if status == RunStatus::Running {
        "interrupted"
    } else {
        "run_failed"
    }
}

/// An attribute's integer (OpenTelemetry's are signed).
fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::super::queue::{SpanQueue, Waiting};

    /// Spans made into a queue the test reads, and the provider that must outlive them.
    fn run_spans() -> (RunSpans, Waiting, SdkTracerProvider) {
        let (queue, waiting) =
            SpanQueue::new(64, prometheus_client::metrics::counter::Counter::default());
        let provider = SdkTracerProvider::builder()
            .with_span_processor(queue)
            .build();
        let meters = opentelemetry_sdk::metrics::SdkMeterProvider::default();
        let metrics = Instruments::new(&opentelemetry::metrics::MeterProvider::meter(
            &meters, "test",
        ));
        (
            RunSpans::new(provider.tracer("test"), metrics),
            waiting,
            provider,
        )
    }

    fn attribute(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    #[test]
    fn a_run_taken_over_by_another_instance_ends_its_trace_here_as_interrupted() {
        let (spans, mut waiting, _provider) = run_spans();
        spans.run_created(&RunSummary::new("r1", "t", RunStatus::Queued));
        spans.observe("r1", &RunEvent::status(RunStatus::Running, None));
        spans.run_created(&RunSummary::new("r2", "t", RunStatus::Queued));
        assert!(
            waiting.take_all().is_empty(),
            "nothing ends while runs go on"
        );

        spans.run_lost("r1");
        let ended = waiting.take_all();
        assert_eq!(ended.len(), 1, "{ended:#?}");
        let root = &ended[0];
        assert_eq!(attribute(root, "runboard.run.id").as_deref(), Some("r1"));
        assert_eq!(
            attribute(root, "runboard.status").as_deref(),
            Some("interrupted")
        );
        assert_eq!(
            attribute(root, "error.type").as_deref(),
            Some("interrupted")
        );
        let Status::Error { description } = &root.status else {
            panic!("a lost run's trace ends in error: {:?}", root.status);
        };
        assert!(
            description.contains("another instance took the run over"),
            "{description}"
        );

        // What the writer still held of it makes nothing more; the other run is untouched.
        spans.observe("r1", &RunEvent::status(RunStatus::Completed, None));
        spans.run_lost("r1");
        assert!(waiting.take_all().is_empty());
        spans.observe("r2", &RunEvent::status(RunStatus::Completed, None));
        let ended = waiting.take_all();
        assert_eq!(ended.len(), 1);
        assert_eq!(
            attribute(&ended[0], "runboard.run.id").as_deref(),
            Some("r2")
        );
        assert_eq!(ended[0].status, Status::Ok);
    }
}
