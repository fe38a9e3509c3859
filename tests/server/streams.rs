//! The server's event streams, read by the project's own `EventSource` over real TCP: headers
//! and framing, closing, resume after connections cut at random points (no gap, no duplicate),
//! a subscriber that falls behind, and many runs with many subscribers.

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use runboard_api::{ApiClient, CreateRun, RunMode};
use runboard_server::RunningServer;
use runboard_sse::{ConnectionState, Event, EventSource, ReconnectPolicy, Update};
use serde_json::{Value, json};
use support::cut_proxy::CutProxy;
use support::test_server::{client, config, start, wait_finished};

fn run_request(params: Value) -> CreateRun {
    CreateRun {
        task: "stream test".into(),
        mode: RunMode::Queued,
        params,
    }
}

/// Reconnects quickly and never gives up: cuts are the point of these tests.
fn eager_policy() -> ReconnectPolicy {
    ReconnectPolicy {
        initial_retry: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        healthy_after: Duration::from_secs(5),
        jitter: 0.3,
        max_reconnects: None,
    }
}

fn source(url: &str) -> EventSource {
    EventSource::builder(url)
        .unwrap()
        .reconnect(eager_policy())
        .build()
        .unwrap()
}

/// The store's view of all events, as (global seq, event, data) triples.
async fn stored_global(server: &RunningServer) -> Vec<(u64, String, String)> {
    let mut reader = source(&format!("{}/api/events", server.url()));
    let api = client(server);
    let total: usize = {
        let list = api
            .list_runs(&runboard_api::RunQuery::default())
            .await
            .unwrap();
        let mut total = 0;
        for run in list.runs {
            total += api.run(&run.run_id).await.unwrap().events.len();
        }
        total
    };
    let mut events = Vec::new();
    while events.len() < total {
        if let Some(Update::Event(event)) = reader.next().await {
            events.push(triple(&event));
        }
    }
    events
}

fn triple(event: &Event) -> (u64, String, String) {
    (
        event.id.parse().unwrap(),
        event.event.clone(),
        event.data.clone(),
    )
}

#[tokio::test]
async fn streams_announce_retry_carry_the_sse_headers_and_keep_alive() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.events.streams.keepalive = Duration::from_millis(150);
    config.events.streams.retry = Duration::from_millis(1234);
    let server = start(config).await;
    let response = runboard_sse::http::client()
        .get(format!("{}/api/events", server.url()))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(
        headers.get("content-encoding").is_none(),
        "streams are never compressed"
    );
    let mut body = response.bytes_stream();
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        use futures_util::StreamExt as _;
        while !String::from_utf8_lossy(&seen).contains(": keep-alive") {
            seen.extend_from_slice(&body.next().await.unwrap().unwrap());
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no keep-alive within 5 s: {:?}",
        String::from_utf8_lossy(&seen)
    );
    assert!(String::from_utf8_lossy(&seen).starts_with("retry: 1234\n\n"));
    server.stop().await;
}

#[tokio::test]
async fn a_run_stream_ends_after_stream_end_and_then_answers_204() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let api = client(&server);
    let run = api
        .create_run(&run_request(json!({"iterations": 1})))
        .await
        .unwrap();
    let run_id = run.summary.run_id;
    let mut stream = source(&api.run_stream_url(&run_id));
    let mut events = Vec::new();
    let mut states = Vec::new();
    let finished = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(update) = stream.next().await {
            match update {
                Update::Event(event) => events.push(event),
                Update::State(state) => states.push(state),
                _ => {}
            }
        }
    })
    .await;
    assert!(finished.is_ok(), "the stream never closed: {states:?}");
    assert_eq!(events.last().unwrap().event, "stream_end");
    // The server closed the stream after stream_end; the reconnect got 204 and stopped.
    assert_eq!(states.last(), Some(&ConnectionState::Closed), "{states:?}");
    let ids: Vec<u64> = events.iter().map(|e| e.id.parse().unwrap()).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    let stored = wait_finished(&api, &run_id, Duration::from_secs(5)).await;
    assert_eq!(events.len(), stored.events.len());
    server.stop().await;
}

/// Random cut points from a fixed seed, so a failure can be replayed.
fn cut_points(count: usize, seed: u64, max: usize) -> Vec<usize> {
    let mut rng = runboard_server::rng::SplitMix64::new(seed);
    (0..count)
        .map(|_| usize::try_from(rng.range_u64(1, max as u64)).unwrap())
        .collect()
}

