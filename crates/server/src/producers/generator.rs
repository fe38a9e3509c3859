//! The synthetic generator: runs that look and pace like real agent pipelines, with no model.
//!
//! A run walks supervisor → (researcher → writer → critic) × iterations → finish. Each agent
//! writes text at tens of tokens per second with bursts and pauses, reported as `node_update`
//! with a cumulative `tokens_out` and the text's 200-character tail; transitions are narrated,
//! and now and then a `data` event carries metrics. Time runs `speed` times faster than real.

use std::time::Duration;

use serde_json::Value;

use crate::events::recorder::Stopped;
use crate::observe::active_requests::NewRequest;
use crate::producers::catalog::{self, Pick};
use crate::producers::rng::SplitMix64;
use crate::producers::run_context::{Outcome, RunContext, SNIPPET_CHARS, tail};
use runboard_api::clock::now_rfc3339;
use runboard_api::{AgentMetrics, DataAction, NodeUpdate, RunEvent};

/// Settings shared by every run.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Seed for reproducible runs; `None` seeds from the clock.
    pub seed: Option<u64>,
    /// How much faster than real time the generator's clock runs.
    pub speed: f64,
    /// The probability that a run fails part-way.
    pub failure_rate: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: None,
            speed: 1.0,
            failure_rate: 0.05,
        }
    }
}

/// The most iterations a run may ask for.
pub const MAX_ITERATIONS: u64 = 10;

/// The fastest pace a run may ask for, in tokens per second: far above any real model's stream,
/// and low enough that one generation tick's text stays small.
pub const MAX_TOKENS_PER_SEC: f64 = 5000.0;

/// The longest model name or job name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// A parameter outside its documented bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("params.{name} {problem}")]
pub struct ParamError {
    /// The parameter's name.
    pub name: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// Checks every parameter the generator reads against its bounds, so no request can make it
/// allocate or loop in proportion to an unchecked number. Unknown keys are left alone.
pub fn check_params(params: &Value) -> Result<(), ParamError> {
    let bad = |name: &'static str, problem: String| Err(ParamError { name, problem });
    let mut checks = params.as_object().into_iter().flatten();
    checks.try_for_each(|(key, value)| match key.as_str() {
        "iterations" => match value.as_u64() {
            Some(1..=MAX_ITERATIONS) => Ok(()),
            _ => bad(
                "iterations",
                format!("must be a whole number from 1 to {MAX_ITERATIONS}, not {value}"),
            ),
        },
        "tokens_per_sec" => match value.as_f64() {
            Some(rate) if rate > 0.0 && rate <= MAX_TOKENS_PER_SEC => Ok(()),
            _ => bad(
                "tokens_per_sec",
                format!("must be a number above 0 and at most {MAX_TOKENS_PER_SEC}, not {value}"),
            ),
        },
        "fail" if !value.is_boolean() => bad("fail", format!("must be true or false, not {value}")),
        "max_tokens" => match value.as_u64() {
            Some(1..=MAX_STEP_TOKENS) => Ok(()),
            _ => bad(
                "max_tokens",
                format!("must be a whole number from 1 to {MAX_STEP_TOKENS}, not {value}"),
            ),
        },
        "temperature" => match value.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => Ok(()),
            _ => bad(
                "temperature",
                format!("must be a number from 0 to 2, not {value}"),
            ),
        },
        "messages" => check_messages(value).map_err(|problem| ParamError {
            name: "messages",
            problem,
        }),
        "extra_body" if !value.is_object() => bad(
            "extra_body",
            format!("must be an object of request fields, not {value}"),
        ),
        "model" | "job" => {
            let name = if key == "model" { "model" } else { "job" };
            match value.as_str() {
                Some(text) if !text.is_empty() && text.chars().count() <= MAX_NAME_CHARS => Ok(()),
                _ => bad(
                    name,
                    format!("must be a name of 1 to {MAX_NAME_CHARS} characters"),
                ),
            }
        }
        _ => Ok(()),
    })
}

/// The most output tokens a run may ask for per step.
pub const MAX_STEP_TOKENS: u64 = 131_072;

/// The most messages a single-step run may give.
pub const MAX_MESSAGES: usize = 256;

/// A `messages` list as chat completions take it: objects, each with a string `role`.
fn check_messages(value: &Value) -> Result<(), String> {
    let Some(list) = value.as_array().filter(|list| !list.is_empty()) else {
        return Err("must be a non-empty list of {\"role\", \"content\"} messages".into());
    };
    if list.len() > MAX_MESSAGES {
        return Err(format!(
            "may hold at most {MAX_MESSAGES} messages, not {}",
            list.len()
        ));
    }
    match list
        .iter()
        .position(|m| m.get("role").and_then(Value::as_str).is_none())
    {
        Some(index) => Err(format!("[{index}] needs a string \"role\"")),
        None => Ok(()),
    }
}

/// Per-run knobs a client may pass in `params` (all optional).
#[derive(Debug, Clone, Copy, PartialEq)]
struct RunParams<'a> {
    iterations: u64,
    fail: bool,
    tokens_per_sec: f64,
    model: Option<&'a str>,
}

