//! The generation feed: finished and running runs from polling, with details fetched lazily,
//! once each, and the summary snippet and event chain derived from them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use runboard_api::clock::unix_seconds;
use runboard_api::units::seconds;
use runboard_api::{DataAction, EventKind, RunDetail, RunEvent, RunStatus, RunSummary};

use super::keys::RunKey;

/// Agents whose text is bookkeeping rather than the run's content.
const NOT_CONTENT: [&str; 3] = ["supervisor", "system", "finish"];

/// One run in the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEntry {
    /// Which run.
    pub key: RunKey,
    /// Its latest summary.
    pub summary: RunSummary,
}

/// One line of a run's event chain, as EXPAND shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainLine {
    /// Progress: agent, iteration, tokens and snippet.
    Node {
        /// The agent.
        agent: String,
        /// Its iteration.
        iteration: Option<u64>,
        /// Cumulative tokens.
        tokens: Option<u64>,
        /// The snippet.
        snippet: String,
        /// The step's reasoning so far, when the model reasons (shown dimmed).
        reasoning: Option<String>,
        /// Whether the count is an estimate (no usage figure yet).
        estimated: bool,
    },
    /// A finished step's figures, as a server generating on a real model reports them.
    Step(StepLine),
    /// A tool call the model made, its pieces merged.
    ToolCall {
        /// The agent that called it.
        agent: String,
        /// The function.
        name: String,
        /// Its arguments (JSON text).
        arguments: String,
    },
    /// A warning or error the server narrated (a retry, an unreachable upstream).
    Note {
        /// `warn` or `error`.
        level: String,
        /// What it said.
        text: String,
    },
    /// A status change, set apart.
    Status {
        /// The new status.
        status: String,
        /// Why.
        message: Option<String>,
    },
    /// An error, set apart.
    Error(String),
    /// The end of the run.
    End(String),
}

/// One step's figures (`data` event `step`).
#[derive(Debug, Clone, PartialEq)]
pub struct StepLine {
    /// The agent.
    pub agent: String,
    /// Its iteration.
    pub iteration: Option<u64>,
    /// Output tokens of the step.
    pub tokens: u64,
    /// Counted from the stream, not the server's usage figure.
    pub estimated: bool,
    /// Time to first token, ms.
    pub ttft_ms: Option<f64>,
    /// Time to first answer token after reasoning, ms.
    pub ttfat_ms: Option<f64>,
    /// Median inter-token latency, ms.
    pub itl_p50_ms: Option<f64>,
    /// Decode rate.
    pub tok_per_sec: Option<f64>,
    /// Which try produced it.
    pub tries: u64,
    /// Why generation stopped.
    pub finish_reason: Option<String>,
}

/// The most runs the feed holds: past it the oldest finished ones (and their details) go, so
/// a fleet making a hundred calls a second for hours keeps the console's memory bounded.
pub const FEED_WINDOW: usize = 10_000;

/// The feed's runs and the details fetched for them.
#[derive(Debug, Clone, Default)]
pub struct Feed {
    entries: HashMap<RunKey, FeedEntry>,
    /// Newest first; a deque, since new runs go to the front.
    order: VecDeque<RunKey>,
    details: HashMap<RunKey, Arc<RunDetail>>,
    /// Each fetched detail's [`summary_snippet`], worked out once when it arrives (the feed
    /// draws and filters on it every frame).
    snippets: HashMap<RunKey, String>,
    /// Details asked for (waiting, in flight or fetched): never asked twice.
    requested: HashSet<RunKey>,
    /// Details to ask for next, in the order they were wanted.
    wanted: Vec<RunKey>,
}

impl Feed {
    /// Merges a page of summaries from a poll (or a stream).
    pub fn merge(&mut self, server: usize, runs: Vec<RunSummary>) {
        for summary in runs {
            self.upsert(RunKey::new(server, summary.run_id.clone()), summary);
        }
    }

