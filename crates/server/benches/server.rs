//! The reference server under load: 256 runs generating at once, 64 subscribers on
//! `/api/events`, everything over real HTTP on loopback with a real SQLite file.
//!
//! Three phases: the generator paced to about 20 000 events/s (the goal), paced far faster
//! than the server can go (saturation), and low load (about 800 events/s to 64 subscribers),
//! run with the stream flush window off and on, side by side, to show what coalescing each
//! subscriber's frames into one write saves: the server's CPU time per delivery (its own
//! threads only, read from `/proc`), and latency p50/p99. Each reports events persisted per second, events per
//! second delivered to each subscriber (the slowest and the median), and latency from emit (the
//! `ts` a `node_update` carries) to receipt, sampled on one `node_update` in sixteen.
//!
//! `cargo bench --bench server`. Server and subscribers share this machine's cores, so the
//! figures are a floor for a server with its own machine.

mod common;

use std::time::{Duration, Instant};

use runboard_api::{ApiClient, CreateRun, RunMode};
use runboard_server::{DbLocation, GeneratorConfig, RunLimits, ServerConfig, StoreSettings};
use serde_json::json;

// The same allocator as the `runboard` binary, so the figures are the product's.
use common::subscriber::{Subscriber, subscribe};
use common::{percentile, threads_cpu_secs};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 256;
const SUBSCRIBERS: usize = 64;

/// A server on a free loopback port with a fresh SQLite file, `runs` at once, seeded runs that
/// never fail, paced at `speed`.
fn bench_config(dir: &tempfile::TempDir, runs: usize, speed: f64) -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        generator: GeneratorConfig {
            seed: Some(1),
            speed,
            failure_rate: 0.0,
        },
        store: StoreSettings {
            db: DbLocation::File(dir.path().join("bench.db")),
            ..StoreSettings::default()
        },
        runs: RunLimits {
            concurrency: runs,
            ..RunLimits::default()
        },
        ..ServerConfig::default()
    }
}

