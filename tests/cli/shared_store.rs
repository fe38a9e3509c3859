//! `runboard serve` processes sharing one PostgreSQL database, hurt the ways real fleets are:
//! an instance killed with SIGKILL mid-run (its runs are failed by another once its lease
//! expires, the others go on), an instance frozen past its lease and then thawed (it does not
//! finish the runs taken from it a second time), and PostgreSQL itself stopped and started
//! again mid-run (nothing is lost; `/api/health` says what is going on meanwhile). Needs
//! `RUNBOARD_TEST_POSTGRES` (and for the restart, `scripts/postgres.sh`, which starts a
//! private cluster); without it these say so and pass, unless `RUNBOARD_REQUIRE_POSTGRES` is set.

use crate::support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use runboard_api::{ApiClient, CreateRun, RunDetail, RunMode, RunStatus};
use runboard_sse::{ConnectionState, EventSource, ReconnectPolicy, Update};
use serde_json::{Value, json};
use support::test_server::{create_database, postgres_base};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_runboard");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fresh_database(base: Option<String>, label: &str) -> Option<String> {
    let base = postgres_or_skip(base, label)?;
    let mut rng = runboard_server::rng::SplitMix64::from_entropy();
    Some(create_database(
        &base,
        &format!("rb_{label}_{:08x}", rng.next_u64() >> 32),
    ))
}

fn postgres_or_skip(base: Option<String>, label: &str) -> Option<String> {
    let Some(base) = base else {
        assert!(
            std::env::var("RUNBOARD_REQUIRE_POSTGRES")
                .unwrap_or_default()
                .is_empty(),
            "RUNBOARD_REQUIRE_POSTGRES is set but RUNBOARD_TEST_POSTGRES is not"
        );
        eprintln!(
            "note: RUNBOARD_TEST_POSTGRES is not set; the shared-store test {label} is skipped"
        );
        return None;
    };
    Some(base)
}

/// An instance of `runboard serve` on the shared database, up and answering.
struct Instance {
    child: Child,
    url: String,
}

