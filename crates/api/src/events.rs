//! The events a run stream carries, decoded from an SSE event's type and JSON data.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::data::DataAction;
use super::error_code::ErrorCode;
use super::types::{RunStatus, RunSummary, StoreStatus, null_as_default};

/// Progress of the current agent (`node_update`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeUpdate {
    /// The run it belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub run_id: String,
    /// The agent working (older servers call it `node`).
    #[serde(default, alias = "node", skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The iteration of the agent loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iteration: Option<u32>,
    /// Tokens generated so far by the whole run (cumulative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
    /// The tail of the text being generated, at most 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
    /// When the server emitted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
    /// The tail of the current step's reasoning text (kept apart from the answer), at most 200
    /// characters; absent when the model does not reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// True while `tokens_out` is counted from stream chunks, before the model server's own
    /// usage figure corrects it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated: Option<bool>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the server recorded it (runboard servers), so clients measure on the server's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
}

/// The `action` of the warning narrated when a model server ends a step's answer (`[DONE]`)
/// without a finish reason: the step was interrupted, not finished.
pub const STEP_INTERRUPTED_ACTION: &str = "step_interrupted";

/// A line for people (`narration`): the human channel, beside `data` for programs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Narration {
    /// The run it belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub run_id: String,
    /// The text, ready to print; may span lines (a table, say).
    #[serde(default, deserialize_with = "null_as_default")]
    pub formatted: String,
    /// `info`, `warn`, `error`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// What it is about, machine-readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// Structured data for UI state (`data`): the machine channel, beside `narration`.
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

impl DataEvent {
    /// Reads the payload as the type its action names ([`DataAction::Other`] for an action this
    /// side does not know); an error when a known action's payload is not its type.
    pub fn decode(&self) -> Result<DataAction, DecodeError> {
        DataAction::from_parts(&self.action, &self.payload).map_err(|error| DecodeError {
            event: format!("data ({})", self.action),
            reason: error.to_string(),
        })
    }
}

