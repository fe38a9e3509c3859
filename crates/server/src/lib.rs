//! The reference server (`runboard serve`): the runs API over axum, an SQL store, a hub that
//! fans persisted events out to every stream, and a synthetic generator so it works out of the
//! box. The console embeds it; tests run it on port 0.

mod config;
mod events;
mod failure;
mod http;
mod observe;
mod producers;
pub mod store;

pub use http::tls::TlsFiles;
pub use http::tokens::{MIN_TOKEN_CHARS, NamedToken, TokenListError, parse_token_list};
pub use http::{listener, web_bundle};
pub use observe::otlp::{self, OtlpConfig, OtlpError};
pub use observe::scrape;
pub use producers::{benchmark, catalog, generator, proxy, replay, rng, upstream};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{
    Access, ActiveRequestSettings, DEFAULT_ADDR, DEFAULT_MAX_QUEUED, DEFAULT_RETENTION,
    EventSettings, ServerConfig, StoreSettings,
};
pub use events::stream::{DEFAULT_FLUSH_WINDOW, StreamSettings};
pub use generator::GeneratorConfig;
pub use http::active_requests_stream::RequestStreamSettings;
pub use http::routes::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
pub use http::routes::{MAX_BENCHMARK_TASKS, RequestLimits};
pub use listener::ConnectionLimits;
pub use observe::active_requests::DISABLED_MESSAGE;
pub use producers::membership::DEFAULT_LEASE;
pub use producers::runs::RunLimits;
pub use proxy::ProxyConfig;
pub use scrape::ScrapeConfig;
pub use store::{Backend, DbLocation, Retention, StoreError};
pub use upstream::{UpstreamConfig, UpstreamSpec};
pub use web_bundle::WebBundle;

use benchmark::{BenchmarkBoard, BenchmarkRunner};
use events::feed::Feed;
use events::hub::Hub;
use events::recorder::{Recorder, WriterSetup};
use events::stream::StreamSource;
use http::guard::Guard;
use http::routes::{AppParts, AppState};
use observe::active_requests::RequestTracker;
use observe::telemetry::Telemetry;
use producers::membership::Identity;
use producers::runs::{Runs, RunsSetup};
use store::Store;
use store::health::StoreHealth;

/// How long shutdown waits for connections to finish before it drops them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long shutdown waits for the writer to store what it was given.
const WRITER_GRACE: Duration = Duration::from_secs(2);

/// How long a stopping server waits for its last OTLP export (the spans of runs it stopped
/// and the last metrics) before it gives up on the receiver.
const OTLP_GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A non-loopback address without a token.
    #[error(
        "refusing to listen on {0} without a token: anyone who can reach it could read and \
         launch runs. Pass --token (or RUNBOARD_TOKEN), or --insecure if you really mean it"
    )]
    Exposed(SocketAddr),
    /// The address could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened or recovered.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS certificate or key could not be read or used.
    #[error("{0}")]
    Tls(String),
    /// OTLP export could not be set up.
    #[error(transparent)]
    Otlp(#[from] OtlpError),
    /// A token that is blank, starts or ends with spaces, or holds anything but visible ASCII.
    #[error(
        "the token is blank, has spaces at its ends, or holds characters other than visible \
         ASCII (control characters, letters such as é); no client could send it in an \
         Authorization header. Choose a token of visible ASCII characters"
    )]
    BadToken,
    /// A `--cors-origin` is not an origin.
    #[error(
        "--cors-origin {0:?} is not an origin such as https://dash.example.com (scheme, host \
         and port only; no wildcards: give each origin)"
    )]
    BadOrigin(String),
}

/// A server that is running. Stop it with [`stop`](Self::stop).
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    https: bool,
    shutdown: CancellationToken,
    serve: JoinHandle<()>,
    recorder: Recorder,
    writer: JoinHandle<()>,
    store: Store,
    identity: Identity,
    otlp: Option<otlp::OtlpTask>,
}

