//! Proxied calls as runs. A call without `X-Runboard-Run` is a run of its own, ended with its
//! answer. Calls that share one `X-Runboard-Run` value are the steps of one run: it ends when a
//! call says `X-Runboard-Run-End: true`, or when it has been idle (no call in flight) for
//! `--proxy-run-idle-secs`; a client that disconnects mid-answer ends it cancelled at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::producers::run_context::{Outcome, RunContext};
use crate::producers::runs::{CreateError, Runs};
use crate::producers::upstream::meter::{RunTotals, StepFigures};
use runboard_api::clock::now_rfc3339;
use runboard_api::{DataAction, RunEvent};

/// How a call ended, for its run.
#[derive(Debug, Clone)]
pub enum CallEnd {
    /// Answered; its figures, and whether the upstream ended it without a finish reason.
    Answered {
        /// The call's measurements.
        figures: StepFigures,
        /// `[DONE]` came without a finish reason.
        interrupted: bool,
    },
    /// The upstream failed it (the client got the upstream's own answer); the message.
    Failed(String),
    /// The client went away, or the run was cancelled.
    Cancelled(String),
    /// The server is shutting down.
    Interrupted,
}

/// One run made of proxied calls.
#[derive(Debug)]
pub struct ProxyRun {
    /// The run.
    pub ctx: RunContext,
    key: Option<String>,
    tally: Mutex<Tally>,
}

#[derive(Debug)]
struct Tally {
    calls: u64,
    in_flight: usize,
    idle_since: Instant,
    /// Output tokens of the calls that ended.
    tokens_done: u64,
    totals: RunTotals,
    last_failure: Option<String>,
    /// Why a call of the run was cancelled (its client left, or a cancel), when one was.
    cancelled: Option<String>,
    /// A call said `X-Runboard-Run-End: true`.
    end_asked: bool,
    ended: bool,
}

impl Tally {
    /// Why the run fails: its last call failed, or its calls were interrupted and produced
    /// nothing. `None` completes it.
    fn final_failure(&self) -> Option<String> {
        self.last_failure
            .clone()
            .or_else(|| self.totals.empty_failure(self.tokens_done))
    }
}

