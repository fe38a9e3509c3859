//! Sending a request to an upstream, the one way generated runs and proxied calls both do: a
//! `POST` to a path under its base URL with its key, and no more than the idle timeout to wait
//! for the answer's head. What fails is said for people, with the key and any URL password
//! redacted.

use super::UpstreamPool;
use super::spec::UpstreamSpec;

/// A `POST` of a JSON body to `path` under `spec`'s base URL, with its key when it has one.
pub fn post(
    pool: &UpstreamPool,
    spec: &UpstreamSpec,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    let mut request = pool
        .http()
        .post(spec.url_of(path))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(key) = &spec.key {
        request = request.header(reqwest::header::AUTHORIZATION, key.bearer());
    }
    request
}

/// Why a request got no answer.
#[derive(Debug)]
pub struct Unsent {
    /// Said for people, redacted.
    pub message: String,
    /// The connection broke after the request was sent on it (not: no connection could be
    /// made, or the upstream stayed silent).
    pub broke_after_sending: bool,
}

/// Sends `request` and waits for the answer's head, at most the idle timeout; the error says
/// why there is none (unreachable, or silent).
pub async fn send(
    pool: &UpstreamPool,
    spec: &UpstreamSpec,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, Unsent> {
    let idle = pool.config().idle_timeout;
    let mut broke_after_sending = false;
    let message = match tokio::time::timeout(idle, request.send()).await {
        Ok(Ok(response)) => return Ok(response),
        Ok(Err(error)) => {
            broke_after_sending = !error.is_connect() && !error.is_timeout();
            format!(
                "could not reach upstream {} ({}): {}",
                spec.name,
                spec.display_url(),
                runboard_sse::error_with_causes(&error)
            )
        }
        Err(_) => format!(
            "upstream {} sent no answer within {} s",
            spec.name,
            idle.as_secs_f64()
        ),
    };
    Err(Unsent {
        message: spec.redact(&message),
        broke_after_sending,
    })
}

/// Why a stream that had begun stopped: the upstream sent nothing for the idle timeout.
pub fn silent(spec: &UpstreamSpec, after_secs: f64, tokens: u64) -> String {
    format!(
        "upstream {} sent nothing for {after_secs} s after {tokens} tokens",
        spec.name
    )
}
