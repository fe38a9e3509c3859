//! What the UI remembers between frames that is not run data: forms, filters, what is open.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::api::{RunMode, RunStatus};
use crate::model::RunKey;

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
}

impl Default for LaunchForm {
    fn default() -> Self {
        Self {
            task: "Write a short story about a lighthouse keeper".into(),
            count: 6,
            stagger_ms: 300,
            inline: false,
            server: 0,
        }
    }
}

impl LaunchForm {
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
