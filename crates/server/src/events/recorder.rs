//! This server's one writer: it numbers events within their run, persists them in batches (the
//! store gives their global sequence in the transaction), then hands them to the feed.
//!
//! Every event goes through here, so an event is only ever published after its transaction
//! committed: a stream that replays from the store and then follows the hub can neither miss nor
//! repeat one, and an id a subscriber has seen is never handed out again after a restart.
//!
//! When the store cannot be written (a full disk, a read-only file, a database that went away),
//! the failed batch is held
//! and written again with backoff until it goes through: nothing of it is published meanwhile,
//! new runs are refused, and producers wait once the queue is full (running runs are held).
//! [`StoreHealth`] says so to the routes and the streams. A batch the database refuses for its
//! records themselves (a taken key) is written again run by run instead: only the refused
//! run's records are let go, and recording goes on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::events::feed::Feed;
use crate::observe::telemetry::Telemetry;
use crate::store::health::StoreHealth;
use crate::store::{EventRow, RunRow, Store, StoreError, Written};
use runboard_api::clock::now_rfc3339;
use runboard_api::{EventKind, Redaction, RunEvent, RunStatus, StatusChange, StreamEnd};

/// Records in flight to the writer; producers wait when it is this far behind. Large enough
/// to ride out a slow commit at fleet rates (tens of thousands of events a second) without
/// refusing calls; a record is a few hundred bytes.
const QUEUE_CAPACITY: usize = 32_768;

/// Backlog past which mid-answer updates are left out (the next one carries their figures).
const SKIP_UPDATES_AT: usize = QUEUE_CAPACITY / 4;

/// Backlog past which new proxied calls are refused at once (503, `Retry-After`) rather than
/// slowing every call down: starts and ends of calls already taken always have room.
const REFUSE_CALLS_AT: usize = QUEUE_CAPACITY / 2;

/// Most records written in one transaction.
const MAX_BATCH: usize = 2000;

/// The first wait before a failed write is tried again; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);

/// The longest wait between attempts while the store cannot be written.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// An event to record, with its run id filled in.
#[derive(Debug)]
pub struct NewEvent {
    /// The run.
    pub run_id: String,
    /// The event.
    pub event: RunEvent,
    /// When it happened (RFC 3339).
    pub ts: String,
}

impl NewEvent {
    /// An event of `run_id`, stamped now.
    pub fn now(run_id: &str, event: RunEvent) -> Self {
        Self::at(run_id, event, now_rfc3339())
    }

    /// An event of `run_id` that happened at `ts`; events that carry their own time get it too.
    pub fn at(run_id: &str, event: RunEvent, ts: String) -> Self {
        Self {
            run_id: run_id.to_owned(),
            event: event.with_run_id(run_id).stamped(&ts),
            ts,
        }
    }
}

/// An event on its way to the writer with its data already encoded: the producers' threads
/// encode it, so the one writer, which every event waits for, does not.
#[derive(Debug)]
struct Queued {
    new: NewEvent,
    /// `new.event` as stored (its JSON text).
    data: String,
}

impl Queued {
    fn new(new: NewEvent) -> Self {
        let data = new.event.to_json_text();
        Self { new, data }
    }
}

/// What producers hand to the writer.
#[derive(Debug)]
enum Command {
    /// A new run: its row and its `run_created` event; answered once stored (or refused).
    Created {
        run: Box<RunRow>,
        /// The `run_created` event's data.
        data: String,
        stored: oneshot::Sender<Result<(), Refused>>,
        /// Whether a failing store refuses it (its creator waits to answer) rather than
        /// holding it with the running runs' events (its client was answered already).
        refusable: bool,
    },
    /// An event of a known run.
    Event(Box<Queued>),
    /// Events written in one transaction, all or none (restart recovery).
    Together(Vec<Queued>, oneshot::Sender<()>),
    /// Answer once everything sent before is persisted and published.
    Flush(oneshot::Sender<()>),
    /// Write everything sent before, answer, and stop.
    Close(oneshot::Sender<()>),
}

