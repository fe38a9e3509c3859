//! `serve --upstream [NAME=]URL`: runs generated on real OpenAI-compatible model servers.
//!
//! The pool reads each upstream's `GET /models` at start and every 30 s, and resolves a run's
//! model (through `--model-alias`) to the upstream that serves it. `chain` walks a run's agents,
//! each step one streaming `POST /chat/completions` sent by `step`; `answer` reads its body (the
//! proxy's calls are read by the same code); `chunk` reads the chunks, `meter` measures them, `retry` decides what is
//! tried again.

pub(crate) mod answer;
pub(crate) mod chain;
pub(crate) mod chunk;
pub(crate) mod keep_alive;
pub(crate) mod meter;
pub(crate) mod pace;
pub(crate) mod reading;
pub(crate) mod request;
mod retry;
pub mod scrub;
pub mod spec;
pub(crate) mod step;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;

/// How long a connection to a model server may sit idle and still be used (below the 5 s
/// after which the usual servers close theirs).
const UPSTREAM_IDLE_CONNECTION: Duration = Duration::from_secs(4);
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use runboard_api::clock::now_rfc3339;
use runboard_api::{ModelInfo, UpstreamModels};

pub use chain::run;
pub use spec::{ApiKey, UpstreamSpec};

/// How often each upstream's model list is read.
pub const MODELS_EVERY: Duration = Duration::from_secs(30);

/// How long one read of a model list may take.
const MODELS_TIMEOUT: Duration = Duration::from_secs(5);

/// A call or run for a model no list names reads the lists again first, unless every one was
/// read this recently and without error (a wrong model name does not read them per call).
const REREAD_AFTER: Duration = Duration::from_secs(1);

/// Everything `--upstream` and its companions say.
#[derive(Debug, Clone, Default)]
pub struct UpstreamConfig {
    /// The model servers, in the order given; the first serves runs that name no model.
    pub upstreams: Vec<UpstreamSpec>,
    /// `--model-alias ALIAS=MODEL`.
    pub aliases: Vec<(String, String)>,
    /// Requests in flight per upstream at most (`--upstream-concurrency`); `None` is no limit
    /// beyond `--concurrency`.
    pub concurrency: Option<usize>,
    /// The longest silence a stream may keep (before its headers, or between two reads).
    pub idle_timeout: Duration,
    /// The shortest time between two `node_update`s of one run (20 per second at most).
    pub update_every: Duration,
    /// Output tokens per step when a run does not say (`--upstream-max-tokens`).
    pub max_tokens: u64,
}

impl UpstreamConfig {
    /// No upstreams, and the defaults for when there are some.
    pub fn none() -> Self {
        Self {
            upstreams: Vec::new(),
            aliases: Vec::new(),
            concurrency: None,
            idle_timeout: Duration::from_secs(120),
            update_every: Duration::from_millis(50),
            max_tokens: chain::DEFAULT_MAX_TOKENS,
        }
    }
}

/// The upstreams runs are generated on; cheap to clone.
#[derive(Debug, Clone)]
pub struct UpstreamPool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    upstreams: Vec<Arc<Upstream>>,
    aliases: HashMap<String, String>,
    http: reqwest::Client,
    config: UpstreamConfig,
    /// When the last read on demand began; held while one is under way, so calls waiting
    /// for a read share it.
    rereads: tokio::sync::Mutex<Option<Instant>>,
}

/// One upstream: where it is, what it serves, and its request slots.
#[derive(Debug)]
pub struct Upstream {
    /// Where it is and its key.
    pub spec: UpstreamSpec,
    /// Requests in flight at most, when limited.
    slots: Option<Arc<Semaphore>>,
    models: Mutex<ModelsRead>,
    /// Whether proxied streams may share its kept-alive connections.
    pub streams: keep_alive::StreamConnections,
}

/// The last read of an upstream's model list.
#[derive(Debug, Clone, Default)]
struct ModelsRead {
    models: Vec<ModelInfo>,
    error: Option<String>,
    checked_at: Option<String>,
    read_at: Option<Instant>,
}

/// The upstream and model a run's request goes to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The upstream.
    pub upstream: Arc<Upstream>,
    /// What the run asked for (an alias, or the model itself).
    pub asked: String,
    /// The model the upstream serves it with.
    pub model: String,
}

