//! Event streams: replay from the store after `Last-Event-ID`, then live from the hub, with
//! keep-alives, lag recovery and prompt shutdown.
//!
//! Gap-free and duplicate-free by construction: the stream subscribes to the hub *before* it
//! reads the store (the recorder publishes only what is committed), and it skips any live event
//! at or below the last id it sent. A subscriber that falls behind the hub's buffer reads what it
//! missed from the store instead of losing it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, interval_at};
use tokio_util::sync::CancellationToken;

use crate::events::hub::{Hub, Published};
use crate::events::sse_out::{self, Gone, MAX_CHUNK_BYTES, SseSink};
use crate::observe::telemetry::Telemetry;
use crate::store::health::StoreHealth;
use crate::store::{Replay, Store, StoreError};
use runboard_api::{EventKind, Pruned, RunEvent};
use tracing::Instrument as _;

/// Events read from the store per query while replaying. Small, because a subscriber that
/// stops reading mid-replay holds its page until it is dropped.
const REPLAY_PAGE: u32 = 128;

/// What a stream carries.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every run (or only some), ids are global sequences.
    All {
        /// Only these runs, when given.
        runs: Option<Arc<HashSet<String>>>,
    },
    /// One run, ids are run sequences; the stream closes after its `stream_end`.
    Run {
        /// The run.
        run_id: String,
    },
}

impl Scope {
    fn wants(&self, event: &Published) -> bool {
        match self {
            Self::All { runs: None } => true,
            Self::All { runs: Some(runs) } => runs.contains(&event.run_id),
            Self::Run { run_id } => *run_id == event.run_id,
        }
    }

    fn id_of(&self, event: &Published) -> i64 {
        match self {
            Self::All { .. } => event.seq,
            Self::Run { .. } => event.run_seq,
        }
    }

    /// The frame this scope sends of an event: its global or its per-run one, plain or (for a
    /// redacted reader) redacted; `None` when a redacted reader may not be sent it.
    fn frame<'a>(&self, event: &'a Published, redacted: bool) -> Option<&'a Bytes> {
        let (global, run) = if redacted {
            let (global, run) = event.redacted.as_ref()?;
            (global, run)
        } else {
            (&event.global_frame, &event.run_frame)
        };
        Some(match self {
            Self::All { .. } => global,
            Self::Run { .. } => run,
        })
    }
}

/// How every stream behaves.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Sent as `retry:` at the start.
    pub retry: Duration,
    /// A comment is sent after this long without anything else.
    pub keepalive: Duration,
    /// After an event, how long the server waits for more before it handles them together:
    /// the store commits them in one transaction, and each stream writes them in one call.
    /// At low load each event would otherwise cost a commit, and a write per subscriber; a
    /// few milliseconds of delay make one of several. Zero handles each event at once.
    pub flush_window: Duration,
}

/// The flush window unless told otherwise: well under what a person notices, and several
/// events per write at a few hundred events per second.
pub const DEFAULT_FLUSH_WINDOW: Duration = Duration::from_millis(3);

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            retry: Duration::from_secs(2),
            keepalive: runboard_api::clock::KEEP_ALIVE_INTERVAL,
            flush_window: DEFAULT_FLUSH_WINDOW,
        }
    }
}

/// Everything a stream needs from the server.
#[derive(Debug, Clone)]
pub struct StreamSource {
    /// Where replays come from.
    pub store: Store,
    /// Where live events come from.
    pub hub: Hub,
    /// Ends every stream when cancelled.
    pub shutdown: CancellationToken,
    /// Retry and keep-alive.
    pub settings: StreamSettings,
    /// Whether the store accepts writes, told to subscribers as `store_status` when it changes.
    pub health: StoreHealth,
    /// Counts the events delivered.
    pub telemetry: Telemetry,
}