/// The writer has stopped (the server is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the server is shutting down")]
pub struct Stopped;

/// Why a new run was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refused {
    /// The store cannot be written; the reason is the database's.
    #[error("the run store cannot be written: {0}")]
    Unwritable(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Stopped,
}

impl From<Stopped> for Refused {
    fn from(_: Stopped) -> Self {
        Self::Stopped
    }
}

/// What the writer is made of.
#[derive(Debug)]
pub struct WriterSetup {
    /// Where events are stored.
    pub store: Store,
    /// Where committed events are published.
    pub feed: Feed,
    /// Whether the store accepts writes.
    pub health: StoreHealth,
    /// How long a batch waits for more events before it is written.
    pub gather_window: Duration,
    /// This server instance (the owner of the runs it creates).
    pub instance: Arc<str>,
    /// Told the runs another instance took over.
    pub lost: mpsc::UnboundedSender<String>,
    /// What is left out of every run and event before it is stored (`--redact`).
    pub redaction: Option<Redaction>,
}

/// A handle for sending records to the writer.
#[derive(Debug, Clone)]
pub struct Recorder {
    commands: mpsc::Sender<Command>,
    telemetry: Telemetry,
    /// Told after every batch the writer takes: there may be room again.
    room: Arc<tokio::sync::Notify>,
    /// The line of calls waiting for room, in the order they came: only its head waits on
    /// `room`, so a call woken to find the queue still full keeps its place.
    line: Arc<tokio::sync::Mutex<()>>,
    /// Applied here, before anything is queued, so no text reaches the store or a stream.
    redaction: Option<Redaction>,
}

impl Recorder {
    /// Starts the writer task; what it commits goes out through `feed`. On a shared store it
    /// writes as `instance`, and names on `lost` the runs another instance took over from it.
    /// On `shutdown` a writer that is holding an unwritable batch gives up on it.
    pub fn start(
        setup: WriterSetup,
        shutdown: CancellationToken,
        telemetry: Telemetry,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (commands, inbox) = mpsc::channel(QUEUE_CAPACITY);
        let WriterSetup {
            store,
            feed,
            health,
            gather_window,
            instance,
            lost,
            redaction,
        } = setup;
        let room = Arc::new(tokio::sync::Notify::new());
        let writer = Writer {
            room: Arc::clone(&room),
            store,
            feed,
            health,
            shutdown,
            gather_window,
            instance,
            lost,
            runs: HashMap::new(),
            run_seqs: HashMap::new(),
            abandoned: Vec::new(),
        };
        let task = spawn_writer(writer, inbox);
        (
            Self {
                commands,
                telemetry,
                room,
                line: Arc::new(tokio::sync::Mutex::new(())),
                redaction,
            },
            task,
        )
    }

    /// Records a new run and its `run_created` event, and returns once both are stored; a
    /// failing store refuses it.
    pub async fn created(&self, run: RunRow) -> Result<(), Refused> {
        self.hand_over(run, true)
            .await?
            .await
            .map_err(|_| Refused::Stopped)?
    }

    /// Hands a new run to the writer and returns at once with what will say it was stored.
    /// The run's later events queue behind it, so they can be recorded right away. A failing
    /// store holds it with the running runs' events until it can be written (what it stands
    /// for, a proxied call or a replayed run, goes on meanwhile). The answer must be awaited
    /// (or kept) until it comes, as a dropped one marks the run abandoned.
    pub async fn create(
        &self,
        run: RunRow,
    ) -> Result<oneshot::Receiver<Result<(), Refused>>, Stopped> {
        self.hand_over(run, false).await
    }

    async fn hand_over(
        &self,
        mut run: RunRow,
        refusable: bool,
    ) -> Result<oneshot::Receiver<Result<(), Refused>>, Stopped> {
        if let Some(mode) = self.redaction {
            redact_row(mode, &mut run);
        }
        if let Some(worker) = &run.summary.worker {
            self.telemetry
                .fleet()
                .run_worker(&run.summary.run_id, worker);
        }
        self.telemetry.run_created(&run.summary);
        let (stored, answer) = oneshot::channel();
        let data = RunEvent::RunCreated(run.summary.clone()).to_json_text();
        self.send(Command::Created {
            run: Box::new(run),
            data,
            stored,
            refusable,
        })
        .await?;
        Ok(answer)
    }