impl UpstreamPool {
    /// A pool of `config`'s upstreams, or `None` without any. Reads every model list once
    /// before it returns (each bounded by a short timeout), then every 30 s until `shutdown`.
    pub async fn start(config: &UpstreamConfig, shutdown: &CancellationToken) -> Option<Self> {
        if config.upstreams.is_empty() {
            return None;
        }
        let http = runboard_sse::http::client_builder()
            .connect_timeout(Duration::from_secs(10))
            // Model servers close a kept-alive connection after 5 idle seconds (uvicorn, as
            // vLLM and llama-cpp-python run it; llama.cpp's own server). A call sent on one
            // just as it closes fails, and runboard never sends a call twice: so a connection
            // idle for 4 s is not used again.
            .pool_idle_timeout(UPSTREAM_IDLE_CONNECTION)
            .build()
            .unwrap_or_default();
        let upstreams = config
            .upstreams
            .iter()
            .map(|spec| {
                Arc::new(Upstream {
                    spec: spec.clone(),
                    slots: config
                        .concurrency
                        .map(|n| Arc::new(Semaphore::new(n.max(1)))),
                    models: Mutex::new(ModelsRead::default()),
                    streams: keep_alive::StreamConnections::default(),
                })
            })
            .collect();
        let pool = Self {
            inner: Arc::new(PoolInner {
                upstreams,
                aliases: config.aliases.iter().cloned().collect(),
                http,
                config: config.clone(),
                rereads: tokio::sync::Mutex::new(None),
            }),
        };
        pool.refresh().await;
        let every = pool.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(MODELS_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticks.tick() => every.refresh().await,
                }
            }
        });
        Some(pool)
    }

    /// The settings the pool was made with.
    pub fn config(&self) -> &UpstreamConfig {
        &self.inner.config
    }

    /// The HTTP client every request shares (one connection pool per upstream).
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The upstreams' base URLs, for `--scrape`.
    pub fn urls(config: &UpstreamConfig) -> impl Iterator<Item = &str> {
        config.upstreams.iter().map(|spec| spec.base_url.as_str())
    }

    /// Reads every upstream's model list now, all at once.
    pub async fn refresh(&self) {
        let reads = self
            .inner
            .upstreams
            .iter()
            .map(|upstream| read_models(&self.inner.http, upstream));
        futures_util::future::join_all(reads).await;
    }

    /// Every model of every upstream, and each upstream's state.
    pub fn models(&self) -> (Vec<ModelInfo>, Vec<UpstreamModels>) {
        let mut models = Vec::new();
        let mut states = Vec::new();
        for upstream in &self.inner.upstreams {
            let read = upstream.read();
            models.extend(read.models.iter().cloned());
            states.push(UpstreamModels {
                name: upstream.spec.name.clone(),
                url: upstream.spec.display_url(),
                reachable: read.error.is_none() && read.read_at.is_some(),
                error: read.error.clone(),
                models: read.models.len() as u64,
                checked_at: read.checked_at.clone(),
            });
        }
        (models, states)
    }

    /// The upstream and model for a run's `params.model` (through the aliases); no model
    /// names the first upstream's first model. When no list names it, the lists are read once
    /// more first (an upstream that came up after runboard, or a model loaded since); the
    /// error says which upstream is unreachable and why, or what they serve.
    pub async fn resolve(&self, asked: Option<&str>) -> Result<Target, ResolveError> {
        let arrived = Instant::now();
        match self.try_resolve(asked) {
            Ok(target) => Ok(target),
            Err(_) if self.reread(arrived).await => self.try_resolve(asked),
            Err(error) => Err(error),
        }
    }

    /// Reads every upstream's list again, once for all the calls that wait on it: a call
    /// takes the result of any read that began after it arrived. False when nothing was
    /// read, because every list was read without error within [`REREAD_AFTER`].
    async fn reread(&self, arrived: Instant) -> bool {
        let mut last = self.inner.rereads.lock().await;
        if last.is_some_and(|began| began >= arrived) {
            return true;
        }
        let fresh = self.inner.upstreams.iter().all(|upstream| {
            let read = upstream.read();
            read.error.is_none() && read.read_at.is_some_and(|at| at.elapsed() < REREAD_AFTER)
        });
        if fresh {
            return false;
        }
        *last = Some(Instant::now());
        futures_util::future::join_all(
            self.inner
                .upstreams
                .iter()
                .map(|upstream| read_models(&self.inner.http, upstream)),
        )
        .await;
        true
    }

    fn try_resolve(&self, asked: Option<&str>) -> Result<Target, ResolveError> {
        let upstreams = &self.inner.upstreams;
        let Some(asked) = asked else {
            let first = &upstreams[0];
            let read = first.read();
            if let Some(error) = &read.error {
                return Err(ResolveError::Unavailable(first.unreachable(error)));
            }
            let model = read.models.first().map(|m| m.id.clone()).ok_or_else(|| {
                ResolveError::Unavailable(format!(
                    "upstream {} ({}) lists no models",
                    first.spec.name,
                    first.spec.display_url()
                ))
            })?;
            return Ok(Target {
                upstream: Arc::clone(first),
                asked: model.clone(),
                model,
            });
        };
        let model = self.inner.aliases.get(asked).map_or(asked, String::as_str);
        if let Some(upstream) = upstreams
            .iter()
            .find(|upstream| upstream.read().models.iter().any(|m| m.id == model))
        {
            return Ok(Target {
                upstream: Arc::clone(upstream),
                asked: asked.to_owned(),
                model: model.to_owned(),
            });
        }
        let unreachable: Vec<String> = upstreams
            .iter()
            .filter_map(|upstream| {
                let error = upstream.read().error?;
                Some(upstream.unreachable(&error))
            })
            .collect();
        let shown = if model == asked {
            format!("model {asked:?}")
        } else {
            format!("model {asked:?} (alias of {model:?})")
        };
        if unreachable.is_empty() {
            let (known, _) = self.models();
            let names: Vec<&str> = known.iter().map(|m| m.id.as_str()).take(12).collect();
            Err(ResolveError::NotServed(format!(
                "no upstream serves {shown}; they serve: {}",
                names.join(", ")
            )))
        } else {
            Err(ResolveError::Unavailable(format!(
                "no reachable upstream serves {shown}; {}",
                unreachable.join("; ")
            )))
        }
    }
}

