//! What the server measures about itself and its model servers: the OpenTelemetry and
//! `/metrics` side, the fleet window behind `/api/workers`, the live request table, and the
//! model servers' own metrics (scrape).

pub(crate) mod active_requests;
pub(crate) mod fleet;
pub mod otlp;
pub mod scrape;
pub(crate) mod telemetry;
pub(crate) mod text_format;
