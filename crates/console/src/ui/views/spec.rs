//! What the console knows about a view: [`ViewSpec`], which each view's file gives as its
//! `VIEW`, and [`ViewNeeds`], what it needs from the network while it shows.

use crate::board::Board;
use crate::ui::Action;
use crate::ui::state::UiState;

/// What a view needs from each server while it shows, beyond what every view has (the event
/// stream, and the upstreams stream the summary bar reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewNeeds {
    /// Nothing more.
    Nothing,
    /// The benchmark stream, from servers that offer benchmarks; closed when the view hides.
    BenchmarkStream,
    /// The active-requests stream, from servers that offer it; closed when the view hides.
    RequestsStream,
    /// Each server's model list, asked for once (a models job).
    ModelLists,
}

/// A view of the main area: everything the console knows about it, in one place.
#[derive(Debug, Clone, Copy)]
pub struct ViewSpec {
    /// Its name on the command line (`--view`) and in the tab order.
    pub key: &'static str,
    /// The tab's label.
    pub label: &'static str,
    /// What it shows, for `--help`.
    pub about: &'static str,
    /// What it needs from the network while it shows.
    pub needs: ViewNeeds,
    /// Whether the feed panel shows beside it.
    pub with_feed: bool,
    /// Whether a time it shows changes by itself, so the console repaints while it shows.
    pub ticks: fn(&Board) -> bool,
    /// Draws it in the central panel.
    pub draw: fn(&mut egui::Ui, &Board, &mut UiState, f64, &mut Vec<Action>),
}
