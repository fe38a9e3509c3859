//! Whether the store accepts writes. The writer finds out (and the heartbeat, when the
//! database cannot be reached at all); the routes refuse new runs while it does not;
//! `/api/health` and every event stream tell their clients.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use runboard_api::StoreStatus;
use runboard_api::clock::now_rfc3339;

/// The shared state, on a watch channel so any number of streams can wait for a change.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    state: Arc<watch::Sender<StoreStatus>>,
    /// Why the heartbeat cannot reach the database, apart from the writer's own finding.
    link: Arc<Mutex<Option<String>>>,
}

impl Default for StoreHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreHealth {
    /// A store that accepts writes.
    pub fn new() -> Self {
        Self {
            state: Arc::new(watch::Sender::new(StoreStatus::writable())),
            link: Arc::new(Mutex::new(None)),
        }
    }

    /// What the heartbeat found: `Some(reason)` while the database cannot be reached, `None`
    /// once it can. The store is unwritable meanwhile even when nothing is being written;
    /// the writer's next success (or this, when it set the state) clears it.
    pub fn set_link(&self, problem: Option<&str>) {
        let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(reason) = problem {
            *link = Some(reason.to_owned());
            self.set_unwritable(reason);
        } else {
            let was = link.take();
            if was.is_some() && self.current().error == was {
                self.set_writable();
            }
        }
    }

    /// The state now.
    pub fn current(&self) -> StoreStatus {
        self.state.borrow().clone()
    }

    /// Whether writes work now.
    pub fn is_writable(&self) -> bool {
        self.state.borrow().writable
    }

    /// Waits for changes from now on.
    pub fn subscribe(&self) -> watch::Receiver<StoreStatus> {
        self.state.subscribe()
    }

    /// Writes fail: records why. True when this is news (it was writable before).
    pub fn set_unwritable(&self, reason: &str) -> bool {
        self.state.send_if_modified(|state| {
            let news = state.writable;
            if news || state.error.as_deref() != Some(reason) {
                let since = if news {
                    Some(now_rfc3339())
                } else {
                    state.since.clone()
                };
                *state = StoreStatus {
                    writable: false,
                    error: Some(reason.to_owned()),
                    since,
                };
                // Only the change to unwritable is worth waking every stream for.
                return news;
            }
            false
        })
    }

    /// Writes work again. True when this is news.
    pub fn set_writable(&self) -> bool {
        self.state.send_if_modified(|state| {
            if state.writable {
                return false;
            }
            *state = StoreStatus {
                writable: true,
                error: None,
                since: Some(now_rfc3339()),
            };
            true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::StoreHealth;

    #[test]
    fn changes_are_news_once() {
        let health = StoreHealth::new();
        assert!(health.is_writable());
        assert!(health.set_unwritable("disk full"));
        assert!(!health.set_unwritable("disk full"));
        let state = health.current();
        assert!(!state.writable);
        assert_eq!(state.error.as_deref(), Some("disk full"));
        assert!(state.since.is_some());
        assert!(health.set_writable());
        assert!(!health.set_writable());
        assert!(health.current().error.is_none());
    }
}
