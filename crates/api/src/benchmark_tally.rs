//! The benchmark as a client sees it: built from the stream's events, with the
//! figures people want — pass rate, mean score, ETA. Shared by the console and the CLI.

use crate::{BenchmarkEvent, BenchmarkProgress, BenchmarkStatus, TaskComplete, phase};

/// Errors kept for the banner.
const ERRORS_KEPT: usize = 20;

/// Everything known about the benchmark a server reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BenchmarkTally {
    /// The last `status`.
    pub status: Option<BenchmarkStatus>,
    /// The last `progress`.
    pub progress: BenchmarkProgress,
    /// Results, in the order they came.
    pub results: Vec<TaskComplete>,
    /// The latest errors, newest last.
    pub errors: Vec<String>,
}

impl BenchmarkTally {
    /// Applies one event of the stream.
    pub fn apply(&mut self, event: BenchmarkEvent) {
        match event {
            BenchmarkEvent::Status(status) => {
                // The server numbers its benchmarks; one without numbers is new when it runs
                // again after it ended.
                let restarted = self.status.as_ref().is_some_and(|old| {
                    match (old.benchmark, status.benchmark) {
                        (Some(old), Some(new)) => old != new,
                        _ => status.phase == phase::RUNNING && old.phase != phase::RUNNING,
                    }
                });
                if restarted {
                    self.results.clear();
                    self.errors.clear();
                }
                self.status = Some(status);
            }
            BenchmarkEvent::Progress(progress) => self.progress = progress,
            BenchmarkEvent::TaskComplete(result) => self.results.push(result),
            BenchmarkEvent::Error(error) => {
                if self.errors.len() == ERRORS_KEPT {
                    self.errors.remove(0);
                }
                self.errors.push(error.message);
            }
            BenchmarkEvent::Unknown(_) => {}
        }
    }

    /// Whether tasks are running.
    pub fn running(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.running)
    }

    /// The phase, or `""` before the first status.
    pub fn phase(&self) -> &str {
        self.status.as_ref().map_or("", |s| s.phase.as_str())
    }

    /// Whether the benchmark is over (finished or stopped).
    pub fn ended(&self) -> bool {
        matches!(self.phase(), phase::FINISHED | phase::STOPPED)
    }

    /// Done over total, 0..=1; `None` while the total is unknown.
    pub fn fraction(&self) -> Option<f64> {
        let total = self.progress.total_tasks;
        #[allow(clippy::cast_precision_loss)] // Task counts are small.
        (total > 0).then(|| (self.progress.tasks_completed.min(total) as f64) / total as f64)
    }

    /// Passed over results; `None` before any result.
    pub fn pass_rate(&self) -> Option<f64> {
        let passed = self.results.iter().filter(|r| r.success).count();
        #[allow(clippy::cast_precision_loss)] // Task counts are small.
        (!self.results.is_empty()).then(|| passed as f64 / self.results.len() as f64)
    }

    /// How many results passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.success).count()
    }

    /// The mean score; `None` before any result.
    pub fn mean_score(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)] // Task counts are small.
        (!self.results.is_empty()).then(|| {
            self.results.iter().map(|r| r.score).fold(0.0, |a, b| a + b) / self.results.len() as f64
        })
    }

    /// The pass rate and the mean score after each result in turn: how they went as the
    /// benchmark ran (the last pair is [`Self::pass_rate`] and [`Self::mean_score`]).
    pub fn running_totals(&self) -> Vec<RunningTotal> {
        let (mut passed, mut score) = (0u32, 0.0);
        self.results
            .iter()
            .zip(1u32..)
            .map(|(result, count)| {
                passed += u32::from(result.success);
                score += result.score;
                RunningTotal {
                    pass_rate: f64::from(passed) / f64::from(count),
                    mean_score: score / f64::from(count),
                }
            })
            .collect()
    }

    /// Seconds left: the mean task duration times the tasks still to run. `None` until a
    /// duration is known or when nothing is left.
    pub fn eta_secs(&self) -> Option<f64> {
        let durations: Vec<f64> = self
            .results
            .iter()
            .filter_map(|r| r.duration_secs)
            .filter(|d| d.is_finite() && *d >= 0.0)
            .collect();
        let remaining = self
            .progress
            .total_tasks
            .saturating_sub(self.progress.tasks_completed);
        if durations.is_empty() || remaining == 0 || !self.running() {
            return None;
        }
        #[allow(clippy::cast_precision_loss)] // Task counts are small.
        let mean = durations.iter().fold(0.0, |a, b| a + b) / durations.len() as f64;
        #[allow(clippy::cast_precision_loss)]
        Some(mean * remaining as f64)
    }
}

