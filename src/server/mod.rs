//! The reference server (`runboard serve`): the runs API over axum, an SQL store, a hub that
//! fans persisted events out to every stream, and a synthetic generator so it works out of the
//! box. The console embeds it; tests run it on port 0.

mod auth;
pub mod bench;
pub mod catalog;
pub mod clock;
mod failure;
pub mod generator;
mod hub;
mod recorder;
mod requests;
mod requests_stream;
mod routes;
mod runs;
mod sse_out;
pub mod store;
mod stream;
pub mod web_bundle;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use generator::GeneratorConfig;
pub use requests::DISABLED_MESSAGE;
pub use requests_stream::RequestStreamSettings;
pub use routes::MAX_BENCH_TASKS;
pub use routes::{DEFAULT_LIST_LIMIT, FEATURES, MAX_LIST_LIMIT};
pub use store::{DbLocation, StoreError};
pub use stream::StreamSettings;
pub use web_bundle::WebBundle;

use auth::RequiredToken;
use bench::{BenchBoard, BenchRunner};
use hub::Hub;
use recorder::Recorder;
use requests::RequestTracker;
use routes::AppState;
use runs::Runs;
use store::Store;
use stream::StreamSource;

/// The default address: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9010";

/// How long shutdown waits for connections to finish before it drops them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Everything `runboard serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Where the runs are stored.
    pub db: DbLocation,
    /// Requests must carry `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Allow listening beyond loopback without a token.
    pub insecure: bool,
    /// Runs generating at once; the rest wait as `queued`.
    pub concurrency: usize,
    /// The synthetic generator's settings.
    pub generator: GeneratorConfig,
    /// `retry:` and keep-alive of every stream.
    pub streams: StreamSettings,
    /// Events the hub keeps for slow subscribers before they catch up from the store.
    pub broadcast_capacity: usize,
    /// Request body limit in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Task text limit in characters (422 beyond).
    pub max_task_chars: usize,
    /// Offer `/api/events`. Off, the server behaves like seed 000's: per-run streams only.
    pub events_endpoint: bool,
    /// Track generation requests for `/metrics/active-requests`.
    pub request_metrics: bool,
    /// The active-requests stream.
    pub request_stream: RequestStreamSettings,
    /// Follow the benchmark that writes this log instead of running benchmarks here.
    pub benchmark_log: Option<PathBuf>,
    /// The web console served at `/`.
    pub web: WebBundle,
    /// Origins whose pages may call the API (CORS), e.g. `https://dash.example.com`.
    pub cors_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADDR
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9010))),
            db: DbLocation::default_file(),
            token: None,
            insecure: false,
            concurrency: 18,
            generator: GeneratorConfig::default(),
            streams: StreamSettings {
                retry: Duration::from_secs(2),
                keepalive: Duration::from_secs(15),
            },
            broadcast_capacity: 4096,
            max_body_bytes: 64 * 1024,
            max_task_chars: 4096,
            events_endpoint: true,
            request_metrics: true,
            request_stream: RequestStreamSettings::default(),
            benchmark_log: None,
            web: WebBundle::None,
            cors_origins: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// Refuses a setup that would expose runs to the network without a token.
    pub fn check_exposure(&self) -> Result<(), ServerError> {
        let has_token = self.token.as_deref().is_some_and(|t| !t.is_empty());
        if self.addr.ip().is_loopback() || has_token || self.insecure {
            Ok(())
        } else {
            Err(ServerError::Exposed(self.addr))
        }
    }
}

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
    /// A `--cors-origin` is not an origin.
    #[error("--cors-origin {0:?} is not an origin such as https://dash.example.com")]
    BadOrigin(String),
}

/// A server that is running. Stop it with [`stop`](Self::stop).
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    serve: JoinHandle<std::io::Result<()>>,
    recorder: Recorder,
    store: Store,
}

impl RunningServer {
    /// The address it listens on (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops promptly: streams end, generation stops (running runs stay `running` and are failed
    /// at the next start), pending events are stored, connections close.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let mut serve = self.serve;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut serve)
            .await
            .is_err()
        {
            serve.abort();
        }
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.recorder.flush()).await;
        self.store.close().await;
    }
}

/// Opens the store, recovers from an earlier stop, binds, and starts serving.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    config.check_exposure()?;
    let cors_origins = config
        .cors_origins
        .iter()
        .map(|origin| {
            let trimmed = origin.trim().trim_end_matches('/');
            let host = trimmed
                .strip_prefix("http://")
                .or_else(|| trimmed.strip_prefix("https://"));
            let valid = host.is_some_and(|host| !host.is_empty() && !host.contains('/'));
            valid
                .then(|| axum::http::HeaderValue::from_str(trimmed).ok())
                .flatten()
                .ok_or_else(|| ServerError::BadOrigin(origin.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let store = Store::open(&config.db).await?;
    let sequences = store.sequences().await?;
    let hub = Hub::new(config.broadcast_capacity);
    let (recorder, _writer) = Recorder::start(store.clone(), hub.clone(), sequences.last_seq);
    let shutdown = CancellationToken::new();
    let requests = RequestTracker::new(config.request_metrics);
    let runs = Runs::new(
        recorder.clone(),
        store.clone(),
        config.generator.clone(),
        config.concurrency,
        sequences.last_ord,
        shutdown.clone(),
        requests.clone(),
    );
    runs.recover().await?;
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.addr,
        source,
    })?;
    let bench = match &config.benchmark_log {
        Some(path) => {
            let board = BenchBoard::for_log(path);
            bench::watch_log(board.clone(), path.clone(), shutdown.clone());
            board
        }
        None => BenchBoard::for_api(),
    };
    let bench_runner = BenchRunner {
        board: bench.clone(),
        runs: runs.clone(),
        store: store.clone(),
        hub: hub.clone(),
        shutdown: shutdown.clone(),
        rng: Arc::new(Mutex::new(
            config
                .generator
                .seed
                .map_or_else(crate::rng::SplitMix64::from_entropy, |seed| {
                    crate::rng::SplitMix64::new(seed.rotate_left(29))
                }),
        )),
    };
    let state = AppState {
        runs,
        store: store.clone(),
        streams: StreamSource {
            store: store.clone(),
            hub,
            shutdown: shutdown.clone(),
            settings: config.streams.clone(),
        },
        max_body_bytes: config.max_body_bytes,
        max_task_chars: config.max_task_chars,
        events_endpoint: config.events_endpoint,
        requests,
        request_stream: config.request_stream.clone(),
        bench,
        bench_runner,
        web: config.web.clone(),
    };
    let app = routes::router(state, RequiredToken(config.token.clone()), &cors_origins);
    let serve = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    Ok(RunningServer {
        addr,
        shutdown,
        serve,
        recorder,
        store,
    })
}
