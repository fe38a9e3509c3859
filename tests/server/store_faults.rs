//! The store under faults, on real files and a real filesystem: a disk that fills up mid-run
//! and empties again, databases that are read-only, not databases, or damaged, a stop under
//! load, kill -9 during restart recovery, and retention removing finished runs.

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runboard_api::{ApiClient, CreateRun, Health, RunMode, RunStatus};
use runboard_server::{self as server, DbLocation, RunningServer, ServerError};
use runboard_sse::{EventSource, ReconnectPolicy, Update};
use serde_json::{Value, json};
// SQLite files are what these tests break; PostgreSQL's outage is tests/cli/shared_store.rs's.
use support::test_server::{client, db_path, sqlite_config as config, start, wait_finished};
use support::tmpfs::Tmpfs;
use tokio::sync::mpsc;

fn run_request(params: Value) -> CreateRun {
    CreateRun {
        task: "fault test".into(),
        mode: RunMode::Queued,
        params,
    }
}

/// What one `/api/events` subscriber saw: events by id, and every `store_status` it was told.
#[derive(Debug, Default)]
struct Seen {
    events: BTreeMap<u64, (String, String)>,
    duplicates: usize,
    store_status: Vec<Value>,
}

/// Follows `/api/events` from the start, in a task, reporting what it saw on request.
fn subscribe(server: &RunningServer) -> mpsc::UnboundedReceiver<(String, String, String)> {
    let url = format!("{}/api/events", server.url());
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut source = EventSource::builder(&url)
            .unwrap()
            .reconnect(ReconnectPolicy {
                initial_retry: Duration::from_millis(20),
                max_delay: Duration::from_millis(100),
                healthy_after: Duration::from_secs(5),
                jitter: 0.0,
                max_reconnects: Some(0),
            })
            .build()
            .unwrap();
        while let Some(update) = source.next().await {
            if let Update::Event(event) = update
                && sender.send((event.id, event.event, event.data)).is_err()
            {
                return;
            }
        }
    });
    receiver
}

fn drain(receiver: &mut mpsc::UnboundedReceiver<(String, String, String)>, seen: &mut Seen) {
    while let Ok((id, event, data)) = receiver.try_recv() {
        if event == "store_status" {
            seen.store_status.push(serde_json::from_str(&data).unwrap());
            continue;
        }
        let id: u64 = id.parse().unwrap();
        if seen.events.insert(id, (event, data)).is_some() {
            seen.duplicates += 1;
        }
    }
}

/// Every event in the store, by global id, read back through `/api/events` from the start.
async fn stored(server: &RunningServer) -> BTreeMap<u64, (String, String)> {
    let head = client(server).health().await.unwrap().events_head.unwrap();
    let mut receiver = subscribe(server);
    let mut events = BTreeMap::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while events.keys().next_back().copied().unwrap_or(0) < head {
            let (id, event, data) = receiver.recv().await.unwrap();
            if event != "store_status" {
                events.insert(id.parse().unwrap(), (event, data));
            }
        }
    })
    .await
    .expect("the store's events were not all replayed");
    events
}