/// Why a run's work stopped early.
pub(crate) enum Stop {
    Cancelled,
    Interrupted,
}

impl From<Stopped> for Stop {
    fn from(_: Stopped) -> Self {
        Self::Interrupted
    }
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "token",
    "draft",
    "context",
    "evidence",
    "source",
    "claim",
    "revise",
    "clear",
    "because",
    "however",
    "résumé",
    "naïve",
    "café",
    "→",
    "step",
    "plan",
    "answer",
    "check",
    "summary",
    "result",
    "improve",
    "argument",
    "data",
    "sample",
    "quality",
    "coherent",
    "fact",
    "😊",
    "détail",
    "structure",
    "outline",
    "paragraph",
    "critique",
    "note",
    "source",
    "and",
];

/// Runs one synthetic run to its end.
pub async fn run(config: &GeneratorConfig, ctx: &RunContext) -> Outcome {
    match run_steps(config, ctx).await {
        Ok(outcome) => outcome,
        Err(Stop::Cancelled) => Outcome::Cancelled,
        Err(Stop::Interrupted) => Outcome::Interrupted,
    }
}

fn params(value: &Value) -> RunParams<'_> {
    RunParams {
        iterations: value
            .get("iterations")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(MAX_ITERATIONS),
        fail: value.get("fail").and_then(Value::as_bool).unwrap_or(false),
        tokens_per_sec: value
            .get("tokens_per_sec")
            .and_then(Value::as_f64)
            .filter(|rate| rate.is_finite() && *rate > 0.0)
            .map_or(0.0, |rate| rate.min(MAX_TOKENS_PER_SEC)),
        model: value.get("model").and_then(Value::as_str),
    }
}

async fn run_steps(config: &GeneratorConfig, ctx: &RunContext) -> Result<Outcome, Stop> {
    let mut rng = SplitMix64::new(ctx.seed);
    let params = params(&ctx.params);
    let iterations = if params.iterations > 0 {
        params.iterations
    } else {
        rng.range_u64(1, 3)
    };
    let mut plan = vec![("supervisor", 1)];
    for iteration in 1..=iterations {
        for agent in ["researcher", "writer", "critic"] {
            plan.push((agent, iteration));
        }
    }
    plan.push(("finish", iterations));
    let last_step = u64::try_from(plan.len() - 1).unwrap_or(1);
    let fail_at = (params.fail || rng.chance(config.failure_rate))
        .then(|| usize::try_from(rng.range_u64(1, last_step)).unwrap_or(1));
    #[allow(clippy::cast_possible_truncation)] // Any index will do; it wraps.
    let model = catalog::pick(rng.next_u64() as usize, params.model);
    ctx.recorder.telemetry().run_model(&ctx.run_id, model.alias);
    let base_rate = if params.tokens_per_sec > 0.0 {
        params.tokens_per_sec
    } else {
        model.tok_per_sec * rng.range_f64(0.6, 1.4)
    };
    let mut walk = Walk {
        config,
        ctx,
        rng,
        base_rate,
        model,
        tokens_out: 0,
    };

    ctx.narrate("info", "run_start", &format!("Starting: {}", ctx.task))
        .await?;
    for (step, &(agent, iteration)) in plan.iter().enumerate() {
        if fail_at == Some(step) {
            let message = format!("synthetic failure: {agent} lost its worker");
            ctx.narrate("error", "agent_failed", &message).await?;
            return Ok(Outcome::Failed(message));
        }
        walk.agent(agent, iteration).await?;
    }
    let done = format!("Done: {} tokens", walk.tokens_out);
    ctx.narrate("info", "run_done", &done).await?;
    Ok(Outcome::Completed)
}

/// One run's walk through its agents.
struct Walk<'a> {
    config: &'a GeneratorConfig,
    ctx: &'a RunContext,
    rng: SplitMix64,
    /// Tokens per second at a steady pace.
    base_rate: f64,
    /// The model every step asks for.
    model: Pick,
    /// Cumulative over the run.
    tokens_out: u64,
}

