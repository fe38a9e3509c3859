//! `runboard serve`: the reference server in the foreground until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use runboard_api::{Redaction, ReplayClock, Role};
use runboard_server::{
    self as server, Access, ActiveRequestSettings, ConnectionLimits, DbLocation, EventSettings,
    GeneratorConfig, ProxyConfig, RequestLimits, RequestStreamSettings, Retention, RunLimits,
    ScrapeConfig, ServerConfig, StoreSettings, StreamSettings, UpstreamConfig, UpstreamSpec,
    WebBundle,
};

use super::seconds::positive_secs;

/// Arguments of `runboard serve`.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // Each is one command-line switch.
pub struct ServeArgs {
    /// Where to listen
    #[arg(long, default_value = server::DEFAULT_ADDR, value_name = "IP:PORT")]
    addr: SocketAddr,
    /// The `SQLite` file (default: runboard/runboard.db in your data directory), `:memory:`, or
    /// a `PostgreSQL` URL (`postgres://user:password@host:5432/runboard`) that several servers
    /// share as one board
    #[arg(
        long,
        env = "RUNBOARD_DB",
        hide_env_values = true,
        value_name = "PATH|URL"
    )]
    db: Option<String>,
    /// Require `Authorization: Bearer TOKEN` on every API route
    #[arg(long, env = "RUNBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM), with --tls-key; HTTP/2 and HTTP/1.1
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Named tokens with roles (admin, viewer, worker), one `NAME ROLE TOKEN` a line (`#` starts
    /// a comment); or the same lines in `RUNBOARD_TOKENS`
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Prompt-safe monitoring: `text` stores and sends no prompt and no model output (runs keep
    /// their figures), `prompts` keeps answers but no prompt. The proxy's clients still get
    /// whole answers
    #[arg(long, value_name = "text|prompts")]
    redact: Option<Redaction>,
    /// What viewers (`--tokens`) are not sent: `text` (no prompts and no answers) or `prompts`.
    /// The store keeps the text and admins read it: text only to admins
    #[arg(long, value_name = "text|prompts")]
    redact_viewers: Option<Redaction>,
    /// Listen beyond loopback without a token (anyone who can reach it can read and launch runs)
    #[arg(long)]
    insecure: bool,
    /// Runs generating at once; the rest wait as queued
    #[arg(long, default_value_t = 18, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,
    /// Runs that may wait for a slot; past it new runs are refused with 429 and Retry-After
    #[arg(long, default_value_t = server::DEFAULT_MAX_QUEUED, value_name = "N",
          value_parser = at_least_one)]
    max_queued: usize,
    /// Connections open at once; past it new clients get 503 at once (and a log line)
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections, value_name = "N",
          value_parser = at_least_one)]
    max_connections: usize,
    /// Seconds a client may take to send a request's headers; an idle keep-alive connection
    /// is closed after as long
    #[arg(long, default_value_t = ConnectionLimits::default().header_timeout.as_secs(),
          value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout_secs: u64,
    /// Seconds a client may take to send a request's body (408 beyond)
    #[arg(long, default_value_t = 30, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout_secs: u64,
    /// Disconnect an event-stream subscriber that has read nothing for this many seconds while
    /// its buffer was full (it resumes with Last-Event-ID and loses nothing)
    #[arg(long, default_value_t = 30.0, value_name = "SECS", value_parser = positive_secs)]
    slow_subscriber_secs: f64,
    /// Remove finished runs older than this many days (0 keeps them however old)
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    retain_days: u32,
    /// Keep at most this many finished runs, the newest (0 keeps them all)
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    retain_runs: u64,
    /// Seconds between two retention passes
    #[arg(long, default_value_t = 10.0, value_name = "SECS", value_parser = positive_secs)]
    retain_every_secs: f64,
    /// Seed for reproducible synthetic runs
    #[arg(long)]
    seed: Option<u64>,
    /// Run the synthetic generator's clock (or the --replay) this many times faster than real
    /// time
    #[arg(long, default_value_t = 1.0, value_parser = positive_f64)]
    speed: f64,
    /// Serve this recording (`runboard record`) instead of running anything: its runs, details
    /// and events at their recorded pace, times --speed; kept in memory, launches refused
    #[arg(long, value_name = "FILE", conflicts_with_all = ["db", "upstreams", "benchmark_log"])]
    replay: Option<PathBuf>,
    /// With --replay: start again after the end (the runs renamed ID~2, ID~3, …)
    #[arg(long = "loop", requires = "replay")]
    looping: bool,
    /// The probability that a synthetic run fails part-way (0 to 1)
    #[arg(long, default_value_t = 0.05, value_parser = probability)]
    failure_rate: f64,
    /// Seconds between keep-alive comments on idle streams
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    keepalive_secs: u64,
    /// The reconnection time streams announce with `retry:`
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    retry_ms: u64,
    /// After an event, how long the server waits for more to store them in one transaction and
    /// send them in one write per stream (far less CPU at low load); 0 handles each at once
    #[arg(long, default_value_t = 3, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    flush_window_ms: u64,
    /// Offer no /api/events, like servers without a global stream: clients follow each run on
    /// its own stream
    #[arg(long)]
    no_events_endpoint: bool,
    /// Follow the benchmark that writes this log file (for /api/benchmark-sse) instead of running
    /// benchmarks here
    #[arg(long, value_name = "PATH", env = "RUNBOARD_BENCHMARK_LOG")]
    benchmark_log: Option<PathBuf>,
    /// Track in-flight generation requests for /metrics/active-requests
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          env = "RUNBOARD_REQUEST_METRICS")]
    request_metrics: bool,
    /// Offer the /metrics/active-requests/stream event stream (503 when off)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          env = "RUNBOARD_REQUESTS_SSE_ENABLED")]
    requests_sse: bool,
    /// At most one active-requests update per this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = positive_secs,
          env = "RUNBOARD_REQUESTS_SSE_INTERVAL")]
    requests_sse_interval: f64,
    /// Seconds between keep-alive comments on the active-requests stream
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = positive_secs,
          env = "RUNBOARD_REQUESTS_SSE_HEARTBEAT")]
    requests_sse_heartbeat: f64,
    /// Serve the web console from this directory (`dist/`, built by `scripts/build-web.sh`) at `/`; by default the one
    /// built into the binary (`--features embed-web`), else `./dist` when it exists
    #[arg(long, value_name = "DIR", env = "RUNBOARD_WEB_DIR")]
    web_dir: Option<PathBuf>,
    /// Let pages from this origin call the API (CORS), e.g. `https://dash.example.com`
    /// (repeatable)
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Read this model server's own Prometheus `/metrics` (and llama.cpp's `/slots`) every 2 s
    /// and show its load beside the workers, e.g. `http://gpu1:8000` (repeatable)
    #[arg(long = "scrape", value_name = "URL", value_parser = http_url)]
    scrape: Vec<String>,
    /// Seconds between two reads of each `--scrape` server
    #[arg(long, default_value_t = 2.0, value_name = "SECS", value_parser = positive_secs)]
    scrape_every_secs: f64,
    /// Generate runs on this OpenAI-compatible model server, e.g. `gpu1=http://gpu1:8000/v1`
    /// (repeatable; a run's params.model picks the one that serves it). Its key comes from
    /// `RUNBOARD_UPSTREAM_<NAME>_KEY` or `RUNBOARD_UPSTREAM_KEY`, never from the command line
    #[arg(long = "upstream", value_name = "[NAME=]URL", value_parser = upstream_arg)]
    upstreams: Vec<String>,
    /// Let runs name MODEL as ALIAS (repeatable), e.g. `fast=Qwen/Qwen2.5-7B-Instruct`
    #[arg(long = "model-alias", value_name = "ALIAS=MODEL", value_parser = server::upstream::spec::parse_alias)]
    model_aliases: Vec<(String, String)>,
    /// Requests in flight per upstream at most, so a small model server is not flooded
    /// (default: only --concurrency limits them)
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    upstream_concurrency: Option<usize>,
    /// Seconds an upstream may stay silent (before answering, or mid-stream) before the try
    /// is given up and retried
    #[arg(long, default_value_t = 120.0, value_name = "SECS", value_parser = positive_secs)]
    upstream_idle_secs: f64,
    /// Output tokens per agent step when a run's `params.max_tokens` does not say
    #[arg(long, default_value_t = 256, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=131_072))]
    upstream_max_tokens: u64,
    /// Seconds without a call after which a run made of proxied calls sharing one
    /// `X-Runboard-Run` header ends (the proxy under /v1, offered with --upstream)
    #[arg(long, default_value_t = 60.0, value_name = "SECS", value_parser = positive_secs)]
    proxy_run_idle_secs: f64,
    /// Seconds other servers sharing the `PostgreSQL` store wait without this one's heartbeat
    /// before they fail its running runs and take its queued ones
    #[arg(long, default_value_t = server::DEFAULT_LEASE.as_secs_f64(), value_name = "SECS",
          value_parser = positive_secs)]
    lease_secs: f64,
    /// This server's name on /api/health and in errors about it (default: host:port)
    #[arg(long, value_name = "NAME")]
    instance_name: Option<String>,
    /// The service-level objective of one call, for live goodput (the share of the last
    /// minute's calls that met it, per model and for the fleet, on /api/workers and in the
    /// console): time to first token and mean inter-token latency, either optional
    #[arg(long, value_name = "ttft=500ms,itl=50ms", value_parser = runboard_api::Slo::parse)]
    slo: Option<runboard_api::Slo>,
    /// Send every run as a trace (a span per step or proxied call, with the OpenTelemetry
    /// `GenAI` attributes) and the `GenAI` metrics to this OTLP receiver, as protobuf over HTTP
    /// to URL/v1/traces and URL/v1/metrics. `OTEL_EXPORTER_OTLP_HEADERS` and
    /// `OTEL_SERVICE_NAME` are read too. Prompts follow --redact
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL",
          value_parser = server::otlp::check_endpoint)]
    otlp_endpoint: Option<String>,
    /// Finished spans that may wait for a slow or absent OTLP receiver; past it new ones are
    /// dropped and counted (`runboard_otlp_spans_dropped_total`)
    #[arg(long, default_value_t = server::otlp::DEFAULT_QUEUE, value_name = "SPANS",
          value_parser = at_least_one)]
    otlp_queue: usize,
    /// Seconds between two exports of the metrics over OTLP
    #[arg(long, default_value_t = 10.0, value_name = "SECS", value_parser = positive_secs)]
    otlp_metrics_secs: f64,
}