async fn wait_health(api: &ApiClient, what: &str, wanted: impl Fn(&Health) -> bool) -> Health {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(health) = api.health().await
                && wanted(&health)
            {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("health never became {what}"))
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // One story: full, room again, full and stopped, restarted.
async fn a_full_disk_refuses_new_runs_holds_running_ones_publishes_nothing_unstored_and_never_reuses_ids()
 {
    let Some(disk) = Tmpfs::mount("16m") else {
        return;
    };
    let mut settings = config(&tempfile::tempdir().unwrap());
    settings.store.db = DbLocation::File(disk.path().join("runs.db"));
    settings.generator.speed = 20.0;
    let server = start(settings.clone()).await;
    let api = client(&server);
    let mut receiver = subscribe(&server);
    let mut seen = Seen::default();
    let mut runs = Vec::new();
    for _ in 0..4 {
        let run = api.create_run(&run_request(json!({"iterations": 4}))).await;
        runs.push(run.unwrap().summary.run_id);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The disk fills while the runs generate.
    let filler = disk.fill();
    let degraded = wait_health(&api, "degraded", |h| h.status == "degraded").await;
    let store = degraded
        .store
        .clone()
        .expect("the store's state is reported");
    assert!(!store.writable);
    let reason = store.error.unwrap_or_default();
    assert!(reason.contains("full"), "{reason}");
    let refused = api
        .create_run(&run_request(json!({})))
        .await
        .expect_err("a new run is refused while nothing can be stored");
    assert_eq!(refused.status(), Some(503), "{refused}");
    assert!(
        refused.to_string().contains("store_unwritable")
            || refused.to_string().contains("cannot be written"),
        "{refused}"
    );
    // Held, not lost and not sent: give the generators time to try.
    tokio::time::sleep(Duration::from_millis(800)).await;
    drain(&mut receiver, &mut seen);
    let head = api.health().await.unwrap().events_head.unwrap();
    let newest_seen = seen.events.keys().next_back().copied().unwrap_or(0);
    assert!(
        newest_seen <= head,
        "a subscriber saw event {newest_seen} while the store holds up to {head}"
    );
    assert!(
        seen.store_status.iter().any(|s| s["writable"] == false),
        "subscribers are told the store cannot be written: {:?}",
        seen.store_status
    );

    // Room again: the held batch goes in, the runs go on and finish.
    std::fs::remove_file(&filler).unwrap();
    wait_health(&api, "ok", |h| h.status == "ok").await;
    for run_id in &runs {
        let detail = wait_finished(&api, run_id, Duration::from_secs(60)).await;
        assert_eq!(detail.summary.status, RunStatus::Completed, "{run_id}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drain(&mut receiver, &mut seen);
    assert!(
        seen.store_status.iter().any(|s| s["writable"] == true),
        "subscribers are told the store is writable again: {:?}",
        seen.store_status
    );
    assert_eq!(seen.duplicates, 0);
    let in_store = stored(&server).await;
    assert_same_events(&seen.events, &in_store);
    let ids: Vec<u64> = in_store.keys().copied().collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "gap-free");

    // Full again, with a run generating: a stop is prompt and what was held is never sent.
    let held_run = api
        .create_run(&run_request(json!({"iterations": 6})))
        .await
        .unwrap()
        .summary
        .run_id;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let filler = disk.fill();
    wait_health(&api, "degraded", |h| h.status == "degraded").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drain(&mut receiver, &mut seen);
    let stopping = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("the server stops within 5 s with the disk full");
    eprintln!("stopped in {:?}", stopping.elapsed());
    drain(&mut receiver, &mut seen);
    std::fs::remove_file(&filler).unwrap();

    // After a restart, ids continue past everything any subscriber saw.
    let server = start(settings).await;
    let api = client(&server);
    let detail = api.run(&held_run).await.unwrap();
    assert_eq!(detail.summary.status, RunStatus::Failed);
    let in_store = stored(&server).await;
    assert_all_stored(&seen, &in_store);
    let newest_seen = *seen.events.keys().next_back().unwrap();
    let mut after = subscribe(&server);
    let fresh = api.create_run(&run_request(json!({}))).await.unwrap();
    let (id, _, _) = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = after.recv().await.unwrap();
            if event.2.contains(&fresh.summary.run_id) {
                return event;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        id.parse::<u64>().unwrap() > newest_seen,
        "a new event got id {id}, but {newest_seen} was already seen"
    );
    server.stop().await;
}

/// How many events of this type each run has in the store.
fn per_run(stored: &BTreeMap<u64, (String, String)>, wanted: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (_, data) in stored.values().filter(|(event, _)| event == wanted) {
        let data: Value = serde_json::from_str(data).unwrap();
        *counts
            .entry(data["run_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    counts
}

/// Every event a subscriber was sent is stored, as it was sent.
fn assert_all_stored(seen: &Seen, stored: &BTreeMap<u64, (String, String)>) {
    for (id, event) in &seen.events {
        assert_eq!(
            stored.get(id),
            Some(event),
            "event {id} was sent to a subscriber, so it must be stored as sent"
        );
    }
}

/// The subscriber got exactly the stored events (reported compactly when not).
fn assert_same_events(
    seen: &BTreeMap<u64, (String, String)>,
    stored: &BTreeMap<u64, (String, String)>,
) {
    let only_seen: Vec<&u64> = seen.keys().filter(|id| !stored.contains_key(id)).collect();
    let only_stored: Vec<&u64> = stored.keys().filter(|id| !seen.contains_key(id)).collect();
    let differ: Vec<&u64> = seen
        .iter()
        .filter(|(id, event)| stored.get(id).is_some_and(|stored| stored != *event))
        .map(|(id, _)| id)
        .collect();
    assert!(
        only_seen.is_empty() && only_stored.is_empty() && differ.is_empty(),
        "seen but not stored: {only_seen:?}; stored but not seen: {only_stored:?}; different: \
         {differ:?} ({} seen, {} stored)",
        seen.len(),
        stored.len()
    );
}

async fn refused_start(location: DbLocation) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(&dir);
    settings.store.db = location;
    let started = Instant::now();
    let error = match server::start(settings).await {
        Ok(server) => {
            server.stop().await;
            panic!("a server started on an unusable database");
        }
        Err(error) => error,
    };
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused only after {:?}",
        started.elapsed()
    );
    assert!(matches!(error, ServerError::Store(_)), "{error:?}");
    error.to_string()
}

#[tokio::test]
async fn start_up_refuses_a_file_that_is_not_a_database_or_is_damaged_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // Random bytes.
    let noise = dir.path().join("noise.db");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let bytes: Vec<u8> = (0..65536)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(&noise, &bytes).unwrap();
    let message = refused_start(DbLocation::File(noise.clone())).await;
    assert!(message.contains(&noise.display().to_string()), "{message}");
    assert!(message.contains("not a SQLite database"), "{message}");

    // A real database whose runs were written, then pages damaged and then the header.
    let good = db_path(&dir);
    let server = start(config(&dir)).await;
    let api = client(&server);
    let mut last = String::new();
    for _ in 0..6 {
        last = api
            .create_run(&run_request(json!({"iterations": 3})))
            .await
            .unwrap()
            .summary
            .run_id;
    }
    wait_finished(&api, &last, Duration::from_secs(30)).await;
    server.stop().await;
    let pages = std::fs::read(&good).unwrap();
    assert!(pages.len() > 8 * 4096, "{} bytes", pages.len());
    // One page in the middle (events of an old run), which start-up's own queries never read:
    // only an integrity check finds it.
    let mut damaged = pages.clone();
    let middle = (damaged.len() / 4096 / 2) * 4096;
    damaged[middle..middle + 12].copy_from_slice(&[0x55; 12]);
    let damaged_path = dir.path().join("damaged.db");
    std::fs::write(&damaged_path, &damaged).unwrap();
    let message = refused_start(DbLocation::File(damaged_path.clone())).await;
    assert!(
        message.contains(&damaged_path.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("damaged") || message.contains("malformed"),
        "{message}"
    );

    let mut header = pages;
    header[..16].copy_from_slice(b"not sqlite here!");
    let header_path = dir.path().join("header.db");
    std::fs::write(&header_path, &header).unwrap();
    let message = refused_start(DbLocation::File(header_path.clone())).await;
    assert!(
        message.contains(&header_path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("not a SQLite database"), "{message}");
}

#[tokio::test]
async fn start_up_refuses_a_full_disk_and_a_read_only_database_and_the_command_says_why() {
    let Some(disk) = Tmpfs::mount("4m") else {
        return;
    };
    let path = disk.path().join("runs.db");
    let mut settings = config(&tempfile::tempdir().unwrap());
    settings.store.db = DbLocation::File(path.clone());
    let server = start(settings).await;
    let api = client(&server);
    let run = api.create_run(&run_request(json!({}))).await.unwrap();
    wait_finished(&api, &run.summary.run_id, Duration::from_secs(30)).await;
    server.stop().await;

    // A full disk at start is refused too.
    let filler = disk.fill();
    let message = refused_start(DbLocation::File(path.clone())).await;
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("full"), "{message}");
    std::fs::remove_file(filler).unwrap();

    disk.remount_read_only();

    let message = refused_start(DbLocation::File(path.clone())).await;
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("cannot be written"), "{message}");

    let output = Command::new(env!("CARGO_BIN_EXE_runboard"))
        .args(["serve", "--addr", "127.0.0.1:0", "--db"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("cannot be written"), "{stderr}");
}

#[tokio::test]
async fn every_event_a_subscriber_saw_before_a_stop_under_load_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(&dir);
    settings.runs.concurrency = 64;
    settings.generator.speed = 200.0;
    for round in 0..4 {
        let server = start(settings.clone()).await;
        let api = client(&server);
        let mut receiver = subscribe(&server);
        let mut seen = Seen::default();
        for _ in 0..48 {
            api.create_run(&run_request(
                json!({"iterations": 10, "tokens_per_sec": 4000}),
            ))
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300 + round * 150)).await;
        server.stop().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        drain(&mut receiver, &mut seen);
        assert!(!seen.events.is_empty());
        let again = start(settings.clone()).await;
        let in_store = stored(&again).await;
        assert_all_stored(&seen, &in_store);
        // Nothing of the stopped runs is left running or interrupted twice.
        let errors = per_run(&in_store, "error");
        assert!(errors.values().all(|count| *count == 1), "{errors:?}");
        again.stop().await;
    }
}

#[tokio::test]
async fn sigterm_under_load_stores_everything_before_the_database_closes() {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    // The lost batch was a race (about one stop in 25 under load): ten tries.
    for round in 0..10_u64 {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runboard"))
            .args(["serve", "--addr", "127.0.0.1:0", "--concurrency", "64"])
            .args(["--speed", "200", "--failure-rate", "0", "--db"])
            .arg(&path)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).await.unwrap();
        let url = first
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("{first}"))
            .to_owned();
        let api = ApiClient::new(&url, None).unwrap();
        for _ in 0..48 {
            api.create_run(&run_request(
                json!({"iterations": 10, "tokens_per_sec": 5000}),
            ))
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(150 + round * 50)).await;
        let pid = child.id().unwrap().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .expect("stopped within 5 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}");
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).await.unwrap();
        for lost in ["closed pool", "could not be stored", "error"] {
            assert!(!rest.contains(lost), "round {round}: {rest}");
        }
    }
    // And what was stored is whole: every run's events numbered 1, 2, 3… without a gap.
    let server = start(config(&dir)).await;
    let api = client(&server);
    let all = runboard_api::RunQuery {
        limit: Some(500),
        ..runboard_api::RunQuery::default()
    };
    let runs = api.list_runs(&all).await.unwrap().runs;
    assert_eq!(runs.len(), 480);
    for run in runs {
        let events = api.run(&run.run_id).await.unwrap().events;
        let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{}",
            run.run_id
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn kill_9_during_restart_recovery_never_fails_a_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut settings = config(&dir);
    settings.runs.concurrency = 300;
    settings.generator.speed = 1.0;
    let server = start(settings.clone()).await;
    let api = client(&server);
    for _ in 0..300 {
        api.create_run(&run_request(json!({"iterations": 10})))
            .await
            .unwrap();
    }
    let query = runboard_api::RunQuery {
        limit: Some(500),
        status: Some(RunStatus::Running),
        ..runboard_api::RunQuery::default()
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        while api.list_runs(&query).await.unwrap().runs.len() < 300 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("300 runs running");
    server.stop().await;

    // Servers killed at different points of their recovery.
    for round in 0..10_u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runboard"))
            .args(["serve", "--addr", "127.0.0.1:0", "--seed", "3", "--db"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + round * 12));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    settings.runs.concurrency = 4;
    let server = start(settings).await;
    let api = client(&server);
    let in_store = stored(&server).await;
    let errors = per_run(&in_store, "error");
    let ends = per_run(&in_store, "stream_end");
    assert_eq!(errors.len(), 300, "every interrupted run was failed");
    assert!(errors.values().all(|count| *count == 1), "{errors:?}");
    assert!(ends.values().all(|count| *count == 1), "{ends:?}");
    let failed = runboard_api::RunQuery {
        limit: Some(500),
        status: Some(RunStatus::Failed),
        ..runboard_api::RunQuery::default()
    };
    assert_eq!(api.list_runs(&failed).await.unwrap().runs.len(), 300);
    server.stop().await;
}
