//! A reconnecting `EventSource` over reqwest's streaming body, for native and web.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{Either, select};
use futures_util::{Stream, StreamExt as _};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use web_time::Instant;

use super::backoff::{Backoff, ReconnectPolicy};
use super::error::{SseError, with_causes};
use super::event::{Event, Frame};
use super::parser::{DEFAULT_MAX_EVENT_BYTES, Parser};
use super::state::ConnectionState;

/// How much of an error response's body goes into [`SseError::Status`].
const ERROR_DETAIL_CHARS: usize = 300;

/// How long to wait for an error response's body before reporting the status without it.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(2);

/// What a client reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The connection state changed.
    State(ConnectionState),
    /// An event was dispatched.
    Event(Event),
    /// A comment (usually a keep-alive) arrived: the stream is alive.
    Comment(String),
    /// An event larger than the cap was dropped; the stream goes on.
    EventTooLarge {
        /// The cap in bytes.
        limit_bytes: usize,
    },
}

#[cfg(not(target_arch = "wasm32"))]
type BodyStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;
#[cfg(target_arch = "wasm32")]
type BodyStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>>>>;

/// What the client does next.
enum Phase {
    /// Report `Connecting`, then connect.
    Start,
    /// Make the request.
    Connect,
    /// Read the body.
    Streaming {
        body: BodyStream,
        opened_at: Instant,
    },
    /// Wait, then start again.
    Waiting { until: Instant },
    /// Nothing more will come.
    Finished,
}

/// Builds an [`EventSource`]: `EventSource::builder(url)?.bearer_token(t)?.build()?`.
#[derive(Debug, Clone)]
pub struct EventSourceBuilder {
    url: reqwest::Url,
    headers: HeaderMap,
    last_event_id: String,
    policy: ReconnectPolicy,
    idle_timeout: Option<Duration>,
    max_event_bytes: usize,
    http: Option<reqwest::Client>,
}

impl EventSourceBuilder {
    /// Adds a header to every request (repeatable; a later one of the same name is added, not
    /// replaced).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, SseError> {
        let invalid = |reason: String| SseError::InvalidHeader {
            name: name.to_owned(),
            reason,
        };
        let header_name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
        let header_value = HeaderValue::from_str(value).map_err(|e| invalid(e.to_string()))?;
        self.headers.append(header_name, header_value);
        Ok(self)
    }

    /// Sends `Authorization: Bearer <token>` on every request. The value is marked sensitive so
    /// it never shows in debug output.
    pub fn bearer_token(mut self, token: &str) -> Result<Self, SseError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| {
            SseError::InvalidHeader {
                name: "authorization".into(),
                reason: e.to_string(),
            }
        })?;
        value.set_sensitive(true);
        self.headers.insert(header::AUTHORIZATION, value);
        Ok(self)
    }

    /// Starts from this last event id, so the first request already sends `Last-Event-ID`.
    #[must_use]
    pub fn last_event_id(mut self, id: &str) -> Self {
        id.clone_into(&mut self.last_event_id);
        self
    }

    /// Sets the reconnect policy.
    #[must_use]
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Reconnects when no bytes at all arrive for this long. Set it to a few times the server's
    /// keep-alive interval; `None` (the default) waits forever, as browsers do.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The cap on one event's size; see [`Parser::with_max_event_bytes`].
    #[must_use]
    pub fn max_event_bytes(mut self, max_event_bytes: usize) -> Self {
        self.max_event_bytes = max_event_bytes;
        self
    }

    /// Uses this HTTP client, to share its connection pool and settings.
    #[must_use]
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Creates the client. Nothing is sent until it is first polled.
    pub fn build(self) -> Result<EventSource, SseError> {
        let http = match self.http {
            Some(http) => http,
            None => default_http_client()?,
        };
        let parser = Parser::with_max_event_bytes(self.max_event_bytes)
            .with_last_event_id(&self.last_event_id);
        Ok(EventSource {
            url: self.url,
            headers: self.headers,
            retry: self.policy.initial_retry,
            backoff: Backoff::new(self.policy),
            idle_timeout: self.idle_timeout,
            http,
            parser,
            phase: Phase::Start,
            queue: VecDeque::new(),
        })
    }
}

