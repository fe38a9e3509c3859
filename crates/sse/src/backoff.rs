//! When to reconnect: the server's retry time, exponential backoff with jitter, and a cap.

use std::time::Duration;

use crate::jitter::Jitter;

/// How a client reconnects. The defaults suit a console that watches long-lived streams.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// The reconnection time until the server sets one with `retry:`.
    pub initial_retry: Duration,
    /// Backoff never waits longer than this, unless the server's own `retry:` is longer.
    pub max_delay: Duration,
    /// A connection that stayed open this long was healthy: the next reconnect starts the
    /// backoff from the retry time again. A shorter one counts as a failure, so a server that
    /// accepts and closes at once is not hammered.
    pub healthy_after: Duration,
    /// The fraction (0..=1) by which a backed-off delay is randomly shortened, so that many
    /// clients cut off at once do not come back at once. The first reconnect is not jittered:
    /// it waits exactly the server's retry time, as the spec says.
    pub jitter: f64,
    /// Give up after this many reconnects in a row without a healthy connection. `None` never
    /// gives up.
    pub max_reconnects: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_retry: Duration::from_secs(3),
            max_delay: Duration::from_secs(30),
            healthy_after: Duration::from_secs(5),
            jitter: 0.3,
            max_reconnects: None,
        }
    }
}

/// The backoff state of one client: how many reconnects in a row have failed.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    /// Reconnects since the last healthy connection.
    attempts: u32,
    jitter: Jitter,
}

impl Backoff {
    /// A fresh backoff with a random jitter seed.
    pub fn new(policy: ReconnectPolicy) -> Self {
        Self {
            policy,
            attempts: 0,
            jitter: Jitter::from_clock(),
        }
    }

    /// A fresh backoff whose jitter is reproducible, for tests.
    pub fn with_seed(policy: ReconnectPolicy, seed: u64) -> Self {
        Self {
            policy,
            attempts: 0,
            jitter: Jitter::seeded(seed),
        }
    }

    /// The policy this backoff follows.
    pub fn policy(&self) -> &ReconnectPolicy {
        &self.policy
    }

    /// Reconnects made since the last healthy connection.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// A connection ended after being open for `open_for` (`None`: it never opened). A healthy
    /// one resets the backoff.
    pub fn connection_ended(&mut self, open_for: Option<Duration>) {
        if open_for.is_some_and(|open_for| open_for >= self.policy.healthy_after) {
            self.attempts = 0;
        }
    }

    /// The wait before the next reconnect, given the current reconnection time `retry`, or
    /// `None` when the policy says to give up. Counts the reconnect.
    pub fn next_delay(&mut self, retry: Duration) -> Option<Duration> {
        if self
            .policy
            .max_reconnects
            .is_some_and(|max| self.attempts >= max)
        {
            return None;
        }
        self.attempts = self.attempts.saturating_add(1);
        let doublings = (self.attempts - 1).min(24);
        let cap = self.policy.max_delay.max(retry);
        let backed_off = retry.saturating_mul(1 << doublings).min(cap);
        if doublings == 0 {
            return Some(backed_off);
        }
        let jitter = self.policy.jitter.clamp(0.0, 1.0) * self.jitter.fraction();
        // Shortening keeps the delay within the cap; the floor keeps the server's retry time.
        Some(backed_off.mul_f64(1.0 - jitter).max(retry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy {
            initial_retry: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            healthy_after: Duration::from_secs(5),
            jitter: 0.3,
            max_reconnects: None,
        }
    }

    #[test]
    fn first_reconnect_waits_exactly_the_retry_time() {
        let mut backoff = Backoff::with_seed(policy(), 1);
        assert_eq!(
            backoff.next_delay(Duration::from_millis(100)),
            Some(Duration::from_millis(100))
        );
    }

    #[test]
    fn delays_double_with_jitter_and_stay_under_the_cap() {
        let retry = Duration::from_millis(100);
        let mut backoff = Backoff::with_seed(policy(), 7);
        let delays: Vec<_> = (0..10)
            .map(|_| backoff.next_delay(retry).unwrap())
            .collect();
        for (k, delay) in delays.iter().enumerate().skip(1) {
            let nominal = (retry * (1 << k)).min(Duration::from_secs(1));
            assert!(
                *delay <= nominal,
                "attempt {k}: {delay:?} above {nominal:?}"
            );
            assert!(
                *delay >= nominal.mul_f64(0.7),
                "attempt {k}: {delay:?} jittered too far below {nominal:?}"
            );
        }
        assert!(delays.iter().all(|d| *d >= retry));
    }

    #[test]
    fn only_a_healthy_connection_resets_the_backoff() {
        let retry = Duration::from_millis(100);
        let mut backoff = Backoff::with_seed(policy(), 3);
        backoff.next_delay(retry);
        backoff.next_delay(retry);
        backoff.connection_ended(Some(Duration::from_millis(50)));
        assert_eq!(
            backoff.attempts(),
            2,
            "a short-lived connection is not healthy"
        );
        backoff.connection_ended(None);
        assert_eq!(backoff.attempts(), 2);
        backoff.connection_ended(Some(Duration::from_secs(6)));
        assert_eq!(backoff.attempts(), 0);
        assert_eq!(backoff.next_delay(retry), Some(retry));
    }

    #[test]
    fn a_server_retry_longer_than_the_cap_is_honoured() {
        let retry = Duration::from_mins(1);
        let mut backoff = Backoff::with_seed(policy(), 5);
        for _ in 0..5 {
            assert_eq!(backoff.next_delay(retry), Some(retry));
        }
    }

    #[test]
    fn gives_up_after_max_reconnects_in_a_row() {
        let retry = Duration::from_millis(100);
        let mut backoff = Backoff::with_seed(
            ReconnectPolicy {
                max_reconnects: Some(2),
                ..policy()
            },
            9,
        );
        assert!(backoff.next_delay(retry).is_some());
        assert!(backoff.next_delay(retry).is_some());
        assert_eq!(backoff.next_delay(retry), None);
    }

    #[test]
    fn zero_max_reconnects_never_reconnects() {
        let mut backoff = Backoff::with_seed(
            ReconnectPolicy {
                max_reconnects: Some(0),
                ..policy()
            },
            9,
        );
        assert_eq!(backoff.next_delay(Duration::from_millis(1)), None);
    }
}
