//! The upstream client under load: 64 runs at once on a fast scripted OpenAI-compatible
//! upstream (each one streaming chat completion of 1000 chunks, one every 2 ms), the runs API
//! followed by one subscriber on `/api/events`, all over real HTTP on loopback with a real
//! SQLite file.
//!
//! Reports the runboard server's CPU time (its own threads only, from `/proc`) per chunk read
//! and per run, beside the floor: the same 64 streams read by bare `reqwest` on the same
//! runtime, counting bytes and nothing else (three rounds of each, alternating; medians), how many `node_update`s each run sent per second (at most 20 by design), and
//! the freshness of what a subscriber sees: for every `node_update`, the time from the upstream
//! writing the newest chunk in it (its text is the write time) to the subscriber reading it,
//! p50 and p99. Three runtimes with named threads keep the upstream's and the subscriber's work
//! out of the server's figure.
//!
//! `cargo bench --bench upstream`. Everything shares this machine's cores.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use runboard_api::{ApiClient, CreateRun, RunMode};
use runboard_server::{DbLocation, RunLimits, ServerConfig, StoreSettings, UpstreamSpec};
use runboard_sse::{EventSource, Update};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};

use common::upstream_wire::{micros_now, read_request};
use common::{median, percentile, runtime, threads_cpu_secs};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 64;
const CHUNKS: usize = 1000;
const GAP: Duration = Duration::from_millis(2);

/// One connection of the scripted upstream: the model list, or a stream whose every chunk's
/// text is the time it was written.
async fn serve_upstream(mut stream: TcpStream) {
    let Some(line) = read_request(&mut stream).await else {
        return;
    };
    if line.starts_with("get") {
        let body = r#"{"object":"list","data":[{"id":"bench-model","object":"model"}]}"#;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        return;
    }
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut ticks = tokio::time::interval(GAP);
    for _ in 0..CHUNKS {
        ticks.tick().await;
        let chunk = format!(
            "data: {{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\
             \"delta\":{{\"content\":\"{} \"}},\"finish_reason\":null}}]}}\n\n",
            micros_now()
        );
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            return;
        }
    }
    let end = format!(
        "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":9,\"completion_tokens\":{CHUNKS}}}}}\n\n\
         data: [DONE]\n\n"
    );
    let _ = stream.write_all(end.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// What the subscriber saw.
#[derive(Default)]
struct Seen {
    freshness_us: Vec<u64>,
    updates: HashMap<String, (usize, Option<Instant>, Option<Instant>)>,
    ended: usize,
}

async fn subscribe(url: String, ready: tokio::sync::oneshot::Sender<()>) -> Seen {
    let mut source = EventSource::builder(&url).unwrap().build().unwrap();
    let mut ready = Some(ready);
    let mut seen = Seen::default();
    while let Some(update) = source.next().await {
        match update {
            Update::State(runboard_sse::ConnectionState::Open) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            Update::Event(event) if event.event == "node_update" => {
                let now = micros_now();
                let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                let newest = data["snippet"]
                    .as_str()
                    .and_then(|s| s.split_whitespace().last())
                    .and_then(|t| t.parse::<u64>().ok());
                if let Some(written) = newest {
                    seen.freshness_us.push(now.saturating_sub(written));
                }
                let run = data["run_id"].as_str().unwrap_or_default().to_owned();
                let entry = seen.updates.entry(run).or_default();
                entry.0 += 1;
                entry.1.get_or_insert_with(Instant::now);
                entry.2 = Some(Instant::now());
            }
            Update::Event(event) if event.event == "stream_end" => {
                seen.ended += 1;
                if seen.ended == RUNS {
                    break;
                }
            }
            _ => {}
        }
    }
    seen
}

/// The floor: 64 streams read to their end by bare `reqwest` on the server's runtime, doing
/// nothing with the bytes. Returns the CPU seconds of that runtime's threads.
fn bare_round(server_rt: &tokio::runtime::Runtime, upstream: std::net::SocketAddr) -> f64 {
    let before = threads_cpu_secs(&["bench-server"]);
    server_rt.block_on(async {
        let http = runboard_sse::http::client();
        let mut reads = tokio::task::JoinSet::new();
        for _ in 0..RUNS {
            let request = http
                .post(format!("http://{upstream}/v1/chat/completions"))
                .body("{}");
            reads.spawn(async move {
                let mut body = request.send().await.unwrap().bytes_stream();
                let mut bytes = 0usize;
                while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut body).await {
                    bytes += chunk.len();
                }
                bytes
            });
        }
        reads.join_all().await;
    });
    threads_cpu_secs(&["bench-server"]) - before
}