    /// Adds or updates one run. A newly finished run without a detail is queued for fetching.
    pub fn upsert(&mut self, key: RunKey, summary: RunSummary) {
        if summary.status.is_finished() {
            self.want(&key);
        }
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.summary = summary;
            return;
        }
        // Newest first by creation time; runs without one go on top.
        let created = summary.created_at.clone();
        let at = self.order.partition_point(|other| {
            match (&created, &self.entries[other].summary.created_at) {
                (Some(mine), Some(theirs)) => theirs > mine,
                (None, _) => false,
                (Some(_), None) => true,
            }
        });
        self.order.insert(at, key.clone());
        self.entries.insert(key.clone(), FeedEntry { key, summary });
        if self.order.len() > FEED_WINDOW {
            self.trim();
        }
    }

    /// Lets the oldest finished runs go until the feed is back within [`FEED_WINDOW`] (a
    /// tenth below it, so this runs once per thousand runs, not per run).
    fn trim(&mut self) {
        let keep = FEED_WINDOW - FEED_WINDOW / 10;
        let mut excess = self.order.len().saturating_sub(keep);
        let mut gone: HashSet<RunKey> = HashSet::new();
        for key in self.order.iter().rev() {
            if excess == 0 {
                break;
            }
            if self.entries[key].summary.status.is_finished() {
                gone.insert(key.clone());
                excess -= 1;
            }
        }
        self.order.retain(|key| !gone.contains(key));
        for key in &gone {
            self.entries.remove(key);
            self.details.remove(key);
            self.snippets.remove(key);
            self.requested.remove(key);
        }
        self.wanted.retain(|key| !gone.contains(key));
    }

    /// Updates a run's summary from its live events, so the feed does not wait for a poll.
    pub fn refresh(&mut self, key: &RunKey, change: impl FnOnce(&mut RunSummary)) {
        if let Some(entry) = self.entries.get_mut(key) {
            change(&mut entry.summary);
        }
    }

    /// Asks for a run's detail now (a `stream_end` arrived), unless it was asked for already.
    pub fn want(&mut self, key: &RunKey) {
        // Marked as requested when wanted, so the check is one hash lookup, not a scan.
        if self.requested.insert(key.clone()) {
            self.wanted.push(key.clone());
        }
    }

    /// The details to fetch: each is listed until [`Feed::asked`] says it was asked for.
    pub fn wanted(&self) -> &[RunKey] {
        &self.wanted
    }

    /// The wanted details were asked for.
    pub(crate) fn asked(&mut self) {
        self.wanted.clear();
    }

    /// A fetch failed: the detail may be asked for again.
    pub fn fetch_failed(&mut self, key: &RunKey) {
        self.requested.remove(key);
    }

    /// Stores a fetched detail (and refreshes the summary from it).
    pub fn store_detail(&mut self, key: RunKey, detail: RunDetail) {
        self.upsert(key.clone(), detail.summary.clone());
        self.requested.insert(key.clone());
        self.wanted.retain(|wanted| *wanted != key);
        match summary_snippet(&detail) {
            Some(snippet) => self.snippets.insert(key.clone(), snippet),
            None => self.snippets.remove(&key),
        };
        self.details.insert(key, Arc::new(detail));
    }

    /// The snippet that sums a fetched run up ([`summary_snippet`] of its detail).
    pub fn snippet(&self, key: &RunKey) -> Option<&str> {
        self.snippets.get(key).map(String::as_str)
    }

    /// The detail of a run, if fetched.
    pub fn detail(&self, key: &RunKey) -> Option<&Arc<RunDetail>> {
        self.details.get(key)
    }

    /// All runs, newest first.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &FeedEntry> {
        self.order.iter().map(|key| &self.entries[key])
    }

    /// How many runs the feed holds.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the feed is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// One run's entry.
    pub fn entry(&self, key: &RunKey) -> Option<&FeedEntry> {
        self.entries.get(key)
    }
}

/// The snippet that sums a run up: the last snippet from a content agent, else the
/// last snippet from any agent, else for a completed run its figures (a server that keeps no
/// text, `--redact text`, sends none), else the last status message.
pub fn summary_snippet(detail: &RunDetail) -> Option<String> {
    let mut updates = detail
        .events
        .iter()
        .rev()
        .filter(|e| e.kind() == Some(EventKind::NodeUpdate))
        .filter_map(|e| match e.decode() {
            Ok(RunEvent::NodeUpdate(update)) => Some(update),
            _ => None,
        })
        .filter(|update| update.snippet.as_ref().is_some_and(|s| !s.is_empty()));
    let mut any = None;
    for update in updates.by_ref() {
        let content = !NOT_CONTENT.contains(&update.agent.as_deref().unwrap_or(""));
        if content {
            return update.snippet;
        }
        any.get_or_insert(update.snippet);
    }
    any.flatten().or_else(|| {
        if detail.summary.status == RunStatus::Completed
            && let Some(figures) = figures_line(detail)
        {
            return Some(figures);
        }
        detail
            .events
            .iter()
            .rev()
            .filter(|e| e.kind() == Some(EventKind::Status))
            .find_map(|e| match e.decode() {
                Ok(RunEvent::Status(change)) => change.message,
                _ => None,
            })
    })
}

