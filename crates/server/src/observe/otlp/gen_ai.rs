//! The OpenTelemetry `GenAI` conventions as runboard fills them: what one model call was
//! ([`Call`]), its attributes on a span and on the metrics, and the four `GenAI` histograms.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};

/// The `gen_ai.provider.name` of calls to OpenAI-compatible servers (vLLM, `SGLang`, llama.cpp,
/// Ollama): the conventions name the API a client speaks when the product behind it is not
/// known to it; `runboard.upstream` names the server.
pub const OPENAI_COMPATIBLE: &str = "openai";

/// The `gen_ai.provider.name` of the synthetic generator's runs.
pub const SYNTHETIC: &str = "runboard.synthetic";

/// One model call (a step of a run, or a proxied call), as measured on the server's clock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Call {
    /// `chat`, `text_completion`, …
    pub operation: &'static str,
    /// Who served it ([`OPENAI_COMPATIBLE`] or [`SYNTHETIC`]).
    pub provider: &'static str,
    /// The model as asked.
    pub request_model: String,
    /// The model that answered, when the server said.
    pub response_model: Option<String>,
    /// Prompt tokens, when the server said.
    pub input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: u64,
    /// Seconds from the request to the end of the answer.
    pub duration: f64,
    /// Seconds to the first token.
    pub time_to_first_token: Option<f64>,
    /// Mean seconds per output token after the first.
    pub time_per_output_token: Option<f64>,
    /// Why generation stopped, when the server said.
    pub finish_reason: Option<String>,
    /// The upstream (runboard's name for the model server) that answered.
    pub upstream: Option<String>,
    /// What went wrong (`error.type`), for a call that failed.
    pub error_type: Option<String>,
}

impl Call {
    /// The attributes every metric of the call carries (low cardinality: no ids).
    pub fn metric_attributes(&self) -> Vec<KeyValue> {
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", self.operation),
            KeyValue::new("gen_ai.provider.name", self.provider),
            KeyValue::new("gen_ai.request.model", self.request_model.clone()),
        ];
        if let Some(model) = &self.response_model {
            attributes.push(KeyValue::new("gen_ai.response.model", model.clone()));
        }
        if let Some(error) = &self.error_type {
            attributes.push(KeyValue::new("error.type", error.clone()));
        }
        attributes
    }

    /// The span's attributes: the metrics' ones, the usage, the finish reason and the figures.
    pub fn span_attributes(&self) -> Vec<KeyValue> {
        let mut attributes = self.metric_attributes();
        attributes.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            signed(self.output_tokens),
        ));
        if let Some(tokens) = self.input_tokens {
            attributes.push(KeyValue::new("gen_ai.usage.input_tokens", signed(tokens)));
        }
        if let Some(reason) = &self.finish_reason {
            attributes.push(KeyValue::new(
                "gen_ai.response.finish_reasons",
                opentelemetry::Value::Array(
                    vec![opentelemetry::StringValue::from(reason.clone())].into(),
                ),
            ));
        }
        if let Some(seconds) = self.time_to_first_token {
            attributes.push(KeyValue::new("gen_ai.server.time_to_first_token", seconds));
        }
        if let Some(seconds) = self.time_per_output_token {
            attributes.push(KeyValue::new(
                "gen_ai.server.time_per_output_token",
                seconds,
            ));
        }
        if let Some(upstream) = &self.upstream {
            attributes.push(KeyValue::new("runboard.upstream", upstream.clone()));
        }
        attributes
    }

    /// The span's name, as the conventions give it: `{operation} {model}`.
    pub fn span_name(&self) -> String {
        if self.request_model.is_empty() {
            self.operation.to_owned()
        } else {
            format!("{} {}", self.operation, self.request_model)
        }
    }
}

/// A model call that failed before its answer was whole (a refusal, an error frame, a cut, an
/// upstream out of reach): no `step` event describes it, so its producer says so directly.
#[derive(Debug, Clone)]
pub struct FailedCall<'a> {
    /// The endpoint called (`/v1/chat/completions`), when it was a proxied call.
    pub endpoint: Option<&'a str>,
    /// The model as asked.
    pub model: &'a str,
    /// The upstream it went to.
    pub upstream: &'a str,
    /// The agent that made it.
    pub agent: &'a str,
    /// Its number in the run (a proxied call's) or its iteration (a run step's).
    pub iteration: Option<u64>,
    /// Whether a stream was asked for.
    pub stream: Option<bool>,
    /// When the call began.
    pub started: std::time::SystemTime,
    /// Output tokens it brought before it failed.
    pub output_tokens: u64,
    /// What went wrong, low in cardinality (`error.type`): the HTTP status of a refusal, or
    /// `upstream_error`, `upstream_cut`, `upstream_unreachable`.
    pub error_type: String,
    /// What went wrong, for people (the span's status message).
    pub message: &'a str,
}