fn upstream_arg(text: &str) -> Result<String, String> {
    server::upstream::spec::check_upstream(text)
}

/// The upstreams of `--upstream`, keys from the environment, names unique.
pub fn upstream_config(
    upstreams: &[String],
    aliases: &[(String, String)],
) -> Result<UpstreamConfig, String> {
    let mut config = UpstreamConfig::none();
    for text in upstreams {
        let spec = UpstreamSpec::parse(text, |name| std::env::var(name).ok())?;
        if config.upstreams.iter().any(|known| known.name == spec.name) {
            return Err(format!(
                "two upstreams are named {:?}; name them: --upstream NAME=URL",
                spec.name
            ));
        }
        config.upstreams.push(spec);
    }
    config.aliases = aliases.to_vec();
    Ok(config)
}

fn http_url(text: &str) -> Result<String, String> {
    server::scrape::check_url(text)
}

fn positive_f64(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("expected a number above 0, not {text:?}")),
    }
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(value) if value >= 1 => Ok(value),
        _ => Err(format!(
            "expected a whole number of at least 1, not {text:?}"
        )),
    }
}

fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("expected a number from 0 to 1, not {text:?}")),
    }
}

/// The named tokens: from `--tokens FILE`, else from `RUNBOARD_TOKENS` (never from the
/// command line itself, where other users of the machine could read them).
fn token_list(file: Option<&Path>) -> Result<Vec<server::NamedToken>, String> {
    let (text, source) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|error| format!("--tokens {}: {error}", path.display()))?,
            format!("--tokens {}", path.display()),
        ),
        None => match std::env::var("RUNBOARD_TOKENS") {
            Ok(text) => (text, "RUNBOARD_TOKENS".to_owned()),
            Err(_) => return Ok(Vec::new()),
        },
    };
    let tokens = server::parse_token_list(&text).map_err(|error| format!("{source}: {error}"))?;
    if tokens.is_empty() {
        return Err(format!(
            "{source} names no token (one NAME ROLE TOKEN a line)"
        ));
    }
    Ok(tokens)
}

