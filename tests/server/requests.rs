//! `/metrics/active-requests` and its stream (requests in flight) on a real server over loopback: the
//! snapshot, an update at once then only changes, many subscribers that all see every request,
//! keep-alives, metrics switched off, and the stream switched off.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use runboard_api::{ActiveRequests, CreateRun, RunMode};
use runboard_server::{RequestStreamSettings, RunningServer};
use runboard_sse::{EventSource, Update};
use serde_json::{Value, json};
use support::test_server::{client, config, start, wait_finished};

fn stream(server: &RunningServer) -> EventSource {
    EventSource::builder(&format!("{}/metrics/active-requests/stream", server.url()))
        .unwrap()
        .build()
        .unwrap()
}

async fn next_snapshot(
    source: &mut EventSource,
    limit: Duration,
) -> Option<(String, ActiveRequests)> {
    tokio::time::timeout(limit, async {
        loop {
            if let Update::Event(event) = source.next().await? {
                return Some((
                    event.event.clone(),
                    serde_json::from_str(&event.data).unwrap(),
                ));
            }
        }
    })
    .await
    .ok()
    .flatten()
}

fn run(params: Value) -> CreateRun {
    CreateRun {
        task: "requests test".into(),
        mode: RunMode::Queued,
        params,
    }
}

#[tokio::test]
async fn the_snapshot_lists_requests_in_flight_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.generator.speed = 1.0;
    let server = start(config).await;
    let api = client(&server);
    let empty = api.active_requests().await.unwrap();
    assert!(!empty.disabled && empty.active_requests.is_empty());
    assert!(runboard_api::clock::parse_rfc3339(&empty.timestamp).is_some());
    let created = api
        .create_run(&run(json!({"model": "synth-coder", "iterations": 1})))
        .await
        .unwrap();
    let snapshot = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let snapshot = api.active_requests().await.unwrap();
            if !snapshot.active_requests.is_empty() {
                return snapshot;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let request = &snapshot.active_requests[0];
    assert!(request.request_id.starts_with("req-"));
    assert_eq!(request.model, "synth-coder");
    assert_eq!(
        request.resolved_model.as_deref(),
        Some("synth-14b-coder-q5")
    );
    assert!(request.streaming);
    assert!(request.input_tokens > 0);
    assert_eq!(
        request.run_id.as_deref(),
        Some(created.summary.run_id.as_str())
    );
    assert_eq!(request.agent.as_deref(), Some("supervisor"));
    assert!(runboard_api::clock::parse_rfc3339(&request.started_at).is_some());
    // The raw JSON has exactly the seed's top-level shape.
    let raw: Value = serde_json::from_slice(
        &runboard_sse::http::client()
            .get(format!("{}/metrics/active-requests", server.url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let keys: BTreeSet<&str> = raw
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["active_requests", "disabled", "timestamp"])
    );
    server.stop().await;
}

#[tokio::test]
async fn many_subscribers_each_see_every_request_and_only_changed_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    // Real time: every agent step lives seconds, far longer than the 50 ms interval.
    config.generator.speed = 4.0;
    config.active_requests.stream = RequestStreamSettings {
        interval: Duration::from_millis(50),
        ..RequestStreamSettings::default()
    };
    let server = start(config).await;
    let mut subscribers: Vec<EventSource> = (0..16).map(|_| stream(&server)).collect();
    for source in &mut subscribers {
        let (event, first) = next_snapshot(source, Duration::from_secs(5)).await.unwrap();
        assert_eq!(event, "update", "an update is sent at once");
        assert!(first.active_requests.is_empty());
    }
    let api = client(&server);
    let mut run_ids = Vec::new();
    for _ in 0..2 {
        let created = api
            .create_run(&run(json!({"iterations": 1})))
            .await
            .unwrap();
        run_ids.push(created.summary.run_id);
    }
    let mut agent_steps = 0;
    for run_id in &run_ids {
        let detail = wait_finished(&api, run_id, Duration::from_secs(60)).await;
        agent_steps += detail
            .events
            .iter()
            .filter(|e| {
                e.event == "narration"
                    && e.data.get("action").and_then(Value::as_str) == Some("agent_start")
            })
            .count();
    }
    // supervisor, researcher, writer, critic, finish for each run.
    assert_eq!(agent_steps, 10);
    let expected: BTreeSet<String> = (1..=agent_steps).map(|n| format!("req-{n:08x}")).collect();
    for source in &mut subscribers {
        let mut seen_ids = BTreeSet::new();
        let mut previous: Option<ActiveRequests> = None;
        let mut last_tokens: std::collections::HashMap<String, u64> =
            std::collections::HashMap::new();
        // Read until the final, empty snapshot.
        loop {
            let (event, snapshot) = next_snapshot(source, Duration::from_secs(10))
                .await
                .expect("the final snapshot never came");
            assert_eq!(event, "update");
            if let Some(previous) = &previous {
                assert_ne!(
                    previous.active_requests, snapshot.active_requests,
                    "an unchanged snapshot was sent"
                );
            }
            for request in &snapshot.active_requests {
                seen_ids.insert(request.request_id.clone());
                let before = last_tokens.insert(request.request_id.clone(), request.output_tokens);
                assert!(
                    before.is_none_or(|b| b <= request.output_tokens),
                    "tokens went backwards"
                );
            }
            let done = snapshot.active_requests.is_empty() && seen_ids.len() == expected.len();
            previous = Some(snapshot);
            if done {
                break;
            }
        }
        assert_eq!(seen_ids, expected);
    }
    server.stop().await;
}

