//! Everything `runboard serve` can be told, grouped by the part it configures: who may call
//! (`access`), what one connection and one request may take (`connections`, `requests`), the
//! store (`store`), the run queue (`runs`), the event streams (`events`), the active-requests
//! view (`active_requests`), and each producer's own settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ServerError;
use crate::events::stream::StreamSettings;
use crate::http::active_requests_stream::RequestStreamSettings;
use crate::http::listener::ConnectionLimits;
use crate::http::routes::RequestLimits;
use crate::http::tls::TlsFiles;
use crate::http::tokens::{Keyring, NamedToken};
use crate::http::web_bundle::WebBundle;
use crate::observe::scrape::ScrapeConfig;
use crate::producers::generator::GeneratorConfig;
use crate::producers::membership::DEFAULT_LEASE;
use crate::producers::proxy::ProxyConfig;
use crate::producers::replay::ReplayConfig;
pub use crate::producers::runs::DEFAULT_MAX_QUEUED;
use crate::producers::runs::RunLimits;
use crate::producers::upstream::UpstreamConfig;
use crate::store::{DbLocation, Retention};

/// The default address: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9010";

/// Finished runs are kept 30 days, and at most the newest 10 000 of them.
pub const DEFAULT_RETENTION: Retention = Retention {
    days: Some(30),
    runs: Some(10_000),
};

/// Everything `runboard serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Who may call the API, and from which pages.
    pub access: Access,
    /// Timeouts and caps of every connection.
    pub connections: ConnectionLimits,
    /// What one request may carry, and how long it may take to arrive.
    pub requests: RequestLimits,
    /// Where the runs are kept, for how long, and how servers sharing it tell each other apart.
    pub store: StoreSettings,
    /// Runs generating at once, and waiting.
    pub runs: RunLimits,
    /// The event streams.
    pub events: EventSettings,
    /// The active-requests view.
    pub active_requests: ActiveRequestSettings,
    /// The synthetic generator's settings.
    pub generator: GeneratorConfig,
    /// Model servers runs are generated on (`--upstream`); none runs the synthetic generator.
    pub upstreams: UpstreamConfig,
    /// The OpenAI-compatible proxy under `/v1`, offered with any `--upstream`.
    pub proxy: ProxyConfig,
    /// Model servers whose own metrics are read (`--scrape`).
    pub scrape: ScrapeConfig,
    /// Replay this recording instead of running anything (`--replay`); runs are not
    /// started, cancelled or generated.
    pub replay: Option<ReplayConfig>,
    /// Follow the benchmark that writes this log instead of running benchmarks here.
    pub benchmark_log: Option<PathBuf>,
    /// The web console served at `/`.
    pub web: WebBundle,
    /// The objective goodput is measured against (`--slo`); `None` measures none.
    pub slo: Option<runboard_api::Slo>,
    /// HTTPS with this certificate and key (`--tls-cert`, `--tls-key`); plain HTTP without.
    pub tls: Option<TlsFiles>,
    /// Runs as traces and the `GenAI` metrics to an OTLP receiver (`--otlp-endpoint`).
    pub otlp: Option<crate::OtlpConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADDR
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9010))),
            access: Access::default(),
            connections: ConnectionLimits::default(),
            requests: RequestLimits::default(),
            store: StoreSettings::default(),
            runs: RunLimits::default(),
            events: EventSettings::default(),
            active_requests: ActiveRequestSettings::default(),
            generator: GeneratorConfig::default(),
            upstreams: UpstreamConfig::none(),
            proxy: ProxyConfig::default(),
            scrape: ScrapeConfig::default(),
            replay: None,
            benchmark_log: None,
            web: WebBundle::None,
            slo: None,
            tls: None,
            otlp: None,
        }
    }
}

impl ServerConfig {
    /// Refuses a token no client could present, and a setup that would expose runs to the
    /// network without a token.
    pub fn check_exposure(&self) -> Result<(), ServerError> {
        let access = &self.access;
        // An `Authorization` header carries visible ASCII: a token with anything else could
        // start a server no client can ever present it to.
        if let Some(token) = &access.token
            && (token.trim().is_empty()
                || token.trim() != token
                || !token.chars().all(|c| matches!(c, ' '..='~')))
        {
            return Err(ServerError::BadToken);
        }
        if self.addr.ip().is_loopback() || access.requires_token() || access.insecure {
            Ok(())
        } else {
            Err(ServerError::Exposed(self.addr))
        }
    }
}

/// Who may call the API, and from which pages.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Requests must carry `Authorization: Bearer <token>` when set: the single admin token
    /// (`--token`).
    pub token: Option<String>,
    /// Named tokens with their roles (`--tokens FILE`, `RUNBOARD_TOKENS`), beside the single
    /// token.
    pub tokens: Vec<NamedToken>,
    /// Allow listening beyond loopback without a token.
    pub insecure: bool,
    /// Origins whose pages may call the API (CORS), e.g. `https://dash.example.com`.
    pub cors_origins: Vec<String>,
    /// What viewers are not sent (`--redact-viewers`): the store keeps the text and admins
    /// read it; viewers see runs without prompts (`prompts`) or without any text (`text`).
    pub redact_viewers: Option<runboard_api::Redaction>,
}

impl Access {
    /// Whether requests must carry a token.
    pub fn requires_token(&self) -> bool {
        self.token.as_deref().is_some_and(|t| !t.is_empty()) || !self.tokens.is_empty()
    }

    /// The tokens the server accepts.
    pub(crate) fn keyring(&self) -> Keyring {
        Keyring::new(self.token.as_deref(), &self.tokens).redacting_for_viewers(self.redact_viewers)
    }
}

/// Where the runs are kept, for how long, and how servers sharing the store tell each other
/// apart.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Where the runs are stored.
    pub db: DbLocation,
    /// Which finished runs are removed.
    pub retention: Retention,
    /// How often retention runs.
    pub retention_every: Duration,
    /// How long other instances sharing the store wait without this one's heartbeat before
    /// they fail its running runs (`--lease-secs`).
    pub lease: Duration,
    /// The name this instance goes by on `/api/health` and in errors about it; by default
    /// the host name and the port.
    pub instance_name: Option<String>,
    /// What is left out of the record (`--redact`): no prompts, or no text at all. The proxy's
    /// clients still get whole answers; only what runboard stores and sends is redacted.
    pub redaction: Option<runboard_api::Redaction>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            db: DbLocation::default_file(),
            retention: DEFAULT_RETENTION,
            retention_every: Duration::from_secs(10),
            lease: DEFAULT_LEASE,
            instance_name: None,
            redaction: None,
        }
    }
}

/// The event streams.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// `retry:` and keep-alive of every stream.
    pub streams: StreamSettings,
    /// Events the hub keeps for slow subscribers before they catch up from the store.
    pub broadcast_capacity: usize,
    /// Offer `/api/events`. Off, clients follow each run on its own stream, as with servers
    /// that have no global stream.
    pub endpoint: bool,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            streams: StreamSettings::default(),
            broadcast_capacity: 4096,
            endpoint: true,
        }
    }
}

/// The active-requests view.
#[derive(Debug, Clone)]
pub struct ActiveRequestSettings {
    /// Track generation requests for `/metrics/active-requests`.
    pub enabled: bool,
    /// Its stream.
    pub stream: RequestStreamSettings,
}

impl Default for ActiveRequestSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            stream: RequestStreamSettings::default(),
        }
    }
}
