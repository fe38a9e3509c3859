//! The life of runs: creation, the queue under the concurrency limit, cancel, and what a restart
//! finds.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::events::recorder::{NewEvent, Recorder, Refused, Stopped};
use crate::observe::active_requests::RequestTracker;
use crate::producers::generator::{self, GeneratorConfig};
use crate::producers::models_job;
use crate::producers::rng::SplitMix64;
use crate::producers::run_context::{Outcome, RunContext};
use crate::producers::run_ids::{RunIds, instance_hash, instance_tag};
use crate::producers::upstream::{self, UpstreamPool};
use crate::store::health::StoreHealth;
use crate::store::{RunRow, Store, StoreError};
use runboard_api::clock::now_rfc3339;
use runboard_api::{ErrorCode, MODELS_JOB, PROMPT_WITHHELD, RunEvent, RunStatus, RunSummary};

/// What `cancel` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run was queued or running; it is being cancelled.
    Cancelling,
    /// The run had already finished.
    AlreadyFinished,
    /// No such run.
    Unknown,
}

/// How long a create waits for the store to confirm the run before it answers 503.
const CREATE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs that may wait for a slot by default.
pub const DEFAULT_MAX_QUEUED: usize = 10_000;

/// How many runs may generate and wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Runs generating at once.
    pub concurrency: usize,
    /// Runs waiting for a slot; past it new runs are refused (429).
    pub max_queued: usize,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            concurrency: 18,
            max_queued: DEFAULT_MAX_QUEUED,
        }
    }
}

/// What a run manager is made of.
#[derive(Debug)]
pub struct RunsSetup {
    /// Where events go.
    pub recorder: Recorder,
    /// Where runs are read.
    pub store: Store,
    /// The synthetic generator's settings.
    pub generator: GeneratorConfig,
    /// How many runs generate and wait.
    pub limits: RunLimits,
    /// Where the run order stands in the store (seeds run ids under `--seed`).
    pub last_ord: i64,
    /// The newest run id in the store, which new ids continue above.
    pub newest_run: Option<String>,
    /// Ends every run's work when cancelled.
    pub shutdown: CancellationToken,
    /// Where generation requests are tracked.
    pub requests: RequestTracker,
    /// Whether the store accepts writes.
    pub health: StoreHealth,
    /// The model servers runs are generated on; `None` runs the synthetic generator.
    pub upstreams: Option<UpstreamPool>,
    /// This server instance: the owner of the runs it creates.
    pub instance: Arc<str>,
}

/// Why a run was not created.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CreateError {
    /// The store cannot be written.
    #[error("{0}")]
    Unwritable(String),
    /// Too many runs are waiting already.
    #[error("{queued} runs are waiting already (the limit is {limit}); try again later")]
    QueueFull {
        /// Runs waiting now.
        queued: usize,
        /// The limit.
        limit: usize,
    },
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Stopped,
}

/// Starts, queues and cancels runs.
#[derive(Debug, Clone)]
pub struct Runs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    recorder: Recorder,
    store: Store,
    generator: GeneratorConfig,
    slots: Arc<Semaphore>,
    limits: RunLimits,
    /// Runs scheduled but not yet holding a slot.
    queued: AtomicUsize,
    health: StoreHealth,
    /// Runs not finished yet, with the token that cancels each.
    live: Mutex<HashMap<String, CancellationToken>>,
    /// Who asked for a live run's cancel (a named token), for the message of its end.
    cancelled_by: Mutex<HashMap<String, String>>,
    /// Adopted runs the writer has not confirmed yet.
    unconfirmed: Mutex<HashSet<String>>,
    ids: Mutex<RunIds>,
    shutdown: CancellationToken,
    requests: RequestTracker,
    upstreams: Option<UpstreamPool>,
    instance: Arc<str>,
    /// Runs another instance took over from this one: their work stops and nothing more of
    /// them is written from here.
    lost: Mutex<HashSet<String>>,
}

