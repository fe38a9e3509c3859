//! OTLP export (`serve --otlp-endpoint URL`): every run as a trace, each of its steps (a model
//! call, a proxied call, an agent step of the generator) as a child span with the
//! OpenTelemetry `GenAI` attributes, and the `GenAI` metrics, sent as protobuf over HTTP to
//! `URL/v1/traces` and `URL/v1/metrics` by the OpenTelemetry project's own exporters.
//!
//! Export never holds up a run: spans are built from events as they are recorded
//! ([`spans`]), handed to a bounded queue without waiting ([`queue`]), and sent in batches by a
//! task of their own, which holds a batch the receiver did not take and tries again with
//! backoff. When the queue is full the newest spans are dropped and counted
//! (`runboard_otlp_spans_dropped_total` on `/metrics`); metrics are cumulative, so an export
//! missed while the receiver is away is made good by the next.

mod gen_ai;
mod queue;
mod spans;
mod transport;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use runboard_api::{RunEvent, RunSummary};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use gen_ai::FailedCall;
pub use queue::DEFAULT_QUEUE;

/// The longest one export request may take, its tries included (OTLP's default).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to export (`serve --otlp-endpoint` and its companions).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The receiver's base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`'s meaning): spans go to
    /// `/v1/traces` under it, metrics to `/v1/metrics`.
    pub endpoint: String,
    /// Extra request headers (an API key), besides `OTEL_EXPORTER_OTLP_HEADERS`, which the
    /// exporter reads itself.
    pub headers: Vec<(String, String)>,
    /// Finished spans that may wait for the exporter; past it new ones are dropped and counted.
    pub queue: usize,
    /// How often the metrics are sent.
    pub metrics_every: Duration,
    /// How long a batch of spans gathers before it is sent (sooner when it is full).
    pub spans_every: Duration,
}

impl OtlpConfig {
    /// Export to `endpoint` with the defaults: a queue of [`DEFAULT_QUEUE`] spans, metrics every
    /// 10 s, spans within a second.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            headers: Vec::new(),
            queue: DEFAULT_QUEUE,
            metrics_every: Duration::from_secs(10),
            spans_every: Duration::from_secs(1),
        }
    }

    /// The URL one signal is sent to (`traces` or `metrics`).
    fn signal_url(&self, signal: &str) -> String {
        format!("{}/v1/{signal}", self.endpoint.trim_end_matches('/'))
    }
}

/// Checks a `--otlp-endpoint`: an `http://` or `https://` URL with a host.
pub fn check_endpoint(text: &str) -> Result<String, String> {
    let url =
        reqwest::Url::parse(text).map_err(|error| format!("{text:?} is not a URL ({error})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{text:?} is not an http:// or https:// URL of an OTLP receiver \
             (such as http://127.0.0.1:4318)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text:?}: give the receiver's base URL without a query; /v1/traces and \
             /v1/metrics are added to it"
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// Why export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("--otlp-endpoint: {0}")]
pub struct OtlpError(String);

/// What export counts, on `/metrics`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExportCounters {
    /// Spans the receiver took.
    pub spans_exported: Counter,
    /// Spans dropped because the queue was full (the receiver slow or gone).
    pub spans_dropped: Counter,
    /// Export requests that failed, by signal (`traces`, `metrics`); each is tried again.
    pub failures: Family<Vec<(String, String)>, Counter>,
    /// By signal: 1 while its last export reached the receiver, 0 after one failed.
    pub receiver_up: Family<Vec<(String, String)>, Gauge>,
}

impl ExportCounters {
    /// Registers the counters under `runboard_otlp_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let counters = Self::default();
        registry.register(
            "runboard_otlp_spans_exported",
            "Spans sent to the OTLP receiver and taken by it",
            counters.spans_exported.clone(),
        );
        registry.register(
            "runboard_otlp_spans_dropped",
            "Spans dropped because the export queue was full (the OTLP receiver slow or gone)",
            counters.spans_dropped.clone(),
        );
        registry.register(
            "runboard_otlp_export_failures",
            "OTLP export requests that failed, by signal (traces, metrics); each is tried again",
            counters.failures.clone(),
        );
        registry.register(
            "runboard_otlp_receiver_up",
            "1 while the OTLP receiver takes the signal's exports, 0 since one failed",
            counters.receiver_up.clone(),
        );
        counters
    }

    /// The label set of one signal.
    pub fn signal(name: &str) -> Vec<(String, String)> {
        vec![("signal".to_owned(), name.to_owned())]
    }
}

/// The running export: what the telemetry hands events to. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Otlp {
    spans: Arc<spans::RunSpans>,
}

impl std::fmt::Debug for Otlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otlp").finish_non_exhaustive()
    }
}

