//! `serve --scrape URL`: reads each model server's Prometheus `/metrics` (and llama.cpp's
//! `/slots`) every interval and keeps the latest figures, for `GET /api/upstreams` and its
//! stream.

mod exposition;
mod reading;
mod slots;
mod window;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use runboard_api::{Engine, FigurePoint, ModelFigures, ScrapeState, Upstream, Upstreams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use exposition::Exposition;
use reading::Reading;
use window::FigureWindow;

/// Which model servers to read, and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeConfig {
    /// Base URLs of model servers (an `OpenAI` base ending in `/v1` is fine: metrics live at the
    /// root).
    pub urls: Vec<String>,
    /// Time between two reads of one server.
    pub every: Duration,
    /// How long one read may take.
    pub timeout: Duration,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            every: Duration::from_secs(2),
            timeout: Duration::from_millis(1500),
        }
    }
}

/// The latest figures of every model server read; cheap to clone.
#[derive(Debug, Clone)]
pub struct UpstreamsBoard {
    latest: watch::Receiver<Upstreams>,
}

impl UpstreamsBoard {
    /// Whether any server is read (the feature is offered).
    pub fn enabled(&self) -> bool {
        !self.latest.borrow().upstreams.is_empty()
    }

    /// The figures as last read.
    pub fn snapshot(&self) -> Upstreams {
        self.latest.borrow().clone()
    }

    /// A receiver that wakes on every new read.
    pub fn subscribe(&self) -> watch::Receiver<Upstreams> {
        self.latest.clone()
    }
}

/// Starts reading every server of `config` until `shutdown`.
pub fn start(config: &ScrapeConfig, shutdown: &CancellationToken) -> UpstreamsBoard {
    let initial = Upstreams {
        upstreams: config.urls.iter().map(Upstream::pending).collect(),
    };
    let (sender, latest) = watch::channel(initial);
    let http = runboard_sse::http::client_builder()
        .timeout(config.timeout)
        .build()
        .unwrap_or_default();
    for (index, url) in config.urls.iter().enumerate() {
        let reader = Reader {
            url: url.clone(),
            http: http.clone(),
            total: FigureWindow::default(),
            models: HashMap::new(),
            history: VecDeque::new(),
        };
        tokio::spawn(reader.run(index, sender.clone(), config.every, shutdown.clone()));
    }
    UpstreamsBoard { latest }
}

/// How much history a snapshot carries for the sparklines.
pub const HISTORY: Duration = Duration::from_secs(300);

/// Reads one server over and over, keeping what rates and quantiles need, and the figures of
/// the last [`HISTORY`].
struct Reader {
    url: String,
    http: reqwest::Client,
    total: FigureWindow,
    models: HashMap<String, FigureWindow>,
    history: VecDeque<FigurePoint>,
}

impl Reader {
    async fn run(
        mut self,
        index: usize,
        sender: watch::Sender<Upstreams>,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let mut upstream = tokio::select! {
                () = shutdown.cancelled() => return,
                upstream = self.read() => upstream,
            };
            self.remember(&mut upstream);
            sender.send_modify(|all| {
                if let Some(slot) = all.upstreams.get_mut(index) {
                    *slot = upstream;
                }
            });
        }
    }

    /// Adds a read to the history (an unread server's empty figures too: a gap is a gap) and
    /// gives the snapshot the history.
    fn remember(&mut self, upstream: &mut Upstream) {
        let at = unix_now();
        self.history.push_back(FigurePoint {
            at,
            figures: upstream.figures.clone(),
        });
        while self
            .history
            .front()
            .is_some_and(|point| at - point.at > HISTORY.as_secs_f64())
        {
            self.history.pop_front();
        }
        upstream.history = self.history.iter().cloned().collect();
    }

    /// One read of `/metrics` (and `/slots`).
    async fn read(&mut self) -> Upstream {
        let mut upstream = Upstream::pending(self.url.clone());
        upstream.scraped_at = Some(runboard_api::clock::now_rfc3339());
        let root = server_root(&self.url).to_owned();
        match self.get(&format!("{root}/metrics")).await {
            Err(error) => {
                upstream.state = ScrapeState::Error;
                upstream.error = Some(error);
            }
            Ok(None) => upstream.state = ScrapeState::NoMetrics,
            Ok(Some(body)) => {
                let page = Exposition::parse(&String::from_utf8_lossy(&body));
                if page.is_prometheus() {
                    self.take(&page, &mut upstream);
                } else {
                    upstream.state = ScrapeState::NoMetrics;
                }
            }
        }
        let may_have_slots = !matches!(upstream.engine, Some(Engine::Vllm | Engine::Sglang));
        if may_have_slots
            && upstream.state != ScrapeState::Error
            && let Ok(Some(body)) = self.get(&format!("{root}/slots")).await
        {
            upstream.slots = slots::parse_slots(&body);
        }
        upstream
    }

    fn take(&mut self, page: &Exposition, upstream: &mut Upstream) {
        let now = Instant::now();
        let reading = Reading::from_exposition(page);
        upstream.state = ScrapeState::Ok;
        upstream.engine = Some(reading.engine);
        upstream.figures = self.total.observe(now, &reading.total);
        upstream.models = reading
            .models
            .iter()
            .map(|(model, raw)| ModelFigures {
                model: model.clone(),
                figures: self
                    .models
                    .entry(model.clone())
                    .or_default()
                    .observe(now, raw),
            })
            .collect();
        if page.samples.is_empty() && page.unreadable_lines > 0 {
            upstream.state = ScrapeState::Error;
        }
        if let Some(line) = &page.first_unreadable {
            upstream.error = Some(format!(
                "{} line(s) of its metrics could not be read, the first: {line}",
                page.unreadable_lines
            ));
        }
    }

    /// The body of a 2xx answer; `None` for 404/405/501 (no such endpoint); an error otherwise.
    async fn get(&self, url: &str) -> Result<Option<bytes::Bytes>, String> {
        let response = self.http.get(url).send().await.map_err(|error| {
            format!(
                "could not reach {url}: {}",
                runboard_sse::error_with_causes(&error)
            )
        })?;
        let status = response.status();
        if matches!(status.as_u16(), 404 | 405 | 501) {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("{url} answered HTTP {}", status.as_u16()));
        }
        response.bytes().await.map(Some).map_err(|error| {
            format!(
                "{url} broke off: {}",
                runboard_sse::error_with_causes(&error)
            )
        })
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// A model server's base URL as given on the command line, checked: http(s) with a host.
pub fn check_url(text: &str) -> Result<String, String> {
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(text.trim_end_matches('/').to_owned())
        }
        _ => Err(format!(
            "expected an http(s) URL such as http://gpu1:8000, not {text:?}"
        )),
    }
}

/// Where a server's `/metrics` and `/slots` are: its root, also when given as an `OpenAI` base
/// (`…/v1`).
pub fn server_root(url: &str) -> &str {
    let url = url.trim_end_matches('/');
    url.strip_suffix("/v1").unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_live_at_the_servers_root() {
        assert_eq!(server_root("http://gpu1:8000/v1/"), "http://gpu1:8000");
        assert_eq!(server_root("http://gpu1:8000"), "http://gpu1:8000");
        assert_eq!(server_root("http://h/proxy/v1"), "http://h/proxy");
    }
}
