//! Benchmark progress: one board of state, fed either by a benchmark this server runs
//! (`POST /api/benchmarks`) or by a log file it tails (`--benchmark-log`), and streamed by
//! `/api/benchmark-sse`.

pub mod log_parse;
mod log_watch;
mod runner;
mod stream;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

pub use log_watch::watch_log;
pub use runner::{BenchmarkRunner, StartError};
pub use stream::{Interval, IntervalError, Resume, response};

use runboard_api::{
    BENCHMARK_STATUS_TYPE, BenchmarkProgress, BenchmarkStatus, LogFileState, TaskComplete, phase,
};

/// Errors kept for streams that connect later; older ones are dropped.
const ERRORS_KEPT: usize = 50;

/// Results kept per benchmark (a log may report more; the oldest go).
const RESULTS_KEPT: usize = 10_000;

/// Everything known about the current benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchmarkState {
    /// Counts benchmarks; a stream's resume point is only valid within one.
    pub generation: u64,
    /// Connection, phase, running.
    pub status: BenchmarkStatus,
    /// How far it is.
    pub progress: BenchmarkProgress,
    /// Results so far, in the order tasks finished.
    pub results: Vec<TaskComplete>,
    /// Results dropped from the front to bound memory.
    pub results_dropped: u64,
    /// The most recent errors.
    pub errors: VecDeque<String>,
    /// Errors ever reported in this benchmark (the first of `errors` is number
    /// `errors_total - errors.len()`).
    pub errors_total: u64,
}

impl BenchmarkState {
    fn new(source: &str, log: Option<LogFileState>) -> Self {
        let waiting = log.as_ref().is_some_and(|log| !log.present);
        Self {
            generation: 0,
            status: BenchmarkStatus {
                kind: BENCHMARK_STATUS_TYPE.to_owned(),
                connected: !waiting,
                phase: if waiting { phase::WAITING } else { phase::IDLE }.to_owned(),
                running: false,
                source: Some(source.to_owned()),
                name: None,
                benchmark: None,
                log,
            },
            progress: BenchmarkProgress::default(),
            results: Vec::new(),
            results_dropped: 0,
            errors: VecDeque::new(),
            errors_total: 0,
        }
    }

    /// Results ever reported in this benchmark.
    pub fn results_total(&self) -> u64 {
        self.results_dropped + self.results.len() as u64
    }

    /// A new benchmark begins: results, errors and progress start over.
    pub fn begin(&mut self, name: Option<String>, total_tasks: u64) {
        self.generation += 1;
        self.status.name = name;
        self.status.benchmark = Some(self.generation);
        phase::RUNNING.clone_into(&mut self.status.phase);
        self.status.running = true;
        self.progress = BenchmarkProgress {
            total_tasks,
            ..BenchmarkProgress::default()
        };
        self.results.clear();
        self.results_dropped = 0;
        self.errors.clear();
        self.errors_total = 0;
    }

    /// A task started.
    pub fn task_started(&mut self, task_id: &str) {
        self.progress.current_task = Some(task_id.to_owned());
        self.progress.current_step = Some(0);
        if self.status.phase != phase::RUNNING {
            phase::RUNNING.clone_into(&mut self.status.phase);
        }
        self.status.running = true;
    }

    /// A task finished; when it was the last, the benchmark is finished.
    pub fn task_finished(&mut self, result: TaskComplete) {
        if self.results.len() == RESULTS_KEPT {
            self.results.remove(0);
            self.results_dropped += 1;
        }
        if self.progress.current_task.as_deref() == Some(result.task_id.as_str()) {
            self.progress.current_task = None;
            self.progress.current_step = None;
        }
        self.results.push(result);
        self.progress.tasks_completed = self.progress.tasks_completed.max(self.results_total());
        if self.progress.total_tasks > 0
            && self.progress.tasks_completed >= self.progress.total_tasks
        {
            self.end(phase::FINISHED);
        }
    }

    /// The benchmark is over (`finished` or `stopped`).
    pub fn end(&mut self, phase: &str) {
        phase.clone_into(&mut self.status.phase);
        self.status.running = false;
        self.progress.current_task = None;
        self.progress.current_step = None;
    }

    /// Reports an error.
    pub fn error(&mut self, message: String) {
        if self.errors.len() == ERRORS_KEPT {
            self.errors.pop_front();
        }
        self.errors.push_back(message);
        self.errors_total += 1;
    }
}

/// The shared benchmark state; every change wakes every stream.
#[derive(Debug, Clone)]
pub struct BenchmarkBoard {
    state: Arc<watch::Sender<BenchmarkState>>,
}

impl BenchmarkBoard {
    /// A board for benchmarks this server runs.
    pub fn for_api() -> Self {
        Self::with(BenchmarkState::new("api", None))
    }

    /// A board for a benchmark that writes the log file at `path`.
    pub fn for_log(path: &Path) -> Self {
        let log = LogFileState {
            path: path.display().to_string(),
            present: path.exists(),
            rotations: 0,
            problem: None,
        };
        Self::with(BenchmarkState::new("log", Some(log)))
    }

    fn with(state: BenchmarkState) -> Self {
        Self {
            state: Arc::new(watch::Sender::new(state)),
        }
    }

    /// Whether the board follows a log file (and so cannot run benchmarks itself).
    pub fn watches_log(&self) -> bool {
        self.state.borrow().status.log.is_some()
    }

    /// Changes the state and wakes the streams.
    pub fn update(&self, change: impl FnOnce(&mut BenchmarkState)) {
        self.state.send_modify(change);
    }

    /// A copy of the state now.
    pub fn snapshot(&self) -> BenchmarkState {
        self.state.borrow().clone()
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<BenchmarkState> {
        self.state.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producers::benchmark::log_parse::task_result;

    #[test]
    fn the_last_result_finishes_the_benchmark_and_a_new_one_starts_clean() {
        let mut state = BenchmarkState::new("api", None);
        assert_eq!(state.status.phase, phase::IDLE);
        state.begin(Some("smoke".into()), 2);
        state.task_started("t1");
        state.error("flaky".into());
        state.task_finished(task_result("t1".into(), true, None, Some(1.0)));
        assert!(state.status.running);
        state.task_started("t2");
        state.task_finished(task_result("t2".into(), false, None, None));
        assert_eq!(state.status.phase, phase::FINISHED);
        assert!(!state.status.running);
        assert_eq!(state.progress.current_task, None);
        assert_eq!(state.progress.tasks_completed, 2);
        state.begin(None, 3);
        assert_eq!(state.generation, 2);
        assert!(state.results.is_empty() && state.errors.is_empty());
    }
}
