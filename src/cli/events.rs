//! `runboard events URL`: a command-line `EventSource` for debugging any SSE endpoint.
//!
//! stdout gets one JSON line per dispatched event, `{"event": TYPE, "data": DATA, "id": ID}`;
//! stderr gets the connection states. Exit 0 when the server closes the stream for good (204),
//! 1 with a one-line reason when the stream fails, 2 for bad arguments.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::output::JsonLines;
use runboard_sse::{ConnectionState, EventSource, ReconnectPolicy, SseError, Update};

/// Arguments of `runboard events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The event-stream URL (http or https)
    url: String,
    /// Send this as `Last-Event-ID` on the first request, to resume a stream
    #[arg(long, value_name = "ID")]
    last_event_id: Option<String>,
    /// Add a request header, `Name: value` (repeatable)
    #[arg(long = "header", short = 'H', value_name = "K:V")]
    headers: Vec<String>,
    /// Send `Authorization: Bearer TOKEN`
    #[arg(long, env = "RUNBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Give up after N reconnects in a row without a healthy connection (default: never)
    #[arg(long, value_name = "N")]
    max_reconnects: Option<u32>,
    /// The reconnection time until the server sends `retry:`
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    retry_ms: u64,
    /// Reconnect when no bytes arrive for this long; 0 waits forever
    #[arg(long, value_name = "SECS", default_value_t = 45)]
    idle_timeout: u64,
    /// Drop (and report) any event larger than this
    #[arg(long, value_name = "BYTES", default_value_t = runboard_sse::DEFAULT_MAX_EVENT_BYTES)]
    max_event_bytes: usize,
}

/// One output line. Field order is part of the format.
#[derive(Serialize)]
struct EventLine<'a> {
    event: &'a str,
    data: &'a str,
    id: &'a str,
}

/// Runs `runboard events` to the end and returns the exit code.
pub async fn run(args: EventsArgs) -> ExitCode {
    let mut source = match build(&args) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("runboard events: error: {error}");
            return ExitCode::from(2);
        }
    };
    let mut out = JsonLines::new();
    while let Some(update) = source.next().await {
        match update {
            Update::Event(event) => {
                let line = EventLine {
                    event: &event.event,
                    data: &event.data,
                    id: &event.id,
                };
                if !out.write(&line) {
                    // The reader went away (`| head`): that is a normal way to stop.
                    return ExitCode::SUCCESS;
                }
            }
            Update::State(ConnectionState::Connecting { attempt: 0 }) => {
                eprintln!("runboard events: connecting to {}", source.url());
            }
            Update::State(ConnectionState::Closed) => {
                eprintln!("runboard events: {}", ConnectionState::Closed);
                return ExitCode::SUCCESS;
            }
            Update::State(state @ ConnectionState::Failed(_)) => {
                eprintln!("runboard events: {state}");
                return ExitCode::FAILURE;
            }
            Update::State(state) => eprintln!("runboard events: {state}"),
            Update::EventTooLarge { limit_bytes } => {
                eprintln!("runboard events: dropped an event larger than {limit_bytes} bytes");
            }
            Update::Comment(_) => {}
        }
    }
    ExitCode::SUCCESS
}

fn build(args: &EventsArgs) -> Result<EventSource, SseError> {
    let policy = ReconnectPolicy {
        initial_retry: Duration::from_millis(args.retry_ms),
        max_reconnects: args.max_reconnects,
        ..ReconnectPolicy::default()
    };
    let mut builder = EventSource::builder(&args.url)?
        .reconnect(policy)
        .max_event_bytes(args.max_event_bytes)
        .idle_timeout((args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)));
    if let Some(id) = &args.last_event_id {
        builder = builder.last_event_id(id);
    }
    if let Some(token) = &args.token {
        builder = builder.bearer_token(token)?;
    }
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            return Err(SseError::InvalidHeader {
                name: header.clone(),
                reason: "expected NAME:VALUE".into(),
            });
        };
        builder = builder.header(name.trim(), value.trim())?;
    }
    builder.build()
}
