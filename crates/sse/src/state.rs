//! The connection state the client reports as it changes.

use std::fmt;
use std::time::Duration;

use super::error::SseError;

/// Where a client's connection stands. Reported as an [`super::Update::State`] whenever it
/// changes, so a UI can show "live", "reconnecting in 3 s" or "lost: reason" without guessing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// A request is being made. `attempt` is 0 for the first connection and k for the k-th
    /// reconnect in a row.
    Connecting {
        /// Which reconnect in a row this is (0: the first connection).
        attempt: u32,
    },
    /// The server answered 200 with an event stream; events flow.
    Open,
    /// The connection ended; the next attempt starts after `delay`.
    Reconnecting {
        /// How long until the next attempt.
        delay: Duration,
        /// Which reconnect in a row the next attempt is (1-based).
        attempt: u32,
        /// What ended the connection; `None` for a clean end of stream.
        last_error: Option<SseError>,
    },
    /// The server said the stream is over for good (HTTP 204). Final.
    Closed,
    /// The stream cannot go on. Final.
    Failed(SseError),
}

impl ConnectionState {
    /// Whether no more updates will follow.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Closed | Self::Failed(_))
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connecting { attempt: 0 } => write!(f, "connecting"),
            Self::Connecting { attempt } => write!(f, "connecting (attempt {attempt})"),
            Self::Open => write!(f, "open"),
            Self::Reconnecting {
                delay,
                attempt,
                last_error,
            } => {
                write!(
                    f,
                    "reconnecting in {} ms (attempt {attempt}",
                    delay.as_millis()
                )?;
                match last_error {
                    Some(error) => write!(f, ", last error: {error})"),
                    None => write!(f, ", stream ended)"),
                }
            }
            Self::Closed => write!(f, "closed by the server (HTTP 204)"),
            Self::Failed(error) => write!(f, "failed: {error}"),
        }
    }
}
