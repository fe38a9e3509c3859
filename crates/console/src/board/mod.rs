//! All console state, pure: no IO, no async, no drawing.
//!
//! [`Board::apply`] is the one way state changes. Time comes in as an argument (seconds on a
//! monotonic clock), so every rule — the tok/s EMA, stall detection, snippet choice — is tested
//! with a fake clock.

mod call_rates;
mod card;
mod feed;
mod keys;
pub(crate) mod link;
mod log;
mod rate;
mod requests;
mod upstreams;
mod worker;

use std::collections::{HashMap, HashSet, VecDeque};

pub use call_rates::{CALL_WINDOW_SECS, CallRates};
pub use card::Card;
pub use feed::{ChainLine, Feed, FeedEntry, StepLine, chain, summary_snippet};
pub use keys::{CardKey, RunKey, ServerId};
pub use link::Link;
pub use log::{Log, LogLine};
pub use rate::{RateSettings, TokenRate};
pub use requests::{IN_FLIGHT_WINDOW_SECS, RequestRow, Requests, RequestsFeed};
pub use runboard_api::BenchmarkTally;
pub use upstreams::{Figure, HISTORY_SECS, UpstreamsState};
pub use worker::Worker;

use runboard_api::{
    AccessInfo, Action as ApiAction, ActiveRequests, BenchmarkEvent, DataAction, Feature,
    FleetFigures, Health, MODELS_JOB, ModelList, NodeUpdate, Redaction, RunDetail, RunEvent,
    RunStatus, RunSummary, STEP_INTERRUPTED_ACTION, StoreStatus, Upstreams,
};
use runboard_sse::ConnectionState;

/// Settings the user can change.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    /// How tok/s is smoothed.
    pub rate: RateSettings,
    /// A running worker silent this long is shown as stalled.
    pub stall_after_secs: f64,
    /// Finished cards are cleared this long after they finished; `None` keeps them.
    pub auto_clear_after_secs: Option<f64>,
    /// A named worker with no call for this long leaves the grid (its calls stay in the
    /// feed).
    pub worker_idle_secs: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rate: RateSettings::default(),
            stall_after_secs: 10.0,
            auto_clear_after_secs: None,
            worker_idle_secs: 300.0,
        }
    }
}

/// A server the console watches.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Its base URL.
    pub url: String,
    /// A short name for tags: `host:port`.
    pub label: String,
    /// What `/api/health` said, once it answered.
    pub health: Option<Health>,
    /// What our token may do there (`/api/access`), once it answered.
    pub access: Option<AccessInfo>,
    /// The `/api/events` stream, when the server has one.
    pub link: Option<Link>,
    /// The last error talking to it, cleared by the next success.
    pub error: Option<String>,
    /// Its models, from the latest `model_list` data event.
    pub models: Option<ModelList>,
    /// A models job was asked for and its data has not come yet.
    pub models_pending: bool,
    /// Its benchmark, from `/api/benchmark-sse`.
    pub benchmark: BenchmarkTally,
    /// The benchmark stream's connection.
    pub benchmark_link: Option<Link>,
    /// Its requests in flight.
    pub requests: Requests,
    /// Set when it refused our token (or we had none): why, for the token prompt.
    pub needs_token: Option<String>,
    /// Whether its store takes writes, from `/api/health` and its streams' `store_status`.
    pub store: Option<StoreStatus>,
    /// The model servers it reads (`serve --scrape`), from `/api/upstreams/stream`.
    pub upstreams: UpstreamsState,
    /// Its fleet's last minute as it measures it (goodput against its `--slo`), from
    /// `/api/workers`.
    pub fleet: Option<FleetFigures>,
}

impl Server {
    /// A server at `url`, not yet contacted.
    pub fn new(url: &str) -> Self {
        let label = url
            .split("://")
            .nth(1)
            .unwrap_or(url)
            .trim_end_matches('/')
            .to_owned();
        Self {
            url: url.to_owned(),
            label,
            health: None,
            access: None,
            link: None,
            error: None,
            models: None,
            models_pending: false,
            benchmark: BenchmarkTally::default(),
            benchmark_link: None,
            requests: Requests::default(),
            upstreams: UpstreamsState::default(),
            fleet: None,
            needs_token: None,
            store: None,
        }
    }