/// The response for an event stream starting after `last_id`; `redacted` when its reader is
/// sent events without what the server withholds from it (`--redact-viewers`).
pub fn response(source: StreamSource, scope: Scope, last_id: i64, redacted: bool) -> Response {
    // Subscribe now, before anything is read from the store.
    let live = source.hub.subscribe();
    let (sink, response) = sse_out::channel(source.shutdown.clone());
    let stream = async move {
        let mut pump = Pump {
            source,
            scope,
            last_id,
            sink,
            redacted,
        };
        match pump.run(live).await {
            Ok(()) => {}
            // A client leaving, at whatever point, is how every stream ends: not news.
            Err(PumpError::Gone(_)) => tracing::debug!("a subscriber left"),
            Err(error) => tracing::warn!(%error, "a stream stopped"),
        }
    };
    // The stream outlives its request's handler; it keeps the request's span for its logs.
    tokio::spawn(stream.instrument(tracing::Span::current()));
    response
}

/// `204 No Content`: an `EventSource` stops and does not reconnect.
pub fn closed_for_good() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

#[derive(Debug, thiserror::Error)]
enum PumpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The client went away; not an error worth reporting, but it ends the pump.
    #[error(transparent)]
    Gone(#[from] Gone),
}

struct Pump {
    source: StreamSource,
    scope: Scope,
    /// The id of the last event sent (or the client's `Last-Event-ID`).
    last_id: i64,
    sink: SseSink,
    /// Whether the reader gets the redacted frames (`--redact-viewers`).
    redacted: bool,
}

impl Pump {
    async fn run(
        &mut self,
        mut live: broadcast::Receiver<Arc<Published>>,
    ) -> Result<(), PumpError> {
        self.sink.retry(self.source.settings.retry).await?;
        let status = self.source.health.current();
        if !status.writable {
            self.sink
                .event(EventKind::StoreStatus.as_str(), None, &status)
                .await?;
        }
        self.tell_about_pruning().await?;
        self.pump(&mut live).await
    }

