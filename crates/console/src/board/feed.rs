//! The generation feed: finished and running runs from polling, with details fetched lazily,
//! once each, and the summary snippet and event chain derived from them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use runboard_api::{EventKind, RunDetail, RunStatus, RunSummary, StoredEvent};

use super::worker::RunKey;

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

/// The feed's runs and the details fetched for them.
#[derive(Debug, Clone, Default)]
pub struct Feed {
    entries: HashMap<RunKey, FeedEntry>,
    /// Newest first.
    order: Vec<RunKey>,
    details: HashMap<RunKey, Arc<RunDetail>>,
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
        self.details.insert(key, Arc::new(detail));
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
/// last snippet from any agent, else the last status message.
pub fn summary_snippet(detail: &RunDetail) -> Option<&str> {
    fn snippet(event: &StoredEvent) -> Option<&str> {
        event
            .data
            .get("snippet")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
    let nodes = || {
        detail
            .events
            .iter()
            .rev()
            .filter(|e| e.kind() == Some(EventKind::NodeUpdate))
    };
    nodes()
        .filter(|e| {
            let agent = e
                .data
                .get("agent")
                .or_else(|| e.data.get("node"))
                .and_then(Value::as_str)
                .unwrap_or("");
            !NOT_CONTENT.contains(&agent)
        })
        .find_map(snippet)
        .or_else(|| nodes().find_map(snippet))
        .or_else(|| {
            detail
                .events
                .iter()
                .rev()
                .filter(|e| e.kind() == Some(EventKind::Status))
                .find_map(|e| e.data.get("message").and_then(Value::as_str))
        })
}

/// The event chain in order: a line per `node_update`, with status, error and end lines.
pub fn chain(detail: &RunDetail) -> Vec<ChainLine> {
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    detail
        .events
        .iter()
        .filter_map(|event| {
            let data = &event.data;
            Some(match event.kind()? {
                EventKind::NodeUpdate => ChainLine::Node {
                    agent: text(data, "agent")
                        .or_else(|| text(data, "node"))
                        .unwrap_or_else(|| "?".into()),
                    iteration: data.get("iteration").and_then(Value::as_u64),
                    tokens: data.get("tokens_out").and_then(Value::as_u64),
                    snippet: text(data, "snippet").unwrap_or_default(),
                },
                EventKind::Status => ChainLine::Status {
                    status: text(data, "status").unwrap_or_default(),
                    message: text(data, "message"),
                },
                EventKind::Error => ChainLine::Error(text(data, "message").unwrap_or_default()),
                EventKind::StreamEnd => ChainLine::End(
                    text(data, "status").unwrap_or_else(|| RunStatus::Unknown.to_string()),
                ),
                _ => return None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        assert_eq!(summary_snippet(&content), Some("the draft"));
        let only_supervisor = detail(vec![event(
            1,
            "node_update",
            json!({"node": "supervisor", "snippet": "planning"}),
        )]);
        assert_eq!(summary_snippet(&only_supervisor), Some("planning"));
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
        assert_eq!(summary_snippet(&only_status), Some("out of memory"));
        assert_eq!(summary_snippet(&detail(vec![])), None);
    }

    #[test]
    fn the_chain_keeps_order_and_sets_status_and_errors_apart() {
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
            event(5, "error", json!({"message": "boom"})),
            event(6, "stream_end", json!({"status": "failed"})),
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
                    snippet: "a".into()
                },
                ChainLine::Error("boom".into()),
                ChainLine::End("failed".into()),
            ]
        );
    }
}
