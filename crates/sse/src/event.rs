//! What the parser hands out: dispatched events and the other things a stream can say.

use std::time::Duration;

/// One dispatched Server-Sent Event, as an `EventSource` would deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event type: the last `event:` field of the block, or `message` when there was none.
    pub event: String,
    /// The `data:` lines of the block joined with LF, without the final LF.
    pub data: String,
    /// The last event id at the time of dispatch. It persists across events (and reconnects)
    /// until an `id:` field changes it; empty when the stream never set one.
    pub id: String,
}

/// Everything the parser reports, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete event was dispatched.
    Event(Event),
    /// A comment line (`:` …), without the colon. Servers send these as keep-alives, so a client
    /// treats them as proof of liveness and nothing more.
    Comment(String),
    /// The server set the reconnection time with a valid `retry:` field.
    Retry(Duration),
    /// An event grew past the size cap. Its data is dropped and it will not be dispatched, but
    /// the stream goes on with the next event.
    TooLarge {
        /// The cap in bytes that the event exceeded.
        limit_bytes: usize,
    },
}
