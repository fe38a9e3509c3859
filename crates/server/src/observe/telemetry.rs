//! runboard's own `GET /metrics`, so it can be scraped beside the model servers: runs by status,
//! events stored and delivered, subscribers, tokens, and per model the `OpenTelemetry` `GenAI`
//! histograms (time to first token, time per output token, token usage) and tok/s.
//!
//! Figures are observed as events are recorded, on the server's clock; the counts that live in
//! the store (runs by status) are read when scraped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use runboard_api::{RunEvent, RunStatus};
use tokio::time::Instant;

use crate::observe::fleet::FleetWindow;
use crate::observe::otlp::{ExportCounters, Otlp};
use crate::store::retention::RetentionMetrics;

/// The content type of the page (the `OpenMetrics` text format, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label set: name and value pairs.
type Labels = Vec<(String, String)>;

/// What a run is followed for.
#[derive(Debug)]
struct RunTrack {
    model: String,
    started: Option<Instant>,
    first_token: Option<Instant>,
    last: Option<(Instant, u64)>,
}

/// The server's metrics; cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    fleet: FleetWindow,
    registry: Registry,
    runs: Family<Labels, Gauge>,
    generating: Gauge,
    events_stored: Counter,
    stored_head: AtomicI64,
    events_delivered: Counter,
    subscribers: Gauge,
    lag: StoreLag,
    retention: RetentionMetrics,
    tokens: Family<Labels, Counter>,
    time_to_first_token: Family<Labels, Histogram, fn() -> Histogram>,
    time_per_output_token: Family<Labels, Histogram, fn() -> Histogram>,
    token_usage: Family<Labels, Histogram, fn() -> Histogram>,
    tokens_per_second: Family<Labels, Histogram, fn() -> Histogram>,
    outcomes: Outcomes,
    tracks: Mutex<HashMap<String, RunTrack>>,
    /// Where runs go as traces and the `GenAI` metrics over OTLP (`--otlp-endpoint`).
    otlp: OnceLock<Otlp>,
    export: ExportCounters,
}

/// A running run that has produced no token for this long counts as stalled
/// (`runboard_runs_stalled`).
pub const STALL_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

/// Seconds from 10 ms to about 80 s, for time to first token.
fn first_token_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// Seconds from 1 ms to about 2 s, for the time between tokens.
fn per_token_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 12))
}

/// Tokens from 16 to about 260 000, for a run's output.
fn usage_buckets() -> Histogram {
    Histogram::new(exponential_buckets(16.0, 2.0, 15))
}

/// Tokens per second from 1 to about 16 000.
fn rate_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