impl RunningServer {
    /// The address it listens on (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://addr`, or `https://addr` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops promptly: streams end, generation stops (running runs stay `running` and are failed
    /// at the next start), connections close, and the writer stores everything it was given
    /// before the database is closed. A store that cannot be written is given up on at once.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let mut serve = self.serve;
        if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), &mut serve)
            .await
            .is_err()
        {
            serve.abort();
        }
        let _ = tokio::time::timeout(WRITER_GRACE, self.recorder.close()).await;
        let mut writer = self.writer;
        if tokio::time::timeout(WRITER_GRACE, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        // Last, so the runs' final events are in the traces.
        if let Some(otlp) = self.otlp {
            otlp.finish(OTLP_GRACE).await;
        }
        producers::membership::leave(&self.store, &self.identity).await;
        self.store.close().await;
    }
}

/// Opens the store, recovers from an earlier stop, binds, and starts serving.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    config.check_exposure()?;
    let cors_origins = parse_cors_origins(&config.access.cors_origins)?;
    let tls = tls_acceptor(&config)?;
    let https = tls.is_some();
    let store = Store::open(&config.store.db).await?;
    let sequences = store.sequences().await?;
    let hub = Hub::new(config.events.broadcast_capacity, sequences.last_seq)
        .redacting(config.access.redact_viewers);
    let health = StoreHealth::new();
    let shutdown = CancellationToken::new();
    let telemetry = Telemetry::with_slo(config.slo);
    let identity =
        producers::membership::identity(&store, instance_name(&config), config.store.lease).await?;
    let otlp = export_runs(&config, &identity, &telemetry)?;
    let feed = Feed::new(
        hub.clone(),
        store.clone(),
        sequences.last_seq,
        shutdown.clone(),
    );
    let (recorder, writer, lost) = start_writer(
        &config, &store, &feed, &health, &identity, &shutdown, &telemetry,
    );
    let requests = RequestTracker::new(config.active_requests.enabled);
    let upstreams = upstream::UpstreamPool::start(&config.upstreams, &shutdown).await;
    let runs = Runs::new(RunsSetup {
        recorder: recorder.clone(),
        store: store.clone(),
        generator: config.generator.clone(),
        limits: config.runs,
        last_ord: sequences.last_ord,
        newest_run: sequences.newest_run.clone(),
        shutdown: shutdown.clone(),
        requests: requests.clone(),
        health: health.clone(),
        upstreams: upstreams.clone(),
        instance: identity.id.clone(),
    });
    let proxy = upstreams.map(|pool| {
        proxy::Proxy::start(pool, runs.clone(), config.proxy.clone(), shutdown.clone())
    });
    let roster = join_the_board(&store, &identity, &runs, (feed, lost), &health, &shutdown).await?;
    let retention = housekeeping(&config, &store, &telemetry, &shutdown);
    play_any_recording(&config, &recorder, &hub, &identity, &shutdown);
    let (listener, addr) = bind(config.addr).await?;
    let (benchmark, benchmark_runner) = benchmarks(&config, &runs, &store, &hub, &shutdown);
    let state = AppState::new(AppParts {
        runs,
        store: store.clone(),
        streams: StreamSource {
            store: store.clone(),
            hub,
            shutdown: shutdown.clone(),
            settings: config.events.streams.clone(),
            health: health.clone(),
            telemetry: telemetry.clone(),
        },
        limits: config.requests,
        health,
        events_endpoint: config.events.endpoint,
        requests,
        request_stream: config.active_requests.stream.clone(),
        benchmark,
        benchmark_runner,
        web: config.web.clone(),
        upstreams: scrape::start(&scrape_config(&config), &shutdown),
        telemetry,
        proxy,
        roster,
        retention,
        replaying: config.replay.is_some(),
    });
    let app = http::routes::router(
        state,
        config.access.keyring(),
        guard_for(&config, &cors_origins, addr),
        &cors_origins,
    );
    let serve = tokio::spawn(listener::serve(
        listener,
        app,
        connection_limits(&config),
        shutdown.clone(),
        SHUTDOWN_GRACE,
        tls,
    ));
    Ok(RunningServer {
        addr,
        https,
        shutdown,
        serve,
        recorder,
        writer,
        store,
        identity,
        otlp,
    })
}

/// The TLS acceptor of `--tls-cert` and `--tls-key`, or `None` for plain HTTP.
fn tls_acceptor(config: &ServerConfig) -> Result<Option<tokio_rustls::TlsAcceptor>, ServerError> {
    config
        .tls
        .as_ref()
        .map(http::tls::acceptor)
        .transpose()
        .map_err(ServerError::Tls)
}