impl Walk<'_> {
    /// One agent's turn: text at an uneven pace, reported as `node_update`s.
    async fn agent(&mut self, agent: &str, iteration: u64) -> Result<(), Stop> {
        let ctx = self.ctx;
        let rng = &mut self.rng;
        let intro = format!("{agent} takes over (iteration {iteration})");
        ctx.narrate("info", "agent_start", &intro).await?;
        // Each agent step is one generation request; the prompt grows with the run's text.
        let task_tokens = u64::try_from(ctx.task.chars().count() / 4).unwrap_or(0);
        let request = ctx.requests.start(&NewRequest {
            run_id: &ctx.run_id,
            worker: None,
            agent,
            model: self.model.alias,
            resolved_model: self.model.id,
            streaming: agent != "finish",
            input_tokens: 180 + task_tokens + self.tokens_out,
            upstream: None,
        });
        let turn_start = self.tokens_out;
        let mut text = String::new();
        let step_secs = if agent == "finish" {
            rng.range_f64(0.5, 1.0)
        } else {
            rng.range_f64(1.5, 4.0)
        };
        let mut elapsed = 0.0;
        let mut carry = 0.0;
        while elapsed < step_secs {
            let tick = rng.range_f64(0.15, 0.4);
            pause(self.config, ctx, tick).await?;
            elapsed += tick;
            // Uneven pace: mostly steady, sometimes a burst, sometimes a stall.
            let pace = match rng.unit() {
                p if p < 0.1 => 0.0,
                p if p < 0.25 => rng.range_f64(1.8, 2.6),
                _ => rng.range_f64(0.7, 1.3),
            };
            carry += self.base_rate * pace * tick;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // carry >= 0.
            let new_tokens = carry.floor() as u64;
            carry -= carry.floor();
            for _ in 0..new_tokens {
                if !text.is_empty() {
                    text.push(' ');
                }
                let word: &&str = rng.pick(WORDS);
                text.push_str(word);
            }
            trim_front(&mut text, SNIPPET_CHARS * 2);
            self.tokens_out += new_tokens;
            request.set_output_tokens(self.tokens_out - turn_start);
            let ts = now_rfc3339();
            let update = RunEvent::NodeUpdate(NodeUpdate {
                run_id: String::new(),
                agent: Some(agent.to_owned()),
                iteration: u32::try_from(iteration).ok(),
                tokens_out: Some(self.tokens_out),
                snippet: Some(tail(&text, SNIPPET_CHARS).to_owned()),
                ts: Some(ts.clone()),
                ..NodeUpdate::default()
            });
            ctx.recorder.event(&ctx.run_id, update, ts).await?;
        }
        if rng.chance(0.15) {
            #[allow(clippy::cast_precision_loss)] // Token counts are far below 2^52.
            let rate = (self.tokens_out as f64 / step_secs.max(0.1)).round();
            let metrics = AgentMetrics {
                agent: agent.to_owned(),
                tokens_out: self.tokens_out,
                tok_per_sec: rate,
            };
            ctx.data(DataAction::AgentMetrics(metrics)).await?;
        }
        Ok(())
    }
}

/// Waits `virtual_secs` of generator time, or stops early on cancel or shutdown.
pub(crate) async fn pause(
    config: &GeneratorConfig,
    ctx: &RunContext,
    virtual_secs: f64,
) -> Result<(), Stop> {
    let real = Duration::from_secs_f64(virtual_secs / config.speed.max(1e-3));
    tokio::select! {
        () = tokio::time::sleep(real) => Ok(()),
        () = ctx.cancel.cancelled() => Err(Stop::Cancelled),
        () = ctx.shutdown.cancelled() => Err(Stop::Interrupted),
    }
}

/// Drops characters from the front until at most `max_chars` remain.
fn trim_front(text: &mut String, max_chars: usize) {
    let keep = tail(text, max_chars).len();
    let cut = text.len() - keep;
    if cut > 0 {
        text.drain(..cut);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{check_params, tail};

    #[test]
    fn parameters_out_of_bounds_are_named() {
        for good in [
            json!({}),
            json!({"iterations": 1, "tokens_per_sec": 5000, "fail": false, "model": "x"}),
            json!({"iterations": 10, "tokens_per_sec": 0.5, "job": "models", "other": [1e300]}),
            json!({"max_tokens": 64, "temperature": 0, "extra_body": {"seed": 1},
                   "messages": [{"role": "user", "content": "hi"}]}),
        ] {
            assert_eq!(check_params(&good), Ok(()), "{good}");
        }
        for (bad, name) in [
            (json!({"tokens_per_sec": 1e9}), "tokens_per_sec"),
            (json!({"tokens_per_sec": 0}), "tokens_per_sec"),
            (json!({"tokens_per_sec": -3}), "tokens_per_sec"),
            (json!({"tokens_per_sec": "fast"}), "tokens_per_sec"),
            (json!({"iterations": 0}), "iterations"),
            (json!({"iterations": 11}), "iterations"),
            (json!({"iterations": 2.5}), "iterations"),
            (json!({"iterations": 1e12}), "iterations"),
            (json!({"fail": "yes"}), "fail"),
            (json!({"model": ""}), "model"),
            (json!({"model": "m".repeat(257)}), "model"),
            (json!({"job": 3}), "job"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"temperature": 3}), "temperature"),
            (json!({"messages": []}), "messages"),
            (json!({"messages": [{"content": "hi"}]}), "messages"),
            (json!({"extra_body": [1]}), "extra_body"),
        ] {
            let error = check_params(&bad).expect_err(&bad.to_string());
            assert_eq!(error.name, name);
            assert!(error.to_string().starts_with(&format!("params.{name} ")));
        }
    }

    #[test]
    fn tail_cuts_at_a_character_boundary() {
        assert_eq!(tail("abc", 5), "abc");
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("naïve café 😊", 6), "café 😊");
        assert_eq!(tail("é😊", 1), "😊");
        assert_eq!(tail("abc", 0), "");
        let long = "ü".repeat(300);
        assert_eq!(tail(&long, 200).chars().count(), 200);
    }
}
