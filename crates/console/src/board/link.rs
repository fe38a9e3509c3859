//! What a card or server shows about its stream, derived from the client's connection states.

use runboard_sse::ConnectionState;

/// How long after a (re)connect arriving events count as the server's replay.
pub const REPLAY_BURST_SECS: f64 = 0.5;

/// A stream as people see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// The first connection is being made.
    Connecting,
    /// Events flow.
    Live,
    /// Events flow again after a reconnect; `replayed` counts the events the server replayed.
    Resumed {
        /// Events replayed since the reconnect.
        replayed: usize,
        /// When the stream reopened.
        since: f64,
    },
    /// The connection dropped; the next attempt is at `retry_at` (model clock).
    Reconnecting {
        /// When the next attempt starts.
        retry_at: f64,
        /// Which attempt in a row.
        attempt: u32,
        /// Why the last connection ended, if it was an error.
        reason: Option<String>,
    },
    /// The stream cannot go on.
    Lost(String),
    /// The server closed the stream for good (the run is over).
    Ended,
}

impl Link {
    /// The link after a new connection state at time `now`.
    #[must_use]
    pub fn after(&self, state: &ConnectionState, now: f64) -> Self {
        match state {
            ConnectionState::Connecting { attempt: 0 } => Self::Connecting,
            ConnectionState::Connecting { .. } => self.clone(),
            ConnectionState::Open => match self {
                Self::Reconnecting { .. } => Self::Resumed {
                    replayed: 0,
                    since: now,
                },
                _ => Self::Live,
            },
            ConnectionState::Reconnecting {
                delay,
                attempt,
                last_error,
            } => Self::Reconnecting {
                retry_at: now + delay.as_secs_f64(),
                attempt: *attempt,
                reason: last_error.as_ref().map(ToString::to_string),
            },
            ConnectionState::Closed => Self::Ended,
            ConnectionState::Failed(error) => Self::Lost(error.to_string()),
        }
    }

    /// Whether `now` is inside the replay burst of a stream that just resumed.
    pub fn replaying(&self, now: f64) -> bool {
        matches!(self, Self::Resumed { since, .. } if now - since < REPLAY_BURST_SECS)
    }

    /// Counts an event that arrived at `now` on a resumed stream. A server replays what was
    /// missed at once on reconnecting, so events in the first half second count as replayed.
    pub fn count_replayed(&mut self, now: f64) {
        if let Self::Resumed { replayed, since } = self
            && now - *since < REPLAY_BURST_SECS
        {
            *replayed += 1;
        }
    }

    /// One line for a badge: `live`, `reconnecting in 3 s`, `resumed`, `resumed (replayed 12)`,
    /// `lost: …`.
    pub fn label(&self, now: f64) -> String {
        match self {
            Self::Connecting => "connecting".into(),
            Self::Live => "live".into(),
            Self::Resumed { replayed: 0, .. } => "resumed".into(),
            Self::Resumed { replayed, .. } => format!("resumed (replayed {replayed})"),
            Self::Reconnecting { retry_at, .. } => {
                format!("reconnecting in {:.0} s", (retry_at - now).max(0.0).ceil())
            }
            Self::Lost(reason) => format!("lost: {reason}"),
            Self::Ended => "ended".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use runboard_sse::SseError;

    #[test]
    fn a_reconnect_then_open_reads_as_resumed_and_counts_replays() {
        let live = Link::Connecting.after(&ConnectionState::Open, 0.0);
        assert_eq!(live, Link::Live);
        let dropped = live.after(
            &ConnectionState::Reconnecting {
                delay: Duration::from_millis(2500),
                attempt: 1,
                last_error: Some(SseError::Read {
                    url: "u".into(),
                    reason: "reset".into(),
                }),
            },
            10.0,
        );
        assert_eq!(dropped.label(10.0), "reconnecting in 3 s");
        assert_eq!(dropped.label(12.0), "reconnecting in 1 s");
        let retrying = dropped.after(&ConnectionState::Connecting { attempt: 1 }, 12.5);
        assert!(matches!(retrying, Link::Reconnecting { .. }));
        let mut resumed = retrying.after(&ConnectionState::Open, 12.6);
        resumed.count_replayed(12.7);
        resumed.count_replayed(12.8);
        resumed.count_replayed(14.0); // live again by then
        assert_eq!(resumed.label(14.0), "resumed (replayed 2)");
        assert_eq!(resumed.after(&ConnectionState::Closed, 14.0), Link::Ended);
        let lost = resumed.after(
            &ConnectionState::Failed(SseError::Status {
                url: "u".into(),
                status: 404,
                detail: String::new(),
            }),
            15.0,
        );
        assert!(lost.label(15.0).starts_with("lost: u answered HTTP 404"));
    }
}