fn default_http_client() -> Result<reqwest::Client, SseError> {
    let builder = crate::http::client_builder();
    // Browsers own connection setup; natively a dead host must not hang a connect forever.
    #[cfg(not(target_arch = "wasm32"))]
    let builder = builder.connect_timeout(Duration::from_secs(10));
    builder
        .build()
        .map_err(|e| SseError::Setup(with_causes(&e)))
}

/// A client that follows the `EventSource` rules and goes beyond them.
///
/// - Reconnects after a clean end of stream or a network error, after the server's `retry:` time,
///   sending `Last-Event-ID` when it is not empty.
/// - 204 closes for good; any other status but 200, or a content type other than
///   `text/event-stream`, fails with no reconnect. Redirects are followed.
/// - Backs off exponentially with jitter and a cap on reconnects in a row, resetting only after a
///   healthy period; an optional idle timeout; extra headers on every request.
/// - Reports every change of its [`ConnectionState`].
///
/// Pull updates with [`next`](Self::next), or turn it into a `Stream` with
/// [`into_stream`](Self::into_stream). Dropping it closes the connection.
pub struct EventSource {
    url: reqwest::Url,
    headers: HeaderMap,
    /// The reconnection time: the policy's initial value until the server sends `retry:`.
    retry: Duration,
    backoff: Backoff,
    idle_timeout: Option<Duration>,
    http: reqwest::Client,
    parser: Parser,
    phase: Phase,
    queue: VecDeque<Update>,
}

