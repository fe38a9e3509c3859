//! One live worker card: a run as it happens.

use runboard_api::clock::unix_seconds;
use runboard_api::{NodeUpdate, RunStatus, RunSummary};

use super::keys::{CardKey, RunKey};
use super::link::Link;
use super::rate::{RateSettings, TokenRate};

/// A worker card's state. Times are the board's clock (seconds).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::struct_excessive_bools)] // Independent facts about a card, not a state machine.
pub struct Worker {
    /// Which run.
    pub key: RunKey,
    /// The card it is shown on: its worker's, or its own.
    pub card: CardKey,
    /// Its task text.
    pub task: String,
    /// Its status.
    pub status: RunStatus,
    /// The agent working now.
    pub agent: Option<String>,
    /// The iteration of the agent loop.
    pub iteration: Option<u32>,
    /// Tokens so far.
    pub tokens_out: u64,
    /// The tail of the latest text.
    pub snippet: String,
    /// The tail of the current step's reasoning, kept apart from the answer (empty when the
    /// model does not reason).
    pub reasoning: String,
    /// Whether `tokens_out` is counted from the stream, before the model server's usage
    /// figure corrects it.
    pub estimated: bool,
    /// Tokens per second and the sparkline.
    pub rate: TokenRate,
    /// When the card appeared.
    pub seen_at: f64,
    /// When it started running (as seen here).
    pub started_at: Option<f64>,
    /// When it started running on the server's clock (Unix seconds), when the server said.
    pub started_ts: Option<f64>,
    /// When the server recorded its first token (Unix seconds), when that was seen with a time.
    pub first_token_ts: Option<f64>,
    /// Whether tokens were seen (or the run came with tokens already made).
    pub first_token_seen: bool,
    /// When it finished.
    pub finished_at: Option<f64>,
    /// When it finished on the server's clock (Unix seconds), when the server said.
    pub finished_ts: Option<f64>,
    /// The latest server time seen on one of its events, with the time here it arrived: the
    /// server's clock read on ours, so elapsed times are the server's, not the time since
    /// this console first saw the run.
    pub clock: Option<(f64, f64)>,
    /// When its last event arrived.
    pub last_event_at: f64,
    /// The run's own stream, when it has one (servers without `/api/events`).
    pub link: Option<Link>,
    /// When the run's own stream last opened.
    pub link_opened_at: Option<f64>,
    /// First seen mid-way (by a poll, or by a progress event), so its stream will replay
    /// history we did not watch happen.
    pub adopted: bool,
    /// The error that ended it, if any.
    pub error: Option<String>,
    /// The latest step the model server interrupted (ended without a finish reason).
    pub warning: Option<String>,
    /// Not followed live (a browser's connection budget was spent): updated from polls.
    pub polled: bool,
}

impl Worker {
    /// A card for a run that was just seen.
    pub fn new(key: RunKey, summary: &RunSummary, now: f64) -> Self {
        Self {
            card: CardKey::of(&key, summary.worker.as_deref()),
            key,
            task: summary.task.clone(),
            status: summary.status,
            agent: summary.agent.clone(),
            iteration: summary.iteration,
            tokens_out: summary.tokens_out,
            snippet: summary.snippet.clone().unwrap_or_default(),
            reasoning: String::new(),
            estimated: false,
            rate: TokenRate::default(),
            seen_at: now,
            started_at: (summary.status == RunStatus::Running).then_some(now),
            started_ts: summary.started_at.as_deref().and_then(unix_seconds),
            // A run first seen mid-way: its first token came before we watched, so its time is
            // not known and TTFT shows "—".
            first_token_ts: None,
            first_token_seen: summary.tokens_out > 0,
            finished_at: summary.status.is_finished().then_some(now),
            finished_ts: summary.finished_at.as_deref().and_then(unix_seconds),
            clock: None,
            last_event_at: now,
            link: None,
            link_opened_at: None,
            adopted: summary.tokens_out > 0 || summary.status == RunStatus::Running,
            error: None,
            warning: None,
            polled: false,
        }
    }

    /// Applies a `node_update`. `replayed` marks one that arrived in a stream's replay burst: it
    /// updates the card but not the rate.
    pub fn progress(
        &mut self,
        update: &NodeUpdate,
        now: f64,
        settings: &RateSettings,
        replayed: bool,
    ) {
        if let Some(agent) = &update.agent {
            agent.clone_into(self.agent.get_or_insert_with(String::new));
        }
        if update.iteration.is_some() {
            self.iteration = update.iteration;
        }
        if let Some(snippet) = &update.snippet {
            snippet.clone_into(&mut self.snippet);
            // A step's updates carry its reasoning each time; one without it is a step that
            // does not reason.
            self.reasoning.clear();
        }
        if let Some(reasoning) = &update.reasoning {
            reasoning.clone_into(&mut self.reasoning);
        }
        if update.tokens_out.is_some() {
            self.estimated = update.estimated == Some(true);
        }
        if let Some(ts) = update.ts.as_deref().and_then(unix_seconds) {
            self.clock = Some((ts, now));
        }
        if let Some(tokens) = update.tokens_out {
            if tokens > 0 && !self.first_token_seen {
                // The first tokens of the run: the server's time of this update is the time of
                // the first token (a later step starting again from 0 is not).
                self.first_token_seen = true;
                self.first_token_ts = update.ts.as_deref().and_then(unix_seconds);
            }
            self.tokens_out = tokens;
            if replayed {
                self.rate.rebase(tokens, now);
            } else {
                self.rate.observe(tokens, now, settings);
            }
        }
        if self.status == RunStatus::Queued {
            self.status = RunStatus::Running;
        }
        self.started_at.get_or_insert(now);
        self.last_event_at = now;
    }

