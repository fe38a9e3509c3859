//! A run on a real model: the same agent chain as the synthetic generator (supervisor →
//! (researcher → writer → critic) × iterations → finish), each step one streaming chat
//! completion with the agent's system prompt, the task and the previous steps' outputs; or a
//! single step with the `messages` a run gives. Each step's figures go out as a `step` data
//! event, each tool call as a `tool_call` one, and the run's sums as `run_metrics`.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::UpstreamPool;
use super::meter::RunTotals;
use super::reading::StepResult;
use super::step::{RunState, StepFailure, StepPlan, StepStop};
use crate::observe::otlp::FailedCall;
use crate::producers::run_context::{Outcome, RunContext};
use runboard_api::{DataAction, STEP_INTERRUPTED_ACTION, Step};

/// Output tokens per step when neither the run nor `--upstream-max-tokens` says.
pub const DEFAULT_MAX_TOKENS: u64 = 256;

/// How many earlier steps' outputs a step sees, and how much of each (the end, which is where
/// an answer's conclusion is): enough to be a real pipeline, small enough for small contexts.
const CONTEXT_STEPS: usize = 3;
const CONTEXT_CHARS: usize = 1200;

/// What each agent is told.
fn system_prompt(agent: &str) -> &'static str {
    match agent {
        "supervisor" => {
            "You are the supervisor of a small writing team. Read the task and write a short \
             plan: what to find out, what the answer must contain, and how to judge it."
        }
        "researcher" => {
            "You are the researcher. From the task and the notes so far, list the facts, \
             figures and considerations the writer needs. Be concise."
        }
        "writer" => {
            "You are the writer. Using the plan and the research notes, write the answer to \
             the task. If there is a critique, revise the last draft to address it."
        }
        "critic" => {
            "You are the critic. Read the latest draft and say, in a few bullet points, what \
             is wrong, missing or unclear."
        }
        _ => {
            "You are the editor. Give the final answer to the task, based on the last draft \
             and critique, and nothing else."
        }
    }
}

/// Runs one run on the upstream its model resolves to.
pub async fn run(pool: &UpstreamPool, ctx: &RunContext) -> Outcome {
    let params = &ctx.params;
    let asked = params.get("model").and_then(Value::as_str);
    let target = match pool.resolve(asked).await {
        Ok(target) => target,
        Err(error) => {
            let message = error.to_string();
            let _ = ctx.narrate("error", "upstream_unavailable", &message).await;
            return Outcome::Failed(message);
        }
    };
    ctx.recorder
        .telemetry()
        .run_model(&ctx.run_id, &target.asked);
    let mut state = RunState {
        ctx,
        pool,
        target: &target,
        tokens_out: 0,
    };
    match walk(&mut state).await {
        Ok(()) => Outcome::Completed,
        Err(StepStop::Failed(failure)) => {
            let _ = ctx.narrate("error", "agent_failed", &failure.message).await;
            Outcome::Failed(failure.message)
        }
        Err(StepStop::Cancelled) => Outcome::Cancelled,
        Err(StepStop::Interrupted) => Outcome::Interrupted,
    }
}

async fn walk(state: &mut RunState<'_>) -> Result<(), StepStop> {
    let ctx = state.ctx;
    let pool = state.pool;
    let params = &ctx.params;
    let target = state.target;
    let spec = &target.upstream.spec;
    let shown_model = if target.asked == target.model {
        target.model.clone()
    } else {
        format!("{} → {}", target.asked, target.model)
    };
    let start = format!(
        "Starting on {shown_model} at {} ({}): {}",
        spec.name,
        spec.display_url(),
        ctx.task
    );
    state.narrate("info", "run_start", &start).await?;
    let sampling = sampling(params, pool.config().max_tokens);
    let mut totals = RunTotals::default();
    if let Some(messages) = params.get("messages") {
        let mut body = sampling.clone();
        body.insert("messages".into(), messages.clone());
        let plan = StepPlan {
            agent: "chat",
            iteration: 1,
            body: Value::Object(body),
        };
        let result = run_step(state, &plan, &mut totals).await?;
        drop(result);
    } else {
        let iterations = params
            .get("iterations")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let mut outputs: Vec<(String, u64, String)> = Vec::new();
        for (agent, iteration) in agent_plan(iterations) {
            let mut body = sampling.clone();
            body.insert("messages".into(), messages_for(agent, &ctx.task, &outputs));
            let step = StepPlan {
                agent,
                iteration,
                body: Value::Object(body),
            };
            let result = run_step(state, &step, &mut totals).await?;
            outputs.push((agent.to_owned(), iteration, result.text));
        }
    }
    let figures = totals.figures(state.tokens_out);
    ctx.data(DataAction::RunMetrics(figures.clone())).await?;
    if let Some(failure) = totals.empty_failure(state.tokens_out) {
        return Err(StepStop::Failed(StepFailure::upstream_error(failure)));
    }
    if state.tokens_out == 0 {
        let empty = "The model produced no tokens in any step (each ended at once)";
        state.narrate("warn", "run_empty", empty).await?;
    }
    let done = format!(
        "Done: {} tokens in {} steps{}{}",
        state.tokens_out,
        totals.steps,
        totals.interrupted_note(),
        figures
            .tok_per_sec
            .map(|rate| format!(", {rate:.1} tok/s while decoding"))
            .unwrap_or_default()
    );
    state.narrate("info", "run_done", &done).await
}