    /// Records an event of a run, stamped `ts`.
    pub async fn event(&self, run_id: &str, event: RunEvent, ts: String) -> Result<(), Stopped> {
        let new = NewEvent::at(run_id, self.redact(event, ""), ts);
        self.telemetry.observe(run_id, &new.event);
        self.send(Command::Event(Box::new(Queued::new(new)))).await
    }

    /// Records an event that a later one replaces (a `node_update` mid-answer) unless the
    /// writer is behind, so that a producer never waits for the store on its account: its
    /// client's bytes go on at full speed, and the next update carries the latest figures.
    /// False when it was left out.
    pub fn update_or_skip(&self, run_id: &str, event: RunEvent, ts: String) -> bool {
        let new = NewEvent::at(run_id, self.redact(event, ""), ts);
        self.telemetry.observe(run_id, &new.event);
        if self.backlog() >= SKIP_UPDATES_AT {
            self.telemetry.update_skipped();
            return false;
        }
        let sent = self
            .commands
            .try_send(Command::Event(Box::new(Queued::new(new))))
            .is_ok();
        if !sent {
            self.telemetry.update_skipped();
        }
        sent
    }

    /// Records handed to the writer that it has not taken yet: how far the store is behind.
    pub fn backlog(&self) -> usize {
        self.commands.max_capacity() - self.commands.capacity()
    }

    /// Whether the writer is too far behind to take another proxied call now.
    pub fn is_behind(&self) -> bool {
        self.backlog() >= REFUSE_CALLS_AT
    }

    /// Waits up to `limit` for the writer to be less than [`Recorder::is_behind`]: a call
    /// past what the store keeps up with queues here (its latency grows by the wait) rather
    /// than slowing every call down. False when it is still behind after `limit`.
    ///
    /// Calls are let in in the order they came: they stand in a line (a fair lock), and only
    /// the one at its head waits for the writer, woken after each batch it takes. A call let
    /// in steps out of the line, and the next one looks at once. Without the line, a call
    /// woken to find the queue full again went to the back, and some waited out `limit`
    /// while later ones went in.
    pub async fn room_within(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let head = match self.line.try_lock() {
            // Nobody waiting: a call needs no turn while there is room.
            Ok(_) if !self.is_behind() => return true,
            Ok(head) => head,
            Err(_) => match tokio::time::timeout_at(deadline, self.line.lock()).await {
                Ok(head) => head,
                Err(_) => return false,
            },
        };
        while self.is_behind() {
            if tokio::time::timeout_at(deadline, self.room.notified())
                .await
                .is_err()
            {
                return !self.is_behind();
            }
        }
        drop(head);
        true
    }

    /// What this server leaves out of its record (`--redact`).
    pub fn redaction(&self) -> Option<Redaction> {
        self.redaction
    }

    /// `event` as this server records it: without what `--redact` withholds. `task` is the
    /// run's prompt, for narrations that quote it (a producer knows it; `""` otherwise).
    pub fn redact(&self, event: RunEvent, task: &str) -> RunEvent {
        match self.redaction {
            Some(mode) => mode.event(event, task),
            None => event,
        }
    }

    /// Where the server's own metrics are kept.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Records events in one transaction and returns once they are stored.
    pub async fn together(&self, mut events: Vec<NewEvent>) -> Result<(), Stopped> {
        if self.redaction.is_some() {
            events = events
                .into_iter()
                .map(|new| NewEvent {
                    event: self.redact(new.event, ""),
                    ..new
                })
                .collect();
        }
        for new in &events {
            self.telemetry.observe(&new.run_id, &new.event);
        }
        let (done, wait) = oneshot::channel();
        let events = events.into_iter().map(Queued::new).collect();
        self.send(Command::Together(events, done)).await?;
        wait.await.map_err(|_| Stopped)
    }