impl Instance {
    async fn start(db: &str, name: &str) -> Self {
        let port = free_port();
        let child = Command::new(BIN)
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--instance-name", name, "--lease-secs", "2", "--seed", "5"])
            .args(["--failure-rate", "0", "--retry-ms", "100"])
            .env("RUNBOARD_DB", db)
            .env_remove("RUNBOARD_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let health = format!("{url}/api/health");
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Ok(response) = runboard_sse::http::client().get(&health).send().await
                    && response.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("runboard serve did not come up");
        Self { child, url }
    }

    fn api(&self) -> ApiClient {
        ApiClient::new(&self.url, None).unwrap()
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

async fn launch(api: &ApiClient, params: Value) -> String {
    api.create_run(&CreateRun {
        task: "shared store process test".into(),
        mode: RunMode::Queued,
        params,
    })
    .await
    .unwrap()
    .summary
    .run_id
}

async fn wait_for(
    api: &ApiClient,
    run_id: &str,
    limit: Duration,
    done: impl Fn(&RunDetail) -> bool,
) -> RunDetail {
    tokio::time::timeout(limit, async {
        loop {
            if let Ok(detail) = api.run(run_id).await
                && done(&detail)
            {
                return detail;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("run {run_id} did not get there within {limit:?}"))
}

fn count(detail: &RunDetail, event: &str) -> usize {
    detail
        .events
        .iter()
        .filter(|stored| stored.event == event)
        .count()
}

#[tokio::test]
async fn a_killed_instance_runs_are_failed_after_its_lease_and_the_others_go_on() {
    let Some(db) = fresh_database(postgres_base(), "kill") else {
        return;
    };
    let mut doomed = Instance::start(&db, "doomed").await;
    let survivor = Instance::start(&db, "survivor").await;
    let slow = json!({"iterations": 8, "tokens_per_sec": 6});
    let lost: Vec<String> = vec![
        launch(&doomed.api(), slow.clone()).await,
        launch(&doomed.api(), slow.clone()).await,
    ];
    let kept = launch(
        &survivor.api(),
        json!({"iterations": 2, "tokens_per_sec": 40}),
    )
    .await;
    for run in &lost {
        wait_for(&survivor.api(), run, Duration::from_secs(20), |detail| {
            detail.summary.status == RunStatus::Running && detail.summary.tokens_out > 0
        })
        .await;
    }
    doomed.child.start_kill().unwrap();
    let _ = doomed.child.wait().await;

    for run in &lost {
        let failed = wait_for(&survivor.api(), run, Duration::from_secs(20), |detail| {
            detail.summary.status.is_finished()
        })
        .await;
        assert_eq!(failed.summary.status, RunStatus::Failed);
        let error = failed
            .events
            .iter()
            .find(|stored| stored.event == "error")
            .expect("an error event");
        let message = error.data["message"].as_str().unwrap();
        assert!(
            message.contains("instance doomed") && message.contains("lease of 2 s expired"),
            "{message}"
        );
        assert_eq!(count(&failed, "stream_end"), 1);
    }
    let finished = wait_for(&survivor.api(), &kept, Duration::from_secs(60), |detail| {
        detail.summary.status.is_finished()
    })
    .await;
    assert_eq!(finished.summary.status, RunStatus::Completed);
    let health = survivor.api().health().await.unwrap();
    let doomed_state = health
        .instances
        .iter()
        .find(|instance| instance.name == "doomed")
        .expect("the dead instance is listed");
    assert_eq!(doomed_state.state, "expired");
}

#[tokio::test]
async fn an_instance_frozen_past_its_lease_does_not_finish_its_runs_again() {
    let Some(db) = fresh_database(postgres_base(), "freeze") else {
        return;
    };
    let sleeper = Instance::start(&db, "sleeper").await;
    let watcher = Instance::start(&db, "watcher").await;
    let run = launch(
        &sleeper.api(),
        json!({"iterations": 8, "tokens_per_sec": 8}),
    )
    .await;
    wait_for(&watcher.api(), &run, Duration::from_secs(20), |detail| {
        detail.summary.tokens_out > 0
    })
    .await;
    sleeper.signal("-STOP");
    let failed = wait_for(&watcher.api(), &run, Duration::from_secs(20), |detail| {
        detail.summary.status.is_finished()
    })
    .await;
    sleeper.signal("-CONT");
    assert_eq!(failed.summary.status, RunStatus::Failed);
    // Thawed, it writes what it held and its heartbeat finds it was taken over: nothing of
    // the run is written by it any more.
    let back = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(health) = sleeper.api().health().await
                && health
                    .instances
                    .iter()
                    .any(|instance| instance.this && instance.state == "alive")
            {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the thawed instance did not come back");
    assert!(
        back.instances
            .iter()
            .any(|instance| instance.name == "watcher")
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = watcher.api().run(&run).await.unwrap();
    assert_eq!(after.summary.status, RunStatus::Failed);
    assert_eq!(count(&after, "stream_end"), 1, "{:?}", after.events);
    assert_eq!(after.events.last().unwrap().event, "stream_end");
    let seqs: Vec<u64> = after.events.iter().map(|stored| stored.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

/// Reads a stream that lived through the outage until every run ended: the ids it carried,
/// after checking it was told the store went away and came back (`store_status`).
async fn follow_through_the_outage(follower: &mut EventSource, runs: &HashSet<String>) -> Vec<u64> {
    let mut ended = HashSet::new();
    let mut ids = Vec::new();
    let mut store_states = Vec::new();
    tokio::time::timeout(Duration::from_secs(90), async {
        while !runs.is_subset(&ended) {
            if let Some(Update::Event(event)) = follower.next().await {
                let data: Value = serde_json::from_str(&event.data).unwrap();
                match event.event.as_str() {
                    // Told to every subscriber, without an id, as the store comes and goes.
                    "store_status" => {
                        store_states.push(data["writable"].as_bool().unwrap());
                        continue;
                    }
                    "stream_end" => {
                        ended.insert(data["run_id"].as_str().unwrap().to_owned());
                    }
                    _ => {}
                }
                ids.push(event.id.parse::<u64>().unwrap());
            }
        }
    })
    .await
    .expect("not every run ended after PostgreSQL came back");
    // The held events are published as soon as they are stored; the stream's word that the
    // store is writable again may follow them by a moment.
    if store_states.last() != Some(&true) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while store_states.last() != Some(&true) {
                if let Some(Update::Event(event)) = follower.next().await
                    && event.event == "store_status"
                {
                    let data: Value = serde_json::from_str(&event.data).unwrap();
                    store_states.push(data["writable"].as_bool().unwrap());
                }
            }
        })
        .await
        .expect("the stream never said the store was writable again");
    }
    assert!(
        store_states.first() == Some(&false) && store_states.last() == Some(&true),
        "{store_states:?}"
    );
    ids
}

/// Reads until the stream is open.
pub async fn wait_open(source: &mut EventSource) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(
            source.next().await,
            Some(Update::State(ConnectionState::Open))
        ) {}
    })
    .await
    .expect("the stream did not open");
}

/// A private PostgreSQL cluster (this test stops and starts it).
struct Cluster {
    dir: String,
    url: String,
}

impl Cluster {
    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres.sh")
    }

    fn start() -> Self {
        let output = std::process::Command::new(Self::script())
            .arg("start")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let exports = String::from_utf8(output.stdout).unwrap();
        let value = |name: &str| {
            exports
                .lines()
                .find_map(|line| line.strip_prefix(&format!("export {name}=")))
                .unwrap()
                .to_owned()
        };
        Self {
            dir: value("RUNBOARD_TEST_PG_DIR"),
            url: value("RUNBOARD_TEST_POSTGRES"),
        }
    }

    fn run(&self, command: &str) {
        let status = std::process::Command::new(Self::script())
            .args([command, &self.dir])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "postgres.sh {command} failed");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.run("stop");
    }
}

#[tokio::test]
async fn postgresql_restarted_mid_run_loses_nothing_and_health_says_so() {
    if postgres_or_skip(postgres_base(), "restart").is_none() {
        return;
    }
    let cluster = Cluster::start();
    let db = create_database(&cluster.url, "runboard");
    let a = Instance::start(&db, "left").await;
    let b = Instance::start(&db, "right").await;
    let policy = ReconnectPolicy {
        initial_retry: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        healthy_after: Duration::from_secs(5),
        jitter: 0.3,
        max_reconnects: None,
    };
    let mut followers: Vec<EventSource> = [&a, &b]
        .iter()
        .map(|instance| {
            EventSource::builder(&format!("{}/api/events", instance.url))
                .unwrap()
                .reconnect(policy.clone())
                .build()
                .unwrap()
        })
        .collect();
    // Connected (an EventSource connects when first read) and following before anything runs,
    // so the outage happens under live streams.
    for follower in &mut followers {
        wait_open(follower).await;
    }
    let params = json!({"iterations": 2, "tokens_per_sec": 25});
    let mut runs = HashSet::new();
    for _ in 0..2 {
        runs.insert(launch(&a.api(), params.clone()).await);
        runs.insert(launch(&b.api(), params.clone()).await);
    }
    for run in &runs {
        wait_for(&a.api(), run, Duration::from_secs(20), |detail| {
            detail.summary.tokens_out > 0
        })
        .await;
    }

    cluster.run("halt");
    // While it is down, health says so (the heartbeat cannot reach it, writes are held).
    let degraded = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let health = a.api().health().await.unwrap();
            if health.status == "degraded" {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("health never said the database was gone");
    let store = degraded.store.unwrap();
    assert!(!store.writable);
    assert!(store.error.is_some_and(|error| !error.is_empty()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.run("resume");

    let mut seen = Vec::new();
    for follower in &mut followers {
        seen.push(follow_through_the_outage(follower, &runs).await);
    }
    let mut total = 0;
    for run in &runs {
        let detail = a.api().run(run).await.unwrap();
        assert_eq!(detail.summary.status, RunStatus::Completed, "{run}");
        let seqs: Vec<u64> = detail.events.iter().map(|stored| stored.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        assert_eq!(count(&detail, "stream_end"), 1);
        total += detail.events.len();
    }
    for ids in &seen {
        assert_eq!(*ids, (1..=total as u64).collect::<Vec<_>>());
    }
    let health = b.api().health().await.unwrap();
    assert_eq!(health.status, "ok");
}
