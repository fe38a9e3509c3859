//! Calls a second and failures a minute over the last minute, from the calls and runs seen to
//! end here (whatever the server: every end passes through the board).

use std::collections::VecDeque;

/// How far back the figures look, in seconds.
pub const CALL_WINDOW_SECS: f64 = 60.0;

/// The ends of the last minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallRates {
    /// (time, failed), oldest first.
    ends: VecDeque<(f64, bool)>,
    /// When the board first heard from a server: before a minute has passed, the figures are
    /// over the time watched, not a minute.
    since: Option<f64>,
}

impl CallRates {
    /// The board heard from a server at `now`.
    pub fn seen(&mut self, now: f64) {
        self.since.get_or_insert(now);
    }

    /// A call or run ended at `now`.
    pub fn ended(&mut self, now: f64, failed: bool) {
        self.seen(now);
        self.ends.push_back((now, failed));
        self.forget_before(now);
    }

    /// Calls ended a second, over the last minute (or the time watched, if shorter).
    pub fn per_sec(&self, now: f64) -> f64 {
        self.count(now, |_| true) / self.span(now)
    }

    /// Calls failed a minute, over the last minute (or the time watched, if shorter).
    pub fn failures_per_min(&self, now: f64) -> f64 {
        self.count(now, |failed| failed) * 60.0 / self.span(now)
    }

    #[allow(clippy::cast_precision_loss)] // At most a minute of calls.
    fn count(&self, now: f64, which: impl Fn(bool) -> bool) -> f64 {
        self.ends
            .iter()
            .filter(|(at, failed)| now - at <= CALL_WINDOW_SECS && which(*failed))
            .count() as f64
    }

    fn span(&self, now: f64) -> f64 {
        self.since
            .map_or(CALL_WINDOW_SECS, |since| {
                (now - since).min(CALL_WINDOW_SECS)
            })
            .max(1.0)
    }

    fn forget_before(&mut self, now: f64) {
        while self
            .ends
            .front()
            .is_some_and(|(at, _)| now - at > CALL_WINDOW_SECS)
        {
            self.ends.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_minute_counts_and_the_first_is_over_the_time_watched() {
        let mut rates = CallRates::default();
        rates.seen(0.0);
        for n in 0..20 {
            rates.ended(f64::from(n) * 0.5, n % 10 == 0);
        }
        // 20 calls, 2 failed, in 10 s watched.
        assert!((rates.per_sec(10.0) - 2.0).abs() < 1e-9);
        assert!((rates.failures_per_min(10.0) - 12.0).abs() < 1e-9);
        // Two minutes later none is in the window.
        assert!(rates.per_sec(130.0).abs() < f64::EPSILON);
        assert!(rates.failures_per_min(130.0).abs() < f64::EPSILON);
    }
}
