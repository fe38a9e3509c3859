//! The model list: the data a `models` job returns (its `model_list` action).

use serde::{Deserialize, Serialize};

use super::types::null_as_default;

/// The `action` of the `data` event that carries a model list.
pub const MODEL_LIST_ACTION: &str = "model_list";

/// The task text of a models job, and the `params.job` value that asks for one.
pub const MODELS_JOB: &str = "models";

/// One model a server can generate with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Its id, as requests name it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// A name for people.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Size of its weights in bytes (older servers call it `size`).
    #[serde(default, alias = "size")]
    pub size_bytes: Option<u64>,
    /// The longest context it takes, in tokens.
    #[serde(default)]
    pub context_length: Option<u64>,
    /// Tokens per second it typically generates per request.
    #[serde(default)]
    pub tok_per_sec: Option<f64>,
    /// The model server that serves it (its `--upstream` name), when the server generates on
    /// real models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Who publishes it, as the model server's `GET /models` says (`owned_by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
}

/// One model server a runs server generates on, as its last `GET /models` found it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamModels {
    /// Its name (`--upstream NAME=URL`, or the URL's host and port).
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Its `OpenAI` base URL, without credentials.
    #[serde(default, deserialize_with = "null_as_default")]
    pub url: String,
    /// Whether the last read answered with a model list.
    #[serde(default)]
    pub reachable: bool,
    /// Why it is not reachable, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many models it serves.
    #[serde(default)]
    pub models: u64,
    /// When it was last read, RFC 3339; absent before the first read ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
}

/// The payload of a `model_list` data event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// The models, in the server's order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub models: Vec<ModelInfo>,
    /// The model servers behind the list, reachable or not (empty for the synthetic generator).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub upstreams: Vec<UpstreamModels>,
}

impl ModelList {
    /// Reads a `model_list` payload; `None` when it is not one.
    pub fn from_payload(payload: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(payload.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_with_missing_and_null_fields_still_reads() {
        let payload = serde_json::json!({"models": [
            {"id": "m1", "name": "Model 1", "size": 1024},
            {"id": "m2", "name": null, "context_length": 8192, "tok_per_sec": 42.5}
        ]});
        let list = ModelList::from_payload(&payload).unwrap();
        assert_eq!(list.models.len(), 2);
        assert_eq!(list.models[0].size_bytes, Some(1024));
        assert_eq!(list.models[1].name, "");
        assert_eq!(list.models[1].context_length, Some(8192));
        assert!(ModelList::from_payload(&serde_json::json!([1, 2])).is_none());
    }
}
