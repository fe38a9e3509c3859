//! A runs server in the older dialect docs/protocol.md describes ("servers in the first
//! design's style"), the way a `FastAPI` service behind a proxy speaks it, so clients are tried
//! against a server they did not write:
//!
//! - no `/api/health` and no `/api/events`: the proxy answers 404 with an HTML page;
//! - `GET /api/runs` is a bare JSON array whose runs name their agent `node`, with naive ISO times;
//! - `POST /api/runs` answers 200 `{"run_id", "status"}`, or 503 `{"detail": "..."}` when all
//!   worker slots are busy; there is no cancel (404 `{"detail": "Not Found"}`);
//! - a run's detail lists its events as `{"id", "event_type", "payload", "created_at"}`;
//! - a run's stream is CRLF-framed, written in chunks of a few bytes that split lines and UTF-8
//!   characters, with `: ping` comments, no ids and no replay, and is cut by the proxy after
//!   `cut_after` (the connection closes without the final chunk).
//!
//! Runs advance on their own: `running`, then `node_update`s through five agents every
//! `step_every`, then `completed` and `stream_end`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::scripted_server::{Request, read_request};

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct SeedConfig {
    /// Runs generating at once; a create beyond it is refused with 503 and a `detail`.
    pub worker_slots: usize,
    /// Time between two `node_update`s of a run.
    pub step_every: Duration,
    /// `node_update`s per agent (five agents).
    pub steps_per_agent: u64,
    /// The proxy closes a stream after this long.
    pub cut_after: Duration,
    /// A run started before any client watched, already generating.
    pub running_at_start: bool,
}

impl Default for SeedConfig {
    fn default() -> Self {
        Self {
            worker_slots: 3,
            step_every: Duration::from_millis(100),
            steps_per_agent: 5,
            cut_after: Duration::from_millis(1500),
            running_at_start: true,
        }
    }
}

impl SeedConfig {
    /// The tokens a run ends with: each step adds 7 + (step mod 5).
    pub fn final_tokens(&self) -> u64 {
        (0..self.steps_per_agent * 5).map(step_tokens).sum()
    }
}

fn step_tokens(step: u64) -> u64 {
    7 + step % 5
}

/// A stored event in the server's own shape.
#[derive(Debug, Clone)]
struct SeedEvent {
    id: u64,
    event_type: &'static str,
    payload: Value,
    created_at: String,
}

#[derive(Debug, Clone)]
struct SeedRun {
    run_id: String,
    task: String,
    status: &'static str,
    node: Option<String>,
    iteration: Option<u32>,
    tokens_out: u64,
    snippet: Option<String>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    events: Vec<SeedEvent>,
    /// Store payloads as JSON text, as some servers do.
    payload_as_text: bool,
}

impl SeedRun {
    fn new(run_id: String, task: String) -> Self {
        Self {
            run_id,
            task,
            status: "queued",
            node: None,
            iteration: None,
            tokens_out: 0,
            snippet: None,
            created_at: naive_now(),
            started_at: None,
            finished_at: None,
            events: Vec::new(),
            payload_as_text: false,
        }
    }

    fn summary(&self) -> Value {
        json!({
            "run_id": self.run_id,
            "task": self.task,
            "status": self.status,
            "node": self.node,
            "iteration": self.iteration,
            "tokens_out": self.tokens_out,
            "snippet": self.snippet,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        })
    }

    fn detail(&self) -> Value {
        let mut detail = self.summary();
        let events: Vec<Value> = self
            .events
            .iter()
            .map(|event| {
                let payload = if self.payload_as_text {
                    Value::String(event.payload.to_string())
                } else {
                    event.payload.clone()
                };
                json!({"id": event.id, "event_type": event.event_type, "payload": payload,
                       "created_at": event.created_at})
            })
            .collect();
        detail["events"] = Value::Array(events);
        detail
    }

    fn record(&mut self, next_id: &mut u64, event_type: &'static str, payload: Value) {
        *next_id += 1;
        self.events.push(SeedEvent {
            id: *next_id,
            event_type,
            payload,
            created_at: naive_now(),
        });
    }

    fn is_finished(&self) -> bool {
        matches!(self.status, "completed" | "failed" | "cancelled")
    }
}

#[derive(Debug, Default)]
struct State {
    runs: Vec<SeedRun>,
    /// Ids of stored events count up across runs, as a database sequence would.
    next_event_id: u64,
    next_run: u64,
}

/// The server; it stops when dropped.
pub struct SeedServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    requests: Arc<Mutex<Vec<Request>>>,
    accept_loop: JoinHandle<()>,
}

impl SeedServer {
    /// Starts on a free loopback port with one finished run in its history (and one running,
    /// when `config.running_at_start`).
    pub async fn start(config: SeedConfig) -> Self {
        Self::start_on(0, config).await
    }

