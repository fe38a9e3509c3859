//! The fleet over the last minute, as this server records it: calls answered and failed a
//! second, goodput against `--slo` per model and for the fleet, and per worker its tok/s now
//! and its median time to first token. Observed as the recorder takes each event (through
//! [`crate::observe::telemetry::Telemetry`]), on the server's clock; what lives in the store (each
//! worker's totals) is read from there by `GET /api/workers`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use runboard_api::{FleetFigures, Goodput, ModelGoodput, RunEvent, RunStatus, Slo, Step};
use tokio::time::Instant;

/// What the fleet's figures take of a [`Step`], read from its payload in place: every call's
/// step passes here, and decoding it whole would copy its text.
struct Answered<'a> {
    model: &'a str,
    ttft_ms: Option<f64>,
    tpot_ms: Option<f64>,
    itl_p50_ms: Option<f64>,
}

impl<'a> Answered<'a> {
    fn read(payload: &'a serde_json::Value) -> Self {
        let number = |key: &str| payload.get(key).and_then(serde_json::Value::as_f64);
        Self {
            model: payload
                .get("model")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default(),
            ttft_ms: number("ttft_ms"),
            tpot_ms: number("tpot_ms"),
            itl_p50_ms: number("itl_p50_ms"),
        }
    }
}

/// How far back the fleet's figures look.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How far back a worker's tok/s looks: long enough to span the gap between two calls'
/// updates, short enough to read as "now".
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The most time-to-first-token samples kept per worker (its newest).
const TTFT_SAMPLES: usize = 256;

/// A worker's live figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkerNow {
    /// Tokens a second over the last few seconds.
    pub tok_per_sec: f64,
    /// Median time to first token of its calls in the last minute.
    pub ttft_p50_ms: Option<f64>,
}

/// The window; one per server, shared.
#[derive(Debug, Default)]
pub struct FleetWindow {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    slo: Option<Slo>,
    started: Option<Instant>,
    /// Runs in flight: who made them, what model, tokens seen.
    runs: HashMap<String, RunInfo>,
    workers: HashMap<String, WorkerWindow>,
    /// One entry per second that saw a call end, oldest first.
    seconds: VecDeque<Second>,
}

#[derive(Debug, Default)]
struct RunInfo {
    worker: Option<String>,
    model: Option<String>,
    tokens: u64,
}

#[derive(Debug, Default)]
struct WorkerWindow {
    tokens: VecDeque<(Instant, u64)>,
    ttft_ms: VecDeque<(Instant, f64)>,
}

#[derive(Debug)]
struct Second {
    at: Instant,
    answered: u64,
    failed: u64,
    met: u64,
    /// Per model: calls, met.
    models: HashMap<String, (u64, u64)>,
}

impl FleetWindow {
    /// Sets the objective calls are judged by (`serve --slo`).
    pub fn set_slo(&self, slo: Option<Slo>) {
        self.state().slo = slo;
    }

    /// The model a run's calls ask for.
    pub fn run_model(&self, run_id: &str, model: &str) {
        let mut state = self.state();
        state.runs.entry(run_id.to_owned()).or_default().model = Some(model.to_owned());
    }

    /// The worker that made a run (its `run_created` goes to the writer without passing
    /// [`Self::observe`]).
    pub fn run_worker(&self, run_id: &str, worker: &str) {
        let mut state = self.state();
        state.runs.entry(run_id.to_owned()).or_default().worker = Some(worker.to_owned());
    }

    /// Observes an event as it is recorded.
    pub fn observe(&self, run_id: &str, event: &RunEvent, now: Instant) {
        let mut state = self.state();
        state.started.get_or_insert(now);
        match event {
            RunEvent::RunCreated(summary) => {
                state
                    .runs
                    .entry(run_id.to_owned())
                    .or_default()
                    .worker
                    .clone_from(&summary.worker);
            }
            RunEvent::NodeUpdate(update) => {
                if let Some(tokens) = update.tokens_out {
                    state.progress(run_id, tokens, now);
                }
            }
            RunEvent::Data(data) if data.action == Step::ACTION => {
                state.call(run_id, &Answered::read(&data.payload), now);
            }
            RunEvent::Status(change) if change.status.is_finished() => {
                if change.status == RunStatus::Failed {
                    state.failure(run_id, now);
                }
                state.runs.remove(run_id);
            }
            RunEvent::StreamEnd(_) => {
                state.runs.remove(run_id);
            }
            _ => {}
        }
    }

