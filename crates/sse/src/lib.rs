//! Server-Sent Events: a WHATWG-exact parser and a reconnecting client.
//!
//! Nothing here knows about runboard's runs or its UI; it could be a crate of its own.
//!
//! - [`Parser`] turns body bytes into [`Frame`]s, incrementally, across any chunking.
//! - [`encode`] writes frames, for servers.
//! - [`EventSource`] connects, reads and reconnects, reporting [`Update`]s: events, comments and
//!   every change of its [`ConnectionState`].

mod backoff;
mod client;
pub mod encode;
mod error;
mod event;
mod parser;
pub mod rng;
pub mod runtime;
mod state;

pub use backoff::{Backoff, ReconnectPolicy};
pub use client::{EventSource, EventSourceBuilder, Update};
pub use error::SseError;
pub use error::with_causes as error_with_causes;
pub use event::{Event, Frame};
pub use parser::{DEFAULT_MAX_EVENT_BYTES, Parser};
pub use state::ConnectionState;
