//! Benchmark progress: the events of `/api/benchmark-sse` and the request that starts
//! a benchmark.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::types::null_as_default;

/// The `type` a `status` event carries.
pub const BENCHMARK_STATUS_TYPE: &str = "benchmark_status";

/// Where a benchmark is. Unknown phases from other servers are kept as text.
pub mod phase {
    /// No benchmark has run yet.
    pub const IDLE: &str = "idle";
    /// The watched log file does not exist (yet).
    pub const WAITING: &str = "waiting_for_log";
    /// Tasks are running.
    pub const RUNNING: &str = "running";
    /// Every task has a result.
    pub const FINISHED: &str = "finished";
    /// The benchmark stopped before every task ran.
    pub const STOPPED: &str = "stopped";
}

/// The watched log file, when the server follows a benchmark that runs elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFileState {
    /// The path given to `--benchmark-log`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: String,
    /// Whether it exists right now.
    #[serde(default)]
    pub present: bool,
    /// How often it was replaced or truncated since the server started.
    #[serde(default)]
    pub rotations: u64,
    /// Why it could not be read, when it exists but cannot be.
    #[serde(default)]
    pub problem: Option<String>,
}

/// A `status` event: connection, phase, and whether a benchmark is running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchmarkStatus {
    /// Always [`BENCHMARK_STATUS_TYPE`].
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub kind: String,
    /// Whether the server can see the benchmark's source (the log file, or its own runner).
    #[serde(default)]
    pub connected: bool,
    /// One of [`phase`]'s values.
    #[serde(default, deserialize_with = "null_as_default")]
    pub phase: String,
    /// Whether tasks are running now.
    #[serde(default)]
    pub running: bool,
    /// `api` (started with `POST /api/benchmarks`) or `log` (`--benchmark-log`).
    #[serde(default)]
    pub source: Option<String>,
    /// The benchmark's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Counts the benchmarks this server has seen; a new number means a new benchmark.
    #[serde(default)]
    pub benchmark: Option<u64>,
    /// The log file, in `log` mode.
    #[serde(default)]
    pub log: Option<LogFileState>,
}

/// A `progress` event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchmarkProgress {
    /// Tasks with a result.
    #[serde(default)]
    pub tasks_completed: u64,
    /// Tasks in the benchmark.
    #[serde(default)]
    pub total_tasks: u64,
    /// The task running now.
    #[serde(default)]
    pub current_task: Option<String>,
    /// The step the current task is at.
    #[serde(default)]
    pub current_step: Option<u64>,
}

/// A `task_complete` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskComplete {
    /// The task.
    #[serde(default, deserialize_with = "null_as_default")]
    pub task_id: String,
    /// Whether it passed.
    #[serde(default)]
    pub success: bool,
    /// Its score, usually 0..=1.
    #[serde(default)]
    pub score: f64,
    /// How long it took, in seconds, when known.
    #[serde(default)]
    pub duration_secs: Option<f64>,
    /// The run that did it, for benchmarks run by this server.
    #[serde(default)]
    pub run_id: Option<String>,
}

/// An `error` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchmarkError {
    /// What went wrong.
    #[serde(default, deserialize_with = "null_as_default")]
    pub message: String,
}

/// `POST /api/benchmarks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateBenchmark {
    /// How many tasks (1..=1000).
    pub tasks: u64,
    /// A name for people.
    #[serde(default)]
    pub name: Option<String>,
    /// Passed to every task's run (`iterations`, `fail`, `tokens_per_sec`, `model`).
    #[serde(default)]
    pub params: Value,
}

/// The answer to `POST /api/benchmarks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchmarkStarted {
    /// The benchmark's name.
    pub name: String,
    /// How many tasks it runs.
    pub total_tasks: u64,
}

/// Any event of the benchmark stream.
#[derive(Debug, Clone, PartialEq)]
pub enum BenchmarkEvent {
    /// Connection and phase.
    Status(BenchmarkStatus),
    /// How far it is.
    Progress(BenchmarkProgress),
    /// One task finished.
    TaskComplete(TaskComplete),
    /// Something went wrong.
    Error(BenchmarkError),
    /// An event type this client does not know.
    Unknown(String),
}

impl BenchmarkEvent {
    /// The wire name of [`BenchmarkEvent::Status`].
    pub const STATUS: &'static str = "status";
    /// The wire name of [`BenchmarkEvent::Progress`].
    pub const PROGRESS: &'static str = "progress";
    /// The wire name of [`BenchmarkEvent::TaskComplete`].
    pub const TASK_COMPLETE: &'static str = "task_complete";
    /// The wire name of [`BenchmarkEvent::Error`].
    pub const ERROR: &'static str = "error";

    /// Decodes an SSE event of the benchmark stream.
    pub fn decode(event: &str, data: &str) -> Result<Self, serde_json::Error> {
        Ok(match event {
            Self::STATUS => Self::Status(serde_json::from_str(data)?),
            Self::PROGRESS => Self::Progress(serde_json::from_str(data)?),
            Self::TASK_COMPLETE => Self::TaskComplete(serde_json::from_str(data)?),
            Self::ERROR => Self::Error(serde_json::from_str(data)?),
            other => Self::Unknown(other.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_own_examples_decode() {
        let status = BenchmarkEvent::decode(
            "status",
            r#"{"type":"vm_status","connected":true,"phase":"ready","waa_ready":true,"probe":{"status":"ready"}}"#,
        )
        .unwrap();
        assert!(
            matches!(status, BenchmarkEvent::Status(ref s) if s.connected && s.phase == "ready")
        );
        let progress = BenchmarkEvent::decode(
            "progress",
            r#"{"tasks_completed":5,"total_tasks":30,"current_task":"task_001_notepad","current_step":12}"#,
        )
        .unwrap();
        assert_eq!(
            progress,
            BenchmarkEvent::Progress(BenchmarkProgress {
                tasks_completed: 5,
                total_tasks: 30,
                current_task: Some("task_001_notepad".into()),
                current_step: Some(12),
            })
        );
        let done = BenchmarkEvent::decode(
            "task_complete",
            r#"{"task_id":"task_001_notepad","success":true,"score":1.0}"#,
        )
        .unwrap();
        assert!(
            matches!(done, BenchmarkEvent::TaskComplete(ref t) if t.success && (t.score - 1.0).abs() < 1e-9)
        );
        let error =
            BenchmarkEvent::decode("error", r#"{"message":"SSH connection failed"}"#).unwrap();
        assert!(
            matches!(error, BenchmarkEvent::Error(ref e) if e.message == "SSH connection failed")
        );
        assert!(BenchmarkEvent::decode("progress", "{oops").is_err());
        assert_eq!(
            BenchmarkEvent::decode("heartbeat", "{}").unwrap(),
            BenchmarkEvent::Unknown("heartbeat".into())
        );
    }
}
