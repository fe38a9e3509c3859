//! `--replay FILE`: reading a recording for the replaying server, with the messages a wrong or
//! cut file gets.

use std::path::Path;
use std::sync::Arc;

use runboard_api::{Recording, ReplayClock};
use runboard_server::replay::ReplayConfig;

/// Reads `path` as a recording. A cut last line is reported on stderr and the rest replayed;
/// anything else wrong is the error to print.
pub fn load(path: &Path) -> Result<Recording, String> {
    let bytes = read_bounded(path)?;
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

/// The most of a recording read: a day of a busy fleet is far less, and its events are held
/// in memory several times over while replayed.
const MAX_RECORDING_BYTES: u64 = 512 * 1024 * 1024;

/// The bytes of `path`, which must be a regular file (a FIFO would hold the start until a
/// writer came; `/dev/zero` would never end) of at most [`MAX_RECORDING_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let failed = |e: std::io::Error| format!("could not read {}: {e}", path.display());
    let kind = std::fs::metadata(path).map_err(failed)?.file_type();
    if !kind.is_file() {
        return Err(format!(
            "{} is not a regular file (a recording is a file `runboard record` wrote)",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(failed)?
        .take(MAX_RECORDING_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_RECORDING_BYTES {
        return Err(format!(
            "{} is larger than {} MiB, more than runboard replays; record a shorter span \
             (`runboard record --duration`)",
            path.display(),
            MAX_RECORDING_BYTES / (1024 * 1024)
        ));
    }
    Ok(bytes)
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
