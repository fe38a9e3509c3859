//! `runboard launch TASK -n N`: submit runs, staggered, and print their ids.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::Value;

use super::remote::{RemoteArgs, explain};
use runboard_api::{CreateRun, RunMode};

/// How runs are submitted.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Return at once; runs wait for a worker slot
    Queued,
    /// Wait for each run to finish before submitting the next
    Inline,
}

/// Arguments of `runboard launch`.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// What to generate
    task: String,
    /// How many runs
    #[arg(short = 'n', long = "count", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    count: u32,
    /// Milliseconds between submissions, so a batch does not hit the server at once
    #[arg(long, default_value_t = 300, value_name = "MS")]
    stagger_ms: u64,
    /// Queued (default) or inline
    #[arg(long, value_enum, default_value_t = Mode::Queued)]
    mode: Mode,
    /// Generator parameters as a JSON object, e.g. '{"iterations": 2}'
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Submits the runs; prints each id on its own line as soon as it exists.
pub async fn run(args: LaunchArgs) -> ExitCode {
    let client = match args.remote.client() {
        Ok(client) => client,
        Err(message) => return fail(&message),
    };
    let params = match args.params.as_deref().map(serde_json::from_str::<Value>) {
        None => Value::Object(serde_json::Map::new()),
        Some(Ok(value @ Value::Object(_))) => value,
        Some(Ok(_)) => return fail("--params must be a JSON object, e.g. '{\"iterations\": 2}'"),
        Some(Err(error)) => return fail(&format!("--params is not valid JSON: {error}")),
    };
    let request = CreateRun {
        task: args.task.clone(),
        mode: match args.mode {
            Mode::Queued => RunMode::Queued,
            Mode::Inline => RunMode::Inline,
        },
        params,
    };
    let mut stdout = std::io::stdout().lock();
    for index in 0..args.count {
        if index > 0 && args.stagger_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.stagger_ms)).await;
        }
        match client.create_run(&request).await {
            Ok(run) => {
                if writeln!(stdout, "{}", run.summary.run_id)
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return ExitCode::SUCCESS;
                }
            }
            Err(error) => {
                let launched = if index == 0 {
                    String::new()
                } else {
                    format!(" ({index} of {} launched before it)", args.count)
                };
                return fail(&format!("{}{launched}", explain(&error)));
            }
        }
    }
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("runboard launch: error: {message}");
    ExitCode::FAILURE
}
