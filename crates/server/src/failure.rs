//! API errors as responses: `{"error": {"code", "message"}}` with a fitting status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;
use runboard_api::{ErrorBody, ErrorCode, ErrorDetail};

/// A failed request: the status, a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
    /// Seconds a client should wait before trying again (`Retry-After`), when it helps.
    pub retry_after: Option<u64>,
    /// The server-side cause, for the log only (the client gets `message`).
    pub cause: Option<String>,
}

impl Failure {
    /// A failure with this status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            cause: None,
        }
    }

    /// The same failure, telling the client when to try again.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 503 while the store cannot be written.
    pub fn store_unwritable(reason: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreUnwritable,
            format!("the run store cannot be written, so no new run is accepted: {reason}"),
        )
        .retry_after(5)
    }

    /// 404 for a run id nobody knows.
    pub fn unknown_run(run_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no run with id {run_id:?}"),
        )
    }

    /// 503 while the server shuts down.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "the server is shutting down",
        )
    }
}

impl From<StoreError> for Failure {
    /// The store's error stays on the server: it is logged when the answer goes out.
    fn from(error: StoreError) -> Self {
        let mut failure = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageUnavailable,
            "the run store could not be read; try again",
        );
        failure.cause = Some(error.to_string());
        failure
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        // Logged here, once, where the error is handled: by answering the client.
        if let Some(cause) = &self.cause {
            tracing::warn!(code = %self.code, %cause, "{}", self.message);
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
