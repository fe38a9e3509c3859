//! The proxy at fleet rates: closed-loop clients on keep-alive connections (64, 256 and 1,024
//! of them) making short calls as fast as answers come, to a fast scripted upstream, directly
//! and through runboard side by side in one run (direct, then proxied, per point). Whole
//! answers and streamed ones (20 chunks each). Every proxied call is recorded in a SQLite file.
//!
//! Prints per point: calls/s, p50/p99 latency (request written → answer read whole), calls
//! refused (503 with `Retry-After: 1` when runboard's store stayed too far behind for 2 s; the
//! client waits the second, as the `openai` package does), runboard's CPU per answered call
//! (its runtime's threads, its writer's and SQLite's) and events stored per answered call.
//!
//! `ulimit -n 8192; cargo bench --bench proxy_load` (1,024 connections need about 3,000 open
//! files in this one process). `RUNBOARD_BENCH_SECS` sets each point's length (default 4 s);
//! `RUNBOARD_BENCH_POINTS=whole:64,streamed:1024` measures only those points;
//! `RUNBOARD_BENCH_ROUNDS=3` measures every point three times, the rounds alternating the
//! order of the connection counts, and ends with the hold: each count's median calls/s as a
//! share of the best, directly and proxied. The store is filled past what retention keeps
//! before the first point, and retention runs every second, so that every point pays for
//! removing the calls it records, as a fleet's proxy does all day.
//! Everything shares this machine's cores: the upstream and the clients have one runtime
//! thread each, runboard two.
//!
//! `RUNBOARD_BENCH_OTLP=none,sink,gone` also measures, right after the proxied figures of each
//! point, a runboard exporting every call as a span over OTLP (`--otlp-endpoint`) to a
//! receiver that takes everything (`sink`) and to one that is not there (`gone`: every export
//! fails, the queue fills and spans are dropped), to show what export costs a proxied call;
//! `none` is a second runboard that exports nothing, measured in turn like them (the control
//! for what the order of measurement does).

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use runboard_server::{
    DbLocation, OtlpConfig, Retention, ServerConfig, StoreSettings, UpstreamSpec,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use common::{median, percentile_ms, runtime, threads_cpu_secs};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONNECTIONS: [usize; 3] = [64, 256, 1024];
const STREAM_CHUNKS: usize = 20;

/// The finished runs retention keeps (the server's default).
const RETAINED_RUNS: u64 = 10_000;

/// How often retention runs in the bench. The server's default is every 10 s, longer than a
/// point: a pass removing tens of thousands of runs would fall in whichever point it happened
/// to meet. Every second, each point pays for removing about the calls it made.
const RETENTION_EVERY: Duration = Duration::from_secs(1);

/// How long calls are made before the first point, to fill the store past `RETAINED_RUNS`.
const RETENTION_FILL_SECS: f64 = 2.0;

/// runboard's threads: its runtime's, its writer's and SQLite's.
const RUNBOARD_THREADS: [&str; 3] = ["bench-server", "runboard-writer", "sqlx-sqlite"];

/// The load's threads: the clients' runtime and the scripted upstream's. They share the
/// cores with runboard, so what they take as connections grow is not runboard's to use.
const LOAD_THREADS: [&str; 2] = ["bench-client", "bench-upstream"];

/// The shapes of call measured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Whole,
    Streamed,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::Whole => "whole answers",
            Self::Streamed => "streamed answers (20 chunks)",
        }
    }

    fn body(self) -> String {
        format!(
            "{{\"model\":\"bench-model\",\"stream\":{},\"max_tokens\":20,\
             \"messages\":[{{\"role\":\"user\",\"content\":\"count to twenty\"}}]}}",
            self == Self::Streamed
        )
    }
}

/// Reads one request (head and `Content-Length` body) from `buffer` + `stream`: its request
/// line and whether its body asks for a stream; `None` when the connection ended.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, bool)> {
    let mut chunk = vec![0u8; 8192];
    let head_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let streamed = find(&buffer[head_end..head_end + length], b"\"stream\":true").is_some();
    buffer.drain(..head_end + length);
    Some((head.lines().next()?.to_owned(), streamed))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The whole answer the upstream gives.
