//! The console: image snapshots and end-to-end runs of its views through `egui_kittest`.
//!
//! One test binary per crate under test, so each links only what it tests.

mod snapshots;
mod ui;
