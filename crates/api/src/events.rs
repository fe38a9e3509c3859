//! The events a run stream carries, decoded from an SSE event's type and JSON data.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::types::{RunStatus, RunSummary, StoreStatus, null_as_default};

/// Progress of the current agent (`node_update`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeUpdate {
    /// The run it belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub run_id: String,
    /// The agent working (older servers call it `node`).
    #[serde(default, alias = "node")]
    pub agent: Option<String>,
    /// The iteration of the agent loop.
    #[serde(default)]
    pub iteration: Option<u32>,
    /// Tokens generated so far by the whole run (cumulative).
    #[serde(default)]
    pub tokens_out: Option<u64>,
    /// The tail of the text being generated, at most 200 characters.
    #[serde(default)]
    pub snippet: Option<String>,
    /// When the server emitted it.
    #[serde(default)]
    pub ts: Option<String>,
}

/// A lifecycle change (`status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The run it belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub run_id: String,
    /// The new status.
    pub status: RunStatus,
    /// Why, for people.
    #[serde(default)]
    pub message: Option<String>,
}

/// A line for people (`narration`): the human channel of seed 001.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Narration {
    /// The run it belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub run_id: String,
    /// The text, ready to print; may span lines (a table, say).
    #[serde(default, deserialize_with = "null_as_default")]
    pub formatted: String,
    /// `info`, `warn`, `error`, …
    #[serde(default)]
    pub level: Option<String>,
    /// What it is about, machine-readable.
    #[serde(default)]
    pub action: Option<String>,
}

/// Structured data for UI state (`data`): the machine channel of seed 001.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataEvent {
    /// The run (or job) it belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub run_id: String,
    /// What the payload is, e.g. `model_list`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub action: String,
    /// The payload.
    #[serde(default)]
    pub payload: Value,
}

/// The run failed (`error`); a `stream_end` follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunError {
    /// The run it belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub run_id: String,
    /// What went wrong.
    #[serde(default, deserialize_with = "null_as_default")]
    pub message: String,
    /// A machine-readable code.
    #[serde(default)]
    pub code: Option<String>,
}

/// The run is over (`stream_end`); a per-run stream closes after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEnd {
    /// The run it belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub run_id: String,
    /// How it ended.
    pub status: RunStatus,
}

/// Told at the start of `/api/events` when the client's `Last-Event-ID` is older than what the
/// server's retention removed (`pruned`): some events after it are gone for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// The client's last id.
    #[serde(default)]
    pub after: u64,
    /// Events up to this id may have been removed.
    #[serde(default)]
    pub pruned_through: u64,
    /// For people.
    #[serde(default, deserialize_with = "null_as_default")]
    pub message: String,
}

/// Any event of a run stream.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// A run exists (`run_created`), possibly launched by another client.
    RunCreated(RunSummary),
    /// A lifecycle change.
    Status(StatusChange),
    /// Agent progress.
    NodeUpdate(NodeUpdate),
    /// A line for people.
    Narration(Narration),
    /// Structured data.
    Data(DataEvent),
    /// The run failed.
    Error(RunError),
    /// The run is over.
    StreamEnd(StreamEnd),
    /// The server's store stopped or started taking writes (`store_status`; about the server,
    /// not a run).
    StoreStatus(StoreStatus),
    /// Events after the client's last id were removed by retention (`pruned`; about the
    /// stream, not a run).
    Pruned(Pruned),
    /// Seed 001's job-complete marker (`{"type": "done"}`).
    Done {
        /// The run or job, when the server names it.
        run_id: String,
    },
    /// An event type this client does not know, kept as it came.
    Unknown {
        /// Its type.
        event: String,
        /// Its data, as JSON.
        data: Value,
    },
}

/// Why an event could not be decoded. The stream goes on; only this event is skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not decode a {event:?} event: {reason}")]
pub struct DecodeError {
    /// The event type.
    pub event: String,
    /// What was wrong with its data.
    pub reason: String,
}