/// The operation a proxied call's endpoint is (`gen_ai.operation.name`).
pub fn operation_of(endpoint: Option<&str>) -> &'static str {
    match endpoint {
        Some(path) if path.ends_with("/completions") && !path.ends_with("/chat/completions") => {
            "text_completion"
        }
        Some(path) if path.ends_with("/embeddings") => "embeddings",
        _ => "chat",
    }
}

/// An attribute's integer (OpenTelemetry's are signed).
fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The `GenAI` client and server histograms, with the bucket boundaries the conventions
/// advise.
#[derive(Debug, Clone)]
pub struct Instruments {
    token_usage: Histogram<u64>,
    duration: Histogram<f64>,
    time_to_first_token: Histogram<f64>,
    time_per_output_token: Histogram<f64>,
}

impl Instruments {
    /// Makes the histograms on `meter`.
    pub fn new(meter: &Meter) -> Self {
        Self {
            token_usage: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Input and output tokens per call")
                .with_boundaries(vec![
                    1.0,
                    4.0,
                    16.0,
                    64.0,
                    256.0,
                    1024.0,
                    4096.0,
                    16384.0,
                    65536.0,
                    262_144.0,
                    1_048_576.0,
                    4_194_304.0,
                    16_777_216.0,
                    67_108_864.0,
                ])
                .build(),
            duration: meter
                .f64_histogram("gen_ai.client.operation.duration")
                .with_unit("s")
                .with_description("Duration of a model call, from the request to the answer's end")
                .with_boundaries(vec![
                    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92,
                ])
                .build(),
            time_to_first_token: meter
                .f64_histogram("gen_ai.server.time_to_first_token")
                .with_unit("s")
                .with_description("Time from the request to the first output token")
                .with_boundaries(vec![
                    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                    5.0, 7.5, 10.0,
                ])
                .build(),
            time_per_output_token: meter
                .f64_histogram("gen_ai.server.time_per_output_token")
                .with_unit("s")
                .with_description("Time per output token after the first")
                .with_boundaries(vec![
                    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
                ])
                .build(),
        }
    }

    /// Records one call.
    pub fn record(&self, call: &Call) {
        let attributes = call.metric_attributes();
        self.duration.record(call.duration, &attributes);
        let mut typed = attributes.clone();
        typed.push(KeyValue::new("gen_ai.token.type", "output"));
        self.token_usage.record(call.output_tokens, &typed);
        if let Some(tokens) = call.input_tokens {
            typed.pop();
            typed.push(KeyValue::new("gen_ai.token.type", "input"));
            self.token_usage.record(tokens, &typed);
        }
        if let Some(seconds) = call.time_to_first_token {
            self.time_to_first_token.record(seconds, &attributes);
        }
        if let Some(seconds) = call.time_per_output_token {
            self.time_per_output_token.record(seconds, &attributes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_name_their_operations() {
        assert_eq!(operation_of(Some("/v1/chat/completions")), "chat");
        assert_eq!(operation_of(Some("/v1/completions")), "text_completion");
        assert_eq!(operation_of(Some("/v1/embeddings")), "embeddings");
        assert_eq!(operation_of(None), "chat");
    }

    #[test]
    fn a_call_names_its_span_and_carries_the_gen_ai_attributes() {
        let call = Call {
            operation: "chat",
            provider: OPENAI_COMPATIBLE,
            request_model: "tiny".into(),
            response_model: Some("tiny-q8".into()),
            input_tokens: Some(12),
            output_tokens: 30,
            finish_reason: Some("stop".into()),
            ..Call::default()
        };
        assert_eq!(call.span_name(), "chat tiny");
        let attributes = call.span_attributes();
        let get = |key: &str| {
            attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(get("gen_ai.response.model").as_deref(), Some("tiny-q8"));
        assert_eq!(get("gen_ai.usage.input_tokens").as_deref(), Some("12"));
        assert_eq!(get("gen_ai.usage.output_tokens").as_deref(), Some("30"));
        assert_eq!(get("gen_ai.provider.name").as_deref(), Some("openai"));
        assert!(
            get("gen_ai.response.finish_reasons")
                .unwrap()
                .contains("stop")
        );
        assert_eq!(get("error.type"), None);
    }
}
