//! Figures over time: rates from counters (a counter that went down is a restarted server,
//! counted from zero) and histogram quantiles over the last minute.

use std::collections::VecDeque;
use std::time::Duration;

use runboard_api::Figures;
use tokio::time::Instant;

use super::reading::{Buckets, RawFigures};

/// How far back the quantiles look.
pub const QUANTILE_WINDOW: Duration = Duration::from_secs(60);

/// The history of one figure set (a server's total, or one model's).
#[derive(Debug, Default)]
pub struct FigureWindow {
    previous: Option<(Instant, RawFigures)>,
    ttft: HistogramWindow,
    inter_token: HistogramWindow,
}

impl FigureWindow {
    /// Takes a read made at `at` and gives the figures to show.
    pub fn observe(&mut self, at: Instant, raw: &RawFigures) -> Figures {
        let rate = |now: Option<f64>, then: Option<f64>| -> Option<f64> {
            let (previous_at, _) = self.previous.as_ref()?;
            let seconds = at.duration_since(*previous_at).as_secs_f64();
            counter_rate(now?, then?, seconds)
        };
        let previous = self.previous.as_ref().map(|(_, raw)| raw);
        let generation_tok_per_sec = rate(
            raw.generation_tokens,
            previous.and_then(|p| p.generation_tokens),
        )
        // Until there are two reads, llama.cpp's own average says something.
        .or(raw.server_tok_per_sec);
        let prompt_tok_per_sec = rate(raw.prompt_tokens, previous.and_then(|p| p.prompt_tokens));
        let preemptions_per_sec = rate(raw.preemptions, previous.and_then(|p| p.preemptions));
        let ttft = raw.ttft.as_ref().map(|b| self.ttft.observe(at, b));
        let inter_token = raw
            .inter_token
            .as_ref()
            .map(|b| self.inter_token.observe(at, b));
        self.previous = Some((at, raw.clone()));
        Figures {
            running: raw.running,
            waiting: raw.waiting,
            kv_cache: raw.kv_cache,
            generation_tok_per_sec,
            prompt_tok_per_sec,
            preemptions: raw.preemptions,
            preemptions_per_sec,
            ttft_p50: ttft.as_ref().and_then(|b| quantile(b, 0.5)),
            ttft_p95: ttft.as_ref().and_then(|b| quantile(b, 0.95)),
            itl_p50: inter_token.as_ref().and_then(|b| quantile(b, 0.5)),
            itl_p95: inter_token.as_ref().and_then(|b| quantile(b, 0.95)),
        }
    }
}

/// Per second from two reads of a counter `seconds` apart. A counter that went down was reset
/// (the server restarted): what it counts now was counted since then.
pub fn counter_rate(now: f64, then: f64, seconds: f64) -> Option<f64> {
    if seconds <= 0.0 {
        return None;
    }
    let increase = if now >= then { now - then } else { now };
    Some(increase / seconds)
}

/// A histogram's reads over the last [`QUANTILE_WINDOW`].
#[derive(Debug, Default)]
struct HistogramWindow {
    reads: VecDeque<(Instant, Buckets)>,
}

impl HistogramWindow {
    /// Adds a read and gives the counts observed within the window (the newest read minus the
    /// oldest one within it).
    fn observe(&mut self, at: Instant, buckets: &Buckets) -> Buckets {
        let reset = self.reads.back().is_some_and(|(_, last)| {
            !same_bounds(last, buckets)
                || last
                    .iter()
                    .zip(buckets)
                    .any(|((_, before), (_, now))| now < before)
        });
        if reset {
            // Counted from zero since the restart: a zero read stands in for the start.
            let since = self.reads.back().map_or(at, |(when, _)| *when);
            self.reads.clear();
            self.reads
                .push_back((since, buckets.iter().map(|(le, _)| (*le, 0.0)).collect()));
        }
        self.reads.push_back((at, buckets.clone()));
        while self.reads.len() > 2
            && self
                .reads
                .get(1)
                .is_some_and(|(when, _)| at.duration_since(*when) >= QUANTILE_WINDOW)
        {
            self.reads.pop_front();
        }
        let (_, oldest) = &self.reads[0];
        if self.reads.len() == 1 {
            // One read: everything it counted is all there is to go by.
            return buckets.clone();
        }
        buckets
            .iter()
            .zip(oldest)
            .map(|((le, now), (_, then))| (*le, (now - then).max(0.0)))
            .collect()
    }
}

fn same_bounds(a: &Buckets, b: &Buckets) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((x, _), (y, _))| x.total_cmp(y).is_eq())
}

/// The `q` quantile of cumulative buckets, interpolated linearly within the bucket it falls in
/// (as Prometheus's `histogram_quantile` does); `None` when nothing was counted.
pub fn quantile(buckets: &Buckets, q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                // Beyond the last finite bound: that bound is the most that can be said.
                return Some(lower);
            }
            let within = count - below;
            let fraction = if within > 0.0 {
                (rank - below) / within
            } else {
                1.0
            };
            return Some(lower + (bound - lower) * fraction);
        }
        lower = bound;
        below = count;
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_that_went_down_was_reset() {
        assert_eq!(counter_rate(150.0, 100.0, 2.0), Some(25.0));
        assert_eq!(counter_rate(30.0, 900.0, 2.0), Some(15.0));
        assert_eq!(counter_rate(1.0, 0.0, 0.0), None);
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let buckets = vec![
            (0.1, 50.0),
            (0.5, 90.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((quantile(&buckets, 0.5).unwrap() - 0.1).abs() < 1e-9);
        assert!((quantile(&buckets, 0.7).unwrap() - 0.3).abs() < 1e-9);
        assert!((quantile(&buckets, 0.95).unwrap() - 0.75).abs() < 1e-9);
        let tail = vec![(0.1, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile(&tail, 0.95), Some(0.1));
        assert_eq!(quantile(&vec![(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }

    #[test]
    fn the_window_forgets_what_is_older_than_a_minute_and_survives_a_reset() {
        let mut window = FigureWindow::default();
        let start = Instant::now();
        let raw = |tokens: f64, fast: f64, all: f64| RawFigures {
            generation_tokens: Some(tokens),
            ttft: Some(vec![(0.1, fast), (1.0, all), (f64::INFINITY, all)]),
            ..RawFigures::default()
        };
        // A minute of slow first tokens, then only fast ones.
        let first = window.observe(start, &raw(0.0, 0.0, 100.0));
        assert_eq!(first.generation_tok_per_sec, None, "one read is not a rate");
        assert!(first.ttft_p50.unwrap() > 0.1);
        let later = start + Duration::from_secs(70);
        window.observe(later, &raw(700.0, 0.0, 100.0));
        let now = later + Duration::from_secs(10);
        let figures = window.observe(now, &raw(900.0, 50.0, 150.0));
        assert_eq!(figures.generation_tok_per_sec, Some(20.0));
        assert!(figures.ttft_p95.unwrap() <= 0.1, "{figures:?}");
        // The server restarts: its counters start again from zero.
        let restarted = now + Duration::from_secs(2);
        let figures = window.observe(restarted, &raw(40.0, 4.0, 4.0));
        assert_eq!(figures.generation_tok_per_sec, Some(20.0));
        assert!(figures.ttft_p50.unwrap() <= 0.1);
    }
}
