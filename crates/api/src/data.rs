//! The payloads of `data` events: one type per action, so the server never writes one by hand
//! and every reader decodes them the same way.
//!
//! A `data` event is an envelope ([`crate::DataEvent`]: `run_id`, `action`, `payload`) that
//! keeps what came on the wire; [`DataAction`] is its payload read as the type its action names.
//! An action this side does not know is kept as [`DataAction::Other`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::models::ModelList;
use super::types::null_as_default;

/// A finished step's figures, measured by the server from the model server's stream on its own
/// clock, the way benchmark tools measure a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepFigures {
    /// Output tokens (reasoning included): the server's usage figure, else counted.
    pub output_tokens: u64,
    /// Whether `output_tokens` was counted from chunks (no usage figure came).
    pub estimated: bool,
    /// Prompt tokens, when the server said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Reasoning tokens, when the server said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// From sending the request to the first content or reasoning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// From sending the request to the first answer text, when the model reasoned first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfat_ms: Option<f64>,
    /// Mean time per output token after the first: (last − first) / (tokens − 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    /// Median gap between two chunks with tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub itl_p50_ms: Option<f64>,
    /// 99th percentile of those gaps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub itl_p99_ms: Option<f64>,
    /// Decode rate: tokens after the first over the time they took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tok_per_sec: Option<f64>,
    /// From sending the request to the end of the stream.
    pub duration_ms: f64,
}

/// `step`: an agent step (a generated run's) or a call (a proxied run's) ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Step {
    /// What the stream measured.
    #[serde(flatten)]
    pub figures: StepFigures,
    /// The agent.
    #[serde(deserialize_with = "null_as_default")]
    pub agent: String,
    /// Its iteration (a proxied call's number in its run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iteration: Option<u64>,
    /// The model as asked.
    #[serde(deserialize_with = "null_as_default")]
    pub model: String,
    /// The model the upstream serves it as.
    #[serde(deserialize_with = "null_as_default")]
    pub resolved_model: String,
    /// The upstream that answered.
    #[serde(deserialize_with = "null_as_default")]
    pub upstream: String,
    /// Which try produced it, from 1.
    pub tries: u32,
    /// Why generation stopped, when the model server said (written as `null` when it did not).
    pub finish_reason: Option<String>,
    /// The run's output tokens after the step.
    pub tokens_out: u64,
    /// The `/v1` endpoint a proxied call went to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Whether a proxied call streamed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// The model server ended the answer (`[DONE]`) without a finish reason.
    #[serde(skip_serializing_if = "is_false")]
    pub interrupted: bool,
}

impl Default for Step {
    fn default() -> Self {
        Self {
            figures: StepFigures::default(),
            agent: String::new(),
            iteration: None,
            model: String::new(),
            resolved_model: String::new(),
            upstream: String::new(),
            // A server that does not say tried once.
            tries: 1,
            finish_reason: None,
            tokens_out: 0,
            endpoint: None,
            stream: None,
            interrupted: false,
        }
    }
}

/// `tool_call`: a tool call the model made, its pieces merged by `index`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolCall {
    /// The agent that called it.
    #[serde(deserialize_with = "null_as_default")]
    pub agent: String,
    /// Its iteration (a proxied call's number in its run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iteration: Option<u64>,
    /// Its position among the step's calls.
    pub index: u64,
    /// The call's id (written as `null` when the model gave none).
    pub id: Option<String>,
    /// The function's name.
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    /// The arguments' JSON text.
    #[serde(deserialize_with = "null_as_default")]
    pub arguments: String,
}

/// `run_metrics`: a run's sums over its steps, before its last narration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunMetrics {
    /// Steps taken (calls, for a proxied run).
    pub steps: u64,
    /// The run's output tokens.
    pub output_tokens: u64,
    /// Whether any step's count was an estimate.
    pub estimated: bool,
    /// Prompt tokens the model servers reported, summed.
    pub prompt_tokens: u64,
    /// The first step's time to first token (`null` when no step had one).
    pub ttft_ms: Option<f64>,
    /// The mean time to first token over the steps that had one.
    pub mean_ttft_ms: Option<f64>,
    /// Decode tokens over decode time, all steps.
    pub tok_per_sec: Option<f64>,
    /// The steps' durations, summed.
    pub duration_ms: f64,
    /// Steps the model server interrupted; left out when none was.
    #[serde(skip_serializing_if = "is_zero")]
    pub interrupted_steps: u64,
}

/// `agent_metrics`: the synthetic generator's rate for an agent now and then.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentMetrics {
    /// The agent.
    #[serde(deserialize_with = "null_as_default")]
    pub agent: String,
    /// The run's tokens so far.
    pub tokens_out: u64,
    /// The agent's rate.
    pub tok_per_sec: f64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference.
