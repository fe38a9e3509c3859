//! The runs-API contract as serde types, shared by the server, the console and the CLI.
//!
//! Decoding is tolerant, because real servers differ: unknown fields are ignored, optional
//! fields may be absent or null, `node` is read as `agent`, and an unknown status is kept as
//! [`RunStatus::Unknown`] rather than failing the whole response.

use serde::{Deserialize, Deserializer, Serialize};

use crate::error_code::ErrorCode;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for a free worker slot.
    Queued,
    /// Generating.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped on request.
    Cancelled,
    /// A status this client does not know (a newer or different server).
    #[serde(other)]
    Unknown,
}

impl RunStatus {
    /// Every status a run can be in, in lifecycle order (without `Unknown`).
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Whether the run is over.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The wire name, as in `?status=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, not `write_str`, so tables can align it with `{:<10}`.
        f.pad(self.as_str())
    }
}

/// A run as listed: what it is and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The server's opaque id.
    pub run_id: String,
    /// The task text it was launched with.
    #[serde(default, deserialize_with = "null_as_default")]
    pub task: String,
    /// Where it is in its life.
    #[serde(default = "unknown_status", deserialize_with = "null_as_unknown")]
    pub status: RunStatus,
    /// When it was submitted (RFC 3339, UTC).
    #[serde(default)]
    pub created_at: Option<String>,
    /// When it started running.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it finished.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Tokens generated so far.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tokens_out: u64,
    /// The agent working now (or last).
    #[serde(default, alias = "node")]
    pub agent: Option<String>,
    /// The current iteration of the agent loop.
    #[serde(default)]
    pub iteration: Option<u32>,
    /// The tail of the latest text, at most 200 characters.
    #[serde(default)]
    pub snippet: Option<String>,
    /// Who made it: the worker whose series of calls or runs it belongs to (a proxied call's
    /// `X-Runboard-Worker`, its body's `user`, or its client's address and `User-Agent`; a
    /// launch's `params.worker`). `None` for a run launched without one: it is its own worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The name of the token that launched it (a named token of `serve --tokens`; also a
    /// benchmark's runs, by who started it). `None` for runs launched without a named token and
    /// for proxied calls, whose `worker` says who made them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_by: Option<String>,
}

impl RunSummary {
    /// A summary with only an id, a task and a status; the rest unknown yet.
    pub fn new(run_id: impl Into<String>, task: impl Into<String>, status: RunStatus) -> Self {
        Self {
            run_id: run_id.into(),
            task: task.into(),
            status,
            created_at: None,
            started_at: None,
            finished_at: None,
            tokens_out: 0,
            agent: None,
            iteration: None,
            snippet: None,
            worker: None,
            launched_by: None,
        }
    }
}

/// One stored event of a run, as `GET /api/runs/{id}` returns it.
///
/// Servers in the first design's style name the fields `id`, `event_type`, `payload` (an object,
/// or the object as a JSON string) and `created_at`; both spellings are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The event's position within its run, from 1.
    #[serde(default, alias = "id", deserialize_with = "lenient_u64")]
    pub seq: u64,
    /// The event type (`node_update`, `status`, …).
    #[serde(alias = "event_type")]
    pub event: String,
    /// The event's JSON object.
    #[serde(default, alias = "payload", deserialize_with = "json_or_json_text")]
    pub data: serde_json::Value,
    /// When it was emitted.
    #[serde(default, alias = "created_at")]
    pub ts: Option<String>,
}

impl StoredEvent {
    /// The event's kind; `None` for a type this side does not know.
    pub fn kind(&self) -> Option<crate::EventKind> {
        crate::EventKind::parse(&self.event)
    }

    /// The event read through the same types a live stream's events are.
    pub fn decode(&self) -> Result<crate::RunEvent, crate::DecodeError> {
        crate::RunEvent::decode_value(&self.event, self.data.clone())
    }
}

/// A run with its whole event chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    /// The summary fields.
    #[serde(flatten)]
    pub summary: RunSummary,
    /// Every event, in order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub events: Vec<StoredEvent>,
}

/// A page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunList {
    /// The runs on this page.
    pub runs: Vec<RunSummary>,
    /// Pass as `before=` for the next page; `None` on the last page.
    #[serde(default)]
    pub next_before: Option<String>,
}

impl RunList {
    /// Decodes a run list in either form servers use: `{"runs": [...]}` or a bare array.
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Page(RunList),
            Bare(Vec<RunSummary>),
        }
        Ok(match serde_json::from_slice(body)? {
            Either::Page(page) => page,
            Either::Bare(runs) => Self {
                runs,
                next_before: None,
            },
        })
    }
}

/// How a run is submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// Return at once; the run waits for a worker slot.
    #[default]
    Queued,
    /// Wait for the run to finish and return its detail.
    Inline,
}

/// The body of `POST /api/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRun {
    /// What to generate.
    pub task: String,
    /// Queued (default) or inline.
    #[serde(default)]
    pub mode: RunMode,
    /// Generator parameters, passed through.
    #[serde(default = "empty_object")]
    pub params: serde_json::Value,
}

/// `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` when the server is serving.
    pub status: String,
    /// The server's version.
    #[serde(default)]
    pub version: Option<String>,
    /// Optional endpoints it offers, e.g. [`Feature::Events`] for `/api/events`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub features: Vec<Feature>,
    /// The id of the newest event on `/api/events` (runboard servers): a console starts its
    /// stream there and leaves history to the run list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_head: Option<u64>,
    /// Whether the server can store what it is sent (runboard servers). While it cannot,
    /// `status` is `degraded`, new runs are refused and running runs are held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreStatus>,
    /// The database engine behind the server (runboard servers): `sqlite` or `postgresql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The server instances sharing the store (runboard servers): this one, and on PostgreSQL
    /// every other, alive first, each with its last heartbeat.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceStatus>,
    /// Events handed to this server's writer and not yet stored (runboard servers): how far
    /// the store is behind. Past a threshold proxied calls are refused with 503
    /// `recorder_behind` and mid-answer updates are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorder_backlog: Option<u64>,
    /// How retention is doing (runboard servers started with `--retain-runs` or
    /// `--retain-days`): when it last pruned, what it removed, and whether it keeps failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionStatus>,
    /// What the server leaves out of its record (`serve --redact`; runboard servers): no
    /// prompts, or no text at all. Absent when it keeps everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<crate::Redaction>,
}