#[tokio::test]
async fn a_run_stream_cut_at_60_random_points_resumes_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.generator.speed = 8.0;
    let server = start(config).await;
    let api = client(&server);
    let run = api
        .create_run(&run_request(json!({"iterations": 3, "tokens_per_sec": 60})))
        .await
        .unwrap();
    let run_id = run.summary.run_id;
    let proxy = CutProxy::start(server.addr(), cut_points(60, 11, 700)).await;
    let through_proxy = ApiClient::new(&format!("http://{}", proxy.addr), None).unwrap();
    let mut stream = source(&through_proxy.run_stream_url(&run_id));
    let mut received = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(update) = stream.next().await {
            if let Update::Event(event) = update {
                received.push(event);
            }
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "the stream did not finish; got {} events",
        received.len()
    );
    assert!(
        proxy.cuts_made() >= 50,
        "only {} cuts happened",
        proxy.cuts_made()
    );
    let stored = api.run(&run_id).await.unwrap().events;
    let expected: Vec<(u64, String, String)> = stored
        .iter()
        .map(|e| (e.seq, e.event.clone(), e.data.to_string()))
        .collect();
    let got: Vec<(u64, String, String)> = received
        .iter()
        .map(|e| {
            let data: Value = serde_json::from_str(&e.data).unwrap();
            (e.id.parse().unwrap(), e.event.clone(), data.to_string())
        })
        .collect();
    assert_eq!(got, expected, "after {} cuts", proxy.cuts_made());
    server.stop().await;
}

#[tokio::test]
async fn the_all_runs_stream_cut_at_60_random_points_resumes_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.generator.speed = 8.0;
    let server = start(config).await;
    let api = client(&server);
    let proxy = CutProxy::start(server.addr(), cut_points(60, 23, 900)).await;
    let mut stream = source(&format!("http://{}/api/events", proxy.addr));
    let mut received = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let run = api
            .create_run(&run_request(json!({"iterations": 2, "tokens_per_sec": 60})))
            .await
            .unwrap();
        ids.push(run.summary.run_id);
    }
    let mut ended = HashSet::new();
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        while ended.len() < ids.len() {
            if let Some(Update::Event(event)) = stream.next().await {
                if event.event == "stream_end" {
                    let data: Value = serde_json::from_str(&event.data).unwrap();
                    ended.insert(data["run_id"].as_str().unwrap().to_owned());
                }
                received.push(triple(&event));
            }
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "not every run ended; got {} events",
        received.len()
    );
    assert!(
        proxy.cuts_made() >= 50,
        "only {} cuts happened",
        proxy.cuts_made()
    );
    let expected = stored_global(&server).await;
    assert_eq!(received, expected, "after {} cuts", proxy.cuts_made());
    let seqs: Vec<u64> = received.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_the_hub_catches_up_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    // A hub that holds two events: every burst overruns it, so lagging is certain.
    config.events.broadcast_capacity = 2;
    config.generator.speed = 20.0;
    let server = start(config).await;
    let api = client(&server);
    let mut slow = source(&format!("{}/api/events", server.url()));
    let mut runs = Vec::new();
    for _ in 0..6 {
        let run = api
            .create_run(&run_request(json!({"iterations": 1})))
            .await
            .unwrap();
        runs.push(run.summary.run_id);
    }
    let mut received = Vec::new();
    let mut ended = 0;
    tokio::time::timeout(Duration::from_secs(60), async {
        while ended < runs.len() {
            if let Some(Update::Event(event)) = slow.next().await {
                ended += usize::from(event.event == "stream_end");
                received.push(triple(&event));
                // Read slowly: far slower than the runs produce.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    })
    .await
    .expect("the slow subscriber never saw every run end");
    assert_eq!(received, stored_global(&server).await);
    server.stop().await;
}

#[tokio::test]
async fn a_filtered_stream_carries_only_the_named_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let api = client(&server);
    let wanted = api
        .create_run(&run_request(json!({"iterations": 1})))
        .await
        .unwrap();
    let other = api
        .create_run(&run_request(json!({"iterations": 1})))
        .await
        .unwrap();
    let wanted_id = wanted.summary.run_id;
    let mut stream = source(&api.events_url(std::slice::from_ref(&wanted_id)));
    let mut seen_runs = HashSet::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(Update::Event(event)) = stream.next().await {
                let data: Value = serde_json::from_str(&event.data).unwrap();
                seen_runs.insert(data["run_id"].as_str().unwrap().to_owned());
                if event.event == "stream_end" {
                    break;
                }
            }
        }
    })
    .await
    .unwrap();
    wait_finished(&api, &other.summary.run_id, Duration::from_secs(20)).await;
    assert_eq!(seen_runs, HashSet::from([wanted_id]));
    server.stop().await;
}

