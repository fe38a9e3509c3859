//! The one way a stream reaches the inbox: each update of a typed stream becomes a message (or
//! none) and is sent, until the stream ends, the UI is gone, or an update says to stop. The
//! run-event streams, the view streams and the upstreams stream all go through [`pump`].

use runboard_api::{ApiClient, EventStream, StreamEvent, StreamOptions, StreamUpdate};

use super::inbox::Outbox;
use crate::board::{Inbound, ServerId};

/// What one update of a stream becomes.
#[derive(Debug)]
pub enum Flow {
    /// Send this message and go on.
    Send(Inbound),
    /// Nothing to send; go on.
    Skip,
    /// Send this message, then stop following the stream.
    Stop(Inbound),
}

/// Why [`pump`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The stream ended: it gave up reconnecting, or the server ended it for good.
    StreamEnded,
    /// The UI is gone; the task should end.
    UiGone,
    /// An update said to stop ([`Flow::Stop`]), after its message was sent.
    Stopped,
}

/// Opens a typed stream; when it cannot be opened (a bad URL), says why in the inbox and gives
/// `None`.
pub async fn open<E: StreamEvent>(
    client: &ApiClient,
    url: &str,
    options: &StreamOptions,
    server: ServerId,
    outbox: &Outbox,
) -> Option<EventStream<E>> {
    match client.stream(url, options) {
        Ok(stream) => Some(stream),
        Err(error) => {
            let message = error.to_string();
            outbox.send(Inbound::ServerError { server, message }).await;
            None
        }
    }
}

/// Sends each update of `stream` into the inbox as `translate` says. `delivered` runs after
/// each message is in the inbox (a stream that counts what was delivered counts there, not
/// before: a task stopped while the inbox is full has delivered nothing more).
pub async fn pump<E: StreamEvent>(
    stream: &mut EventStream<E>,
    outbox: &Outbox,
    mut translate: impl FnMut(StreamUpdate<E>) -> Flow,
    mut delivered: impl FnMut(),
) -> PumpEnd {
    while let Some(update) = stream.next().await {
        let (message, stop) = match translate(update) {
            Flow::Skip => continue,
            Flow::Send(message) => (message, false),
            Flow::Stop(message) => (message, true),
        };
        if !outbox.send(message).await {
            return PumpEnd::UiGone;
        }
        delivered();
        if stop {
            return PumpEnd::Stopped;
        }
    }
    PumpEnd::StreamEnded
}
