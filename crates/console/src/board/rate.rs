//! Tokens per second by the DESIGN.md rule: an EMA of the rate between cumulative counts, gated
//! so two updates a few milliseconds apart never divide by almost nothing.

use std::collections::VecDeque;

/// How the rate is smoothed.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RateSettings {
    /// Weight of the newest rate in the moving average.
    pub alpha: f64,
    /// Updates closer together than this accumulate until the gap is larger.
    pub gate_secs: f64,
    /// How much history the sparkline keeps.
    pub window_secs: f64,
}

impl Default for RateSettings {
    fn default() -> Self {
        Self {
            alpha: 0.3,
            gate_secs: 0.1,
            window_secs: 60.0,
        }
    }
}

/// One worker's tokens-per-second meter and its sparkline history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenRate {
    ema: f64,
    /// Where the last accepted measurement was taken: (time, cumulative tokens).
    last: Option<(f64, u64)>,
    /// (time, EMA) after each accepted measurement, oldest first, within the window.
    history: VecDeque<[f64; 2]>,
}

impl TokenRate {
    /// The smoothed tokens per second (0 before two measurements).
    pub fn per_sec(&self) -> f64 {
        self.ema
    }

    /// The sparkline points, `[time, tok/s]`, oldest first.
    pub fn history(&self) -> &VecDeque<[f64; 2]> {
        &self.history
    }

    /// Takes a cumulative token count seen at time `now` (seconds). Returns true when the rate
    /// changed (the gate was open).
    pub fn observe(&mut self, tokens: u64, now: f64, settings: &RateSettings) -> bool {
        let Some((then, tokens_then)) = self.last else {
            self.last = Some((now, tokens));
            return false;
        };
        let elapsed = now - then;
        if elapsed <= settings.gate_secs {
            // Too close: the delta keeps accumulating until the gate opens.
            return false;
        }
        #[allow(clippy::cast_precision_loss)] // Token deltas are far below 2^52.
        let instant = tokens.saturating_sub(tokens_then) as f64 / elapsed;
        self.ema = if self.ema == 0.0 {
            instant
        } else {
            settings.alpha * instant + (1.0 - settings.alpha) * self.ema
        };
        self.last = Some((now, tokens));
        self.history.push_back([now, self.ema]);
        while self
            .history
            .front()
            .is_some_and(|[t, _]| now - t > settings.window_secs)
        {
            self.history.pop_front();
        }
        true
    }

    /// Whether a count observed at `now` would be measured (the gate is open, or it would be
    /// the first); a count that would not need not be computed.
    pub fn would_measure(&self, now: f64, settings: &RateSettings) -> bool {
        self.last
            .is_none_or(|(then, _)| now - then > settings.gate_secs)
    }

    /// Moves the baseline to `tokens` at `now` without computing a rate: for counts that arrive
    /// in a replay burst, whose spacing says nothing about generation speed.
    pub fn rebase(&mut self, tokens: u64, now: f64) {
        self.last = Some((now, tokens));
    }

    /// The worker stopped: its rate reads zero from now on. The history ends at the last
    /// measurement, so a finished run's sparkline ends where generation ended rather than
    /// plunging to zero at its right edge (which reads as a collapse that never happened).
    pub fn stop(&mut self) {
        self.ema = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe_all(points: &[(f64, u64)]) -> TokenRate {
        let mut rate = TokenRate::default();
        for &(t, tokens) in points {
            rate.observe(tokens, t, &RateSettings::default());
        }
        rate
    }

    #[test]
    fn the_first_rate_is_taken_as_it_is_then_smoothed_with_alpha() {
        let rate = observe_all(&[(0.0, 0), (1.0, 50)]);
        assert!((rate.per_sec() - 50.0).abs() < 1e-9);
        let rate = observe_all(&[(0.0, 0), (1.0, 50), (2.0, 150)]);
        // 0.3 × 100 + 0.7 × 50
        assert!((rate.per_sec() - 65.0).abs() < 1e-9, "{}", rate.per_sec());
    }

    #[test]
    fn updates_inside_the_100_ms_gate_accumulate_until_it_opens() {
        // 0.05 s after the start: gated. At 0.2 s the whole delta since 0.0 counts.
        let rate = observe_all(&[(0.0, 0), (0.05, 30), (0.2, 40)]);
        assert!((rate.per_sec() - 200.0).abs() < 1e-9, "{}", rate.per_sec());
        assert_eq!(rate.history().len(), 1);
        // Exactly 100 ms is still gated ("more than 100 ms" opens it).
        let rate = observe_all(&[(0.0, 0), (0.1, 10)]);
        assert!(rate.per_sec().abs() < f64::EPSILON);
    }

    #[test]
    fn the_sparkline_keeps_only_the_window() {
        let points: Vec<(f64, u64)> = (0..200u32)
            .map(|i| (f64::from(i), u64::from(i) * 10))
            .collect();
        let rate = observe_all(&points);
        let history = rate.history();
        assert!(history.front().unwrap()[0] >= 199.0 - 60.0);
        assert!((history.back().unwrap()[0] - 199.0).abs() < 1e-9);
    }

    #[test]
    fn a_rebase_moves_the_baseline_without_a_rate() {
        let mut rate = TokenRate::default();
        let settings = RateSettings::default();
        rate.rebase(900, 10.0); // a replay caught up to 900 tokens
        rate.observe(950, 11.0, &settings);
        assert!((rate.per_sec() - 50.0).abs() < 1e-9, "{}", rate.per_sec());
    }

    #[test]
    fn a_counter_that_goes_backwards_reads_as_zero_not_negative() {
        let rate = observe_all(&[(0.0, 100), (1.0, 40)]);
        assert!(rate.per_sec().abs() < f64::EPSILON);
    }

    #[test]
    fn a_stopped_rate_reads_zero_and_its_sparkline_ends_where_it_ended() {
        let mut rate = observe_all(&[(0.0, 0), (1.0, 50), (2.0, 100)]);
        let before: Vec<[f64; 2]> = rate.history().iter().copied().collect();
        rate.stop();
        assert!(rate.per_sec().abs() < f64::EPSILON);
        let after: Vec<[f64; 2]> = rate.history().iter().copied().collect();
        assert_eq!(after, before, "no drop to zero is appended");
        assert!((after.last().unwrap()[1] - 50.0).abs() < 1e-9);
    }
}