    /// Starts on loopback port `port` (0: a free one).
    pub async fn start_on(port: u16, config: SeedConfig) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        seed_history(&state);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let config = Arc::new(config);
        let mut drivers = JoinSet::new();
        if config.running_at_start {
            let run_id = create(&state, "started before anyone watched");
            drivers.spawn(drive(Arc::clone(&state), Arc::clone(&config), run_id));
        }
        let (shared, log) = (Arc::clone(&state), Arc::clone(&requests));
        let accept_loop = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                connections.spawn(serve(
                    stream,
                    Arc::clone(&shared),
                    Arc::clone(&config),
                    Arc::clone(&log),
                ));
            }
            drivers.abort_all();
        });
        Self {
            addr,
            state,
            requests,
            accept_loop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Each run's id and status, oldest first.
    pub fn runs(&self) -> Vec<(String, String)> {
        let state = self.state.lock().unwrap();
        state
            .runs
            .iter()
            .map(|run| (run.run_id.clone(), run.status.to_owned()))
            .collect()
    }
}

impl Drop for SeedServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Times as a Python `datetime.utcnow().isoformat()` writes them: no zone, microseconds.
fn naive_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    )
}

/// A finished run from before the server was watched, with payloads stored as JSON text.
fn seed_history(state: &Arc<Mutex<State>>) {
    let mut state = state.lock().unwrap();
    let State {
        runs,
        next_event_id,
        ..
    } = &mut *state;
    let mut run = SeedRun::new("legacy-0001".into(), "an older run".into());
    run.payload_as_text = true;
    run.record(next_event_id, "status", json!({"status": "running"}));
    for (node, tokens, snippet) in [
        ("researcher", 120, "notes on lighthouses"),
        ("writer", 480, "the lamp was lit at dusk"),
    ] {
        run.record(
            next_event_id,
            "node_update",
            json!({"node": node, "iteration": 1, "tokens_out": tokens, "snippet": snippet}),
        );
    }
    run.record(
        next_event_id,
        "status",
        json!({"status": "completed", "message": "done"}),
    );
    run.record(next_event_id, "stream_end", json!({"status": "completed"}));
    run.status = "completed";
    run.node = Some("writer".into());
    run.tokens_out = 480;
    run.snippet = Some("the lamp was lit at dusk".into());
    run.started_at = Some(run.created_at.clone());
    run.finished_at = Some(run.created_at.clone());
    runs.push(run);
}

fn create(state: &Arc<Mutex<State>>, task: &str) -> String {
    let mut state = state.lock().unwrap();
    state.next_run += 1;
    let run_id = format!("seed-{:04}", state.next_run);
    state
        .runs
        .push(SeedRun::new(run_id.clone(), task.to_owned()));
    run_id
}

const AGENTS: [&str; 5] = ["supervisor", "researcher", "writer", "critic", "finish"];
const WORDS: [&str; 8] = [
    "the", "keeper", "café", "naïve", "lamp", "😊", "storm", "résumé",
];

