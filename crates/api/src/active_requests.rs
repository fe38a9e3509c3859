//! Active requests: the snapshot of in-flight generation requests.

use serde::{Deserialize, Serialize};

use super::types::null_as_default;

/// One generation request in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// `GET /metrics/active-requests`, and the data of the stream's `update` and `disabled` events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