fn whole_answer() -> String {
    let body = "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"bench-model\",\
                \"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\
                \"one two three four five six seven eight nine ten\"},\"finish_reason\":\"stop\"}],\
                \"usage\":{\"prompt_tokens\":9,\"completion_tokens\":20,\"total_tokens\":29}}";
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The streamed answer the upstream gives: 20 content chunks, a finish, usage and `[DONE]`,
/// in chunked encoding, written at once.
fn streamed_answer() -> String {
    let mut body = String::new();
    let mut piece = |text: String| {
        let _ = write!(body, "{:x}\r\n{text}\r\n", text.len());
    };
    for n in 0..STREAM_CHUNKS {
        piece(format!(
            "data: {{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\
             \"delta\":{{\"content\":\"w{n} \"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    piece(
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\
         \"finish_reason\":\"stop\"}]}\n\n"
            .into(),
    );
    piece(format!(
        "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":9,\"completion_tokens\":{STREAM_CHUNKS}}}}}\n\ndata: [DONE]\n\n"
    ));
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n\
         {body}0\r\n\r\n"
    )
}

/// One keep-alive connection of the upstream.
async fn serve_upstream(mut stream: TcpStream, whole: Arc<String>, streamed: Arc<String>) {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    let models = {
        let body = r#"{"object":"list","data":[{"id":"bench-model","object":"model"}]}"#;
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    while let Some((line, wants_stream)) = read_request(&mut stream, &mut buffer).await {
        let reply: &str = if line.starts_with("get") {
            &models
        } else if wants_stream {
            &streamed
        } else {
            &whole
        };
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One connection of the OTLP receiver that takes everything (`RUNBOARD_BENCH_OTLP=sink`).
async fn serve_sink(mut stream: TcpStream) {
    let reply =
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
    let mut buffer = Vec::new();
    while read_request(&mut stream, &mut buffer).await.is_some() {
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one response from `stream`: its status, once its body is whole (by `Content-Length`
/// or the chunked end).
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<u16> {
    let mut chunk = vec![0u8; 16384];
    let head_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: Option<usize> = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    buffer.drain(..head_end);
    match length {
        Some(length) => {
            while buffer.len() < length {
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            buffer.drain(..length);
        }
        None => loop {
            if let Some(at) = find(buffer, b"\r\n0\r\n\r\n").or_else(|| {
                buffer
                    .starts_with(b"0\r\n\r\n")
                    .then_some(0)
                    .map(|_| usize::MAX)
            }) {
                let end = if at == usize::MAX { 5 } else { at + 7 };
                buffer.drain(..end);
                break;
            }
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..read]);
        },
    }
    Some(status)
}

/// What the clients of one point measured.
#[derive(Default)]
struct Point {
    latencies_us: Vec<u64>,
    refused: u64,
    errors: u64,
    seconds: f64,
    runboard_cpu: f64,
    /// `runboard_cpu` split by `RUNBOARD_THREADS` (runtime, writer, SQLite), same span.
    cpu_by_thread: [f64; 3],
    /// CPU of `LOAD_THREADS` (clients and upstream together), same span.
    load_cpu: f64,
    events: i64,
}

impl Point {
    #[allow(clippy::cast_precision_loss)]
    fn calls_per_sec(&self) -> f64 {
        self.latencies_us.len() as f64 / self.seconds
    }
}

/// One closed-loop client: a call, its whole answer, the next call, until `stop`.
async fn client(addr: String, request: Arc<String>, stop: Arc<AtomicBool>) -> (Vec<u64>, u64, u64) {
    let mut latencies = Vec::new();
    let (mut refused, mut errors) = (0, 0);
    let Ok(mut stream) = TcpStream::connect(&addr).await else {
        return (latencies, refused, 1);
    };
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        if stream.write_all(request.as_bytes()).await.is_err() {
            errors += 1;
            break;
        }
        match read_response(&mut stream, &mut buffer).await {
            Some(200) => {
                latencies.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            Some(503) => {
                refused += 1;
                // As a client told `Retry-After: 1` does.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some(_) => errors += 1,
            None => {
                errors += 1;
                break;
            }
        }
    }
    (latencies, refused, errors)
}

#[allow(clippy::too_many_arguments)]
fn measure(
    client_rt: &tokio::runtime::Runtime,
    addr: &str,
    path: &str,
    shape: Shape,
    connections: usize,
    seconds: f64,
    runboard: Option<&str>,
) -> Point {
    let body = shape.body();
    let request = Arc::new(format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    client_rt.block_on(async {
        let events_before = match runboard {
            Some(url) => events_head(url).await,
            None => 0,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..connections {
            clients.spawn(client(
                addr.to_owned(),
                Arc::clone(&request),
                Arc::clone(&stop),
            ));
        }
        // The first second warms up (connections, the upstream pool); then the measurement.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu_before = threads_cpu_secs(&RUNBOARD_THREADS);
        let split_before = RUNBOARD_THREADS.map(|name| threads_cpu_secs(&[name]));
        let load_before = threads_cpu_secs(&LOAD_THREADS);
        let started = Instant::now();
        let mut counted: Vec<(Vec<u64>, u64, u64)> = Vec::new();
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = threads_cpu_secs(&RUNBOARD_THREADS) - cpu_before;
        let split_after = RUNBOARD_THREADS.map(|name| threads_cpu_secs(&[name]));
        let load = threads_cpu_secs(&LOAD_THREADS) - load_before;
        stop.store(true, Ordering::Relaxed);
        while let Some(done) = clients.join_next().await {
            if let Ok(done) = done {
                counted.push(done);
            }
        }
        let mut point = Point {
            seconds: elapsed + 1.0,
            runboard_cpu: cpu,
            cpu_by_thread: std::array::from_fn(|at| split_after[at] - split_before[at]),
            load_cpu: load,
            ..Point::default()
        };
        for (latencies, refused, errors) in counted {
            point.latencies_us.extend(latencies);
            point.refused += refused;
            point.errors += errors;
        }
        if let Some(url) = runboard {
            // Let the writer store what it was handed, then count.
            tokio::time::sleep(Duration::from_millis(500)).await;
            point.events = events_head(url).await - events_before;
        }
        // Calls over the warm-up second and the measured ones; CPU over the measured ones
        // only, so it is scaled to the same span below.
        point.runboard_cpu *= point.seconds / elapsed;
        point.load_cpu *= point.seconds / elapsed;
        for cpu in &mut point.cpu_by_thread {
            *cpu *= point.seconds / elapsed;
        }
        point.latencies_us.sort_unstable();
        point
    })
}

/// The newest event id of the server at `url`.
async fn events_head(url: &str) -> i64 {
    let Ok(response) = runboard_sse::http::client()
        .get(format!("{url}/api/health"))
        .send()
        .await
    else {
        return 0;
    };
    let bytes = response.bytes().await.unwrap_or_default();
    let health: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    health["events_head"].as_i64().unwrap_or(0)
}

/// The scripted upstream on its runtime.
fn start_upstream(upstream_rt: &tokio::runtime::Runtime) -> std::net::SocketAddr {
    let listener = upstream_rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let upstream = listener.local_addr().unwrap();
    let whole = Arc::new(whole_answer());
    let streamed = Arc::new(streamed_answer());
    upstream_rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_upstream(
                stream,
                Arc::clone(&whole),
                Arc::clone(&streamed),
            ));
        }
    });
    upstream
}

/// An OTLP receiver that takes every export, on the upstream's runtime: its base URL.
fn start_sink(upstream_rt: &tokio::runtime::Runtime) -> String {
    let listener = upstream_rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    upstream_rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_sink(stream));
        }
    });
    url
}

/// runboard proxying to `upstream` on its own runtime, recording in a SQLite file `name` in
/// `dir`, exporting over OTLP with `otlp`.
fn start_runboard(
    server_rt: &tokio::runtime::Runtime,
    dir: &tempfile::TempDir,
    name: &str,
    upstream: std::net::SocketAddr,
    otlp: Option<OtlpConfig>,
) -> runboard_server::RunningServer {
    let mut config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        store: StoreSettings {
            db: DbLocation::File(dir.path().join(name)),
            retention: Retention {
                days: None,
                runs: Some(RETAINED_RUNS),
            },
            retention_every: RETENTION_EVERY,
            ..StoreSettings::default()
        },
        otlp,
        ..ServerConfig::default()
    };
    config.upstreams.concurrency = Some(4096);
    config
        .upstreams
        .upstreams
        .push(UpstreamSpec::parse(&format!("bench=http://{upstream}/v1"), |_| None).unwrap());
    server_rt.block_on(runboard_server::start(config)).unwrap()
}

/// `RUNBOARD_BENCH_OTLP=none,sink,gone`: a runboard per receiver (or none), exporting every call, with the
/// label of its figures.
fn start_exporting(
    upstream_rt: &tokio::runtime::Runtime,
    server_rt: &tokio::runtime::Runtime,
    dir: &tempfile::TempDir,
    upstream: std::net::SocketAddr,
) -> Vec<(String, runboard_server::RunningServer)> {
    std::env::var("RUNBOARD_BENCH_OTLP")
        .unwrap_or_default()
        .split(',')
        .filter(|mode| !mode.trim().is_empty())
        .enumerate()
        .map(|(index, mode)| {
            let endpoint = match mode.trim() {
                "sink" => Some(start_sink(upstream_rt)),
                // A port nothing listens on: every export fails.
                "gone" => Some("http://127.0.0.1:9".to_owned()),
                // The control: a second runboard measured in the same place, exporting nothing.
                "none" => None,
                other => panic!("RUNBOARD_BENCH_OTLP: {other:?} is not sink, gone or none"),
            };
            let name = format!("bench-otlp-{index}.db");
            let config = endpoint.map(OtlpConfig::new);
            let server = start_runboard(server_rt, dir, &name, upstream, config);
            (format!("proxied, OTLP to {}", mode.trim()), server)
        })
        .collect()
}

/// Measures one point on a runboard that exports over OTLP, and prints it.
#[allow(clippy::cast_precision_loss)]
fn measure_exporting(
    client_rt: &tokio::runtime::Runtime,
    server: &runboard_server::RunningServer,
    label: &str,
    shape: Shape,
    connections: usize,
    seconds: f64,
) {
    let url = server.url();
    let point = measure(
        client_rt,
        url.trim_start_matches("http://"),
        "/v1/chat/completions",
        shape,
        connections,
        seconds,
        Some(&url),
    );
    let calls = point.latencies_us.len().max(1) as f64;
    println!(
        "  {connections:>5} connections: {label}: {:>7.0} calls/s (p50 {:.2} ms, p99 {:.2} ms), \
         {} refused, {} errors, CPU {:.3} ms per call",
        point.calls_per_sec(),
        percentile_ms(&point.latencies_us, 0.5),
        percentile_ms(&point.latencies_us, 0.99),
        point.refused,
        point.errors,
        point.runboard_cpu * 1000.0 / calls,
    );
}

/// `RUNBOARD_BENCH_PIN=1`: runboard's threads on the second core, the load's on the first,
/// so that what the clients and the upstream take as connections grow does not come out of
/// runboard's share. Applied before every point, as runboard starts threads as it goes (SQLite's
/// connections); `taskset` (util-linux) sets each thread's affinity.
fn pin_threads() {
    if std::env::var("RUNBOARD_BENCH_PIN").as_deref() != Ok("1") {
        return;
    }
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let core = if RUNBOARD_THREADS.iter().any(|p| comm.starts_with(p)) {
            "1"
        } else if LOAD_THREADS.iter().any(|p| comm.starts_with(p)) {
            "0"
        } else {
            continue;
        };
        let tid = task.file_name().to_string_lossy().into_owned();
        let pinned = std::process::Command::new("taskset")
            .args(["-p", "-c", core, &tid])
            .stdout(std::process::Stdio::null())
            .status();
        assert!(
            pinned.is_ok_and(|status| status.success()),
            "taskset could not pin thread {tid} ({})",
            comm.trim()
        );
    }
}