/// The sampling part of every step's request: `max_tokens` (the run's, else the server's),
/// `temperature`, and what `extra_body` adds, without the keys the steps set themselves.
fn sampling(params: &Value, max_tokens: u64) -> Map<String, Value> {
    let mut sampling = Map::new();
    let max_tokens = params
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(max_tokens);
    sampling.insert("max_tokens".into(), json!(max_tokens));
    if let Some(temperature) = params.get("temperature") {
        sampling.insert("temperature".into(), temperature.clone());
    }
    if let Some(Value::Object(extra)) = params.get("extra_body") {
        for (key, value) in extra {
            if !matches!(
                key.as_str(),
                "model" | "messages" | "stream" | "stream_options"
            ) {
                sampling.insert(key.clone(), value.clone());
            }
        }
    }
    sampling
}

/// The agent chain's steps, in order: supervisor, then researcher, writer and critic for each
/// iteration, then finish.
fn agent_plan(iterations: u64) -> Vec<(&'static str, u64)> {
    let mut plan = vec![("supervisor", 1)];
    for iteration in 1..=iterations {
        for agent in ["researcher", "writer", "critic"] {
            plan.push((agent, iteration));
        }
    }
    plan.push(("finish", iterations));
    plan
}

/// One step with its narration and its figures.
async fn run_step(
    state: &mut RunState<'_>,
    plan: &StepPlan<'_>,
    totals: &mut RunTotals,
) -> Result<StepResult, StepStop> {
    let ctx = state.ctx;
    let intro = format!("{} takes over (iteration {})", plan.agent, plan.iteration);
    state.narrate("info", "agent_start", &intro).await?;
    let began = std::time::SystemTime::now();
    let result = match state.step(plan).await {
        Ok(result) => result,
        Err(StepStop::Failed(failure)) => {
            ctx.recorder.telemetry().call_failed(
                &ctx.run_id,
                &FailedCall {
                    endpoint: None,
                    model: &state.target.asked,
                    upstream: &state.target.upstream.spec.name,
                    agent: plan.agent,
                    iteration: Some(plan.iteration),
                    stream: None,
                    started: began,
                    output_tokens: 0,
                    error_type: failure.error_type.clone(),
                    message: &failure.message,
                },
            );
            return Err(StepStop::Failed(failure));
        }
        Err(stop) => return Err(stop),
    };
    for call in &result.tool_calls {
        let call = call.event(plan.agent, plan.iteration);
        ctx.data(DataAction::ToolCall(call)).await?;
    }
    let step = Step {
        figures: result.figures.clone(),
        agent: plan.agent.to_owned(),
        iteration: Some(plan.iteration),
        model: state.target.asked.clone(),
        resolved_model: state.target.model.clone(),
        upstream: state.target.upstream.spec.name.clone(),
        tries: result.tries,
        finish_reason: result.finish_reason.clone(),
        tokens_out: state.tokens_out,
        endpoint: None,
        stream: None,
        interrupted: result.interrupted,
    };
    ctx.data(DataAction::Step(Box::new(step))).await?;
    if result.interrupted {
        let text = interrupted_text(
            plan.agent,
            &format!("iteration {}", plan.iteration),
            &state.target.upstream.spec.name,
            result.figures.output_tokens,
        );
        state
            .narrate("warn", STEP_INTERRUPTED_ACTION, &text)
            .await?;
    }
    totals.add(&result.figures, result.interrupted);
    Ok(result)
}

/// The warning for a step the model server ended without a finish reason.
pub fn interrupted_text(agent: &str, which: &str, upstream: &str, tokens: u64) -> String {
    format!(
        "{agent} ({which}) was interrupted: upstream {upstream} ended the answer without a \
         finish reason after {tokens} tokens"
    )
}

/// The messages of one agent step: its system prompt, then the task with the latest outputs.
fn messages_for(agent: &str, task: &str, outputs: &[(String, u64, String)]) -> Value {
    let mut user = format!("Task: {task}");
    let start = outputs.len().saturating_sub(CONTEXT_STEPS);
    for (earlier, iteration, text) in &outputs[start..] {
        let text = crate::producers::run_context::tail(text, CONTEXT_CHARS);
        let _ = write!(user, "\n\n## {earlier} (iteration {iteration})\n{text}");
    }
    json!([
        {"role": "system", "content": system_prompt(agent)},
        {"role": "user", "content": user},
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_sees_its_prompt_the_task_and_the_last_outputs_ends() {
        let outputs: Vec<(String, u64, String)> = (1..=5)
            .map(|i| (format!("a{i}"), 1, format!("{}END{i}", "x".repeat(2000))))
            .collect();
        let messages = messages_for("critic", "the task", &outputs);
        assert_eq!(messages[0]["role"], "system");
        assert!(messages[0]["content"].as_str().unwrap().contains("critic"));
        let user = messages[1]["content"].as_str().unwrap();
        assert!(user.starts_with("Task: the task"));
        assert!(!user.contains("## a2 ") && user.contains("## a3 (iteration 1)"));
        assert!(user.contains("END5") && user.len() < 3 * CONTEXT_CHARS + 200);
    }
}
