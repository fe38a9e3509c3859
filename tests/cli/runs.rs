//! The command line against a real `runboard serve` process: launch, runs, show, tail, their
//! errors, and `tail` / `events` recovering on their own when the server is killed and
//! restarted mid-run.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_runboard");

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `runboard serve` and waits until it answers.
pub(crate) async fn serve(port: u16, db: &Path, extra: &[&str]) -> Child {
    let child = Command::new(BIN)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--db"])
        .arg(db)
        .args(["--seed", "3", "--failure-rate", "0", "--retry-ms", "100"])
        .args(extra)
        .env_remove("RUNBOARD_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until_up(port).await;
    child
}

/// Reads a server's stderr up to its start-up line (`listening on …`), which it returns.
pub(crate) async fn read_until_listening<R>(stderr: &mut R) -> String
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::AsyncBufReadExt as _;
    let mut line = String::new();
    loop {
        line.clear();
        stderr.read_line(&mut line).await.unwrap();
        assert!(!line.is_empty(), "the server exited");
        if line.contains("listening on") {
            return line;
        }
    }
}

/// Waits until a server on `port` answers.
pub(crate) async fn wait_until_up(port: u16) {
    let health = format!("http://127.0.0.1:{port}/api/health");
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            // 401 counts as up: the server answers, it only wants its token.
            if let Ok(response) = runboard_sse::http::client().get(&health).send().await
                && matches!(response.status().as_u16(), 200 | 401)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("runboard serve did not come up");
}

pub(crate) async fn runboard(args: &[&str]) -> Output {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("RUNBOARD_TOKEN")
        .env_remove("RUNBOARD_API")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("runboard did not exit in time")
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[tokio::test]
async fn launch_runs_show_and_tail_work_together() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve(port, &dir.path().join("runs.db"), &["--speed", "40"]).await;
    let api = format!("http://127.0.0.1:{port}");

    let launched = runboard(&[
        "launch",
        "write a haiku",
        "-n",
        "4",
        "--stagger-ms",
        "20",
        "--api",
        &api,
    ])
    .await;
    assert!(launched.status.success(), "{}", stderr(&launched));
    let ids: Vec<String> = stdout(&launched).lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("run-")));

    let tail = runboard(&["tail", &ids[0], "--api", &api]).await;
    assert_eq!(tail.status.code(), Some(0), "{}", stderr(&tail));
    let text = stdout(&tail);
    assert!(text.contains("takes over"), "narration expected: {text}");
    assert!(!text.contains('{'), "no JSON in the human view: {text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("run {} completed: ", ids[0])) && last.contains("tokens in"),
        "{last}"
    );

    let tail_json = runboard(&["tail", &ids[1], "--json", "--api", &api]).await;
    assert_eq!(tail_json.status.code(), Some(0), "{}", stderr(&tail_json));
    let lines: Vec<Value> = stdout(&tail_json)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(lines.iter().all(|line| line["event"] != "narration"));
    assert!(lines.iter().any(|line| line["event"] == "node_update"));
    assert_eq!(lines.last().unwrap()["event"], "stream_end");
    assert_eq!(lines.last().unwrap()["data"]["run_id"], ids[1].as_str());

    let runs = runboard(&["runs", "--api", &api]).await;
    assert!(runs.status.success());
    let table = stdout(&runs);
    assert!(table.starts_with("RUN "), "{table}");
    assert!(ids.iter().all(|id| table.contains(id.as_str())), "{table}");
    let runs_json: Value =
        serde_json::from_str(&stdout(&runboard(&["runs", "--json", "--api", &api]).await)).unwrap();
    assert_eq!(runs_json["runs"].as_array().unwrap().len(), 4);

    let show = runboard(&["show", &ids[0], "--api", &api]).await;
    let chain = stdout(&show);
    assert!(chain.contains("status   completed"), "{chain}");
    assert!(
        chain.contains("● status running") && chain.contains("■ end: completed"),
        "{chain}"
    );
    let show_json: Value = serde_json::from_str(&stdout(
        &runboard(&["show", &ids[0], "--json", "--api", &api]).await,
    ))
    .unwrap();
    assert_eq!(
        show_json["events"].as_array().unwrap().last().unwrap()["event"],
        "stream_end"
    );
}

#[tokio::test]
async fn errors_are_one_line_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve(port, &dir.path().join("runs.db"), &["--token", "s3cret"]).await;
    let api = format!("http://127.0.0.1:{port}");

    let cases: [(&[&str], &str); 5] = [
        (&["runs", "--api", &api], "--token"),
        (
            &["show", "run-nope", "--api", &api, "--token", "s3cret"],
            "runboard runs",
        ),
        (
            &["tail", "run-nope", "--api", &api, "--token", "s3cret"],
            "no such run",
        ),
        (&["runs", "--api", "http://127.0.0.1:1"], "runboard serve"),
        (
            &["launch", "x", "--params", "[1]", "--api", &api],
            "JSON object",
        ),
    ];
    for (args, hint) in cases {
        let output = runboard(args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert!(
            message.contains("error:") && message.contains(hint),
            "{args:?}: {message}"
        );
    }
}