impl ServeArgs {
    /// Who may call, from the token options.
    fn access(&self) -> Result<Access, String> {
        let tokens = token_list(self.tokens.as_deref())?;
        if self.redact_viewers.is_some() && !tokens.iter().any(|token| token.role == Role::Viewer) {
            return Err(
                "--redact-viewers is for the viewer tokens of --tokens (or RUNBOARD_TOKENS), and \
                 there are none; to keep text from everyone, use --redact"
                    .into(),
            );
        }
        Ok(Access {
            // A blank token is refused at start (ServerError::BadToken), not dropped silently.
            token: self.token.clone(),
            tokens,
            insecure: self.insecure,
            cors_origins: self.cors_origins.clone(),
            redact_viewers: self.redact_viewers,
        })
    }

    fn config(&self) -> Result<ServerConfig, String> {
        let mut upstreams = upstream_config(&self.upstreams, &self.model_aliases)?;
        upstreams.concurrency = self.upstream_concurrency;
        upstreams.idle_timeout = Duration::from_secs_f64(self.upstream_idle_secs);
        upstreams.max_tokens = self.upstream_max_tokens;
        let replay = self
            .replay
            .as_deref()
            .map(|path| {
                super::replay::config(path, ReplayClock::real_time(self.speed), self.looping)
            })
            .transpose()?;
        Ok(ServerConfig {
            addr: self.addr,
            access: self.access()?,
            connections: ConnectionLimits {
                header_timeout: Duration::from_secs(self.header_timeout_secs),
                max_connections: self.max_connections,
                stalled_write: Duration::from_secs_f64(self.slow_subscriber_secs),
                ..ConnectionLimits::default()
            },
            requests: RequestLimits {
                body_timeout: Duration::from_secs(self.body_timeout_secs),
                ..RequestLimits::default()
            },
            store: StoreSettings {
                // A replay's runs are the recording's: never mixed into a database.
                db: if replay.is_some() {
                    DbLocation::Memory
                } else {
                    self.db
                        .as_deref()
                        .map_or_else(DbLocation::default_file, DbLocation::parse)
                },
                retention: Retention {
                    days: (self.retain_days > 0).then_some(self.retain_days),
                    runs: (self.retain_runs > 0).then_some(self.retain_runs),
                },
                retention_every: Duration::from_secs_f64(self.retain_every_secs),
                lease: Duration::from_secs_f64(self.lease_secs),
                instance_name: self.instance_name.clone(),
                redaction: self.redact,
            },
            runs: RunLimits {
                concurrency: self.concurrency as usize,
                max_queued: self.max_queued,
            },
            events: EventSettings {
                streams: StreamSettings {
                    retry: Duration::from_millis(self.retry_ms),
                    keepalive: Duration::from_secs(self.keepalive_secs),
                    flush_window: Duration::from_millis(self.flush_window_ms),
                },
                endpoint: !self.no_events_endpoint,
                ..EventSettings::default()
            },
            active_requests: ActiveRequestSettings {
                enabled: self.request_metrics,
                stream: RequestStreamSettings {
                    enabled: self.requests_sse,
                    interval: Duration::from_secs_f64(self.requests_sse_interval),
                    heartbeat: Duration::from_secs_f64(self.requests_sse_heartbeat),
                    retry: Duration::from_millis(self.retry_ms),
                },
            },
            generator: GeneratorConfig {
                seed: self.seed,
                speed: self.speed,
                failure_rate: self.failure_rate,
            },
            upstreams,
            proxy: ProxyConfig {
                run_idle: Duration::from_secs_f64(self.proxy_run_idle_secs),
                ..ProxyConfig::default()
            },
            scrape: ScrapeConfig {
                urls: self.scrape.clone(),
                every: Duration::from_secs_f64(self.scrape_every_secs),
                ..ScrapeConfig::default()
            },
            replay,
            benchmark_log: self.benchmark_log.clone(),
            web: self
                .web_dir
                .clone()
                .map_or_else(WebBundle::discover, WebBundle::Dir),
            slo: self.slo,
            tls: self
                .tls_cert
                .clone()
                .zip(self.tls_key.clone())
                .map(|(cert, key)| server::TlsFiles { cert, key }),
            otlp: self
                .otlp_endpoint
                .as_ref()
                .map(|endpoint| server::OtlpConfig {
                    queue: self.otlp_queue,
                    metrics_every: Duration::from_secs_f64(self.otlp_metrics_secs),
                    ..server::OtlpConfig::new(endpoint.clone())
                }),
        })
    }
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> ExitCode {
    let config = match args.config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("runboard serve: error: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let WebBundle::Dir(dir) = &config.web
        && !dir.join("index.html").is_file()
    {
        eprintln!(
            "runboard serve: error: --web-dir {} has no index.html (build it with `scripts/build-web.sh`)",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let db = match config.store.redaction {
        Some(Redaction::Text) => format!("{}, no prompts or answers kept", config.store.db),
        Some(Redaction::Prompts) => format!("{}, no prompts kept", config.store.db),
        None => config.store.db.to_string(),
    };
    let web = config.web.describe();
    let generation = match &config.replay {
        Some(replay) => format!(
            "replaying a recording of {}",
            replay.recording.header.source
        ),
        None => describe_generation(&config.upstreams),
    };
    let auth = describe_access(&config.access);
    let export = config
        .otlp
        .as_ref()
        .map(|otlp| format!("; runs as traces to {} over OTLP", otlp.endpoint))
        .unwrap_or_default();
    let running = match server::start(config).await {
        Ok(running) => running,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "listening on {} (store: {db}; {auth}; {web}; {generation}{export}); Ctrl-C stops",
        running.url()
    );
    wait_for_stop_signal().await;
    tracing::info!("stopping");
    running.stop().await;
    ExitCode::SUCCESS
}

/// Where runs are generated, for the start-up line: names and URLs, and whether a key was
/// found (never the key).
pub fn describe_generation(config: &UpstreamConfig) -> String {
    if config.upstreams.is_empty() {
        return "runs on the synthetic generator".into();
    }
    let upstreams: Vec<String> = config
        .upstreams
        .iter()
        .map(|spec| {
            let key = if spec.key.is_some() { ", key set" } else { "" };
            format!("{} at {}{key}", spec.name, spec.display_url())
        })
        .collect();
    format!(
        "runs on {}; the OpenAI API is passed on under /v1",
        upstreams.join(", ")
    )
}

async fn wait_for_stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            () = terminate => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// How the startup line says who may call: `no token`, `token required`, or the named tokens
/// by role (`tokens required: 1 admin, 2 viewers, 5 workers`).
fn describe_access(access: &Access) -> String {
    if !access.requires_token() {
        return "no token".to_owned();
    }
    if access.tokens.is_empty() {
        return "token required".to_owned();
    }
    let single = usize::from(access.token.is_some());
    let counts: Vec<String> = runboard_api::Role::ALL
        .into_iter()
        .filter_map(|role| {
            let count = access.tokens.iter().filter(|t| t.role == role).count()
                + if role == runboard_api::Role::Admin {
                    single
                } else {
                    0
                };
            (count > 0).then(|| {
                let plural = if count == 1 { "" } else { "s" };
                format!("{count} {role}{plural}")
            })
        })
        .collect();
    format!("tokens required: {}", counts.join(", "))
}
