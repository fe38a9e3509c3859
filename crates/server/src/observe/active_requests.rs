//! The tracker of in-flight generation requests (the active-requests endpoint). Each running agent step is one
//! request. A version counter on a watch channel tells any number of streams that something
//! changed, so none of them polls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use runboard_api::clock::now_rfc3339;
use runboard_api::{ActiveRequest, ActiveRequests, RequestPhase};

/// What a disabled tracker tells clients.
pub const DISABLED_MESSAGE: &str = "request metrics are off; start the server with \
     --request-metrics true (or RUNBOARD_REQUEST_METRICS=true) to track requests";

/// Requests in flight, shared by the generator (which starts and ends them) and the endpoints.
#[derive(Debug, Clone)]
pub struct RequestTracker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    enabled: bool,
    active: Mutex<HashMap<u64, ActiveRequest>>,
    next_id: AtomicU64,
    /// Bumped after every change.
    version: watch::Sender<u64>,
}

/// What a request starts with.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    /// The run it serves.
    pub run_id: &'a str,
    /// The agent it serves.
    pub agent: &'a str,
    /// The worker that made it, when one did.
    pub worker: Option<&'a str>,
    /// The model asked for.
    pub model: &'a str,
    /// The model serving it.
    pub resolved_model: &'a str,
    /// Whether it streams.
    pub streaming: bool,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// The model server it goes to, when it is a real request.
    pub upstream: Option<&'a str>,
}

/// One request in flight; it ends when this is dropped (finished, cancelled or interrupted).
#[derive(Debug)]
pub struct RequestGuard {
    tracker: RequestTracker,
    key: Option<u64>,
}

impl RequestTracker {
    /// A tracker; a disabled one records nothing.
    pub fn new(enabled: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                enabled,
                active: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                version: watch::Sender::new(0),
            }),
        }
    }

    /// Whether requests are tracked.
    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Starts tracking a request.
    pub fn start(&self, request: &NewRequest<'_>) -> RequestGuard {
        if !self.inner.enabled {
            return RequestGuard {
                tracker: self.clone(),
                key: None,
            };
        }
        let key = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let active = ActiveRequest {
            request_id: format!("req-{key:08x}"),
            model: request.model.to_owned(),
            resolved_model: Some(request.resolved_model.to_owned()),
            streaming: request.streaming,
            input_tokens: request.input_tokens,
            output_tokens: 0,
            started_at: now_rfc3339(),
            run_id: Some(request.run_id.to_owned()),
            agent: Some(request.agent.to_owned()),
            worker: request.worker.map(str::to_owned),
            upstream: request.upstream.map(str::to_owned),
            phase: request.upstream.map(|_| RequestPhase::WaitingForFirstToken),
            attempt: request.upstream.map(|_| 1),
            ..ActiveRequest::default()
        };
        self.change(|active_map| {
            active_map.insert(key, active);
        });
        RequestGuard {
            tracker: self.clone(),
            key: Some(key),
        }
    }

    /// The requests in flight, oldest first, with the version they belong to.
    pub fn snapshot(&self) -> (u64, ActiveRequests) {
        let active = self
            .inner
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let version = *self.inner.version.borrow();
        let mut list: Vec<(u64, ActiveRequest)> =
            active.iter().map(|(k, r)| (*k, r.clone())).collect();
        drop(active);
        // Keys grow with start order, so this is oldest first and stable.
        list.sort_unstable_by_key(|(key, _)| *key);
        let body = ActiveRequests {
            disabled: !self.inner.enabled,
            active_requests: list.into_iter().map(|(_, r)| r).collect(),
            timestamp: now_rfc3339(),
            message: (!self.inner.enabled).then(|| DISABLED_MESSAGE.to_owned()),
        };
        (version, body)
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }

    /// Applies a change under the lock, then bumps the version so waiters wake.
    fn change(&self, edit: impl FnOnce(&mut HashMap<u64, ActiveRequest>)) {
        {
            let mut active = self
                .inner
                .active
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            edit(&mut active);
        }
        self.inner.version.send_modify(|version| *version += 1);
    }
}

impl RequestGuard {
    /// Records the tokens generated so far.
    pub fn set_output_tokens(&self, tokens: u64) {
        self.edit(|request| request.output_tokens = tokens);
    }

    /// Records where a real request stands: its phase, which try it is, and, once known, its
    /// prompt tokens, time to first token and decode rate.
    pub fn set_live(&self, live: &LiveFigures) {
        self.edit(|request| {
            request.phase = Some(live.phase);
            request.attempt = Some(live.attempt);
            request.output_tokens = live.output_tokens;
            request.ttft_ms = live.ttft_ms;
            request.tok_per_sec = live.tok_per_sec;
            if let Some(prompt) = live.input_tokens {
                request.input_tokens = prompt;
            }
        });
    }

    fn edit(&self, change: impl FnOnce(&mut ActiveRequest)) {
        if let Some(key) = self.key {
            self.tracker.change(|active| {
                if let Some(request) = active.get_mut(&key) {
                    change(request);
                }
            });
        }
    }
}

/// What a real request's stream has shown so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveFigures {
    /// Where it stands.
    pub phase: RequestPhase,
    /// Which try (1 for the first).
    pub attempt: u32,
    /// Output tokens so far.
    pub output_tokens: u64,
    /// Prompt tokens, once the model server said.
    pub input_tokens: Option<u64>,
    /// Time to first token, once it came.
    pub ttft_ms: Option<f64>,
    /// Decode rate, once two tokens came.
    pub tok_per_sec: Option<f64>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.tracker.change(|active| {
                active.remove(&key);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> NewRequest<'static> {
        NewRequest {
            run_id: "run-1",
            agent: "writer",
            worker: None,
            model: "synth-small",
            resolved_model: "synth-8b-instruct-q4",
            streaming: true,
            input_tokens: 300,
            upstream: None,
        }
    }

    #[test]
    fn a_request_lives_as_long_as_its_guard_and_every_change_bumps_the_version() {
        let tracker = RequestTracker::new(true);
        let mut changes = tracker.subscribe();
        let first = tracker.start(&request());
        let second = tracker.start(&request());
        second.set_output_tokens(42);
        let (version, snapshot) = tracker.snapshot();
        assert_eq!(version, 3);
        assert!(changes.has_changed().unwrap());
        let ids: Vec<&str> = snapshot
            .active_requests
            .iter()
            .map(|r| r.request_id.as_str())
            .collect();
        assert_eq!(ids, ["req-00000001", "req-00000002"]);
        assert_eq!(snapshot.active_requests[1].output_tokens, 42);
        drop(first);
        let (_, snapshot) = tracker.snapshot();
        assert_eq!(snapshot.active_requests.len(), 1);
        changes.mark_unchanged();
        drop(second);
        assert!(changes.has_changed().unwrap());
        assert!(tracker.snapshot().1.active_requests.is_empty());
    }

    #[test]
    fn a_disabled_tracker_says_so_and_records_nothing() {
        let tracker = RequestTracker::new(false);
        let guard = tracker.start(&request());
        guard.set_output_tokens(5);
        let (version, snapshot) = tracker.snapshot();
        assert_eq!(version, 0);
        assert!(snapshot.disabled);
        assert!(snapshot.active_requests.is_empty());
        assert!(
            snapshot
                .message
                .unwrap()
                .contains("RUNBOARD_REQUEST_METRICS")
        );
    }
}
