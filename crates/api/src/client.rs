//! A typed client for the runs API.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::active_requests::ActiveRequests;
use super::benchmark::{BenchmarkStarted, CreateBenchmark};
use super::error_code::ErrorCode;
use super::types::{
    CreateRun, ErrorBody, Health, RunDetail, RunList, RunStatus, RunSummary, fastapi_detail,
};
use runboard_sse::{EventSource, EventSourceBuilder, SseError};

/// How long one API call may take natively (streams are not API calls and have no such limit).
#[cfg(not(target_arch = "wasm32"))]
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why an API call failed. Every variant names the URL, so a message is enough to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The base URL is not an http(s) URL.
    #[error("invalid API URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{method} {url} answered HTTP {status}: {message}")]
    Status {
        /// The HTTP method.
        method: String,
        /// The URL called.
        url: String,
        /// The status code.
        status: u16,
        /// The server's error code ([`ErrorCode::NotFound`], …); an empty
        /// [`ErrorCode::Other`] when it gave none.
        code: ErrorCode,
        /// The server's message, or the body's start when it sent no error JSON.
        message: String,
    },
    /// The server could not be reached or the connection broke.
    #[error("could not reach {url}: {reason}")]
    Transport {
        /// The URL called.
        url: String,
        /// The transport's explanation, with its causes.
        reason: String,
    },
    /// The response was not what the API promises.
    #[error("{url} sent a response runboard cannot read: {reason}")]
    Decode {
        /// The URL called.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

impl ApiError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Which runs `GET /api/runs` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// At most this many (the server clamps it).
    pub limit: Option<u32>,
    /// Only runs older than this one (paging).
    pub before: Option<String>,
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs made by this worker.
    pub worker: Option<String>,
}

/// A client for one runs-API server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

