//! `runboard record --api URL -o FILE`: what a server's runs do, written as a recording (one
//! JSON object per line) that `runboard --replay` and `runboard serve --replay` play back.
//!
//! It follows `/api/events` from its head and, so that runs already going are included, takes
//! each run that was queued or running at the start from its detail (its chain so far) and then
//! its own stream from the next position. Such a run is skipped on `/api/events`, and its own
//! stream's ids (positions within the run) drop anything a reconnect sends twice. Every line is
//! written whole and flushed, so the file is valid at every moment.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use std::time::Instant;
use tokio::sync::mpsc;

use super::remote::{RemoteArgs, explain};
use runboard_api::clock::now_rfc3339;
use runboard_api::{
    ApiClient, Feature, RecordedEvent, RecordingHeader, RunEvent, RunQuery, RunStatus, RunSummary,
    StreamOptions, StreamUpdate,
};
use runboard_sse::ConnectionState;

/// Arguments of `runboard record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// The file to write (replaced if it exists)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Stop after this many seconds (default: until Ctrl-C)
    #[arg(long, value_name = "SECS", value_parser = super::seconds::positive_secs)]
    duration: Option<f64>,
}

/// Runs at most this many already-going runs are picked up at the start.
const GOING_RUNS_LIMIT: u32 = 500;

/// An event as received, and from which stream.
struct Received {
    at: Instant,
    /// `None`: from `/api/events`; else the run whose own stream it came on, with its position.
    own_stream: Option<(String, u64)>,
    event: String,
    data: serde_json::Value,
}

