//! `/api/benchmark-sse`: the board's state, checked every `interval`, sent only where it changed,
//! with keep-alives in between. `task_complete` and `error` events carry ids, so a client that
//! reconnects with `Last-Event-ID` gets only what it missed.

use std::time::Duration;

use axum::response::Response;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{BenchmarkBoard, BenchmarkState};
use crate::events::sse_out::{self, Gone, SseSink};
use crate::events::stream::StreamSettings;
use runboard_api::{BenchmarkError, BenchmarkEvent, BenchmarkProgress, BenchmarkStatus};

/// How often the state is checked, from `?interval=`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval(pub Duration);

/// `?interval=` was not a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interval must be a number of seconds (1 to 60), not {0:?}")]
pub struct IntervalError(pub String);

impl Interval {
    /// The default, in seconds.
    pub const DEFAULT_SECS: f64 = 5.0;
    /// The shortest, in seconds.
    pub const MIN_SECS: f64 = 1.0;
    /// The longest, in seconds.
    pub const MAX_SECS: f64 = 60.0;

    /// Reads `?interval=`: absent means the default; a number is clamped to 1..=60 seconds.
    pub fn parse(text: Option<&str>) -> Result<Self, IntervalError> {
        let secs = match text {
            None => Self::DEFAULT_SECS,
            Some(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|secs| !secs.is_nan())
                .ok_or_else(|| IntervalError(text.to_owned()))?,
        };
        Ok(Self(Duration::from_secs_f64(
            secs.clamp(Self::MIN_SECS, Self::MAX_SECS),
        )))
    }
}

/// Where a reconnecting client left off: `generation:results:errors` from `Last-Event-ID`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resume {
    generation: u64,
    results: u64,
    errors: u64,
}

impl Resume {
    /// Reads a `Last-Event-ID`; anything else starts from the beginning.
    pub fn parse(last_event_id: Option<&str>) -> Self {
        let mut parts = last_event_id
            .unwrap_or_default()
            .split(':')
            .map(|part| part.trim().parse::<u64>());
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(generation)), Some(Ok(results)), Some(Ok(errors)), None) => Self {
                generation,
                results,
                errors,
            },
            _ => Self::default(),
        }
    }

    fn id(self) -> String {
        format!("{}:{}:{}", self.generation, self.results, self.errors)
    }
}

/// The streaming response.
pub fn response(
    board: BenchmarkBoard,
    interval: Interval,
    resume: Resume,
    settings: StreamSettings,
    shutdown: CancellationToken,
) -> Response {
    let (sink, response) = sse_out::channel(shutdown);
    tokio::spawn(async move {
        let mut stream = BenchmarkStream {
            sink,
            sent: resume,
            status: None,
            progress: None,
            last_write: Instant::now(),
        };
        let _ = stream.run(&board, interval.0, &settings).await;
    });
    response
}

struct BenchmarkStream {
    sink: SseSink,
    /// What this client has of the results and errors.
    sent: Resume,
    status: Option<BenchmarkStatus>,
    progress: Option<BenchmarkProgress>,
    last_write: Instant,
}

impl BenchmarkStream {
    async fn run(
        &mut self,
        board: &BenchmarkBoard,
        interval: Duration,
        settings: &StreamSettings,
    ) -> Result<(), Gone> {
        self.sink.retry(settings.retry).await?;
        loop {
            let state = board.snapshot();
            self.send_changes(&state).await?;
            // Wait for the next check, with keep-alives when that is longer than their period.
            let next_check = Instant::now() + interval;
            loop {
                let keep_alive_at = self.last_write + settings.keepalive;
                let wake = next_check.min(keep_alive_at);
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => {}
                    () = self.sink.closed() => return Err(Gone),
                }
                if Instant::now() >= next_check {
                    break;
                }
                self.sink.keep_alive().await?;
                self.last_write = Instant::now();
            }
        }
    }

    async fn send_changes(&mut self, state: &BenchmarkState) -> Result<(), Gone> {
        // A new client, or a new benchmark, is told so first; after that, results come before
        // the progress and status they change.
        let new_benchmark = self.sent.generation != state.generation;
        if new_benchmark {
            // Everything of it is new to this client.
            self.sent = Resume {
                generation: state.generation,
                ..Resume::default()
            };
        }
        if self.status.is_none() || new_benchmark {
            self.send_status(state).await?;
        }
        let first_kept = state.results_dropped;
        for number in self.sent.results.max(first_kept)..state.results_total() {
            let index = usize::try_from(number - first_kept).unwrap_or(usize::MAX);
            let Some(result) = state.results.get(index) else {
                break;
            };
            self.sent.results = number + 1;
            let id = self.sent.id();
            self.sink
                .event(BenchmarkEvent::TASK_COMPLETE, Some(&id), result)
                .await?;
            self.last_write = Instant::now();
        }
        let first_kept = state.errors_total - state.errors.len() as u64;
        for number in self.sent.errors.max(first_kept)..state.errors_total {
            let index = usize::try_from(number - first_kept).unwrap_or(usize::MAX);
            let Some(message) = state.errors.get(index) else {
                break;
            };
            self.sent.errors = number + 1;
            let id = self.sent.id();
            self.sink
                .event(
                    BenchmarkEvent::ERROR,
                    Some(&id),
                    &BenchmarkError {
                        message: message.clone(),
                    },
                )
                .await?;
            self.last_write = Instant::now();
        }
        if self.progress.as_ref() != Some(&state.progress) {
            self.sink
                .event(BenchmarkEvent::PROGRESS, None, &state.progress)
                .await?;
            self.progress = Some(state.progress.clone());
            self.last_write = Instant::now();
        }
        self.send_status(state).await
    }

    async fn send_status(&mut self, state: &BenchmarkState) -> Result<(), Gone> {
        if self.status.as_ref() != Some(&state.status) {
            self.sink
                .event(BenchmarkEvent::STATUS, None, &state.status)
                .await?;
            self.status = Some(state.status.clone());
            self.last_write = Instant::now();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_defaults_clamps_and_refuses_words() {
        assert_eq!(Interval::parse(None).unwrap().0, Duration::from_secs(5));
        assert_eq!(
            Interval::parse(Some("0")).unwrap().0,
            Duration::from_secs(1)
        );
        assert_eq!(
            Interval::parse(Some("-3")).unwrap().0,
            Duration::from_secs(1)
        );
        assert_eq!(
            Interval::parse(Some("1000")).unwrap().0,
            Duration::from_secs(60)
        );
        assert_eq!(
            Interval::parse(Some("inf")).unwrap().0,
            Duration::from_secs(60)
        );
        assert_eq!(
            Interval::parse(Some("2.5")).unwrap().0,
            Duration::from_millis(2500)
        );
        for bad in ["abc", "", "NaN", "5s"] {
            assert!(Interval::parse(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resume_points_round_trip_and_garbage_starts_over() {
        let resume = Resume::parse(Some("3:17:2"));
        assert_eq!(resume.id(), "3:17:2");
        assert_eq!(Resume::parse(Some("42")), Resume::default());
        assert_eq!(Resume::parse(Some("1:2:3:4")), Resume::default());
        assert_eq!(Resume::parse(None), Resume::default());
    }
}
