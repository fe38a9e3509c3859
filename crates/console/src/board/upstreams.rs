//! The model servers a runboard server reads (`serve --scrape`): the latest figures of each, and
//! five minutes of their history for the sparklines.

use std::collections::{HashMap, VecDeque};

use runboard_api::clock::unix_seconds;
use runboard_api::{Figures, Upstream, Upstreams};

/// How much history the sparklines show.
pub const HISTORY_SECS: f64 = 300.0;

/// One figure a sparkline can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Figure {
    /// Requests running.
    Running,
    /// Requests waiting.
    Waiting,
    /// KV-cache use, in percent.
    KvCache,
    /// Generated tokens per second.
    TokPerSec,
    /// Median time to first token, seconds.
    TtftP50,
    /// 95th percentile of time to first token, seconds.
    TtftP95,
}

impl Figure {
    /// Every figure, in the order the view shows them.
    pub const ALL: [Self; 6] = [
        Self::Running,
        Self::Waiting,
        Self::KvCache,
        Self::TokPerSec,
        Self::TtftP50,
        Self::TtftP95,
    ];

    /// The figure's value in a read, in the unit it is shown in.
    pub fn of(self, figures: &Figures) -> Option<f64> {
        match self {
            Self::Running => figures.running,
            Self::Waiting => figures.waiting,
            Self::KvCache => figures.kv_cache.map(|fraction| fraction * 100.0),
            Self::TokPerSec => figures.generation_tok_per_sec,
            Self::TtftP50 => figures.ttft_p50,
            Self::TtftP95 => figures.ttft_p95,
        }
    }
}

/// The upstreams of one runboard server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamsState {
    /// The latest read of each, in the server's order.
    pub latest: Vec<Upstream>,
    /// Per upstream URL, its reads over the last [`HISTORY_SECS`] (console clock, figures).
    history: HashMap<String, VecDeque<(f64, Figures)>>,
}

impl UpstreamsState {
    /// Takes a new snapshot that arrived at `now`. One that carries the server's history (the
    /// first of a stream) replaces what was kept, placed on this clock by its newest read.
    pub fn apply(&mut self, snapshot: Upstreams, now: f64) {
        for upstream in &snapshot.upstreams {
            let reads = self.history.entry(upstream.url.clone()).or_default();
            if let Some(newest) = upstream.history.last() {
                let read_at = upstream
                    .scraped_at
                    .as_deref()
                    .and_then(unix_seconds)
                    .unwrap_or(newest.at);
                let offset = now - read_at;
                reads.clear();
                reads.extend(
                    upstream
                        .history
                        .iter()
                        .map(|point| ((point.at + offset).min(now), point.figures.clone())),
                );
            } else {
                reads.push_back((now, upstream.figures.clone()));
            }
            while reads.front().is_some_and(|(at, _)| now - at > HISTORY_SECS) {
                reads.pop_front();
            }
        }
        let urls: Vec<&str> = snapshot.upstreams.iter().map(|u| u.url.as_str()).collect();
        self.history.retain(|url, _| urls.contains(&url.as_str()));
        self.latest = snapshot.upstreams;
    }

    /// `figure` of upstream `url` over the last five minutes: (seconds before `now`, value),
    /// oldest first; reads without the figure are left out.
    pub fn series(&self, url: &str, figure: Figure, now: f64) -> Vec<[f64; 2]> {
        self.history.get(url).map_or_else(Vec::new, |reads| {
            reads
                .iter()
                .filter_map(|(at, figures)| figure.of(figures).map(|value| [at - now, value]))
                .collect()
        })
    }

    /// Whether there is anything to show.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runboard_api::ScrapeState;

    fn read(url: &str, running: f64, tok: Option<f64>) -> Upstream {
        Upstream {
            state: ScrapeState::Ok,
            figures: Figures {
                running: Some(running),
                generation_tok_per_sec: tok,
                kv_cache: Some(0.5),
                ..Figures::default()
            },
            ..Upstream::pending(url)
        }
    }

    #[test]
    #[allow(clippy::float_cmp)] // Whole numbers and halves: exact in f64.
    fn five_minutes_of_history_per_upstream() {
        let mut state = UpstreamsState::default();
        for step in 0..200u32 {
            let t = f64::from(step) * 2.0;
            let tok = (step % 2 == 0).then_some(f64::from(step));
            state.apply(
                Upstreams {
                    upstreams: vec![read("http://a", f64::from(step), tok)],
                },
                t,
            );
        }
        let now = 398.0;
        let running = state.series("http://a", Figure::Running, now);
        assert_eq!(running.len(), 151, "300 s of reads every 2 s, both ends");
        assert_eq!(running.last(), Some(&[0.0, 199.0]));
        assert_eq!(running[0], [-300.0, 49.0]);
        let tok = state.series("http://a", Figure::TokPerSec, now);
        assert_eq!(tok.len(), 75, "reads without the figure are left out");
        assert_eq!(
            state.series("http://a", Figure::KvCache, now)[0][1],
            50.0,
            "in percent"
        );
        // A server that stops reading an upstream forgets it.
        state.apply(
            Upstreams {
                upstreams: vec![read("http://b", 1.0, None)],
            },
            400.0,
        );
        assert!(state.series("http://a", Figure::Running, 400.0).is_empty());
        assert_eq!(state.latest.len(), 1);
    }

    #[test]
    #[allow(clippy::float_cmp)] // Whole numbers: exact in f64.
    fn the_servers_history_fills_the_sparklines_of_a_console_that_just_opened() {
        let mut state = UpstreamsState::default();
        let mut first = read("http://a", 3.0, None);
        first.scraped_at = Some("2026-12-01T00:05:00Z".into());
        let five_past = 1_796_083_500.0;
        first.history = (0..=150u32)
            .map(|n| runboard_api::FigurePoint {
                at: five_past - 300.0 + f64::from(n) * 2.0,
                figures: Figures {
                    running: Some(f64::from(n)),
                    ..Figures::default()
                },
            })
            .collect();
        // The console's clock reads 12 when it arrives.
        state.apply(
            Upstreams {
                upstreams: vec![first],
            },
            12.0,
        );
        let running = state.series("http://a", Figure::Running, 12.0);
        assert_eq!(running.len(), 151);
        assert_eq!(running[0], [-300.0, 0.0]);
        assert_eq!(running[150], [0.0, 150.0]);
        // Later reads add to it.
        state.apply(
            Upstreams {
                upstreams: vec![read("http://a", 9.0, None)],
            },
            14.0,
        );
        assert_eq!(
            state.series("http://a", Figure::Running, 14.0).last(),
            Some(&[0.0, 9.0])
        );
    }
}
