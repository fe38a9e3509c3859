//! The view streams: a server's benchmark stream and active-requests stream, opened only while
//! their view shows (a browser allows few connections per host) and closed when it hides.
//! The requests stream falls back to polling the snapshot when the server says it is disabled
//! or the stream is unavailable, and tries the stream again with backoff.

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::{AbortHandle, AbortRegistration, Abortable};

use super::inbox::Outbox;
use super::pump::{Flow, PumpEnd, open, pump};
use crate::board::{Inbound, RequestsFeed, ServerId};
use crate::network::{MaybeSend, Spawner};
use runboard_api::clock::{REQUESTS_HEARTBEAT, idle_timeout_for};
use runboard_api::{
    ApiClient, BenchmarkEvent, RequestsEvent, StreamOptions, StreamUpdate, Upstreams,
    reconnect_policy,
};
use runboard_sse::runtime::sleep;
use runboard_sse::{Backoff, ConnectionState};

/// The console asks the benchmark stream for a check every second: it is one small stream.
const BENCHMARK_INTERVAL_SECS: u64 = 1;

/// The requests stream sends a heartbeat rather than the keep-alive of the others.
const REQUESTS_IDLE: Duration = idle_timeout_for(REQUESTS_HEARTBEAT);

/// How often the snapshot is polled while the stream is unavailable.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// How often a server whose request metrics are off is asked again.
const DISABLED_POLL_EVERY: Duration = Duration::from_secs(10);

/// A background task that stops when this is dropped (or [`stop`](Self::stop)ped).
#[derive(Debug)]
pub struct TaskGuard {
    handle: AbortHandle,
    ended: Arc<AtomicBool>,
}

/// A task told to stop; [`ended`](Self::ended) says when it has, and so has closed its stream.
#[derive(Debug)]
pub struct Stopping(Arc<AtomicBool>);

impl TaskGuard {
    /// Tells the task to stop. Its stream closes when the task next runs, not now: a caller that
    /// must not exceed a connection budget waits for [`Stopping::ended`].
    pub fn stop(self) -> Stopping {
        self.handle.abort();
        Stopping(Arc::clone(&self.ended))
    }
}

