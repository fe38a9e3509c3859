//! The runboard console: what it knows ([`board`]) and how it shows it ([`ui`]), natively in an
//! eframe window and in the browser.
//!
//! Data flows one way: streams and API calls (the connector) post to an inbox, `Board::apply`
//! folds each message into the board, and the views draw the board. See `ARCHITECTURE.md`.

pub mod board;
pub mod ui;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// The window toolkit the console runs in, for the binary that opens the window.
pub use eframe;