impl From<DataAction> for DataEvent {
    fn from(action: DataAction) -> Self {
        Self {
            run_id: String::new(),
            action: action.name().to_owned(),
            payload: action.payload(),
        }
    }
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
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

/// Declares the event kinds once: the enum, [`EventKind::ALL`] and the wire names all come from
/// this list, so a kind cannot be added to one and forgotten in another.
macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// The type of a run-stream event, as named on the wire (`event: node_update`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[$doc])* $variant,)*
        }

        impl EventKind {
            /// Every kind, in the order a run usually shows them.
            pub const ALL: [Self; [$($name),*].len()] = [$(Self::$variant),*];

            /// The wire name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

event_kinds! {
    /// `run_created`.
    RunCreated = "run_created",
    /// `status`.
    Status = "status",
    /// `node_update`.
    NodeUpdate = "node_update",
    /// `narration`.
    Narration = "narration",
    /// `data`.
    Data = "data",
    /// `error`.
    Error = "error",
    /// `stream_end`.
    StreamEnd = "stream_end",
    /// `store_status`.
    StoreStatus = "store_status",
    /// `pruned`.
    Pruned = "pruned",
    /// `done`.
    Done = "done",
}

impl EventKind {
    /// The kind a wire name stands for; `None` for a type this side does not know.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// A job's completion marker (`done`; older servers send `{"type": "done"}`).
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
    /// `message` event whose JSON names its type in `"type"` (older servers).
    pub fn decode(event: &str, data: &str) -> Result<Self, DecodeError> {
        let fail = |event: &str, error: &serde_json::Error| DecodeError {
            event: event.to_owned(),
            reason: error.to_string(),
        };
        let value: Value = serde_json::from_str(data).map_err(|e| fail(event, &e))?;
        Self::decode_value(event, value)
    }

    /// Decodes an event whose data was parsed already (a stored event, say), accepting the
    /// same two wire forms as [`RunEvent::decode`].
    pub fn decode_value(event: &str, value: Value) -> Result<Self, DecodeError> {
        let fail = |event: &str, error: &serde_json::Error| DecodeError {
            event: event.to_owned(),
            reason: error.to_string(),
        };
        let name = match (event, value.get("type").and_then(Value::as_str)) {
            ("message" | "", Some(kind)) => kind.to_owned(),
            _ => event.to_owned(),
        };
        let typed = |value: Value| -> Result<Self, serde_json::Error> {
            let Some(kind) = EventKind::parse(&name) else {
                return Ok(Self::Unknown {
                    event: name.clone(),
                    data: value,
                });
            };
            Ok(match kind {
                EventKind::RunCreated => Self::RunCreated(serde_json::from_value(value)?),
                EventKind::Status => Self::Status(serde_json::from_value(value)?),
                EventKind::NodeUpdate => Self::NodeUpdate(serde_json::from_value(value)?),
                EventKind::Narration => Self::Narration(serde_json::from_value(value)?),
                EventKind::Data => Self::Data(serde_json::from_value(value)?),
                EventKind::Error => Self::Error(serde_json::from_value(value)?),
                EventKind::StreamEnd => Self::StreamEnd(serde_json::from_value(value)?),
                EventKind::StoreStatus => Self::StoreStatus(serde_json::from_value(value)?),
                EventKind::Pruned => Self::Pruned(serde_json::from_value(value)?),
                EventKind::Done => Self::Done {
                    run_id: value
                        .get("run_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
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

    /// A lifecycle change of a run (its id filled in when it is recorded).
    pub fn status(status: RunStatus, message: Option<&str>) -> Self {
        Self::Status(StatusChange {
            run_id: String::new(),
            status,
            message: message.map(str::to_owned),
            ts: None,
        })
    }

    /// Stamps the events that carry their own time (`status`, `node_update`) with `ts` when they
    /// have none, so the wire says when the server recorded them.
    #[must_use]
    pub fn stamped(mut self, ts: &str) -> Self {
        let slot = match &mut self {
            Self::Status(e) => &mut e.ts,
            Self::NodeUpdate(e) => &mut e.ts,
            _ => return self,
        };
        slot.get_or_insert_with(|| ts.to_owned());
        self
    }

    /// The end of a run's stream.
    pub fn stream_end(status: RunStatus) -> Self {
        Self::StreamEnd(StreamEnd {
            run_id: String::new(),
            status,
        })
    }

    /// A run's failure.
    pub fn error(message: impl Into<String>, code: ErrorCode) -> Self {
        Self::Error(RunError {
            run_id: String::new(),
            message: message.into(),
            code: Some(code),
        })
    }

    /// A line for people.
    pub fn narration(level: &str, action: &str, formatted: impl Into<String>) -> Self {
        Self::Narration(Narration {
            run_id: String::new(),
            formatted: formatted.into(),
            level: Some(level.to_owned()),
            action: Some(action.to_owned()),
        })
    }

    /// Structured data for programs (its run id filled in when it is recorded).
    pub fn data(action: DataAction) -> Self {
        Self::Data(action.into())
    }

    /// The event's kind; `None` for a type this side does not know.
    pub fn kind(&self) -> Option<EventKind> {
        Some(match self {
            Self::RunCreated(_) => EventKind::RunCreated,
            Self::Status(_) => EventKind::Status,
            Self::NodeUpdate(_) => EventKind::NodeUpdate,
            Self::Narration(_) => EventKind::Narration,
            Self::Data(_) => EventKind::Data,
            Self::Error(_) => EventKind::Error,
            Self::StreamEnd(_) => EventKind::StreamEnd,
            Self::StoreStatus(_) => EventKind::StoreStatus,
            Self::Pruned(_) => EventKind::Pruned,
            Self::Done { .. } => EventKind::Done,
            Self::Unknown { .. } => return None,
        })
    }

    /// The event's wire type.
    pub fn name(&self) -> &str {
        match self {
            Self::Unknown { event, .. } => event,
            known => known.kind().map_or("", EventKind::as_str),
        }
    }

    /// The event's data as the server writes it: a JSON object whose keys come out sorted
    /// (`serde_json`'s map), which [`RunEvent::decode`] reads back to an equal event.
    pub fn to_json(&self) -> Value {
        let value = match self {
            Self::RunCreated(summary) => serde_json::to_value(summary),
            Self::Status(e) => serde_json::to_value(e),
            Self::NodeUpdate(e) => serde_json::to_value(e),
            Self::Narration(e) => serde_json::to_value(e),
            Self::Data(e) => serde_json::to_value(e),
            Self::Error(e) => serde_json::to_value(e),
            Self::StreamEnd(e) => serde_json::to_value(e),
            Self::StoreStatus(e) => serde_json::to_value(e),
            Self::Pruned(e) => serde_json::to_value(e),
            Self::Done { run_id } => Ok(serde_json::json!({ "run_id": run_id })),
            Self::Unknown { data, .. } => Ok(data.clone()),
        };
        // These types hold only strings, numbers and string-keyed maps, which always encode.
        value.unwrap_or(Value::Null)
    }

    /// [`RunEvent::to_json`] as text, as the server stores and sends it. A `data` event, one
    /// or more in every call, is written straight from its parts (already in key order, its
    /// payload a sorted map) rather than copied into a value first.
    pub fn to_json_text(&self) -> String {
        let text = match self {
            Self::Data(e) => serde_json::to_string(&DataInKeyOrder {
                action: &e.action,
                payload: &e.payload,
                run_id: &e.run_id,
            }),
            other => serde_json::to_string(&other.to_json()),
        };
        // As in `to_json`: these always encode.
        text.unwrap_or_else(|_| "null".to_owned())
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

/// A [`DataEvent`]'s fields in the order of their keys, as [`RunEvent::to_json`] sorts them.
#[derive(Serialize)]
struct DataInKeyOrder<'a> {
    action: &'a str,
    payload: &'a Value,
    run_id: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A representative event of each kind, as the server builds it. The match has no wildcard,
    /// so a new kind does not compile until it is covered here.
    fn example(kind: EventKind) -> RunEvent {
        let event = match kind {
            EventKind::RunCreated => {
                let mut summary = RunSummary::new("r1", "Summarise «naïve» 😊", RunStatus::Queued);
                summary.created_at = Some("2026-12-01T08:00:00.5Z".into());
                RunEvent::RunCreated(summary)
            }
            EventKind::Status => RunEvent::status(RunStatus::Running, Some("started")),
            EventKind::NodeUpdate => RunEvent::NodeUpdate(NodeUpdate {
                run_id: String::new(),
                agent: Some("writer".into()),
                iteration: Some(2),
                tokens_out: Some(120),
                snippet: Some("line one\nline two → 😊".into()),
                ts: Some("2026-12-01T08:00:01Z".into()),
                reasoning: Some("first, the user wants…".into()),
                estimated: Some(true),
            }),
            EventKind::Narration => RunEvent::narration("info", "agent_start", "a\ttable\n| x |"),
            EventKind::Data => {
                RunEvent::data(DataAction::AgentMetrics(crate::data::AgentMetrics {
                    agent: "critic".into(),
                    tokens_out: 7,
                    tok_per_sec: 41.0,
                }))
            }
            EventKind::Error => RunEvent::error("lost its worker", ErrorCode::GenerationFailed),
            EventKind::StreamEnd => RunEvent::stream_end(RunStatus::Failed),
            EventKind::StoreStatus => RunEvent::StoreStatus(StoreStatus {
                writable: false,
                error: Some("database or disk is full".into()),
                since: Some("2026-12-01T08:00:02Z".into()),
            }),
            EventKind::Pruned => RunEvent::Pruned(Pruned {
                after: 3,
                pruned_through: 40,
                message: "gone".into(),
            }),
            EventKind::Done => RunEvent::Done {
                run_id: String::new(),
            },
        };
        event.with_run_id("r1")
    }

    #[test]
    fn every_kind_the_server_writes_reads_back_equal_over_sse_bytes() {
        for kind in EventKind::ALL {
            let sent = example(kind);
            assert_eq!(sent.kind(), Some(kind));
            let mut bytes = bytes::BytesMut::new();
            runboard_sse::encode::write_event(
                &mut bytes,
                Some("9"),
                sent.name(),
                &sent.to_json_text(),
            );
            assert_eq!(sent.to_json_text(), sent.to_json().to_string(), "{kind}");
            let mut parser = runboard_sse::Parser::new();
            let mut frames = Vec::new();
            parser.feed(&bytes, &mut |frame| frames.push(frame));
            let [runboard_sse::Frame::Event(event)] = frames.as_slice() else {
                panic!("{kind}: {frames:?}");
            };
            assert_eq!(event.event, kind.as_str());
            let received = RunEvent::decode(&event.event, &event.data).unwrap();
            assert_eq!(received, sent, "{kind}");
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
    }

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
    fn older_servers_message_events_carry_their_type_in_the_json() {
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