#[allow(clippy::cast_precision_loss)]
async fn phase(label: &str, speed: f64, iterations: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = bench_config(&dir, RUNS, speed);
    config.events.broadcast_capacity = 16 * 1024;
    let running = runboard_server::start(config).await.unwrap();
    let url = format!("{}/api/events", running.url());
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    let mut subscribers = tokio::task::JoinSet::new();
    for _ in 0..SUBSCRIBERS {
        subscribers.spawn(subscribe(url.clone(), ready_tx.clone(), RUNS, 16));
    }
    for _ in 0..SUBSCRIBERS {
        ready.recv().await.unwrap();
    }
    let api = ApiClient::new(&running.url(), None).unwrap();
    let started = Instant::now();
    let mut launches = tokio::task::JoinSet::new();
    for _ in 0..RUNS {
        let api = api.clone();
        launches.spawn(async move {
            api.create_run(&CreateRun {
                task: "benchmark".into(),
                mode: RunMode::Queued,
                params: json!({"iterations": iterations}),
            })
            .await
            .unwrap();
        });
    }
    launches.join_all().await;
    let results = subscribers.join_all().await;
    let wall = started.elapsed();
    running.stop().await;

    let total = results.iter().map(|s| s.events).max().unwrap_or(0);
    let mut rates: Vec<f64> = results.iter().map(Subscriber::rate).collect();
    rates.sort_by(f64::total_cmp);
    let mut latencies: Vec<u64> = results
        .iter()
        .flat_map(|s| s.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    println!("{label} (generator speed {speed}):");
    println!(
        "  {total} events from {RUNS} runs in {:.2} s: {:.0} events/s persisted",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64()
    );
    println!(
        "  delivered to each of {SUBSCRIBERS} subscribers: slowest {:.0} events/s, median {:.0} \
         events/s ({:.0} deliveries/s in all)",
        rates.first().copied().unwrap_or(0.0),
        rates[rates.len() / 2],
        rates.iter().sum::<f64>()
    );
    println!(
        "  emit→receive latency over {} samples: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 0.5) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}

/// Runs at low load: 32 runs paced to about 800 events/s in all, 64 subscribers. The server
/// has its own runtime (threads named `bench-server`), so its CPU time is told apart from the
/// subscribers'.
#[allow(clippy::cast_precision_loss)]
fn low_load(
    client_runtime: &tokio::runtime::Runtime,
    flush_window: Duration,
    speed: f64,
    subscribers_count: usize,
) {
    const LOW_RUNS: usize = 32;
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = bench_config(&dir, LOW_RUNS, speed);
    config.events.streams.flush_window = flush_window;
    let running = server_runtime
        .block_on(runboard_server::start(config))
        .unwrap();
    let url = format!("{}/api/events", running.url());
    let server_threads = ["bench-server", "runboard-writer", "sqlx-sqlite"];
    let (wall, cpu, results) = client_runtime.block_on(async {
        let (ready_tx, mut ready) = tokio::sync::mpsc::channel(subscribers_count);
        let mut subscribers = tokio::task::JoinSet::new();
        for _ in 0..subscribers_count {
            subscribers.spawn(subscribe(url.clone(), ready_tx.clone(), LOW_RUNS, 1));
        }
        for _ in 0..subscribers_count {
            ready.recv().await.unwrap();
        }
        let api = ApiClient::new(&running.url(), None).unwrap();
        let cpu_before = threads_cpu_secs(&server_threads);
        let started = Instant::now();
        for _ in 0..LOW_RUNS {
            api.create_run(&CreateRun {
                task: "benchmark".into(),
                mode: RunMode::Queued,
                params: json!({"iterations": 3}),
            })
            .await
            .unwrap();
        }
        let results = subscribers.join_all().await;
        let wall = started.elapsed();
        (
            wall,
            threads_cpu_secs(&server_threads) - cpu_before,
            results,
        )
    });
    server_runtime.block_on(running.stop());
    let events = results.iter().map(|s| s.events).max().unwrap_or(0);
    let deliveries: usize = results.iter().map(|s| s.events).sum();
    let mut latencies: Vec<u64> = results
        .iter()
        .flat_map(|s| s.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    println!(
        "low load, {subscribers_count} subscribers, flush window {} ms: {events} events in \
         {:.2} s ({:.0} events/s offered), {deliveries} deliveries",
        flush_window.as_millis(),
        wall.as_secs_f64(),
        events as f64 / wall.as_secs_f64()
    );
    println!(
        "  server CPU {:.2} s: {:.1} µs per delivery; latency over {} samples: p50 {:.1} ms, \
         p99 {:.1} ms",
        cpu,
        cpu * 1e6 / deliveries.max(1) as f64,
        latencies.len(),
        percentile(&latencies, 0.5) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let env = |name: &str, default: f64| -> f64 {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    // Speed 32 paces 256 runs at a little over 20 000 events/s; 8 iterations keep each phase
    // long enough (several seconds) that ramp-up and the last runs' tail barely count.
    let speed = env("RUNBOARD_BENCH_SPEED", 32.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let iterations = env("RUNBOARD_BENCH_ITERATIONS", 8.0) as u64;
    // `RUNBOARD_BENCH_PHASES=low` runs only the low-load comparison.
    let phases = std::env::var("RUNBOARD_BENCH_PHASES").unwrap_or_else(|_| "all".into());
    if phases != "low" {
        runtime.block_on(async {
            phase("paced at about 20 000 events/s", speed, iterations).await;
            phase("saturated", 1000.0, iterations).await;
        });
    }
    // Speed 7.2 paces 32 runs at about 800 events/s. Off and on alternate, twice, so drift in
    // the machine's load shows as a difference between the rounds rather than between modes.
    let low_speed = env("RUNBOARD_BENCH_LOW_SPEED", 7.2);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let window = Duration::from_millis(env(
        "RUNBOARD_BENCH_WINDOW_MS",
        runboard_server::DEFAULT_FLUSH_WINDOW.as_secs_f64() * 1000.0,
    ) as u64);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let low_subscribers = env("RUNBOARD_BENCH_LOW_SUBSCRIBERS", 64.0) as usize;
    for _ in 0..2 {
        low_load(&runtime, Duration::ZERO, low_speed, low_subscribers);
        low_load(&runtime, window, low_speed, low_subscribers);
    }
}
