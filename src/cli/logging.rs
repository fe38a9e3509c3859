//! Where the server's logs go: stderr, as text for people or JSON lines for collectors, filtered
//! by `RUST_LOG` (by default: runboard's own information and everyone's warnings).

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "warn,runboard=info,runboard_server=info,runboard_console=info";

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line per event for people: time, level, message, fields.
    #[default]
    Text,
    /// One JSON object per line, with the request span's fields.
    Json,
}

/// Installs the subscriber for the whole process. A `RUST_LOG` that does not parse is reported
/// and the default is used.
pub fn init(format: LogFormat) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|error| {
            eprintln!(
                "runboard: warning: RUST_LOG={spec:?} is not a filter ({error}); using the default"
            );
            EnvFilter::new(DEFAULT_FILTER)
        }),
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr closed by whoever read it, or a full disk)
        // is lost, never reported with `eprintln!`, which panics on the same stderr and would
        // take the request that logged down with it.
        .log_internal_errors(false)
        .with_target(false);
    // A second subscriber (tests that run main twice) is not an error worth stopping for.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
