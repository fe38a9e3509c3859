//! Server-Sent Events: a WHATWG-exact parser and a reconnecting client.
//!
//! Nothing here knows about runboard's runs or its UI; it could be a crate of its own.
//!
//! - [`Parser`] turns body bytes into [`Frame`]s, incrementally, across any chunking.
//! - [`encode`] writes frames, for servers.
//! - [`EventSource`] connects, reads and reconnects, reporting [`Update`]s: events, comments and
//!   every change of its [`ConnectionState`].
//! - [`ResponseEvents`] reads one response as frames, with no reconnect (for `POST` streams such
//!   as chat completions), natively.
//! - [`http`] makes the HTTP clients everything else uses (natively with TLS on ring).

mod backoff;
mod client;
pub mod encode;
mod error;
mod event;
pub mod http;
mod jitter;
mod parser;
#[cfg(not(target_arch = "wasm32"))]
mod response;
pub mod runtime;
mod state;

pub use backoff::{Backoff, ReconnectPolicy};
pub use client::{EventSource, EventSourceBuilder, Update};
pub use error::SseError;
pub use error::with_causes as error_with_causes;
pub use event::{Event, Frame};
pub use parser::{DEFAULT_MAX_EVENT_BYTES, Parser};
#[cfg(not(target_arch = "wasm32"))]
pub use response::ResponseEvents;
pub use state::ConnectionState;
