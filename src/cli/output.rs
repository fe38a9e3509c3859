//! Writing machine output: one JSON value per line, flushed at once so pipes follow live.

use std::io::{StdoutLock, Write as _};

use serde::Serialize;

/// One structured event as `tail --json` prints it.
#[derive(Serialize)]
pub struct JsonEvent<'a> {
    /// The event type.
    pub event: &'a str,
    /// Its data.
    pub data: serde_json::Value,
    /// Its id on the stream.
    pub id: &'a str,
}

/// `runboard tail` failed: the message on stderr, exit 1.
pub fn tail_failed(message: &str) -> std::process::ExitCode {
    eprintln!("runboard tail: error: {message}");
    std::process::ExitCode::FAILURE
}

/// JSON lines on stdout.
pub struct JsonLines {
    stdout: StdoutLock<'static>,
}

impl JsonLines {
    /// Locks stdout for JSON lines.
    pub fn new() -> Self {
        Self {
            stdout: std::io::stdout().lock(),
        }
    }

    /// Writes one value as a line. False when stdout is gone (`| head` closed it), which callers
    /// treat as a normal reason to stop.
    pub fn write(&mut self, value: &impl Serialize) -> bool {
        serde_json::to_writer(&mut self.stdout, value)
            .map_err(std::io::Error::from)
            .and_then(|()| self.stdout.write_all(b"\n"))
            .and_then(|()| self.stdout.flush())
            .is_ok()
    }
}

/// Prints pretty JSON to stdout. A closed stdout is not an error.
pub fn print_pretty(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            print_lines(&text);
        }
        Err(error) => eprintln!("runboard: error: could not encode the output: {error}"),
    }
}

/// Prints text and a line break to stdout. False when stdout is gone (`| head` closed it);
/// unlike `println!`, that does not panic.
pub fn print_lines(text: &str) -> bool {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .is_ok()
}