impl RunEvent {
    /// Decodes an SSE event. Accepts both wire forms: a named event (`event: node_update`) and a
    /// `message` event whose JSON names its type in `"type"` (seed 001).
    pub fn decode(event: &str, data: &str) -> Result<Self, DecodeError> {
        let fail = |event: &str, error: &serde_json::Error| DecodeError {
            event: event.to_owned(),
            reason: error.to_string(),
        };
        let value: Value = serde_json::from_str(data).map_err(|e| fail(event, &e))?;
        let name = match (event, value.get("type").and_then(Value::as_str)) {
            ("message" | "", Some(kind)) => kind.to_owned(),
            _ => event.to_owned(),
        };
        let typed = |value: Value| -> Result<Self, serde_json::Error> {
            Ok(match name.as_str() {
                "run_created" => Self::RunCreated(serde_json::from_value(value)?),
                "status" => Self::Status(serde_json::from_value(value)?),
                "node_update" => Self::NodeUpdate(serde_json::from_value(value)?),
                "narration" => Self::Narration(serde_json::from_value(value)?),
                "data" => Self::Data(serde_json::from_value(value)?),
                "error" => Self::Error(serde_json::from_value(value)?),
                "stream_end" => Self::StreamEnd(serde_json::from_value(value)?),
                "store_status" => Self::StoreStatus(serde_json::from_value(value)?),
                "pruned" => Self::Pruned(serde_json::from_value(value)?),
                "done" => Self::Done {
                    run_id: value
                        .get("run_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                },
                _ => Self::Unknown {
                    event: name.clone(),
                    data: value,
                },
            })
        };
        typed(value).map_err(|e| fail(&name, &e))
    }

    /// Fills in the run id when the server left it out (a per-run stream knows its run).
    #[must_use]
    pub fn with_run_id(mut self, run_id: &str) -> Self {
        let slot = match &mut self {
            Self::RunCreated(summary) => &mut summary.run_id,
            Self::Status(e) => &mut e.run_id,
            Self::NodeUpdate(e) => &mut e.run_id,
            Self::Narration(e) => &mut e.run_id,
            Self::Data(e) => &mut e.run_id,
            Self::Error(e) => &mut e.run_id,
            Self::StreamEnd(e) => &mut e.run_id,
            Self::Done { run_id } => run_id,
            Self::StoreStatus(_) | Self::Pruned(_) | Self::Unknown { .. } => return self,
        };
        if slot.is_empty() {
            run_id.clone_into(slot);
        }
        self
    }

    /// The event's wire type.
    pub fn name(&self) -> &str {
        match self {
            Self::RunCreated(_) => "run_created",
            Self::Status(_) => "status",
            Self::NodeUpdate(_) => "node_update",
            Self::Narration(_) => "narration",
            Self::Data(_) => "data",
            Self::Error(_) => "error",
            Self::StreamEnd(_) => "stream_end",
            Self::StoreStatus(_) => "store_status",
            Self::Pruned(_) => "pruned",
            Self::Done { .. } => "done",
            Self::Unknown { event, .. } => event,
        }
    }

    /// The run the event belongs to; empty when the server did not say.
    pub fn run_id(&self) -> &str {
        match self {
            Self::RunCreated(summary) => &summary.run_id,
            Self::Status(e) => &e.run_id,
            Self::NodeUpdate(e) => &e.run_id,
            Self::Narration(e) => &e.run_id,
            Self::Data(e) => &e.run_id,
            Self::Error(e) => &e.run_id,
            Self::StreamEnd(e) => &e.run_id,
            Self::Done { run_id } => run_id,
            Self::StoreStatus(_) | Self::Pruned(_) => "",
            Self::Unknown { data, .. } => data.get("run_id").and_then(Value::as_str).unwrap_or(""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streams_own_notices() {
        let event = RunEvent::decode(
            "store_status",
            r#"{"writable":false,"error":"database or disk is full","since":"2026-12-01T06:19:09Z"}"#,
        )
        .unwrap();
        let RunEvent::StoreStatus(status) = &event else {
            panic!("{event:?}");
        };
        assert!(!status.writable);
        assert_eq!(status.error.as_deref(), Some("database or disk is full"));
        assert_eq!(event.run_id(), "");
        assert_eq!(event.clone().with_run_id("r1"), event);
        let event = RunEvent::decode(
            "pruned",
            r#"{"after":1,"pruned_through":40,"message":"gone"}"#,
        )
        .unwrap();
        assert_eq!(
            event,
            RunEvent::Pruned(Pruned {
                after: 1,
                pruned_through: 40,
                message: "gone".into()
            })
        );
        assert_eq!(event.name(), "pruned");
    }

    #[test]
    fn a_named_node_update_with_an_older_servers_node_field() {
        let event = RunEvent::decode(
            "node_update",
            r#"{"run_id":"r1","node":"writer","iteration":2,"tokens_out":120,"snippet":null,"extra":[1]}"#,
        )
        .unwrap();
        let RunEvent::NodeUpdate(update) = event else {
            panic!("{event:?}");
        };
        assert_eq!(update.agent.as_deref(), Some("writer"));
        assert_eq!(update.tokens_out, Some(120));
        assert_eq!(update.snippet, None);
    }

    #[test]
    fn seed_001_message_events_carry_their_type_in_the_json() {
        let narration = RunEvent::decode(
            "message",
            r#"{"type":"narration","formatted":"Found 1 model(s)"}"#,
        )
        .unwrap();
        assert!(
            matches!(narration, RunEvent::Narration(ref n) if n.formatted == "Found 1 model(s)")
        );
        let data = RunEvent::decode(
            "message",
            r#"{"type":"data","action":"model_list","payload":{"models":[]}}"#,
        )
        .unwrap();
        assert!(matches!(data, RunEvent::Data(ref d) if d.action == "model_list"));
        assert_eq!(
            RunEvent::decode("message", r#"{"type":"done"}"#).unwrap(),
            RunEvent::Done {
                run_id: String::new()
            }
        );
    }

    #[test]
    fn unknown_types_are_kept_and_bad_json_is_a_clear_error() {
        let event = RunEvent::decode("gpu_temp", r#"{"run_id":"r9","celsius":71}"#).unwrap();
        assert_eq!(event.name(), "gpu_temp");
        assert_eq!(event.run_id(), "r9");
        let error = RunEvent::decode("status", "{not json").unwrap_err();
        assert_eq!(error.event, "status");
        let error = RunEvent::decode("status", r#"{"run_id":"r1"}"#).unwrap_err();
        assert!(error.reason.contains("status"), "{error}");
    }

    #[test]
    fn an_unknown_status_is_kept_not_fatal() {
        let event = RunEvent::decode("status", r#"{"run_id":"r","status":"paused"}"#).unwrap();
        assert!(matches!(event, RunEvent::Status(ref s) if s.status == RunStatus::Unknown));
    }
}
