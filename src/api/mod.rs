//! The runs API: the wire contract (types and events) and a typed client. Shared by the server,
//! the console and the command line, so both ends of the wire use one definition.

mod client;
mod events;
mod types;

pub use client::{ApiClient, ApiError, RunQuery};
pub use events::{
    DataEvent, DecodeError, Narration, NodeUpdate, RunError, RunEvent, StatusChange, StreamEnd,
};
pub use types::{
    CreateRun, ErrorBody, ErrorDetail, Health, RunDetail, RunList, RunMode, RunStatus, RunSummary,
    StoredEvent,
};