impl ProxyRun {
    /// Output tokens of the calls that ended, the base of a new call's running count.
    pub fn tokens_done(&self) -> u64 {
        self.tally().tokens_done
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The runs of proxied calls, by their `X-Runboard-Run` value.
#[derive(Debug, Clone)]
pub struct Sessions {
    inner: Arc<SessionsInner>,
}

#[derive(Debug)]
struct SessionsInner {
    runs: Runs,
    idle: Duration,
    /// Held across a run's creation, so two first calls with one key make one run.
    open: tokio::sync::Mutex<HashMap<String, Arc<ProxyRun>>>,
}

impl Sessions {
    /// Sessions whose runs end after `idle` without calls; checked until `shutdown`.
    pub fn start(runs: Runs, idle: Duration, shutdown: CancellationToken) -> Self {
        let sessions = Self {
            inner: Arc::new(SessionsInner {
                runs,
                idle,
                open: tokio::sync::Mutex::new(HashMap::new()),
            }),
        };
        let reaper = sessions.clone();
        let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticks.tick() => reaper.end_idle().await,
                }
            }
        });
        sessions
    }

    /// The runs the calls become.
    pub fn runs(&self) -> &Runs {
        &self.inner.runs
    }

    /// The run a call belongs to, made when it is the first; and the call's number in it.
    pub async fn begin(
        &self,
        key: Option<&str>,
        task: &str,
        params: Value,
    ) -> Result<(Arc<ProxyRun>, u64), CreateError> {
        let Some(key) = key else {
            let run = self.adopt(None, task, params).await?;
            return Ok((run, 1));
        };
        let mut open = self.inner.open.lock().await;
        if let Some(run) = open.get(key) {
            let mut tally = run.tally();
            if !tally.ended && !run.ctx.cancel.is_cancelled() {
                tally.calls += 1;
                tally.in_flight += 1;
                let call = tally.calls;
                drop(tally);
                return Ok((Arc::clone(run), call));
            }
        }
        let run = self.adopt(Some(key), task, params).await?;
        open.insert(key.to_owned(), Arc::clone(&run));
        Ok((run, 1))
    }

    async fn adopt(
        &self,
        key: Option<&str>,
        task: &str,
        params: Value,
    ) -> Result<Arc<ProxyRun>, CreateError> {
        let ctx = self.inner.runs.adopt(task.to_owned(), params).await?;
        Ok(Arc::new(ProxyRun {
            ctx,
            key: key.map(str::to_owned),
            tally: Mutex::new(Tally {
                calls: 1,
                in_flight: 1,
                idle_since: Instant::now(),
                tokens_done: 0,
                totals: RunTotals::default(),
                last_failure: None,
                cancelled: None,
                end_asked: false,
                ended: false,
            }),
        }))
    }

    /// Records how a call ended and ends its run when that is due: a call of its own, the
    /// run's last call (`ends_run`), a cancellation, or a failure of a call of its own.
    pub async fn end_call(&self, run: &Arc<ProxyRun>, end: CallEnd, ends_run: bool) {
        let outcome = {
            let mut tally = run.tally();
            tally.in_flight = tally.in_flight.saturating_sub(1);
            tally.idle_since = Instant::now();
            match &end {
                CallEnd::Answered {
                    figures,
                    interrupted,
                } => {
                    tally.tokens_done += figures.output_tokens;
                    tally.totals.add(figures, *interrupted);
                    tally.last_failure = None;
                }
                CallEnd::Failed(message) => tally.last_failure = Some(message.clone()),
                CallEnd::Cancelled(reason) => {
                    tally.cancelled.get_or_insert_with(|| reason.clone());
                }
                CallEnd::Interrupted => {}
            }
            tally.end_asked |= ends_run;
            // A failed step of a longer run is not its end: pipelines retry and go on. A
            // cancelled one is, and so is the call that says it is the last, once the run's
            // other calls in flight (parallel steps) are answered: their clients still get
            // their answers, recorded in the run.
            let closing = tally.end_asked || tally.cancelled.is_some();
            let due = run.key.is_none()
                || (closing && tally.in_flight == 0)
                || matches!(end, CallEnd::Interrupted);
            if !due || tally.ended {
                return;
            }
            tally.ended = true;
            match (end, tally.cancelled.clone()) {
                (CallEnd::Interrupted, _) => None,
                (_, Some(reason)) => Some(Err(reason)),
                _ => Some(Ok(tally.final_failure())),
            }
        };
        self.close(run, outcome).await;
    }

    /// Ends the runs that have been idle long enough, or were cancelled while idle.
    async fn end_idle(&self) {
        let due: Vec<Arc<ProxyRun>> = {
            let mut open = self.inner.open.lock().await;
            let idle = self.inner.idle;
            let mut due = Vec::new();
            open.retain(|_, run| {
                let mut tally = run.tally();
                let expired = tally.in_flight == 0
                    && (tally.idle_since.elapsed() >= idle || run.ctx.cancel.is_cancelled());
                if tally.ended {
                    return false;
                }
                if expired {
                    tally.ended = true;
                    due.push(Arc::clone(run));
                }
                !expired
            });
            due
        };
        for run in due {
            let outcome = if run.ctx.cancel.is_cancelled() {
                Err("cancelled by request".to_owned())
            } else {
                Ok(run.tally().final_failure())
            };
            self.close(&run, Some(outcome)).await;
        }
    }

    /// Writes the run's sums and its end: `None` leaves it running for the next start to
    /// fail (shutdown); `Err` is a cancellation; `Ok` completes it, or fails it with the
    /// message of its last call when that call failed.
    async fn close(&self, run: &Arc<ProxyRun>, outcome: Option<Result<Option<String>, String>>) {
        let ctx = &run.ctx;
        if let Some(key) = &run.key {
            let mut open = self.inner.open.lock().await;
            if open.get(key).is_some_and(|known| Arc::ptr_eq(known, run)) {
                open.remove(key);
            }
        }
        let Some(outcome) = outcome else {
            self.inner
                .runs
                .release(&ctx.run_id, Outcome::Interrupted)
                .await;
            return;
        };
        let (figures, calls, tokens, interrupted) = {
            let tally = run.tally();
            (
                tally.totals.figures(tally.tokens_done),
                tally.calls,
                tally.tokens_done,
                tally.totals.interrupted_note(),
            )
        };
        let record = |event: RunEvent| ctx.recorder.event(&ctx.run_id, event, now_rfc3339());
        let _ = record(RunEvent::data(DataAction::RunMetrics(figures))).await;
        let outcome = match outcome {
            Err(reason) => {
                let text = format!("Cancelled after {calls} call(s), {tokens} tokens: {reason}");
                let _ = record(RunEvent::narration("warn", "run_cancelled", text)).await;
                Outcome::Cancelled
            }
            Ok(Some(message)) => Outcome::Failed(message),
            Ok(None) => {
                let text = format!("Done: {tokens} tokens in {calls} call(s){interrupted}");
                let _ = record(RunEvent::narration("info", "run_done", text)).await;
                Outcome::Completed
            }
        };
        self.inner.runs.release(&ctx.run_id, outcome).await;
    }
}

/// A proxied run's parameters, as `GET /api/runs/{id}` shows them.
pub fn run_params(
    model: &str,
    endpoint: &str,
    key: Option<&str>,
    agent: &str,
    worker: &str,
) -> Value {
    json!({
        "source": "proxy",
        "model": model,
        "endpoint": endpoint,
        "client_run": key,
        "agent": agent,
        "worker": worker,
    })
}
