//! `runboard bench run|watch`: start a benchmark or follow one, with a progress bar in a
//! terminal (plain lines when piped, JSON lines with `--json`).

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::output::JsonLines;
use super::remote::{RemoteArgs, explain};
use runboard_api::clock::{KEEP_ALIVE_INTERVAL, idle_timeout_for};
use runboard_api::units::duration;
use runboard_api::{
    BenchmarkEvent, BenchmarkTally, CreateBenchmark, StreamOptions, StreamUpdate, TaskComplete,
    phase,
};
use runboard_sse::ConnectionState;

/// Cells in the progress bar.
const BAR_WIDTH: usize = 28;

/// `runboard bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Start a benchmark on the server's generator and follow it to its end
    Run(RunArgs),
    /// Follow the benchmark the server runs or watches, until it ends
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// How many tasks
    #[arg(short = 'n', long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    tasks: u64,
    /// A name for the benchmark
    #[arg(long)]
    name: Option<String>,
    /// Parameters for every task's run as a JSON object, e.g. '{"iterations": 1}'
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    #[command(flatten)]
    follow: FollowArgs,
}

#[derive(Debug, Args)]
struct WatchArgs {
    /// Keep following after a benchmark ends, through the next ones
    #[arg(long)]
    forever: bool,
    #[command(flatten)]
    follow: FollowArgs,
}

