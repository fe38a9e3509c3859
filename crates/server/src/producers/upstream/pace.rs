//! The pace of one request's `node_update`s: at most one per `every`. The first tokens go
//! out at once; tokens inside the gap are held, and one timer sends them when the gap ends,
//! so the latest text always arrives without an update per chunk.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// When the next update may go.
#[derive(Debug, Clone)]
pub struct Pace {
    every: Duration,
    last: Option<Instant>,
    held: bool,
}

/// What to do with tokens that just arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paced {
    /// Send an update now.
    Now,
    /// Hold it; set the flush timer to this instant.
    HoldUntil(Instant),
    /// An update is already held and its timer set.
    AlreadyHeld,
}

impl Pace {
    /// At most one update per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held: false,
        }
    }

    /// New tokens arrived at `now`.
    pub fn tokens(&mut self, now: Instant) -> Paced {
        match self.last {
            Some(at) if now.duration_since(at) < self.every => {
                if self.held {
                    Paced::AlreadyHeld
                } else {
                    self.held = true;
                    Paced::HoldUntil(at + self.every)
                }
            }
            _ => Paced::Now,
        }
    }

    /// An update was sent at `at`; nothing is held any more.
    pub fn sent(&mut self, at: Instant) {
        self.last = Some(at);
        self.held = false;
    }

    /// Whether an update is held for the timer.
    pub fn held(&self) -> bool {
        self.held
    }
}

/// A [`Pace`] with its timer: what a read loop of generated runs and proxied calls alike uses
/// to send its `node_update`s, at most one per `every`, the held one when its gap ends.
#[derive(Debug)]
pub struct Throttle {
    pace: Pace,
    flush: Pin<Box<Sleep>>,
}

impl Throttle {
    /// At most one update per `every`; nothing held yet.
    pub fn new(every: Duration) -> Self {
        Self {
            pace: Pace::new(every),
            // One timer, moved when an update is held back, not made anew for every chunk.
            flush: Box::pin(tokio::time::sleep(every)),
        }
    }

    /// New tokens arrived at `now`: true when an update should go now; otherwise one is held
    /// and [`Throttle::due`] says when.
    pub fn tokens(&mut self, now: Instant) -> bool {
        match self.pace.tokens(now) {
            Paced::Now => true,
            Paced::HoldUntil(at) => {
                self.flush.as_mut().reset(at);
                false
            }
            Paced::AlreadyHeld => false,
        }
    }

    /// Waits until the held update is due; select on it only while [`Throttle::held`].
    pub async fn due(&mut self) {
        self.flush.as_mut().await;
    }

    /// An update was sent at `at`; nothing is held any more.
    pub fn sent(&mut self, at: Instant) {
        self.pace.sent(at);
    }

    /// Whether an update is held for the timer.
    pub fn held(&self) -> bool {
        self.pace.held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_goes_at_once_then_one_is_held_per_gap() {
        let every = Duration::from_millis(50);
        let mut pace = Pace::new(every);
        let start = Instant::now();
        assert_eq!(pace.tokens(start), Paced::Now);
        pace.sent(start);
        let soon = start + Duration::from_millis(10);
        assert_eq!(pace.tokens(soon), Paced::HoldUntil(start + every));
        assert!(pace.held());
        assert_eq!(pace.tokens(soon), Paced::AlreadyHeld);
        pace.sent(start + every);
        assert!(!pace.held());
        assert_eq!(pace.tokens(start + every * 3), Paced::Now);
    }
}
