//! The event path: the recorder that writes each event to the store before anyone sees it, the
//! feed and hub that fan written events out, the notifications that carry them between servers
//! sharing a database, and the streams a client reads.

pub(crate) mod feed;
pub(crate) mod hub;
pub(crate) mod recorder;
pub(crate) mod sse_out;
pub(crate) mod stream;
