//! The one way to follow a stream of the API: an [`EventStream`] opens a URL with the client's
//! token, the idle timeout and the reconnect policy every caller shares, and yields typed events.
//!
//! Reconnecting, resuming with `Last-Event-ID` and backing off are the SSE client's job; this
//! adds what every caller of this API wants: decoded events, one bad event reported and skipped
//! rather than ending the stream, and comments (keep-alives) left out.

use std::marker::PhantomData;
use std::time::Duration;

use runboard_sse::{
    ConnectionState, EventSource, EventSourceBuilder, ReconnectPolicy, SseError, Update,
};

use crate::clock::IDLE_TIMEOUT;
use crate::{ActiveRequests, ApiClient, BenchmarkEvent, DecodeError, RunEvent};

/// How every stream of the API reconnects, and how a caller retries anything else it needs
/// from a server (its health, a poll that failed): the server's `retry:` first, then doubling
/// with jitter up to 30 s. One policy, so the console and the CLI behave alike.
pub fn reconnect_policy() -> ReconnectPolicy {
    ReconnectPolicy::default()
}

/// An event type a stream of this API carries, decoded from an SSE event's type and data.
pub trait StreamEvent: Sized {
    /// Decodes one SSE event.
    fn decode_event(event: &str, data: &str) -> Result<Self, DecodeError>;
}

impl StreamEvent for RunEvent {
    fn decode_event(event: &str, data: &str) -> Result<Self, DecodeError> {
        Self::decode(event, data)
    }
}

impl StreamEvent for BenchmarkEvent {
    fn decode_event(event: &str, data: &str) -> Result<Self, DecodeError> {
        Self::decode(event, data).map_err(|error| DecodeError {
            event: event.to_owned(),
            reason: error.to_string(),
        })
    }
}

/// An event of the active-requests stream: a snapshot, and whether the server said tracking is
/// off (`disabled`).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestsEvent {
    /// The snapshot.
    pub snapshot: ActiveRequests,
    /// True when the server does not track requests; the stream ends after it.
    pub disabled: bool,
}

impl StreamEvent for RequestsEvent {
    fn decode_event(event: &str, data: &str) -> Result<Self, DecodeError> {
        let snapshot: ActiveRequests = serde_json::from_str(data).map_err(|error| DecodeError {
            event: event.to_owned(),
            reason: error.to_string(),
        })?;
        let disabled = event == ActiveRequests::DISABLED_EVENT || snapshot.disabled;
        Ok(Self { snapshot, disabled })
    }
}

/// What a stream reports.
#[derive(Debug)]
pub enum StreamUpdate<E> {
    /// An event, decoded, with the SSE event it came in (its id, type and data as sent).
    Event {
        /// The event.
        decoded: E,
        /// As it came.
        raw: runboard_sse::Event,
    },
    /// An event that could not be decoded; the stream goes on.
    Undecodable(DecodeError),
    /// The connection changed state (open, reconnecting, closed, failed).
    State(ConnectionState),
    /// An event larger than the client accepts was dropped.
    TooLarge {
        /// The limit it exceeded.
        limit_bytes: usize,
    },
}

/// How to open a stream.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    /// Resume after this event id (`Last-Event-ID`).
    pub after: Option<String>,
    /// How long a silent stream may stay silent; [`IDLE_TIMEOUT`] when `None`.
    pub idle_timeout: Option<Duration>,
}

/// A typed, reconnecting stream of one endpoint.
pub struct EventStream<E> {
    source: EventSource,
    kind: PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for EventStream<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("last_event_id", &self.source.last_event_id())
            .finish_non_exhaustive()
    }
}

impl<E: StreamEvent> EventStream<E> {
    /// The next update; `None` once the stream is over for good (closed or failed, which is
    /// reported as a state first).
    pub async fn next(&mut self) -> Option<StreamUpdate<E>> {
        loop {
            return Some(match self.source.next().await? {
                Update::Event(event) => match E::decode_event(&event.event, &event.data) {
                    Ok(decoded) => StreamUpdate::Event {
                        decoded,
                        raw: event,
                    },
                    Err(error) => StreamUpdate::Undecodable(error),
                },
                Update::State(state) => StreamUpdate::State(state),
                Update::EventTooLarge { limit_bytes } => StreamUpdate::TooLarge { limit_bytes },
                Update::Comment(_) => continue,
            });
        }
    }

    /// The id of the last event received, which a reconnect resumes after.
    pub fn last_event_id(&self) -> &str {
        self.source.last_event_id()
    }
}

impl ApiClient {
    /// Opens a typed stream of `url` (one of this client's `*_url` methods) with the client's
    /// token, the shared idle timeout and [`reconnect_policy`].
    pub fn stream<E: StreamEvent>(
        &self,
        url: &str,
        options: &StreamOptions,
    ) -> Result<EventStream<E>, SseError> {
        let builder: EventSourceBuilder = self
            .event_source(url)?
            .idle_timeout(Some(options.idle_timeout.unwrap_or(IDLE_TIMEOUT)))
            .reconnect(reconnect_policy());
        let builder = match &options.after {
            Some(id) => builder.last_event_id(id),
            None => builder,
        };
        Ok(EventStream {
            source: builder.build()?,
            kind: PhantomData,
        })
    }
}