/// A finished run's figures in a line: its tokens, how long it took, its rate, and its time
/// to first token when its steps were measured (`run_metrics`), else as its summary gives them.
fn figures_line(detail: &RunDetail) -> Option<String> {
    let metrics = detail
        .events
        .iter()
        .rev()
        .find_map(|event| match event.decode().ok()? {
            RunEvent::Data(data) => match data.decode().ok()? {
                DataAction::RunMetrics(metrics) => Some(metrics),
                _ => None,
            },
            _ => None,
        });
    let summary = &detail.summary;
    let mut parts = Vec::new();
    if let Some(metrics) = metrics {
        let approx = if metrics.estimated { "~" } else { "" };
        parts.push(format!("{approx}{} tok", metrics.output_tokens));
        parts.push(seconds(metrics.duration_ms / 1000.0));
        if let Some(rate) = metrics.tok_per_sec {
            parts.push(format!("{rate:.1} tok/s"));
        }
        if let Some(ttft) = metrics.ttft_ms {
            parts.push(format!("TTFT {}", seconds(ttft / 1000.0)));
        }
    } else {
        let start = unix_seconds(summary.started_at.as_deref()?)?;
        let secs = unix_seconds(summary.finished_at.as_deref()?)? - start;
        parts.push(format!("{} tok", summary.tokens_out));
        parts.push(seconds(secs));
        if secs > 0.0 {
            #[allow(clippy::cast_precision_loss)] // Token counts are far below 2^52.
            let rate = summary.tokens_out as f64 / secs;
            parts.push(format!("{rate:.1} tok/s"));
        }
    }
    Some(parts.join(" · "))
}

/// The event chain in order: a line per `node_update`, with status, error and end lines.
/// Events are read through the API's types; one that does not decode is left out.
pub fn chain(detail: &RunDetail) -> Vec<ChainLine> {
    detail
        .events
        .iter()
        .filter_map(|event| chain_line(event.decode().ok()?))
        .collect()
}

fn chain_line(event: RunEvent) -> Option<ChainLine> {
    Some(match event {
        RunEvent::NodeUpdate(update) => ChainLine::Node {
            agent: update.agent.unwrap_or_else(|| "?".into()),
            iteration: update.iteration.map(u64::from),
            tokens: update.tokens_out,
            snippet: update.snippet.unwrap_or_default(),
            reasoning: update.reasoning.filter(|r| !r.is_empty()),
            estimated: update.estimated == Some(true),
        },
        RunEvent::Data(data) => data_line(data.decode().ok()?)?,
        RunEvent::Narration(narration) => {
            let level = narration.level.unwrap_or_default();
            if !matches!(level.as_str(), "warn" | "warning" | "error") {
                return None;
            }
            ChainLine::Note {
                level,
                text: narration.formatted,
            }
        }
        RunEvent::Status(change) => ChainLine::Status {
            status: change.status.to_string(),
            message: change.message,
        },
        RunEvent::Error(error) => ChainLine::Error(error.message),
        RunEvent::StreamEnd(end) => ChainLine::End(end.status.to_string()),
        _ => return None,
    })
}

