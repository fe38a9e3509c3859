//! `runboard tail --worker NAME`: follow every call or run of one worker as it happens, on the
//! server's `/api/events`: its runs in flight when it starts, and each new one whose
//! `run_created` names the worker. People get each run's narration led by its id and a line
//! when it ends; `--json` gets every structured event of those runs as a JSON line. Runs until
//! interrupted (a worker has no end); reconnects resume after `Last-Event-ID`.

use std::collections::HashSet;
use std::process::ExitCode;

use serde_json::Value;

use super::output::{JsonEvent, tail_failed as fail};
use super::output::{JsonLines, print_lines};
use super::tail::TailArgs;
use runboard_api::{
    ApiClient, Feature, RunEvent, RunQuery, RunStatus, StreamOptions, StreamUpdate,
};
use runboard_sse::ConnectionState;

/// Follows the worker of `--worker` until interrupted, or until output is closed (exit 0).
pub async fn run(args: TailArgs) -> ExitCode {
    let client = match args.remote.client() {
        Ok(client) => client,
        Err(message) => return fail(&message),
    };
    let Some(worker) = args.worker.as_deref() else {
        return fail("give a run id or --worker NAME");
    };
    follow(&client, worker, args.json).await
}

async fn follow(client: &ApiClient, worker: &str, json: bool) -> ExitCode {
    // The head first, then the runs in flight: a run created in between is on the stream.
    let head = match client.health().await {
        Ok(health) if health.has(Feature::Workers) && health.has(Feature::Events) => {
            health.events_head
        }
        Ok(_) => {
            return fail("this server does not keep workers (it offers no /api/workers)");
        }
        Err(error) => return fail(&error.to_string()),
    };
    let mut runs = match runs_in_flight(client, worker).await {
        Ok(runs) => runs,
        Err(message) => return fail(&message),
    };
    if !json {
        let known = if runs.is_empty() {
            "none in flight".to_owned()
        } else {
            format!("{} in flight", runs.len())
        };
        print_lines(&format!("following worker {worker} ({known})"));
    }
    let url = client.events_url(&[]);
    let options = StreamOptions {
        after: head.map(|head| head.to_string()),
        ..StreamOptions::default()
    };
    let mut source = match client.stream::<RunEvent>(&url, &options) {
        Ok(source) => source,
        Err(error) => return fail(&error.to_string()),
    };
    let mut out = json.then(JsonLines::new);
    while let Some(update) = source.next().await {
        match update {
            StreamUpdate::Event { decoded, raw } => {
                let run_id = decoded.run_id().to_owned();
                if let RunEvent::RunCreated(summary) = &decoded
                    && summary.worker.as_deref() == Some(worker)
                {
                    runs.insert(run_id.clone());
                }
                if !runs.contains(&run_id) {
                    continue;
                }
                let printed = match (&decoded, out.as_mut()) {
                    (RunEvent::Narration(_), Some(_)) => true,
                    (_, Some(out)) => out.write(&JsonEvent {
                        event: &raw.event,
                        data: serde_json::from_str(&raw.data).unwrap_or(Value::Null),
                        id: &raw.id,
                    }),
                    (decoded, None) => {
                        text_of(&run_id, decoded).is_none_or(|text| print_lines(&text))
                    }
                };
                if !printed {
                    return ExitCode::SUCCESS;
                }
                if let RunEvent::StreamEnd(_) = decoded {
                    runs.remove(&run_id);
                }
            }
            StreamUpdate::Undecodable(error) => {
                eprintln!("runboard tail: warning: skipped an event: {error}");
            }
            StreamUpdate::State(state @ ConnectionState::Reconnecting { .. }) => {
                eprintln!("runboard tail: {state}");
            }
            StreamUpdate::State(ConnectionState::Failed(error)) => {
                return fail(&error.to_string());
            }
            StreamUpdate::State(_) | StreamUpdate::TooLarge { .. } => {}
        }
    }
    ExitCode::FAILURE
}

/// The worker's runs queued or running now.
async fn runs_in_flight(client: &ApiClient, worker: &str) -> Result<HashSet<String>, String> {
    let mut runs = HashSet::new();
    for status in [RunStatus::Running, RunStatus::Queued] {
        let query = RunQuery {
            status: Some(status),
            worker: Some(worker.to_owned()),
            limit: Some(1000),
            ..RunQuery::default()
        };
        let list = client.list_runs(&query).await.map_err(|e| e.to_string())?;
        runs.extend(list.runs.into_iter().map(|run| run.run_id));
    }
    Ok(runs)
}

/// What people read of one event: narration, a run's start and end; nothing of the rest.
fn text_of(run_id: &str, event: &RunEvent) -> Option<String> {
    match event {
        RunEvent::Narration(line) => Some(
            line.formatted
                .lines()
                .map(|text| format!("[{run_id}] {text}"))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        RunEvent::RunCreated(summary) => Some(format!("[{run_id}] new: {}", summary.task)),
        RunEvent::StreamEnd(end) => Some(format!("[{run_id}] {}", end.status)),
        _ => None,
    }
}