/// Starts OTLP export when `--otlp-endpoint` asks for it, and hands it to the telemetry.
fn export_runs(
    config: &ServerConfig,
    identity: &Identity,
    telemetry: &Telemetry,
) -> Result<Option<otlp::OtlpTask>, OtlpError> {
    let Some(otlp_config) = &config.otlp else {
        return Ok(None);
    };
    let (otlp, task) = otlp::Otlp::start(otlp_config, &identity.name, telemetry.export_counters())?;
    telemetry.export_to(otlp);
    Ok(Some(task))
}

/// `--max-connections` made to fit the open-file limit: the soft limit raised to what it
/// needs (a proxied call holds a second descriptor upstream), or the cap lowered, and said.
fn connection_limits(config: &ServerConfig) -> ConnectionLimits {
    let mut limits = config.connections.clone();
    let per_connection = if config.upstreams.upstreams.is_empty() {
        1
    } else {
        2
    };
    let fit = http::fd_limit::fit(limits.max_connections, per_connection);
    let shown =
        |limit: Option<u64>| limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    if fit.max_connections < limits.max_connections {
        tracing::warn!(
            "--max-connections {} does not fit the open-file limit ({}; raise it with \
             `ulimit -n` or LimitNOFILE=): at most {} connections are taken",
            limits.max_connections,
            shown(fit.soft_after),
            fit.max_connections
        );
    } else if fit.soft_after != fit.soft_before {
        tracing::debug!(
            "open-file limit raised from {} to {} for --max-connections {}",
            shown(fit.soft_before),
            shown(fit.soft_after),
            limits.max_connections
        );
    }
    limits.max_connections = fit.max_connections;
    limits
}

/// The store's upkeep in the background: retention (whose record it gives back) and the
/// write-ahead log's checkpoints.
fn housekeeping(
    config: &ServerConfig,
    store: &Store,
    telemetry: &Telemetry,
    shutdown: &CancellationToken,
) -> store::retention::RetentionBoard {
    checkpoint_periodically(store.clone(), shutdown.clone());
    store::retention::prune_periodically(
        store.clone(),
        (config.store.retention, config.store.retention_every),
        telemetry.retention_metrics(),
        shutdown.clone(),
    )
}

/// With `--replay`: the player, the only producer of a replaying server.
fn play_any_recording(
    config: &ServerConfig,
    recorder: &Recorder,
    hub: &Hub,
    identity: &Identity,
    shutdown: &CancellationToken,
) {
    if let Some(replay) = config.replay.clone() {
        tokio::spawn(replay::play(
            replay,
            recorder.clone(),
            hub.clone(),
            identity.id.clone(),
            shutdown.clone(),
        ));
    }
}

/// The listening socket and its address (the real port when asked for port 0).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServerError> {
    let bind_error = |source| ServerError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

/// The writer, and what tells the runs another instance took from this one.
fn start_writer(
    config: &ServerConfig,
    store: &Store,
    feed: &Feed,
    health: &StoreHealth,
    identity: &Identity,
    shutdown: &CancellationToken,
    telemetry: &Telemetry,
) -> (
    Recorder,
    JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (lost_sender, lost) = tokio::sync::mpsc::unbounded_channel();
    let (recorder, writer) = Recorder::start(
        WriterSetup {
            store: store.clone(),
            feed: feed.clone(),
            health: health.clone(),
            gather_window: config.events.streams.flush_window,
            instance: identity.id.clone(),
            lost: lost_sender,
            redaction: config.store.redaction,
        },
        shutdown.clone(),
        telemetry.clone(),
    );
    (recorder, writer, lost)
}

/// Registers this instance, takes over what stopped servers left, and keeps it a member: the
/// heartbeat and lease watch, notifications from the others, and runs they took from it.
async fn join_the_board(
    store: &Store,
    identity: &Identity,
    runs: &Runs,
    (feed, mut lost): (Feed, tokio::sync::mpsc::UnboundedReceiver<String>),
    health: &StoreHealth,
    shutdown: &CancellationToken,
) -> Result<producers::membership::Roster, StoreError> {
    let roster = producers::membership::join(store, identity).await?;
    runs.recover().await?;
    producers::membership::keep(
        store.clone(),
        identity.clone(),
        runs.clone(),
        roster.clone(),
        health.clone(),
        shutdown.clone(),
    );
    producers::notifications::listen(store, feed, runs.clone(), health.clone(), shutdown.clone());
    let losing = runs.clone();
    tokio::spawn(async move {
        while let Some(run_id) = lost.recv().await {
            losing.lose(&run_id);
        }
    });
    Ok(roster)
}