#[tokio::test]
async fn keep_alives_are_sent_while_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.active_requests.stream.heartbeat = Duration::from_millis(100);
    let server = start(config).await;
    let mut source = stream(&server);
    let comments = tokio::time::timeout(Duration::from_secs(5), async {
        let (mut comments, mut updates) = (0, 0);
        while comments < 3 {
            match source.next().await.unwrap() {
                Update::Comment(_) => comments += 1,
                Update::Event(_) => updates += 1,
                Update::State(_) | Update::EventTooLarge { .. } => {}
            }
        }
        (comments, updates)
    })
    .await
    .expect("no keep-alive came");
    assert_eq!(
        comments,
        (3, 1),
        "one update at once, then only keep-alives"
    );
    server.stop().await;
}

#[tokio::test]
async fn with_metrics_off_the_snapshot_says_so_and_the_stream_sends_one_disabled_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.active_requests.enabled = false;
    let server = start(config).await;
    let api = client(&server);
    api.create_run(&run(json!({}))).await.unwrap();
    let snapshot = api.active_requests().await.unwrap();
    assert!(snapshot.disabled);
    assert!(snapshot.active_requests.is_empty());
    assert!(
        snapshot
            .message
            .unwrap()
            .contains("RUNBOARD_REQUEST_METRICS")
    );
    let response = runboard_sse::http::client()
        .get(format!("{}/metrics/active-requests/stream", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(5), response.text())
        .await
        .expect("the disabled stream did not end")
        .unwrap();
    assert_eq!(body.matches("event: ").count(), 1, "{body}");
    assert!(
        body.contains("event: disabled\ndata: {\"disabled\":true"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn with_the_stream_off_it_answers_503_with_the_disabled_payload() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.active_requests.stream.enabled = false;
    let server = start(config).await;
    let response = runboard_sse::http::client()
        .get(format!("{}/metrics/active-requests/stream", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: ActiveRequests = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(body.disabled && body.message.unwrap().contains("/metrics/active-requests"));
    // The snapshot still works: that is what clients fall back to.
    let snapshot = client(&server).active_requests().await.unwrap();
    assert!(!snapshot.disabled);
    server.stop().await;
}
