//! What makes runs and their events: the run registry, the synthetic generator, runs on real
//! models (upstream calls), the OpenAI-compatible proxy, replay of a recording and benchmarks.
//! Producers write through the recorder and never talk HTTP to a runboard client themselves.

pub mod benchmark;
pub mod catalog;
pub mod generator;
pub(crate) mod membership;
pub(crate) mod models_job;
pub(crate) mod notifications;
pub mod proxy;
pub mod replay;
pub mod rng;
pub mod run_context;
pub mod run_ids;
pub(crate) mod runs;
pub mod upstream;
