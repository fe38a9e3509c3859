//! The narration log: every run's human-readable lines, newest last, bounded.

use std::collections::VecDeque;

use super::keys::RunKey;

/// One narration line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The run it belongs to.
    pub run: RunKey,
    /// When it arrived (model clock).
    pub at: f64,
    /// `info`, `warn`, `error`, …
    pub level: String,
    /// The text.
    pub text: String,
    /// Its number: lines are numbered from 1 in arrival order, and keep their number when
    /// older lines are dropped.
    pub number: u64,
}

/// The last `capacity` narration lines.
#[derive(Debug, Clone)]
pub struct Log {
    lines: VecDeque<LogLine>,
    capacity: usize,
    pushed: u64,
}

impl Default for Log {
    fn default() -> Self {
        Self::with_capacity(10_000)
    }
}

impl Log {
    /// A log that keeps the last `capacity` lines.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            capacity: capacity.max(1),
            pushed: 0,
        }
    }

    /// Adds a line (numbering it), dropping the oldest beyond the capacity.
    pub fn push(&mut self, mut line: LogLine) {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.pushed += 1;
        line.number = self.pushed;
        self.lines.push_back(line);
    }

    /// The number of the newest line (0 before any).
    pub fn newest(&self) -> u64 {
        self.pushed
    }

    /// The lines, oldest first.
    pub fn lines(&self) -> &VecDeque<LogLine> {
        &self.lines
    }
}
