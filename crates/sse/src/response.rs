//! One response read as an event stream, with no reconnect: for streams that answer a request
//! which must not be sent twice, such as `POST /chat/completions` (sending it again would
//! generate again). [`EventSource`](super::EventSource) is for `GET` streams that resume.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use super::error::{SseError, with_causes};
use super::event::Frame;
use super::parser::Parser;

/// Reads the frames of one HTTP response body, in order, across any chunking.
///
/// The caller checks the status and content type (it knows what an error answer looks like for
/// its API); this reads the body. A stream that falls silent for longer than the idle timeout
/// ends with [`SseError::IdleTimeout`]; one cut by the peer with [`SseError::Read`]. Dropping the
/// reader drops the connection, which is how a caller cancels the request.
pub struct ResponseEvents {
    url: String,
    body: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    parser: Parser,
    pending: VecDeque<Frame>,
    idle_timeout: Option<Duration>,
    /// One timer for the whole stream, moved on at each read rather than made anew: a chunk
    /// per token makes this the hot path.
    idle: Pin<Box<Sleep>>,
    ended: bool,
}

impl std::fmt::Debug for ResponseEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseEvents")
            .field("url", &self.url)
            .field("pending", &self.pending.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl ResponseEvents {
    /// Reads `response`'s body; `idle_timeout` bounds the silence between two reads of bytes.
    pub fn new(response: reqwest::Response, idle_timeout: Option<Duration>) -> Self {
        Self {
            url: response.url().to_string(),
            body: Box::pin(response.bytes_stream()),
            parser: Parser::new(),
            pending: VecDeque::new(),
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout.unwrap_or(Duration::ZERO))),
            ended: false,
        }
    }

    /// The next frame; `None` once the body ended cleanly (an event left without its blank
    /// line is dropped, as the standard says).
    pub async fn next(&mut self) -> Option<Result<Frame, SseError>> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(Ok(frame));
            }
            if self.ended {
                return None;
            }
            match self.read().await {
                Ok(Some(bytes)) => {
                    let pending = &mut self.pending;
                    self.parser
                        .feed(&bytes, &mut |frame| pending.push_back(frame));
                }
                Ok(None) => {
                    self.ended = true;
                    self.parser.end_of_stream();
                }
                Err(error) => {
                    self.ended = true;
                    return Some(Err(error));
                }
            }
        }
    }

    async fn read(&mut self) -> Result<Option<Bytes>, SseError> {
        let chunk = match self.idle_timeout {
            None => self.body.next().await,
            Some(after) => {
                self.idle.as_mut().reset(Instant::now() + after);
                tokio::select! {
                    chunk = self.body.next() => chunk,
                    () = self.idle.as_mut() => {
                        return Err(SseError::IdleTimeout {
                            url: self.url.clone(),
                            after,
                        });
                    }
                }
            }
        };
        match chunk {
            None => Ok(None),
            Some(Ok(bytes)) => Ok(Some(bytes)),
            Some(Err(error)) => Err(SseError::Read {
                url: self.url.clone(),
                reason: with_causes(&error),
            }),
        }
    }
}
