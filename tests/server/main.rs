//! The reference server over real HTTP on loopback, with a real SQLite file.
//!
//! One test binary per crate under test, so each links only what it tests.

/// The helpers this binary uses, from `tests/support/`.
#[path = "../support"]
mod support {
    #![allow(dead_code)]
    pub mod certificates;
    pub mod cut_proxy;
    pub mod llama_server;
    pub mod openai_upstream;
    pub mod otlp_receiver;
    pub mod raw_http;
    pub mod scripted_server;
    pub mod test_server;
    pub mod tmpfs;
}

mod api;
mod benchmark;
mod exchange;
mod limits;
mod llama;
mod llama_proxy;
mod llama_runs;
mod metrics;
mod otlp;
mod prometheus;
mod proxy;
mod proxy_record;
mod proxy_secrets;
mod real_models;
mod redaction;
mod requests;
mod restart;
mod retention;
mod roles;
mod schema;
mod shared_store;
mod store_faults;
mod store_refusals;
mod streams;
mod upstream_connections;
mod upstreams;
mod web;
mod workers;
