//! The console's network side: one watcher per server (health, then the `/api/events` stream or
//! per-run streams, and the feed poll), plus one-shot tasks for launch, cancel and details. Every
//! result goes to the UI through the [`Outbox`]; nothing here touches the board.

use runboard_api::Feature;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::board::{Inbound, RunKey, ServerId};
use crate::network::Spawner;
use runboard_api::{
    AccessInfo, Action, ApiClient, ApiError, CreateBenchmark, CreateRun, Health, MODELS_JOB,
    RunEvent, RunMode, RunQuery, StreamOptions, StreamUpdate, reconnect_policy,
};
use runboard_sse::Backoff;
use runboard_sse::runtime::sleep;

use super::inbox::Outbox;
use super::pump::{Flow, open, pump};
use super::side_streams::{self, TaskGuard, follow_upstreams};

/// How many runs a feed poll asks for.
const FEED_PAGE: u32 = 50;

/// A batch to launch.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchRequest {
    /// The task text.
    pub task: String,
    /// How many runs.
    pub count: u32,
    /// Milliseconds between submissions.
    pub stagger_ms: u64,
    /// Queued or inline.
    pub mode: RunMode,
    /// The runs' `params` (an object; empty for the server's defaults).
    pub params: serde_json::Value,
}

/// Starts network work for the UI.
#[derive(Debug, Clone)]
pub struct Connector {
    spawner: Spawner,
    outbox: Outbox,
    clients: Vec<ApiClient>,
    feed_poll: Duration,
    /// Set for a stepped replay: the console polls the feed on the replay's clock
    /// ([`Connector::poll_runs`]) instead of a timer here.
    polls_on_demand: bool,
    /// One-shot requests whose answer is not in the inbox yet.
    pending: Arc<AtomicUsize>,
    /// The id of the last `/api/events` event put in the inbox.
    last_event_id: Arc<AtomicU64>,
}

