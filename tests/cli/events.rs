//! `runboard events URL` as a script would run it: the real binary against a loopback server,
//! reading its stdout, stderr and exit code.

use crate::support;

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use support::scripted_server::{Reply, ScriptedServer};

async fn runboard_events(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runboard"))
        .arg("events")
        .args(args)
        .env_remove("RUNBOARD_TOKEN")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(20), child)
        .await
        .expect("runboard events did not exit within 20 s")
        .unwrap()
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn prints_one_json_line_per_event_and_exits_0_on_204() {
    let server = ScriptedServer::start(|n, _| match n {
        0 => Reply::sse(
            "retry: 50\n\n: keep-alive\n\ndata: plain\n\nid: 7\nevent: node_update\n\
             data: {\"tokens_out\":3}\n\ndata: two\ndata: lines\n\n",
        ),
        1 => Reply::sse("data: after reconnect\n\n"),
        _ => Reply::no_content(),
    })
    .await;
    let output = runboard_events(&[&server.url("/events")]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        json_lines(&output),
        [
            json!({"event": "message", "data": "plain", "id": ""}),
            json!({"event": "node_update", "data": "{\"tokens_out\":3}", "id": "7"}),
            json!({"event": "message", "data": "two\nlines", "id": "7"}),
            json!({"event": "message", "data": "after reconnect", "id": "7"}),
        ]
    );
    // The exact key order is part of the format.
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.starts_with(r#"{"event":"message","data":"plain","id":""}"#),
        "{stdout}"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("connecting to http://"), "{stderr}");
    assert!(stderr.contains("open"), "{stderr}");
    assert!(
        stderr.contains("reconnecting in 50 ms (attempt 1, stream ended)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("closed by the server (HTTP 204)"),
        "{stderr}"
    );
    assert_eq!(server.requests()[1].header("last-event-id"), Some("7"));
}

#[tokio::test]
async fn exits_1_with_a_one_line_reason_on_failure() {
    let server = ScriptedServer::start(|_, _| {
        Reply::status(
            404,
            "Not Found",
            "application/json",
            r#"{"error":{"message":"no such run"}}"#,
        )
    })
    .await;
    let output = runboard_events(&[&server.url("/api/runs/x/stream")]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("runboard events: failed: "), "{stderr}");
    assert!(
        last.contains("HTTP 404") && last.contains("no such run"),
        "{last}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn sends_headers_token_and_a_starting_last_event_id() {
    let server = ScriptedServer::start(|_, _| Reply::no_content()).await;
    let output = runboard_events(&[
        &server.url("/"),
        "--last-event-id",
        "abc-12",
        "--header",
        "X-Pool: gpu-a",
        "-H",
        "X-Trace:1",
        "--token",
        "t0k",
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let request = &server.requests()[0];
    assert_eq!(request.header("last-event-id"), Some("abc-12"));
    assert_eq!(request.header("x-pool"), Some("gpu-a"));
    assert_eq!(request.header("x-trace"), Some("1"));
    assert_eq!(request.header("authorization"), Some("Bearer t0k"));
}

#[tokio::test]
async fn max_reconnects_gives_up_with_exit_1() {
    let server = ScriptedServer::start(|_, _| Reply::sse("")).await;
    let output = runboard_events(&[
        &server.url("/"),
        "--max-reconnects",
        "2",
        "--retry-ms",
        "20",
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .contains("gave up after 2 reconnect attempts"),
        "{stderr}"
    );
    assert_eq!(
        server.requests().len(),
        3,
        "one connection and two reconnects"
    );
}

#[tokio::test]
async fn bad_arguments_exit_2_with_a_clear_message() {
    let output = runboard_events(&["not a url"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("invalid URL"), "{stderr}");

    let output = runboard_events(&["http://127.0.0.1:1/", "--header", "no-colon"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("expected NAME:VALUE"), "{stderr}");
}
