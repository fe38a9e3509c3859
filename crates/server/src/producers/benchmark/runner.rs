//! Benchmarks this server runs (`POST /api/benchmarks`): N tasks, one run each, one after
//! another through the generator; each ends in success or failure and a score.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use web_time::Instant;

use super::BenchmarkBoard;
use crate::events::hub::Hub;
use crate::producers::rng::SplitMix64;
use crate::producers::runs::Runs;
use crate::store::Store;
use runboard_api::{BenchmarkStarted, CreateBenchmark, RunStatus, TaskComplete, phase};

/// The kinds of task a synthetic benchmark cycles through, for readable task ids.
const TASK_KINDS: [&str; 8] = [
    "summarize",
    "translate",
    "extract",
    "classify",
    "reason",
    "code",
    "plan",
    "critique",
];

/// Why a benchmark could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// One is running.
    #[error("a benchmark is already running; wait for it to finish")]
    Busy,
    /// The server follows a log file instead.
    #[error("this server follows a benchmark log (--benchmark-log) and does not run benchmarks")]
    WatchingLog,
}

/// Starts benchmarks on this server's generator.
#[derive(Debug, Clone)]
pub struct BenchmarkRunner {
    /// Where progress goes.
    pub board: BenchmarkBoard,
    /// Runs each task.
    pub runs: Runs,
    /// Reads how a run ended.
    pub store: Store,
    /// Shows each run's steps.
    pub hub: Hub,
    /// Stops the benchmark with the server.
    pub shutdown: CancellationToken,
    /// Scores; seeded when the generator is.
    pub rng: Arc<Mutex<SplitMix64>>,
}

impl BenchmarkRunner {
    /// Starts a benchmark; it runs in the background. Its runs are launched by `started_by`
    /// (the named token that asked), as their summaries say.
    pub fn start(
        &self,
        request: &CreateBenchmark,
        started_by: Option<String>,
    ) -> Result<BenchmarkStarted, StartError> {
        if self.board.watches_log() {
            return Err(StartError::WatchingLog);
        }
        let name = request
            .name
            .clone()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| format!("synthetic-{}", request.tasks));
        let mut busy = false;
        self.board.update(|state| {
            if state.status.running {
                busy = true;
            } else {
                state.begin(Some(name.clone()), request.tasks);
            }
        });
        if busy {
            return Err(StartError::Busy);
        }
        let runner = self.clone();
        let params = request.params.clone();
        let name_for_task = name.clone();
        let tasks = request.tasks;
        tokio::spawn(async move {
            let ended = runner
                .run_tasks(&name_for_task, tasks, &params, started_by.as_deref())
                .await;
            runner.board.update(|state| state.end(ended));
        });
        Ok(BenchmarkStarted {
            name,
            total_tasks: request.tasks,
        })
    }

    /// Runs every task; returns the phase the benchmark ends in.
    async fn run_tasks(
        &self,
        name: &str,
        tasks: u64,
        params: &Value,
        started_by: Option<&str>,
    ) -> &'static str {
        for index in 1..=tasks {
            let kind = TASK_KINDS[usize::try_from(index - 1).unwrap_or(0) % TASK_KINDS.len()];
            let task_id = format!("task_{index:03}_{kind}");
            match self.run_task(name, &task_id, params, started_by).await {
                Ok(result) => self.board.update(|state| state.task_finished(result)),
                Err(message) => {
                    self.board.update(|state| state.error(message));
                    return phase::STOPPED;
                }
            }
        }
        phase::FINISHED
    }

    async fn run_task(
        &self,
        name: &str,
        task_id: &str,
        params: &Value,
        started_by: Option<&str>,
    ) -> Result<TaskComplete, String> {
        // Listen before the run exists, so none of its steps or its end is missed.
        let mut events = self.hub.subscribe();
        let started = Instant::now();
        let task = format!("Benchmark {name}: {task_id}");
        let summary = self
            .runs
            .create(task, params.clone(), started_by.map(str::to_owned))
            .await
            .map_err(|error| format!("{task_id}: its run could not be created: {error}"))?;
        let run_id = summary.run_id;
        self.board.update(|state| state.task_started(task_id));
        loop {
            let received = tokio::select! {
                received = events.recv() => received,
                () = self.shutdown.cancelled() => return Err("the server is shutting down".into()),
            };
            match received {
                Ok(event) if event.run_id != run_id => {}
                Ok(event) if event.is_node_update => self.board.update(|state| {
                    let step = state.progress.current_step.unwrap_or(0) + 1;
                    state.progress.current_step = Some(step);
                }),
                Ok(event) if event.is_stream_end => break,
                Ok(_) => {}
                // Steps were missed, not the end: only the store knows whether it came.
                Err(RecvError::Lagged(_)) => {
                    if self.finished(&run_id).await.is_some() {
                        break;
                    }
                }
                Err(RecvError::Closed) => return Err("the server is shutting down".into()),
            }
        }
        let status = self
            .finished(&run_id)
            .await
            .ok_or_else(|| format!("{task_id}: its run {run_id} ended but was not stored"))?;
        let success = status == RunStatus::Completed;
        let score = if success {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            (rng.range_f64(0.55, 1.0) * 100.0).round() / 100.0
        } else {
            0.0
        };
        Ok(TaskComplete {
            task_id: task_id.to_owned(),
            success,
            score,
            duration_secs: Some(started.elapsed().as_secs_f64()),
            run_id: Some(run_id),
        })
    }

    /// The run's final status, once it has one.
    async fn finished(&self, run_id: &str) -> Option<RunStatus> {
        let run = self.store.run(run_id).await.ok().flatten()?;
        run.summary
            .status
            .is_finished()
            .then_some(run.summary.status)
    }
}
