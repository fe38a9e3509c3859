//! Several servers on one PostgreSQL database against one server on SQLite, side by side, with
//! the same load: 256 runs generating at once and 64 subscribers on `/api/events`, over real
//! HTTP on loopback. With three instances the runs are launched on each in turn and the
//! subscribers spread over them, so two thirds of what each subscriber reads was written by
//! another instance and reached it through a notification and a read of the store.
//!
//! Reports, per setup: events stored per second, events per second delivered to the slowest
//! subscriber, and emit→receipt latency (the `ts` a `node_update` carries, sampled on one in
//! sixteen) p50/p99. The setups alternate (SQLite, PostgreSQL, SQLite, PostgreSQL, …) so drift
//! in the machine's load shows between rounds, not between setups; medians are printed last.
//!
//! Needs a PostgreSQL server: `eval "$(scripts/postgres.sh start)"` exports
//! `RUNBOARD_TEST_POSTGRES`, then `cargo bench -p runboard-server --bench shared_store`.
//! Everything (instances, PostgreSQL, subscribers) shares this machine's cores.

mod common;

use std::time::Instant;

use runboard_api::{ApiClient, CreateRun, RunMode};
use runboard_server::{
    DbLocation, GeneratorConfig, RunLimits, RunningServer, ServerConfig, StoreSettings,
};
use serde_json::json;
use sqlx::Connection as _;

use common::subscriber::{Subscriber, subscribe};
use common::{median, percentile};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 256;
const SUBSCRIBERS: usize = 64;

fn config(db: DbLocation, runs: usize, speed: f64, name: &str) -> ServerConfig {
    let mut config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        generator: GeneratorConfig {
            seed: Some(1),
            speed,
            failure_rate: 0.0,
        },
        store: StoreSettings {
            db,
            instance_name: Some(name.to_owned()),
            ..StoreSettings::default()
        },
        runs: RunLimits {
            concurrency: runs,
            ..RunLimits::default()
        },
        ..ServerConfig::default()
    };
    config.events.broadcast_capacity = 16 * 1024;
    config
}

/// What one round measured.
struct Round {
    stored_per_sec: f64,
    slowest_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[allow(clippy::cast_precision_loss)]
async fn round(servers: &[RunningServer], iterations: u64) -> Round {
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    let mut subscribers = tokio::task::JoinSet::new();
    for index in 0..SUBSCRIBERS {
        let url = format!("{}/api/events", servers[index % servers.len()].url());
        subscribers.spawn(subscribe(url, ready_tx.clone(), RUNS, 16));
    }
    for _ in 0..SUBSCRIBERS {
        ready.recv().await.unwrap();
    }
    let apis: Vec<ApiClient> = servers
        .iter()
        .map(|server| ApiClient::new(&server.url(), None).unwrap())
        .collect();
    let started = Instant::now();
    let mut launches = tokio::task::JoinSet::new();
    for index in 0..RUNS {
        let api = apis[index % apis.len()].clone();
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
    let total = results.iter().map(|s| s.events).max().unwrap_or(0);
    let slowest = results
        .iter()
        .map(Subscriber::rate)
        .fold(f64::INFINITY, f64::min);
    let mut latencies: Vec<u64> = results
        .iter()
        .flat_map(|s| s.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    Round {
        stored_per_sec: total as f64 / wall.as_secs_f64(),
        slowest_per_sec: slowest,
        p50_ms: percentile(&latencies, 0.5) as f64 / 1000.0,
        p99_ms: percentile(&latencies, 0.99) as f64 / 1000.0,
    }
}

async fn sqlite_round(speed: f64, iterations: u64) -> Round {
    let dir = tempfile::tempdir().unwrap();
    let server = runboard_server::start(config(
        DbLocation::File(dir.path().join("bench.db")),
        RUNS,
        speed,
        "sqlite",
    ))
    .await
    .unwrap();
    let result = round(std::slice::from_ref(&server), iterations).await;
    server.stop().await;
    result
}

async fn postgres_round(base: &str, label: &str, speed: f64, iterations: u64) -> Round {
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .expect("the PostgreSQL server of RUNBOARD_TEST_POSTGRES cannot be reached");
    let name = format!("rb_bench_{label}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("{base}/{name}");
    let mut servers = Vec::new();
    for index in 0..3 {
        // Each instance generates a third of the runs at once.
        servers.push(
            runboard_server::start(config(
                DbLocation::Url(url.clone()),
                RUNS.div_ceil(3),
                speed,
                &format!("bench-{index}"),
            ))
            .await
            .unwrap(),
        );
    }
    let result = round(&servers, iterations).await;
    for server in servers {
        server.stop().await;
    }
    result
}

fn print(label: &str, round: &Round) {
    println!(
        "  {label}: {:.0} events/s stored, slowest subscriber {:.0} events/s, latency p50 \
         {:.1} ms p99 {:.1} ms",
        round.stored_per_sec, round.slowest_per_sec, round.p50_ms, round.p99_ms
    );
}

fn main() {
    let Some(base) = std::env::var("RUNBOARD_TEST_POSTGRES")
        .ok()
        .map(|url| url.trim_end_matches('/').to_owned())
    else {
        eprintln!(
            "this benchmark needs a PostgreSQL server: eval \"$(scripts/postgres.sh start)\" \
             first (it exports RUNBOARD_TEST_POSTGRES)"
        );
        std::process::exit(2);
    };
    let env = |name: &str, default: f64| -> f64 {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    // Paces: 8 offers about 5 000 events/s (both setups keep up: latency is the delivery
    // path's), 32 about 20 000 (more than two cores keep up with: throughput).
    let speeds: Vec<f64> = std::env::var("RUNBOARD_BENCH_SPEEDS")
        .unwrap_or_else(|_| "8,32".to_owned())
        .split(',')
        .filter_map(|speed| speed.trim().parse().ok())
        .collect();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let iterations = env("RUNBOARD_BENCH_ITERATIONS", 4.0) as u64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rounds = env("RUNBOARD_BENCH_ROUNDS", 3.0) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for speed in speeds {
        compare(&runtime, &base, speed, iterations, rounds);
    }
}

/// Rounds of one setup and then the other at one pace, and the medians.
fn compare(
    runtime: &tokio::runtime::Runtime,
    base: &str,
    speed: f64,
    iterations: u64,
    rounds: usize,
) {
    println!(
        "{RUNS} runs ({iterations} iterations, generator speed {speed}), {SUBSCRIBERS} \
         subscribers; {rounds} rounds, alternating"
    );
    let mut sqlite = Vec::new();
    let mut postgres = Vec::new();
    for index in 0..rounds {
        println!("round {}:", index + 1);
        let one = runtime.block_on(sqlite_round(speed, iterations));
        print("1 instance on SQLite      ", &one);
        sqlite.push(one);
        let label = format!("{index}_{}", speed.round());
        let three = runtime.block_on(postgres_round(base, &label, speed, iterations));
        print("3 instances on PostgreSQL", &three);
        postgres.push(three);
    }
    for (label, rounds) in [
        ("1 instance on SQLite      ", &sqlite),
        ("3 instances on PostgreSQL", &postgres),
    ] {
        let pick = |get: fn(&Round) -> f64| median(rounds.iter().map(get).collect());
        print(
            &format!("median, {label}"),
            &Round {
                stored_per_sec: pick(|r| r.stored_per_sec),
                slowest_per_sec: pick(|r| r.slowest_per_sec),
                p50_ms: pick(|r| r.p50_ms),
                p99_ms: pick(|r| r.p99_ms),
            },
        );
    }
}
