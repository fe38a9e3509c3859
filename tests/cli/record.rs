//! `runboard record` against a real `runboard serve`, and `--replay` of what it wrote: the
//! replaying server serves the same runs, details and event stream; wrong and cut files get
//! their messages; two screenshots of a replay are the same bytes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use super::runs::{BIN, free_port, runboard, serve, stderr, wait_until_up};
use runboard_api::Recording;

/// Starts `runboard serve --replay FILE` with `extra` and waits until it answers; its stderr
/// is kept for the test to read.
async fn serve_replay(port: u16, file: &Path, extra: &[&str]) -> Child {
    let child = Command::new(BIN)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--replay"])
        .arg(file)
        .args(extra)
        .env_remove("RUNBOARD_TOKEN")
        .env_remove("RUNBOARD_DB")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until_up(port).await;
    child
}

async fn get(url: &str) -> Value {
    serde_json::from_slice(
        &runboard_sse::http::client()
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap()
}

async fn launch(api: &str, task: &str) -> String {
    let response = runboard_sse::http::client()
        .post(format!("{api}/api/runs"))
        .header("content-type", "application/json")
        .body(json!({ "task": task }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let summary: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    summary["run_id"].as_str().unwrap().to_owned()
}

/// The server's runs, newest first, once `count` of them exist and all are finished.
async fn finished_runs(api: &str, count: usize, limit: Duration) -> Vec<Value> {
    tokio::time::timeout(limit, async {
        loop {
            let list = get(&format!("{api}/api/runs")).await;
            let runs = list["runs"].as_array().cloned().unwrap_or_default();
            let over = |run: &Value| {
                matches!(
                    run["status"].as_str(),
                    Some("completed" | "failed" | "cancelled")
                )
            };
            if runs.len() == count && runs.iter().all(over) {
                return runs;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{api} did not finish {count} runs in {limit:?}"))
}

/// Every event of `/api/events` from the first, as (type, data), until `count` came.
async fn all_events(api: &str, count: usize) -> Vec<(String, Value)> {
    let mut response = runboard_sse::http::client()
        .get(format!("{api}/api/events"))
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    // Bytes until a block is whole: a chunk may end inside a multi-byte character.
    let mut bytes: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while events.len() < count {
            let Some(chunk) = response.chunk().await.unwrap() else {
                break;
            };
            bytes.extend_from_slice(&chunk);
            while let Some(end) = bytes.windows(2).position(|pair| pair == b"\n\n") {
                let block: Vec<u8> = bytes.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("an event is UTF-8");
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|line| line.strip_prefix(name))
                        .map(|value| value.trim_start().to_owned())
                };
                if let (Some(event), Some(data)) = (field("event:"), field("data:")) {
                    events.push((event, serde_json::from_str(&data).unwrap()));
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {count} events came", events.len()));
    events
}

/// A run's chain as (type, data, own time): what a replay must give back.
fn chain(detail: &Value) -> Vec<(String, Value)> {
    detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["event"].as_str().unwrap().to_owned(),
                event["data"].clone(),
            )
        })
        .collect()
}

/// Sends SIGINT, as Ctrl-C does.
fn interrupt(child: &Child) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_recording_replays_the_runs_details_and_events_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve(port, &dir.path().join("runs.db"), &["--speed", "12"]).await;
    let api = format!("http://127.0.0.1:{port}");
    // Two runs already going when the recording starts, two started during it.
    launch(&api, "write about lighthouses").await;
    launch(&api, "write about tides").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let file = dir.path().join("fleet.jsonl");
    let mut record = Command::new(BIN)
        .args(["record", "--api", &api, "-o"])
        .arg(&file)
        .env_remove("RUNBOARD_TOKEN")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(record.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains("(2 runs already going)"), "{first}");
    launch(&api, "write about harbours").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    launch(&api, "write about ships").await;
    let original = finished_runs(&api, 4, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Ctrl-C ends it cleanly: exit 0, a summary, a whole file.
    interrupt(&record);
    let status = tokio::time::timeout(Duration::from_secs(10), record.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "record exited {status}");
    let last = lines.next_line().await.unwrap().unwrap();
    assert!(last.contains("events of 4 runs"), "{last}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.ends_with('\n'));
    let recording = Recording::parse(&text).unwrap();
    assert_eq!(recording.cut_at_line, None);
    assert_eq!(recording.run_count(), 4);
    assert_eq!(recording.header.source, api);
    let created = recording
        .events
        .iter()
        .filter(|event| event.event == "run_created")
        .count();
    assert_eq!(
        created, 4,
        "every run's creation is recorded, going ones too"
    );

    let replay_port = free_port();
    let _replay = serve_replay(replay_port, &file, &["--speed", "20"]).await;
    let replay = format!("http://127.0.0.1:{replay_port}");
    let replayed = finished_runs(&replay, 4, Duration::from_secs(30)).await;
    // The same runs in the same order, every summary field equal: tokens, agent, snippet, and
    // the created, started and finished times.
    assert_eq!(replayed, original);
    for run in &original {
        let id = run["run_id"].as_str().unwrap();
        let before = get(&format!("{api}/api/runs/{id}")).await;
        let after = get(&format!("{replay}/api/runs/{id}")).await;
        assert_eq!(chain(&after), chain(&before), "the chain of {id}");
    }
    // The event stream from its start is the recording, event for event.
    let events = all_events(&replay, recording.events.len()).await;
    let recorded: Vec<(String, Value)> = recording
        .events
        .iter()
        .map(|event| (event.event.clone(), event.data.clone()))
        .collect();
    assert_eq!(events.len(), recorded.len());
    if let Some(at) = (0..events.len()).find(|&i| events[i] != recorded[i]) {
        panic!(
            "event {at} differs: replayed {:?}, recorded {:?}",
            events[at], recorded[at]
        );
    }

    // A replay starts and cancels nothing, and says why.
    let refused = runboard_sse::http::client()
        .post(format!("{replay}/api/runs"))
        .header("content-type", "application/json")
        .body(json!({ "task": "more" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    let body: Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "replaying");
}

#[tokio::test]
async fn wrong_newer_and_other_files_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let not_one = dir.path().join("runs.csv");
    std::fs::write(&not_one, "run_id,status\nrun-1,completed\n").unwrap();
    let newer = dir.path().join("newer.jsonl");
    std::fs::write(
        &newer,
        "{\"format\":\"runboard-recording\",\"version\":99,\"started_at\":\"2026-12-03T10:00:00Z\"}\n",
    )
    .unwrap();
    let far = dir.path().join("far.jsonl");
    let header = runboard_api::RecordingHeader::new("http://x", "2026-12-03T10:00:00Z", "test");
    std::fs::write(
        &far,
        format!(
            "{}\n{{\"t\":1e300,\"event\":\"run_created\",\"data\":{{\"run_id\":\"run-1\"}}}}\n",
            serde_json::to_string(&header).unwrap()
        ),
    )
    .unwrap();
    let fifo = dir.path().join("fifo.jsonl");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let not_one_text = not_one.to_str().unwrap();
    let newer_text = newer.to_str().unwrap();
    for (file, message) in [
        (not_one_text, "is not a runboard recording"),
        (newer_text, "version 99 recording"),
        (far.to_str().unwrap(), "is past any recording"),
        ("/dev/zero", "is not a regular file"),
        (fifo.to_str().unwrap(), "is not a regular file"),
    ] {
        // The server and the window both refuse it before starting anything (no display needed).
        for args in [
            vec!["serve", "--addr", "127.0.0.1:0", "--replay", file],
            vec!["--replay", file, "--screenshot", "never.png"],
        ] {
            let output = runboard(&args).await;
            assert!(!output.status.success(), "{args:?} succeeded");
            let text = stderr(&output);
            assert!(text.contains(message), "{args:?}: {text}");
            assert!(text.contains(file), "the message names the file: {text}");
        }
    }
}

#[tokio::test]
async fn a_recording_cut_mid_line_replays_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    // A recording cut mid-line (a killed recorder, a full disk) replays what it has.
    let port = free_port();
    let _server = serve(port, &dir.path().join("runs.db"), &["--speed", "20"]).await;
    let api = format!("http://127.0.0.1:{port}");
    launch(&api, "write about rivers").await;
    let file = dir.path().join("whole.jsonl");
    let output = runboard(&[
        "record",
        "--api",
        &api,
        "-o",
        file.to_str().unwrap(),
        "--duration",
        "2",
    ])
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let whole = std::fs::read_to_string(&file).unwrap();
    let events = Recording::parse(&whole).unwrap().events.len();
    assert!(events >= 10, "only {events} events in 2 s");
    let cut_file: PathBuf = dir.path().join("cut.jsonl");
    let cut_at = whole.trim_end().rfind('\n').unwrap() + 20;
    std::fs::write(&cut_file, &whole[..cut_at]).unwrap();
    let replay_port = free_port();
    let mut replay = serve_replay(replay_port, &cut_file, &["--speed", "50"]).await;
    let mut lines = BufReader::new(replay.stderr.take().unwrap()).lines();
    let warning = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines.next_line().await.unwrap().unwrap();
            if line.contains("cut line") {
                return line;
            }
        }
    })
    .await
    .expect("no warning about the cut line");
    assert!(
        warning.contains(&format!("replaying the {} whole events", events - 1)),
        "{warning}"
    );
    let replayed = all_events(&format!("http://127.0.0.1:{replay_port}"), events - 1).await;
    assert_eq!(replayed.len(), events - 1);

    // --loop plays it again after the end, the runs renamed.
    let loop_port = free_port();
    let _looping = serve_replay(loop_port, &file, &["--speed", "20", "--loop"]).await;
    let looped = format!("http://127.0.0.1:{loop_port}");
    let second_pass = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let list = get(&format!("{looped}/api/runs")).await;
            let runs = list["runs"].as_array().cloned().unwrap_or_default();
            if let Some(run) = runs
                .iter()
                .find(|run| run["run_id"].as_str().is_some_and(|id| id.ends_with("~2")))
            {
                return run.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("no second pass of the loop");
    assert_eq!(second_pass["task"], "write about rivers");
}

/// A display for the window: `DISPLAY` when set, else a private Xvfb. `None` (the test says
/// so and passes) when there is neither, unless `RUNBOARD_REQUIRE_DISPLAY` is set.
fn display() -> Option<(String, Option<std::process::Child>)> {
    if let Ok(display) = std::env::var("DISPLAY")
        && !display.is_empty()
    {
        return Some((display, None));
    }
    for number in 140..200 {
        if Path::new(&format!("/tmp/.X{number}-lock")).exists() {
            continue;
        }
        let Ok(xvfb) = std::process::Command::new("Xvfb")
            .args([
                &format!(":{number}"),
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            break;
        };
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
        for _ in 0..100 {
            if socket.exists() {
                return Some((format!(":{number}"), Some(xvfb)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(
        std::env::var_os("RUNBOARD_REQUIRE_DISPLAY").is_none(),
        "no display and no Xvfb, and RUNBOARD_REQUIRE_DISPLAY is set"
    );
    None
}

#[tokio::test]
async fn two_screenshots_of_a_replay_are_the_same_bytes() {
    let Some((display, xvfb)) = display() else {
        eprintln!("skipped: no DISPLAY and no Xvfb (apt-get install xvfb)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let recording = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fleet.jsonl");
    let mut pictures = Vec::new();
    for name in ["first.png", "second.png"] {
        let path = dir.path().join(name);
        let output = Command::new(BIN)
            .arg("--replay")
            .arg(&recording)
            .arg("--screenshot")
            .arg(&path)
            .args(["--after", "6", "--size", "1000x640", "--theme", "dark"])
            .env("DISPLAY", &display)
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("HOME", dir.path())
            .env_remove("RUNBOARD_TOKEN")
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(240), output)
            .await
            .expect("the screenshot took over 4 minutes")
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        pictures.push(std::fs::read(&path).unwrap());
    }
    if let Some(mut xvfb) = xvfb {
        let _ = xvfb.kill();
        let _ = xvfb.wait();
    }
    assert!(pictures[0].len() > 10_000, "an empty picture");
    assert!(
        pictures[0] == pictures[1],
        "two screenshots of second 6 differ ({} and {} bytes)",
        pictures[0].len(),
        pictures[1].len()
    );
}

#[tokio::test]
async fn a_server_that_dies_mid_recording_fails_the_recording_saying_when() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = serve(port, &dir.path().join("runs.db"), &["--speed", "12"]).await;
    let api = format!("http://127.0.0.1:{port}");
    launch(&api, "write about lighthouses").await;
    let file = dir.path().join("cut.jsonl");
    let record = Command::new(BIN)
        .args(["record", "--api", &api, "--duration", "4", "-o"])
        .arg(&file)
        .env_remove("RUNBOARD_TOKEN")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(20), record.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("lost the server's event stream"), "{said}");
    assert!(said.contains("could not be reached for the last"), "{said}");
    // What came before the loss is a whole recording.
    let recording = Recording::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(recording.cut_at_line, None);
    assert!(recording.run_count() >= 1);
}

/// Launches a run with `token`; its id.
async fn launch_as(api: &str, token: &str, task: &str) -> String {
    let response = runboard_sse::http::client()
        .post(format!("{api}/api/runs"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(json!({ "task": task }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let summary: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    summary["run_id"].as_str().unwrap().to_owned()
}

/// Starts `runboard record` on `api` with `token` (none: no token) into `file`, and returns it
/// once it has said it is recording.
async fn start_recording(api: &str, token: Option<&str>, file: &Path) -> Child {
    let mut command = Command::new(BIN);
    command.args(["record", "--api", api, "-o"]).arg(file);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let mut record = command
        .env_remove("RUNBOARD_TOKEN")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(record.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("record said nothing")
        .unwrap()
        .expect("record ended before recording");
    // Keep reading its stderr so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    record
}

/// Stops a recording with Ctrl-C and returns what it wrote.
async fn finish_recording(record: Child, file: &Path) -> String {
    let mut record = record;
    interrupt(&record);
    let status = tokio::time::timeout(Duration::from_secs(10), record.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "record exited {status}");
    std::fs::read_to_string(file).unwrap()
}

/// Waits until the run `run_id` has finished, asking with `token`.
async fn wait_run_finished(api: &str, token: &str, run_id: &str) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let response = runboard_sse::http::client()
                .get(format!("{api}/api/runs/{run_id}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let detail: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            if matches!(
                detail["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            ) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the run did not finish");
    // The stream delivers the end a moment after the store has it.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn recordings_keep_no_text_a_server_redacts_or_withholds_from_a_viewer() {
    const TASK: &str = "write about the QUOKKAPROMPT harbour";
    const ADMIN: &str = "admin-token-0123456789";
    const VIEWER: &str = "viewer-token-0123456789";
    let dir = tempfile::tempdir().unwrap();

    // A server that keeps no text: its recording has none either.
    let port = free_port();
    let server = serve(
        port,
        &dir.path().join("redacted.db"),
        &["--speed", "12", "--redact", "text", "--token", ADMIN],
    )
    .await;
    let api = format!("http://127.0.0.1:{port}");
    let file = dir.path().join("redacted.jsonl");
    let record = start_recording(&api, Some(ADMIN), &file).await;
    let run = launch_as(&api, ADMIN, TASK).await;
    wait_run_finished(&api, ADMIN, &run).await;
    let text = finish_recording(record, &file).await;
    drop(server);
    assert!(
        text.contains(&run) && text.contains("\"tokens_out\""),
        "{text}"
    );
    assert!(
        !text.contains("QUOKKAPROMPT"),
        "the prompt was recorded: {text}"
    );
    assert!(
        !text.contains("\"snippet\":\""),
        "an answer was recorded: {text}"
    );

    // Text only to admins: an admin's recording has it, a viewer's has none.
    let tokens = dir.path().join("team.txt");
    std::fs::write(
        &tokens,
        format!("alice admin {ADMIN}\nops viewer {VIEWER}\n"),
    )
    .unwrap();
    let port = free_port();
    // Without viewer tokens, --redact-viewers is refused: it would protect nobody.
    let refused = runboard(&["serve", "--addr", "127.0.0.1:0", "--redact-viewers", "text"]).await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--redact-viewers is for the viewer tokens"),
        "{}",
        stderr(&refused)
    );
    let _server = serve(
        port,
        &dir.path().join("viewers.db"),
        &[
            "--speed",
            "12",
            "--tokens",
            tokens.to_str().unwrap(),
            "--redact-viewers",
            "text",
        ],
    )
    .await;
    let api = format!("http://127.0.0.1:{port}");
    let admin_file = dir.path().join("admin.jsonl");
    let viewer_file = dir.path().join("viewer.jsonl");
    let admin_record = start_recording(&api, Some(ADMIN), &admin_file).await;
    let viewer_record = start_recording(&api, Some(VIEWER), &viewer_file).await;
    let run = launch_as(&api, ADMIN, TASK).await;
    wait_run_finished(&api, ADMIN, &run).await;
    let admin_text = finish_recording(admin_record, &admin_file).await;
    let viewer_text = finish_recording(viewer_record, &viewer_file).await;
    assert!(admin_text.contains("QUOKKAPROMPT"), "{admin_text}");
    assert!(admin_text.contains("\"snippet\":\""), "{admin_text}");
    assert!(
        viewer_text.contains(&run) && viewer_text.contains("\"tokens_out\""),
        "{viewer_text}"
    );
    assert!(!viewer_text.contains("QUOKKAPROMPT"), "{viewer_text}");
    assert!(!viewer_text.contains("\"snippet\":\""), "{viewer_text}");
    assert_eq!(
        Recording::parse(&viewer_text).unwrap().run_count(),
        Recording::parse(&admin_text).unwrap().run_count(),
        "the viewer's recording has every run"
    );
}