impl Runs {
    /// A run manager for this setup.
    pub fn new(setup: RunsSetup) -> Self {
        let RunsSetup {
            recorder,
            store,
            generator,
            limits,
            last_ord,
            newest_run,
            shutdown,
            requests,
            health,
            upstreams,
            instance,
        } = setup;
        // Instances sharing a store with the same `--seed` must not make the same ids.
        let shared_salt = if store.is_shared() {
            instance_hash(&instance)
        } else {
            0
        };
        let ids = match generator.seed {
            // Run ids continue from the stored count, so a restart does not repeat them.
            Some(seed) => RunIds::seeded(SplitMix64::new(
                seed ^ u64::try_from(last_ord).unwrap_or(0).rotate_left(17) ^ shared_salt,
            )),
            None => RunIds::ordered(
                SplitMix64::from_entropy(),
                newest_run.as_deref(),
                store.is_shared().then(|| instance_tag(&instance)),
            ),
        };
        Self {
            inner: Arc::new(Inner {
                recorder,
                store,
                generator,
                slots: Arc::new(Semaphore::new(limits.concurrency.max(1))),
                limits,
                queued: AtomicUsize::new(0),
                health,
                live: Mutex::new(HashMap::new()),
                cancelled_by: Mutex::new(HashMap::new()),
                unconfirmed: Mutex::new(HashSet::new()),
                ids: Mutex::new(ids),
                shutdown,
                requests,
                upstreams,
                instance,
                lost: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// The writer that records every run's events.
    pub fn recorder(&self) -> &Recorder {
        &self.inner.recorder
    }

    /// This server instance's id.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Creates a queued run, stores it and schedules it. Returns its summary once it is stored;
    /// refused while the store cannot be written or too many runs wait.
    /// `launched_by` is the named token that asked for it, kept in the run's summary.
    pub async fn create(
        &self,
        task: String,
        params: Value,
        launched_by: Option<String>,
    ) -> Result<RunSummary, CreateError> {
        let status = self.inner.health.current();
        if !status.writable {
            return Err(CreateError::Unwritable(status.error.unwrap_or_default()));
        }
        let limit = self.inner.limits.max_queued;
        // Take a place in the queue now, so a burst cannot overshoot the limit.
        self.inner
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |queued| {
                (queued < limit).then_some(queued + 1)
            })
            .map_err(|queued| CreateError::QueueFull { queued, limit })?;
        let created = self.store_new_run(task, params, launched_by).await;
        if created.is_err() {
            self.inner.queued.fetch_sub(1, Ordering::SeqCst);
        }
        let (row, seed) = created?;
        // The launcher is answered with the run as it was stored: under `--redact` without
        // its prompt, like every later read of it.
        let mut summary = row.summary.clone();
        if let Some(mode) = self.inner.recorder.redaction() {
            mode.summary(&mut summary);
        }
        self.schedule(row, seed);
        Ok(summary)
    }

    /// A new queued run's row, with its id and seed.
    fn new_row(&self, task: String, params: &Value, launched_by: Option<String>) -> (RunRow, u64) {
        let (run_id, seed) = self
            .inner
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next();
        let summary = RunSummary {
            created_at: Some(now_rfc3339()),
            worker: worker_of(params),
            launched_by,
            ..RunSummary::new(run_id, task, RunStatus::Queued)
        };
        let row = RunRow {
            summary,
            // Given by the store when the run is written.
            ord: 0,
            params: params.to_string(),
            owner: Some(self.inner.instance.to_string()),
        };
        (row, seed)
    }

    async fn store_new_run(
        &self,
        task: String,
        params: Value,
        launched_by: Option<String>,
    ) -> Result<(RunRow, u64), CreateError> {
        let (row, seed) = self.new_row(task, &params, launched_by);
        // Answer only once the run is stored, so a GET right after the POST finds it; a store
        // that stops answering gets a 503, and the writer then drops the run.
        match tokio::time::timeout(CREATE_WAIT, self.inner.recorder.created(row.clone())).await {
            Ok(Ok(())) => Ok((row, seed)),
            Ok(Err(Refused::Unwritable(reason))) => Err(CreateError::Unwritable(reason)),
            Ok(Err(Refused::Stopped)) => Err(CreateError::Stopped),
            Err(_) => Err(CreateError::Unwritable(format!(
                "the store did not confirm the write within {} s",
                CREATE_WAIT.as_secs()
            ))),
        }
    }

    /// Starts a run whose work happens elsewhere (a proxied client's requests): `running` at
    /// once, outside the queue and `--concurrency` (the client decides when to generate). It
    /// is handed to the writer without waiting for its commit, which would delay the client's
    /// first byte by a transaction; its events queue behind it. It can be cancelled like any
    /// run; [`Runs::release`] records its end.
    pub async fn adopt(&self, task: String, params: Value) -> Result<RunContext, CreateError> {
        let status = self.inner.health.current();
        if !status.writable {
            return Err(CreateError::Unwritable(status.error.unwrap_or_default()));
        }
        let (row, seed) = self.new_row(task, &params, None);
        let run_id = row.summary.run_id.clone();
        self.unconfirmed().insert(run_id.clone());
        let Ok(stored) = self.inner.recorder.create(row.clone()).await else {
            self.unconfirmed().remove(&run_id);
            return Err(CreateError::Stopped);
        };
        // The writer's answer is awaited on the side: the client's bytes do not wait for a
        // commit; reads of the run wait instead (`is_unconfirmed`, `settle`).
        let runs = self.clone();
        let confirmed = run_id.clone();
        tokio::spawn(async move {
            if !matches!(stored.await, Ok(Ok(()))) {
                tracing::warn!(run = %confirmed, "a proxied call's run could not be stored");
            }
            runs.unconfirmed().remove(&confirmed);
        });

        let cancel = CancellationToken::new();
        self.inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run_id.clone(), cancel.clone());
        let started = self
            .inner
            .recorder
            .event(
                &run_id,
                RunEvent::status(RunStatus::Running, Some("started")),
                now_rfc3339(),
            )
            .await;
        if started.is_err() {
            self.forget(&run_id);
            return Err(CreateError::Stopped);
        }
        let context = RunContext {
            run_id,
            task: row.summary.task,
            params,
            recorder: self.inner.recorder.clone(),
            cancel,
            shutdown: self.inner.shutdown.clone(),
            seed,
            requests: self.inner.requests.clone(),
        };
        Ok(context)
    }

    /// Records how an adopted run ended; an interrupted one is left `running` for the next
    /// start to fail, as generated runs are.
    pub async fn release(&self, run_id: &str, outcome: Outcome) {
        self.forget(run_id);
        let _ = self.finish(run_id, outcome).await;
    }

    /// Whether the run was adopted and handed to the writer, which has not said yet that it
    /// is stored.
    pub fn is_unconfirmed(&self, run_id: &str) -> bool {
        self.unconfirmed().contains(run_id)
    }

    fn unconfirmed(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner
            .unconfirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until everything handed to the writer so far is stored: an adopted run is
    /// answered for before its commit, so a read of it may need this first.
    pub async fn settle(&self) {
        let _ = self.inner.recorder.flush().await;
    }

    fn forget(&self, run_id: &str) {
        self.inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(run_id);
        self.cancelled_by().remove(run_id);
    }

    fn cancelled_by(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.inner
            .cancelled_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The message of a cancelled run's end: `how` it was cancelled, and by whom when a named
    /// token asked ("cancelled by request by ops" reads as "cancelled by ops").
    fn cancel_message(&self, run_id: &str, how: &str) -> String {
        match self.cancelled_by().remove(run_id) {
            Some(name) if how == CANCELLED_BY_REQUEST => format!("cancelled by {name}"),
            Some(name) => format!("{how} by {name}"),
            None => how.to_owned(),
        }
    }

    /// Runs waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::SeqCst)
    }

    /// Cancels a queued or running run: here, or through the store at the instance that
    /// runs it. `by` is the named token that asked, said in the run's end.
    pub async fn cancel(
        &self,
        run_id: &str,
        by: Option<&str>,
    ) -> Result<CancelOutcome, StoreError> {
        if self.cancel_here(run_id, by) {
            return Ok(CancelOutcome::Cancelling);
        }
        let Some(run) = self.inner.store.run(run_id).await? else {
            return Ok(CancelOutcome::Unknown);
        };
        if run.summary.status.is_finished() {
            return Ok(CancelOutcome::AlreadyFinished);
        }
        match run.owner.as_deref() {
            Some(owner) if owner != &*self.inner.instance && self.inner.store.is_shared() => {
                self.inner.store.send_cancel(owner, run_id, by).await?;
                Ok(CancelOutcome::Cancelling)
            }
            // Ours but not live here: it is ending, or a take-over is about to fail it.
            _ => Ok(CancelOutcome::AlreadyFinished),
        }
    }

    /// Cancels a run if it is live on this instance, asked by `by` (a named token); false when
    /// it is not live here.
    pub fn cancel_here(&self, run_id: &str, by: Option<&str>) -> bool {
        let token = self
            .inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(run_id)
            .cloned();
        token.is_some_and(|token| {
            if let Some(name) = by {
                self.cancelled_by()
                    .entry(run_id.to_owned())
                    .or_insert_with(|| name.to_owned());
            }
            token.cancel();
            true
        })
    }

    /// Another instance took this run over: its work here stops and its end is not written.
    pub fn lose(&self, run_id: &str) {
        self.inner
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run_id.to_owned());
        self.inner.recorder.telemetry().run_lost(run_id);
        self.cancel_here(run_id, None);
    }

    /// Every run live here was taken over (this instance was silent past its lease).
    pub fn lose_all(&self) {
        let live: Vec<String> = self
            .inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for run_id in live {
            self.lose(&run_id);
        }
    }

    fn is_lost(&self, run_id: &str) -> bool {
        self.inner
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(run_id)
    }

    /// At start: takes over the runs left by servers that are gone. On SQLite that is every
    /// unfinished run (one server per file: the last one stopped); on a shared store, the runs
    /// of instances that stopped or expired, and runs stored before owners were kept. Alive
    /// instances are watched by their leases instead.
    pub async fn recover(&self) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let me = self.inner.instance.clone();
        let restart = "interrupted by server restart";
        self.take_over(None, restart).await?;
        if !store.is_shared() {
            for instance in store.instances().await? {
                if *instance.id != *me {
                    self.take_over(Some((&instance.id, instance.beats)), restart)
                        .await?;
                }
            }
        }
        // A server starting on a stopped one's runs: that is a restart, whatever the backend.
        for (owner, _) in store.orphaned_owners().await? {
            self.take_over(Some((&owner, i64::MIN)), restart).await?;
        }
        Ok(())
    }

    /// Takes over the unfinished runs of `dead` (an instance id and the heartbeat count it was
    /// last seen at; `None`: runs without an owner): the running ones are failed with
    /// `message` (their work was lost with their server), the queued ones run here. The
    /// failures are written in one transaction, so a stop during it leaves all or none. False
    /// when the instance turned out to be alive after all.
    pub async fn take_over(
        &self,
        dead: Option<(&str, i64)>,
        message: &str,
    ) -> Result<bool, StoreError> {
        let Some(taken) = self
            .inner
            .store
            .take_over(dead, &self.inner.instance, message)
            .await?
        else {
            return Ok(false);
        };
        // A proxied call is its client's: sending it again would be a call nobody made (and
        // paid for), so one found unfinished is failed, started or not. Only runs runboard
        // generates itself are run here, and only those that never started.
        let (proxied, queued): (Vec<RunRow>, Vec<RunRow>) =
            taken.queued.into_iter().partition(is_proxied);
        // A run whose prompt `--redact` kept out of the store cannot be run from the store.
        let (withheld, queued): (Vec<RunRow>, Vec<RunRow>) = queued
            .into_iter()
            .partition(|run| run.summary.task == PROMPT_WITHHELD);
        let proxied_message = format!("{PROXY_STOPPED} ({message})");
        let withheld_message = format!("{PROMPT_NOT_STORED} ({message})");
        let mut events = Vec::new();
        let failed = taken
            .running
            .iter()
            .map(|run| {
                let why = if is_proxied(run) {
                    proxied_message.as_str()
                } else {
                    message
                };
                (run, why)
            })
            .chain(proxied.iter().map(|run| (run, proxied_message.as_str())))
            .chain(withheld.iter().map(|run| (run, withheld_message.as_str())));
        for (run, why) in failed {
            let run_id = &run.summary.run_id;
            events.push(NewEvent::now(
                run_id,
                RunEvent::error(why, ErrorCode::Interrupted),
            ));
            events.push(NewEvent::now(
                run_id,
                RunEvent::status(RunStatus::Failed, Some(why)),
            ));
            events.push(NewEvent::now(
                run_id,
                RunEvent::stream_end(RunStatus::Failed),
            ));
        }
        // The server must not answer before the recovery is stored.
        if !events.is_empty() && self.inner.recorder.together(events).await.is_err() {
            return Ok(true);
        }
        for run in queued {
            let seed = self
                .inner
                .ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .seed();
            // Queued before: it keeps its place even past the limit.
            self.inner.queued.fetch_add(1, Ordering::SeqCst);
            self.schedule(run, seed);
        }
        Ok(true)
    }

    /// Starts the run's task; the run already holds a place in the queue count.
    fn schedule(&self, run: RunRow, seed: u64) {
        let cancel = CancellationToken::new();
        self.inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run.summary.run_id.clone(), cancel.clone());
        let runs = self.clone();
        tokio::spawn(async move {
            let run_id = run.summary.run_id.clone();
            let mut place = QueuePlace {
                queued: Some(&runs.inner.queued),
            };
            let _ = runs.drive(run, seed, cancel, &mut place).await;
            place.leave();
            runs.forget(&run_id);
        });
    }

