//! The way out: a bounded queue between the spans' makers and the exporter, and the task that
//! sends spans in batches and the metrics on a clock, holds what the receiver did not take, and
//! tries again with backoff.

use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter as _;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter as _, SpanProcessor};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::ExportCounters;

/// Finished spans that may wait for the exporter by default (`--otlp-queue`).
pub const DEFAULT_QUEUE: usize = 4096;

/// The most spans in one export request.
const MAX_BATCH: usize = 512;

/// The first wait after a failed export; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The longest wait between tries while the receiver is away: how soon export resumes after
/// it comes back.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The SDK's span processor here: a finished span goes into the queue without waiting, or,
/// when the queue is full, is dropped and counted. The exporter is woken only when a batch is
/// waiting (and otherwise finds the spans on its clock), not once per span.
#[derive(Debug)]
pub(super) struct SpanQueue {
    sender: mpsc::Sender<SpanData>,
    dropped: Counter,
    batch_ready: Arc<Notify>,
}

/// The exporter's end of the queue.
pub(super) struct Waiting {
    receiver: mpsc::Receiver<SpanData>,
    batch_ready: Arc<Notify>,
}

impl Waiting {
    /// The spans queued so far (for tests of what is made).
    #[cfg(test)]
    pub(super) fn take_all(&mut self) -> Vec<SpanData> {
        let mut spans = Vec::new();
        while let Ok(span) = self.receiver.try_recv() {
            spans.push(span);
        }
        spans
    }

    /// Moves queued spans into `held`, up to a batch.
    fn drain_into(&mut self, held: &mut Vec<SpanData>) {
        while held.len() < MAX_BATCH {
            match self.receiver.try_recv() {
                Ok(span) => held.push(span),
                Err(_) => return,
            }
        }
    }
}

impl SpanQueue {
    /// A queue of `capacity` spans and its receiving end, for the exporter.
    pub fn new(capacity: usize, dropped: Counter) -> (Self, Waiting) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let batch_ready = Arc::new(Notify::new());
        let waiting = Waiting {
            receiver,
            batch_ready: Arc::clone(&batch_ready),
        };
        (
            Self {
                sender,
                dropped,
                batch_ready,
            },
            waiting,
        )
    }
}

impl SpanProcessor for SpanQueue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if self.sender.try_send(span).is_err() {
            self.dropped.inc();
            return;
        }
        let queued = self.sender.max_capacity() - self.sender.capacity();
        if queued >= MAX_BATCH.min(self.sender.max_capacity()) {
            self.batch_ready.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// A metric reader the export task collects from on its own clock, while the meter provider
/// holds it too (the SDK's readers are owned by their provider).
#[derive(Debug, Clone, Default)]
pub(super) struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The export task's parts.
pub(super) struct Exporter {
    pub spans: opentelemetry_otlp::SpanExporter,
    pub metrics: opentelemetry_otlp::MetricExporter,
    pub reader: SharedReader,
    pub resource: Resource,
    /// What the exporters send with, for why a send failed.
    pub transport: super::transport::Transport,
    pub counters: ExportCounters,
    /// For the log lines.
    pub endpoint: String,
    pub spans_every: Duration,
    pub metrics_every: Duration,
}

/// Whether the receiver takes one signal's exports, for saying so once per outage.
enum Reach {
    Up,
    Down { since: Instant, dropped_before: u64 },
}

/// One signal's way to the receiver: its URL's path and whether it is reached.
struct Signal {
    name: &'static str,
    reach: Reach,
}

impl Signal {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            reach: Reach::Up,
        }
    }
}