    /// A run this server no longer drives (another instance took it over): its end will not
    /// be observed here, so it is let go now.
    pub fn forget_run(&self, run_id: &str) {
        self.state().runs.remove(run_id);
    }

    /// The fleet's figures now.
    pub fn figures(&self, now: Instant) -> FleetFigures {
        let mut state = self.state();
        state.forget_before(now);
        let span = state
            .started
            .map_or(WINDOW, |started| now.duration_since(started).min(WINDOW))
            .as_secs_f64()
            .max(1.0);
        let answered: u64 = state.seconds.iter().map(|s| s.answered).sum();
        let failed: u64 = state.seconds.iter().map(|s| s.failed).sum();
        #[allow(clippy::cast_precision_loss)] // Call counts far below 2^52.
        let (calls_per_sec, failures_per_min) =
            (answered as f64 / span, failed as f64 * 60.0 / span);
        let goodput = state.slo.map(|slo| {
            let mut models: HashMap<&str, (u64, u64)> = HashMap::new();
            for second in &state.seconds {
                for (model, (calls, met)) in &second.models {
                    let entry = models.entry(model.as_str()).or_default();
                    entry.0 += calls;
                    entry.1 += met;
                }
            }
            let mut models: Vec<ModelGoodput> = models
                .into_iter()
                .map(|(model, (calls, met))| ModelGoodput {
                    model: model.to_owned(),
                    calls,
                    met,
                })
                .collect();
            models.sort_by(|a, b| a.model.cmp(&b.model));
            Goodput {
                slo,
                calls: answered + failed,
                met: state.seconds.iter().map(|s| s.met).sum(),
                models,
            }
        });
        FleetFigures {
            calls_per_sec,
            failures_per_min,
            goodput,
        }
    }

