//! What every producer of a run shares: the run's context (its id, task, parameters, where its
//! events go, its cancellation), how it ended, and the one way to record its narration and data.

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::events::recorder::{Recorder, Stopped};
use crate::observe::active_requests::RequestTracker;
use runboard_api::clock::now_rfc3339;
use runboard_api::{DataAction, RunEvent};

/// How long the snippet may be, in characters.
pub const SNIPPET_CHARS: usize = 200;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It finished its work.
    Completed,
    /// It failed with this message.
    Failed(String),
    /// It was cancelled on request.
    Cancelled,
    /// The server is shutting down; the run stays `running` and is marked failed at restart.
    Interrupted,
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The run.
    pub run_id: String,
    /// Its task text.
    pub task: String,
    /// Its parameters (a JSON object).
    pub params: Value,
    /// Where its events go.
    pub recorder: Recorder,
    /// Cancelled when the run is cancelled.
    pub cancel: CancellationToken,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// The run's own seed.
    pub seed: u64,
    /// Where its generation requests are tracked.
    pub requests: RequestTracker,
}

impl RunContext {
    /// Records one of the run's events, stamped now.
    pub async fn record(&self, event: RunEvent) -> Result<(), Stopped> {
        let event = self.recorder.redact(event, &self.task);
        self.recorder
            .event(&self.run_id, event, now_rfc3339())
            .await
    }

    /// Records a line for people.
    pub async fn narrate(&self, level: &str, action: &str, text: &str) -> Result<(), Stopped> {
        self.record(RunEvent::narration(level, action, text)).await
    }

    /// Records structured data for programs.
    pub async fn data(&self, action: DataAction) -> Result<(), Stopped> {
        self.record(RunEvent::data(action)).await
    }
}

/// The last `max_chars` characters of `text`, cut at a character boundary.
pub fn tail(text: &str, max_chars: usize) -> &str {
    match text.char_indices().rev().nth(max_chars.saturating_sub(1)) {
        Some((start, _)) if max_chars > 0 => &text[start..],
        Some(_) => "",
        None => text,
    }
}
