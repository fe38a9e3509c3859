//! The model servers a runboard server reads (`serve --scrape URL`): what each one says about
//! itself in its Prometheus `/metrics` (and llama.cpp's `/slots`), as `GET /api/upstreams` and
//! the `update` events of `/api/upstreams/stream` carry it.

use serde::{Deserialize, Serialize};

use super::events::DecodeError;
use super::stream::StreamEvent;

/// Every model server read, in the order they were given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Upstreams {
    /// One entry per URL.
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
}

impl Upstreams {
    /// The SSE event type of a new snapshot.
    pub const UPDATE_EVENT: &'static str = "update";
}

impl StreamEvent for Upstreams {
    fn decode_event(event: &str, data: &str) -> Result<Self, DecodeError> {
        serde_json::from_str(data).map_err(|error| DecodeError {
            event: event.to_owned(),
            reason: error.to_string(),
        })
    }
}

/// Which server software answered, told by its metric names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// vLLM (`vllm:` metrics).
    Vllm,
    /// `SGLang` (`sglang:` metrics).
    Sglang,
    /// llama.cpp's server (`llamacpp:` metrics).
    Llamacpp,
    /// A Prometheus endpoint with none of the names above.
    Other,
}

impl Engine {
    /// The name people know it by.
    pub fn label(self) -> &'static str {
        match self {
            Self::Vllm => "vLLM",
            Self::Sglang => "SGLang",
            Self::Llamacpp => "llama.cpp",
            Self::Other => "Prometheus",
        }
    }
}

/// Whether the last read worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScrapeState {
    /// Not read yet.
    Pending,
    /// `/metrics` was read.
    Ok,
    /// The server answered, but has no `/metrics` (404, or not the text format): not an error.
    NoMetrics,
    /// The server could not be reached, or its metrics could not be read; `error` says why.
    Error,
}

/// One model server as last read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    /// Its base URL, as given.
    pub url: String,
    /// How the last read went.
    pub state: ScrapeState,
    /// Why the last read failed, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Which software it is, once its metrics were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// When it was last read (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scraped_at: Option<String>,
    /// The whole server's figures (every model summed).
    #[serde(default)]
    pub figures: Figures,
    /// The figures of each model it serves (its `model_name` label), when it labels them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelFigures>,
    /// llama.cpp's slots, when it has `/slots`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<Vec<Slot>>,
    /// The server's figures over the last five minutes, oldest first: in `GET /api/upstreams`
    /// and the first event of a stream, so a console that just opened draws whole sparklines;
    /// later events leave it out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<FigurePoint>,
}

/// The figures of one past read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FigurePoint {
    /// When it was read (Unix seconds).
    pub at: f64,
    /// What it said.
    pub figures: Figures,
}

impl Upstream {
    /// A server not read yet.
    pub fn pending(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            state: ScrapeState::Pending,
            error: None,
            engine: None,
            scraped_at: None,
            figures: Figures::default(),
            models: Vec::new(),
            slots: None,
            history: Vec::new(),
        }
    }
}

/// What a model server says about its load. Each is absent when the server does not expose it
/// (or, for rates and quantiles, until two reads are there to compare).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Requests being generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<f64>,
    /// Requests waiting for a slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<f64>,
    /// KV-cache use, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache: Option<f64>,
    /// Generated tokens per second, from the server's counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_tok_per_sec: Option<f64>,
    /// Prompt tokens per second, from the server's counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tok_per_sec: Option<f64>,
    /// Preemptions since the server started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptions: Option<f64>,
    /// Preemptions per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptions_per_sec: Option<f64>,
    /// Median time to first token over the last minute, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p50: Option<f64>,
    /// 95th percentile of time to first token over the last minute, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p95: Option<f64>,
    /// Median inter-token latency over the last minute, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_p50: Option<f64>,
    /// 95th percentile of inter-token latency over the last minute, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_p95: Option<f64>,
}

/// One model's figures on a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFigures {
    /// The model's name as the server labels it.
    pub model: String,
    /// Its figures.
    pub figures: Figures,
}

/// One llama.cpp slot: a place a request is generated in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The slot's id.
    pub id: u64,
    /// Whether a request is being processed in it.
    pub processing: bool,
    /// Tokens generated so far for its request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoded: Option<u64>,
    /// The most tokens its request may generate (`-1`: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_predict: Option<i64>,
}
