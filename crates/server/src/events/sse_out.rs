//! The sending end of an event stream: a response whose body is fed chunk by chunk from a task,
//! with the headers every stream of this server carries.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use runboard_sse::encode;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Chunks buffered per connection before the stream waits for the client. With chunks of at
/// most [`MAX_CHUNK_BYTES`], a subscriber that stops reading pins at most
/// `CONNECTION_BUFFER × MAX_CHUNK_BYTES` here, plus hyper's buffer and the kernel's send buffer
/// (both fixed by the listener), until it is dropped as stalled.
const CONNECTION_BUFFER: usize = 2;

/// The most bytes one chunk of a stream holds.
pub const MAX_CHUNK_BYTES: usize = 32 * 1024;

/// The client went away (or the server is stopping): the task feeding the stream should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client disconnected")]
pub struct Gone;

/// Where a stream's task writes.
#[derive(Debug, Clone)]
pub struct SseSink {
    chunks: mpsc::Sender<Bytes>,
    shutdown: CancellationToken,
}

/// A streaming response and the sink that feeds it. The stream ends when the sink is dropped
/// or the server stops; a client that stops reading is disconnected by the listener (see
/// `listener::ConnectionLimits::stalled_write`), which ends the stream too.
pub fn channel(shutdown: CancellationToken) -> (SseSink, Response) {
    let (chunks, body) = mpsc::channel::<Bytes>(CONNECTION_BUFFER);
    let stream = futures_util::stream::unfold(body, |mut body| async move {
        let chunk = body.recv().await?;
        Some((Ok::<_, Infallible>(chunk), body))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies such as nginx would otherwise hold events back in their buffers.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    (SseSink { chunks, shutdown }, response)
}

impl SseSink {
    /// Sends raw bytes (one or more whole frames).
    pub async fn send(&self, bytes: Bytes) -> Result<(), Gone> {
        tokio::select! {
            sent = self.chunks.send(bytes) => sent.map_err(|_| Gone),
            () = self.shutdown.cancelled() => Err(Gone),
        }
    }

    /// Sends `retry:`, how long a client waits before it reconnects.
    pub async fn retry(&self, after: Duration) -> Result<(), Gone> {
        let mut frame = BytesMut::new();
        encode::write_retry(&mut frame, after.as_millis());
        self.send(frame.freeze()).await
    }

    /// Sends a keep-alive comment.
    pub async fn keep_alive(&self) -> Result<(), Gone> {
        self.send(Bytes::from_static(b": keep-alive\n\n")).await
    }

    /// Sends one event whose data is `data` as compact JSON, with an `id:` when given.
    pub async fn event(
        &self,
        event: &str,
        id: Option<&str>,
        data: &impl Serialize,
    ) -> Result<(), Gone> {
        let json = serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned());
        let mut frame = BytesMut::new();
        encode::write_event(&mut frame, id, event, &json);
        self.send(frame.freeze()).await
    }

    /// Waits until the client is gone or the server stops.
    pub async fn closed(&self) {
        tokio::select! {
            () = self.chunks.closed() => {}
            () = self.shutdown.cancelled() => {}
        }
    }
}
