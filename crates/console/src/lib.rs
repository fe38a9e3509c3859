//! The runboard console: what it knows ([`board`]) and how it shows it ([`ui`]), natively in an
//! eframe window and in the browser.
//!
//! Three parts: the network (`network`: the connector, the view streams and the inbox), the app
//! shell (`ui`: the eframe app, the stream plan, replay pacing, screenshots) and the views
//! (`ui::views`). Data flows one way: streams and API calls post to the inbox, `Board::apply`
//! folds each message into the board, and the views draw the board. See `ARCHITECTURE.md`.

pub mod board;
pub mod network;
pub mod ui;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// The window toolkit the console runs in, for the binary that opens the window.
pub use eframe;