/// One point measured directly and through runboard.
struct Sweep {
    shape: Shape,
    connections: usize,
    direct: f64,
    proxied: f64,
    /// runboard's CPU per proxied call, ms.
    cpu_per_call: f64,
}

/// `RUNBOARD_BENCH_ROUNDS` (default 1): how many times every point is measured.
fn rounds() -> usize {
    std::env::var("RUNBOARD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&rounds| rounds > 0)
        .unwrap_or(1)
}

/// Measures one point straight to the upstream and then through runboard, prints both and
/// gives back their calls/s and runboard's CPU per call (ms).
#[allow(clippy::cast_precision_loss)]
fn measure_side_by_side(
    client_rt: &tokio::runtime::Runtime,
    upstream: std::net::SocketAddr,
    runboard_url: &str,
    shape: Shape,
    connections: usize,
    seconds: f64,
) -> (f64, f64, f64) {
    pin_threads();
    let direct = measure(
        client_rt,
        &upstream.to_string(),
        "/v1/chat/completions",
        shape,
        connections,
        seconds,
        None,
    );
    let proxied = measure(
        client_rt,
        runboard_url.trim_start_matches("http://"),
        "/v1/chat/completions",
        shape,
        connections,
        seconds,
        Some(runboard_url),
    );
    let calls = proxied.latencies_us.len().max(1) as f64;
    println!(
        "  {connections:>5} connections: direct {:>7.0} calls/s (p50 {:.2} ms, p99 {:.2} \
         ms) | proxied {:>7.0} calls/s (p50 {:.2} ms, p99 {:.2} ms), {} refused, {} \
         errors, CPU {:.3} ms per call ({:.3} runtime, {:.3} writer, {:.3} SQLite), \
         {:.1} events stored per call; the load's CPU per call: {:.3} ms direct, {:.3} ms \
         proxied",
        direct.calls_per_sec(),
        percentile_ms(&direct.latencies_us, 0.5),
        percentile_ms(&direct.latencies_us, 0.99),
        proxied.calls_per_sec(),
        percentile_ms(&proxied.latencies_us, 0.5),
        percentile_ms(&proxied.latencies_us, 0.99),
        proxied.refused,
        proxied.errors,
        proxied.runboard_cpu * 1000.0 / calls,
        proxied.cpu_by_thread[0] * 1000.0 / calls,
        proxied.cpu_by_thread[1] * 1000.0 / calls,
        proxied.cpu_by_thread[2] * 1000.0 / calls,
        proxied.events as f64 / calls,
        direct.load_cpu * 1000.0 / direct.latencies_us.len().max(1) as f64,
        proxied.load_cpu * 1000.0 / calls,
    );
    (
        direct.calls_per_sec(),
        proxied.calls_per_sec(),
        proxied.runboard_cpu * 1000.0 / calls,
    )
}

/// The hold: per shape, each connection count's median calls/s over the rounds, and what
/// share it is of the best median of that shape, directly and through runboard, with
/// runboard's median CPU per call. The direct share is what the machine itself (clients and
/// upstream on the same cores) keeps as connections grow.
fn print_hold(sweeps: &[Sweep]) {
    for shape in [Shape::Whole, Shape::Streamed] {
        let medians: Vec<(usize, [f64; 3], usize)> = CONNECTIONS
            .iter()
            .filter_map(|&connections| {
                let points: Vec<&Sweep> = sweeps
                    .iter()
                    .filter(|s| s.shape == shape && s.connections == connections)
                    .collect();
                let of =
                    |field: fn(&Sweep) -> f64| median(points.iter().map(|s| field(s)).collect());
                (!points.is_empty()).then(|| {
                    let figures = [of(|s| s.direct), of(|s| s.proxied), of(|s| s.cpu_per_call)];
                    (connections, figures, points.len())
                })
            })
            .collect();
        let best = |at: usize| medians.iter().map(|m| m.1[at]).fold(0.0, f64::max);
        let (best_direct, best_proxied) = (best(0), best(1));
        if medians.is_empty() {
            continue;
        }
        println!("hold, {} (medians of each point's rounds):", shape.name());
        for (connections, [direct, proxied, cpu], rounds) in medians {
            println!(
                "  {connections:>5} connections: direct {direct:>7.0} calls/s ({:>3.0} % of its \
                 best) | proxied {proxied:>7.0} calls/s ({:>3.0} % of its best), runboard's CPU \
                 {cpu:.3} ms per call; {rounds} round(s)",
                100.0 * direct / best_direct,
                100.0 * proxied / best_proxied,
            );
        }
    }
}

/// The soft limit on open files, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[allow(clippy::cast_precision_loss)]
fn main() {
    let needed = 3 * CONNECTIONS.iter().max().copied().unwrap_or(0) as u64 + 200;
    if let Some(limit) = open_files_limit()
        && limit < needed
    {
        eprintln!(
            "proxy_load needs about {needed} open files and this shell allows {limit}: run \
             `ulimit -n 8192` first"
        );
        std::process::exit(2);
    }
    let seconds: f64 = std::env::var("RUNBOARD_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4.0);
    let upstream_rt = runtime("bench-upstream", 1);
    let server_rt = runtime("bench-server", 2);
    let client_rt = runtime("bench-client", 1);
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_upstream(&upstream_rt);
    let running = start_runboard(&server_rt, &dir, "bench.db", upstream, None);
    let runboard_url = running.url();
    let runboard_addr = runboard_url.trim_start_matches("http://").to_owned();
    let exporting = start_exporting(&upstream_rt, &server_rt, &dir, upstream);

    println!(
        "closed loop, {seconds} s a point after 1 s of warm-up; latency = request written → \
         answer read whole; CPU = runboard's threads (runtime, writer and SQLite) per answered call"
    );
    // `RUNBOARD_BENCH_POINTS=whole:64,streamed:256` measures only those points (profiling).
    let only = std::env::var("RUNBOARD_BENCH_POINTS").unwrap_or_default();
    let wanted = |shape: Shape, connections: usize| {
        let key = match shape {
            Shape::Whole => format!("whole:{connections}"),
            Shape::Streamed => format!("streamed:{connections}"),
        };
        only.is_empty() || only.split(',').any(|point| point.trim() == key)
    };
    // Before anything is measured, fill the store past what retention keeps, so that every
    // point pays for removing calls as well as recording them (the steady state of a fleet).
    let filled = measure(
        &client_rt,
        &runboard_addr,
        "/v1/chat/completions",
        Shape::Whole,
        64,
        RETENTION_FILL_SECS,
        Some(&runboard_url),
    );
    println!(
        "store filled: {} calls recorded before the first point (retention keeps {RETAINED_RUNS})",
        filled.latencies_us.len()
    );
    let rounds = rounds();
    let mut sweeps: Vec<Sweep> = Vec::new();
    for round in 0..rounds {
        // Rounds alternate the order of the points, so that a machine slowing or a store
        // growing over the run weighs on the few connections as much as on the many.
        let mut order = CONNECTIONS.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        if rounds > 1 {
            println!("round {} of {rounds} ({order:?} connections):", round + 1);
        }
        for shape in [Shape::Whole, Shape::Streamed] {
            println!("{}:", shape.name());
            for &connections in &order {
                if !wanted(shape, connections) {
                    continue;
                }
                let (direct, proxied, cpu_per_call) = measure_side_by_side(
                    &client_rt,
                    upstream,
                    &runboard_url,
                    shape,
                    connections,
                    seconds,
                );
                sweeps.push(Sweep {
                    shape,
                    connections,
                    direct,
                    proxied,
                    cpu_per_call,
                });
                for (label, server) in &exporting {
                    measure_exporting(&client_rt, server, label, shape, connections, seconds);
                }
            }
        }
    }
    print_hold(&sweeps);
    for (_, server) in exporting {
        server_rt.block_on(server.stop());
    }
    server_rt.block_on(running.stop());
}