impl ApiClient {
    /// A client for the server at `base_url` (for example `http://127.0.0.1:9010`), sending
    /// `token` as a bearer token when given.
    pub fn new(base_url: &str, token: Option<&str>) -> Result<Self, ApiError> {
        let invalid = |reason: String| ApiError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let mut base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme {:?} is not http or https",
                base.scheme()
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let builder = runboard_sse::http::client_builder();
        #[cfg(not(target_arch = "wasm32"))]
        let builder = builder.connect_timeout(std::time::Duration::from_secs(10));
        let http = builder.build().map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            base,
            http,
            token: token.filter(|t| !t.is_empty()).map(str::to_owned),
        })
    }

    /// The base URL, ending in `/`.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The absolute URL of an API path such as `api/runs`.
    pub fn url(&self, path: &str) -> String {
        self.base
            .join(path.trim_start_matches('/'))
            .map_or_else(|_| format!("{}{path}", self.base), String::from)
    }

    /// `GET /api/health`. A server without it (404) or whose answer is not JSON is a server with
    /// no optional features, as servers in the first design's style are.
    pub async fn health(&self) -> Result<Health, ApiError> {
        match self.call(Method::GET, "api/health", None).await {
            Err(ApiError::Status { status: 404, .. } | ApiError::Decode { .. }) => {
                Ok(Health::without_features())
            }
            other => other,
        }
    }

    /// `GET /api/access`: what this client's token may do. A server from before roles (404)
    /// gives every valid token everything.
    pub async fn access(&self) -> Result<super::AccessInfo, ApiError> {
        match self.call(Method::GET, "api/access", None).await {
            Err(ApiError::Status { status: 404, .. }) => Ok(super::AccessInfo::new(
                self.token.is_some(),
                None,
                super::Role::Admin,
            )),
            other => other,
        }
    }

    /// `POST /api/runs`. In `queued` mode the answer has no events; in `inline` mode it is the
    /// finished run's detail.
    pub async fn create_run(&self, request: &CreateRun) -> Result<RunDetail, ApiError> {
        let body = serde_json::to_vec(request).map_err(|e| ApiError::Decode {
            url: self.url("api/runs"),
            reason: e.to_string(),
        })?;
        self.call(Method::POST, "api/runs", Some(body)).await
    }

    /// `GET /api/runs`, newest first. Accepts a bare JSON array from other servers too.
    pub async fn list_runs(&self, query: &RunQuery) -> Result<RunList, ApiError> {
        let mut url = Url::parse(&self.url("api/runs")).map_err(|e| ApiError::InvalidUrl {
            url: self.base.to_string(),
            reason: e.to_string(),
        })?;
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(limit) = query.limit {
                pairs.append_pair("limit", &limit.to_string());
            }
            if let Some(before) = &query.before {
                pairs.append_pair("before", before);
            }
            if let Some(status) = query.status {
                pairs.append_pair("status", status.as_str());
            }
            if let Some(worker) = &query.worker {
                pairs.append_pair("worker", worker);
            }
        }
        let body = self.send(Method::GET, url.as_str(), None).await?;
        RunList::from_json(&body).map_err(|e| ApiError::Decode {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    /// `GET /api/runs/{id}`: the summary with every event.
    pub async fn run(&self, run_id: &str) -> Result<RunDetail, ApiError> {
        self.call(Method::GET, &format!("api/runs/{}", encode(run_id)), None)
            .await
    }

    /// `POST /api/runs/{id}/cancel`.
    pub async fn cancel(&self, run_id: &str) -> Result<RunSummary, ApiError> {
        self.call(
            Method::POST,
            &format!("api/runs/{}/cancel", encode(run_id)),
            None,
        )
        .await
    }

    /// `POST /api/benchmarks`: starts a benchmark on the server's generator.
    pub async fn create_benchmark(
        &self,
        request: &CreateBenchmark,
    ) -> Result<BenchmarkStarted, ApiError> {
        let body = serde_json::to_vec(request).map_err(|e| ApiError::Decode {
            url: self.url("api/benchmarks"),
            reason: e.to_string(),
        })?;
        self.call(Method::POST, "api/benchmarks", Some(body)).await
    }

    /// `GET /metrics/active-requests`: the requests in flight (or why there are none to show).
    pub async fn active_requests(&self) -> Result<ActiveRequests, ApiError> {
        self.call(Method::GET, "metrics/active-requests", None)
            .await
    }

    /// `GET /api/upstreams`: the model servers the server reads, as last read.
    pub async fn upstreams(&self) -> Result<super::Upstreams, ApiError> {
        self.call(Method::GET, "api/upstreams", None).await
    }

    /// `GET /api/workers`: every worker with its figures, and the fleet's last minute.
    pub async fn workers(&self) -> Result<super::WorkerList, ApiError> {
        self.call(Method::GET, "api/workers", None).await
    }

    /// The URL of the upstreams stream.
    pub fn upstreams_stream_url(&self) -> String {
        self.url("api/upstreams/stream")
    }

    /// The URL of the benchmark stream, checked every `interval_secs`.
    pub fn benchmark_stream_url(&self, interval_secs: u64) -> String {
        format!("{}?interval={interval_secs}", self.url("api/benchmark-sse"))
    }

    /// The URL of the active-requests stream.
    pub fn requests_stream_url(&self) -> String {
        self.url("metrics/active-requests/stream")
    }

    /// The URL of `/api/events`, optionally filtered to some runs.
    pub fn events_url(&self, runs: &[String]) -> String {
        let url = self.url("api/events");
        if runs.is_empty() {
            url
        } else {
            let list: Vec<String> = runs.iter().map(|run| encode(run)).collect();
            format!("{url}?runs={}", list.join(","))
        }
    }

    /// The URL of one run's stream.
    pub fn run_stream_url(&self, run_id: &str) -> String {
        self.url(&format!("api/runs/{}/stream", encode(run_id)))
    }

    /// An event source for `url` that shares this client's connection pool and token.
    pub fn event_source(&self, url: &str) -> Result<EventSourceBuilder, SseError> {
        let builder = EventSource::builder(url)?.http_client(self.http.clone());
        match &self.token {
            Some(token) => builder.bearer_token(token),
            None => Ok(builder),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ApiError> {
        let url = self.url(path);
        let bytes = self.send(method, &url, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<bytes::Bytes, ApiError> {
        let transport = |error: &reqwest::Error| ApiError::Transport {
            url: url.to_owned(),
            reason: runboard_sse::error_with_causes(error),
        };
        let mut request = self
            .http
            .request(method.clone(), url)
            .header(reqwest::header::ACCEPT, "application/json");
        #[cfg(not(target_arch = "wasm32"))]
        {
            request = request.timeout(REQUEST_TIMEOUT);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| transport(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| transport(&e))?;
        if status.is_success() {
            return Ok(bytes);
        }
        let (code, message) = serde_json::from_slice::<ErrorBody>(&bytes).map_or_else(
            |_| {
                if let Some(detail) = fastapi_detail(&bytes) {
                    return (ErrorCode::default(), detail);
                }
                // Not an error shape we know (a proxy's page, say): show the start of the body.
                let text = String::from_utf8_lossy(&bytes);
                let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let text = if text.is_empty() {
                    status.canonical_reason().unwrap_or("no message").to_owned()
                } else {
                    text.chars().take(300).collect()
                };
                (ErrorCode::default(), text)
            },
            |body| (body.error.code, body.error.message),
        );
        Err(ApiError::Status {
            method: method.to_string(),
            url: url.to_owned(),
            status: status.as_u16(),
            code,
            message,
        })
    }
}

/// What a run id keeps as it is in a path segment or a query value: RFC 3986's unreserved
/// characters. Everything else (`/`, `?`, `,`, `%`, spaces, non-ASCII) is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a run id for use as one path segment or query value.
fn encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_one_path_segment_whatever_they_hold() {
        assert_eq!(encode("run-0a_b.c~d"), "run-0a_b.c~d");
        assert_eq!(encode("a b/c?d,é%"), "a%20b%2Fc%3Fd%2C%C3%A9%25");
    }
}