    /// Waits until everything recorded so far is persisted and published.
    pub async fn flush(&self) -> Result<(), Stopped> {
        let (done, wait) = oneshot::channel();
        self.send(Command::Flush(done)).await?;
        wait.await.map_err(|_| Stopped)
    }

    /// Writes everything recorded so far and stops the writer; later records fail.
    pub async fn close(&self) -> Result<(), Stopped> {
        let (done, wait) = oneshot::channel();
        self.send(Command::Close(done)).await?;
        wait.await.map_err(|_| Stopped)
    }

    async fn send(&self, command: Command) -> Result<(), Stopped> {
        self.commands.send(command).await.map_err(|_| Stopped)
    }
}

/// A new run's row as `mode` records it: its task withheld, its prompt parameters left out.
fn redact_row(mode: Redaction, run: &mut RunRow) {
    mode.summary(&mut run.summary);
    if let Ok(mut params) = serde_json::from_str::<serde_json::Value>(&run.params) {
        mode.params(&mut params);
        run.params = params.to_string();
    }
}

/// Polls the writer on a thread of its own, so under load it never waits in the runtime's queue
/// behind the tasks of thousands of calls and streams (each of its transactions is a series of
/// round trips to the database; on the shared queue every one waited its turn, which cost the
/// proxy bench 10–20 % of its calls at 256 and 1,024 connections). The thread drives it with
/// the server's own runtime (`Handle::block_on`): its timers, its database connections and the
/// tasks it spawns all belong to that runtime, as when it was a task. The handle ends when the
/// writer does.
fn spawn_writer(writer: Writer, inbox: mpsc::Receiver<Command>) -> tokio::task::JoinHandle<()> {
    let runtime = tokio::runtime::Handle::current();
    let (done, finished) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("runboard-writer".into())
        .spawn(move || {
            runtime.block_on(writer.run(inbox));
            drop(done);
        });
    if let Err(error) = thread {
        tracing::error!(%error, "the writer's thread could not start");
    }
    tokio::spawn(async move {
        let _ = finished.await;
    })
}

/// A batch ready to write: rows (numbered by the store as they are written) and who to answer.
#[derive(Default)]
struct Staged {
    events: Vec<EventRow>,
    runs: Vec<RunRow>,
    /// New runs in this batch and their creators.
    created: Vec<NewRun>,
    answers: Vec<oneshot::Sender<()>>,
    close: Option<oneshot::Sender<()>>,
}

/// A new run in a batch: who waits to hear it was stored, and whether a failing store
/// refuses it.
struct NewRun {
    run_id: String,
    stored: oneshot::Sender<Result<(), Refused>>,
    refusable: bool,
}

struct Writer {
    room: Arc<tokio::sync::Notify>,
    store: Store,
    feed: Feed,
    health: StoreHealth,
    shutdown: CancellationToken,
    /// How long a batch waits for more events before it is written (zero: not at all).
    gather_window: Duration,
    instance: Arc<str>,
    lost: mpsc::UnboundedSender<String>,
    /// Summaries of runs not yet finished, kept current as their events go by.
    runs: HashMap<String, RunRow>,
    /// The last run sequence of runs seen since start.
    run_seqs: HashMap<String, i64>,
    /// Runs stored after their creator stopped waiting: they are ended in the next batch.
    abandoned: Vec<String>,
}