#[derive(Debug, Args)]
struct FollowArgs {
    /// Seconds between the server's checks (1 to 60)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=60))]
    interval: u64,
    /// Print each event as a JSON line {"event","data"} instead of a progress bar
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Runs `bench run` or `bench watch`.
pub async fn run(args: BenchArgs) -> ExitCode {
    match args.command {
        BenchCommand::Run(run) => start_and_follow(run).await,
        BenchCommand::Watch(watch) => follow(&watch.follow, watch.forever).await,
    }
}

async fn start_and_follow(args: RunArgs) -> ExitCode {
    let client = match args.follow.remote.client() {
        Ok(client) => client,
        Err(message) => return fail(&message),
    };
    let params = match args.params.as_deref().map(serde_json::from_str::<Value>) {
        None => Value::Null,
        Some(Ok(value @ Value::Object(_))) => value,
        Some(_) => return fail("--params must be a JSON object, e.g. '{\"iterations\": 1}'"),
    };
    let request = CreateBenchmark {
        tasks: args.tasks,
        name: args.name,
        params,
    };
    match client.create_benchmark(&request).await {
        Ok(started) => eprintln!(
            "runboard bench: started {} ({} tasks)",
            started.name, started.total_tasks
        ),
        Err(error) => return fail(&explain(&error)),
    }
    follow(&args.follow, false).await
}

/// Follows the stream; exit 0 when a benchmark finished, 1 when it stopped or the stream failed.
async fn follow(args: &FollowArgs, forever: bool) -> ExitCode {
    let client = match args.remote.client() {
        Ok(client) => client,
        Err(message) => return fail(&message),
    };
    let url = client.benchmark_stream_url(args.interval);
    // A check interval may be longer than the keep-alive, up to 60 s.
    let options = StreamOptions {
        idle_timeout: Some(idle_timeout_for(
            Duration::from_secs(args.interval).max(KEEP_ALIVE_INTERVAL),
        )),
        ..StreamOptions::default()
    };
    let mut source = match client.stream::<BenchmarkEvent>(&url, &options) {
        Ok(source) => source,
        Err(error) => return fail(&error.to_string()),
    };
    let mut out = if args.json {
        Output::Json(JsonLines::new())
    } else {
        Output::Text(TextOutput::new(std::io::stderr().is_terminal()))
    };
    let mut view = BenchmarkTally::default();
    let mut waiting_said = false;
    // A new stream sends the status first and the progress after the results: the end is only
    // known once both came.
    let mut progress_seen = false;
    while let Some(update) = source.next().await {
        let (decoded, event) = match update {
            StreamUpdate::Event { decoded, raw } => (decoded, raw),
            StreamUpdate::Undecodable(error) => {
                eprintln!("runboard bench: warning: skipped an event: {error}");
                continue;
            }
            StreamUpdate::State(ConnectionState::Failed(error)) => {
                out.clear_bar();
                return fail(&error.to_string());
            }
            StreamUpdate::State(ConnectionState::Closed) => break,
            StreamUpdate::State(state @ ConnectionState::Reconnecting { .. }) => {
                out.clear_bar();
                eprintln!("runboard bench: {state}");
                continue;
            }
            StreamUpdate::State(_) | StreamUpdate::TooLarge { .. } => continue,
        };
        if let Output::Json(lines) = &mut out {
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            if !lines.write(&serde_json::json!({"event": event.event, "data": data})) {
                return ExitCode::SUCCESS;
            }
        }
        progress_seen |= matches!(decoded, BenchmarkEvent::Progress(_));
        let said = match &decoded {
            BenchmarkEvent::TaskComplete(result) => Some(result_line(result)),
            BenchmarkEvent::Error(error) => Some(format!("error: {}", error.message)),
            _ => None,
        };
        view.apply(decoded);
        if let Output::Text(text) = &mut out {
            text.show(&view, said.as_deref(), &mut waiting_said);
        }
        if view.ended()
            && progress_seen
            && view.progress.tasks_completed <= view.results.len() as u64
        {
            out.clear_bar();
            let summary = summary_line(&view);
            if let Output::Text(text) = &mut out {
                text.line(&summary);
            } else {
                eprintln!("{summary}");
            }
            if !forever {
                return if view.phase() == phase::FINISHED {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                };
            }
            waiting_said = false;
        }
    }
    out.clear_bar();
    fail("the benchmark stream ended")
}

fn result_line(result: &TaskComplete) -> String {
    let mark = if result.success { "pass" } else { "FAIL" };
    let took = result
        .duration_secs
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(|secs| format!(" in {}", duration(Duration::from_secs_f64(secs))))
        .unwrap_or_default();
    format!(
        "{mark}  {}  score {:.2}{took}",
        result.task_id, result.score
    )
}

fn summary_line(view: &BenchmarkTally) -> String {
    let name = view
        .status
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_else(|| "benchmark".into());
    let rate = view
        .pass_rate()
        .map_or_else(String::new, |rate| format!(" ({:.0}%)", rate * 100.0));
    let mean = view
        .mean_score()
        .map_or_else(String::new, |mean| format!(", mean score {mean:.2}"));
    format!(
        "{name} {}: {}/{} passed{rate}{mean}",
        view.phase(),
        view.passed(),
        view.results.len()
    )
}

/// The progress bar's one line.
fn bar_line(view: &BenchmarkTally) -> String {
    let progress = &view.progress;
    let fraction = view.fraction().unwrap_or(0.0);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )] // 0..=BAR_WIDTH.
    let filled = ((fraction * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
    let mut line = format!(
        "[{}{}] {}/{} {:>3.0}%",
        "█".repeat(filled),
        "░".repeat(BAR_WIDTH - filled),
        progress.tasks_completed,
        progress.total_tasks,
        fraction * 100.0
    );
    if let Some(task) = &progress.current_task {
        line.push_str("  ");
        line.push_str(task);
        if let Some(step) = progress.current_step {
            let _ = write!(line, " step {step}");
        }
    }
    if let Some(eta) = view.eta_secs() {
        let _ = write!(line, "  ETA {}", duration(Duration::from_secs_f64(eta)));
    }
    line
}

enum Output {
    Json(JsonLines),
    Text(TextOutput),
}

impl Output {
    fn clear_bar(&mut self) {
        if let Self::Text(text) = self {
            text.clear_bar();
        }
    }
}

/// Human output on stderr: in a terminal a bar redrawn in place with lines above it; piped,
/// a line whenever the bar's text changes.
struct TextOutput {
    terminal: bool,
    bar_shown: bool,
    last_bar: String,
}

impl TextOutput {
    fn new(terminal: bool) -> Self {
        Self {
            terminal,
            bar_shown: false,
            last_bar: String::new(),
        }
    }

    /// Shows a line the event said (if any), a note when nothing runs, and the bar.
    fn show(&mut self, view: &BenchmarkTally, said: Option<&str>, waiting_said: &mut bool) {
        if let Some(line) = said {
            self.line(line);
        }
        if !view.running() && !view.ended() && !*waiting_said {
            *waiting_said = true;
            self.line(match view.phase() {
                phase::WAITING => "waiting for the benchmark log to appear",
                _ => "no benchmark is running; waiting for one to start",
            });
        }
        self.bar(view);
    }

    fn line(&mut self, text: &str) {
        self.clear_bar();
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{text}");
        if self.terminal && !self.last_bar.is_empty() {
            let _ = write!(stderr, "{}", self.last_bar);
            self.bar_shown = true;
        }
        let _ = stderr.flush();
    }

    fn bar(&mut self, view: &BenchmarkTally) {
        if view.progress.total_tasks == 0 {
            return;
        }
        let line = bar_line(view);
        if line == self.last_bar && (self.bar_shown || !self.terminal) {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[2K{line}");
            self.bar_shown = true;
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
        self.last_bar = line;
    }

    fn clear_bar(&mut self) {
        if self.terminal && self.bar_shown {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
            self.bar_shown = false;
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("runboard bench: error: {message}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;
    use runboard_api::{BENCHMARK_STATUS_TYPE, BenchmarkProgress, BenchmarkStatus};

    #[test]
    fn the_bar_shows_counts_task_step_and_eta() {
        let mut view = BenchmarkTally::default();
        view.apply(BenchmarkEvent::Status(BenchmarkStatus {
            kind: BENCHMARK_STATUS_TYPE.into(),
            connected: true,
            phase: phase::RUNNING.into(),
            running: true,
            source: None,
            name: Some("smoke".into()),
            benchmark: Some(1),
            log: None,
        }));
        view.apply(BenchmarkEvent::TaskComplete(TaskComplete {
            task_id: "task_001".into(),
            success: true,
            score: 0.9,
            duration_secs: Some(12.0),
            run_id: None,
        }));
        view.apply(BenchmarkEvent::Progress(BenchmarkProgress {
            tasks_completed: 1,
            total_tasks: 4,
            current_task: Some("task_002".into()),
            current_step: Some(7),
        }));
        let line = bar_line(&view);
        assert!(
            line.starts_with(&format!("[{}{}] 1/4  25%", "█".repeat(7), "░".repeat(21))),
            "{line}"
        );
        assert!(line.ends_with("task_002 step 7  ETA 36.0 s"), "{line}");
        assert_eq!(
            result_line(&view.results[0]),
            "pass  task_001  score 0.90 in 12.0 s"
        );
        assert_eq!(
            summary_line(&view),
            "smoke running: 1/1 passed (100%), mean score 0.90"
        );
    }
}
