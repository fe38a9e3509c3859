//! The SSE parser (against the fixture files) and the reconnecting client (against scripted servers).
//!
//! One test binary per crate under test, so each links only what it tests.

/// The helpers this binary uses, from `tests/support/`.
#[path = "../support"]
mod support {
    #![allow(dead_code)]
    pub mod scripted_server;
}

mod client;
mod fixtures;
mod response;
