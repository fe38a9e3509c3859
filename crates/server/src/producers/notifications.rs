//! PostgreSQL notifications between instances sharing a store: "events were committed up to
//! N" wakes this instance's feed (no polling), and "cancel run R" reaches the instance that
//! runs R.
//!
//! Notifications sent while the listening connection is down are lost, so after every
//! (re)connection the feed catches up from the store before waiting again: a lost
//! notification can delay an event, never drop it.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::events::feed::Feed;
use crate::producers::runs::Runs;
use crate::store::health::StoreHealth;
use crate::store::{CANCEL_CHANNEL, EVENTS_CHANNEL, Store};

/// The longest wait between attempts to reconnect.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Listens until shutdown (a shared store only; SQLite has no other instances).
pub fn listen(
    store: &Store,
    feed: Feed,
    runs: Runs,
    health: StoreHealth,
    shutdown: CancellationToken,
) {
    if !store.is_shared() {
        return;
    }
    let url = store.url().to_owned();
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(50);
        loop {
            let connected = tokio::select! {
                connected = connect(&url) => connected,
                () = shutdown.cancelled() => return,
            };
            match connected {
                Ok(listener) => {
                    delay = Duration::from_millis(50);
                    let ended = tokio::select! {
                        ended = follow(listener, &feed, &runs, &health) => ended,
                        () = shutdown.cancelled() => return,
                    };
                    tracing::warn!(error = %ended, "lost the notification connection; reconnecting");
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for other instances' events; trying again");
                    health.set_link(Some(&format!(
                        "the database cannot be reached for notifications: {error}"
                    )));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        }
    });
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    // A lost connection is reported (Err) rather than quietly re-made, so the catch-up below
    // runs after every reconnection.
    listener.eager_reconnect(false);
    listener
        .listen_all([EVENTS_CHANNEL, CANCEL_CHANNEL])
        .await?;
    Ok(listener)
}

/// Catches up, then handles notifications until the connection is lost.
async fn follow(
    mut listener: PgListener,
    feed: &Feed,
    runs: &Runs,
    health: &StoreHealth,
) -> sqlx::Error {
    // Whatever was committed while nobody listened.
    if let Err(error) = feed.catch_up().await {
        return sqlx::Error::Protocol(error.to_string());
    }
    health.set_link(None);
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => match notification.channel() {
                EVENTS_CHANNEL => {
                    if let Ok(seq) = notification.payload().parse::<i64>() {
                        feed.caught_up_to(seq).await;
                    }
                }
                CANCEL_CHANNEL => {
                    let mut parts = notification.payload().splitn(3, ' ');
                    if let (Some(owner), Some(run_id)) = (parts.next(), parts.next())
                        && owner == runs.instance()
                    {
                        runs.cancel_here(run_id, parts.next());
                    }
                }
                _ => {}
            },
            Ok(None) => return sqlx::Error::Protocol("the connection closed".to_owned()),
            Err(error) => return error,
        }
    }
}
