//! Puts committed events on the hub in sequence order, whichever instance wrote them.
//!
//! This instance's writer hands over what it committed; notifications say that another instance
//! committed up to some sequence. Either way the feed publishes, strictly in order, everything
//! after what it published last: a gap before this instance's own events (written meanwhile by
//! others) is read from the store first. Because every write transaction takes its numbers
//! under one lock and commits before the next can take any, all events up to a committed one
//! are committed too, so the read always finds them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, Published};
use super::store::{EventRow, Replay, Store, StoreError};

/// Events read per query while filling a gap.
const FILL_PAGE: u32 = 512;

/// The longest wait between tries while the store cannot be read.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The ordered publisher in front of the hub.
#[derive(Debug, Clone)]
pub struct Feed {
    hub: Hub,
    store: Store,
    shutdown: CancellationToken,
    /// The sequence of the last event published; the lock also keeps publishers in turn.
    through: Arc<Mutex<i64>>,
}

impl Feed {
    /// A feed that has published everything up to `head`.
    pub fn new(hub: Hub, store: Store, head: i64, shutdown: CancellationToken) -> Self {
        Self {
            hub,
            store,
            shutdown,
            through: Arc::new(Mutex::new(head)),
        }
    }

    /// The hub it publishes to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Publishes events this instance just committed (numbered, in order), after whatever
    /// others committed before them.
    pub async fn committed(&self, rows: &[EventRow]) {
        let Some(first) = rows.first() else {
            return;
        };
        let mut through = self.through.lock().await;
        if first.seq > *through + 1 && !self.fill(&mut through, first.seq - 1).await {
            return;
        }
        for row in rows {
            if row.seq > *through {
                self.hub.publish(Arc::new(Published::from_row(row)));
                *through = row.seq;
            }
        }
    }

    /// Publishes everything committed up to `seq` (another instance's notification).
    pub async fn caught_up_to(&self, seq: i64) {
        let mut through = self.through.lock().await;
        if seq > *through {
            self.fill(&mut through, seq).await;
        }
    }

    /// Publishes everything committed so far: after notifications may have been missed (the
    /// connection that receives them was lost).
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        let head = self.store.sequences().await?.last_seq;
        self.caught_up_to(head).await;
        Ok(())
    }

    /// Reads and publishes the events after `through` up to `upto`, trying again while the
    /// store cannot be read (a gap must never be skipped). False when the server stopped first.
    async fn fill(&self, through: &mut i64, upto: i64) -> bool {
        let mut delay = Duration::from_millis(20);
        while *through < upto {
            let page = self
                .store
                .replay(
                    &Replay::All {
                        after_seq: *through,
                        runs: None,
                    },
                    FILL_PAGE,
                )
                .await;
            match page {
                Ok(rows) => {
                    for row in rows.iter().filter(|row| row.seq <= upto) {
                        self.hub.publish(Arc::new(Published::from_row(row)));
                        *through = row.seq;
                    }
                    // A short page: the rest up to `upto` was pruned; nothing more will come.
                    if rows.len() < FILL_PAGE as usize
                        || rows.last().is_some_and(|row| row.seq >= upto)
                    {
                        *through = (*through).max(upto);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not read other instances' events; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.shutdown.cancelled() => return false,
                    }
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
        true
    }
}