impl Stopping {
    /// Whether the task has ended (its connection is closed).
    pub fn ended(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Runs `task` until it ends or is aborted, then marks it ended.
async fn guarded(
    task: impl std::future::Future<Output = ()>,
    registration: AbortRegistration,
    ended: Arc<AtomicBool>,
) {
    // The task (and with it its stream) is dropped before the flag is set.
    let _ = Abortable::new(task, registration).await;
    ended.store(true, Ordering::Release);
}

fn spawn_guarded(
    spawner: &Spawner,
    task: impl std::future::Future<Output = ()> + MaybeSend + 'static,
) -> TaskGuard {
    let (handle, registration) = AbortHandle::new_pair();
    let ended = Arc::new(AtomicBool::new(false));
    spawner.spawn(guarded(task, registration, Arc::clone(&ended)));
    TaskGuard { handle, ended }
}

/// Follows a server's benchmark stream until the guard is dropped.
pub fn watch_benchmark(
    spawner: &Spawner,
    client: ApiClient,
    server: ServerId,
    outbox: Outbox,
) -> TaskGuard {
    spawn_guarded(spawner, async move {
        let url = client.benchmark_stream_url(BENCHMARK_INTERVAL_SECS);
        let options = StreamOptions::default();
        let Some(mut stream) =
            open::<BenchmarkEvent>(&client, &url, &options, server, &outbox).await
        else {
            return;
        };
        let translate = |update| match update {
            StreamUpdate::Event { decoded: event, .. } => {
                Flow::Send(Inbound::Benchmark { server, event })
            }
            StreamUpdate::Undecodable(error) => Flow::Send(Inbound::ServerError {
                server,
                message: format!("a benchmark event was unreadable: {error}"),
            }),
            StreamUpdate::State(state) => Flow::Send(Inbound::BenchmarkLink { server, state }),
            StreamUpdate::TooLarge { .. } => Flow::Skip,
        };
        pump(&mut stream, &outbox, translate, || {}).await;
    })
}

/// Follows the model servers a server reads (`serve --scrape`) for as long as the console
/// runs: the summary bar shows them whatever the view.
pub async fn follow_upstreams(client: ApiClient, server: ServerId, outbox: Outbox) {
    let url = client.upstreams_stream_url();
    let options = StreamOptions::default();
    let Some(mut stream) = open::<Upstreams>(&client, &url, &options, server, &outbox).await else {
        return;
    };
    let translate = |update| match update {
        StreamUpdate::Event {
            decoded: snapshot, ..
        } => Flow::Send(Inbound::Upstreams { server, snapshot }),
        StreamUpdate::Undecodable(error) => Flow::Send(Inbound::ServerError {
            server,
            message: format!("an upstreams event was unreadable: {error}"),
        }),
        StreamUpdate::State(_) | StreamUpdate::TooLarge { .. } => Flow::Skip,
    };
    pump(&mut stream, &outbox, translate, || {}).await;
}

/// Follows a server's requests in flight until the guard is dropped: the stream when it can,
/// the snapshot endpoint when it cannot.
pub fn watch_requests(
    spawner: &Spawner,
    client: ApiClient,
    server: ServerId,
    outbox: Outbox,
) -> TaskGuard {
    spawn_guarded(spawner, async move {
        let mut backoff = Backoff::new(reconnect_policy());
        loop {
            let fallback = match stream_requests(&client, server, &outbox).await {
                StreamOutcome::UiGone => return,
                StreamOutcome::Disabled => Fallback::Disabled,
                StreamOutcome::Unavailable(reason) => Fallback::Unavailable(reason),
            };
            let first = backoff.policy().initial_retry;
            let retry = backoff.next_delay(first).unwrap_or(first);
            if !poll_requests(&client, server, &outbox, &fallback, retry).await {
                return;
            }
        }
    })
}

enum StreamOutcome {
    /// The UI is gone.
    UiGone,
    /// The server said request metrics are off.
    Disabled,
    /// The stream is off or unreachable.
    Unavailable(String),
}

enum Fallback {
    Disabled,
    Unavailable(String),
}

async fn stream_requests(client: &ApiClient, server: ServerId, outbox: &Outbox) -> StreamOutcome {
    let url = client.requests_stream_url();
    let options = StreamOptions {
        idle_timeout: Some(REQUESTS_IDLE),
        ..StreamOptions::default()
    };
    let Some(mut stream) = open::<RequestsEvent>(client, &url, &options, server, outbox).await
    else {
        return StreamOutcome::Unavailable("the stream could not be opened".into());
    };
    // Set when an update ends the stream: what the server said, or why it failed.
    let mut outcome = None;
    let translate = |update| match update {
        StreamUpdate::Undecodable(error) => Flow::Send(Inbound::ServerError {
            server,
            message: format!("an active-requests event was unreadable: {error}"),
        }),
        StreamUpdate::Event {
            decoded: RequestsEvent { snapshot, disabled },
            ..
        } => {
            let message = Inbound::Requests {
                server,
                snapshot,
                feed: RequestsFeed::Streaming,
            };
            if disabled {
                outcome = Some(StreamOutcome::Disabled);
                Flow::Stop(message)
            } else {
                Flow::Send(message)
            }
        }
        StreamUpdate::State(ConnectionState::Failed(error)) => {
            outcome = Some(StreamOutcome::Unavailable(error.to_string()));
            let state = ConnectionState::Failed(error);
            Flow::Stop(Inbound::RequestsLink { server, state })
        }
        StreamUpdate::State(state) => Flow::Send(Inbound::RequestsLink { server, state }),
        StreamUpdate::TooLarge { .. } => Flow::Skip,
    };
    match pump(&mut stream, outbox, translate, || {}).await {
        PumpEnd::UiGone => StreamOutcome::UiGone,
        PumpEnd::Stopped | PumpEnd::StreamEnded => {
            outcome.unwrap_or_else(|| StreamOutcome::Unavailable("the stream ended".into()))
        }
    }
}

/// Polls the snapshot for `how_long` (or, while metrics are off, until they are on). False once
/// the UI is gone.
async fn poll_requests(
    client: &ApiClient,
    server: ServerId,
    outbox: &Outbox,
    fallback: &Fallback,
    how_long: Duration,
) -> bool {
    let mut waited = Duration::ZERO;
    loop {
        let (every, feed) = match fallback {
            Fallback::Disabled => (DISABLED_POLL_EVERY, RequestsFeed::Polling(String::new())),
            Fallback::Unavailable(reason) => (POLL_EVERY, RequestsFeed::Polling(reason.clone())),
        };
        sleep(every).await;
        waited += every;
        let mut back_on = false;
        let message = match client.active_requests().await {
            Ok(snapshot) => {
                // Metrics were switched on: the stream is worth a try again.
                back_on = matches!(fallback, Fallback::Disabled) && !snapshot.disabled;
                Inbound::Requests {
                    server,
                    snapshot,
                    feed,
                }
            }
            Err(error) => Inbound::ServerError {
                server,
                message: error.to_string(),
            },
        };
        if !outbox.send(message).await {
            return false;
        }
        if back_on {
            return true;
        }
        if matches!(fallback, Fallback::Unavailable(_)) && waited >= how_long {
            return true;
        }
    }
}