    /// Whether our token may do `action` here: until the server says, it may (the server
    /// refuses what it must; hiding controls before it answers would make them flicker).
    pub fn may(&self, action: ApiAction) -> bool {
        self.access.as_ref().is_none_or(|access| access.may(action))
    }

    /// Why this server sends us no text, for people; `None` when it sends what it has.
    pub fn redaction_note(&self) -> Option<&'static str> {
        let kept = self.health.as_ref().and_then(|health| health.redaction);
        Some(match (kept, self.redaction()?) {
            (Some(Redaction::Text), _) => {
                "This server keeps no prompts and no answers (--redact text): runs show their \
                 figures only."
            }
            (_, Redaction::Text) => {
                "This server sends viewers no prompts and no answers (--redact-viewers text): \
                 runs show their figures only. Admins read the text."
            }
            (Some(Redaction::Prompts), _) => {
                "This server keeps no prompts (--redact prompts): answers are shown, prompts are not."
            }
            (_, Redaction::Prompts) => {
                "This server sends viewers no prompts (--redact-viewers prompts). Admins read them."
            }
        })
    }

    /// What this server does not send us: what it keeps from everyone (`--redact`) or from
    /// our token (`--redact-viewers`), the stronger of the two.
    pub fn redaction(&self) -> Option<Redaction> {
        let kept = self.health.as_ref().and_then(|health| health.redaction);
        let ours = self.access.as_ref().and_then(|access| access.redaction);
        match (kept, ours) {
            (Some(Redaction::Text), _) | (_, Some(Redaction::Text)) => Some(Redaction::Text),
            (kept, ours) => kept.or(ours),
        }
    }
}

/// Something that happened, as the network tasks report it.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A server said what our token may do there (`/api/access`).
    Access {
        /// Which server.
        server: ServerId,
        /// Its answer.
        access: AccessInfo,
    },
    /// A server answered `/api/health`.
    Health {
        /// Which server.
        server: ServerId,
        /// Its answer.
        health: Health,
    },
    /// A run appeared: launched from here (its card shows before its first event) or found
    /// running by a poll of a server whose runs are followed one stream each.
    Appeared {
        /// Which server.
        server: ServerId,
        /// The new run.
        summary: RunSummary,
    },
    /// An event from a stream.
    Event {
        /// Which server.
        server: ServerId,
        /// The event.
        event: RunEvent,
    },
    /// A stream's connection state changed: the server's `/api/events` (`run: None`) or one
    /// run's own stream.
    Link {
        /// Which server.
        server: ServerId,
        /// The run, for a per-run stream.
        run: Option<String>,
        /// The new state.
        state: ConnectionState,
    },
    /// A page of runs from polling.
    Runs {
        /// Which server.
        server: ServerId,
        /// The runs.
        runs: Vec<RunSummary>,
    },
    /// A run's detail.
    Detail {
        /// Which server.
        server: ServerId,
        /// The detail.
        detail: RunDetail,
    },
    /// Fetching a run's detail failed; it may be fetched again.
    DetailFailed {
        /// Which run.
        key: RunKey,
    },
    /// An event of a server's benchmark stream.
    Benchmark {
        /// Which server.
        server: ServerId,
        /// The event.
        event: BenchmarkEvent,
    },
    /// The benchmark stream's connection changed.
    BenchmarkLink {
        /// Which server.
        server: ServerId,
        /// The new state.
        state: ConnectionState,
    },
    /// A new read of the model servers a server reads.
    Upstreams {
        /// Which server.
        server: ServerId,
        /// The figures.
        snapshot: Upstreams,
    },
    /// A server's fleet figures (`/api/workers`).
    Fleet {
        /// Which server.
        server: ServerId,
        /// The figures.
        fleet: FleetFigures,
    },
    /// A snapshot of a server's requests in flight.
    Requests {
        /// Which server.
        server: ServerId,
        /// The snapshot.
        snapshot: ActiveRequests,
        /// How it came: streamed, or polled (and why).
        feed: RequestsFeed,
    },
    /// The active-requests stream's connection changed.
    RequestsLink {
        /// Which server.
        server: ServerId,
        /// The new state.
        state: ConnectionState,
    },
    /// A server refused the request for want of a (valid) token.
    NeedsToken {
        /// Which server.
        server: ServerId,
        /// What it said.
        message: String,
    },
    /// A models job was started on a server.
    ModelsAsked {
        /// Which server.
        server: ServerId,
    },
    /// Talking to a server failed.
    ServerError {
        /// Which server.
        server: ServerId,
        /// What went wrong, for people.
        message: String,
    },
    /// Something the user asked for (a launch, a cancel, a models list, a benchmark) was refused
    /// or failed: shown like a server error and kept in the log, since the next poll clears the
    /// server's error.
    ActionFailed {
        /// Which server.
        server: ServerId,
        /// What failed and the server's own words, for people.
        message: String,
    },
    /// Time passed without events: finished cards may clear themselves.
    Tick,
    /// The user cleared the finished cards.
    ClearFinished,
    /// The user added a server to watch (it gets the next id).
    ServerAdded {
        /// Its URL.
        url: String,
    },
    /// The console names a server for people (a replay is named after its recording, not
    /// its embedded server's port).
    ServerNamed {
        /// Which server.
        server: ServerId,
        /// Its name on tags and the summary bar.
        label: String,
    },
    /// The user gave a token: servers that refused for want of one are asked again.
    TokenGiven,
    /// A card is followed live (`false`) or only polled for want of a free stream (`true`).
    Polled {
        /// The card.
        key: RunKey,
        /// Whether it is only polled.
        polled: bool,
    },
    /// The user changed the settings.
    Settings(Settings),
    /// The details the feed wanted were asked for.
    DetailsAsked,
}