    /// Waits for a slot, generates, and records how the run ended.
    async fn drive(
        &self,
        run: RunRow,
        seed: u64,
        cancel: CancellationToken,
        place: &mut QueuePlace<'_>,
    ) -> Result<(), Stopped> {
        let run_id = run.summary.run_id.clone();
        let slot = tokio::select! {
            // Shutdown first: the runs it interrupts free their slots, which a queued run must
            // not take on the way out (it would start, and call a model server, for nothing).
            biased;
            () = self.inner.shutdown.cancelled() => return Err(Stopped),
            () = cancel.cancelled() => {
                place.leave();
                let message = self.cancel_message(&run_id, "cancelled while queued");
                return self.end(&run_id, RunStatus::Cancelled, Some(&message)).await;
            }
            slot = Arc::clone(&self.inner.slots).acquire_owned() => slot.map_err(|_| Stopped)?,
        };
        if self.inner.shutdown.is_cancelled() {
            return Err(Stopped);
        }
        place.leave();
        self.inner
            .recorder
            .event(
                &run_id,
                RunEvent::status(RunStatus::Running, Some("started")),
                now_rfc3339(),
            )
            .await?;
        let context = RunContext {
            run_id: run_id.clone(),
            task: run.summary.task.clone(),
            params: serde_json::from_str(&run.params).unwrap_or(Value::Null),
            recorder: self.inner.recorder.clone(),
            cancel,
            shutdown: self.inner.shutdown.clone(),
            seed,
            requests: self.inner.requests.clone(),
        };
        let job = context.params.get("job").and_then(Value::as_str);
        let upstreams = self.inner.upstreams.as_ref();
        let outcome = match (job == Some(MODELS_JOB), upstreams) {
            (true, _) => models_job::list_models(&self.inner.generator, &context, upstreams).await,
            (false, Some(pool)) => upstream::run(pool, &context).await,
            (false, None) => generator::run(&self.inner.generator, &context).await,
        };
        drop(slot);
        self.finish(&run_id, outcome).await
    }