#[tokio::test]
async fn tail_and_events_recover_when_the_server_is_killed_and_restarted_mid_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let mut server = serve(port, &db, &["--speed", "2"]).await;
    let launched = runboard(&[
        "launch",
        "long task",
        "--params",
        r#"{"iterations": 4}"#,
        "--api",
        &api,
    ])
    .await;
    let run_id = stdout(&launched).trim().to_owned();
    assert!(run_id.starts_with("run-"), "{}", stderr(&launched));

    let follow = |args: Vec<String>| {
        Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let tail = follow(vec![
        "tail".into(),
        run_id.clone(),
        "--api".into(),
        api.clone(),
    ]);
    let events = follow(vec![
        "events".into(),
        format!("{api}/api/events"),
        "--retry-ms".into(),
        "100".into(),
    ]);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A crash, not a clean stop.
    server.kill().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _restarted = serve(port, &db, &["--speed", "40"]).await;

    let tail = tokio::time::timeout(Duration::from_secs(60), tail.wait_with_output())
        .await
        .expect("tail did not finish after the restart")
        .unwrap();
    let tail_err = stderr(&tail);
    assert!(tail_err.contains("reconnecting"), "{tail_err}");
    assert_eq!(
        tail.status.code(),
        Some(1),
        "the interrupted run failed: {tail_err}"
    );
    let tail_out = stdout(&tail);
    let lines: Vec<&str> = tail_out.lines().collect();
    let last = *lines.last().unwrap();
    assert!(last.starts_with(&format!("run {run_id} failed")), "{last}");
    // Every narration line of the run, each exactly once, in order.
    let detail: Value = serde_json::from_str(&stdout(
        &runboard(&["show", &run_id, "--json", "--api", &api]).await,
    ))
    .unwrap();
    let narration: Vec<String> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "narration")
        .map(|e| e["data"]["formatted"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        lines[..lines.len() - 1],
        narration[..],
        "tail lost or repeated lines"
    );

    // `events` follows on its own connection: read it until the run's end arrives there too.
    let (lines, events_err) = read_until_run_end(events, &run_id).await;
    let ids: Vec<u64> = lines
        .iter()
        .map(|line| line["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "events resumed without gap or duplicate"
    );
    assert!(events_err.contains("reconnecting"), "{events_err}");
    assert!(lines.iter().any(|line| {
        line["data"]
            .as_str()
            .unwrap()
            .contains("interrupted by server restart")
    }));
}

/// Reads a running `runboard events` until it prints the run's `stream_end`, then stops it.
/// Returns the JSON lines and what it wrote to stderr.
async fn read_until_run_end(mut events: Child, run_id: &str) -> (Vec<Value>, String) {
    let mut reader = BufReader::new(events.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = reader.next_line().await.unwrap() {
            let value: Value = serde_json::from_str(&line).unwrap();
            let data: Value = serde_json::from_str(value["data"].as_str().unwrap()).unwrap();
            let ended = value["event"] == "stream_end" && data["run_id"] == run_id;
            lines.push(value);
            if ended {
                break;
            }
        }
    })
    .await
    .expect("events never delivered the run's end");
    events.start_kill().unwrap();
    let output = events.wait_with_output().await.unwrap();
    (lines, stderr(&output))
}

#[tokio::test]
async fn a_server_whose_log_cannot_be_written_still_answers_every_request() {
    // Its stderr a full device, or a pipe whose reader has gone (a supervisor that stopped
    // reading, `runboard serve | head`): the log lines are lost, the requests are not.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    for log in [Stdio::from(full), Stdio::piped()] {
        let port = free_port();
        let mut server = Command::new(BIN)
            .args([
                "serve",
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--db",
                ":memory:",
            ])
            .args(["--failure-rate", "0", "--speed", "40"])
            .env_remove("RUNBOARD_TOKEN")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        drop(server.stderr.take());
        wait_until_up(port).await;
        let api = format!("http://127.0.0.1:{port}");
        let launched = runboard(&[
            "launch",
            "logged nowhere",
            "--params",
            r#"{"iterations": 1}"#,
            "--api",
            &api,
        ])
        .await;
        let run_id = stdout(&launched).trim().to_owned();
        assert!(run_id.starts_with("run-"), "{}", stderr(&launched));
        let tail = runboard(&["tail", &run_id, "--api", &api]).await;
        assert!(tail.status.success(), "{}", stderr(&tail));
        assert!(
            server.try_wait().unwrap().is_none(),
            "the server is still running"
        );
    }
}