/// Everything the console shows.
#[derive(Debug, Clone, Default)]
pub struct Board {
    /// Settings.
    pub settings: Settings,
    /// The servers watched, in the order given.
    pub servers: Vec<Server>,
    workers: Vec<Worker>,
    worker_index: HashMap<RunKey, usize>,
    cards: Vec<Card>,
    card_index: HashMap<CardKey, usize>,
    forgotten: Forgotten,
    /// The generation feed.
    pub feed: Feed,
    /// Narration from every run.
    pub log: Log,
    /// Tokens per second over all live workers.
    pub total_rate: TokenRate,
    /// Runs seen to complete, fail or be cancelled here.
    pub finished: HashMap<RunStatus, usize>,
    /// Calls a second and failures a minute, over the last minute.
    pub call_rates: CallRates,
}

impl Board {
    /// A model watching these servers.
    pub fn new(server_urls: &[String], settings: Settings) -> Self {
        Self {
            settings,
            servers: server_urls.iter().map(|url| Server::new(url)).collect(),
            ..Self::default()
        }
    }

    /// Watches one more server.
    fn add_server(&mut self, url: &str) {
        self.servers.push(Server::new(url));
    }

    /// The runs on the board (calls going on, and each card's latest finished one): in the
    /// order they appeared, except that a dropped run's place goes to the last one.
    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    /// One run.
    pub fn worker(&self, key: &RunKey) -> Option<&Worker> {
        self.worker_index.get(key).map(|&i| &self.workers[i])
    }

    /// The cards of the grid, in the order they appeared: one per named worker, one per run
    /// without a worker.
    pub fn cards(&self) -> &[Card] {
        &self.cards
    }

    /// One card.
    pub fn card_of(&self, key: &CardKey) -> Option<&Card> {
        self.card_index.get(key).map(|&i| &self.cards[i])
    }

    /// The card a run is shown on.
    pub fn card_of_run(&self, run: &RunKey) -> Option<&Card> {
        self.worker(run)
            .and_then(|worker| self.card_of(&worker.card))
    }

