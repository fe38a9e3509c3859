//! runboard: a live console for LLM generation runs.
//!
//! The library holds everything; `src/main.rs` only picks the native or web entry point.
//! See `README.md` for the command line and `../shared/DESIGN.md` for the architecture.

pub mod api;
pub mod app;
pub mod model;
pub mod rng;
pub mod runtime;
pub mod sse;
pub mod units;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
#[cfg(not(target_arch = "wasm32"))]
pub mod server;
#[cfg(target_arch = "wasm32")]
pub mod web;
