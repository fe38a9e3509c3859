//! `runboard bench run|watch` as a script would run them: the real binary against a real server.

use crate::support;

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::test_server::{config, start};

async fn runboard(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runboard"))
        .args(args)
        .env_remove("RUNBOARD_TOKEN")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("runboard bench did not exit within 60 s")
        .unwrap()
}

#[tokio::test]
async fn run_starts_a_benchmark_shows_each_result_and_ends_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let url = server.url();
    let output = runboard(&[
        "bench",
        "run",
        "-n",
        "2",
        "--name",
        "ci",
        "--params",
        r#"{"iterations":1}"#,
        "--api",
        &url,
    ])
    .await;
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], "runboard bench: started ci (2 tasks)");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pass  task_001_summarize  score ")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('[') && l.contains("] 2/2 100%")),
        "{stderr}"
    );
    assert_eq!(*lines.last().unwrap(), {
        // Both tasks pass (the test server never fails a run); the mean is in the line.
        let summary = lines.last().unwrap();
        assert!(
            summary.starts_with("ci finished: 2/2 passed (100%), mean score 0."),
            "{summary}"
        );
        *summary
    });

    // Watching the finished benchmark replays it and ends at once; --json is one event a line.
    let output = runboard(&["bench", "watch", "--json", "--api", &url]).await;
    assert!(output.status.success());
    let events: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["status", "task_complete", "task_complete", "progress"]
    );
    assert_eq!(events[0]["data"]["phase"], "finished");

    // A second run while none is running is fine; a bad --params is refused before any request.
    let output = runboard(&["bench", "run", "--params", "[1]", "--api", &url]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("--params must be a JSON object")
    );
    server.stop().await;
}

#[tokio::test]
async fn run_against_a_server_that_follows_a_log_says_why_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.benchmark_log = Some(dir.path().join("bench.log"));
    let server = start(config).await;
    let output = runboard(&["bench", "run", "-n", "2", "--api", &server.url()]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("409") && stderr.contains("--benchmark-log"),
        "{stderr}"
    );
    server.stop().await;
}
