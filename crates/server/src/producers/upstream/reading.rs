//! What one request's answer has given so far: its text and reasoning, its tool calls merged by
//! index, and its measurements; and the `node_update` and live request figures that say it.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::chunk::{self, Chunk, ChunkError};
use super::meter::{StepFigures, StepMeter};
use super::spec::UpstreamSpec;
use crate::observe::active_requests::LiveFigures;
use crate::producers::run_context::{SNIPPET_CHARS, tail};
use runboard_api::{NodeUpdate, RequestPhase};

/// A tool call, its pieces merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    /// Its position among the step's calls.
    pub index: u64,
    /// The call's id.
    pub id: Option<String>,
    /// The function's name.
    pub name: String,
    /// The arguments' JSON text.
    pub arguments: String,
}

impl ToolCall {
    /// The `tool_call` data event of this call, made by `agent` in `iteration`.
    pub fn event(&self, agent: &str, iteration: u64) -> runboard_api::ToolCall {
        runboard_api::ToolCall {
            agent: agent.to_owned(),
            iteration: Some(iteration),
            index: self.index,
            id: self.id.clone(),
            name: self.name.clone(),
            arguments: self.arguments.clone(),
        }
    }
}

/// What a step produced.
#[derive(Debug, Clone, Default)]
pub struct StepResult {
    /// The answer text (the reasoning went out in `node_update`s, and is not context for
    /// later steps).
    pub text: String,
    /// Tool calls, by index.
    pub tool_calls: Vec<ToolCall>,
    /// Its measurements.
    pub figures: StepFigures,
    /// Why generation stopped, when the server said.
    pub finish_reason: Option<String>,
    /// The server ended the answer (`[DONE]`) without a finish reason: interrupted.
    pub interrupted: bool,
    /// Which try produced it.
    pub tries: u32,
}

/// The most text kept of one step's answer (and of its reasoning); tokens past it are still
/// counted. `max_tokens` keeps real steps far below it.
const MAX_STEP_TEXT: usize = 512 * 1024;

/// What one try's stream has given so far.
pub struct Reading {
    /// The step's measurements.
    pub meter: StepMeter,
    /// The run's tokens before this try.
    pub base: u64,
    /// Answer text.
    pub text: String,
    /// Reasoning text, kept apart from the answer.
    pub reasoning: String,
    tool_calls: BTreeMap<u64, ToolCall>,
    finish_reason: Option<String>,
    /// Whether the stream said `[DONE]`.
    done: bool,
    /// Whether a malformed chunk was told already (once per try is enough).
    warned: bool,
}

/// What one `data:` field of an answer's stream was, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// `[DONE]`: the server ended the answer itself.
    Done,
    /// A chunk; `true` when it carried tokens.
    Chunk(bool),
    /// An error the upstream reported inside its stream: the message to fail with, redacted.
    UpstreamError(String),
    /// A chunk that could not be read, skipped: the warning to narrate, the first time only.
    Skipped(Option<String>),
}

impl Reading {
    /// Nothing read yet of a request sent at `sent_at`, in a run that had `base` tokens.
    pub fn new(sent_at: Instant, base: u64) -> Self {
        Self {
            meter: StepMeter::new(sent_at),
            base,
            text: String::new(),
            reasoning: String::new(),
            tool_calls: BTreeMap::new(),
            finish_reason: None,
            done: false,
            warned: false,
        }
    }

    /// The stream said `[DONE]`: the server ended the answer itself (not a cut connection).
    pub fn saw_done(&mut self) {
        self.done = true;
    }

