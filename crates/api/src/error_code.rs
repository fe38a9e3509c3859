//! The stable, machine-readable error codes: of `{"error": {"code", "message"}}` bodies and of
//! runs' `error` events. The server writes them from this enum; clients match on it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A stable error code. A code this side does not know (another server's) is kept as it came.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No such run or endpoint.
    NotFound,
    /// A token is required and was missing or wrong.
    Unauthorized,
    /// The token is valid but its role may not do this (the message names the role needed).
    Forbidden,
    /// The body is not the JSON the endpoint reads.
    BadJson,
    /// The body is JSON but not the shape the endpoint reads.
    InvalidBody,
    /// A run parameter is outside its documented bounds.
    InvalidParams,
    /// The task text is missing or unusable.
    InvalidTask,
    /// The task text is longer than the server accepts.
    TaskTooLong,
    /// A benchmark's task list is unusable.
    InvalidTasks,
    /// One request asked for more runs than allowed.
    TooManyRuns,
    /// A query string could not be read.
    BadQuery,
    /// `limit=` is not a number in range.
    BadLimit,
    /// `status=` names no status.
    BadStatus,
    /// `interval=` is not a number of seconds.
    BadInterval,
    /// A path segment could not be read.
    BadPath,
    /// The request itself is malformed: a line ending in a bare LF, raw bytes in its request
    /// line.
    BadRequest,
    /// The run is over, so it cannot be cancelled.
    AlreadyFinished,
    /// An inline run did not finish in time; it goes on.
    InlineTimeout,
    /// The endpoint does not take this method.
    MethodNotAllowed,
    /// A write that is not `application/json`.
    UnsupportedMediaType,
    /// The body is larger than the server accepts.
    BodyTooLarge,
    /// The body did not arrive in time.
    BodyTimeout,
    /// A browser write from an origin the server does not allow.
    CrossOrigin,
    /// A `Host` that is not the server's own, without a token.
    HostNotAllowed,
    /// Too many runs are waiting; try again after `Retry-After`.
    QueueFull,
    /// The store cannot be written; no new run is accepted.
    StoreUnwritable,
    /// The store could not be read; try again.
    StorageUnavailable,
    /// The server is shutting down.
    ShuttingDown,
    /// The store is too far behind to record another call now; try again after
    /// `Retry-After`.
    RecorderBehind,
    /// The server has too many open connections.
    TooManyConnections,
    /// A benchmark is already running.
    BenchmarkRunning,
    /// The benchmark comes from a log file and cannot be started here.
    BenchmarkSourceIsLog,
    /// A run was cut short by a server restart (an `error` event).
    Interrupted,
    /// A run's generation failed (an `error` event).
    GenerationFailed,
    /// No model server configured with `--upstream` serves the model a proxied request asks for.
    ModelNotFound,
    /// The model server a proxied request needs could not be reached.
    UpstreamUnavailable,
    /// The server replays a recording (`--replay`): it starts and cancels no runs.
    Replaying,
    /// A code this side does not know, as it came.
    Other(String),
}

impl ErrorCode {
    /// Every code this side knows.
    pub const KNOWN: [Self; 37] = [
        Self::NotFound,
        Self::Unauthorized,
        Self::Forbidden,
        Self::BadJson,
        Self::InvalidBody,
        Self::InvalidParams,
        Self::InvalidTask,
        Self::TaskTooLong,
        Self::InvalidTasks,
        Self::TooManyRuns,
        Self::BadQuery,
        Self::BadLimit,
        Self::BadStatus,
        Self::BadInterval,
        Self::BadPath,
        Self::BadRequest,
        Self::AlreadyFinished,
        Self::InlineTimeout,
        Self::MethodNotAllowed,
        Self::UnsupportedMediaType,
        Self::BodyTooLarge,
        Self::BodyTimeout,
        Self::CrossOrigin,
        Self::HostNotAllowed,
        Self::QueueFull,
        Self::StoreUnwritable,
        Self::StorageUnavailable,
        Self::ShuttingDown,
        Self::RecorderBehind,
        Self::TooManyConnections,
        Self::BenchmarkRunning,
        Self::BenchmarkSourceIsLog,
        Self::Interrupted,
        Self::GenerationFailed,
        Self::ModelNotFound,
        Self::UpstreamUnavailable,
        Self::Replaying,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::BadJson => "bad_json",
            Self::InvalidBody => "invalid_body",
            Self::InvalidParams => "invalid_params",
            Self::InvalidTask => "invalid_task",
            Self::TaskTooLong => "task_too_long",
            Self::InvalidTasks => "invalid_tasks",
            Self::TooManyRuns => "too_many_runs",
            Self::BadQuery => "bad_query",
            Self::BadLimit => "bad_limit",
            Self::BadStatus => "bad_status",
            Self::BadInterval => "bad_interval",
            Self::BadPath => "bad_path",
            Self::BadRequest => "bad_request",
            Self::AlreadyFinished => "already_finished",
            Self::InlineTimeout => "inline_timeout",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyTimeout => "body_timeout",
            Self::CrossOrigin => "cross_origin",
            Self::HostNotAllowed => "host_not_allowed",
            Self::QueueFull => "queue_full",
            Self::StoreUnwritable => "store_unwritable",
            Self::StorageUnavailable => "storage_unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::RecorderBehind => "recorder_behind",
            Self::TooManyConnections => "too_many_connections",
            Self::BenchmarkRunning => "benchmark_running",
            Self::BenchmarkSourceIsLog => "benchmark_source_is_log",
            Self::Interrupted => "interrupted",
            Self::GenerationFailed => "generation_failed",
            Self::ModelNotFound => "model_not_found",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::Replaying => "replaying",
            Self::Other(code) => code,
        }
    }

    /// The code a wire name stands for.
    pub fn parse(code: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|known| known.as_str() == code)
            .unwrap_or_else(|| Self::Other(code.to_owned()))
    }
}

impl Default for ErrorCode {
    /// An empty code, for bodies that carry none.
    fn default() -> Self {
        Self::Other(String::new())
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        Ok(Self::parse(&code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_reads_back_as_itself_and_others_are_kept() {
        for code in ErrorCode::KNOWN {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert!(!matches!(
                ErrorCode::parse(code.as_str()),
                ErrorCode::Other(_)
            ));
        }
        let other: ErrorCode = serde_json::from_str(r#""gpu_on_fire""#).unwrap();
        assert_eq!(other, ErrorCode::Other("gpu_on_fire".into()));
        assert_eq!(serde_json::to_string(&other).unwrap(), r#""gpu_on_fire""#);
        assert_eq!(
            serde_json::from_str::<ErrorCode>("null").unwrap(),
            ErrorCode::default()
        );
    }
}
