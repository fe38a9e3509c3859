//! `runboard runs` and `runboard show ID`: tables and event chains for people, JSON for scripts.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::format::{between, one_line, time_of_day};
use super::output::{print_lines, print_pretty};
use super::remote::{RemoteArgs, explain};
use runboard_api::units::duration;
use runboard_api::{RunDetail, RunQuery, RunStatus, RunSummary, StoredEvent};

/// Arguments of `runboard runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// How many runs, newest first
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Only runs with this status (queued, running, completed, failed, cancelled)
    #[arg(long, value_parser = parse_status)]
    status: Option<RunStatus>,
    /// Only runs older than this run id (paging)
    #[arg(long, value_name = "RUN_ID")]
    before: Option<String>,
    /// Only runs made by this worker
    #[arg(long, value_name = "NAME")]
    worker: Option<String>,
    /// Print the API's JSON instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Arguments of `runboard show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run id
    run_id: String,
    /// Print the API's JSON instead of the chain
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

fn parse_status(text: &str) -> Result<RunStatus, String> {
    RunStatus::parse(text).ok_or_else(|| {
        format!("expected queued, running, completed, failed or cancelled, not {text:?}")
    })
}

/// Lists runs.
pub async fn runs(args: RunsArgs) -> ExitCode {
    let client = match args.remote.client() {
        Ok(client) => client,
        Err(message) => return fail("runs", &message),
    };
    let query = RunQuery {
        limit: Some(args.limit),
        before: args.before.clone(),
        status: args.status,
        worker: args.worker.clone(),
    };
    let list = match client.list_runs(&query).await {
        Ok(list) => list,
        Err(error) => return fail("runs", &explain(&error)),
    };
    if args.json {
        print_pretty(&list);
        return ExitCode::SUCCESS;
    }
    if list.runs.is_empty() {
        print_lines("no runs yet: `runboard launch \"a task\" -n 4` starts some");
        return ExitCode::SUCCESS;
    }
    let mut lines = vec![format!(
        "{:<18} {:<10} {:>8} {:<11} {:>10}  TASK",
        "RUN", "STATUS", "TOKENS", "AGENT", "TIME"
    )];
    for run in &list.runs {
        lines.push(format!(
            "{:<18} {:<10} {:>8} {:<11} {:>10}  {}",
            run.run_id,
            run.status,
            run.tokens_out,
            run.agent.as_deref().unwrap_or("-"),
            run_time(run),
            one_line(&run.task, 40)
        ));
    }
    if let Some(next) = &list.next_before {
        lines.push(format!("more: runboard runs --before {next}"));
    }
    print_lines(&lines.join("\n"));
    ExitCode::SUCCESS
}

/// How long a run took, or has been going.
fn run_time(run: &RunSummary) -> String {
    let now = runboard_api::clock::now_rfc3339();
    let end = run.finished_at.as_deref().unwrap_or(&now);
    between(run.started_at.as_deref(), Some(end)).map_or_else(|| "-".into(), duration)
}

/// Shows one run and its chain.
pub async fn show(args: ShowArgs) -> ExitCode {
    let client = match args.remote.client() {
        Ok(client) => client,
        Err(message) => return fail("show", &message),
    };
    let detail = match client.run(&args.run_id).await {
        Ok(detail) => detail,
        Err(error) => return fail("show", &explain(&error)),
    };
    if args.json {
        print_pretty(&detail);
    } else {
        print_lines(&chain(&detail));
    }
    ExitCode::SUCCESS
}

/// The run's header and its event chain, one event a line.
fn chain(detail: &RunDetail) -> String {
    let run = &detail.summary;
    let mut lines = vec![
        format!("run      {}", run.run_id),
        format!("task     {}", one_line(&run.task, 100)),
        format!("status   {}", run.status),
        format!("tokens   {}", run.tokens_out),
    ];
    if let Some(created) = &run.created_at {
        lines.push(format!("created  {created}"));
    }
    if run.started_at.is_some() {
        lines.push(format!("ran for  {}", run_time(run)));
    }
    lines.push(String::new());
    for event in &detail.events {
        let at = event.ts.as_deref().map(time_of_day).unwrap_or_default();
        lines.push(format!("{:>5}  {at:<12}  {}", event.seq, describe(event)));
    }
    lines.join("\n")
}

/// One event of a chain on one line: agent and snippet for progress, status and errors set
/// apart with a marker.
fn describe(event: &StoredEvent) -> String {
    let data = &event.data;
    let text = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or("");
    match event.event.as_str() {
        "run_created" => format!("· created: {}", one_line(text("task"), 60)),
        "status" => {
            let message = text("message");
            if message.is_empty() {
                format!("● status {}", text("status"))
            } else {
                format!("● status {}: {}", text("status"), one_line(message, 80))
            }
        }
        "node_update" => format!(
            "  {:<10} it {:<2} {:>6} tok  {}",
            text("agent"),
            data.get("iteration").and_then(Value::as_u64).unwrap_or(0),
            data.get("tokens_out").and_then(Value::as_u64).unwrap_or(0),
            one_line(text("snippet"), 70)
        ),
        "narration" => format!("» {}", one_line(text("formatted"), 100)),
        "data" => format!(
            "  data {}: {}",
            text("action"),
            one_line(
                &data
                    .get("payload")
                    .map(Value::to_string)
                    .unwrap_or_default(),
                80
            )
        ),
        "error" => format!("✗ error: {}", one_line(text("message"), 100)),
        "stream_end" => format!("■ end: {}", text("status")),
        other => format!("  {other}: {}", one_line(&data.to_string(), 80)),
    }
}

fn fail(command: &str, message: &str) -> ExitCode {
    eprintln!("runboard {command}: error: {message}");
    ExitCode::FAILURE
}
