//! `/api/benchmarks` and `/api/benchmark-sse` (benchmark progress) on a real server over loopback: bad
//! input, many subscribers that all get every result, resume after `Last-Event-ID`, a log file
//! that is missing, written, rotated and deleted, and the clients its users already have (a
//! standard-library Python client, and `curl -N`).

use crate::support;

use std::path::Path;
use std::time::Duration;

use runboard_api::{
    BenchmarkEvent, BenchmarkProgress, BenchmarkStatus, CreateBenchmark, TaskComplete, phase,
};
use runboard_server::RunningServer;
use runboard_sse::{EventSource, Update};
use serde_json::{Value, json};
use support::test_server::{config, start};

/// What one subscriber saw, in order.
#[derive(Debug, Default)]
struct Seen {
    statuses: Vec<BenchmarkStatus>,
    progress: Vec<BenchmarkProgress>,
    results: Vec<(String, TaskComplete)>,
    errors: Vec<String>,
}

impl Seen {
    fn last_status(&self) -> &BenchmarkStatus {
        self.statuses.last().expect("no status yet")
    }
}

fn stream(server: &RunningServer, query: &str, last_id: Option<&str>) -> EventSource {
    let builder =
        EventSource::builder(&format!("{}/api/benchmark-sse{query}", server.url())).unwrap();
    let builder = match last_id {
        Some(id) => builder.last_event_id(id),
        None => builder,
    };
    builder.build().unwrap()
}