impl Writer {
    async fn run(mut self, mut inbox: mpsc::Receiver<Command>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while inbox.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.gather(&mut inbox, &mut batch).await;
            let staged = self.stage(std::mem::take(&mut batch)).await;
            // Taken off the queue: the call at the head of the line looks again.
            self.room.notify_one();
            let closing = staged.close.is_some();
            if !self.write(staged).await || closing {
                return;
            }
        }
    }

    /// At low load each event would be its own transaction: waits the gather window once and
    /// takes what came meanwhile into the same batch, so one commit stores several.
    async fn gather(&self, inbox: &mut mpsc::Receiver<Command>, batch: &mut Vec<Command>) {
        let urgent = |batch: &[Command]| {
            batch
                .iter()
                .any(|command| matches!(command, Command::Close(_) | Command::Together(..)))
        };
        if self.gather_window.is_zero() || batch.len() >= MAX_BATCH || urgent(batch) {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(self.gather_window) => {}
            () = self.shutdown.cancelled() => return,
        }
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
    }

    /// Numbers the commands' events and gathers the runs they change.
    async fn stage(&mut self, commands: Vec<Command>) -> Staged {
        let mut staged = Staged::default();
        let mut changed = HashSet::new();
        for run_id in std::mem::take(&mut self.abandoned) {
            // Its creator was told it failed; it must not wait in the queue forever.
            let message = "its creator stopped waiting before it was stored";
            for event in [
                RunEvent::status(RunStatus::Cancelled, Some(message)),
                RunEvent::stream_end(RunStatus::Cancelled),
            ] {
                let queued = Queued::new(NewEvent::now(&run_id, event));
                self.stage_event(queued, &mut staged, &mut changed).await;
            }
        }
        for command in commands {
            match command {
                Command::Created {
                    run,
                    data,
                    stored,
                    refusable,
                } => {
                    // A creator that gave up (the store was failing) gets no run.
                    if stored.is_closed() {
                        continue;
                    }
                    let run_id = run.summary.run_id.clone();
                    let ts = run.summary.created_at.clone().unwrap_or_default();
                    self.run_seqs.insert(run_id.clone(), 0);
                    self.runs.insert(run_id.clone(), *run);
                    let row = self
                        .number(&run_id, EventKind::RunCreated.as_str(), data, ts)
                        .await;
                    staged.events.push(row);
                    staged.created.push(NewRun {
                        run_id: run_id.clone(),
                        stored,
                        refusable,
                    });
                    changed.insert(run_id);
                }
                Command::Event(new) => self.stage_event(*new, &mut staged, &mut changed).await,
                Command::Together(events, done) => {
                    for new in events {
                        self.stage_event(new, &mut staged, &mut changed).await;
                    }
                    staged.answers.push(done);
                }
                Command::Flush(done) => staged.answers.push(done),
                Command::Close(done) => {
                    staged.close = Some(done);
                    break;
                }
            }
        }
        staged.runs = changed
            .iter()
            .filter_map(|run_id| self.runs.get(run_id).cloned())
            .collect();
        staged
    }

    async fn stage_event(
        &mut self,
        queued: Queued,
        staged: &mut Staged,
        changed: &mut HashSet<String>,
    ) {
        let Queued { new, data } = queued;
        if self.apply(&new.run_id, &new.event, &new.ts).await {
            changed.insert(new.run_id.clone());
        }
        let row = self
            .number(&new.run_id, new.event.name(), data, new.ts)
            .await;
        staged.events.push(row);
    }

    /// Writes a staged batch, holding it until the store takes it; then publishes and answers.
    /// False when the server stopped before the batch could be stored.
    async fn write(&mut self, mut staged: Staged) -> bool {
        let written = match self.store_until_written(&mut staged).await {
            Some(Ok(written)) => written,
            Some(Err(refusal)) => match self.write_run_by_run(&mut staged, &refusal).await {
                Some(written) => written,
                None => return false,
            },
            None => return false,
        };
        if self.health.set_writable() {
            tracing::info!("the store can be written again; runs continue");
        }
        for run_id in written.lost {
            tracing::warn!(
                run = %run_id,
                "another instance took this run over (this one's lease had expired); it stops here"
            );
            self.runs.remove(&run_id);
            self.run_seqs.remove(&run_id);
            let _ = self.lost.send(run_id);
        }
        for run in &staged.runs {
            if run.summary.status.is_finished() {
                self.runs.remove(&run.summary.run_id);
                self.run_seqs.remove(&run.summary.run_id);
            } else if let Some(cached) = self.runs.get_mut(&run.summary.run_id) {
                // Its order is given by the store when it is first written.
                cached.ord = run.ord;
            }
        }
        self.feed.committed(&staged.events).await;
        for new in staged.created {
            if new.stored.send(Ok(())).is_err() {
                self.abandoned.push(new.run_id);
            }
        }
        for done in staged.answers {
            let _ = done.send(());
        }
        if let Some(done) = staged.close {
            let _ = done.send(());
        }
        true
    }

    /// Writes `staged`, trying again with backoff while the store cannot be written (a full
    /// disk, a lost connection). The store's refusal when it refuses the records themselves,
    /// which no try can change; `None` when the server stopped first.
    async fn store_until_written(
        &mut self,
        staged: &mut Staged,
    ) -> Option<Result<Written, StoreError>> {
        let mut delay = FIRST_RETRY_DELAY;
        let mut failed_before = false;
        loop {
            // A failed try may have committed all the same (the connection was lost after
            // its COMMIT was sent): then it must not be written twice.
            if failed_before
                && matches!(
                    self.store
                        .was_stored(&mut staged.events, &mut staged.runs)
                        .await,
                    Ok(true)
                )
            {
                return Some(Ok(Written::default()));
            }
            let attempt = self
                .store
                .write_batch(&mut staged.events, &mut staged.runs, &self.instance)
                .await;
            let error = match attempt {
                Ok(written) => return Some(Ok(written)),
                Err(error) if error.refuses_records() => return Some(Err(error)),
                Err(error) => error,
            };
            failed_before = true;
            self.refuse_new_runs(staged, &error);
            if self.health.set_unwritable(&error.reason()) {
                tracing::error!(
                    %error,
                    "new runs are refused and running runs are held until the store can be \
                     written again"
                );
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shutdown.cancelled() => {
                    tracing::error!(
                        events = staged.events.len(),
                        "stopping with events that could not be stored (never sent to anyone); \
                         their runs are failed at the next start"
                    );
                    return None;
                }
            }
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    /// After the store refused a batch's records (`refusal`): writes it again run by run, so
    /// only the runs whose own records it refuses are lost, each said so in the log and to its
    /// creator, and every other run of the batch, and every batch after it, is stored. Tried
    /// again as it was, the batch would be refused at every try and nothing more recorded.
    /// `staged` keeps what was written, in the order it was; `None` when the server stopped.
    async fn write_run_by_run(
        &mut self,
        staged: &mut Staged,
        refusal: &StoreError,
    ) -> Option<Written> {
        tracing::warn!(%refusal, "the store refused a batch; writing it again run by run");
        let mut groups: Vec<Staged> = Vec::new();
        let mut group_of: HashMap<String, usize> = HashMap::new();
        let mut group = |run_id: &str, groups: &mut Vec<Staged>| {
            *group_of.entry(run_id.to_owned()).or_insert_with(|| {
                groups.push(Staged::default());
                groups.len() - 1
            })
        };
        for event in std::mem::take(&mut staged.events) {
            let index = group(&event.run_id, &mut groups);
            groups[index].events.push(event);
        }
        for run in std::mem::take(&mut staged.runs) {
            let index = group(&run.summary.run_id, &mut groups);
            groups[index].runs.push(run);
        }
        for new in std::mem::take(&mut staged.created) {
            let index = group(&new.run_id, &mut groups);
            groups[index].created.push(new);
        }
        let mut written = Written::default();
        for mut part in groups {
            match self.store_until_written(&mut part).await? {
                Ok(part_written) => {
                    written.lost.extend(part_written.lost);
                    staged.events.append(&mut part.events);
                    staged.runs.append(&mut part.runs);
                    staged.created.append(&mut part.created);
                }
                Err(error) => self.drop_refused(part, &error),
            }
        }
        Some(written)
    }

    /// Lets go of one run's records that the store refuses: logged with the reason, its
    /// creator told, and the run forgotten here (its later records are tried on their own).
    fn drop_refused(&mut self, part: Staged, error: &StoreError) {
        let run_id = part
            .events
            .first()
            .map(|event| event.run_id.clone())
            .or_else(|| part.runs.first().map(|run| run.summary.run_id.clone()))
            .unwrap_or_default();
        tracing::error!(
            run = %run_id,
            events = part.events.len(),
            %error,
            "the store refused these records of a run; they are not recorded"
        );
        self.runs.remove(&run_id);
        self.run_seqs.remove(&run_id);
        for new in part.created {
            let _ = new.stored.send(Err(Refused::Unwritable(error.reason())));
        }
    }

    /// Takes the new runs whose creators wait out of a batch that failed and tells them, so a
    /// request is never answered 201 for a run that is not stored. The others stay in the
    /// batch, held with the running runs' events: a proxied call's client has its answer
    /// already, and its run must not be lost.
    fn refuse_new_runs(&mut self, staged: &mut Staged, error: &StoreError) {
        let (refused, held): (Vec<NewRun>, Vec<NewRun>) = std::mem::take(&mut staged.created)
            .into_iter()
            .partition(|new| new.refusable);
        staged.created = held;
        if refused.is_empty() {
            return;
        }
        let refused_ids: HashSet<String> = refused.iter().map(|new| new.run_id.clone()).collect();
        for new in refused {
            self.runs.remove(&new.run_id);
            self.run_seqs.remove(&new.run_id);
            let _ = new.stored.send(Err(Refused::Unwritable(error.reason())));
        }
        staged
            .events
            .retain(|event| !refused_ids.contains(&event.run_id));
        staged
            .runs
            .retain(|run| !refused_ids.contains(&run.summary.run_id));
    }

    /// The row of a run's next event: `event` its name, `data` its JSON text.
    async fn number(&mut self, run_id: &str, event: &str, data: String, ts: String) -> EventRow {
        let run_seq = if let Some(last) = self.run_seqs.get_mut(run_id) {
            *last += 1;
            *last
        } else {
            // A run from before a restart: continue its sequence from the store.
            let last = self.store.last_run_seq(run_id).await.unwrap_or(0) + 1;
            self.run_seqs.insert(run_id.to_owned(), last);
            last
        };
        EventRow {
            // Given by the store in the write transaction.
            seq: 0,
            run_id: run_id.to_owned(),
            run_seq,
            event: event.to_owned(),
            data,
            ts,
        }
    }

    /// Updates the run's summary from one of its events; true when it changed.
    async fn apply(&mut self, run_id: &str, event: &RunEvent, ts: &str) -> bool {
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
        match event {
            RunEvent::Status(StatusChange { status, .. })
            | RunEvent::StreamEnd(StreamEnd { status, .. }) => {
                let status = *status;
                if status == RunStatus::Unknown {
                    return false;
                }
                summary.status = status;
                if status == RunStatus::Running && summary.started_at.is_none() {
                    summary.started_at = Some(ts.to_owned());
                }
                if status.is_finished() && summary.finished_at.is_none() {
                    summary.finished_at = Some(ts.to_owned());
                }
            }
            RunEvent::NodeUpdate(update) => {
                if let Some(tokens) = update.tokens_out {
                    summary.tokens_out = tokens;
                }
                summary.agent = update.agent.clone().or(summary.agent.take());
                if update.iteration.is_some() {
                    summary.iteration = update.iteration;
                }
                summary.snippet = update.snippet.clone().or(summary.snippet.take());
            }
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorder whose queue nobody takes from but the test: it drains it by hand.
    fn unattended() -> (Recorder, mpsc::Receiver<Command>) {
        let (commands, inbox) = mpsc::channel(QUEUE_CAPACITY);
        let recorder = Recorder {
            commands,
            telemetry: Telemetry::new(),
            room: Arc::new(tokio::sync::Notify::new()),
            line: Arc::new(tokio::sync::Mutex::new(())),
            redaction: None,
        };
        (recorder, inbox)
    }

    /// One record queued, as a call that was let in queues its events.
    fn queue_one(recorder: &Recorder) {
        let (done, _) = oneshot::channel();
        recorder.commands.try_send(Command::Flush(done)).unwrap();
    }

    /// The writer taking one record and saying so.
    fn take_one(recorder: &Recorder, inbox: &mut mpsc::Receiver<Command>) {
        inbox.try_recv().unwrap();
        recorder.room.notify_one();
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    fn row(run_id: &str) -> RunRow {
        RunRow {
            summary: runboard_api::RunSummary {
                created_at: Some(now_rfc3339()),
                ..runboard_api::RunSummary::new(run_id, "a task", RunStatus::Running)
            },
            ord: 0,
            params: "{}".into(),
            owner: Some("i-test".into()),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_the_store_refuses_are_let_go_and_the_rest_of_their_batch_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::DbLocation::File(dir.path().join("r.db")))
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let health = StoreHealth::new();
        let feed = Feed::new(
            crate::events::hub::Hub::new(64, 0),
            store.clone(),
            0,
            shutdown.clone(),
        );
        let (lost, _lost) = mpsc::unbounded_channel();
        let (recorder, writer) = Recorder::start(
            WriterSetup {
                store: store.clone(),
                feed,
                health: health.clone(),
                // Long enough that the two new runs below share one batch.
                gather_window: Duration::from_millis(200),
                instance: Arc::from("i-test"),
                lost,
                redaction: None,
            },
            shutdown.clone(),
            Telemetry::new(),
        );
        recorder.created(row("run-a")).await.unwrap();

        // A second run with a taken id (its `run_created` takes a key the first one holds)
        // in one batch with a run that is fine.
        let taken = recorder.create(row("run-a")).await.unwrap();
        let fine = recorder.create(row("run-b")).await.unwrap();
        let refused = tokio::time::timeout(Duration::from_secs(10), taken)
            .await
            .expect("the writer answers rather than trying for ever")
            .unwrap();
        assert!(
            matches!(refused, Err(Refused::Unwritable(ref reason)) if reason.contains("UNIQUE")),
            "{refused:?}"
        );
        tokio::time::timeout(Duration::from_secs(10), fine)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(store.run("run-b").await.unwrap().is_some());
        assert!(health.is_writable());

        // Later records are stored as before.
        recorder
            .event(
                "run-b",
                RunEvent::status(RunStatus::Completed, None),
                now_rfc3339(),
            )
            .await
            .unwrap();
        recorder.flush().await.unwrap();
        let stored = store.run("run-b").await.unwrap().unwrap();
        assert_eq!(stored.summary.status, RunStatus::Completed);
        assert_eq!(store.run_events("run-a").await.unwrap().len(), 1);
        recorder.close().await.unwrap();
        shutdown.cancel();
        let _ = writer.await;
    }

    #[tokio::test]
    async fn calls_waiting_for_the_writer_are_let_in_in_the_order_they_came() {
        let (recorder, mut inbox) = unattended();
        assert!(recorder.room_within(Duration::ZERO).await, "room at first");
        for _ in 0..REFUSE_CALLS_AT {
            queue_one(&recorder);
        }
        assert!(recorder.is_behind());
        // A call that cannot wait is refused once its time is up.
        assert!(!recorder.room_within(Duration::from_millis(20)).await);

        let let_in = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut calls = tokio::task::JoinSet::new();
        let call = |number: usize, calls: &mut tokio::task::JoinSet<()>| {
            let recorder = recorder.clone();
            let let_in = Arc::clone(&let_in);
            calls.spawn(async move {
                assert!(recorder.room_within(Duration::from_secs(30)).await);
                let_in.lock().unwrap().push(number);
                // Its own records fill the room it was let into.
                queue_one(&recorder);
            });
        };
        for number in 0..3 {
            call(number, &mut calls);
            settle().await;
        }
        // Woken while the queue is still full: the first call keeps its place.
        recorder.room.notify_one();
        settle().await;
        assert!(let_in.lock().unwrap().is_empty());
        // Room for one, and a call comes at that moment: it waits behind the three.
        take_one(&recorder, &mut inbox);
        call(3, &mut calls);
        settle().await;
        assert_eq!(*let_in.lock().unwrap(), vec![0]);
        for _ in 0..3 {
            take_one(&recorder, &mut inbox);
            settle().await;
        }
        while calls.join_next().await.is_some() {}
        assert_eq!(*let_in.lock().unwrap(), vec![0, 1, 2, 3]);
        assert!(recorder.is_behind());
    }
}
