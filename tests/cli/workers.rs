//! `runboard tail --worker NAME` and `runboard runs --worker NAME` against a real
//! `runboard serve`: a worker's runs are followed as they come (one already going when the tail
//! starts, one launched after), another worker's are not.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::runs::{BIN, free_port, runboard, serve, stderr};

/// Launches one run for `worker` over the API; its id.
async fn launch(api: &str, task: &str, worker: &str) -> String {
    let body = json!({"task": task, "params": {"worker": worker, "iterations": 1}});
    let created = runboard_sse::http::client()
        .post(format!("{api}/api/runs"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let created: Value = serde_json::from_slice(&created).unwrap();
    created["run_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn tail_follows_one_workers_runs_and_runs_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve(port, &dir.path().join("runs.db"), &["--speed", "4"]).await;
    let api = format!("http://127.0.0.1:{port}");

    let going = launch(&api, "already going", "gen-a").await;
    let mut tail = Command::new(BIN)
        .args(["tail", "--worker", "gen-a", "--api", &api])
        .env_remove("RUNBOARD_TOKEN")
        .env_remove("RUNBOARD_API")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    assert_eq!(first, "following worker gen-a (1 in flight)");
    let other = launch(&api, "someone else's", "gen-b").await;
    let later = launch(&api, "launched after", "gen-a").await;

    let mut seen = Vec::new();
    let mut ended = 0;
    tokio::time::timeout(Duration::from_secs(60), async {
        while ended < 2 {
            let line = lines.next_line().await.unwrap().expect("tail ended early");
            if line.ends_with("] completed") {
                ended += 1;
            }
            seen.push(line);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the worker's runs did not both end: {seen:#?}"));
    let text = seen.join("\n");
    assert!(
        text.contains(&format!("[{later}] new: launched after")),
        "{text}"
    );
    assert!(text.contains(&format!("[{going}] completed")), "{text}");
    assert!(text.contains(&format!("[{later}] completed")), "{text}");
    assert!(!text.contains(&other), "another worker's run: {text}");
    assert!(
        seen.iter().all(|line| line.starts_with('[')),
        "every line names its run: {text}"
    );
    drop(tail);

    let listed = runboard(&["runs", "--worker", "gen-a", "--json", "--api", &api]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let mut ids: Vec<&str> = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["run_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = [going.as_str(), later.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);

    let bad = runboard(&["tail", "--api", &api]).await;
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("<RUN_ID>"), "{}", stderr(&bad));
}