const fn is_false(value: &bool) -> bool {
    !*value
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference.
const fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl Step {
    /// The action of a `data` event carrying a step, for those who read its payload in place.
    pub const ACTION: &'static str = "step";
}

/// Declares the known actions once: the enum, its wire names and its decoding all come from
/// this list, so an action cannot be added to one and forgotten in another.
macro_rules! data_actions {
    ($($(#[$doc:meta])* $variant:ident($payload:ty) = $name:literal,)*) => {
        /// A `data` event's payload, read as the type its action names.
        #[derive(Debug, Clone, PartialEq)]
        pub enum DataAction {
            $($(#[$doc])* $variant($payload),)*
            /// An action this side does not know, kept as it came.
            Other {
                /// Its name.
                action: String,
                /// Its payload, as JSON.
                payload: Value,
            },
        }

        impl DataAction {
            /// The wire names of the actions this side knows.
            pub const KNOWN: &'static [&'static str] = &[$($name),*];

            /// The action's wire name.
            pub fn name(&self) -> &str {
                match self {
                    $(Self::$variant(_) => $name,)*
                    Self::Other { action, .. } => action,
                }
            }

            /// The payload as the server writes it: a JSON object whose keys come out sorted.
            pub fn payload(&self) -> Value {
                let value = match self {
                    $(Self::$variant(payload) => serde_json::to_value(payload),)*
                    Self::Other { payload, .. } => Ok(payload.clone()),
                };
                // These types hold only strings, numbers and string-keyed maps, which always
                // encode.
                value.unwrap_or(Value::Null)
            }

            /// Reads the payload of `action`; an error when a known action's payload is not
            /// its type.
            pub fn from_parts(action: &str, payload: &Value) -> Result<Self, serde_json::Error> {
                Ok(match action {
                    $($name => Self::$variant(serde_json::from_value(payload.clone())?),)*
                    _ => Self::Other {
                        action: action.to_owned(),
                        payload: payload.clone(),
                    },
                })
            }
        }
    };
}

data_actions! {
    /// The models a server can run, and the upstreams behind the list.
    ModelList(ModelList) = "model_list",
    /// The synthetic generator's rate for an agent.
    AgentMetrics(AgentMetrics) = "agent_metrics",
    /// A finished step's figures.
    Step(Box<Step>) = "step",
    /// A tool call the model made.
    ToolCall(ToolCall) = "tool_call",
    /// A run's sums over its steps.
    RunMetrics(RunMetrics) = "run_metrics",
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn every_known() -> Vec<DataAction> {
        let step = Step {
            figures: StepFigures {
                output_tokens: 64,
                prompt_tokens: Some(512),
                ttft_ms: Some(412.0),
                tok_per_sec: Some(46.2),
                duration_ms: 1840.2,
                ..StepFigures::default()
            },
            agent: "critic".into(),
            iteration: Some(1),
            model: "fast".into(),
            resolved_model: "Qwen/Qwen2.5-7B-Instruct".into(),
            upstream: "gpu1".into(),
            finish_reason: Some("stop".into()),
            tokens_out: 310,
            ..Step::default()
        };
        vec![
            DataAction::ModelList(ModelList::default()),
            DataAction::AgentMetrics(AgentMetrics {
                agent: "writer".into(),
                tokens_out: 377,
                tok_per_sec: 41.0,
            }),
            DataAction::Step(Box::new(step)),
            DataAction::ToolCall(ToolCall {
                agent: "chat".into(),
                iteration: Some(2),
                index: 0,
                id: None,
                name: "get_weather".into(),
                arguments: r#"{"city":"Oslo"}"#.into(),
            }),
            DataAction::RunMetrics(RunMetrics {
                steps: 5,
                output_tokens: 900,
                interrupted_steps: 1,
                ..RunMetrics::default()
            }),
        ]
    }

    #[test]
    fn every_known_action_reads_back_equal_and_is_listed() {
        let all = every_known();
        assert_eq!(all.len(), DataAction::KNOWN.len());
        for action in all {
            assert!(DataAction::KNOWN.contains(&action.name()), "{action:?}");
            let read = DataAction::from_parts(action.name(), &action.payload()).unwrap();
            assert_eq!(read, action);
        }
    }

    #[test]
    fn the_wire_form_of_a_step_is_the_documented_one() {
        let [_, _, step, call, metrics] = every_known().try_into().unwrap();
        assert_eq!(
            step.payload().to_string(),
            r#"{"agent":"critic","duration_ms":1840.2,"estimated":false,"finish_reason":"stop","iteration":1,"model":"fast","output_tokens":64,"prompt_tokens":512,"resolved_model":"Qwen/Qwen2.5-7B-Instruct","tok_per_sec":46.2,"tokens_out":310,"tries":1,"ttft_ms":412.0,"upstream":"gpu1"}"#
        );
        // An id the model did not give is written as null; so are absent run figures.
        assert_eq!(call.payload()["id"], Value::Null);
        assert!(call.payload().as_object().unwrap().contains_key("id"));
        let metrics = metrics.payload();
        assert!(metrics.as_object().unwrap().contains_key("ttft_ms"));
        assert_eq!(metrics["interrupted_steps"], 1);
    }

    #[test]
    fn unknown_actions_are_kept_and_a_known_one_that_does_not_fit_is_an_error() {
        let payload = json!({"celsius": 71});
        let other = DataAction::from_parts("gpu_temp", &payload).unwrap();
        assert_eq!(other.name(), "gpu_temp");
        assert_eq!(other.payload(), payload);
        assert!(DataAction::from_parts("step", &json!({"tries": "two"})).is_err());
        assert_eq!(DataAction::Step(Box::default()).name(), Step::ACTION);
        assert!(DataAction::from_parts("tool_call", &json!([1])).is_err());
        // An older server's step with missing and null fields still reads.
        let DataAction::Step(step) = DataAction::from_parts(
            "step",
            &json!({"agent": null, "output_tokens": 3, "finish_reason": null}),
        )
        .unwrap() else {
            panic!("not a step");
        };
        assert_eq!((step.agent.as_str(), step.tries), ("", 1));
        assert_eq!(step.figures.output_tokens, 3);
    }
}