/// This instance's name: `--instance-name`, else host:port.
fn instance_name(config: &ServerConfig) -> String {
    config
        .store
        .instance_name
        .clone()
        .unwrap_or_else(|| default_instance_name(config.addr))
}

/// `host:port`: what tells instances apart on a board that several machines share.
fn default_instance_name(addr: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", addr.port())
}

/// `--scrape`'s model servers and every `--upstream`, each once: an upstream's own state is
/// read as a scraped server's is, with no extra flag.
fn scrape_config(config: &ServerConfig) -> ScrapeConfig {
    let mut scrape = config.scrape.clone();
    for url in upstream::UpstreamPool::urls(&config.upstreams) {
        let root = scrape::server_root(url);
        if !scrape
            .urls
            .iter()
            .any(|known| scrape::server_root(known) == root)
        {
            scrape.urls.push(url.to_owned());
        }
    }
    scrape
}

/// The cross-site and Host checks for a server listening on `addr`.
fn guard_for(
    config: &ServerConfig,
    cors_origins: &[axum::http::HeaderValue],
    addr: SocketAddr,
) -> Guard {
    Guard::new(
        config.access.requires_token(),
        cors_origins
            .iter()
            .filter_map(|origin| origin.to_str().ok().map(str::to_owned))
            .collect(),
        addr,
        config.requests.max_body_bytes,
        config.proxy.max_body_bytes,
    )
}

/// The benchmark board: fed by this server's runner, or by the log it follows.
fn benchmarks(
    config: &ServerConfig,
    runs: &Runs,
    store: &Store,
    hub: &Hub,
    shutdown: &CancellationToken,
) -> (BenchmarkBoard, BenchmarkRunner) {
    let board = match &config.benchmark_log {
        Some(path) => {
            let board = BenchmarkBoard::for_log(path);
            benchmark::watch_log(board.clone(), path.clone(), shutdown.clone());
            board
        }
        None => BenchmarkBoard::for_api(),
    };
    let seed = config
        .generator
        .seed
        .map_or_else(crate::producers::rng::SplitMix64::from_entropy, |seed| {
            crate::producers::rng::SplitMix64::new(seed.rotate_left(29))
        });
    let runner = BenchmarkRunner {
        board: board.clone(),
        runs: runs.clone(),
        store: store.clone(),
        hub: hub.clone(),
        shutdown: shutdown.clone(),
        rng: Arc::new(Mutex::new(seed)),
    };
    (board, runner)
}

/// Each `--cors-origin` as a header value, or the one that is not an origin.
fn parse_cors_origins(origins: &[String]) -> Result<Vec<axum::http::HeaderValue>, ServerError> {
    origins
        .iter()
        .map(|origin| {
            let trimmed = origin.trim().trim_end_matches('/');
            // An origin is exactly scheme, host and port: what a browser sends in `Origin`.
            // Anything else (a path, a user, a wildcard such as `http://*.example`, which no
            // browser sends) would be compared literally and never match.
            let exact = reqwest::Url::parse(trimmed).ok().filter(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some_and(|host| {
                        !host.is_empty()
                            && host.chars().all(|c| {
                                c.is_ascii_alphanumeric()
                                    || matches!(c, '-' | '.' | ':' | '[' | ']')
                            })
                    })
                    && url.origin().ascii_serialization() == trimmed
            });
            exact
                .and_then(|_| axum::http::HeaderValue::from_str(trimmed).ok())
                .ok_or_else(|| ServerError::BadOrigin(origin.clone()))
        })
        .collect()
}

/// Checkpoints a SQLite file's write-ahead log every second until shutdown, beside the writer
/// (see `store::sqlite_setup`). A failure is logged at debug level: the next turn, or the
/// automatic checkpoint, does it.
fn checkpoint_periodically(store: Store, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            if let Err(error) = store.checkpoint().await {
                tracing::debug!(%error, "a checkpoint of the write-ahead log did not run");
            }
        }
    });
}
