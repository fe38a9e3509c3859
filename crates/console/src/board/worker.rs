//! One live worker card: a run as it happens.

use runboard_api::{NodeUpdate, RunStatus, RunSummary};

use super::link::Link;
use super::rate::{RateSettings, TokenRate};

/// Which server a card, feed entry or log line came from (an index into the model's servers).
pub type ServerId = usize;

/// A run on a server: the key of cards, feed entries and details.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunKey {
    /// The server.
    pub server: ServerId,
    /// The run id on that server.
    pub run_id: String,
}

impl RunKey {
    /// A key for `run_id` on `server`.
    pub fn new(server: ServerId, run_id: impl Into<String>) -> Self {
        Self {
            server,
            run_id: run_id.into(),
        }
    }
}

/// A worker card's state. Times are the model's clock (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    /// Which run.
    pub key: RunKey,
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
    /// Tokens per second and the sparkline.
    pub rate: TokenRate,
    /// When the card appeared.
    pub seen_at: f64,
    /// When it started running (as seen here).
    pub started_at: Option<f64>,
    /// When the first token arrived.
    pub first_token_at: Option<f64>,
    /// When it finished.
    pub finished_at: Option<f64>,
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
    /// Not followed live (a browser's connection budget was spent): updated from polls.
    pub polled: bool,
}

impl Worker {
    /// A card for a run that was just seen.
    pub fn new(key: RunKey, summary: &RunSummary, now: f64) -> Self {
        Self {
            key,
            task: summary.task.clone(),
            status: summary.status,
            agent: summary.agent.clone(),
            iteration: summary.iteration,
            tokens_out: summary.tokens_out,
            snippet: summary.snippet.clone().unwrap_or_default(),
            rate: TokenRate::default(),
            seen_at: now,
            started_at: (summary.status == RunStatus::Running).then_some(now),
            // A run first seen mid-way: its first token came before we watched, so no TTFT.
            first_token_at: (summary.tokens_out > 0).then_some(f64::NAN),
            finished_at: summary.status.is_finished().then_some(now),
            last_event_at: now,
            link: None,
            link_opened_at: None,
            adopted: summary.tokens_out > 0 || summary.status == RunStatus::Running,
            error: None,
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
        }
        if let Some(tokens) = update.tokens_out {
            self.tokens_out = tokens;
            if tokens > 0 && self.first_token_at.is_none() {
                self.first_token_at = Some(now);
            }
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

    /// The run changed status. True when this is the moment it finished.
    pub fn set_status(&mut self, status: RunStatus, now: f64) -> bool {
        self.status = status;
        self.last_event_at = now;
        if status == RunStatus::Running {
            self.started_at.get_or_insert(now);
        }
        if status.is_finished() && self.finished_at.is_none() {
            self.finished_at = Some(now);
            self.rate.stop(now);
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
        if summary.status != self.status {
            return self.set_status(summary.status, now);
        }
        false
    }

    /// Seconds since it started (or until it finished).
    pub fn elapsed(&self, now: f64) -> Option<f64> {
        let started = self.started_at?;
        Some(self.finished_at.unwrap_or(now) - started)
    }

    /// Seconds from start to the first token, when both were seen here.
    pub fn time_to_first_token(&self) -> Option<f64> {
        let ttft = self.first_token_at? - self.started_at?;
        ttft.is_finite().then_some(ttft)
    }

    /// How long a running worker has been silent, when that is longer than `threshold_secs`.
    pub fn stalled_for(&self, now: f64, threshold_secs: f64) -> Option<f64> {
        let silent = now - self.last_event_at;
        (self.status == RunStatus::Running && silent > threshold_secs).then_some(silent)
    }
}