/// Retention's record on `/api/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionStatus {
    /// When a pass last finished without error (RFC 3339); absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// Runs the last successful pass removed.
    #[serde(default)]
    pub last_removed_runs: u64,
    /// Events the last successful pass removed.
    #[serde(default)]
    pub last_removed_events: u64,
    /// Runs removed since the server started.
    #[serde(default)]
    pub removed_runs_total: u64,
    /// Passes that failed since the last success: above zero, the database keeps growing.
    #[serde(default)]
    pub failures_in_a_row: u64,
    /// Why the last pass failed, while it keeps failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One server instance on `/api/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Its id, new at every start.
    pub id: String,
    /// The name people know it by (`serve --instance-name`, by default host:port).
    pub name: String,
    /// Whether it is the instance that answered.
    #[serde(default)]
    pub this: bool,
    /// `alive`, `stopped` (shut down cleanly) or `expired` (silent past its lease; its runs
    /// were taken over).
    pub state: String,
    /// When it started (RFC 3339, its own clock).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339, its own clock).
    pub heartbeat_at: String,
    /// How long the others wait without a heartbeat before taking its runs over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_secs: Option<u64>,
    /// How it ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An optional part of the API a server may offer, listed by `/api/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// `/api/events`: every run's events on one stream, resumable by id.
    Events,
    /// `POST /api/runs/{id}/cancel`.
    Cancel,
    /// `mode: inline`: a create that answers once the run is over.
    Inline,
    /// `Last-Event-ID` on the per-run stream replays what was missed.
    Replay,
    /// `job: models`: a run that lists the server's models.
    Models,
    /// `/api/benchmark` and its stream.
    Benchmarks,
    /// `/api/requests` and its stream: generation requests in flight.
    ActiveRequests,
    /// `/api/upstreams` and its stream: the model servers it reads (`serve --scrape`).
    Upstreams,
    /// `/api/workers` and `GET /api/runs?worker=`: the fleet as its workers.
    Workers,
    /// A feature this side does not know (a newer or different server).
    #[serde(other)]
    Unknown,
}

impl Feature {
    /// Every feature a runboard server can offer, in the order `/api/health` lists them.
    pub const ALL: [Self; 9] = [
        Self::Events,
        Self::Cancel,
        Self::Inline,
        Self::Replay,
        Self::Models,
        Self::Benchmarks,
        Self::ActiveRequests,
        Self::Upstreams,
        Self::Workers,
    ];
}

/// Whether a server's store accepts writes: on `/api/health` and as the `store_status` event
/// of every event stream when it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// False while writes fail (a full disk, a read-only file).
    pub writable: bool,
    /// Why writes fail, when they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Since when (RFC 3339) the store has been in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl StoreStatus {
    /// A store that accepts writes.
    pub fn writable() -> Self {
        Self {
            writable: true,
            error: None,
            since: None,
        }
    }
}