/// The export's task. Stopped last, after the writer has recorded everything: it ends the
/// spans of runs still open, and sends what is queued and the last metrics.
#[derive(Debug)]
pub(crate) struct OtlpTask {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl OtlpTask {
    /// Stops the task and waits up to `limit` for its last export.
    pub async fn finish(self, limit: Duration) {
        self.stop.cancel();
        let mut handle = self.handle;
        if tokio::time::timeout(limit, &mut handle).await.is_err() {
            handle.abort();
        }
    }
}

impl Otlp {
    /// Builds the exporters and starts the export task, which runs until
    /// [`OtlpTask::finish`]. `instance` names this server among others sharing a board
    /// (`service.instance.id`).
    pub fn start(
        config: &OtlpConfig,
        instance: &str,
        counters: ExportCounters,
    ) -> Result<(Self, OtlpTask), OtlpError> {
        let stop = CancellationToken::new();
        let resource = resource(instance);
        let headers: HashMap<String, String> = config.headers.iter().cloned().collect();
        // runboard's client: TLS on ring, trusting `--ca-cert` (the exporter's own default
        // client would look for a TLS provider reqwest is built without).
        let http = transport::Transport::new(
            runboard_sse::http::client_builder()
                .timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|error| OtlpError(format!("no HTTP client: {error}")))?,
        );
        let span_exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(http.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.signal_url("traces"))
            .with_headers(headers.clone())
            .build()
            .map_err(|error| OtlpError(error.to_string()))?;
        let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_http_client(http.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.signal_url("metrics"))
            .with_headers(headers)
            .build()
            .map_err(|error| OtlpError(error.to_string()))?;
        let (processor, waiting) =
            queue::SpanQueue::new(config.queue, counters.spans_dropped.clone());
        let tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.clone())
            .build();
        let reader = queue::SharedReader::default();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(reader.clone())
            .with_resource(resource.clone())
            .build();
        let tracer = tracer_provider.tracer(env!("CARGO_PKG_NAME"));
        let metrics = gen_ai::Instruments::new(&opentelemetry::metrics::MeterProvider::meter(
            &meter_provider,
            env!("CARGO_PKG_NAME"),
        ));
        let spans = Arc::new(spans::RunSpans::new(tracer, metrics));
        let exporter = queue::Exporter {
            spans: span_exporter,
            metrics: metric_exporter,
            reader,
            resource,
            transport: http,
            counters,
            endpoint: config.endpoint.clone(),
            spans_every: config.spans_every,
            metrics_every: config.metrics_every,
        };
        let open = Arc::clone(&spans);
        let stopped = stop.clone();
        let handle = tokio::spawn(async move {
            exporter
                .run(waiting, stopped, move || open.end_all_open())
                .await;
            // The providers live as long as the task: dropping one shuts its pipeline down.
            drop((tracer_provider, meter_provider));
        });
        Ok((Self { spans }, OtlpTask { stop, handle }))
    }

    /// A run was created (as stored: with `--redact`, without its text).
    pub fn run_created(&self, run: &RunSummary) {
        self.spans.run_created(run);
    }

    /// The model a generated run uses, for its steps' `gen_ai.request.model`.
    pub fn run_model(&self, run_id: &str, model: &str) {
        self.spans.run_model(run_id, model);
    }

    /// An event of a run, as recorded.
    pub fn observe(&self, run_id: &str, event: &RunEvent) {
        self.spans.observe(run_id, event);
    }

    /// Another instance took the run over: its trace ends here.
    pub fn run_lost(&self, run_id: &str) {
        self.spans.run_lost(run_id);
    }

    /// A call of a run failed before its answer was whole.
    pub fn call_failed(&self, run_id: &str, call: &FailedCall<'_>) {
        self.spans.call_failed(run_id, call);
    }
}

/// Who is exporting: `service.name` (`OTEL_SERVICE_NAME`, else `runboard`), the version, and
/// this server's instance; `OTEL_RESOURCE_ATTRIBUTES` is read too.
fn resource(instance: &str) -> Resource {
    let mut builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        builder = builder.with_service_name("runboard");
    }
    builder
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", instance.to_owned()),
        ])
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_a_base_url_the_signals_paths_go_under() {
        assert_eq!(
            check_endpoint("http://127.0.0.1:4318/").as_deref(),
            Ok("http://127.0.0.1:4318")
        );
        let config = OtlpConfig::new("http://127.0.0.1:6006/otlp");
        assert_eq!(
            config.signal_url("traces"),
            "http://127.0.0.1:6006/otlp/v1/traces"
        );
        assert!(check_endpoint("127.0.0.1:4318").is_err());
        assert!(check_endpoint("grpc://collector:4317").is_err());
        assert!(
            check_endpoint("http://collector:4318/?key=1")
                .unwrap_err()
                .contains("without a query")
        );
    }
}