/// The pass rate and mean score over the results so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunningTotal {
    /// Passed results over results, 0..=1.
    pub pass_rate: f64,
    /// The mean of the scores.
    pub mean_score: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BENCHMARK_STATUS_TYPE, BenchmarkError};

    fn status(phase: &str, running: bool, name: &str) -> BenchmarkEvent {
        let benchmark = u64::from(name.as_bytes()[0]);
        BenchmarkEvent::Status(BenchmarkStatus {
            kind: BENCHMARK_STATUS_TYPE.into(),
            connected: true,
            phase: phase.into(),
            running,
            source: Some("api".into()),
            name: Some(name.into()),
            benchmark: Some(benchmark),
            log: None,
        })
    }

    fn result(task: &str, success: bool, score: f64, secs: f64) -> BenchmarkEvent {
        BenchmarkEvent::TaskComplete(TaskComplete {
            task_id: task.into(),
            success,
            score,
            duration_secs: Some(secs),
            run_id: None,
        })
    }

    fn progress(done: u64, total: u64) -> BenchmarkEvent {
        BenchmarkEvent::Progress(BenchmarkProgress {
            tasks_completed: done,
            total_tasks: total,
            current_task: Some("t".into()),
            current_step: Some(3),
        })
    }

    #[test]
    fn running_totals_follow_the_results_in_order() {
        let mut view = BenchmarkTally::default();
        assert!(view.running_totals().is_empty());
        view.apply(status(phase::RUNNING, true, "a"));
        view.apply(result("t1", true, 1.0, 10.0));
        view.apply(result("t2", false, 0.0, 20.0));
        view.apply(result("t3", true, 0.5, 5.0));
        let totals = view.running_totals();
        let pairs: Vec<(f64, f64)> = totals.iter().map(|t| (t.pass_rate, t.mean_score)).collect();
        assert_eq!(pairs, [(1.0, 1.0), (0.5, 0.5), (2.0 / 3.0, 0.5)]);
        assert_eq!(Some(pairs[2].0), view.pass_rate());
        assert_eq!(Some(pairs[2].1), view.mean_score());
    }

    #[test]
    fn pass_rate_mean_score_and_eta_from_results() {
        let mut view = BenchmarkTally::default();
        assert_eq!(view.pass_rate(), None);
        view.apply(status(phase::RUNNING, true, "a"));
        view.apply(result("t1", true, 1.0, 10.0));
        view.apply(result("t2", false, 0.0, 20.0));
        view.apply(progress(2, 6));
        assert_eq!(view.pass_rate(), Some(0.5));
        assert_eq!(view.mean_score(), Some(0.5));
        assert_eq!(view.eta_secs(), Some(60.0));
        assert!((view.fraction().unwrap() - 1.0 / 3.0).abs() < 1e-9);
        view.apply(BenchmarkEvent::Error(BenchmarkError {
            message: "disk full".into(),
        }));
        assert_eq!(view.errors, ["disk full"]);
        view.apply(status(phase::FINISHED, false, "a"));
        assert!(view.ended());
        assert_eq!(view.eta_secs(), None);
    }

    #[test]
    fn a_new_benchmark_starts_a_new_tally() {
        let mut view = BenchmarkTally::default();
        view.apply(status(phase::RUNNING, true, "a"));
        view.apply(result("t1", true, 1.0, 1.0));
        view.apply(status(phase::FINISHED, false, "a"));
        view.apply(status(phase::RUNNING, true, "b"));
        assert!(view.results.is_empty());
        view.apply(result("t1", true, 1.0, 1.0));
        view.apply(status(phase::RUNNING, true, "b"));
        assert_eq!(
            view.results.len(),
            1,
            "the same benchmark again is not a new one"
        );
    }
}
