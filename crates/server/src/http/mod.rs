//! The HTTP layer: the listener and what guards it, the routers per resource and the responses
//! they write (errors, SSE framing, the web bundle). It calls into the other layers and holds
//! no state of its own beyond a request's.

pub(crate) mod active_requests_stream;
pub(crate) mod auth;
pub(crate) mod body_buffer;
pub(crate) mod fd_limit;
pub(crate) mod first_head;
pub(crate) mod guard;
pub mod listener;
pub(crate) mod request_span;
pub(crate) mod routes;
pub mod tls;
pub mod tokens;
pub(crate) mod upstreams_stream;
pub mod web_bundle;