    /// Records how a run ended: its final status (with the error first, for a failure).
    async fn finish(&self, run_id: &str, outcome: Outcome) -> Result<(), Stopped> {
        if self.is_lost(run_id) {
            // Its end is the instance's that took it over.
            return Ok(());
        }
        match outcome {
            Outcome::Completed => self.end(run_id, RunStatus::Completed, None).await,
            Outcome::Cancelled => {
                let message = self.cancel_message(run_id, CANCELLED_BY_REQUEST);
                self.end(run_id, RunStatus::Cancelled, Some(&message)).await
            }
            Outcome::Failed(message) => {
                self.inner
                    .recorder
                    .event(
                        run_id,
                        RunEvent::error(message.clone(), ErrorCode::GenerationFailed),
                        now_rfc3339(),
                    )
                    .await?;
                self.end(run_id, RunStatus::Failed, Some(&message)).await
            }
            Outcome::Interrupted => Err(Stopped),
        }
    }

    /// Records the final `status` and `stream_end` of a run.
    async fn end(
        &self,
        run_id: &str,
        status: RunStatus,
        message: Option<&str>,
    ) -> Result<(), Stopped> {
        if self.is_lost(run_id) {
            return Ok(());
        }
        let recorder = &self.inner.recorder;
        recorder
            .event(run_id, RunEvent::status(status, message), now_rfc3339())
            .await?;
        recorder
            .event(run_id, RunEvent::stream_end(status), now_rfc3339())
            .await
    }
}

