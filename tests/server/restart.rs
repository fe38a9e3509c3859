//! A server stopped mid-run and started again on the same database file: the interrupted run is
//! failed with an explanation, queued runs still run, and nothing stored is lost or renumbered.

use crate::support;

use std::time::Duration;

use runboard_api::{CreateRun, RunMode, RunStatus};
use serde_json::json;
use support::test_server::{client, config, start, wait_finished};

#[tokio::test]
async fn a_restart_fails_the_interrupted_run_keeps_its_history_and_runs_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut slow = config(&dir);
    slow.runs.concurrency = 1;
    slow.generator.speed = 1.0;
    let first = start(slow).await;
    let api = client(&first);
    let request = CreateRun {
        task: "survive a restart".into(),
        mode: RunMode::Queued,
        params: json!({"iterations": 5}),
    };
    let interrupted = api.create_run(&request).await.unwrap().summary.run_id;
    let waiting = api.create_run(&request).await.unwrap().summary.run_id;
    // Let the first run make some progress.
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let detail = api.run(&interrupted).await.unwrap();
            if detail
                .events
                .iter()
                .filter(|e| e.event == "node_update")
                .count()
                >= 3
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the run made no progress");
    let before = api.run(&interrupted).await.unwrap();
    let stopped_at = std::time::Instant::now();
    first.stop().await;
    // Prompt even with a run generating (and its tasks to wind down).
    assert!(
        stopped_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopped_at.elapsed()
    );

    let mut fast = config(&dir);
    fast.generator.speed = 50.0;
    let second = start(fast).await;
    let api = client(&second);
    let after = api.run(&interrupted).await.unwrap();
    assert_eq!(after.summary.status, RunStatus::Failed);
    assert_eq!(
        &after.events[..before.events.len()],
        &before.events[..],
        "what was stored before the restart is intact"
    );
    let added: Vec<&str> = after.events[before.events.len()..]
        .iter()
        .map(|e| e.event.as_str())
        .collect();
    assert_eq!(added.first(), Some(&"error"), "{added:?}");
    assert_eq!(added.last(), Some(&"stream_end"), "{added:?}");
    let error = &after.events[before.events.len()];
    assert_eq!(error.data["message"], "interrupted by server restart");
    let seqs: Vec<u64> = after.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    let resumed = wait_finished(&api, &waiting, Duration::from_secs(30)).await;
    assert_eq!(
        resumed.summary.status,
        RunStatus::Completed,
        "the queued run ran after the restart"
    );

    // New runs continue the sequences instead of reusing them.
    let fresh = api.create_run(&request).await.unwrap().summary.run_id;
    assert!(fresh != interrupted && fresh != waiting);
    second.stop().await;
}

#[tokio::test]
async fn unseeded_run_ids_rise_in_time_order_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let unseeded = |dir: &tempfile::TempDir| {
        let mut config = config(dir);
        config.generator.seed = None;
        config.generator.speed = 50.0;
        config
    };
    let request = CreateRun {
        task: "in order".into(),
        mode: RunMode::Queued,
        params: json!({"iterations": 1}),
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        let server = start(unseeded(&dir)).await;
        let api = client(&server);
        for _ in 0..20 {
            ids.push(api.create_run(&request).await.unwrap().summary.run_id);
        }
        wait_finished(&api, ids.last().unwrap(), Duration::from_secs(30)).await;
        server.stop().await;
    }
    // `run-` and 16 base32 characters, each new id after every one before it, across the
    // restart too (the store's newest id is where the second server's begin).
    assert!(
        ids.iter().all(|id| id.len() == 20
            && id.starts_with("run-")
            && id[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())),
        "{ids:?}"
    );
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
}
