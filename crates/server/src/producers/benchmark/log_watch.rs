//! Tails a benchmark's log file and feeds what it says to the board. The file may not exist yet,
//! may disappear, and may be rotated (replaced or truncated); each shows up in `status` and the
//! watch goes on.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use web_time::Instant;

use super::BenchmarkBoard;
use super::log_parse::{LogLine, parse_line, task_result};
use runboard_api::phase;

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(250);

/// Bytes read per look, so a huge log is taken in steps.
const READ_STEP: u64 = 4 * 1024 * 1024;

/// A line longer than this is skipped (it cannot be one the parser reads).
const MAX_LINE: usize = 64 * 1024;

/// Watches `path` until `shutdown`.
pub fn watch_log(board: BenchmarkBoard, path: PathBuf, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tail = Tail::new(path);
        let mut reader = LogReader::default();
        loop {
            let moved = tokio::task::spawn_blocking(move || {
                let seen = tail.poll();
                (tail, seen)
            })
            .await;
            let Ok((moved_tail, seen)) = moved else {
                return;
            };
            tail = moved_tail;
            reader.apply(&board, &seen);
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = shutdown.cancelled() => return,
            }
        }
    });
}

/// What one look at the file found.
#[derive(Debug, Default)]
struct Seen {
    present: bool,
    rotated: bool,
    problem: Option<String>,
    lines: Vec<String>,
    /// Whether these lines were written before the watch began (a catch-up read).
    backlog: bool,
}

/// The file's reading position across rotations.
struct Tail {
    path: PathBuf,
    file: Option<File>,
    identity: Option<(u64, u64)>,
    offset: u64,
    partial: Vec<u8>,
    skipping_long_line: bool,
    first_read: bool,
}

impl Tail {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            identity: None,
            offset: 0,
            partial: Vec::new(),
            skipping_long_line: false,
            first_read: true,
        }
    }

    fn reset(&mut self) {
        self.file = None;
        self.offset = 0;
        self.partial.clear();
        self.skipping_long_line = false;
    }

    fn poll(&mut self) -> Seen {
        let mut seen = Seen::default();
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.reset();
                // Whatever appears from now on is written while we watch.
                self.first_read = false;
                return seen;
            }
            Err(error) => {
                seen.problem = Some(error.to_string());
                return seen;
            }
        };
        seen.present = true;
        let identity = (meta.dev(), meta.ino());
        let replaced = self.identity.is_some_and(|known| known != identity);
        let truncated = self.file.is_some() && meta.len() < self.offset;
        if replaced || truncated {
            seen.rotated = true;
            self.reset();
        }
        self.identity = Some(identity);
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.file = Some(file),
                Err(error) => {
                    seen.problem = Some(error.to_string());
                    return seen;
                }
            }
        }
        seen.backlog = self.first_read;
        self.first_read = false;
        if let Err(error) = self.read_lines(meta.len(), &mut seen.lines) {
            seen.problem = Some(error.to_string());
        }
        seen
    }

    fn read_lines(&mut self, len: u64, lines: &mut Vec<String>) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        while self.offset < len {
            let want = (len - self.offset).min(READ_STEP);
            file.seek(SeekFrom::Start(self.offset))?;
            let mut chunk = Vec::new();
            let read = file.by_ref().take(want).read_to_end(&mut chunk)?;
            if read == 0 {
                break;
            }
            self.offset += read as u64;
            for piece in chunk.split_inclusive(|&b| b == b'\n') {
                let complete = piece.ends_with(b"\n");
                if !self.skipping_long_line {
                    self.partial.extend_from_slice(piece);
                }
                if self.partial.len() > MAX_LINE {
                    self.partial.clear();
                    self.skipping_long_line = true;
                }
                if complete {
                    if !self.skipping_long_line {
                        lines.push(String::from_utf8_lossy(&self.partial).into_owned());
                    }
                    self.partial.clear();
                    self.skipping_long_line = false;
                }
            }
        }
        Ok(())
    }
}

/// Turns what the file says into board changes.
#[derive(Debug, Default)]
struct LogReader {
    /// When the current task started, if seen live (a backlog has no timing).
    task_started: Option<Instant>,
    /// The index of the last `Task i/n` line.
    last_index: u64,
}

impl LogReader {
    fn apply(&mut self, board: &BenchmarkBoard, seen: &Seen) {
        let parsed: Vec<LogLine> = seen.lines.iter().filter_map(|l| parse_line(l)).collect();
        board.update(|state| {
            if let Some(log) = state.status.log.as_mut() {
                log.present = seen.present;
                log.problem.clone_from(&seen.problem);
                if seen.rotated {
                    log.rotations += 1;
                }
            }
            state.status.connected = seen.present && seen.problem.is_none();
            if !seen.present && state.generation == 0 {
                phase::WAITING.clone_into(&mut state.status.phase);
            } else if seen.present && state.status.phase == phase::WAITING {
                phase::IDLE.clone_into(&mut state.status.phase);
            }
            for line in parsed {
                self.line(state, line, seen.backlog);
            }
        });
    }

    fn line(&mut self, state: &mut super::BenchmarkState, line: LogLine, backlog: bool) {
        match line {
            LogLine::TaskOf { index, total } => {
                let restarted = index < self.last_index
                    || state.status.phase == phase::FINISHED
                    || (state.progress.total_tasks != 0 && total != state.progress.total_tasks)
                    || state.generation == 0;
                if restarted {
                    state.begin(None, total);
                }
                self.last_index = index;
                state.progress.total_tasks = total;
                state.progress.tasks_completed = state
                    .progress
                    .tasks_completed
                    .max(state.results_total())
                    .max(index - 1);
            }
            LogLine::Running(task) => {
                if state.generation == 0 {
                    state.begin(None, 0);
                }
                state.task_started(&task);
                self.task_started = (!backlog).then(Instant::now);
            }
            LogLine::Step(step) => state.progress.current_step = Some(step),
            LogLine::Result {
                task_id,
                success,
                score,
            } => {
                if state.generation == 0 {
                    state.begin(None, 0);
                }
                let task_id = task_id
                    .or_else(|| state.progress.current_task.clone())
                    .unwrap_or_else(|| format!("task_{}", state.results_total() + 1));
                let duration = self
                    .task_started
                    .take()
                    .filter(|_| !backlog)
                    .map(|at| at.elapsed().as_secs_f64());
                state.task_finished(task_result(task_id, success, score, duration));
            }
            LogLine::Error(message) => state.error(message),
        }
    }
}
