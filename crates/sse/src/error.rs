//! The one error type of the SSE client.

use std::time::Duration;

/// Why a connection could not be opened, broke, or was given up.
///
/// It is `Clone` and holds only text because it travels inside [`super::ConnectionState`], which
/// is shown to people and compared in tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// The URL could not be parsed or is not http(s).
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value given by the caller is not valid HTTP.
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader {
        /// The header name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be set up (for example, no TLS backend).
    #[error("could not set up the HTTP client: {0}")]
    Setup(String),
    /// The server answered with a status other than 200 or 204. Not retried.
    #[error("{url} answered HTTP {status}{}", detail_suffix(detail))]
    Status {
        /// The URL that answered (after redirects).
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body, when there was one: servers put their reason there.
        detail: String,
    },
    /// The server answered 200 with a body that is not an event stream. Not retried.
    #[error("{url} answered with content type {content_type:?}, not text/event-stream")]
    ContentType {
        /// The URL that answered (after redirects).
        url: String,
        /// The `Content-Type` it sent; empty when it sent none.
        content_type: String,
    },
    /// The connection could not be made (refused, reset, DNS, TLS). Retried.
    #[error("could not connect to {url}: {reason}")]
    Connect {
        /// The URL being connected to.
        url: String,
        /// The transport's explanation, with its causes.
        reason: String,
    },
    /// The connection broke while the stream was being read. Retried.
    #[error("the stream from {url} broke: {reason}")]
    Read {
        /// The URL being read.
        url: String,
        /// The transport's explanation, with its causes.
        reason: String,
    },
    /// No bytes (not even a keep-alive comment) arrived for too long. Retried.
    #[error("no bytes from {url} for {} s (idle timeout)", after.as_secs_f64())]
    IdleTimeout {
        /// The URL being read.
        url: String,
        /// How long the stream was silent.
        after: Duration,
    },
    /// The reconnect limit was reached without a healthy connection in between.
    #[error("gave up after {attempts} reconnect attempts in a row; last: {last}")]
    GaveUp {
        /// How many reconnects were tried in a row.
        attempts: u32,
        /// What ended the last connection.
        last: String,
    },
}

impl SseError {
    /// Whether an `EventSource` reconnects after this error. Per the spec, network trouble is
    /// retried while an answer the server gave on purpose (a bad status or content type) is final.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Read { .. } | Self::IdleTimeout { .. }
        )
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// An error with all its causes, `outer: inner: innermost`, because reqwest's own message is
/// often just "error sending request" and the useful part ("connection refused") is a cause.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