    /// The run changed status (at `ts` on the server's clock, when it said). True when this is
    /// the moment it finished.
    pub fn set_status(&mut self, status: RunStatus, now: f64, ts: Option<&str>) -> bool {
        self.status = status;
        self.last_event_at = now;
        let server_ts = ts.and_then(unix_seconds);
        if let Some(server_ts) = server_ts {
            self.clock = Some((server_ts, now));
        }
        if status == RunStatus::Running {
            self.started_at.get_or_insert(now);
            if self.started_ts.is_none() {
                self.started_ts = ts.and_then(unix_seconds);
            }
        }
        if status.is_finished() && self.finished_at.is_none() {
            self.finished_at = Some(now);
            self.finished_ts = server_ts;
            self.rate.stop();
            return true;
        }
        false
    }

    /// Takes what a poll of the run list says, for a card that has no live stream. Its rate is
    /// measured between polls. True when this is the moment it finished.
    pub fn absorb(&mut self, summary: &RunSummary, now: f64, settings: &RateSettings) -> bool {
        if summary.tokens_out != self.tokens_out {
            self.tokens_out = summary.tokens_out;
            self.rate.observe(summary.tokens_out, now, settings);
            self.last_event_at = now;
        }
        if summary.agent.is_some() {
            self.agent.clone_from(&summary.agent);
        }
        if summary.iteration.is_some() {
            self.iteration = summary.iteration;
        }
        if let Some(snippet) = &summary.snippet {
            snippet.clone_into(&mut self.snippet);
        }
        self.note_start(summary);
        if summary.status != self.status {
            return self.set_status(summary.status, now, summary.started_at.as_deref());
        }
        false
    }

    /// Takes a poll's final figures for a card that follows a stream, when the run finished with
    /// more tokens than the card saw: events were missed while a stream without replay was away
    /// (a proxy's cut). Not a rate sample. True when this is the moment it finished.
    pub fn catch_up(&mut self, summary: &RunSummary, now: f64) -> bool {
        if !summary.status.is_finished() || summary.tokens_out <= self.tokens_out {
            return false;
        }
        self.tokens_out = summary.tokens_out;
        self.rate.rebase(summary.tokens_out, now);
        if summary.agent.is_some() {
            self.agent.clone_from(&summary.agent);
        }
        if let Some(snippet) = &summary.snippet {
            snippet.clone_into(&mut self.snippet);
        }
        self.set_status(summary.status, now, None)
    }

    /// Seconds since it started (or until it finished): on the server's clock when the server
    /// gave its start and a time on a later event, else since this console saw it start.
    pub fn elapsed(&self, now: f64) -> Option<f64> {
        if let (Some(started), Some((server, here))) = (self.started_ts, self.clock) {
            let end = match (self.finished_ts, self.finished_at) {
                (Some(finished), _) => finished,
                // Finished without a time: its last event's.
                (None, Some(_)) => server,
                (None, None) => server + (now - here),
            };
            return Some((end - started).max(0.0));
        }
        let started = self.started_at?;
        Some(self.finished_at.unwrap_or(now) - started)
    }

    /// Its `run_created` arrived after a poll made the card: the stream carries the run from its
    /// start, so its first tokens will be seen and its time to first token is known after all.
    pub fn seen_from_start(&mut self) {
        self.first_token_seen = false;
        self.first_token_ts = None;
        self.adopted = false;
    }

    /// Takes the server's start time from a summary, when not known yet.
    pub fn note_start(&mut self, summary: &RunSummary) {
        if self.started_ts.is_none() {
            self.started_ts = summary.started_at.as_deref().and_then(unix_seconds);
        }
    }

    /// Seconds from start to the first token on the server's clock, when the server gave both
    /// times (arrival times here would read 0 when both arrive in one frame).
    pub fn time_to_first_token(&self) -> Option<f64> {
        let ttft = self.first_token_ts? - self.started_ts?;
        (ttft.is_finite() && ttft >= 0.0).then_some(ttft)
    }

    /// How long a running worker has been silent, when that is longer than `threshold_secs`.
    pub fn stalled_for(&self, now: f64, threshold_secs: f64) -> Option<f64> {
        let silent = now - self.last_event_at;
        (self.status == RunStatus::Running && silent > threshold_secs).then_some(silent)
    }
}