    async fn pump(
        &mut self,
        live: &mut broadcast::Receiver<Arc<Published>>,
    ) -> Result<(), PumpError> {
        if self.catch_up().await? {
            return Ok(());
        }
        let period = self.source.settings.keepalive;
        let mut keepalive = interval_at(Instant::now() + period, period);
        let shutdown = self.source.shutdown.clone();
        let mut health = self.source.health.subscribe();
        health.mark_unchanged();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                changed = health.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let status = health.borrow_and_update().clone();
                    self.sink.event(EventKind::StoreStatus.as_str(), None, &status).await?;
                }
                received = live.recv() => match received {
                    Ok(event) => {
                        let mut chunk = BytesMut::new();
                        let mut ended = self.append(&mut chunk, &event);
                        // Take whatever else is already waiting into the same write.
                        while !ended && chunk.len() < MAX_CHUNK_BYTES {
                            match live.try_recv() {
                                Ok(event) => ended = self.append(&mut chunk, &event),
                                Err(TryRecvError::Lagged(_)) => {
                                    self.send_chunk(chunk).await?;
                                    chunk = BytesMut::new();
                                    ended = self.catch_up().await?;
                                }
                                Err(_) => break,
                            }
                        }
                        if !ended && !chunk.is_empty() {
                            ended = self.gather(live, &mut chunk).await?;
                        }
                        self.send_chunk(chunk).await?;
                        if ended {
                            return Ok(());
                        }
                        keepalive.reset();
                    }
                    Err(RecvError::Lagged(_)) => {
                        if self.catch_up().await? {
                            return Ok(());
                        }
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
                _ = keepalive.tick() => self.sink.keep_alive().await?,
            }
        }
    }

    /// Adds what arrives within the flush window to `chunk` (which holds at least one event),
    /// up to a chunk's size. The task sleeps through the window and then takes what came, so a
    /// subscriber wakes once per window rather than once per event. True when a per-run stream
    /// reached its end.
    async fn gather(
        &mut self,
        live: &mut broadcast::Receiver<Arc<Published>>,
        chunk: &mut BytesMut,
    ) -> Result<bool, PumpError> {
        let window = self.source.settings.flush_window;
        if window.is_zero() {
            return Ok(false);
        }
        tokio::select! {
            biased;
            () = self.source.shutdown.cancelled() => return Ok(false),
            () = tokio::time::sleep(window) => {}
        }
        while chunk.len() < MAX_CHUNK_BYTES {
            match live.try_recv() {
                Ok(event) => {
                    if self.append(chunk, &event) {
                        return Ok(true);
                    }
                }
                Err(TryRecvError::Lagged(_)) => {
                    self.send_chunk(std::mem::take(chunk)).await?;
                    return self.catch_up().await;
                }
                Err(_) => break,
            }
        }
        Ok(false)
    }

    /// A resume from below what retention removed is told so (`pruned`, without an id, so the
    /// client's last id stays), then goes on from the oldest event kept.
    async fn tell_about_pruning(&mut self) -> Result<(), PumpError> {
        if !matches!(self.scope, Scope::All { .. }) || self.last_id == 0 {
            return Ok(());
        }
        let pruned = self.source.store.pruned_seq().await?;
        if self.last_id >= pruned {
            return Ok(());
        }
        let notice = RunEvent::Pruned(Pruned {
            after: u64::try_from(self.last_id).unwrap_or(0),
            pruned_through: u64::try_from(pruned).unwrap_or(0),
            message: "events after your last id were removed by the server's retention; \
                      the stream goes on from the oldest event it kept"
                .to_owned(),
        });
        Ok(self
            .sink
            .event(notice.name(), None, &notice.to_json())
            .await?)
    }

    /// Sends everything the store has after `last_id`. True when a per-run stream reached the
    /// run's end.
    async fn catch_up(&mut self) -> Result<bool, PumpError> {
        loop {
            let page = match &self.scope {
                Scope::All { runs } => {
                    let runs: Option<Vec<String>> =
                        runs.as_ref().map(|runs| runs.iter().cloned().collect());
                    self.source
                        .store
                        .replay(
                            &Replay::All {
                                after_seq: self.last_id,
                                runs: runs.as_deref(),
                            },
                            REPLAY_PAGE,
                        )
                        .await?
                }
                Scope::Run { run_id } => {
                    self.source
                        .store
                        .replay(
                            &Replay::Run {
                                run_id,
                                after_run_seq: self.last_id,
                            },
                            REPLAY_PAGE,
                        )
                        .await?
                }
            };
            let full_page = page.len() == REPLAY_PAGE as usize;
            let mut chunk = BytesMut::new();
            let mut ended = false;
            for row in &page {
                let redaction = self.redacted.then(|| self.source.hub.redaction()).flatten();
                let event = Published::from_row(row, redaction);
                ended = self.append(&mut chunk, &event);
                if chunk.len() >= MAX_CHUNK_BYTES {
                    self.send_chunk(std::mem::take(&mut chunk)).await?;
                }
                if ended {
                    break;
                }
            }
            self.send_chunk(chunk).await?;
            if ended || !full_page {
                return Ok(ended);
            }
        }
    }

    /// Adds an event to the chunk if the scope wants it and it is new. True when it ends a
    /// per-run stream.
    fn append(&mut self, chunk: &mut BytesMut, event: &Published) -> bool {
        if !self.scope.wants(event) {
            return false;
        }
        let id = self.scope.id_of(event);
        if id <= self.last_id {
            return false;
        }
        self.last_id = id;
        if let Some(frame) = self.scope.frame(event, self.redacted) {
            chunk.extend_from_slice(frame);
            self.source.telemetry.delivered(1);
        }
        matches!(self.scope, Scope::Run { .. }) && event.is_stream_end
    }

    async fn send_chunk(&self, chunk: BytesMut) -> Result<(), PumpError> {
        if chunk.is_empty() {
            return Ok(());
        }
        Ok(self.sink.send(chunk.freeze()).await?)
    }
}
