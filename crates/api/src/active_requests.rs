//! Active requests: the snapshot of in-flight generation requests.

use serde::{Deserialize, Serialize};

use super::types::null_as_default;

/// One generation request in flight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActiveRequest {
    /// Unique while it lives; rows are keyed by it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub request_id: String,
    /// The model the request asked for.
    #[serde(default, deserialize_with = "null_as_default")]
    pub model: String,
    /// The model it was served by, when an alias was resolved.
    #[serde(default)]
    pub resolved_model: Option<String>,
    /// Whether the response streams.
    #[serde(default)]
    pub streaming: bool,
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Tokens generated so far.
    #[serde(default)]
    pub output_tokens: u64,
    /// When it started, RFC 3339.
    #[serde(default, deserialize_with = "null_as_default")]
    pub started_at: String,
    /// The run it serves, when the server says.
    #[serde(default)]
    pub run_id: Option<String>,
    /// The agent it serves, when the server says.
    #[serde(default)]
    pub agent: Option<String>,
    /// The worker that made it (a proxied call's), when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Where the request stands, when the server follows its stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RequestPhase>,
    /// Its decode rate so far in tokens per second, once two tokens have arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tok_per_sec: Option<f64>,
    /// Its time to first token in milliseconds, once the first token arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// The model server it was sent to (its `--upstream` name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Which try of the step this is (1 for the first), when the server retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// Where a streaming request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestPhase {
    /// Held by runboard until the model server has a free slot (`--upstream-concurrency`).
    Queued,
    /// Sent; no token yet (queued on the model server, or reading the prompt).
    WaitingForFirstToken,
    /// Tokens are arriving.
    Decoding,
    /// Waiting before another try (after a 429, a 5xx or a refused connection).
    Retrying,
    /// A phase a newer server names that this build does not know.
    #[serde(other)]
    Other,
}

impl RequestPhase {
    /// Its wire name, for people too.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::WaitingForFirstToken => "waiting_for_first_token",
            Self::Decoding => "decoding",
            Self::Retrying => "retrying",
            Self::Other => "other",
        }
    }
}

/// `GET /metrics/active-requests`, and the data of the stream's `update` and `disabled` events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActiveRequests {
    /// True when the server does not track requests.
    #[serde(default)]
    pub disabled: bool,
    /// The requests in flight, oldest first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub active_requests: Vec<ActiveRequest>,
    /// When the snapshot was taken, RFC 3339.
    #[serde(default, deserialize_with = "null_as_default")]
    pub timestamp: String,
    /// How to switch tracking on, when disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ActiveRequests {
    /// The stream's event with a new snapshot.
    pub const UPDATE_EVENT: &'static str = "update";
    /// The stream's one event when the server does not track requests.
    pub const DISABLED_EVENT: &'static str = "disabled";
}
