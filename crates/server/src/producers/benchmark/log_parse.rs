//! Reading a benchmark's log: progress, the current task and step, task results and
//! errors, one line at a time. Pure: the file is the watcher's job.
//!
//! Recognised lines (anywhere in the line, so timestamps and log levels in front are fine):
//! - `Task 5/30` — the 5th of 30 tasks is starting, so 4 are done;
//! - `Running task: NAME` — the current task;
//! - `Step 12` — the current task's step;
//! - `Result: NAME success=true score=0.8` — a result (`success` takes true/false/1/0/pass/fail
//!   in any case; `score` is optional and defaults to 1 or 0);
//! - `Task NAME passed` / `Task NAME failed`, optionally followed by `score=X` or `score: X`;
//! - `ERROR: message` or `Error: message` — an error for the banner.

use runboard_api::TaskComplete;

/// What one log line says.
#[derive(Debug, Clone, PartialEq)]
pub enum LogLine {
    /// `Task i/n`.
    TaskOf {
        /// The task starting, from 1.
        index: u64,
        /// Tasks in all.
        total: u64,
    },
    /// `Running task: NAME`.
    Running(String),
    /// `Step n`.
    Step(u64),
    /// A task's result; the name is absent when the line did not say (the current task).
    Result {
        /// The task, when named.
        task_id: Option<String>,
        /// Whether it passed.
        success: bool,
        /// Its score, when given.
        score: Option<f64>,
    },
    /// An error message.
    Error(String),
}

/// Reads one line; `None` when it says nothing the benchmark view needs.
pub fn parse_line(line: &str) -> Option<LogLine> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = after(line, "Result:") {
        return parse_result_pairs(rest.trim());
    }
    if let Some(rest) = after(line, "Running task:") {
        let name = rest.split_whitespace().next()?;
        return Some(LogLine::Running(name.to_owned()));
    }
    if let Some(message) = after(line, "ERROR:").or_else(|| after(line, "Error:")) {
        let message = message.trim();
        return (!message.is_empty()).then(|| LogLine::Error(message.to_owned()));
    }
    for start in word_starts(line, "Task ") {
        let rest = &line[start + "Task ".len()..];
        if let Some(progress) = parse_task_of(rest) {
            return Some(progress);
        }
        if let Some(verdict) = parse_task_verdict(rest) {
            return Some(verdict);
        }
    }
    for start in word_starts(line, "Step ") {
        let digits = leading_digits(&line[start + "Step ".len()..]);
        if let Some(step) = digits.and_then(|d| d.parse().ok()) {
            return Some(LogLine::Step(step));
        }
    }
    None
}

/// The text after the first `marker` that starts a word.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    word_starts(line, marker)
        .next()
        .map(|start| &line[start + marker.len()..])
}

/// Where `marker` occurs at the start of a word (not inside `Subtask 3/4`, say).
fn word_starts<'a>(line: &'a str, marker: &'a str) -> impl Iterator<Item = usize> + 'a {
    line.match_indices(marker)
        .map(|(at, _)| at)
        .filter(move |&at| {
            line[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric() && c != '_')
        })
}

fn leading_digits(text: &str) -> Option<&str> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    (end > 0).then(|| &text[..end])
}

/// `5/30` (then the end of the word).
fn parse_task_of(rest: &str) -> Option<LogLine> {
    let index_text = leading_digits(rest)?;
    let rest = rest[index_text.len()..].strip_prefix('/')?;
    let total_text = leading_digits(rest)?;
    if rest[total_text.len()..]
        .chars()
        .next()
        .is_some_and(char::is_alphanumeric)
    {
        return None;
    }
    let index: u64 = index_text.parse().ok()?;
    let total: u64 = total_text.parse().ok()?;
    (index >= 1 && total >= 1).then_some(LogLine::TaskOf { index, total })
}

