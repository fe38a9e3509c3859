//! The console's network side: the connector (one task per stream and per request, for every
//! server), the view streams, the token kept between starts, and the inbox every result goes
//! through. Nothing here draws or touches the board: results go out as `Inbound` messages, and
//! every stream reaches the inbox through [`pump`].

mod connector;
mod inbox;
mod pump;
mod runtime;
mod side_streams;
pub(crate) mod token_store;

pub use connector::{Connector, LaunchRequest};
pub use inbox::{Inbox, Outbox};
pub use runtime::{MaybeSend, Spawner};
pub(crate) use side_streams::{Stopping, TaskGuard};