/// How a run cancelled while it ran ends, without a named token that asked.
const CANCELLED_BY_REQUEST: &str = "cancelled by request";

/// Why a proxied run found unfinished at start or by a take-over failed.
pub const PROXY_STOPPED: &str = "runboard stopped during the call";

/// Why a queued run found at start or by a take-over failed when `--redact` kept its prompt
/// out of the store: there is nothing to run it with.
pub const PROMPT_NOT_STORED: &str = "its prompt was not stored (the server redacts prompts), so it cannot run after a restart; launch it again";

/// Whether a run is a client's proxied call (its parameters say `"source": "proxy"`).
fn is_proxied(run: &RunRow) -> bool {
    serde_json::from_str::<Value>(&run.params)
        .ok()
        .and_then(|params| {
            params
                .get("source")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .is_some_and(|source| source == "proxy")
}

/// A run's place in the queue count, given up once when it gets a slot or ends.
struct QueuePlace<'a> {
    queued: Option<&'a AtomicUsize>,
}

impl QueuePlace<'_> {
    fn leave(&mut self) {
        if let Some(queued) = self.queued.take() {
            queued.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The longest worker name kept, in characters.
pub const WORKER_CHARS: usize = 64;

/// The worker a launch names (`params.worker`), trimmed and cut to [`WORKER_CHARS`] with
/// control characters as spaces; `None` when it names none.
fn worker_of(params: &Value) -> Option<String> {
    let name = params.get("worker")?.as_str()?.trim();
    (!name.is_empty()).then(|| {
        name.chars()
            .take(WORKER_CHARS)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    })
}
