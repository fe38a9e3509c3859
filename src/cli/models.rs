//! `runboard models`: start a models job and follow it. People get its narration (a table
//! among it, no JSON); `--json` gets only the `model_list` payload (the two channels: narration for people, data for programs).

use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use super::output::{print_lines, print_pretty};
use super::remote::{RemoteArgs, explain};
use runboard_api::{
    CreateRun, MODEL_LIST_ACTION, MODELS_JOB, RunEvent, RunMode, RunStatus, StreamOptions,
    StreamUpdate,
};
use runboard_sse::ConnectionState;

/// Arguments of `runboard models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Print only the model list, as the JSON the job's data event carries
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Runs the job to its end: exit 0 when it finished with a model list, 1 otherwise.
pub async fn run(args: ModelsArgs) -> ExitCode {
    let client = match args.remote.client() {
        Ok(client) => client,
        Err(message) => return fail(&message),
    };
    let request = CreateRun {
        task: MODELS_JOB.to_owned(),
        mode: RunMode::Queued,
        params: json!({ "job": MODELS_JOB }),
    };
    let run_id = match client.create_run(&request).await {
        Ok(detail) => detail.summary.run_id,
        Err(error) => return fail(&explain(&error)),
    };
    let url = client.run_stream_url(&run_id);
    let mut source = match client.stream::<RunEvent>(&url, &StreamOptions::default()) {
        Ok(source) => source,
        Err(error) => return fail(&error.to_string()),
    };
    let mut payload: Option<Value> = None;
    while let Some(update) = source.next().await {
        match update {
            StreamUpdate::Event { decoded, .. } => match decoded {
                // People get the narration (printed in the guard); a closed stdout (`| head`)
                // ends the command.
                RunEvent::Narration(line) if !args.json && !print_lines(&line.formatted) => {
                    return ExitCode::SUCCESS;
                }
                RunEvent::Data(data) if data.action == MODEL_LIST_ACTION => {
                    payload = Some(data.payload);
                }
                RunEvent::Error(error) => return fail(&error.message),
                RunEvent::StreamEnd(end) if end.status != RunStatus::Completed => {
                    return fail(&format!("the models job {run_id} ended {}", end.status));
                }
                // Older servers end a job with `done`; this API ends every run with `stream_end`.
                RunEvent::Done { .. } | RunEvent::StreamEnd(_) => {
                    return finish(payload, args.json);
                }
                _ => {}
            },
            StreamUpdate::Undecodable(error) => {
                eprintln!("runboard models: warning: skipped an event: {error}");
            }
            StreamUpdate::State(ConnectionState::Closed) => return finish(payload, args.json),
            StreamUpdate::State(ConnectionState::Failed(error)) => return fail(&error.to_string()),
            StreamUpdate::State(_) | StreamUpdate::TooLarge { .. } => {}
        }
    }
    finish(payload, args.json)
}

fn finish(payload: Option<Value>, json: bool) -> ExitCode {
    match payload {
        Some(payload) => {
            if json {
                print_pretty(&payload);
            }
            ExitCode::SUCCESS
        }
        None => fail("the job ended without a model list"),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("runboard models: error: {message}");
    ExitCode::FAILURE
}