fn model_labels(model: &str) -> Labels {
    vec![("gen_ai_request_model".to_owned(), model.to_owned())]
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// How far the store is behind, and what that cost: the writer's backlog, the mid-answer
/// updates left out and the proxied calls refused meanwhile.
struct StoreLag {
    backlog: Gauge,
    updates_skipped: Counter,
    calls_refused: Counter,
}

impl StoreLag {
    fn register(registry: &mut Registry) -> Self {
        let backlog = register(
            registry,
            "runboard_recorder_backlog",
            "Events handed to the writer and not yet taken into a transaction: how far the \
                 store is behind",
            Gauge::default(),
        );
        let updates_skipped = register(
            registry,
            "runboard_updates_skipped",
            "Mid-answer node updates left out while the store was behind (the next update \
                 carries their figures)",
            Counter::default(),
        );
        let calls_refused = register(
            registry,
            "runboard_proxy_calls_refused",
            "Proxied calls refused with 503 while the store was too far behind to record them",
            Counter::default(),
        );
        Self {
            backlog,
            updates_skipped,
            calls_refused,
        }
    }
}

/// What alerts watch: how runs end, runs that stopped producing, and whether the store takes
/// writes (`deploy/prometheus/rules.yml`).
struct Outcomes {
    ended: Family<Labels, Counter>,
    stalled: Gauge,
    store_writable: Gauge,
}

impl Outcomes {
    fn register(registry: &mut Registry) -> Self {
        Self {
            ended: register(
                registry,
                "runboard_runs_ended",
                "Runs that ended since the server started, by how they ended",
                Family::<Labels, Counter>::default(),
            ),
            stalled: register(
                registry,
                "runboard_runs_stalled",
                "Runs running that have produced no output token for 30 s",
                Gauge::default(),
            ),
            store_writable: register(
                registry,
                "runboard_store_writable",
                "1 while the store takes writes; 0 while it cannot (runs are held, new ones \
                 refused)",
                Gauge::default(),
            ),
        }
    }
}

/// Registers `metric` under `name` and gives it back, to keep for updating.
fn register<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Telemetry {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let runs = Family::<Labels, Gauge>::default();
        registry.register("runboard_runs", "Runs in the store by status", runs.clone());
        let generating = register(
            &mut registry,
            "runboard_runs_generating",
            "Runs generating now",
            Gauge::default(),
        );
        let events_stored = register(
            &mut registry,
            "runboard_events_stored",
            "Events stored (the newest event id)",
            Counter::default(),
        );
        let events_delivered = register(
            &mut registry,
            "runboard_events_delivered",
            "Events written to subscribers of the event streams",
            Counter::default(),
        );
        let subscribers = register(
            &mut registry,
            "runboard_subscribers",
            "Event streams open now",
            Gauge::default(),
        );
        let lag = StoreLag::register(&mut registry);
        let retention = RetentionMetrics::register(&mut registry);
        let tokens = register(
            &mut registry,
            "runboard_tokens",
            "Output tokens generated, per model",
            Family::<Labels, Counter>::default(),
        );
        let time_to_first_token: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(first_token_buckets);
        registry.register_with_unit(
            "gen_ai_server_time_to_first_token",
            "Time from a run's start to its first output token",
            Unit::Seconds,
            time_to_first_token.clone(),
        );
        let time_per_output_token: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(per_token_buckets);
        registry.register_with_unit(
            "gen_ai_server_time_per_output_token",
            "Time per output token after the first (inter-token latency)",
            Unit::Seconds,
            time_per_output_token.clone(),
        );
        let token_usage: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(usage_buckets);
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens used per run, by token type",
            token_usage.clone(),
        );
        let tokens_per_second: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(rate_buckets);
        registry.register(
            "runboard_run_output_tokens_per_second",
            "A finished run's output tokens per second, from its first token to its last",
            tokens_per_second.clone(),
        );
        let outcomes = Outcomes::register(&mut registry);
        let export = ExportCounters::register(&mut registry);
        Self {
            inner: Arc::new(Inner {
                fleet: FleetWindow::default(),
                registry,
                runs,
                generating,
                events_stored,
                stored_head: AtomicI64::new(0),
                events_delivered,
                subscribers,
                lag,
                retention,
                tokens,
                time_to_first_token,
                time_per_output_token,
                token_usage,
                tokens_per_second,
                outcomes,
                tracks: Mutex::new(HashMap::new()),
                otlp: OnceLock::new(),
                export,
            }),
        }
    }

    /// New metrics whose fleet window judges calls by `slo` (`serve --slo`).
    pub fn with_slo(slo: Option<runboard_api::Slo>) -> Self {
        let telemetry = Self::new();
        telemetry.inner.fleet.set_slo(slo);
        telemetry
    }

    /// The fleet over the last minute (`GET /api/workers`).
    pub fn fleet(&self) -> &FleetWindow {
        &self.inner.fleet
    }

    /// From now on, runs also go to `otlp` (set once, at start).
    pub(crate) fn export_to(&self, otlp: Otlp) {
        let _ = self.inner.otlp.set(otlp);
    }

    /// What OTLP export counts, for the export task to update.
    pub(crate) fn export_counters(&self) -> ExportCounters {
        self.inner.export.clone()
    }

    /// A run was created, as it is stored.
    pub fn run_created(&self, run: &runboard_api::RunSummary) {
        if let Some(otlp) = self.inner.otlp.get() {
            otlp.run_created(run);
        }
    }

    /// The model a run generates with, for its labels.
    pub fn run_model(&self, run_id: &str, model: &str) {
        if let Some(otlp) = self.inner.otlp.get() {
            otlp.run_model(run_id, model);
        }
        self.inner.fleet.run_model(run_id, model);
        let mut tracks = self.tracks();
        let track = tracks.entry(run_id.to_owned()).or_insert_with(new_track);
        model.clone_into(&mut track.model);
    }

    /// A call of a run failed before its answer was whole (no `step` event describes it): it
    /// goes to OTLP as a span in error and in the `GenAI` metrics with its `error.type`.
    pub fn call_failed(&self, run_id: &str, call: &crate::observe::otlp::FailedCall<'_>) {
        if let Some(otlp) = self.inner.otlp.get() {
            otlp.call_failed(run_id, call);
        }
    }

    /// Another instance took the run over: its end will not be recorded here, so what is
    /// kept for it until then is let go, and its trace ends here as interrupted.
    pub fn run_lost(&self, run_id: &str) {
        self.inner.fleet.forget_run(run_id);
        self.tracks().remove(run_id);
        if let Some(otlp) = self.inner.otlp.get() {
            otlp.run_lost(run_id);
        }
    }

    /// Observes an event as it is recorded.
    pub fn observe(&self, run_id: &str, event: &RunEvent) {
        let now = Instant::now();
        self.inner.fleet.observe(run_id, event, now);
        if let Some(otlp) = self.inner.otlp.get() {
            otlp.observe(run_id, event);
        }
        match event {
            RunEvent::Status(change) if change.status == RunStatus::Running => {
                let mut tracks = self.tracks();
                let track = tracks.entry(run_id.to_owned()).or_insert_with(new_track);
                track.started.get_or_insert(now);
            }
            RunEvent::NodeUpdate(update) => {
                if let Some(tokens) = update.tokens_out {
                    self.progress(run_id, tokens, now);
                }
            }
            RunEvent::Status(change) if change.status.is_finished() => {
                self.inner
                    .outcomes
                    .ended
                    .get_or_create(&vec![(
                        "status".to_owned(),
                        change.status.as_str().to_owned(),
                    )])
                    .inc();
                self.finished(run_id);
            }
            RunEvent::StreamEnd(_) => self.finished(run_id),
            _ => {}
        }
    }

    fn progress(&self, run_id: &str, tokens: u64, now: Instant) {
        let mut tracks = self.tracks();
        let track = tracks.entry(run_id.to_owned()).or_insert_with(new_track);
        let labels = model_labels(&track.model);
        let before = track.last.map_or(0, |(_, tokens)| tokens);
        if tokens > before {
            let added = tokens - before;
            self.inner.tokens.get_or_create(&labels).inc_by(added);
            match track.last {
                Some((at, _)) if track.first_token.is_some() => {
                    #[allow(clippy::cast_precision_loss)] // Token counts far below 2^52.
                    let per_token = now.duration_since(at).as_secs_f64() / added as f64;
                    self.inner
                        .time_per_output_token
                        .get_or_create(&labels)
                        .observe(per_token);
                }
                _ => {
                    track.first_token = Some(now);
                    if let Some(started) = track.started {
                        self.inner
                            .time_to_first_token
                            .get_or_create(&labels)
                            .observe(now.duration_since(started).as_secs_f64());
                    }
                }
            }
            track.last = Some((now, tokens));
        }
    }

    fn finished(&self, run_id: &str) {
        let Some(track) = self.tracks().remove(run_id) else {
            return;
        };
        let Some((last_at, tokens)) = track.last else {
            return;
        };
        let mut labels = model_labels(&track.model);
        labels.push(("gen_ai_token_type".to_owned(), "output".to_owned()));
        #[allow(clippy::cast_precision_loss)] // Token counts far below 2^52.
        let tokens = tokens as f64;
        self.inner
            .token_usage
            .get_or_create(&labels)
            .observe(tokens);
        if let Some(first) = track.first_token {
            let seconds = last_at.duration_since(first).as_secs_f64();
            if seconds > 0.0 {
                self.inner
                    .tokens_per_second
                    .get_or_create(&model_labels(&track.model))
                    .observe(tokens / seconds);
            }
        }
    }

    /// Retention's metrics, for the pruning task to update.
    pub fn retention_metrics(&self) -> RetentionMetrics {
        self.inner.retention.clone()
    }

    /// A mid-answer update was left out because the store was behind.
    pub fn update_skipped(&self) {
        self.inner.lag.updates_skipped.inc();
    }

    /// A proxied call was refused because the store was too far behind.
    pub fn call_refused(&self) {
        self.inner.lag.calls_refused.inc();
    }

    /// How many events wait for the writer now (set when the page is rendered).
    pub fn set_recorder_backlog(&self, backlog: usize) {
        self.inner
            .lag
            .backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
    }

    /// Whether the store takes writes now (set when the page is rendered).
    pub fn set_store_writable(&self, writable: bool) {
        self.inner.outcomes.store_writable.set(i64::from(writable));
    }

    /// An event was written to a subscriber.
    pub fn delivered(&self, events: u64) {
        self.inner.events_delivered.inc_by(events);
    }

    /// The page, with the figures read at scrape time: runs by status, the newest stored event
    /// id and the open streams.
    pub fn render(
        &self,
        runs_by_status: &[(RunStatus, i64)],
        head: i64,
        subscribers: usize,
    ) -> String {
        self.inner.runs.clear();
        for status in RunStatus::ALL {
            let count = runs_by_status
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, count)| *count);
            self.inner
                .runs
                .get_or_create(&vec![("status".to_owned(), status.as_str().to_owned())])
                .set(count);
        }
        let generating = runs_by_status
            .iter()
            .find(|(s, _)| *s == RunStatus::Running)
            .map_or(0, |(_, count)| *count);
        self.inner.generating.set(generating);
        let before = self.inner.stored_head.fetch_max(head, Ordering::AcqRel);
        if head > before {
            self.inner
                .events_stored
                .inc_by(u64::try_from(head - before).unwrap_or(0));
        }
        self.inner
            .subscribers
            .set(i64::try_from(subscribers).unwrap_or(i64::MAX));
        let now = Instant::now();
        let stalled = self
            .tracks()
            .values()
            .filter_map(|track| track.last.map(|(at, _)| at).or(track.started))
            .filter(|since| now.duration_since(*since) >= STALL_AFTER)
            .count();
        self.inner
            .outcomes
            .stalled
            .set(i64::try_from(stalled).unwrap_or(i64::MAX));
        let mut page = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut page, &self.inner.registry);
        page
    }

    fn tracks(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunTrack>> {
        self.inner
            .tracks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn new_track() -> RunTrack {
    RunTrack {
        model: "unknown".to_owned(),
        started: None,
        first_token: None,
        last: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runboard_api::NodeUpdate;

    fn update(tokens: u64) -> RunEvent {
        RunEvent::NodeUpdate(NodeUpdate {
            run_id: String::new(),
            agent: Some("writer".into()),
            iteration: Some(1),
            tokens_out: Some(tokens),
            snippet: None,
            ts: None,
            ..NodeUpdate::default()
        })
    }

    #[test]
    fn a_run_taken_over_by_another_instance_is_let_go() {
        let telemetry = Telemetry::new();
        telemetry.run_model("r1", "synth-small");
        telemetry.observe("r1", &RunEvent::status(RunStatus::Running, None));
        telemetry.observe("r1", &update(10));
        assert!(telemetry.tracks().contains_key("r1"));
        // Its end is recorded by the instance that took it: nothing here waits for it.
        telemetry.run_lost("r1");
        assert!(telemetry.tracks().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_gives_its_model_first_token_time_per_token_and_usage() {
        let telemetry = Telemetry::new();
        telemetry.run_model("r1", "synth-small");
        telemetry.observe("r1", &RunEvent::status(RunStatus::Running, None));
        tokio::time::advance(std::time::Duration::from_millis(250)).await;
        telemetry.observe("r1", &update(10));
        tokio::time::advance(std::time::Duration::from_millis(500)).await;
        telemetry.observe("r1", &update(60));
        telemetry.observe("r1", &RunEvent::status(RunStatus::Completed, None));
        let page = telemetry.render(&[(RunStatus::Completed, 1)], 42, 3);
        let has = |line: &str| page.lines().any(|l| l == line);
        assert!(
            has(
                "gen_ai_server_time_to_first_token_seconds_count{gen_ai_request_model=\"synth-small\"} 1"
            ),
            "{page}"
        );
        assert!(has(
            "gen_ai_server_time_to_first_token_seconds_sum{gen_ai_request_model=\"synth-small\"} 0.25"
        ));
        // 50 tokens in 0.5 s: 10 ms each.
        assert!(has(
            "gen_ai_server_time_per_output_token_seconds_sum{gen_ai_request_model=\"synth-small\"} 0.01"
        ));
        assert!(has(
            "gen_ai_client_token_usage_sum{gen_ai_request_model=\"synth-small\",gen_ai_token_type=\"output\"} 60.0"
        ));
        assert!(has(
            "runboard_tokens_total{gen_ai_request_model=\"synth-small\"} 60"
        ));
        assert!(has("runboard_runs{status=\"completed\"} 1"));
        assert!(has("runboard_runs{status=\"running\"} 0"));
        assert!(has("runboard_events_stored_total 42"));
        assert!(has("runboard_subscribers 3"));
        assert!(has("runboard_runs_ended_total{status=\"completed\"} 1"));
        assert!(page.ends_with("# EOF\n"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_without_a_token_for_thirty_seconds_counts_as_stalled_until_it_moves() {
        let telemetry = Telemetry::new();
        telemetry.observe("r1", &RunEvent::status(RunStatus::Running, None));
        telemetry.observe("r2", &RunEvent::status(RunStatus::Running, None));
        telemetry.set_store_writable(true);
        let stalled = |telemetry: &Telemetry| {
            let page = telemetry.render(&[], 0, 0);
            let line = page
                .lines()
                .find(|line| line.starts_with("runboard_runs_stalled "))
                .unwrap()
                .to_owned();
            assert!(page.contains("runboard_store_writable 1"), "{page}");
            line
        };
        assert_eq!(stalled(&telemetry), "runboard_runs_stalled 0");
        tokio::time::advance(std::time::Duration::from_secs(20)).await;
        telemetry.observe("r1", &update(5));
        tokio::time::advance(std::time::Duration::from_secs(15)).await;
        // r2 has had no token for 35 s; r1's last came 15 s ago.
        assert_eq!(stalled(&telemetry), "runboard_runs_stalled 1");
        telemetry.observe("r2", &RunEvent::status(RunStatus::Failed, None));
        assert_eq!(stalled(&telemetry), "runboard_runs_stalled 0");
    }
}