impl std::fmt::Debug for EventSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSource")
            .field("url", &self.url.as_str())
            .field("last_event_id", &self.parser.last_event_id())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl EventSource {
    /// Starts building a client for `url` (http or https).
    pub fn builder(url: &str) -> Result<EventSourceBuilder, SseError> {
        let invalid = |reason: String| SseError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme {:?} is not http or https",
                parsed.scheme()
            )));
        }
        Ok(EventSourceBuilder {
            url: parsed,
            headers: HeaderMap::new(),
            last_event_id: String::new(),
            policy: ReconnectPolicy::default(),
            idle_timeout: None,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            http: None,
        })
    }

    /// The last event id: what a reconnect sends as `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        self.parser.last_event_id()
    }

    /// The current reconnection time (the server's `retry:`, or the policy's initial one).
    pub fn retry(&self) -> Duration {
        self.retry
    }

    /// The URL this client connects to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The next update, or `None` once the client has closed or failed (after reporting that
    /// state). If the returned future is dropped early, nothing is lost: a connect in progress
    /// is made again and a wait resumes towards the same deadline.
    pub async fn next(&mut self) -> Option<Update> {
        loop {
            if let Some(update) = self.queue.pop_front() {
                return Some(update);
            }
            match &mut self.phase {
                Phase::Finished => return None,
                Phase::Start => {
                    self.phase = Phase::Connect;
                    return Some(Update::State(ConnectionState::Connecting {
                        attempt: self.backoff.attempts(),
                    }));
                }
                Phase::Connect => self.connect().await,
                Phase::Streaming { .. } => self.read().await,
                Phase::Waiting { until } => {
                    let until = *until;
                    crate::runtime::sleep(until.saturating_duration_since(Instant::now())).await;
                    self.phase = Phase::Start;
                }
            }
        }
    }

    /// The updates as a `Stream` that ends after the final state.
    pub fn into_stream(self) -> impl Stream<Item = Update> {
        futures_util::stream::unfold(self, |mut source| async move {
            let update = source.next().await?;
            Some((update, source))
        })
    }

    async fn connect(&mut self) {
        let mut request = self
            .http
            .get(self.url.clone())
            .headers(self.headers.clone())
            .header(header::ACCEPT, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache");
        let last_event_id = self.parser.last_event_id();
        if !last_event_id.is_empty() {
            // An id with control characters cannot be a header value; the server then sees a
            // fresh subscription, which is all an EventSource could do too.
            if let Ok(value) = HeaderValue::from_bytes(last_event_id.as_bytes()) {
                request = request.header("last-event-id", value);
            }
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let error = SseError::Connect {
                    url: self.url.to_string(),
                    reason: with_causes(&error),
                };
                self.schedule_reconnect(Some(error), None);
                return;
            }
        };
        let url = response.url().to_string();
        let status = response.status().as_u16();
        if status == 204 {
            self.finish(ConnectionState::Closed);
            return;
        }
        if status != 200 {
            let detail = error_detail(response).await;
            self.finish(ConnectionState::Failed(SseError::Status {
                url,
                status,
                detail,
            }));
            return;
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        if !is_event_stream(&content_type) {
            self.finish(ConnectionState::Failed(SseError::ContentType {
                url,
                content_type,
            }));
            return;
        }
        self.phase = Phase::Streaming {
            body: Box::pin(response.bytes_stream()),
            opened_at: Instant::now(),
        };
        self.queue.push_back(Update::State(ConnectionState::Open));
    }

    async fn read(&mut self) {
        let Phase::Streaming { body, opened_at } = &mut self.phase else {
            return;
        };
        let opened_at = *opened_at;
        let chunk = match self.idle_timeout {
            None => Some(body.next().await),
            Some(timeout) => {
                let sleep = std::pin::pin!(crate::runtime::sleep(timeout));
                match select(body.next(), sleep).await {
                    Either::Left((chunk, _)) => Some(chunk),
                    Either::Right(((), _)) => None,
                }
            }
        };
        let ended_with = match chunk {
            Some(Some(Ok(bytes))) => {
                let Self {
                    parser,
                    queue,
                    retry,
                    ..
                } = self;
                parser.feed(&bytes, &mut |frame| match frame {
                    Frame::Event(event) => queue.push_back(Update::Event(event)),
                    Frame::Comment(text) => queue.push_back(Update::Comment(text)),
                    Frame::Retry(delay) => *retry = delay,
                    Frame::TooLarge { limit_bytes } => {
                        queue.push_back(Update::EventTooLarge { limit_bytes });
                    }
                });
                return;
            }
            Some(None) => None,
            Some(Some(Err(error))) => Some(SseError::Read {
                url: self.url.to_string(),
                reason: with_causes(&error),
            }),
            None => Some(SseError::IdleTimeout {
                url: self.url.to_string(),
                after: self.idle_timeout.unwrap_or_default(),
            }),
        };
        self.parser.end_of_stream();
        self.schedule_reconnect(ended_with, Some(opened_at.elapsed()));
    }

    fn schedule_reconnect(&mut self, error: Option<SseError>, open_for: Option<Duration>) {
        self.backoff.connection_ended(open_for);
        if let Some(delay) = self.backoff.next_delay(self.retry) {
            self.phase = Phase::Waiting {
                until: Instant::now() + delay,
            };
            self.queue
                .push_back(Update::State(ConnectionState::Reconnecting {
                    delay,
                    attempt: self.backoff.attempts(),
                    last_error: error,
                }));
        } else {
            let last = error.map_or_else(|| "the stream ended".to_owned(), |e| e.to_string());
            self.finish(ConnectionState::Failed(SseError::GaveUp {
                attempts: self.backoff.attempts(),
                last,
            }));
        }
    }

    fn finish(&mut self, state: ConnectionState) {
        self.phase = Phase::Finished;
        self.queue.push_back(Update::State(state));
    }
}

/// `text/event-stream`, in any case, with or without parameters.
fn is_event_stream(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("text/event-stream")
}

/// The start of an error response's body, on one line, or empty when it does not come quickly.
async fn error_detail(response: reqwest::Response) -> String {
    let mut body = Box::pin(response.bytes_stream());
    let wait = std::pin::pin!(crate::runtime::sleep(ERROR_BODY_WAIT));
    let Either::Left((Some(Ok(first)), _)) = select(body.next(), wait).await else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&first);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(ERROR_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::is_event_stream;

    #[test]
    fn content_type_essence_is_matched_with_parameters_and_any_case() {
        assert!(is_event_stream("text/event-stream"));
        assert!(is_event_stream("Text/Event-Stream; charset=utf-8"));
        assert!(is_event_stream("text/event-stream;charset=UTF-8"));
        assert!(!is_event_stream("text/plain"));
        assert!(!is_event_stream("text/event-streams"));
        assert!(!is_event_stream(""));
    }
}
