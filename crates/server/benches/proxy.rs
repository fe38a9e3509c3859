//! What the proxy under `/v1` adds to a worker's stream: 64 streaming chat completions at once
//! from a scripted upstream that writes a chunk every 20 ms (100 per stream, each carrying the
//! time it was written), read by clients directly from the upstream and through runboard, side
//! by side in one run (rounds alternate, three of each).
//!
//! Reports, for direct and proxied reads: time to first byte (request sent → first body bytes;
//! the upstream writes its first chunk at once) and each chunk's delay (written → read by the
//! client), p50 and p99, and what the proxy adds (proxied − direct, per round, then the median);
//! and runboard's CPU time (its runtime's threads and SQLite's) per chunk passed on. Four
//! runtimes with named threads keep the upstream's and the clients' work out of runboard's.
//!
//! `cargo bench --bench proxy`. Everything shares this machine's cores.

mod common;

use std::time::{Duration, Instant};

use runboard_server::{DbLocation, ServerConfig, StoreSettings, UpstreamSpec};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};

use common::upstream_wire::{micros_now, read_request};
use common::{median, percentile, runtime, threads_cpu_secs};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STREAMS: usize = 64;
const CHUNKS: usize = 100;
const GAP: Duration = Duration::from_millis(20);
const ROUNDS: usize = 3;

/// One connection of the upstream: the model list, or a stream whose chunks carry the time
/// they were written; the first at once, then one every [`GAP`].
async fn serve_upstream(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
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
    let start = tokio::time::Instant::now();
    for n in 0..CHUNKS {
        tokio::time::sleep_until(start + GAP * u32::try_from(n).unwrap_or(0)).await;
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

/// Which of a round's measurements a line reports.
type Pick = fn(&Round) -> &Vec<u64>;

/// What the clients measured in one round.
#[derive(Default)]
struct Round {
    ttfb_us: Vec<u64>,
    delay_us: Vec<u64>,
    chunks: usize,
    runboard_cpu: f64,
}

/// One client: sends the request, notes when the first body bytes come, and for every chunk
/// the time from its writing to its reading.
async fn client(http: reqwest::Client, url: String, wait: Duration) -> (u64, Vec<u64>) {
    tokio::time::sleep(wait).await;
    let body =
        r#"{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"go"}]}"#;
    let sent = Instant::now();
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let mut ttfb = None;
    let mut delays = Vec::with_capacity(CHUNKS);
    let mut pending = String::new();
    while let Some(Ok(bytes)) = futures_util::StreamExt::next(&mut stream).await {
        let now = micros_now();
        ttfb.get_or_insert_with(|| u64::try_from(sent.elapsed().as_micros()).unwrap_or(0));
        pending.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(at) = pending.find("\n\n") {
            let frame: String = pending.drain(..at + 2).collect();
            if let Some(written) = frame
                .split("\"content\":\"")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|t| t.parse::<u64>().ok())
            {
                delays.push(now.saturating_sub(written));
            }
        }
    }
    (ttfb.unwrap_or(0), delays)
}

fn round(
    client_rt: &tokio::runtime::Runtime,
    url: &str,
    cpu_threads: &[&str],
    stagger: Duration,
) -> Round {
    client_rt.block_on(async {
        let http = runboard_sse::http::client_builder()
            .pool_max_idle_per_host(STREAMS)
            .build()
            .unwrap();
        let cpu_before = threads_cpu_secs(cpu_threads);
        let mut clients = tokio::task::JoinSet::new();
        for n in 0..STREAMS {
            let wait = stagger * u32::try_from(n).unwrap_or(0);
            clients.spawn(client(http.clone(), url.to_owned(), wait));
        }
        let mut round = Round::default();
        for (ttfb, delays) in clients.join_all().await {
            round.ttfb_us.push(ttfb);
            round.chunks += delays.len();
            round.delay_us.extend(delays);
        }
        round.runboard_cpu = threads_cpu_secs(cpu_threads) - cpu_before;
        round.ttfb_us.sort_unstable();
        round.delay_us.sort_unstable();
        round
    })
}

#[allow(clippy::cast_precision_loss)]
fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
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
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        store: StoreSettings {
            db: DbLocation::File(dir.path().join("bench.db")),
            ..StoreSettings::default()
        },
        ..ServerConfig::default()
    };
    config
        .upstreams
        .upstreams
        .push(UpstreamSpec::parse(&format!("bench=http://{upstream}/v1"), |_| None).unwrap());
    let running = server_rt.block_on(runboard_server::start(config)).unwrap();
    let direct_url = format!("http://{upstream}/v1/chat/completions");
    let proxied_url = format!("{}/v1/chat/completions", running.url());
    let runboard_threads = ["bench-server", "runboard-writer", "sqlx-sqlite"];

    // All 64 sent at the same instant; then the same 64 streams with their requests 10 ms
    // apart, so each arrives while the others stream (what a fleet's steady traffic is like).
    let mut scenarios = Vec::new();
    for (name, stagger) in [
        ("all 64 sent at once", Duration::ZERO),
        ("sent 10 ms apart", Duration::from_millis(10)),
    ] {
        let mut direct = Vec::new();
        let mut proxied = Vec::new();
        for _ in 0..ROUNDS {
            direct.push(round(&client_rt, &direct_url, &runboard_threads, stagger));
            proxied.push(round(&client_rt, &proxied_url, &runboard_threads, stagger));
        }
        scenarios.push((name, direct, proxied));
    }
    server_rt.block_on(running.stop());

    let figure = |rounds: &[Round], pick: fn(&Round) -> &Vec<u64>, fraction: f64| -> Vec<f64> {
        rounds
            .iter()
            .map(|r| ms(percentile(pick(r), fraction)))
            .collect()
    };
    println!(
        "{STREAMS} streams × {CHUNKS} chunks {} ms apart; {ROUNDS} rounds each, alternating \
         direct and proxied; figures in ms, medians of the rounds (rounds in brackets)",
        GAP.as_millis()
    );
    let picks: [(&str, Pick); 2] = [
        ("time to first byte", |r| &r.ttfb_us),
        ("chunk delay", |r| &r.delay_us),
    ];
    for (scenario, direct, proxied) in &scenarios {
        println!("{scenario}:");
        for (name, pick) in picks {
            for (label, fraction) in [("p50", 0.5), ("p99", 0.99)] {
                let d = figure(direct, pick, fraction);
                let p = figure(proxied, pick, fraction);
                let added: Vec<f64> = d.iter().zip(&p).map(|(d, p)| p - d).collect();
                println!(
                    "  {name} {label}: direct {:.2} [{}], proxied {:.2} [{}], added {:.2} [{}]",
                    median(d.clone()),
                    list(&d),
                    median(p.clone()),
                    list(&p),
                    median(added.clone()),
                    list(&added)
                );
            }
        }
        let chunks: Vec<usize> = proxied.iter().map(|r| r.chunks).collect();
        let cpu_per_chunk: Vec<f64> = proxied
            .iter()
            .map(|r| r.runboard_cpu * 1e6 / r.chunks.max(1) as f64)
            .collect();
        let idle_cpu: Vec<f64> = direct
            .iter()
            .map(|r| r.runboard_cpu * 1e6 / r.chunks.max(1) as f64)
            .collect();
        println!(
            "  runboard CPU per chunk passed on: {:.1} µs [{}] (idle during the direct rounds: \
             {:.1} µs per chunk [{}]); chunks read per proxied round: {chunks:?}",
            median(cpu_per_chunk.clone()),
            list(&cpu_per_chunk),
            median(idle_cpu.clone()),
            list(&idle_cpu)
        );
    }
}