    /// Reads one `data:` field of the stream of `spec`'s answer to `agent`, received at `at`:
    /// the one reading of a stream's events, for generated runs and proxied calls alike.
    pub fn take_data(
        &mut self,
        data: &str,
        at: Instant,
        spec: &UpstreamSpec,
        agent: &str,
    ) -> Taken {
        if data.trim() == "[DONE]" {
            self.saw_done();
            return Taken::Done;
        }
        match chunk::decode(data) {
            Ok(chunk) => Taken::Chunk(self.take(&chunk, at)),
            Err(ChunkError::Upstream(message)) => Taken::UpstreamError(spec.redact(&format!(
                "upstream {} reported an error mid-stream: {message}",
                spec.name
            ))),
            Err(error @ ChunkError::Malformed { .. }) => {
                let first = !std::mem::replace(&mut self.warned, true);
                Taken::Skipped(first.then(|| spec.redact(&format!("{agent}: skipped an {error}"))))
            }
        }
    }

    /// Whether the server ended the answer (`[DONE]`) without saying why generation stopped:
    /// it was interrupted (llama-cpp-python's server does that to a request when a newer one
    /// arrives), not finished.
    pub fn interrupted(&self) -> bool {
        self.done && self.finish_reason.is_none()
    }

    /// Takes in a chunk; whether it carried tokens (or a usage figure).
    pub fn take(&mut self, chunk: &Chunk, at: Instant) -> bool {
        if chunk.finish_reason.is_some() {
            self.finish_reason.clone_from(&chunk.finish_reason);
        }
        if self.text.len() < MAX_STEP_TEXT {
            self.text.push_str(&chunk.content);
        }
        if self.reasoning.len() < MAX_STEP_TEXT {
            self.reasoning.push_str(&chunk.reasoning);
        }
        for piece in &chunk.tool_calls {
            let call = self
                .tool_calls
                .entry(piece.index)
                .or_insert_with(|| ToolCall {
                    index: piece.index,
                    ..ToolCall::default()
                });
            if piece.id.is_some() {
                call.id.clone_from(&piece.id);
            }
            if let Some(name) = &piece.name {
                call.name.push_str(name);
            }
            if call.arguments.len() < MAX_STEP_TEXT {
                call.arguments.push_str(&piece.arguments);
            }
        }
        let had_usage = chunk.usage.is_some();
        let tokens = self.meter.chunk(chunk, at);
        tokens || had_usage
    }

    /// What the step produced, ended at `end` on its `tries`th try.
    pub fn result(self, end: Instant, tries: u32) -> StepResult {
        StepResult {
            interrupted: self.interrupted(),
            figures: self.meter.finish(end),
            text: self.text,
            tool_calls: self.tool_calls.into_values().collect(),
            finish_reason: self.finish_reason,
            tries,
        }
    }

    /// The run's token count so far: earlier steps' and this one's.
    pub fn run_tokens(&self) -> u64 {
        self.base + self.meter.output_tokens().0
    }

    /// A `node_update` with the latest text (its tail), reasoning and counts.
    pub fn node_update(&self, agent: &str, iteration: u64, ts: &str) -> NodeUpdate {
        let (step_tokens, estimated) = self.meter.output_tokens();
        NodeUpdate {
            agent: Some(agent.to_owned()),
            iteration: u32::try_from(iteration).ok(),
            tokens_out: Some(self.base + step_tokens),
            snippet: Some(tail(&self.text, SNIPPET_CHARS).to_owned()),
            ts: Some(ts.to_owned()),
            reasoning: (!self.reasoning.is_empty())
                .then(|| tail(&self.reasoning, SNIPPET_CHARS).to_owned()),
            estimated: estimated.then_some(true),
            ..NodeUpdate::default()
        }
    }

    /// Brings the active-requests figures of this request up to date.
    pub fn live_figures(&self, figures: &mut LiveFigures) {
        figures.phase = if self.meter.started() {
            RequestPhase::Decoding
        } else {
            RequestPhase::WaitingForFirstToken
        };
        figures.output_tokens = self.meter.output_tokens().0;
        figures.input_tokens = self.meter.prompt_tokens();
        figures.ttft_ms = self.meter.ttft().map(|d| d.as_secs_f64() * 1000.0);
        figures.tok_per_sec = self.meter.tok_per_sec();
    }
}
