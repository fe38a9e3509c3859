//! `/metrics/active-requests/stream`: an `update` snapshot at once, then one whenever the
//! snapshot changed, at most every interval; keep-alives in between; a single `disabled` event
//! when request metrics are off.

use std::time::Duration;

use axum::response::Response;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::sse_out::{self, Gone, SseSink};
use crate::observe::active_requests::RequestTracker;
use runboard_api::{ActiveRequest, ActiveRequests};

/// How the stream behaves; flags and environment variables set it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestStreamSettings {
    /// Offer the stream at all (503 when off).
    pub enabled: bool,
    /// Changes are sent at most this often.
    pub interval: Duration,
    /// A comment is sent after this long without anything else.
    pub heartbeat: Duration,
    /// Sent as `retry:`.
    pub retry: Duration,
}

impl Default for RequestStreamSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(2),
            heartbeat: runboard_api::clock::REQUESTS_HEARTBEAT,
            retry: Duration::from_secs(2),
        }
    }
}

/// The streaming response (the caller answers 503 when the stream is switched off).
pub fn response(
    tracker: RequestTracker,
    settings: RequestStreamSettings,
    shutdown: CancellationToken,
) -> Response {
    let (sink, response) = sse_out::channel(shutdown);
    tokio::spawn(async move {
        let _ = pump(&sink, &tracker, &settings).await;
    });
    response
}

async fn pump(
    sink: &SseSink,
    tracker: &RequestTracker,
    settings: &RequestStreamSettings,
) -> Result<(), Gone> {
    sink.retry(settings.retry).await?;
    if !tracker.enabled() {
        let (_, snapshot) = tracker.snapshot();
        return sink
            .event(ActiveRequests::DISABLED_EVENT, None, &snapshot)
            .await;
    }
    let mut changes = tracker.subscribe();
    changes.mark_unchanged();
    let (_, first) = tracker.snapshot();
    sink.event(ActiveRequests::UPDATE_EVENT, None, &first)
        .await?;
    let mut sent: Vec<ActiveRequest> = first.active_requests;
    let mut last_update = Instant::now();
    let mut last_write = Instant::now();
    loop {
        // Wait for a change, sending keep-alives while nothing happens.
        tokio::select! {
            woke = changes.changed() => {
                if woke.is_err() {
                    return Ok(());
                }
            }
            () = tokio::time::sleep_until(last_write + settings.heartbeat) => {
                sink.keep_alive().await?;
                last_write = Instant::now();
                continue;
            }
            () = sink.closed() => return Err(Gone),
        }
        // At most one update per interval: later changes in it are folded into that one.
        let due = last_update + settings.interval;
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = sink.closed() => return Err(Gone),
        }
        changes.mark_unchanged();
        let (_, snapshot) = tracker.snapshot();
        if snapshot.active_requests != sent {
            sink.event(ActiveRequests::UPDATE_EVENT, None, &snapshot)
                .await?;
            sent = snapshot.active_requests;
            last_update = Instant::now();
            last_write = last_update;
        }
    }
}
