//! The eframe app: `logic` drains the inbox into the board within a time budget; `ui` only
//! reads the board and draws. Widgets live one per file; functions that draw take `&mut Ui` and
//! end in `_ui`.

mod console;
mod fonts;
mod replay_pace;
#[cfg(not(target_arch = "wasm32"))]
mod screenshot;
mod state;
mod stream_plan;
mod title;
mod views;

pub use crate::network::{Connector, Inbox, LaunchRequest, Outbox};
pub use console::{Console, ConsoleConfig, console_ui};
pub use fonts::install_fonts;
pub use replay_pace::{REPLAY_STEP_SECS, ReplayView};
#[cfg(not(target_arch = "wasm32"))]
pub use screenshot::Screenshot;
pub use state::{LaunchForm, LogLevel, RequestColumn, RequestSort, UiState};
pub use stream_plan::{StreamCommand, StreamPlan};
pub use views::{View, ViewNeeds, ViewSpec};

use crate::board::{RunKey, Settings};

/// Something the user asked for, collected while drawing and carried out after.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Launch the batch in the launch form.
    Launch,
    /// Launch the demo batch.
    LaunchDemo,
    /// Cancel one run.
    Cancel(RunKey),
    /// Cancel every unfinished run shown.
    CancelAll,
    /// Remove the cards of finished runs.
    ClearFinished,
    /// Watch one more server, from now on and at every start.
    AddServer(String),
    /// Ask a server for its models (a models job).
    ListModels(usize),
    /// Use this token for every server and try again those that refused.
    SetToken(String),
    /// Use these settings from now on.
    ChangeSettings(Settings),
    /// Start a benchmark of this many tasks on a server.
    StartBenchmark {
        /// Which server.
        server: usize,
        /// How many tasks.
        tasks: u64,
    },
}