impl Exporter {
    /// Sends until `stop`; then `end_open` ends the spans of runs still going, and what is
    /// queued is sent once more with the last metrics.
    pub async fn run(
        mut self,
        mut waiting: Waiting,
        stop: CancellationToken,
        end_open: impl FnOnce(),
    ) {
        self.spans.set_resource(&self.resource);
        let mut traces = Signal::new("traces");
        let mut metrics = Signal::new("metrics");
        let mut held: Vec<SpanData> = Vec::new();
        let mut backoff = FIRST_BACKOFF;
        let mut metrics_due = Instant::now() + self.metrics_every;
        let mut flush_due = Instant::now() + self.spans_every;
        'export: loop {
            if held.is_empty() {
                // A batch waiting, the flush clock, the metrics clock, or the stop.
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break 'export,
                    () = sleep_until(metrics_due) => {
                        let sent = self.send_metrics().await;
                        self.note(&mut metrics, sent);
                        metrics_due = Instant::now() + self.metrics_every;
                        continue 'export;
                    }
                    () = waiting.batch_ready.notified() => {}
                    () = sleep_until(flush_due) => {}
                }
                flush_due = Instant::now() + self.spans_every;
                waiting.drain_into(&mut held);
                if held.is_empty() {
                    continue;
                }
            }
            let sent = self.send_spans(&mut held).await;
            self.note(&mut traces, sent.clone());
            if sent.is_ok() {
                backoff = FIRST_BACKOFF;
                // A backlog (after an outage) goes out batch after batch, not one a flush.
                if waiting.receiver.len() >= MAX_BATCH {
                    waiting.drain_into(&mut held);
                }
                continue;
            }
            // The receiver is away: the batch is held, new spans wait in the queue (or are
            // dropped once it is full), and the next try comes after the backoff.
            let retry_at = Instant::now() + backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = sleep_until(retry_at) => {}
            }
            if Instant::now() >= metrics_due {
                let sent = self.send_metrics().await;
                self.note(&mut metrics, sent);
                metrics_due = Instant::now() + self.metrics_every;
            }
        }
        end_open();
        waiting.receiver.close();
        while let Ok(span) = waiting.receiver.try_recv() {
            held.push(span);
        }
        // One try each on the way out: the server is stopping and waits only so long.
        while !held.is_empty() {
            let rest = held.split_off(held.len().min(MAX_BATCH));
            if self.send_spans(&mut held).await.is_err() {
                self.counters
                    .spans_dropped
                    .inc_by(u64::try_from(held.len() + rest.len()).unwrap_or(u64::MAX));
                break;
            }
            held = rest;
        }
        let _ = self.send_metrics().await;
    }

    /// Sends `held`, which is emptied when the receiver took it and kept for another try when
    /// it did not.
    async fn send_spans(&self, held: &mut Vec<SpanData>) -> Result<(), String> {
        match self.spans.export(held.clone()).await {
            Ok(()) => {
                self.counters
                    .spans_exported
                    .inc_by(u64::try_from(held.len()).unwrap_or(u64::MAX));
                held.clear();
                Ok(())
            }
            Err(error) => {
                self.failed("traces");
                Err(error.to_string())
            }
        }
    }

    /// Collects the metrics and sends them: cumulative, so a failed send is made good by the
    /// next one.
    async fn send_metrics(&self) -> Result<(), String> {
        let mut collected = ResourceMetrics::default();
        self.reader
            .collect(&mut collected)
            .map_err(|error| error.to_string())?;
        self.metrics.export(&collected).await.map_err(|error| {
            self.failed("metrics");
            error.to_string()
        })
    }

    fn failed(&self, signal: &str) {
        self.counters
            .failures
            .get_or_create(&ExportCounters::signal(signal))
            .inc();
    }

    /// Says once when the receiver stops taking a signal's exports, and once when it takes
    /// them again.
    fn note(&self, signal: &mut Signal, sent: Result<(), String>) {
        let dropped = self.counters.spans_dropped.get();
        let up = self
            .counters
            .receiver_up
            .get_or_create(&ExportCounters::signal(signal.name))
            .clone();
        let url = format!("{}/v1/{}", self.endpoint, signal.name);
        let cause = self.transport.take_error();
        match (&signal.reach, sent) {
            (Reach::Up, Err(error)) => {
                let error = match cause {
                    Some(cause) => format!("{error}: {cause}"),
                    None => error,
                };
                up.set(0);
                if signal.name == "traces" {
                    tracing::warn!(
                        "OTLP export to {url} failed ({error}); runs go on, spans wait in the \
                         queue (dropped and counted in runboard_otlp_spans_dropped_total once \
                         it is full) and are sent when the receiver answers again"
                    );
                } else {
                    tracing::warn!(
                        "OTLP export to {url} failed ({error}); runs go on, and the metrics \
                         (cumulative) are sent again every interval until it takes them"
                    );
                }
                signal.reach = Reach::Down {
                    since: Instant::now(),
                    dropped_before: dropped,
                };
            }
            (
                Reach::Down {
                    since,
                    dropped_before,
                },
                Ok(()),
            ) => {
                up.set(1);
                let dropped = if signal.name == "traces" {
                    format!(
                        "; {} spans were dropped meanwhile",
                        dropped - dropped_before
                    )
                } else {
                    String::new()
                };
                tracing::info!(
                    "OTLP export to {url} works again after {:.0} s{dropped}",
                    since.elapsed().as_secs_f64(),
                );
                signal.reach = Reach::Up;
            }
            (Reach::Up, Ok(())) => {
                up.set(1);
            }
            (Reach::Down { .. }, Err(_)) => {}
        }
    }
}
