//! The console: image snapshots and end-to-end runs of its views through `egui_kittest`.
//!
//! One test binary per crate under test, so each links only what it tests.

/// The helpers this binary uses, from `tests/support/`.
#[path = "../support"]
mod support {
    #![allow(dead_code)]
    pub mod llama_server;
    pub mod openai_upstream;
    pub mod scripted_server;
    pub mod seed_server;
}

mod proxy;
mod real_models;
mod seed_dialect;
mod snapshots;
mod ui;
