//! Recordings: what a server's runs did, as a file of JSON lines that replays anywhere.
//!
//! The first line is a [`RecordingHeader`]; every other line is one [`RecordedEvent`], in the
//! order the recorder received them, with its time in seconds since the recording started.
//! Lines are written whole, so a file is valid at every moment; a file cut mid-line (a killed
//! recorder, a full disk) reads up to its last whole line.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the header's `format` says, so any file can be told from a recording.
pub const RECORDING_FORMAT: &str = "runboard-recording";

/// The version of the format this build writes and the newest it reads.
pub const RECORDING_VERSION: u32 = 1;

/// The first line of a recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingHeader {
    /// Always [`RECORDING_FORMAT`].
    pub format: String,
    /// The format's version.
    pub version: u32,
    /// When the recording started (RFC 3339, UTC); event times count from here.
    pub started_at: String,
    /// The server it was recorded from.
    #[serde(default)]
    pub source: String,
    /// The program that wrote it, e.g. `runboard 0.1.0`.
    #[serde(default)]
    pub recorded_by: String,
}

impl RecordingHeader {
    /// A header for a recording of `source` that starts at `started_at`.
    pub fn new(source: &str, started_at: &str, recorded_by: &str) -> Self {
        Self {
            format: RECORDING_FORMAT.to_owned(),
            version: RECORDING_VERSION,
            started_at: started_at.to_owned(),
            source: source.to_owned(),
            recorded_by: recorded_by.to_owned(),
        }
    }
}

/// One event as it was received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Seconds since the recording started.
    pub t: f64,
    /// The event type (`run_created`, `node_update`, …).
    pub event: String,
    /// The event's data, as the server sent it.
    pub data: Value,
}

impl RecordedEvent {
    /// The run the event belongs to; empty when it names none.
    pub fn run_id(&self) -> &str {
        self.data
            .get("run_id")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The line written for it (without the newline).
    pub fn to_line(&self) -> String {
        // Only strings, numbers and string-keyed maps: encoding cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The latest time an event may have, in seconds from the recording's start: a year.
pub const MAX_EVENT_SECS: f64 = 365.0 * 86_400.0;

/// A whole recording, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// Its header.
    pub header: RecordingHeader,
    /// Its events, oldest first.
    pub events: Vec<RecordedEvent>,
    /// Set when the file ends in a partial line: the line number of that cut line, which was
    /// left out.
    pub cut_at_line: Option<usize>,
}

/// Why a file could not be read as a recording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingError {
    /// The file is empty.
    #[error("it is empty, not a runboard recording")]
    Empty,
    /// The first line is not a recording header.
    #[error("it is not a runboard recording: its first line is not a recording header ({reason})")]
    NotARecording {
        /// What was wrong with the first line.
        reason: String,
    },
    /// A newer runboard wrote it.
    #[error(
        "it is a version {version} recording; this runboard reads recordings up to version \
         {RECORDING_VERSION} (a newer runboard wrote it)"
    )]
    NewerVersion {
        /// The file's version.
        version: u32,
    },
    /// A whole line in the middle of the file is not an event.
    #[error("line {line} is not a recorded event: {reason}")]
    BadLine {
        /// The line's number, from 1.
        line: usize,
        /// What was wrong with it.
        reason: String,
    },
}

impl Recording {
    /// Reads a recording from its text. A last line without its newline that does not decode
    /// is a cut line: left out and reported in [`Recording::cut_at_line`], not an error.
    pub fn parse(text: &str) -> Result<Self, RecordingError> {
        let mut lines = text.split_inclusive('\n').enumerate();
        let Some((_, first)) = lines.find(|(_, line)| !line.trim().is_empty()) else {
            return Err(RecordingError::Empty);
        };
        let header = parse_header(first.trim())?;
        let mut events = Vec::new();
        let mut cut_at_line = None;
        let mut latest = 0.0_f64;
        for (index, raw) in lines {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            match serde_json::from_str::<RecordedEvent>(line) {
                // A time past any recording would hold every later event back for ever.
                Ok(event) if event.t > MAX_EVENT_SECS => {
                    return Err(RecordingError::BadLine {
                        line: index + 1,
                        reason: format!(
                            "its time t: {} s is past any recording (at most {MAX_EVENT_SECS} s, \
                             a year, from its start)",
                            event.t
                        ),
                    });
                }
                Ok(mut event) => {
                    // Times never go back: a replay keeps the file's order.
                    event.t = if event.t.is_finite() {
                        event.t.max(latest)
                    } else {
                        latest
                    };
                    latest = event.t;
                    events.push(event);
                }
                Err(_) if !raw.ends_with('\n') => cut_at_line = Some(index + 1),
                Err(error) => {
                    return Err(RecordingError::BadLine {
                        line: index + 1,
                        reason: error.to_string(),
                    });
                }
            }
        }
        Ok(Self {
            header,
            events,
            cut_at_line,
        })
    }

