//! `--replay FILE`: reading a recording for the replaying server, with the messages a wrong or
//! cut file gets.

use std::path::Path;
use std::sync::Arc;

use runboard_api::{Recording, ReplayClock};
use runboard_server::replay::ReplayConfig;

/// Reads `path` as a recording. A cut last line is reported on stderr and the rest replayed;
/// anything else wrong is the error to print.
pub fn load(path: &Path) -> Result<Recording, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("could not read {}: {e}", path.display()))?;
    // A cut can fall inside a multi-byte character; that line is dropped as cut anyway.
    let text = String::from_utf8_lossy(&bytes);
    let recording =
        Recording::parse(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    if let Some(line) = recording.cut_at_line {
        eprintln!(
            "runboard: warning: {} ends in a cut line (line {line}, written only in part); \
             replaying the {} whole events before it",
            path.display(),
            recording.events.len()
        );
    }
    Ok(recording)
}

/// The replaying server's settings for `path`, on `clock`.
pub fn config(path: &Path, clock: ReplayClock, looping: bool) -> Result<ReplayConfig, String> {
    let recording = load(path)?;
    tracing::info!(
        "replaying {}: {} events of {} runs over {:.1} s, recorded from {} at {}",
        path.display(),
        recording.events.len(),
        recording.run_count(),
        recording.duration(),
        recording.header.source,
        recording.header.started_at
    );
    Ok(ReplayConfig {
        recording: Arc::new(recording),
        clock,
        looping,
    })
}