/// What one round of runboard gave.
struct Round {
    wall: Duration,
    cpu: f64,
    seen: Seen,
}

/// 64 runs on runboard, followed by one subscriber.
fn runboard_round(
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
    upstream: std::net::SocketAddr,
) -> Round {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        store: StoreSettings {
            db: DbLocation::File(dir.path().join("bench.db")),
            ..StoreSettings::default()
        },
        runs: RunLimits {
            concurrency: RUNS,
            ..RunLimits::default()
        },
        ..ServerConfig::default()
    };
    config
        .upstreams
        .upstreams
        .push(UpstreamSpec::parse(&format!("bench=http://{upstream}/v1"), |_| None).unwrap());
    let running = server_rt.block_on(runboard_server::start(config)).unwrap();
    let url = running.url();
    let server_threads = ["bench-server", "runboard-writer", "sqlx-sqlite"];
    let round = client_rt.block_on(async {
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let subscriber = tokio::spawn(subscribe(format!("{url}/api/events"), ready_tx));
        ready.await.unwrap();
        let api = ApiClient::new(&url, None).unwrap();
        let cpu_before = threads_cpu_secs(&server_threads);
        let started = Instant::now();
        for _ in 0..RUNS {
            api.create_run(&CreateRun {
                task: "benchmark".into(),
                mode: RunMode::Queued,
                params: json!({"messages": [{"role": "user", "content": "go"}]}),
            })
            .await
            .unwrap();
        }
        let seen = subscriber.await.unwrap();
        Round {
            wall: started.elapsed(),
            cpu: threads_cpu_secs(&server_threads) - cpu_before,
            seen,
        }
    });
    server_rt.block_on(running.stop());
    round
}

#[allow(clippy::cast_precision_loss)]
fn main() {
    let upstream_rt = runtime("bench-upstream", 1);
    let server_rt = runtime("bench-server", 2);
    let client_rt = runtime("bench-client", 1);

    let listener = upstream_rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let upstream = listener.local_addr().unwrap();
    upstream_rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_upstream(stream));
        }
    });

    let chunks = RUNS * CHUNKS;
    let mut bare = Vec::new();
    let mut rounds = Vec::new();
    for _ in 0..3 {
        bare.push(bare_round(&server_rt, upstream) * 1e6 / chunks as f64);
        rounds.push(runboard_round(&server_rt, &client_rt, upstream));
    }
    let per_chunk: Vec<f64> = rounds.iter().map(|r| r.cpu * 1e6 / chunks as f64).collect();
    let (bare_us, runboard_us) = (median(bare.clone()), median(per_chunk.clone()));
    let round = &rounds[1];
    let mut freshness: Vec<u64> = rounds
        .iter()
        .flat_map(|r| r.seen.freshness_us.iter().copied())
        .collect();
    freshness.sort_unstable();
    let mut per_run_rates: Vec<f64> = rounds
        .iter()
        .flat_map(|r| r.seen.updates.values())
        .filter_map(|(count, first, last)| {
            let span = (*last)?.duration_since((*first)?).as_secs_f64();
            // Updates between the first and the last: count − 1 gaps.
            (span > 0.0 && *count > 1).then(|| (*count - 1) as f64 / span)
        })
        .collect();
    per_run_rates.sort_by(f64::total_cmp);
    println!(
        "{RUNS} runs × {CHUNKS} chunks ({:.0} chunks/s offered), 3 rounds",
        chunks as f64 / round.wall.as_secs_f64()
    );
    println!(
        "  server CPU per chunk: runboard {runboard_us:.1} µs (rounds {}), bare reqwest read \
         {bare_us:.1} µs (rounds {}): {:.1}× the floor; {:.1} ms per run",
        per_chunk
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
        bare.iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
        runboard_us / bare_us.max(1e-9),
        runboard_us * CHUNKS as f64 / 1000.0
    );
    println!(
        "  node_update per run per second: median {:.1}, max {:.1}",
        per_run_rates
            .get(per_run_rates.len() / 2)
            .copied()
            .unwrap_or(0.0),
        per_run_rates.last().copied().unwrap_or(0.0),
    );
    println!(
        "  chunk written → node_update read ({} updates): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        freshness.len(),
        percentile(&freshness, 0.5) as f64 / 1000.0,
        percentile(&freshness, 0.99) as f64 / 1000.0,
        freshness.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}