    /// Seconds from the start to the last event.
    pub fn duration(&self) -> f64 {
        self.events.last().map_or(0.0, |event| event.t)
    }

    /// How many runs it holds (runs named by its events).
    pub fn run_count(&self) -> usize {
        let mut runs: Vec<&str> = self
            .events
            .iter()
            .map(RecordedEvent::run_id)
            .filter(|id| !id.is_empty())
            .collect();
        runs.sort_unstable();
        runs.dedup();
        runs.len()
    }
}

fn parse_header(line: &str) -> Result<RecordingHeader, RecordingError> {
    let not_one = |reason: String| RecordingError::NotARecording { reason };
    let value: Value = serde_json::from_str(line).map_err(|e| not_one(e.to_string()))?;
    if value.get("format").and_then(Value::as_str) != Some(RECORDING_FORMAT) {
        return Err(not_one(format!("no \"format\": \"{RECORDING_FORMAT}\"")));
    }
    let header: RecordingHeader =
        serde_json::from_value(value).map_err(|e| not_one(e.to_string()))?;
    if header.version > RECORDING_VERSION {
        return Err(RecordingError::NewerVersion {
            version: header.version,
        });
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header_line() -> String {
        serde_json::to_string(&RecordingHeader::new(
            "http://127.0.0.1:9010",
            "2026-12-03T10:00:00Z",
            "runboard test",
        ))
        .unwrap()
    }

    fn event_line(t: f64, run: &str) -> String {
        RecordedEvent {
            t,
            event: "node_update".into(),
            data: json!({"run_id": run, "tokens_out": 3}),
        }
        .to_line()
    }

    #[test]
    fn a_recording_reads_back_what_was_written() {
        let text = format!(
            "{}\n{}\n{}\n",
            header_line(),
            event_line(0.5, "a"),
            event_line(1.25, "b")
        );
        let recording = Recording::parse(&text).unwrap();
        assert_eq!(recording.header.version, RECORDING_VERSION);
        assert_eq!(recording.events.len(), 2);
        assert_eq!(recording.events[1].run_id(), "b");
        assert!((recording.duration() - 1.25).abs() < 1e-9);
        assert_eq!(recording.run_count(), 2);
        assert_eq!(recording.cut_at_line, None);
    }

    #[test]
    fn a_cut_last_line_is_left_out_and_reported() {
        let whole = event_line(2.0, "a");
        let text = format!(
            "{}\n{}\n{}",
            header_line(),
            event_line(1.0, "a"),
            &whole[..whole.len() / 2]
        );
        let recording = Recording::parse(&text).unwrap();
        assert_eq!(recording.events.len(), 1);
        assert_eq!(recording.cut_at_line, Some(3));
        // A last line without its newline that is whole is kept.
        let text = format!("{}\n{}", header_line(), whole);
        assert_eq!(Recording::parse(&text).unwrap().events.len(), 1);
    }

    #[test]
    fn wrong_files_say_what_they_are() {
        assert_eq!(Recording::parse(""), Err(RecordingError::Empty));
        let not = Recording::parse("id,name\n1,a\n").unwrap_err();
        assert!(matches!(not, RecordingError::NotARecording { .. }), "{not}");
        let other_json = Recording::parse("{\"runs\": []}\n").unwrap_err();
        assert!(other_json.to_string().contains("not a runboard recording"));
        let newer = header_line().replace("\"version\":1", "\"version\":7");
        let error = Recording::parse(&format!("{newer}\n")).unwrap_err();
        assert_eq!(error, RecordingError::NewerVersion { version: 7 });
        assert!(error.to_string().contains("version 7"));
        let middle = format!("{}\nnot json\n{}\n", header_line(), event_line(1.0, "a"));
        let error = Recording::parse(&middle).unwrap_err();
        assert!(
            matches!(error, RecordingError::BadLine { line: 2, .. }),
            "{error}"
        );
    }

    #[test]
    fn times_never_go_back() {
        let text = format!(
            "{}\n{}\n{}\n",
            header_line(),
            event_line(2.0, "a"),
            event_line(1.0, "a")
        );
        let recording = Recording::parse(&text).unwrap();
        assert!((recording.events[1].t - 2.0).abs() < 1e-9);
    }
}