impl Connector {
    /// A connector for these servers (in the board's order).
    pub fn new(
        spawner: Spawner,
        outbox: Outbox,
        clients: Vec<ApiClient>,
        feed_poll: Duration,
    ) -> Self {
        Self {
            spawner,
            outbox,
            clients,
            feed_poll,
            polls_on_demand: false,
            pending: Arc::new(AtomicUsize::new(0)),
            last_event_id: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The feed is polled only when [`Connector::poll_runs`] is called (a stepped replay polls
    /// on the recording's clock, so what a poll sees does not depend on the wall's).
    pub fn poll_on_demand(&mut self) {
        self.polls_on_demand = true;
    }

    /// One-shot requests (feed polls, details) whose answers have not reached the inbox.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// The id of the last `/api/events` event handed to the inbox (0: none yet).
    pub fn last_event_id(&self) -> u64 {
        self.last_event_id.load(Ordering::SeqCst)
    }

    /// Polls a server's run list once, for the feed.
    pub fn poll_runs(&self, server: ServerId) {
        let Some(client) = self.client(server) else {
            return;
        };
        let outbox = self.outbox.clone();
        let pending = Pending::start(&self.pending);
        self.spawner.spawn(async move {
            outbox.send(list_runs(&client, server).await).await;
            drop(pending);
        });
    }

    fn client(&self, server: ServerId) -> Option<ApiClient> {
        self.clients.get(server).cloned()
    }

    /// Adds a server (the board's next index) and starts watching it.
    pub fn add_server(&mut self, client: ApiClient) {
        self.clients.push(client);
        self.watch(self.clients.len() - 1);
    }

    /// Uses `token` for every server from now on, and watches `servers` again (those that
    /// refused the old one).
    pub fn set_token(&mut self, token: &str, servers: &[ServerId]) {
        let token = Some(token).filter(|t| !t.is_empty());
        for client in &mut self.clients {
            if let Ok(fresh) = ApiClient::new(client.base_url(), token) {
                *client = fresh;
            }
        }
        for &server in servers {
            self.watch(server);
        }
    }

    /// Starts watching every server.
    pub fn watch_all(&self) {
        for server in 0..self.clients.len() {
            self.watch(server);
        }
    }

    /// Health, then live events (when the server has `/api/events`), and the feed poll.
    fn watch(&self, server: ServerId) {
        let Some(client) = self.client(server) else {
            return;
        };
        let outbox = self.outbox.clone();
        let spawner = self.spawner.clone();
        let feed_poll = (!self.polls_on_demand).then_some(self.feed_poll);
        let last_event_id = Arc::clone(&self.last_event_id);
        self.spawner.spawn(async move {
            let mut backoff = Backoff::new(reconnect_policy());
            let (access, health) = loop {
                match access_and_health(&client).await {
                    Ok((access, Some(health))) => break (access, health),
                    Ok((access, None)) => {
                        // A token that may not read (a worker's): nothing to watch with it.
                        let name = access.name.as_deref().unwrap_or("given");
                        let message = format!(
                            "the token {name:?} is a {}'s: it may not watch the board. Give a \
                             viewer's or an admin's token",
                            access.role
                        );
                        outbox.send(Inbound::NeedsToken { server, message }).await;
                        return;
                    }
                    Err(error) if error.status() == Some(401) => {
                        // Retrying cannot help: the user must give a token, then we start again.
                        let message = error.to_string();
                        outbox.send(Inbound::NeedsToken { server, message }).await;
                        return;
                    }
                    Err(error) => {
                        let first = backoff.policy().initial_retry;
                        let wait = backoff.next_delay(first).unwrap_or(first);
                        let message = format!("{error}; retrying in {} s", wait.as_secs().max(1));
                        if !outbox.send(Inbound::ServerError { server, message }).await {
                            return;
                        }
                        sleep(wait).await;
                    }
                }
            };
            let has_events = health.has(Feature::Events);
            let has_workers = health.has(Feature::Workers);
            if health.has(Feature::Upstreams) {
                let upstreams = follow_upstreams(client.clone(), server, outbox.clone());
                spawner.spawn(upstreams);
            }
            // Start live at the head: history is the feed's job, not a replay of every event.
            let head = health.events_head.map(|head| head.to_string());
            if !outbox.send(Inbound::Access { server, access }).await
                || !outbox.send(Inbound::Health { server, health }).await
            {
                return;
            }
            if has_events {
                let url = client.events_url(&[]);
                spawner.spawn(follow(
                    client.clone(),
                    url,
                    server,
                    (None, Some(last_event_id)),
                    head,
                    outbox.clone(),
                ));
            }
            if let Some(every) = feed_poll {
                if has_workers {
                    spawner.spawn(poll_fleet(client.clone(), server, outbox.clone()));
                }
                poll_feed(client, server, outbox, every).await;
            }
        });
    }

    /// Follows one run on its own stream (for servers without `/api/events`).
    pub fn follow_run(&self, key: &RunKey) {
        let Some(client) = self.client(key.server) else {
            return;
        };
        let url = client.run_stream_url(&key.run_id);
        self.spawner.spawn(follow(
            client,
            url,
            key.server,
            (Some(key.run_id.clone()), None),
            None,
            self.outbox.clone(),
        ));
    }

    /// Submits a batch, staggered; each run's card appears as soon as it exists.
    pub fn launch(&self, server: ServerId, request: LaunchRequest) {
        let Some(client) = self.client(server) else {
            return;
        };
        let outbox = self.outbox.clone();
        self.spawner.spawn(async move {
            let body = CreateRun {
                task: request.task,
                mode: request.mode,
                params: request.params,
            };
            for index in 0..request.count {
                if index > 0 && request.stagger_ms > 0 {
                    sleep(Duration::from_millis(request.stagger_ms)).await;
                }
                let message = match client.create_run(&body).await {
                    Ok(run) => Inbound::Appeared {
                        server,
                        summary: run.summary,
                    },
                    Err(error) => {
                        let _ = outbox
                            .send(Inbound::ActionFailed {
                                server,
                                message: format!("launch stopped after {index}: {error}"),
                            })
                            .await;
                        return;
                    }
                };
                if !outbox.send(message).await {
                    return;
                }
            }
        });
    }

    /// Starts a models job; its `model_list` arrives as a data event. A server without
    /// `/api/events` is followed on the job's own stream.
    pub fn list_models(&self, server: ServerId, follow_job: bool) {
        let Some(client) = self.client(server) else {
            return;
        };
        let outbox = self.outbox.clone();
        let spawner = self.spawner.clone();
        self.spawner.spawn(async move {
            let request = CreateRun {
                task: MODELS_JOB.to_owned(),
                mode: RunMode::Queued,
                params: serde_json::json!({ "job": MODELS_JOB }),
            };
            match client.create_run(&request).await {
                Ok(detail) => {
                    if !outbox.send(Inbound::ModelsAsked { server }).await {
                        return;
                    }
                    if follow_job {
                        let run_id = detail.summary.run_id;
                        let url = client.run_stream_url(&run_id);
                        spawner.spawn(follow(
                            client,
                            url,
                            server,
                            (Some(run_id), None),
                            None,
                            outbox,
                        ));
                    }
                }
                Err(error) => {
                    let message = format!("could not list models: {error}");
                    outbox.send(Inbound::ActionFailed { server, message }).await;
                }
            }
        });
    }

    /// Starts a benchmark; its progress arrives on the benchmark stream.
    pub fn start_benchmark(&self, server: ServerId, request: CreateBenchmark) {
        let Some(client) = self.client(server) else {
            return;
        };
        let outbox = self.outbox.clone();
        self.spawner.spawn(async move {
            if let Err(error) = client.create_benchmark(&request).await {
                let message = format!("could not start the benchmark: {error}");
                outbox.send(Inbound::ActionFailed { server, message }).await;
            }
        });
    }

    /// Follows a server's benchmark stream while the returned guard lives.
    pub fn watch_benchmark(&self, server: ServerId) -> Option<TaskGuard> {
        self.view_stream(server, side_streams::watch_benchmark)
    }

    /// Follows a server's requests in flight while the returned guard lives.
    pub fn watch_requests(&self, server: ServerId) -> Option<TaskGuard> {
        self.view_stream(server, side_streams::watch_requests)
    }

    fn view_stream(
        &self,
        server: ServerId,
        start: fn(&Spawner, ApiClient, ServerId, Outbox) -> TaskGuard,
    ) -> Option<TaskGuard> {
        let client = self.client(server)?;
        Some(start(&self.spawner, client, server, self.outbox.clone()))
    }

    /// Cancels a run.
    pub fn cancel(&self, key: &RunKey) {
        let Some(client) = self.client(key.server) else {
            return;
        };
        let outbox = self.outbox.clone();
        let key = key.clone();
        self.spawner.spawn(async move {
            if let Err(error) = client.cancel(&key.run_id).await {
                let message = format!("cancel {}: {error}", key.run_id);
                outbox
                    .send(Inbound::ActionFailed {
                        server: key.server,
                        message,
                    })
                    .await;
            }
        });
    }

    /// Fetches a run's detail for the feed.
    pub fn fetch_detail(&self, key: &RunKey) {
        let Some(client) = self.client(key.server) else {
            return;
        };
        let outbox = self.outbox.clone();
        let key = key.clone();
        let pending = Pending::start(&self.pending);
        self.spawner.spawn(async move {
            let message = match client.run(&key.run_id).await {
                Ok(detail) => Inbound::Detail {
                    server: key.server,
                    detail,
                },
                Err(_) => Inbound::DetailFailed { key },
            };
            outbox.send(message).await;
            drop(pending);
        });
    }
}

/// Polls the run list every `every`, for the feed.
async fn poll_feed(client: ApiClient, server: ServerId, outbox: Outbox, every: Duration) {
    loop {
        if !outbox.send(list_runs(&client, server).await).await {
            return;
        }
        sleep(every).await;
    }
}

/// How often a server's fleet figures (goodput) are read.
const FLEET_EVERY: Duration = Duration::from_secs(2);

/// Reads the server's fleet figures every [`FLEET_EVERY`] while the console runs; a failed
/// read is skipped (the feed's poll reports the server's errors).
async fn poll_fleet(client: ApiClient, server: ServerId, outbox: Outbox) {
    loop {
        if let Ok(list) = client.workers().await
            && !outbox
                .send(Inbound::Fleet {
                    server,
                    fleet: list.fleet,
                })
                .await
        {
            return;
        }
        sleep(FLEET_EVERY).await;
    }
}

/// One page of the run list, newest first, as the feed takes it.
async fn list_runs(client: &ApiClient, server: ServerId) -> Inbound {
    let query = RunQuery {
        limit: Some(FEED_PAGE),
        ..RunQuery::default()
    };
    match client.list_runs(&query).await {
        Ok(list) => Inbound::Runs {
            server,
            runs: list.runs,
        },
        Err(error) => Inbound::ServerError {
            server,
            message: error.to_string(),
        },
    }
}

/// Counts a one-shot request from its start until it is dropped (after its answer is in the
/// inbox).
struct Pending(Arc<AtomicUsize>);

impl Pending {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Follows an event stream until it ends, reporting its events and connection states. `run`
/// names the run of a per-run stream; `last_id`, when given, is told each event's id once the
/// event is in the inbox.
async fn follow(
    client: ApiClient,
    url: String,
    server: ServerId,
    (run, last_id): (Option<String>, Option<Arc<AtomicU64>>),
    after: Option<String>,
    outbox: Outbox,
) {
    let options = StreamOptions {
        after,
        ..StreamOptions::default()
    };
    let Some(mut stream) = open::<RunEvent>(&client, &url, &options, server, &outbox).await else {
        return;
    };
    // The id of the event being sent, for `last_id` once it is in the inbox (0: none, which
    // `fetch_max` leaves alone).
    let sending = AtomicU64::new(0);
    let translate = |update: StreamUpdate<RunEvent>| {
        sending.store(0, Ordering::Relaxed);
        Flow::Send(match update {
            StreamUpdate::Event {
                decoded: event,
                raw,
            } => {
                sending.store(raw.id.parse::<u64>().unwrap_or(0), Ordering::Relaxed);
                Inbound::Event {
                    server,
                    event: match &run {
                        Some(run_id) => event.with_run_id(run_id),
                        None => event,
                    },
                }
            }
            // One bad event is reported and skipped; the stream goes on.
            StreamUpdate::Undecodable(error) => Inbound::ServerError {
                server,
                message: error.to_string(),
            },
            StreamUpdate::State(state) => Inbound::Link {
                server,
                run: run.clone(),
                state,
            },
            StreamUpdate::TooLarge { limit_bytes } => Inbound::ServerError {
                server,
                message: format!("dropped an event larger than {limit_bytes} bytes"),
            },
        })
    };
    let delivered = || {
        if let Some(last_id) = &last_id {
            last_id.fetch_max(sending.load(Ordering::Relaxed), Ordering::SeqCst);
        }
    };
    pump(&mut stream, &outbox, translate, delivered).await;
}

/// What our token may do on the server, then its health (`None` when the token may not read):
/// both before anything is watched, so the controls the token may not use are hidden from the
/// start.
async fn access_and_health(client: &ApiClient) -> Result<(AccessInfo, Option<Health>), ApiError> {
    let access = client.access().await?;
    if !access.may(Action::Read) {
        return Ok((access, None));
    }
    let health = client.health().await?;
    Ok((access, Some(health)))
}