/// A `step` or `tool_call` data event as a chain line; other data is not shown.
fn data_line(action: DataAction) -> Option<ChainLine> {
    let agent = |agent: String| if agent.is_empty() { "?".into() } else { agent };
    match action {
        DataAction::Step(step) => Some(ChainLine::Step(StepLine {
            agent: agent(step.agent),
            iteration: step.iteration,
            tokens: step.figures.output_tokens,
            estimated: step.figures.estimated,
            ttft_ms: step.figures.ttft_ms,
            ttfat_ms: step.figures.ttfat_ms,
            itl_p50_ms: step.figures.itl_p50_ms,
            tok_per_sec: step.figures.tok_per_sec,
            tries: u64::from(step.tries),
            finish_reason: step.finish_reason,
        })),
        DataAction::ToolCall(call) => Some(ChainLine::ToolCall {
            agent: agent(call.agent),
            name: call.name,
            arguments: call.arguments,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use runboard_api::{RunStatus, StoredEvent};
    use serde_json::{Value, json};

    use super::*;

    /// What the console does: fetch what is wanted, then say it was asked for.
    fn take(feed: &mut Feed) -> Vec<RunKey> {
        let wanted = feed.wanted().to_vec();
        feed.asked();
        wanted
    }

    fn summary(id: &str, status: RunStatus, created: &str) -> RunSummary {
        serde_json::from_value(json!({"run_id": id, "status": status, "created_at": created}))
            .unwrap()
    }

    fn event(seq: u64, name: &str, data: Value) -> StoredEvent {
        StoredEvent {
            seq,
            event: name.into(),
            data,
            ts: None,
        }
    }

    fn detail(events: Vec<StoredEvent>) -> RunDetail {
        RunDetail {
            summary: summary("r", RunStatus::Completed, "t"),
            events,
        }
    }

    #[test]
    fn past_its_window_the_feed_lets_the_oldest_finished_runs_go() {
        let mut feed = Feed::default();
        let created = |n: usize| {
            format!(
                "2026-01-01T{:02}:{:02}:{:02}Z",
                n / 3600,
                n / 60 % 60,
                n % 60
            )
        };
        // The oldest run is still going: it stays whatever its age.
        feed.upsert(
            RunKey::new(0, "going"),
            summary("going", RunStatus::Running, &created(0)),
        );
        for n in 1..=FEED_WINDOW {
            let id = format!("r{n}");
            feed.upsert(
                RunKey::new(0, &id),
                summary(&id, RunStatus::Completed, &created(n)),
            );
        }
        take(&mut feed);
        assert!(feed.len() <= FEED_WINDOW, "{}", feed.len());
        assert!(feed.len() >= FEED_WINDOW - FEED_WINDOW / 10);
        assert!(feed.entry(&RunKey::new(0, "going")).is_some());
        assert!(
            feed.entry(&RunKey::new(0, "r1")).is_none(),
            "the oldest finished went"
        );
        let newest = format!("r{FEED_WINDOW}");
        assert!(feed.entry(&RunKey::new(0, &newest)).is_some());
        assert_eq!(feed.entries().len(), feed.len());
    }

    #[test]
    fn finished_runs_are_fetched_once_and_running_ones_not_yet() {
        let mut feed = Feed::default();
        feed.merge(
            0,
            vec![
                summary("a", RunStatus::Completed, "2026-01-01T00:00:01Z"),
                summary("b", RunStatus::Running, "2026-01-01T00:00:02Z"),
            ],
        );
        assert_eq!(take(&mut feed), vec![RunKey::new(0, "a")]);
        // The next poll sees the same runs, and b has finished.
        feed.merge(
            0,
            vec![
                summary("a", RunStatus::Completed, "2026-01-01T00:00:01Z"),
                summary("b", RunStatus::Failed, "2026-01-01T00:00:02Z"),
            ],
        );
        assert_eq!(take(&mut feed), vec![RunKey::new(0, "b")]);
        feed.want(&RunKey::new(0, "b")); // a stream_end for b arrives late
        assert!(take(&mut feed).is_empty(), "no double fetch");
        let order: Vec<&str> = feed.entries().map(|e| e.key.run_id.as_str()).collect();
        assert_eq!(order, ["b", "a"], "newest first");
    }

    #[test]
    fn a_failed_fetch_may_be_asked_again() {
        let mut feed = Feed::default();
        feed.merge(0, vec![summary("a", RunStatus::Completed, "t")]);
        let key = take(&mut feed).pop().unwrap();
        feed.fetch_failed(&key);
        feed.want(&key);
        assert_eq!(take(&mut feed), vec![key]);
    }

    #[test]
    fn the_same_run_id_on_two_servers_is_two_entries() {
        let mut feed = Feed::default();
        feed.merge(0, vec![summary("a", RunStatus::Running, "t1")]);
        feed.merge(1, vec![summary("a", RunStatus::Running, "t2")]);
        assert_eq!(feed.len(), 2);
        assert_eq!(feed.entries().next().unwrap().key, RunKey::new(1, "a"));
    }

    #[test]
    fn the_summary_snippet_prefers_content_agents_then_any_then_status() {
        let content = detail(vec![
            event(
                1,
                "node_update",
                json!({"agent": "writer", "snippet": "the draft"}),
            ),
            event(
                2,
                "node_update",
                json!({"agent": "critic", "snippet": null}),
            ),
            event(
                3,
                "node_update",
                json!({"agent": "finish", "snippet": "wrapping up"}),
            ),
            event(
                4,
                "status",
                json!({"status": "completed", "message": "done"}),
            ),
        ]);
        assert_eq!(summary_snippet(&content).as_deref(), Some("the draft"));
        let only_supervisor = detail(vec![event(
            1,
            "node_update",
            json!({"node": "supervisor", "snippet": "planning"}),
        )]);
        assert_eq!(
            summary_snippet(&only_supervisor).as_deref(),
            Some("planning")
        );
        let only_status = detail(vec![
            event(
                1,
                "status",
                json!({"status": "running", "message": "started"}),
            ),
            event(
                2,
                "status",
                json!({"status": "failed", "message": "out of memory"}),
            ),
        ]);
        assert_eq!(
            summary_snippet(&only_status).as_deref(),
            Some("out of memory")
        );
        assert_eq!(summary_snippet(&detail(vec![])), None);
    }

    #[test]
    fn a_completed_run_without_text_is_summed_up_by_its_figures() {
        let mut measured = detail(vec![
            event(
                1,
                "node_update",
                json!({"agent": "writer", "tokens_out": 40}),
            ),
            event(
                2,
                "data",
                json!({"action": "run_metrics", "payload": {"steps": 1, "output_tokens": 40,
                       "prompt_tokens": 9, "duration_ms": 2000.0, "tok_per_sec": 20.0,
                       "ttft_ms": 150.0}}),
            ),
            event(
                3,
                "status",
                json!({"status": "completed", "message": "done"}),
            ),
        ]);
        measured.summary.status = RunStatus::Completed;
        assert_eq!(
            summary_snippet(&measured).as_deref(),
            Some("40 tok · 2.0 s · 20.0 tok/s · TTFT 150 ms")
        );
        let mut synthetic = detail(vec![event(
            1,
            "status",
            json!({"status": "running", "message": "started"}),
        )]);
        synthetic.summary.status = RunStatus::Completed;
        synthetic.summary.tokens_out = 300;
        synthetic.summary.started_at = Some("2026-12-07T06:00:00Z".into());
        synthetic.summary.finished_at = Some("2026-12-07T06:00:03Z".into());
        assert_eq!(
            summary_snippet(&synthetic).as_deref(),
            Some("300 tok · 3.0 s · 100.0 tok/s")
        );
        // A failed one says why.
        synthetic.summary.status = RunStatus::Failed;
        assert_eq!(summary_snippet(&synthetic).as_deref(), Some("started"));
    }

    #[test]
    fn the_chain_keeps_order_and_sets_status_errors_steps_tool_calls_and_warnings_apart() {
        let run = detail(vec![
            event(1, "run_created", json!({})),
            event(
                2,
                "status",
                json!({"status": "running", "message": "started"}),
            ),
            event(
                3,
                "node_update",
                json!({"agent": "writer", "iteration": 1, "tokens_out": 5, "snippet": "a"}),
            ),
            event(4, "narration", json!({"formatted": "x"})),
            event(
                5,
                "node_update",
                json!({"agent": "critic", "tokens_out": 9, "snippet": "b",
                       "reasoning": "hmm", "estimated": true}),
            ),
            event(
                6,
                "data",
                json!({"action": "tool_call", "payload": {"agent": "critic", "name": "search",
                       "arguments": "{\"q\":1}"}}),
            ),
            event(
                7,
                "data",
                json!({"action": "step", "payload": {"agent": "critic", "iteration": 1,
                       "output_tokens": 9, "estimated": false, "ttft_ms": 120.0,
                       "tok_per_sec": 40.0, "tries": 2, "finish_reason": "stop"}}),
            ),
            event(8, "data", json!({"action": "agent_metrics", "payload": {}})),
            event(
                9,
                "narration",
                json!({"level": "warn", "formatted": "critic: HTTP 429; try 2 of 3"}),
            ),
            event(10, "error", json!({"message": "boom"})),
            event(11, "stream_end", json!({"status": "failed"})),
        ]);
        assert_eq!(
            chain(&run),
            vec![
                ChainLine::Status {
                    status: "running".into(),
                    message: Some("started".into())
                },
                ChainLine::Node {
                    agent: "writer".into(),
                    iteration: Some(1),
                    tokens: Some(5),
                    snippet: "a".into(),
                    reasoning: None,
                    estimated: false,
                },
                ChainLine::Node {
                    agent: "critic".into(),
                    iteration: None,
                    tokens: Some(9),
                    snippet: "b".into(),
                    reasoning: Some("hmm".into()),
                    estimated: true,
                },
                ChainLine::ToolCall {
                    agent: "critic".into(),
                    name: "search".into(),
                    arguments: "{\"q\":1}".into(),
                },
                ChainLine::Step(StepLine {
                    agent: "critic".into(),
                    iteration: Some(1),
                    tokens: 9,
                    estimated: false,
                    ttft_ms: Some(120.0),
                    ttfat_ms: None,
                    itl_p50_ms: None,
                    tok_per_sec: Some(40.0),
                    tries: 2,
                    finish_reason: Some("stop".into()),
                }),
                ChainLine::Note {
                    level: "warn".into(),
                    text: "critic: HTTP 429; try 2 of 3".into(),
                },
                ChainLine::Error("boom".into()),
                ChainLine::End("failed".into()),
            ]
        );
    }
}