/// Runs `runboard record` until Ctrl-C or `--duration`.
pub async fn run(args: RecordArgs) -> ExitCode {
    match record(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("runboard record: error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn record(args: RecordArgs) -> Result<(), String> {
    let client = args.remote.client()?;
    let health = client.health().await.map_err(|e| explain(&e))?;
    if !health.has(Feature::Events) {
        return Err(format!(
            "{} offers no /api/events, which recording follows",
            args.remote.api
        ));
    }
    let started = Instant::now();
    let mut out = Lines::create(&args.output)?;
    let header = RecordingHeader::new(
        &args.remote.api,
        &now_rfc3339(),
        &format!("runboard {}", env!("CARGO_PKG_VERSION")),
    );
    out.line(&serde_json::to_string(&header).unwrap_or_default())?;

    let outage = Outage::default();
    let (going, mut received) =
        start_following(&client, health.events_head, outage.clone()).await?;
    eprintln!(
        "runboard record: recording {} into {} ({} runs already going); {}",
        args.remote.api,
        args.output.display(),
        going.len(),
        args.duration.map_or_else(
            || "Ctrl-C stops".to_owned(),
            |secs| format!("stops after {secs} s or at Ctrl-C")
        )
    );
    let mut seen = Seen {
        going,
        ..Seen::default()
    };
    let stop = stop_signal(args.duration);
    tokio::pin!(stop);
    loop {
        let item = tokio::select! {
            () = &mut stop => break,
            item = received.recv() => item,
        };
        let Some(item) = item else {
            break;
        };
        let run_id = item
            .data
            .get("run_id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned();
        if !seen.is_new(&run_id, item.own_stream.as_ref()) {
            continue;
        }
        let event = RecordedEvent {
            // Milliseconds are plenty and keep the file small.
            t: (item.at.duration_since(started).as_secs_f64() * 1000.0).round() / 1000.0,
            event: item.event,
            data: item.data,
        };
        out.line(&event.to_line())?;
        seen.written(run_id);
    }
    out.flush()?;
    let summary = format!(
        "{} events of {} runs over {:.1} s to {}",
        seen.events,
        seen.runs.len(),
        started.elapsed().as_secs_f64(),
        args.output.display()
    );
    outage.judge(&args.remote.api, started, &summary)
}

/// Resolves at Ctrl-C, or after `duration` seconds when given.
async fn stop_signal(duration: Option<f64>) {
    let deadline = duration.map(|secs| tokio::time::Instant::now() + Duration::from_secs_f64(secs));
    match deadline {
        Some(deadline) => tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// What has been written, so an event that reaches the recorder twice (on `/api/events` and on
/// a run's own stream while it catches up) is written once.
#[derive(Debug, Default)]
struct Seen {
    /// Runs already going when recording began: followed on their own streams only.
    going: HashSet<String>,
    /// The last position written of each run followed on its own stream.
    positions: HashMap<String, u64>,
    /// Runs with an event written.
    runs: HashSet<String>,
    /// Events written.
    events: u64,
}

impl Seen {
    /// Whether an event of `run_id` (from its own stream at a position, or from
    /// `/api/events`) is not written yet.
    fn is_new(&mut self, run_id: &str, own_stream: Option<&(String, u64)>) -> bool {
        match own_stream {
            None => !self.going.contains(run_id),
            Some((run, position)) => {
                let last = self.positions.entry(run.clone()).or_default();
                if *position != 0 && *position <= *last {
                    return false;
                }
                *last = *position;
                true
            }
        }
    }

    /// An event of `run_id` was written.
    fn written(&mut self, run_id: String) {
        self.events += 1;
        if !run_id.is_empty() {
            self.runs.insert(run_id);
        }
    }
}

/// Since when the server's event stream has been lost, shared with the task following it.
#[derive(Debug, Clone, Default)]
struct Outage(std::sync::Arc<std::sync::Mutex<Option<Instant>>>);

impl Outage {
    fn since(&self) -> Option<Instant> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The recording's end: a summary, or, when the server is still out of reach, a failure
    /// that says since when, so no script takes it for the whole run of the fleet.
    fn judge(&self, api: &str, started: Instant, summary: &str) -> Result<(), String> {
        if let Some(since) = self.since() {
            return Err(format!(
                "{api} could not be reached for the last {:.1} s of the recording (since \
                 {:.1} s); wrote the {summary}, which replays as far as it goes",
                since.elapsed().as_secs_f64(),
                since.duration_since(started).as_secs_f64()
            ));
        }
        eprintln!("runboard record: wrote {summary}");
        Ok(())
    }

    /// The stream's state changed: lost (reconnecting) or open again. Tells the person once
    /// each way.
    fn update(&self, state: &ConnectionState) {
        let mut since = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match state {
            ConnectionState::Open if since.take().is_some() => {
                eprintln!("runboard record: reconnected; resumed where the stream broke off");
            }
            ConnectionState::Reconnecting { .. } if since.is_none() => {
                *since = Some(Instant::now());
                eprintln!(
                    "runboard record: lost the server's event stream; reconnecting (nothing is \
                     lost if it comes back)"
                );
            }
            _ => {}
        }
    }
}

/// Follows `/api/events` from `events_head`, then the runs already going (their chains so far,
/// then their own streams); returns those runs' ids and where everything arrives.
async fn start_following(
    client: &ApiClient,
    events_head: Option<u64>,
    outage: Outage,
) -> Result<(HashSet<String>, mpsc::UnboundedReceiver<Received>), String> {
    // Unbounded: the chains of runs already going are queued here before anything is written.
    let (sender, received) = mpsc::unbounded_channel::<Received>();
    let (open_sender, open) = tokio::sync::oneshot::channel();
    let head = events_head.map(|head| head.to_string());
    tokio::spawn(follow(
        client.clone(),
        client.events_url(&[]),
        head,
        None,
        sender.clone(),
        (Some(open_sender), Some(outage)),
    ));
    // Listen first, then look: a run that starts in between is in both, and its own stream
    // (below) is the one kept.
    tokio::time::timeout(Duration::from_secs(30), open)
        .await
        .map_err(|_| "the event stream did not open within 30 s".to_owned())?
        .map_err(|_| "the event stream ended before it opened".to_owned())?;
    // Runs already going, oldest first: their chains so far, as their details give them,
    // then each on its own stream from the next position.
    let going = going_runs(client).await?;
    for run in &going {
        let detail = client.run(&run.run_id).await.map_err(|e| explain(&e))?;
        let mut last = 0;
        for stored in detail.events {
            last = stored.seq;
            let received = Received {
                at: Instant::now(),
                own_stream: Some((run.run_id.clone(), stored.seq)),
                event: stored.event,
                data: stored.data,
            };
            if sender.send(received).is_err() {
                return Err("the recording stopped".into());
            }
        }
        let url = client.run_stream_url(&run.run_id);
        tokio::spawn(follow(
            client.clone(),
            url,
            Some(last.to_string()),
            Some(run.run_id.clone()),
            sender.clone(),
            (None, None),
        ));
    }
    let going: HashSet<String> = going.into_iter().map(|run| run.run_id).collect();
    Ok((going, received))
}

/// The runs queued or running now, oldest first.
async fn going_runs(client: &ApiClient) -> Result<Vec<RunSummary>, String> {
    let mut going = Vec::new();
    for status in [RunStatus::Running, RunStatus::Queued] {
        let query = RunQuery {
            limit: Some(GOING_RUNS_LIMIT),
            status: Some(status),
            ..RunQuery::default()
        };
        let list = client.list_runs(&query).await.map_err(|e| explain(&e))?;
        going.extend(list.runs);
    }
    // Newest first per status; the replay creates them in the order they were created.
    going.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    going.dedup_by(|a, b| a.run_id == b.run_id);
    Ok(going)
}

/// Follows one stream, sending what it receives with the time it came.
async fn follow(
    client: ApiClient,
    url: String,
    after: Option<String>,
    run: Option<String>,
    sender: mpsc::UnboundedSender<Received>,
    (mut opened, outage): (Option<tokio::sync::oneshot::Sender<()>>, Option<Outage>),
) {
    let options = StreamOptions {
        after,
        ..StreamOptions::default()
    };
    let mut stream = match client.stream::<RunEvent>(&url, &options) {
        Ok(stream) => stream,
        Err(error) => {
            eprintln!("runboard record: could not follow {url}: {error}");
            return;
        }
    };
    while let Some(update) = stream.next().await {
        match update {
            StreamUpdate::Event { decoded, raw } => {
                let mut data = decoded.to_json();
                if let (Some(run_id), Some(object)) = (&run, data.as_object_mut()) {
                    object
                        .entry("run_id")
                        .or_insert_with(|| serde_json::Value::String(run_id.clone()));
                }
                let received = Received {
                    at: Instant::now(),
                    own_stream: run
                        .as_ref()
                        .map(|id| (id.clone(), raw.id.parse().unwrap_or(0))),
                    event: decoded.name().to_owned(),
                    data,
                };
                if sender.send(received).is_err() {
                    return;
                }
            }
            StreamUpdate::State(state) => {
                if let Some(outage) = &outage {
                    outage.update(&state);
                }
                if state == ConnectionState::Open
                    && let Some(opened) = opened.take()
                {
                    let _ = opened.send(());
                }
            }
            StreamUpdate::Undecodable(error) => {
                eprintln!("runboard record: skipped an event: {error}");
            }
            StreamUpdate::TooLarge { limit_bytes } => {
                eprintln!("runboard record: skipped an event larger than {limit_bytes} bytes");
            }
        }
    }
}

/// The output file, a whole line at a time.
struct Lines {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl Lines {
    /// Creates (or empties) the recording at `path`.
    fn create(path: &std::path::Path) -> Result<Self, String> {
        let file = std::fs::File::create(path)
            .map_err(|e| format!("could not create {}: {e}", path.display()))?;
        Ok(Self {
            file: std::io::BufWriter::new(file),
            path: path.to_owned(),
        })
    }

    /// Writes one line and flushes it, so the file ends in a whole line whenever it is read.
    fn line(&mut self, text: &str) -> Result<(), String> {
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.write_all(b"\n"))
            .and_then(|()| self.file.flush())
            .map_err(|e| format!("could not write {}: {e}", self.path.display()))
    }

    fn flush(&mut self) -> Result<(), String> {
        self.file
            .flush()
            .map_err(|e| format!("could not write {}: {e}", self.path.display()))
    }
}