#[tokio::test]
async fn runs_256_with_64_subscribers_complete_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.runs.concurrency = 256;
    config.generator.speed = 40.0;
    let server = start(config).await;
    let api = client(&server);
    let url = format!("{}/api/events", server.url());
    let mut subscribers = Vec::new();
    for _ in 0..64 {
        let mut stream = source(&url);
        // Wait until it is open, so it sees everything from the first run on.
        while !matches!(
            stream.next().await,
            Some(Update::State(ConnectionState::Open))
        ) {}
        subscribers.push(stream);
    }
    let mut launches = tokio::task::JoinSet::new();
    for _ in 0..256 {
        let api = api.clone();
        launches.spawn(async move {
            api.create_run(&run_request(json!({"iterations": 1})))
                .await
                .unwrap()
                .summary
                .run_id
        });
    }
    let ids = launches.join_all().await;
    for id in &ids {
        wait_finished(&api, id, Duration::from_secs(120)).await;
    }
    let expected = stored_global(&server).await;
    let total = expected.len();
    let mut readers = tokio::task::JoinSet::new();
    for mut stream in subscribers {
        readers.spawn(async move {
            let mut got = Vec::with_capacity(total);
            while got.len() < total {
                if let Some(Update::Event(event)) = stream.next().await {
                    got.push(triple(&event));
                }
            }
            got
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(120), readers.join_all())
        .await
        .expect("subscribers did not receive every event in time");
    for got in all {
        assert_eq!(got.len(), total);
        assert!(got == expected, "a subscriber saw a different sequence");
    }
    server.stop().await;
}

#[tokio::test]
async fn stopping_the_server_ends_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let api = client(&server);
    let run = api
        .create_run(&run_request(json!({"iterations": 5})))
        .await
        .unwrap();
    let mut all = source(&format!("{}/api/events", server.url()));
    let mut one = source(&api.run_stream_url(&run.summary.run_id));
    for stream in [&mut all, &mut one] {
        while !matches!(
            stream.next().await,
            Some(Update::State(ConnectionState::Open))
        ) {}
    }
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("stop hung with streams open");
    for stream in [&mut all, &mut one] {
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(Update::State(ConnectionState::Reconnecting { .. })) =
                    stream.next().await
                {
                    return;
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "a stream stayed open after the server stopped"
        );
    }
}

#[tokio::test]
async fn an_id_above_the_head_starts_live_at_the_head_instead_of_holding_or_replaying() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let api = client(&server);
    let first = api.create_run(&run_request(json!({}))).await.unwrap();
    wait_finished(&api, &first.summary.run_id, Duration::from_secs(30)).await;
    let head = api.health().await.unwrap().events_head.unwrap();
    for claimed in [
        format!("{}", head + 1000),
        "99999999999999999999999".to_owned(),
    ] {
        let mut reader = EventSource::builder(&format!("{}/api/events", server.url()))
            .unwrap()
            .last_event_id(&claimed)
            .build()
            .unwrap();
        // Subscribed (the retry line came), then a new run: its events arrive, numbered on
        // from the head, and nothing older is replayed.
        loop {
            if let Some(Update::State(ConnectionState::Open)) = reader.next().await {
                break;
            }
        }
        let next = api.create_run(&run_request(json!({}))).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(Update::Event(event)) = reader.next().await {
                    return event;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("Last-Event-ID {claimed}: nothing came"));
        assert_eq!(event.event, "run_created", "{claimed}");
        assert!(event.data.contains(&next.summary.run_id), "{claimed}");
        assert!(
            event.id.parse::<u64>().unwrap() > head,
            "{claimed}: {}",
            event.id
        );
        wait_finished(&api, &next.summary.run_id, Duration::from_secs(30)).await;
    }
    server.stop().await;
}
