//! The life of runs: creation, the queue under the concurrency limit, cancel, and what a restart
//! finds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::clock::now_rfc3339;
use super::generator::{self, GeneratorConfig, Outcome, RunContext};
use super::recorder::{Recorder, Stopped};
use super::requests::RequestTracker;
use super::store::{RunRow, Store, StoreError};
use crate::api::{MODELS_JOB, RunStatus, RunSummary};
use crate::rng::SplitMix64;

/// What `cancel` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run was queued or running; it is being cancelled.
    Cancelling,
    /// The run had already finished.
    AlreadyFinished,
    /// No such run.
    Unknown,
}

/// Starts, queues and cancels runs.
#[derive(Debug, Clone)]
pub struct Runs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    recorder: Recorder,
    store: Store,
    generator: GeneratorConfig,
    slots: Arc<Semaphore>,
    /// Runs not finished yet, with the token that cancels each.
    live: Mutex<HashMap<String, CancellationToken>>,
    next_ord: AtomicI64,
    ids: Mutex<SplitMix64>,
    shutdown: CancellationToken,
    requests: RequestTracker,
}

impl Runs {
    /// A run manager that lets `concurrency` runs generate at once.
    pub fn new(
        recorder: Recorder,
        store: Store,
        generator: GeneratorConfig,
        concurrency: usize,
        last_ord: i64,
        shutdown: CancellationToken,
        requests: RequestTracker,
    ) -> Self {
        let ids = generator
            .seed
            .map_or_else(SplitMix64::from_entropy, |seed| {
                // Run ids continue from the stored count, so a restart does not repeat them.
                SplitMix64::new(seed ^ u64::try_from(last_ord).unwrap_or(0).rotate_left(17))
            });
        Self {
            inner: Arc::new(Inner {
                recorder,
                store,
                generator,
                slots: Arc::new(Semaphore::new(concurrency.max(1))),
                live: Mutex::new(HashMap::new()),
                next_ord: AtomicI64::new(last_ord + 1),
                ids: Mutex::new(ids),
                shutdown,
                requests,
            }),
        }
    }

    /// Creates a queued run and schedules it. Returns its summary.
    pub async fn create(&self, task: String, params: Value) -> Result<RunSummary, Stopped> {
        let ord = self.inner.next_ord.fetch_add(1, Ordering::SeqCst);
        let (run_id, seed) = {
            let mut ids = self
                .inner
                .ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (format!("run-{:012x}", ids.next_u64() >> 16), ids.next_u64())
        };
        let summary = RunSummary {
            created_at: Some(now_rfc3339()),
            ..RunSummary::new(run_id.clone(), task, RunStatus::Queued)
        };
        let row = RunRow {
            summary: summary.clone(),
            ord,
            params: params.to_string(),
        };
        self.inner.recorder.created(row.clone()).await?;
        // Answer only once the run is stored, so a GET right after the POST finds it.
        self.inner.recorder.flush().await?;
        self.schedule(row, seed);
        Ok(summary)
    }

    /// Cancels a queued or running run.
    pub async fn cancel(&self, run_id: &str) -> Result<CancelOutcome, StoreError> {
        let token = self
            .inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(run_id)
            .cloned();
        if let Some(token) = token {
            token.cancel();
            return Ok(CancelOutcome::Cancelling);
        }
        Ok(match self.inner.store.run(run_id).await? {
            Some(_) => CancelOutcome::AlreadyFinished,
            None => CancelOutcome::Unknown,
        })
    }

    /// After a restart: runs that were running are failed (their work is lost), and queued runs
    /// are queued again in their original order.
    pub async fn recover(&self) -> Result<(), StoreError> {
        for run in self
            .inner
            .store
            .runs_with_status(RunStatus::Running)
            .await?
        {
            let run_id = &run.summary.run_id;
            let message = "interrupted by server restart";
            let recorded = async {
                self.inner
                    .recorder
                    .event(
                        run_id,
                        "error",
                        json!({"message": message, "code": "interrupted"}),
                        now_rfc3339(),
                    )
                    .await?;
                self.end(run_id, RunStatus::Failed, Some(message)).await
            };
            if recorded.await.is_err() {
                return Ok(());
            }
        }
        // The server must not answer before the recovery is stored.
        if self.inner.recorder.flush().await.is_err() {
            return Ok(());
        }
        for run in self.inner.store.runs_with_status(RunStatus::Queued).await? {
            let seed = self
                .inner
                .ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .next_u64();
            self.schedule(run, seed);
        }
        Ok(())
    }

    fn schedule(&self, run: RunRow, seed: u64) {
        let cancel = CancellationToken::new();
        self.inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run.summary.run_id.clone(), cancel.clone());
        let runs = self.clone();
        tokio::spawn(async move {
            let run_id = run.summary.run_id.clone();
            let _ = runs.drive(run, seed, cancel).await;
            runs.inner
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&run_id);
        });
    }

    /// Waits for a slot, generates, and records how the run ended.
    async fn drive(
        &self,
        run: RunRow,
        seed: u64,
        cancel: CancellationToken,
    ) -> Result<(), Stopped> {
        let run_id = run.summary.run_id.clone();
        let slot = tokio::select! {
            slot = Arc::clone(&self.inner.slots).acquire_owned() => slot.map_err(|_| Stopped)?,
            () = cancel.cancelled() => {
                return self.end(&run_id, RunStatus::Cancelled, Some("cancelled while queued")).await;
            }
            () = self.inner.shutdown.cancelled() => return Err(Stopped),
        };
        self.inner
            .recorder
            .event(
                &run_id,
                "status",
                json!({"status": "running", "message": "started"}),
                now_rfc3339(),
            )
            .await?;
        let context = RunContext {
            run_id: run_id.clone(),
            task: run.summary.task.clone(),
            params: serde_json::from_str(&run.params).unwrap_or(Value::Null),
            recorder: self.inner.recorder.clone(),
            cancel,
            shutdown: self.inner.shutdown.clone(),
            seed,
            requests: self.inner.requests.clone(),
        };
        let job = context.params.get("job").and_then(Value::as_str);
        let outcome = if job == Some(MODELS_JOB) {
            generator::list_models(&self.inner.generator, &context).await
        } else {
            generator::run(&self.inner.generator, &context).await
        };
        drop(slot);
        match outcome {
            Outcome::Completed => self.end(&run_id, RunStatus::Completed, None).await,
            Outcome::Cancelled => {
                self.end(&run_id, RunStatus::Cancelled, Some("cancelled by request"))
                    .await
            }
            Outcome::Failed(message) => {
                self.inner
                    .recorder
                    .event(
                        &run_id,
                        "error",
                        json!({"message": message, "code": "generation_failed"}),
                        now_rfc3339(),
                    )
                    .await?;
                self.end(&run_id, RunStatus::Failed, Some(&message)).await
            }
            Outcome::Interrupted => Err(Stopped),
        }
    }

    /// Records the final `status` and `stream_end` of a run.
    async fn end(
        &self,
        run_id: &str,
        status: RunStatus,
        message: Option<&str>,
    ) -> Result<(), Stopped> {
        let mut data = json!({"status": status});
        if let Some(message) = message {
            data["message"] = json!(message);
        }
        let recorder = &self.inner.recorder;
        recorder
            .event(run_id, "status", data, now_rfc3339())
            .await?;
        recorder
            .event(
                run_id,
                "stream_end",
                json!({"status": status}),
                now_rfc3339(),
            )
            .await
    }
}
