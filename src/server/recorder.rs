//! The one writer: it numbers events, persists them in batches, then fans them out.
//!
//! Every event goes through here, so the global and per-run sequences are gap-free and an event
//! is only ever published after its transaction committed: a stream that replays from the store
//! and then follows the hub can neither miss nor repeat one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::hub::{Hub, Published};
use super::store::{EventRow, RunRow, Store};
use crate::api::RunStatus;

/// Records in flight to the writer; producers wait when it is this far behind.
const QUEUE_CAPACITY: usize = 8192;

/// Most records written in one transaction.
const MAX_BATCH: usize = 2000;

/// What producers hand to the writer.
#[derive(Debug)]
enum Command {
    /// A new run: its row and its `run_created` event.
    Created(Box<RunRow>),
    /// An event of a known run. `data` is a JSON object that carries `run_id`.
    Event {
        run_id: String,
        event: &'static str,
        data: Value,
        ts: String,
    },
    /// Answer once everything sent before is persisted and published.
    Flush(oneshot::Sender<()>),
}

/// The writer has stopped (the server is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the server is shutting down")]
pub struct Stopped;

/// A handle for sending records to the writer.
#[derive(Debug, Clone)]
pub struct Recorder {
    commands: mpsc::Sender<Command>,
}

impl Recorder {
    /// Starts the writer task. `last_seq` is where the global sequence stands in the store.
    pub fn start(store: Store, hub: Hub, last_seq: i64) -> (Self, tokio::task::JoinHandle<()>) {
        let (commands, inbox) = mpsc::channel(QUEUE_CAPACITY);
        let writer = Writer {
            store,
            hub,
            next_seq: last_seq + 1,
            runs: HashMap::new(),
            run_seqs: HashMap::new(),
        };
        let task = tokio::spawn(writer.run(inbox));
        (Self { commands }, task)
    }

    /// Records a new run and its `run_created` event.
    pub async fn created(&self, run: RunRow) -> Result<(), Stopped> {
        self.send(Command::Created(Box::new(run))).await
    }

    /// Records an event of a run; `data` must be a JSON object, and gets `run_id` added.
    pub async fn event(
        &self,
        run_id: &str,
        event: &'static str,
        mut data: Value,
        ts: String,
    ) -> Result<(), Stopped> {
        if let Value::Object(map) = &mut data {
            map.insert("run_id".into(), Value::String(run_id.to_owned()));
        }
        self.send(Command::Event {
            run_id: run_id.to_owned(),
            event,
            data,
            ts,
        })
        .await
    }

    /// Waits until everything recorded so far is persisted and published.
    pub async fn flush(&self) -> Result<(), Stopped> {
        let (done, wait) = oneshot::channel();
        self.send(Command::Flush(done)).await?;
        wait.await.map_err(|_| Stopped)
    }

    async fn send(&self, command: Command) -> Result<(), Stopped> {
        self.commands.send(command).await.map_err(|_| Stopped)
    }
}

struct Writer {
    store: Store,
    hub: Hub,
    next_seq: i64,
    /// Summaries of runs not yet finished, kept current as their events go by.
    runs: HashMap<String, RunRow>,
    /// The last run sequence of runs seen since start.
    run_seqs: HashMap<String, i64>,
}

impl Writer {
    async fn run(mut self, mut inbox: mpsc::Receiver<Command>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while inbox.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.write(std::mem::take(&mut batch)).await;
        }
    }

    async fn write(&mut self, commands: Vec<Command>) {
        let mut events = Vec::with_capacity(commands.len());
        let mut changed = HashSet::new();
        let mut flushes = Vec::new();
        for command in commands {
            match command {
                Command::Created(run) => {
                    let run_id = run.summary.run_id.clone();
                    let data = serde_json::to_value(&run.summary).unwrap_or(Value::Null);
                    let ts = run.summary.created_at.clone().unwrap_or_default();
                    self.run_seqs.insert(run_id.clone(), 0);
                    self.runs.insert(run_id.clone(), *run);
                    events.push(self.number(&run_id, "run_created", &data, ts).await);
                    changed.insert(run_id);
                }
                Command::Event {
                    run_id,
                    event,
                    data,
                    ts,
                } => {
                    if self.apply(&run_id, event, &data, &ts).await {
                        changed.insert(run_id.clone());
                    }
                    events.push(self.number(&run_id, event, &data, ts).await);
                }
                Command::Flush(done) => flushes.push(done),
            }
        }
        let runs: Vec<RunRow> = changed
            .iter()
            .filter_map(|run_id| self.runs.get(run_id).cloned())
            .collect();
        self.persist(&events, &runs).await;
        for run in &runs {
            if run.summary.status.is_finished() {
                self.runs.remove(&run.summary.run_id);
                self.run_seqs.remove(&run.summary.run_id);
            }
        }
        for event in &events {
            self.hub.publish(Arc::new(Published::from_row(event)));
        }
        for done in flushes {
            let _ = done.send(());
        }
    }

    /// Persists a batch, retrying a failed write a few times. If the database stays broken the
    /// events are still published, so live viewers keep going; replay will lack them.
    async fn persist(&self, events: &[EventRow], runs: &[RunRow]) {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=4 {
            match self.store.write_batch(events, runs).await {
                Ok(()) => return,
                Err(error) if attempt < 4 => {
                    eprintln!("runboard serve: warning: {error}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
                Err(error) => {
                    eprintln!(
                        "runboard serve: error: {error}; {} events were not stored",
                        events.len()
                    );
                }
            }
        }
    }

    async fn number(&mut self, run_id: &str, event: &str, data: &Value, ts: String) -> EventRow {
        let run_seq = if let Some(last) = self.run_seqs.get_mut(run_id) {
            *last += 1;
            *last
        } else {
            // A run from before a restart: continue its sequence from the store.
            let last = self.store.last_run_seq(run_id).await.unwrap_or(0) + 1;
            self.run_seqs.insert(run_id.to_owned(), last);
            last
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        EventRow {
            seq,
            run_id: run_id.to_owned(),
            run_seq,
            event: event.to_owned(),
            data: data.to_string(),
            ts,
        }
    }

    /// Updates the run's summary from one of its events; true when it changed.
    async fn apply(&mut self, run_id: &str, event: &str, data: &Value, ts: &str) -> bool {
        if !self.runs.contains_key(run_id) {
            match self.store.run(run_id).await {
                Ok(Some(run)) => {
                    self.runs.insert(run_id.to_owned(), run);
                }
                _ => return false,
            }
        }
        let Some(run) = self.runs.get_mut(run_id) else {
            return false;
        };
        let summary = &mut run.summary;
        let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
        match event {
            "status" | "stream_end" => {
                let Some(status) = text("status").as_deref().and_then(RunStatus::parse) else {
                    return false;
                };
                summary.status = status;
                if status == RunStatus::Running && summary.started_at.is_none() {
                    summary.started_at = Some(ts.to_owned());
                }
                if status.is_finished() && summary.finished_at.is_none() {
                    summary.finished_at = Some(ts.to_owned());
                }
            }
            "node_update" => {
                if let Some(tokens) = data.get("tokens_out").and_then(Value::as_u64) {
                    summary.tokens_out = tokens;
                }
                summary.agent = text("agent").or(summary.agent.take());
                if let Some(iteration) = data.get("iteration").and_then(Value::as_u64) {
                    summary.iteration = u32::try_from(iteration).ok();
                }
                summary.snippet = text("snippet").or(summary.snippet.take());
            }
            _ => return false,
        }
        true
    }
}
