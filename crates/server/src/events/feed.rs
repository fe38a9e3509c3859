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

use crate::events::hub::Hub;
use crate::store::{EventRow, Replay, Store, StoreError};

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
                self.hub.publish(self.hub.encode(row));
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
                        self.hub.publish(self.hub.encode(row));
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

#[cfg(test)]
mod tests {
    use super::Feed;
    use crate::events::hub::Hub;
    use crate::store::{DbLocation, EventRow, Store};
    use tokio_util::sync::CancellationToken;

    fn rows(run: &str, count: usize) -> Vec<EventRow> {
        (1..=count)
            .map(|run_seq| EventRow {
                seq: 0,
                run_id: run.to_owned(),
                run_seq: i64::try_from(run_seq).unwrap(),
                event: "log".to_owned(),
                data: "{}".to_owned(),
                ts: "2026-12-02T00:00:00Z".to_owned(),
            })
            .collect()
    }

    /// Another writer commits 1..=3, this one 4..=5: its own rows are published after the gap
    /// is read from the store, and a late notification for 3 publishes nothing twice.
    #[tokio::test]
    async fn events_go_out_in_sequence_order_whoever_wrote_them() {
        let store = Store::open(&DbLocation::Memory).await.unwrap();
        let hub = Hub::new(64, 0);
        let mut live = hub.subscribe();
        let feed = Feed::new(hub, store.clone(), 0, CancellationToken::new());
        let mut theirs = rows("run-b", 3);
        store
            .write_batch(&mut theirs, &mut Vec::new(), "other")
            .await
            .unwrap();
        let mut ours = rows("run-a", 2);
        store
            .write_batch(&mut ours, &mut Vec::new(), "this")
            .await
            .unwrap();
        assert_eq!(ours[0].seq, 4);
        feed.committed(&ours).await;
        feed.caught_up_to(3).await;
        let mut seen = Vec::new();
        while let Ok(event) = live.try_recv() {
            seen.push((event.seq, event.run_id.clone()));
        }
        assert_eq!(
            seen,
            [
                (1, "run-b".to_owned()),
                (2, "run-b".to_owned()),
                (3, "run-b".to_owned()),
                (4, "run-a".to_owned()),
                (5, "run-a".to_owned()),
            ]
        );
    }
}