/// `NAME passed|succeeded|failed [... score=X]`.
fn parse_task_verdict(rest: &str) -> Option<LogLine> {
    let mut words = rest.split_whitespace();
    let name = words.next()?.trim_end_matches(':');
    let verdict = words.next()?.trim_end_matches([',', '.', ':']);
    let success = match verdict.to_ascii_lowercase().as_str() {
        "passed" | "succeeded" | "success" => true,
        "failed" | "failure" => false,
        _ => return None,
    };
    Some(LogLine::Result {
        task_id: Some(name.to_owned()),
        success,
        score: score_in(rest),
    })
}

/// `NAME success=true score=0.5` (pairs in any order; the name may be left out).
fn parse_result_pairs(rest: &str) -> Option<LogLine> {
    let mut task_id = None;
    let mut success = None;
    for word in rest.split_whitespace() {
        let word = word.trim_end_matches(',');
        match word.split_once(['=', ':']) {
            Some((key, value)) if key.eq_ignore_ascii_case("success") => {
                success = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "pass" | "passed" => Some(true),
                    "false" | "0" | "no" | "fail" | "failed" => Some(false),
                    _ => None,
                };
            }
            None if task_id.is_none() && success.is_none() => task_id = Some(word.to_owned()),
            _ => {}
        }
    }
    Some(LogLine::Result {
        task_id,
        success: success?,
        score: score_in(rest),
    })
}

/// `score=0.8`, `score: 0.8` or `score 0.8` anywhere in the text.
fn score_in(text: &str) -> Option<f64> {
    let at = text.find("score")?;
    let rest = text[at + "score".len()..].trim_start_matches([' ', '=', ':']);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse::<f64>().ok().filter(|s| s.is_finite())
}

/// The result of a task the log reported, with what the parser knows about it.
pub fn task_result(
    task_id: String,
    success: bool,
    score: Option<f64>,
    duration_secs: Option<f64>,
) -> TaskComplete {
    TaskComplete {
        task_id,
        success,
        score: score.unwrap_or(if success { 1.0 } else { 0.0 }),
        duration_secs,
        run_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_three_patterns() {
        assert_eq!(
            parse_line("2026-11-21 14:23:45 INFO Task 5/30"),
            Some(LogLine::TaskOf {
                index: 5,
                total: 30
            })
        );
        assert_eq!(
            parse_line("Running task: task_001_notepad"),
            Some(LogLine::Running("task_001_notepad".into()))
        );
        assert_eq!(
            parse_line("[agent] Step 12: click(OK)"),
            Some(LogLine::Step(12))
        );
    }

    #[test]
    fn results_in_both_forms() {
        assert_eq!(
            parse_line("Result: task_001_notepad success=True score=0.75"),
            Some(LogLine::Result {
                task_id: Some("task_001_notepad".into()),
                success: true,
                score: Some(0.75)
            })
        );
        assert_eq!(
            parse_line("Result: success=false"),
            Some(LogLine::Result {
                task_id: None,
                success: false,
                score: None
            })
        );
        assert_eq!(
            parse_line("Task task_002_paint failed (score: 0.0)"),
            Some(LogLine::Result {
                task_id: Some("task_002_paint".into()),
                success: false,
                score: Some(0.0)
            })
        );
        assert_eq!(
            parse_line("Task task_003 passed"),
            Some(LogLine::Result {
                task_id: Some("task_003".into()),
                success: true,
                score: None
            })
        );
        assert!((task_result("t".into(), true, None, None).score - 1.0).abs() < 1e-9);
    }

    #[test]
    fn errors_and_lines_that_say_nothing() {
        assert_eq!(
            parse_line("12:00 ERROR: SSH connection failed"),
            Some(LogLine::Error("SSH connection failed".into()))
        );
        for quiet in [
            "",
            "Subtask 3/4",
            "Task 0/30",
            "Task 5/30abc",
            "Steps 12",
            "Result: task_9 score=1",
            "Task task_004 started",
            "Running task:",
            "ERROR:   ",
        ] {
            assert_eq!(parse_line(quiet), None, "{quiet:?}");
        }
    }
}