/// Generates one run: `running`, progress through every agent, then `completed`.
async fn drive(state: Arc<Mutex<State>>, config: Arc<SeedConfig>, run_id: String) {
    let with_run = |change: &mut dyn FnMut(&mut SeedRun, &mut u64)| {
        let mut state = state.lock().unwrap();
        let State {
            runs,
            next_event_id,
            ..
        } = &mut *state;
        if let Some(run) = runs.iter_mut().find(|run| run.run_id == run_id) {
            change(run, next_event_id);
        }
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    with_run(&mut |run, ids| {
        run.status = "running";
        run.started_at = Some(naive_now());
        run.record(ids, "status", json!({"status": "running"}));
    });
    let mut tokens = 0u64;
    let mut text = String::new();
    for (step, agent) in AGENTS
        .iter()
        .flat_map(|agent| {
            std::iter::repeat_n(agent, usize::try_from(config.steps_per_agent).unwrap())
        })
        .enumerate()
    {
        tokio::time::sleep(config.step_every).await;
        tokens += step_tokens(step as u64);
        text.push(' ');
        text.push_str(WORDS[step % WORDS.len()]);
        let snippet: String = {
            let chars: Vec<char> = text.chars().collect();
            chars[chars.len().saturating_sub(200)..].iter().collect()
        };
        with_run(&mut |run, ids| {
            run.node = Some((*agent).to_owned());
            run.iteration = Some(1);
            run.tokens_out = tokens;
            run.snippet = Some(snippet.clone());
            run.record(
                ids,
                "node_update",
                json!({"node": agent, "iteration": 1, "tokens_out": tokens, "snippet": snippet}),
            );
        });
    }
    with_run(&mut |run, ids| {
        run.status = "completed";
        run.finished_at = Some(naive_now());
        run.record(
            ids,
            "status",
            json!({"status": "completed", "message": "done"}),
        );
        run.record(ids, "stream_end", json!({"status": "completed"}));
    });
}

fn respond(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nServer: \
         uvicorn\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn json_response(status: &str, body: &Value) -> Vec<u8> {
    respond(status, "application/json", &body.to_string())
}

fn not_found_page() -> Vec<u8> {
    respond(
        "404 Not Found",
        "text/html",
        "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not \
         Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
    )
}

async fn serve(
    mut stream: TcpStream,
    state: Arc<Mutex<State>>,
    config: Arc<SeedConfig>,
    log: Arc<Mutex<Vec<Request>>>,
) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    log.lock().unwrap().push(request.clone());
    let path = request
        .path
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let ("GET", ["api", "runs", run_id, "stream"]) =
        (request.method.as_str(), segments.as_slice())
    {
        let run_id = (*run_id).to_owned();
        stream_run(stream, &state, &config, &run_id).await;
        return;
    }
    let reply = answer(&request, &segments, &state, &config);
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}

/// Every answer but a stream's.
fn answer(
    request: &Request,
    segments: &[&str],
    state: &Arc<Mutex<State>>,
    config: &Arc<SeedConfig>,
) -> Vec<u8> {
    match (request.method.as_str(), segments) {
        ("GET", ["api", "runs"]) => {
            let state = state.lock().unwrap();
            let runs: Vec<Value> = state.runs.iter().rev().map(SeedRun::summary).collect();
            json_response("200 OK", &Value::Array(runs))
        }
        ("POST", ["api", "runs"]) => create_from(request, state, config),
        ("GET", ["api", "runs", run_id]) => {
            let state = state.lock().unwrap();
            let run = state.runs.iter().find(|run| run.run_id == *run_id);
            run.map_or_else(
                || json_response("404 Not Found", &json!({"detail": "Run not found"})),
                |run| json_response("200 OK", &run.detail()),
            )
        }
        // The proxy in front has no route for these.
        ("GET", ["api", "health" | "events"]) => not_found_page(),
        _ => json_response("404 Not Found", &json!({"detail": "Not Found"})),
    }
}

fn create_from(request: &Request, state: &Arc<Mutex<State>>, config: &Arc<SeedConfig>) -> Vec<u8> {
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return json_response(
            "422 Unprocessable Entity",
            &json!({"detail": [{"loc": ["body"], "msg": "invalid JSON", "type": "value_error"}]}),
        );
    };
    let Some(task) = body.get("task").and_then(Value::as_str) else {
        return json_response(
            "422 Unprocessable Entity",
            &json!({"detail": [{"loc": ["body", "task"], "msg": "field required",
                                "type": "value_error.missing"}]}),
        );
    };
    let busy = {
        let state = state.lock().unwrap();
        state.runs.iter().filter(|run| !run.is_finished()).count()
    };
    if busy >= config.worker_slots {
        let detail = format!(
            "All {} worker slots are busy; try again later",
            config.worker_slots
        );
        return json_response("503 Service Unavailable", &json!({ "detail": detail }));
    }
    let run_id = create(state, task);
    tokio::spawn(drive(Arc::clone(state), Arc::clone(config), run_id.clone()));
    json_response("200 OK", &json!({"run_id": run_id, "status": "queued"}))
}

/// Writes `bytes` as chunks of at most 5 bytes, each its own TCP segment, so lines and UTF-8
/// characters arrive split.
async fn write_in_pieces(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    for piece in bytes.chunks(5) {
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(piece);
        chunk.extend_from_slice(b"\r\n");
        stream.write_all(&chunk).await?;
        stream.flush().await?;
        tokio::time::sleep(Duration::from_micros(300)).await;
    }
    Ok(())
}

/// A run's stream: events from now on (no replay), pings, and the proxy's cut.
async fn stream_run(
    mut stream: TcpStream,
    state: &Arc<Mutex<State>>,
    config: &SeedConfig,
    run_id: &str,
) {
    // A finished run's stream gives its end at once; a live one starts from now.
    let seen = {
        let state = state.lock().unwrap();
        state
            .runs
            .iter()
            .find(|run| run.run_id == run_id)
            .map(|run| {
                if run.is_finished() {
                    run.events.len().saturating_sub(2)
                } else {
                    run.events.len()
                }
            })
    };
    let Some(seen) = seen else {
        let reply = json_response("404 Not Found", &json!({"detail": "Run not found"}));
        let _ = stream.write_all(&reply).await;
        return;
    };
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
                Transfer-Encoding: chunked\r\nServer: uvicorn\r\nConnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let opened = Instant::now();
    let mut seen = seen;
    let mut last_ping = Instant::now();
    loop {
        if opened.elapsed() >= config.cut_after {
            // The proxy's cut: no final chunk, the connection just closes.
            let _ = stream.shutdown().await;
            return;
        }
        let fresh: Vec<SeedEvent> = {
            let state = state.lock().unwrap();
            state
                .runs
                .iter()
                .find(|run| run.run_id == run_id)
                .map(|run| run.events[seen..].to_vec())
                .unwrap_or_default()
        };
        seen += fresh.len();
        for event in &fresh {
            let frame = format!(
                "event: {}\r\ndata: {}\r\n\r\n",
                event.event_type, event.payload
            );
            if write_in_pieces(&mut stream, frame.as_bytes())
                .await
                .is_err()
            {
                return;
            }
            if event.event_type == "stream_end" {
                let _ = stream.write_all(b"0\r\n\r\n").await;
                let _ = stream.shutdown().await;
                return;
            }
        }
        if last_ping.elapsed() >= Duration::from_millis(300) {
            last_ping = Instant::now();
            if write_in_pieces(&mut stream, b": ping\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}