impl Health {
    /// What a server without `/api/health` (or with one that is not JSON) is taken to be: serving,
    /// with no optional features, so clients poll the run list and follow runs one by one.
    pub fn without_features() -> Self {
        Self {
            status: "ok".to_owned(),
            version: None,
            features: Vec::new(),
            events_head: None,
            store: None,
            backend: None,
            instances: Vec::new(),
            recorder_backlog: None,
            retention: None,
            redaction: None,
        }
    }

    /// Whether the server lists `feature`.
    pub fn has(&self, feature: Feature) -> bool {
        self.features.contains(&feature)
    }
}

/// The error body every endpoint uses: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, for machines (`code`) and people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as [`ErrorCode::NotFound`].
    #[serde(default)]
    pub code: ErrorCode,
    /// A sentence for people.
    #[serde(default, deserialize_with = "null_as_default")]
    pub message: String,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn unknown_status() -> RunStatus {
    RunStatus::Unknown
}

/// Reads `null` as the type's default, for fields that are not `Option` on our side.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A number, a number in a string, or null (0): ids differ between servers and the position is
/// only used for order.
fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(n) => n.as_u64().unwrap_or_default(),
        serde_json::Value::String(text) => text.trim().parse().unwrap_or_default(),
        _ => 0,
    })
}

/// A JSON value, where a string that holds a JSON object or array is read as that value: some
/// servers store event payloads as text.
fn json_or_json_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<serde_json::Value, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    if let serde_json::Value::String(text) = &value {
        let inner = text.trim_start();
        if (inner.starts_with('{') || inner.starts_with('['))
            && let Ok(parsed) = serde_json::from_str(inner)
        {
            return Ok(parsed);
        }
    }
    Ok(value)
}

/// The message of an error body in `FastAPI`'s shape, `{"detail": "..."}` or, for a request that
/// failed validation, `{"detail": [{"loc": [...], "msg": "..."}, ...]}`.
pub(crate) fn fastapi_detail(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match value.get("detail")? {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| {
                    let message = item
                        .get("msg")
                        .and_then(serde_json::Value::as_str)
                        .map_or_else(|| item.to_string(), str::to_owned);
                    let place: Vec<String> = item
                        .get("loc")
                        .and_then(serde_json::Value::as_array)
                        .map(|loc| {
                            loc.iter()
                                .map(|part| match part {
                                    serde_json::Value::String(text) => text.clone(),
                                    other => other.to_string(),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if place.is_empty() {
                        message
                    } else {
                        format!("{}: {message}", place.join("."))
                    }
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn null_as_unknown<'de, D: Deserializer<'de>>(deserializer: D) -> Result<RunStatus, D::Error> {
    Ok(Option::<RunStatus>::deserialize(deserializer)?.unwrap_or(RunStatus::Unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_events_read_in_the_first_designs_spelling_too() {
        let ours: StoredEvent = serde_json::from_str(
            r#"{"seq": 3, "event": "node_update", "data": {"agent": "writer"}, "ts": "2026-11-21T00:00:01Z"}"#,
        )
        .unwrap();
        let theirs: StoredEvent = serde_json::from_str(
            r#"{"id": 3, "event_type": "node_update", "payload": {"agent": "writer"}, "created_at": "2026-11-21T00:00:01Z"}"#,
        )
        .unwrap();
        assert_eq!(ours, theirs);
        let as_text: StoredEvent = serde_json::from_str(
            r#"{"id": "3", "event_type": "node_update", "payload": "{\"agent\": \"writer\"}", "created_at": "2026-11-21T00:00:01Z"}"#,
        )
        .unwrap();
        assert_eq!(as_text, ours);
        let plain: StoredEvent =
            serde_json::from_str(r#"{"id": null, "event_type": "status", "payload": "done"}"#)
                .unwrap();
        assert_eq!((plain.seq, plain.data), (0, serde_json::json!("done")));
    }

    #[test]
    fn fastapi_error_bodies_give_their_detail() {
        assert_eq!(
            fastapi_detail(br#"{"detail": "Run not found"}"#).as_deref(),
            Some("Run not found")
        );
        let validation = br#"{"detail": [{"loc": ["body", "task"], "msg": "field required", "type": "value_error.missing"}, {"loc": ["query", "limit"], "msg": "not an integer"}]}"#;
        assert_eq!(
            fastapi_detail(validation).as_deref(),
            Some("body.task: field required; query.limit: not an integer")
        );
        assert_eq!(fastapi_detail(b"<html>Not Found</html>"), None);
        assert_eq!(fastapi_detail(br#"{"error": "x"}"#), None);
    }
}