/// Why a run's or a call's model found no upstream; the proxy answers 404 or 502 by it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Every upstream answered, and none lists the model.
    #[error("{0}")]
    NotServed(String),
    /// An upstream that might serve it cannot be reached (or lists no models at all).
    #[error("{0}")]
    Unavailable(String),
}

impl Upstream {
    fn read(&self) -> ModelsRead {
        self.models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn unreachable(&self, error: &str) -> String {
        format!(
            "upstream {} ({}) is unreachable: {error}",
            self.spec.name,
            self.spec.display_url()
        )
    }

    /// A request slot on this upstream, when they are limited.
    pub async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.slots {
            Some(slots) => Arc::clone(slots).acquire_owned().await.ok(),
            None => None,
        }
    }
}

/// The upstreams' models as a table for people: one line per model, columns aligned.
pub fn models_table(models: &[ModelInfo]) -> String {
    let rows: Vec<[String; 4]> = models
        .iter()
        .map(|model| {
            [
                model.id.clone(),
                model.upstream.clone().unwrap_or_default(),
                model
                    .context_length
                    .map_or_else(|| "?".into(), |c| c.to_string()),
                model.owned_by.clone().unwrap_or_default(),
            ]
        })
        .collect();
    runboard_api::units::text_table(&["id", "upstream", "context", "owned by"], &rows)
}

/// `GET /models`, as `OpenAI` and every compatible server answer it.
#[derive(Deserialize)]
struct ModelsAnswer {
    #[serde(default)]
    data: Vec<WireModel>,
}

#[derive(Deserialize)]
struct WireModel {
    id: String,
    #[serde(default)]
    owned_by: Option<String>,
    /// vLLM's context length.
    #[serde(default)]
    max_model_len: Option<u64>,
    /// llama.cpp's model facts.
    #[serde(default)]
    meta: Option<WireMeta>,
}

#[derive(Deserialize)]
struct WireMeta {
    #[serde(default)]
    n_ctx_train: Option<u64>,
    #[serde(default)]
    size: Option<u64>,
}

/// Reads one upstream's model list and keeps the result (or the reason it failed).
async fn read_models(http: &reqwest::Client, upstream: &Upstream) {
    let spec = &upstream.spec;
    let result = fetch_models(http, upstream)
        .await
        .map_err(|error| spec.redact(&error));
    if let Err(error) = &result {
        tracing::warn!(upstream = %spec.name, %error, "could not read the upstream's models");
    }
    let mut read = upstream
        .models
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    read.read_at = Some(Instant::now());
    read.checked_at = Some(now_rfc3339());
    match result {
        Ok(models) => {
            read.models = models;
            read.error = None;
        }
        // The last list is kept: runs resolve nothing on an unreachable upstream anyway, and
        // the Models view shows what it served beside the error.
        Err(error) => read.error = Some(error),
    }
}

async fn fetch_models(
    http: &reqwest::Client,
    upstream: &Upstream,
) -> Result<Vec<ModelInfo>, String> {
    let spec = &upstream.spec;
    let url = format!("{}/models", spec.base_url);
    let mut request = http.get(&url).timeout(MODELS_TIMEOUT);
    if let Some(key) = &spec.key {
        request = request.header(reqwest::header::AUTHORIZATION, key.bearer());
    }
    let response = request
        .send()
        .await
        .map_err(|error| format!("could not reach it: {}", reason(&error)))?;
    upstream.streams.heard(response.headers(), &spec.name);
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|error| format!("the model list broke off: {}", reason(&error)))?;
    if !status.is_success() {
        return Err(format!(
            "GET /models answered HTTP {}{}",
            status.as_u16(),
            answer::error_detail(&body, spec)
        ));
    }
    let answer: ModelsAnswer = serde_json::from_slice(&body).map_err(|error| {
        format!("GET /models answered something that is not a model list: {error}")
    })?;
    Ok(answer
        .data
        .into_iter()
        .map(|model| ModelInfo {
            name: model.id.clone(),
            id: model.id,
            size_bytes: model.meta.as_ref().and_then(|meta| meta.size),
            context_length: model
                .max_model_len
                .or_else(|| model.meta.as_ref().and_then(|meta| meta.n_ctx_train)),
            tok_per_sec: None,
            upstream: Some(spec.name.clone()),
            owned_by: model.owned_by,
        })
        .collect())
}

/// A transport error with its causes ("connection refused" is usually a cause).
fn reason(error: &reqwest::Error) -> String {
    let text = runboard_sse::error_with_causes(error);
    if error.is_timeout() {
        format!("timed out ({text})")
    } else {
        text
    }
}