    /// Runs not finished yet (calls in flight).
    pub fn live_workers(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| !w.status.is_finished())
            .count()
    }

    /// Tokens per second right now: the sum over cards that are generating (a call going on
    /// and not stalled), so a fleet that went quiet reads 0, not its last rate.
    pub fn current_rate(&self, now: f64) -> f64 {
        self.cards
            .iter()
            .filter(|card| {
                card.live
                    .iter()
                    .filter_map(|run| self.worker(run))
                    .any(|w| w.stalled_for(now, self.settings.stall_after_secs).is_none())
            })
            .map(|card| card.rate.per_sec())
            // A fold from +0.0: `sum` of nothing is -0.0, which prints as "-0.0 tok/s".
            .fold(0.0, |total, rate| total + rate)
    }

    /// Tokens generated by all cards' calls.
    pub fn total_tokens(&self) -> u64 {
        self.cards.iter().map(|card| self.card_tokens(card)).sum()
    }

    /// A card's tokens: its finished calls' and those of the calls going on.
    fn card_tokens(&self, card: &Card) -> u64 {
        card.tokens_done
            + card
                .live
                .iter()
                .filter_map(|run| self.worker(run))
                .map(|w| w.tokens_out)
                .sum::<u64>()
    }

    /// Whether our token may do `action` on `server` (see [`Server::may`]).
    pub fn may(&self, server: ServerId, action: ApiAction) -> bool {
        self.servers.get(server).is_none_or(|s| s.may(action))
    }

    /// Whether our token may do `action` on any server watched.
    pub fn may_anywhere(&self, action: ApiAction) -> bool {
        (0..self.servers.len()).any(|server| self.may(server, action))
    }

    /// How many runs ended with `status` while watched.
    pub fn finished_count(&self, status: RunStatus) -> usize {
        self.finished.get(&status).copied().unwrap_or(0)
    }

    /// Applies one inbound message at time `now` (seconds).
    pub fn apply(&mut self, inbound: Inbound, now: f64) {
        match inbound {
            Inbound::Access { server, access } => {
                if let Some(s) = self.servers.get_mut(server) {
                    s.access = Some(access);
                }
            }
            Inbound::Health { server, health } => {
                let store = health.store.clone();
                if let Some(s) = self.servers.get_mut(server) {
                    s.health = Some(health);
                    s.error = None;
                    s.needs_token = None;
                }
                // A console that connects while the store is failing says so too.
                if let Some(store) = store {
                    self.apply_store_status(server, store, now);
                }
            }
            Inbound::Appeared { server, summary } => {
                self.card(&RunKey::new(server, summary.run_id.clone()), &summary, now);
                self.feed
                    .upsert(RunKey::new(server, summary.run_id.clone()), summary);
            }
            Inbound::Event { server, event } => self.apply_event(server, event, now),
            Inbound::Link { server, run, state } => self.apply_link(server, run, &state, now),
            Inbound::Runs { server, runs } => self.apply_runs(server, runs, now),
            Inbound::Detail { server, detail } => {
                let key = RunKey::new(server, detail.summary.run_id.clone());
                self.feed.store_detail(key, detail);
            }
            Inbound::DetailFailed { key } => self.feed.fetch_failed(&key),
            Inbound::ServerError { server, message } => {
                if let Some(s) = self.servers.get_mut(server) {
                    s.error = Some(message);
                    s.models_pending = false;
                }
            }
            Inbound::ActionFailed { server, message } => {
                if let Some(s) = self.servers.get_mut(server) {
                    s.error = Some(message.clone());
                    s.models_pending = false;
                }
                self.server_line(server, "error", message, now);
            }
            Inbound::Benchmark { server, event } => {
                if let Some(s) = self.servers.get_mut(server) {
                    s.benchmark.apply(event);
                }
            }
            Inbound::BenchmarkLink { server, state } => {
                if let Some(s) = self.servers.get_mut(server) {
                    s.benchmark_link = Some(advance_link(s.benchmark_link.as_ref(), &state, now));
                }
            }
            Inbound::Fleet { .. } | Inbound::Upstreams { .. } => self.apply_figures(inbound, now),
            Inbound::Requests {
                server,
                snapshot,
                feed,
            } => {
                if let Some(s) = self.servers.get_mut(server) {
                    if snapshot.disabled {
                        s.requests.clear();
                        s.requests.feed = RequestsFeed::Disabled(
                            snapshot
                                .message
                                .unwrap_or_else(|| "request metrics are off".into()),
                        );
                    } else {
                        s.requests.apply(snapshot, now);
                        s.requests.feed = feed;
                    }
                }
            }
            Inbound::RequestsLink { server, state } => {
                if let Some(s) = self.servers.get_mut(server) {
                    s.requests.link = Some(advance_link(s.requests.link.as_ref(), &state, now));
                }
            }
            Inbound::NeedsToken { server, message } => {
                if let Some(s) = self.servers.get_mut(server) {
                    s.needs_token = Some(message);
                }
            }
            Inbound::Tick
            | Inbound::ClearFinished
            | Inbound::ServerAdded { .. }
            | Inbound::ServerNamed { .. }
            | Inbound::TokenGiven
            | Inbound::Polled { .. }
            | Inbound::Settings(_)
            | Inbound::DetailsAsked => self.apply_local(inbound, now),
            Inbound::ModelsAsked { server } => {
                if let Some(s) = self.servers.get_mut(server) {
                    s.models_pending = true;
                }
            }
        }
    }

    /// A server's own figures: its fleet's last minute, its model servers' load.
    fn apply_figures(&mut self, inbound: Inbound, now: f64) {
        match inbound {
            Inbound::Fleet { server, fleet } => {
                if let Some(s) = self.servers.get_mut(server) {
                    s.fleet = Some(fleet);
                }
            }
            Inbound::Upstreams { server, snapshot } => {
                if let Some(s) = self.servers.get_mut(server) {
                    s.upstreams.apply(snapshot, now);
                }
            }
            // `apply` sends only these here.
            _ => {}
        }
    }

    /// A poll of the run list: cards for runs going on, news for cards without a stream.
    fn apply_runs(&mut self, server: ServerId, runs: Vec<RunSummary>, now: f64) {
        if let Some(s) = self.servers.get_mut(server) {
            s.error = None;
        }
        // Runs going on that started before we watched (or elsewhere) get cards now,
        // not at their next event (which a per-run server would never send us).
        let before = self.workers.len();
        for summary in runs.iter().filter(|run| !run.status.is_finished()) {
            self.card(&RunKey::new(server, summary.run_id.clone()), summary, now);
        }
        // Cards without a live stream learn from the poll; streamed ones only what they missed.
        let rate_settings = self.settings.rate;
        let mut caught_up = false;
        for summary in &runs {
            let key = RunKey::new(server, summary.run_id.clone());
            let Some(worker) = self.worker_mut(&key) else {
                continue;
            };
            // Every card learns the server's start time, which a stream that began mid-run or a
            // server without `ts` on its status events never told it.
            worker.note_start(summary);
            let polled = worker.polled;
            let finished = if polled {
                worker.absorb(summary, now, &rate_settings)
            } else {
                let seen = worker.tokens_out;
                let finished = worker.catch_up(summary, now);
                caught_up |= worker.tokens_out != seen;
                finished
            };
            if polled {
                self.observe_card(&key, now, false);
            }
            if finished {
                *self.finished.entry(summary.status).or_default() += 1;
                self.run_ended(&key, summary.status, now);
            }
        }
        if self.workers.len() != before || caught_up {
            // Adopted cards bring tokens made before we watched, and caught-up cards tokens made
            // while not watched: not a rate.
            self.rebase_total(now);
        }
        self.feed.merge(server, runs);
    }

    /// What the console itself decided: the user's choices and the passing of time.
    fn apply_local(&mut self, inbound: Inbound, now: f64) {
        match inbound {
            Inbound::Tick => self.tick(now),
            Inbound::ClearFinished => self.clear_finished(now),
            Inbound::ServerAdded { url } => self.add_server(&url),
            Inbound::ServerNamed { server, label } => {
                if let Some(s) = self.servers.get_mut(server) {
                    s.label = label;
                }
            }
            Inbound::TokenGiven => {
                for server in &mut self.servers {
                    server.needs_token = None;
                }
            }
            Inbound::Polled { key, polled } => self.set_polled(&key, polled),
            Inbound::Settings(settings) => self.settings = settings,
            Inbound::DetailsAsked => self.feed.asked(),
            // The network's messages are handled by `apply`, which sends only these here.
            _ => {}
        }
    }

    /// Marks a card as followed live or not (polled instead).
    fn set_polled(&mut self, key: &RunKey, polled: bool) {
        if let Some(worker) = self.worker_mut(key) {
            worker.polled = polled;
        }
    }

    /// Time passing without events: finished cards may be cleared automatically, and a
    /// named worker idle for longer than its setting leaves the grid.
    fn tick(&mut self, now: f64) {
        let auto_clear = self.settings.auto_clear_after_secs;
        let worker_idle = self.settings.worker_idle_secs;
        let stays = |card: &Card| {
            card.idle_for(now).is_none_or(|idle| {
                !(auto_clear.is_some_and(|after| idle >= after)
                    || (card.is_named() && idle >= worker_idle))
            })
        };
        if self.retain_cards(stays) {
            self.rebase_total(now);
        }
    }

    /// Removes every card with no call going on.
    fn clear_finished(&mut self, now: f64) {
        if self.retain_cards(|card| !card.live.is_empty()) {
            self.rebase_total(now);
        }
    }

    /// The cards shown changed by more than generation: restart the total's baseline there.
    fn rebase_total(&mut self, now: f64) {
        let total = self.total_tokens();
        self.total_rate.rebase(total, now);
    }

    /// Keeps the cards for which `keep` holds, with their runs; true when any was removed.
    fn retain_cards(&mut self, keep: impl Fn(&Card) -> bool) -> bool {
        let before = self.cards.len();
        let mut gone: Vec<RunKey> = Vec::new();
        self.cards.retain(|card| {
            let kept = keep(card);
            if !kept {
                gone.extend(card.live.iter().chain(card.last.iter()).cloned());
            }
            kept
        });
        if self.cards.len() == before {
            return false;
        }
        self.card_index = self
            .cards
            .iter()
            .enumerate()
            .map(|(i, card)| (card.key.clone(), i))
            .collect();
        self.forget_runs(&gone);
        true
    }

    /// Drops runs from the board (their cards no longer show them); events that still come
    /// for them make no card.
    fn forget_runs(&mut self, runs: &[RunKey]) {
        for run in runs {
            // Swapped out, so only the moved run's index changes: a fleet forgets a call per
            // call it makes.
            if let Some(index) = self.worker_index.remove(run) {
                self.workers.swap_remove(index);
                if let Some(moved) = self.workers.get(index) {
                    self.worker_index.insert(moved.key.clone(), index);
                }
            }
            self.forgotten.insert(run.clone());
        }
    }

    /// The card for a run, created from its summary when new: the run joins its worker's
    /// card (made when the worker is new). A models job is a query, not a worker: it gets none.
    fn card(&mut self, key: &RunKey, summary: &RunSummary, now: f64) {
        if summary.task == MODELS_JOB || self.worker_index.contains_key(key) {
            return;
        }
        let worker = Worker::new(key.clone(), summary, now);
        let card_key = worker.card.clone();
        let finished = worker.status.is_finished();
        self.workers.push(worker);
        self.worker_index
            .insert(key.clone(), self.workers.len() - 1);
        let index = if let Some(&index) = self.card_index.get(&card_key) {
            index
        } else {
            self.cards.push(Card::new(card_key.clone(), now));
            self.card_index.insert(card_key, self.cards.len() - 1);
            self.cards.len() - 1
        };
        let card = &mut self.cards[index];
        if !finished {
            card.started(key);
        } else if let Some(old) = card.last.replace(key.clone()).filter(|old| old != key) {
            self.forget_runs(&[old]);
        }
    }

    /// A run finished: its card counts it, and a named worker's card forgets the call it
    /// showed before (calls live in the feed, not as cards).
    fn run_ended(&mut self, key: &RunKey, status: RunStatus, now: f64) {
        let Some(worker) = self.worker(key) else {
            return;
        };
        let (card_key, tokens) = (worker.card.clone(), worker.tokens_out);
        let Some(&index) = self.card_index.get(&card_key) else {
            return;
        };
        self.call_rates.ended(now, status == RunStatus::Failed);
        let card = &mut self.cards[index];
        let replaced = card.ended(key, status, tokens, now);
        if let Some(old) = replaced.filter(|_| card.is_named()) {
            self.forget_runs(&[old]);
        }
    }

    /// A run's tokens changed: its card's rate takes the card's new total.
    fn observe_card(&mut self, key: &RunKey, now: f64, replayed: bool) {
        let Some(card_key) = self.worker(key).map(|w| w.card.clone()) else {
            return;
        };
        let Some(&index) = self.card_index.get(&card_key) else {
            return;
        };
        let tokens = self.card_tokens(&self.cards[index]);
        let settings = self.settings.rate;
        self.cards[index].observe(tokens, now, &settings, replayed);
    }

    fn worker_mut(&mut self, key: &RunKey) -> Option<&mut Worker> {
        self.worker_index.get(key).map(|&i| &mut self.workers[i])
    }

    /// Counts an event towards what the streams that carried it replayed after a reconnect.
    fn count_replayed(&mut self, key: &RunKey, now: f64) {
        let server = key.server;
        if let Some(link) = self.servers.get_mut(server).and_then(|s| s.link.as_mut()) {
            link.count_replayed(now);
        }
        // `/api/events` resumes by id; a run's own stream only on servers that replay, so on
        // others what follows a reconnect is live, not replayed.
        let run_streams_replay = self
            .servers
            .get(server)
            .and_then(|s| s.health.as_ref())
            .is_some_and(|health| health.has(Feature::Replay));
        if let Some(link) = self
            .worker_mut(key)
            .and_then(|w| w.link.as_mut())
            .filter(|_| run_streams_replay)
        {
            link.count_replayed(now);
        }
    }

    fn apply_event(&mut self, server: ServerId, event: RunEvent, now: f64) {
        self.call_rates.seen(now);
        let key = RunKey::new(server, event.run_id());
        self.count_replayed(&key, now);
        match event {
            RunEvent::RunCreated(summary) => {
                if let Some(worker) = self.worker_mut(&key) {
                    // A poll made the card first; the stream now brings the run from its start.
                    worker.seen_from_start();
                } else if !summary.status.is_finished() {
                    self.card(&key, &summary, now);
                }
                self.feed.upsert(key, summary);
            }
            RunEvent::Status(change) => {
                let finished = self.worker_mut(&key).is_some_and(|worker| {
                    worker.set_status(change.status, now, change.ts.as_deref())
                });
                if finished {
                    *self.finished.entry(change.status).or_default() += 1;
                    self.run_ended(&key, change.status, now);
                }
                self.feed
                    .refresh(&key, |summary| summary.status = change.status);
            }
            RunEvent::NodeUpdate(update) => self.apply_progress(server, &key, &update, now),
            RunEvent::Narration(line) => {
                if line.action.as_deref() == Some(STEP_INTERRUPTED_ACTION)
                    && let Some(worker) = self.worker_mut(&key)
                {
                    worker.warning = Some(line.formatted.clone());
                }
                self.log.push(LogLine {
                    run: key,
                    at: now,
                    level: line.level.unwrap_or_else(|| "info".into()),
                    text: line.formatted,
                    number: 0,
                });
            }
            RunEvent::Error(error) => {
                if let Some(worker) = self.worker_mut(&key) {
                    worker.error = Some(error.message);
                }
            }
            RunEvent::StreamEnd(end) => {
                let counted = self.worker_mut(&key).is_some_and(|worker| {
                    let first_end = worker.finished_at.is_none();
                    worker.set_status(end.status, now, None);
                    first_end
                });
                if counted {
                    *self.finished.entry(end.status).or_default() += 1;
                    self.run_ended(&key, end.status, now);
                }
                // The feed wants this run's chain now, not at the next poll.
                self.feed.want(&key);
            }
            RunEvent::Data(data) => self.apply_data(server, &data),
            RunEvent::StoreStatus(status) => self.apply_store_status(server, status, now),
            RunEvent::Pruned(pruned) => {
                let text = pruned_line(pruned.after, pruned.pruned_through);
                self.server_line(server, "warn", text, now);
            }
            RunEvent::Done { .. } | RunEvent::Unknown { .. } => {}
        }
    }

    /// A run's progress: its card (made now for a run first seen mid-way), the feed, and the
    /// rates.
    fn apply_progress(&mut self, server: ServerId, key: &RunKey, update: &NodeUpdate, now: f64) {
        let rate_settings = self.settings.rate;
        if self.worker(key).is_none() && !self.forgotten.contains(key) {
            // A run launched elsewhere before we were watching: make its card now. Its
            // start went by unseen, so this update need not hold its first tokens: the
            // time to first token is not known ("—"), not this update's time.
            let summary = RunSummary::new(key.run_id.clone(), "", RunStatus::Running);
            self.card(key, &summary, now);
            if let Some(worker) = self.worker_mut(key) {
                worker.first_token_seen = true;
            }
        }
        // Replays come after a reconnect, or when a run first seen mid-way gets its own
        // stream; a fresh `/api/events` starts at the head and replays nothing.
        let server_replaying = self
            .servers
            .get(server)
            .and_then(|s| s.link.as_ref())
            .is_some_and(|link| link.replaying(now));
        let mut replayed = server_replaying;
        if let Some(worker) = self.worker_mut(key) {
            replayed |= worker.link.as_ref().is_some_and(|l| l.replaying(now))
                || (worker.adopted
                    && worker
                        .link_opened_at
                        .is_some_and(|at| now - at < link::REPLAY_BURST_SECS));
            worker.progress(update, now, &rate_settings, replayed);
        }
        if update.tokens_out.is_some() {
            self.observe_card(key, now, replayed);
        }
        self.feed.refresh(key, |summary| {
            summary.status = RunStatus::Running;
            if let Some(tokens) = update.tokens_out {
                summary.tokens_out = tokens;
            }
            if update.agent.is_some() {
                summary.agent.clone_from(&update.agent);
            }
            if update.snippet.is_some() {
                summary.snippet.clone_from(&update.snippet);
            }
        });
        if replayed {
            self.rebase_total(now);
        } else {
            // The sum over every card is only worth taking when the rate's gate is open: a
            // fleet's updates come hundreds a frame.
            if self.total_rate.would_measure(now, &rate_settings) {
                let total = self.total_tokens();
                self.total_rate.observe(total, now, &rate_settings);
            }
        }
    }

    /// Only the data channel feeds the models view; the narration is for people.
    fn apply_data(&mut self, server: ServerId, data: &runboard_api::DataEvent) {
        if let Ok(DataAction::ModelList(list)) = data.decode()
            && let Some(s) = self.servers.get_mut(server)
        {
            s.models = Some(list);
            s.models_pending = false;
        }
    }

    /// A server's store stopped or started taking writes: its badge, and a line in the log.
    fn apply_store_status(&mut self, server: ServerId, status: StoreStatus, now: f64) {
        let Some(s) = self.servers.get_mut(server) else {
            return;
        };
        let was_writable = s.store.as_ref().is_none_or(|store| store.writable);
        let (level, text) = match (status.writable, was_writable) {
            (false, true) => (
                "error",
                format!(
                    "{}: the store cannot be written ({}); new runs are refused and running \
                     runs are held",
                    s.label,
                    status.error.as_deref().unwrap_or("no reason given")
                ),
            ),
            (true, false) => (
                "info",
                format!("{}: the store takes writes again; runs go on", s.label),
            ),
            // No change (a reconnecting stream is told again): nothing to say.
            (false, false) | (true, true) => {
                s.store = Some(status);
                return;
            }
        };
        s.store = Some(status);
        self.server_line(server, level, text, now);
    }

    /// A log line about a server itself rather than one of its runs (its run id is empty).
    fn server_line(&mut self, server: ServerId, level: &str, text: String, now: f64) {
        self.log.push(LogLine {
            run: RunKey::new(server, String::new()),
            at: now,
            level: level.into(),
            text,
            number: 0,
        });
    }

    fn apply_link(
        &mut self,
        server: ServerId,
        run: Option<String>,
        state: &ConnectionState,
        now: f64,
    ) {
        let advance =
            |link: &mut Option<Link>| *link = Some(advance_link(link.as_ref(), state, now));
        match run {
            None => {
                if let Some(s) = self.servers.get_mut(server) {
                    advance(&mut s.link);
                }
            }
            Some(run_id) => {
                if let Some(worker) = self.worker_mut(&RunKey::new(server, run_id)) {
                    advance(&mut worker.link);
                    if *state == ConnectionState::Open {
                        worker.link_opened_at = Some(now);
                    }
                }
            }
        }
    }
}

/// A stream's link after a state change (a new link starts as connecting).
fn advance_link(link: Option<&Link>, state: &ConnectionState, now: f64) -> Link {
    link.unwrap_or(&Link::Connecting).after(state, now)
}

#[cfg(test)]
mod tests;

/// What the log says when a resume skipped events that retention removed.
fn pruned_line(after: u64, through: u64) -> String {
    format!(
        "events after id {after} up to {through} were removed by the server's retention; the \
         stream went on from the oldest it kept"
    )
}

/// Runs most recently dropped from the board, so events that still come for them (a late
/// update of a call whose card moved on) make no card. Bounded: the oldest are let go.
#[derive(Debug, Clone, Default)]
struct Forgotten {
    order: VecDeque<RunKey>,
    set: HashSet<RunKey>,
}

/// How many forgotten runs are remembered.
const FORGOTTEN_KEPT: usize = 4096;

impl Forgotten {
    fn insert(&mut self, run: RunKey) {
        if self.set.insert(run.clone()) {
            self.order.push_back(run);
        }
        while self.order.len() > FORGOTTEN_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, run: &RunKey) -> bool {
        self.set.contains(run)
    }
}
