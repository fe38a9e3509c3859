//! What the UI remembers between frames that is not run data: forms, filters, what is open.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::views::View;
use crate::board::RunKey;
use runboard_api::{RunMode, RunStatus};

/// The launch form. Persisted between starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LaunchForm {
    /// The task text.
    pub task: String,
    /// Workers to launch (1..=256).
    pub count: u32,
    /// Milliseconds between submissions.
    pub stagger_ms: u64,
    /// Queued or inline.
    pub inline: bool,
    /// Which server gets the batch.
    pub server: usize,
    /// The model every run asks for (`params.model`); empty leaves it to the server.
    pub model: String,
}

impl Default for LaunchForm {
    fn default() -> Self {
        Self {
            task: "Write a short story about a lighthouse keeper".into(),
            count: 6,
            stagger_ms: 300,
            inline: false,
            server: 0,
            model: String::new(),
        }
    }
}

impl LaunchForm {
    /// The runs' `params`: the chosen model, if any.
    pub fn params(&self) -> serde_json::Value {
        let model = self.model.trim();
        if model.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::json!({ "model": model })
        }
    }

    /// The run mode the form asks for.
    pub fn mode(&self) -> RunMode {
        if self.inline {
            RunMode::Inline
        } else {
            RunMode::Queued
        }
    }
}

/// UI state. The launch form and panel choices persist; the rest is per session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(clippy::struct_excessive_bools)] // Independent panels that are open or not.
pub struct UiState {
    /// The launch form.
    pub launch: LaunchForm,
    /// Whether the launch form is showing.
    #[serde(skip)]
    pub launch_open: bool,
    /// The feed's text filter.
    #[serde(skip)]
    pub filter_text: String,
    /// The feed's status filter.
    #[serde(skip)]
    pub filter_status: Option<RunStatus>,
    /// Feed entries whose chain is expanded.
    #[serde(skip)]
    pub expanded: HashSet<RunKey>,
    /// Whether the log panel is open.
    pub log_open: bool,
    /// A field to move keyboard focus to next frame.
    #[serde(skip)]
    pub focus: Option<FocusTarget>,
    /// Whether the settings window is open.
    #[serde(skip)]
    pub settings_open: bool,
    /// Servers added in the settings window; watched again at every start.
    pub added_servers: Vec<String>,
    /// The URL being typed into the settings window's server field.
    #[serde(skip)]
    pub new_server: String,
    /// The view in the middle of the window.
    pub view: View,
    /// The log panel's filters and follow mode.
    pub log: LogPanel,
    /// The feed shows only this worker's calls (a click on a worker's card).
    #[serde(skip)]
    pub filter_worker: Option<String>,
    /// The run picked from the log: its card (or feed entry) is highlighted.
    #[serde(skip)]
    pub selected: Option<RunKey>,
    /// Scroll the cards to the selected run next frame.
    #[serde(skip)]
    pub scroll_to_selected: bool,
    /// How the requests table is sorted.
    pub requests_sort: RequestSort,
    /// Tasks in a benchmark started from the Benchmark view.
    pub bench_tasks: u64,
    /// The token being typed into the token prompt.
    #[serde(skip)]
    pub token_input: String,
}

/// The least severe level the log shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    /// Everything.
    #[default]
    All,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
}

impl LogLevel {
    /// Every choice, in menu order.
    pub const ALL: [Self; 3] = [Self::All, Self::Warn, Self::Error];

    /// The menu's words.
    pub fn label(self) -> &'static str {
        match self {
            Self::All => "all levels",
            Self::Warn => "warn and error",
            Self::Error => "error only",
        }
    }

    /// Whether a line of `level` passes.
    pub fn admits(self, level: &str) -> bool {
        let rank = match level {
            "error" | "fatal" | "critical" => 2,
            "warn" | "warning" => 1,
            _ => 0,
        };
        rank >= self as u8
    }
}

/// The log panel's choices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogPanel {
    /// The least severe level shown.
    pub level: LogLevel,
    /// Show only lines of runs whose id contains this.
    #[serde(skip)]
    pub run_filter: String,
    /// While paused, the log shows lines up to this number and stays where it is.
    #[serde(skip)]
    pub paused_at: Option<u64>,
}

/// A column of the requests table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestColumn {
    /// The worker that made it.
    Worker,
    /// How long it has run.
    #[default]
    Duration,
    /// Waiting for its first token, decoding, or retrying.
    Phase,
    /// Its time to first token.
    Ttft,
    /// Its decode rate.
    Rate,
    /// The model asked for.
    Model,
    /// The model serving it.
    Resolved,
    /// Streaming or not.
    Streaming,
    /// Prompt tokens.
    Input,
    /// Tokens generated.
    Output,
    /// Its id.
    RequestId,
}

/// The requests table's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSort {
    /// By which column.
    pub column: RequestColumn,
    /// Smallest first.
    pub ascending: bool,
}

impl Default for RequestSort {
    fn default() -> Self {
        Self {
            column: RequestColumn::Duration,
            ascending: false,
        }
    }
}

/// Fields a keyboard shortcut can focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FocusTarget {
    /// The launch form's task (L).
    Task,
    /// The feed filter (/).
    Filter,
}

impl UiState {
    /// Whether focus should move to `target` now; asking consumes the request.
    pub fn take_focus(&mut self, target: FocusTarget) -> bool {
        if self.focus == Some(target) {
            self.focus = None;
            true
        } else {
            false
        }
    }
}