    /// Each worker's live figures, for those seen in the last minute.
    pub fn workers(&self, now: Instant) -> HashMap<String, WorkerNow> {
        let mut state = self.state();
        state.forget_before(now);
        state
            .workers
            .iter()
            .map(|(name, window)| (name.clone(), window.now(now)))
            .collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn progress(&mut self, run_id: &str, tokens: u64, now: Instant) {
        let Some(run) = self.runs.get_mut(run_id) else {
            return;
        };
        let added = tokens.saturating_sub(run.tokens);
        run.tokens = run.tokens.max(tokens);
        if let (Some(worker), true) = (&run.worker, added > 0) {
            let window = self.workers.entry(worker.clone()).or_default();
            window.tokens.push_back((now, added));
        }
    }

    fn call(&mut self, run_id: &str, answered: &Answered, now: Instant) {
        let ttft = answered.ttft_ms;
        let itl = answered.tpot_ms.or(answered.itl_p50_ms);
        let model = Some(answered.model)
            .filter(|model| !model.is_empty())
            .map(str::to_owned)
            .or_else(|| self.runs.get(run_id).and_then(|run| run.model.clone()));
        let met = self.slo.is_some_and(|slo| slo.met(ttft, itl));
        let second = self.second(now);
        second.answered += 1;
        second.met += u64::from(met);
        if let Some(model) = model {
            let entry = second.models.entry(model).or_default();
            entry.0 += 1;
            entry.1 += u64::from(met);
        }
        if let (Some(ttft), Some(worker)) = (
            ttft,
            self.runs.get(run_id).and_then(|run| run.worker.clone()),
        ) {
            let window = self.workers.entry(worker).or_default();
            window.ttft_ms.push_back((now, ttft));
            if window.ttft_ms.len() > TTFT_SAMPLES {
                window.ttft_ms.pop_front();
            }
        }
    }

    fn failure(&mut self, run_id: &str, now: Instant) {
        let model = self.runs.get(run_id).and_then(|run| run.model.clone());
        let second = self.second(now);
        second.failed += 1;
        if let Some(model) = model {
            second.models.entry(model).or_default().0 += 1;
        }
    }

    /// The entry of the second `now` falls in.
    fn second(&mut self, now: Instant) -> &mut Second {
        let fresh = self
            .seconds
            .back()
            .is_none_or(|last| now.duration_since(last.at) >= Duration::from_secs(1));
        if fresh {
            self.forget_before(now);
            self.seconds.push_back(Second {
                at: now,
                answered: 0,
                failed: 0,
                met: 0,
                models: HashMap::new(),
            });
        }
        self.seconds.back_mut().expect("pushed above")
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .seconds
            .front()
            .is_some_and(|s| now.duration_since(s.at) > WINDOW)
        {
            self.seconds.pop_front();
        }
        self.workers.retain(|_, window| {
            while window
                .tokens
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
            {
                window.tokens.pop_front();
            }
            while window
                .ttft_ms
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
            {
                window.ttft_ms.pop_front();
            }
            !(window.tokens.is_empty() && window.ttft_ms.is_empty())
        });
    }
}

impl WorkerWindow {
    fn now(&self, _now: Instant) -> WorkerNow {
        let tokens: u64 = self.tokens.iter().map(|(_, added)| added).sum();
        let mut ttft: Vec<f64> = self.ttft_ms.iter().map(|(_, ms)| *ms).collect();
        ttft.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss)] // Token counts far below 2^52.
        WorkerNow {
            tok_per_sec: tokens as f64 / RATE_WINDOW.as_secs_f64(),
            ttft_p50_ms: (!ttft.is_empty()).then(|| ttft[ttft.len() / 2]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runboard_api::DataAction;
    use runboard_api::{NodeUpdate, RunSummary, StepFigures};

    fn created(run: &str, worker: &str) -> RunEvent {
        RunEvent::RunCreated(RunSummary {
            worker: Some(worker.into()),
            ..RunSummary::new(run, "t", RunStatus::Queued)
        })
    }

    fn tokens(run: &str, n: u64) -> RunEvent {
        RunEvent::NodeUpdate(NodeUpdate {
            run_id: run.into(),
            tokens_out: Some(n),
            ..NodeUpdate::default()
        })
    }

    fn status(status: RunStatus) -> RunEvent {
        RunEvent::status(status, None)
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_judged_by_the_objective_per_model_and_per_worker() {
        let fleet = FleetWindow::default();
        fleet.set_slo(Some(Slo::parse("ttft=500ms,itl=50ms").unwrap()));
        let t0 = Instant::now();
        for (n, (ttft, tpot)) in [(100.0, 20.0), (900.0, 20.0), (200.0, 80.0)]
            .iter()
            .enumerate()
        {
            let run = format!("r{n}");
            fleet.run_model(&run, "small");
            fleet.observe(&run, &created(&run, "gen-01"), t0);
            fleet.observe(&run, &tokens(&run, 10), t0);
            let step = Step {
                model: "small".into(),
                figures: StepFigures {
                    ttft_ms: Some(*ttft),
                    tpot_ms: Some(*tpot),
                    ..StepFigures::default()
                },
                ..Step::default()
            };
            fleet.observe(&run, &RunEvent::data(DataAction::Step(Box::new(step))), t0);
            fleet.observe(&run, &status(RunStatus::Completed), t0);
        }
        fleet.run_model("r9", "big");
        fleet.observe("r9", &created("r9", "gen-02"), t0);
        fleet.observe("r9", &status(RunStatus::Failed), t0);
        let workers = fleet.workers(t0 + Duration::from_secs(1));
        let gen01 = workers["gen-01"];
        assert!((gen01.tok_per_sec - 30.0 / 5.0).abs() < 1e-9, "{gen01:?}");
        assert_eq!(gen01.ttft_p50_ms, Some(200.0));
        assert!(
            !workers.contains_key("gen-02"),
            "no token, no time to first token"
        );
        let figures = fleet.figures(t0 + Duration::from_secs(30));
        assert!((figures.calls_per_sec - 3.0 / 30.0).abs() < 1e-9);
        assert!((figures.failures_per_min - 2.0).abs() < 1e-9);
        let goodput = figures.goodput.unwrap();
        assert_eq!((goodput.calls, goodput.met), (4, 1));
        let models: Vec<(&str, u64, u64)> = goodput
            .models
            .iter()
            .map(|m| (m.model.as_str(), m.calls, m.met))
            .collect();
        assert_eq!(models, [("big", 1, 0), ("small", 3, 1)]);
        // A minute later the window is empty, and so are its figures.
        let later = fleet.figures(t0 + Duration::from_secs(61));
        assert_eq!(later.goodput.unwrap().calls, 0);
        assert!(fleet.workers(t0 + Duration::from_secs(61)).is_empty());
    }
}
