//! `runboard tail ID`: follow one run. People get its narration and a final status line
//! (no JSON in this view); `--json` gets every structured event as a JSON line.
//! `runboard tail --worker NAME` follows every call or run of one worker instead
//! (`tail_worker`).
//! Reconnects and resumes after `Last-Event-ID`, so a dropped connection or a server restart
//! neither loses nor repeats a line.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::format::between;
use super::output::{JsonEvent, JsonLines, print_lines, tail_failed};
use super::remote::RemoteArgs;
use runboard_api::units::duration;
use runboard_api::{ApiClient, RunEvent, RunStatus, StreamOptions, StreamUpdate};
use runboard_sse::{ConnectionState, SseError};

/// Arguments of `runboard tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The run id
    #[arg(required_unless_present = "worker", conflicts_with = "worker")]
    pub(super) run_id: Option<String>,
    /// Follow every call or run of this worker (as `GET /api/workers` names it) instead of
    /// one run, each line led by its run id, until interrupted
    #[arg(long, value_name = "NAME")]
    pub(super) worker: Option<String>,
    /// Print each structured event (everything but narration) as one JSON line
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) remote: RemoteArgs,
}

/// Follows the run to its end. Exit 0 when it completed, 1 when it failed or was cancelled or
/// the stream could not be followed.
pub async fn run(args: TailArgs) -> ExitCode {
    let client = match args.remote.client() {
        Ok(client) => client,
        Err(message) => return fail(&message),
    };
    let Some(run_id) = args.run_id else {
        return fail("give a run id or --worker NAME");
    };
    let url = client.run_stream_url(&run_id);
    let mut source = match client.stream::<RunEvent>(&url, &StreamOptions::default()) {
        Ok(source) => source,
        Err(error) => return fail(&error.to_string()),
    };
    let mut json = args.json.then(JsonLines::new);
    let mut reconnected = false;
    while let Some(update) = source.next().await {
        match update {
            StreamUpdate::Event {
                decoded,
                raw: event,
            } => match decoded {
                RunEvent::Narration(line) => {
                    if json.is_none() && !print_lines(&line.formatted) {
                        return ExitCode::SUCCESS;
                    }
                }
                decoded => {
                    if let Some(out) = json.as_mut() {
                        let line = JsonEvent {
                            event: &event.event,
                            data: serde_json::from_str(&event.data).unwrap_or(Value::Null),
                            id: &event.id,
                        };
                        if !out.write(&line) {
                            return ExitCode::SUCCESS;
                        }
                    }
                    if let RunEvent::StreamEnd(end) = decoded {
                        return finish(&client, &run_id, Some(end.status), args.json).await;
                    }
                }
            },
            StreamUpdate::Undecodable(error) => {
                eprintln!("runboard tail: warning: skipped an event: {error}");
            }
            StreamUpdate::State(ConnectionState::Open) if reconnected => {
                eprintln!(
                    "runboard tail: resumed after event {:?}",
                    source.last_event_id()
                );
            }
            StreamUpdate::State(state @ ConnectionState::Reconnecting { .. }) => {
                reconnected = true;
                eprintln!("runboard tail: {state}");
            }
            // 204: the server has nothing more for us; the run is over.
            StreamUpdate::State(ConnectionState::Closed) => {
                return finish(&client, &run_id, None, args.json).await;
            }
            StreamUpdate::State(ConnectionState::Failed(error)) => {
                let hint = match &error {
                    SseError::Status { status: 404, .. } => {
                        " (no such run: `runboard runs` lists them)"
                    }
                    SseError::Status { status: 401, .. } => {
                        " (this server needs a token: pass --token or set RUNBOARD_TOKEN)"
                    }
                    _ => "",
                };
                return fail(&format!("{error}{hint}"));
            }
            StreamUpdate::State(_) | StreamUpdate::TooLarge { .. } => {}
        }
    }
    ExitCode::FAILURE
}

/// Prints the final status line and picks the exit code.
async fn finish(
    client: &ApiClient,
    run_id: &str,
    status: Option<RunStatus>,
    json: bool,
) -> ExitCode {
    let summary = client.run(run_id).await.ok().map(|detail| detail.summary);
    let status = status
        .or_else(|| summary.as_ref().map(|s| s.status))
        .unwrap_or(RunStatus::Unknown);
    let mut line = format!("run {run_id} {status}");
    if let Some(summary) = &summary {
        let _ = write!(line, ": {} tokens", summary.tokens_out);
        if let Some(took) = between(
            summary.started_at.as_deref(),
            summary.finished_at.as_deref(),
        ) {
            let _ = write!(line, " in {}", duration(took));
        }
    }
    if json {
        eprintln!("{line}");
    } else {
        print_lines(&line);
    }
    if status == RunStatus::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fail(message: &str) -> ExitCode {
    tail_failed(message)
}
