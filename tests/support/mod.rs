//! Helpers shared by the integration tests. Each test binary uses a different part of them.
#![allow(dead_code)]

pub mod cut_proxy;
pub mod raw_http;
pub mod scripted_server;
pub mod test_server;
pub mod tmpfs;
