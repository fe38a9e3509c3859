//! The `runboard` binary: each subcommand run as a process against a real or scripted server.
//!
//! One test binary per crate under test, so each links only what it tests.

/// The helpers this binary uses, from `tests/support/`.
#[path = "../support"]
mod support {
    #![allow(dead_code)]
    pub mod certificates;
    pub mod openai_upstream;
    pub mod otlp_receiver;
    pub mod scripted_server;
    pub mod test_server;
}

mod bad_flags;
mod bench;
mod events;
mod memory;
mod models;
mod open_files;
mod otlp;
mod record;
mod runs;
mod shared_store;
mod tls;
mod tokens;
mod upstream;
mod workers;