/// Reads events until `done(seen)` holds; fails after `limit`.
async fn read_until(
    source: &mut EventSource,
    seen: &mut Seen,
    limit: Duration,
    done: impl Fn(&Seen) -> bool,
) {
    tokio::time::timeout(limit, async {
        while !done(seen) {
            let Some(update) = source.next().await else {
                panic!("the stream ended");
            };
            let Update::Event(event) = update else {
                continue;
            };
            match BenchmarkEvent::decode(&event.event, &event.data).unwrap() {
                BenchmarkEvent::Status(status) => seen.statuses.push(status),
                BenchmarkEvent::Progress(progress) => seen.progress.push(progress),
                BenchmarkEvent::TaskComplete(result) => {
                    seen.results.push((event.id.clone(), result));
                }
                BenchmarkEvent::Error(error) => seen.errors.push(error.message),
                BenchmarkEvent::Unknown(name) => panic!("unexpected event {name}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out; saw {seen:#?}"));
}

async fn post_benchmark(server: &RunningServer, body: &Value) -> (u16, Value) {
    let response = runboard_sse::http::client()
        .post(format!("{}/api/benchmarks", server.url()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn the_interval_defaults_to_5_is_clamped_and_words_get_400() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let http = runboard_sse::http::client();
    for (query, expected) in [
        ("", "5"),
        ("?interval=0", "1"),
        ("?interval=1000", "60"),
        ("?interval=2.5", "2.5"),
        ("?interval=-4", "1"),
    ] {
        let response = http
            .get(format!("{}/api/benchmark-sse{query}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{query}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(
            response.headers()["x-benchmark-interval"],
            expected,
            "{query}"
        );
    }
    for bad in ["abc", "", "NaN", "5s"] {
        let response = http
            .get(format!("{}/api/benchmark-sse?interval={bad}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad:?}");
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "bad_interval", "{bad:?}");
    }
    // A stream that is told 60 s still says where things stand at once, and stays up.
    let mut source = stream(&server, "?interval=1000", None);
    let mut seen = Seen::default();
    read_until(&mut source, &mut seen, Duration::from_secs(5), |s| {
        !s.progress.is_empty()
    })
    .await;
    assert_eq!(seen.last_status().phase, phase::IDLE);
    assert!(seen.last_status().connected);
    server.stop().await;
}

#[tokio::test]
async fn bad_benchmark_requests_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    for (body, status, code) in [
        (json!({"tasks": 0}), 422, "invalid_tasks"),
        (json!({"tasks": 1001}), 422, "invalid_tasks"),
        (json!({"tasks": "three"}), 422, "invalid_body"),
        (json!({"tasks": 2, "params": [1]}), 422, "invalid_params"),
    ] {
        let (got, answer) = post_benchmark(&server, &body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str().unwrap()),
            (status, code),
            "{body}"
        );
    }
    let response = runboard_sse::http::client()
        .post(format!("{}/api/benchmarks", server.url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    server.stop().await;
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // One scenario, read top to bottom.
async fn every_subscriber_gets_every_result_and_a_second_benchmark_waits() {
    let dir = tempfile::tempdir().unwrap();
    let mut slower = config(&dir);
    // Tasks of a second or more, so a subscriber checking every second sees them run (at the
    // tests' usual speed the whole benchmark could end between two checks).
    slower.generator.speed = 10.0;
    let server = start(slower).await;
    let mut subscribers: Vec<(EventSource, Seen)> = (0..12)
        .map(|_| (stream(&server, "?interval=1", None), Seen::default()))
        .collect();
    // Everyone is connected (has the idle status) before the benchmark starts.
    for (source, seen) in &mut subscribers {
        read_until(source, seen, Duration::from_secs(5), |s| {
            !s.progress.is_empty()
        })
        .await;
    }
    let api = support::test_server::client(&server);
    let started = api
        .create_benchmark(&CreateBenchmark {
            tasks: 3,
            name: Some("smoke".into()),
            params: json!({"iterations": 1}),
        })
        .await
        .unwrap();
    assert_eq!((started.name.as_str(), started.total_tasks), ("smoke", 3));
    let (status, answer) = post_benchmark(&server, &json!({"tasks": 1})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("benchmark_running"))
    );
    let mut reference: Option<Vec<(String, String, bool)>> = None;
    for (source, seen) in &mut subscribers {
        // A benchmark that ends between two checks reaches a client as its status (already
        // `finished`: a new benchmark is announced first) and then its results and progress.
        read_until(source, seen, Duration::from_secs(60), |s| {
            s.statuses
                .last()
                .is_some_and(|st| st.phase == phase::FINISHED)
                && s.progress.last().is_some_and(|p| p.tasks_completed == 3)
        })
        .await;
        let results: Vec<(String, String, bool)> = seen
            .results
            .iter()
            .map(|(id, r)| (id.clone(), r.task_id.clone(), r.success))
            .collect();
        let ids: Vec<&str> = results.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(ids, ["1:1:0", "1:2:0", "1:3:0"]);
        let tasks: Vec<&str> = results.iter().map(|(_, task, _)| task.as_str()).collect();
        assert_eq!(
            tasks,
            [
                "task_001_summarize",
                "task_002_translate",
                "task_003_extract"
            ]
        );
        for (_, result) in &seen.results {
            assert!(result.run_id.is_some() && result.duration_secs.unwrap() > 0.0);
            assert!((0.0..=1.0).contains(&result.score));
            assert_eq!(result.success, result.score > 0.0, "{result:?}");
        }
        let last = seen.progress.last().unwrap();
        assert_eq!((last.tasks_completed, last.total_tasks), (3, 3));
        assert_eq!(last.current_task, None);
        // Steps were counted while tasks ran, and a task's progress never went backwards.
        assert!(
            seen.progress
                .iter()
                .any(|p| p.current_step.unwrap_or(0) > 0)
        );
        assert!(
            seen.progress
                .windows(2)
                .all(|w| w[0].tasks_completed <= w[1].tasks_completed)
        );
        // Only changes are sent: no two consecutive progress events are equal.
        assert!(seen.progress.windows(2).all(|w| w[0] != w[1]));
        assert!(seen.statuses.windows(2).all(|w| w[0] != w[1]));
        let status = seen.last_status();
        assert!(!status.running && status.name.as_deref() == Some("smoke"));
        assert_eq!(status.benchmark, Some(1));
        match &reference {
            None => reference = Some(results),
            Some(first) => assert_eq!(first, &results, "subscribers disagree"),
        }
    }
    // The runs behind the tasks are ordinary runs of the API.
    let runs = api
        .list_runs(&runboard_api::RunQuery::default())
        .await
        .unwrap();
    assert_eq!(runs.runs.len(), 3);
    assert!(
        runs.runs
            .iter()
            .all(|r| r.task.starts_with("Benchmark smoke: task_00"))
    );

    // A client that reconnects with the id of the second result gets only the third.
    let mut late = stream(&server, "?interval=1", Some("1:2:0"));
    let mut seen = Seen::default();
    read_until(&mut late, &mut seen, Duration::from_secs(5), |s| {
        !s.progress.is_empty()
    })
    .await;
    let ids: Vec<&str> = seen.results.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["1:3:0"]);
    // A resume point from another benchmark is ignored: everything is sent.
    let mut stale = stream(&server, "?interval=1", Some("9:2:0"));
    let mut seen = Seen::default();
    read_until(&mut stale, &mut seen, Duration::from_secs(5), |s| {
        !s.progress.is_empty()
    })
    .await;
    assert_eq!(seen.results.len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn keep_alives_flow_while_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.events.streams.keepalive = Duration::from_millis(150);
    let server = start(config).await;
    let mut source = stream(&server, "?interval=5", None);
    let comments = tokio::time::timeout(Duration::from_secs(5), async {
        let mut comments = 0;
        while comments < 3 {
            if let Some(Update::Comment(_)) = source.next().await {
                comments += 1;
            }
        }
        comments
    })
    .await
    .expect("no keep-alives between checks");
    assert_eq!(comments, 3);
    server.stop().await;
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

#[tokio::test]
async fn a_log_file_missing_then_written_rotated_and_deleted_shows_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("waa_benchmark.log");
    let mut config = config(&dir);
    config.benchmark_log = Some(log.clone());
    config.events.streams.keepalive = Duration::from_millis(300);
    let server = start(config).await;
    let (status, answer) = post_benchmark(&server, &json!({"tasks": 2})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("benchmark_source_is_log"))
    );

    let mut source = stream(&server, "?interval=1", None);
    let mut seen = Seen::default();
    read_until(&mut source, &mut seen, Duration::from_secs(5), |s| {
        !s.progress.is_empty()
    })
    .await;
    let status = seen.last_status();
    assert_eq!(status.phase, phase::WAITING);
    assert!(!status.connected && !status.log.as_ref().unwrap().present);
    assert_eq!(status.source.as_deref(), Some("log"));

    append(
        &log,
        "12:00:00 INFO Task 1/2\n12:00:00 Running task: task_001_notepad\nStep 3\n",
    );
    read_until(&mut source, &mut seen, Duration::from_secs(10), |s| {
        s.progress.last().is_some_and(|p| p.current_step == Some(3))
    })
    .await;
    let status = seen.last_status();
    assert!(status.connected && status.running && status.log.as_ref().unwrap().present);
    let progress = seen.progress.last().unwrap();
    assert_eq!(progress.current_task.as_deref(), Some("task_001_notepad"));
    assert_eq!((progress.tasks_completed, progress.total_tasks), (0, 2));

    append(
        &log,
        "Result: task_001_notepad success=True score=0.5\nERROR: VNC connection dropped\n",
    );
    read_until(&mut source, &mut seen, Duration::from_secs(10), |s| {
        !s.results.is_empty() && !s.errors.is_empty()
    })
    .await;
    assert_eq!(seen.results[0].1.task_id, "task_001_notepad");
    assert!((seen.results[0].1.score - 0.5).abs() < 1e-9);
    assert!(
        seen.results[0].1.duration_secs.is_some(),
        "seen live, so timed"
    );
    assert_eq!(seen.errors, ["VNC connection dropped"]);

    // Rotation: the file is moved away and a new, longer one takes its place (so only its
    // identity tells it is another file).
    std::fs::rename(&log, dir.path().join("waa_benchmark.log.1")).unwrap();
    let padding = "12:00:01 DEBUG agent is thinking about the next click on the canvas\n".repeat(8);
    append(
        &log,
        &format!("{padding}Task 2/2\nRunning task: task_002_paint\nStep 1\n"),
    );
    read_until(&mut source, &mut seen, Duration::from_secs(10), |s| {
        s.progress.last().and_then(|p| p.current_task.as_deref()) == Some("task_002_paint")
            && s.statuses
                .last()
                .is_some_and(|st| st.log.as_ref().unwrap().rotations == 1)
    })
    .await;
    // Truncation in place (copytruncate) is a rotation too.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    append(&log, "Task task_002_paint failed (score: 0.0)\n");
    read_until(&mut source, &mut seen, Duration::from_secs(10), |s| {
        s.statuses
            .last()
            .is_some_and(|st| st.phase == phase::FINISHED)
    })
    .await;
    assert_eq!(seen.last_status().log.as_ref().unwrap().rotations, 2);
    assert_eq!(seen.results.len(), 2);
    assert!(!seen.results[1].1.success);

    // Deleted: status says so, and the stream stays up.
    std::fs::remove_file(&log).unwrap();
    read_until(&mut source, &mut seen, Duration::from_secs(10), |s| {
        s.statuses
            .last()
            .is_some_and(|st| !st.log.as_ref().unwrap().present)
    })
    .await;
    assert!(!seen.last_status().connected);
    let alive = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Update::Comment(_)) = source.next().await {
                return;
            }
        }
    })
    .await;
    assert!(
        alive.is_ok(),
        "the stream went quiet after the log disappeared"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_seeds_python_client_and_curl_both_follow_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let api = support::test_server::client(&server);
    api.create_benchmark(&CreateBenchmark {
        tasks: 2,
        name: Some("clients".into()),
        params: json!({"iterations": 1}),
    })
    .await
    .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/bench_sse_client.py"
    );
    let python = tokio::process::Command::new("python3")
        .args([
            script,
            "--url",
            &server.url(),
            "--interval",
            "1",
            "--max-events",
            "4",
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), python)
        .await
        .expect("the Python client did not finish")
        .expect("python3 must be installed (.ci/run installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("status: {"), "{text}");
    let status: Value = serde_json::from_str(lines[0].trim_start_matches("status: ")).unwrap();
    assert_eq!(status["type"], "benchmark_status");
    assert_eq!(status["connected"], true);
    // A client that connects after the first task finished gets that result before the
    // progress (results come before the progress they change): either order is right.
    let progress = lines
        .iter()
        .find_map(|line| line.strip_prefix("progress: "))
        .unwrap_or_else(|| panic!("no progress event: {text}"));
    let progress: Value = serde_json::from_str(progress).unwrap();
    assert_eq!(progress["total_tasks"], 2);
    assert!(
        lines[1..]
            .iter()
            .all(|line| line.starts_with("progress: {") || line.starts_with("task_complete: {")),
        "{text}"
    );

    let curl = tokio::process::Command::new("curl")
        .args(["-sN", "--max-time", "3"])
        .arg(format!("{}/api/benchmark-sse?interval=1", server.url()))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), curl)
        .await
        .expect("curl did not finish")
        .expect("curl must be installed (.ci/run installs it)");
    // 28: curl stopped at --max-time, as it must on a stream that stays open.
    assert_eq!(output.status.code(), Some(28));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("retry: "), "{text}");
    assert!(
        text.contains("\nevent: status\ndata: {\"type\":\"benchmark_status\""),
        "{text}"
    );
    assert!(text.contains("\nevent: progress\ndata: {"), "{text}");
    server.stop().await;
}
