//! The `EventSource` client against a real HTTP server on loopback, one scripted answer per
//! request: reconnects, `Last-Event-ID`, `retry:`, 204, fatal answers, redirects, backoff, idle
//! timeout, headers, a server restart and oversized events.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use runboard_sse::{ConnectionState, Event, EventSource, ReconnectPolicy, SseError, Update};
use support::scripted_server::{Reply, ScriptedServer, Step};

/// A policy fast enough for tests: 50 ms retry, 1 s cap.
fn fast_policy() -> ReconnectPolicy {
    ReconnectPolicy {
        initial_retry: Duration::from_millis(50),
        max_delay: Duration::from_secs(1),
        healthy_after: Duration::from_secs(5),
        jitter: 0.3,
        max_reconnects: None,
    }
}

fn client(url: &str) -> EventSource {
    EventSource::builder(url)
        .unwrap()
        .reconnect(fast_policy())
        .build()
        .unwrap()
}

/// Every update until the client finishes; fails the test if that takes over 10 s.
async fn run_to_end(mut source: EventSource) -> Vec<Update> {
    tokio::time::timeout(Duration::from_secs(10), async move {
        let mut updates = Vec::new();
        while let Some(update) = source.next().await {
            updates.push(update);
        }
        updates
    })
    .await
    .expect("the client did not finish within 10 s")
}

fn events(updates: &[Update]) -> Vec<Event> {
    updates
        .iter()
        .filter_map(|update| match update {
            Update::Event(event) => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn data(updates: &[Update]) -> Vec<String> {
    events(updates)
        .into_iter()
        .map(|event| event.data)
        .collect()
}

fn states(updates: &[Update]) -> Vec<ConnectionState> {
    updates
        .iter()
        .filter_map(|update| match update {
            Update::State(state) => Some(state.clone()),
            _ => None,
        })
        .collect()
}

fn final_state(updates: &[Update]) -> ConnectionState {
    states(updates).pop().expect("no state reported")
}

/// Whether some reconnect was caused by an error for which `cause` holds.
fn reconnected_after(updates: &[Update], cause: impl Fn(&SseError) -> bool) -> bool {
    states(updates).iter().any(|state| {
        matches!(state, ConnectionState::Reconnecting { last_error: Some(error), .. } if cause(error))
    })
}

fn idle_timeout(error: &SseError) -> bool {
    matches!(error, SseError::IdleTimeout { .. })
}

/// A fast client that reconnects after 300 ms without a byte.
fn client_with_idle_timeout(url: &str) -> EventSource {
    EventSource::builder(url)
        .unwrap()
        .reconnect(fast_policy())
        .idle_timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap()
}

#[tokio::test]
async fn reconnects_after_a_clean_end_of_stream_and_resumes_with_last_event_id() {
    let server = ScriptedServer::start(|n, _| match n {
        0 => Reply::sse("id: 1\ndata: a\n\n"),
        1 => Reply::sse("id: 2\ndata: b\n\n"),
        _ => Reply::no_content(),
    })
    .await;
    let updates = run_to_end(client(&server.url("/stream"))).await;
    assert_eq!(data(&updates), ["a", "b"]);
    assert_eq!(final_state(&updates), ConnectionState::Closed);
    let sent: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.header("last-event-id").map(str::to_owned))
        .collect();
    assert_eq!(sent, [None, Some("1".into()), Some("2".into())]);
    let request = &server.requests()[0];
    assert_eq!(request.header("accept"), Some("text/event-stream"));
    assert_eq!(request.header("cache-control"), Some("no-cache"));
}

#[tokio::test]
async fn reconnects_after_a_dropped_connection_without_dispatching_the_half_event() {
    let server = ScriptedServer::start(|n, _| match n {
        0 => Reply::sse_then_drop("id: 1\ndata: a\n\nid: 2\ndata: half"),
        _ => Reply::no_content(),
    })
    .await;
    let updates = run_to_end(client(&server.url("/"))).await;
    assert_eq!(
        data(&updates),
        ["a"],
        "the unfinished event must be discarded"
    );
    let reconnect = states(&updates)
        .into_iter()
        .find(|state| matches!(state, ConnectionState::Reconnecting { .. }))
        .expect("no reconnect reported");
    let ConnectionState::Reconnecting {
        last_error: Some(SseError::Read { .. }),
        attempt: 1,
        ..
    } = reconnect
    else {
        panic!("expected a read error to be reported, got {reconnect:?}");
    };
    assert_eq!(server.requests()[1].header("last-event-id"), Some("1"));
}

#[tokio::test]
async fn last_event_id_is_kept_across_reconnects_absent_when_empty_and_moved_by_an_id_only_block() {
    let server = ScriptedServer::start(|n, _| match n {
        0 => Reply::sse("data: no id yet\n\n"),
        1 => Reply::sse("id: x1\n\n"),
        2 => Reply::sse("data: without id\n\n"),
        3 => Reply::sse(": nothing\n\n"),
        4 => Reply::sse("id\ndata: id cleared\n\n"),
        _ => Reply::no_content(),
    })
    .await;
    let updates = run_to_end(client(&server.url("/"))).await;
    assert_eq!(data(&updates), ["no id yet", "without id", "id cleared"]);
    let sent: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.header("last-event-id").map(str::to_owned))
        .collect();
    assert_eq!(
        sent,
        [
            None,
            None,
            Some("x1".into()),
            Some("x1".into()),
            Some("x1".into()),
            None
        ]
    );
}

#[tokio::test]
async fn the_first_request_sends_a_given_last_event_id() {
    let server = ScriptedServer::start(|_, _| Reply::no_content()).await;
    let source = EventSource::builder(&server.url("/"))
        .unwrap()
        .last_event_id("41")
        .build()
        .unwrap();
    let updates = run_to_end(source).await;
    assert_eq!(final_state(&updates), ConnectionState::Closed);
    assert_eq!(server.requests()[0].header("last-event-id"), Some("41"));
}

#[tokio::test]
async fn the_servers_retry_time_is_honoured() {
    let server = ScriptedServer::start(|n, _| match n {
        0 => Reply::sse("retry: 400\ndata: a\n\n"),
        _ => Reply::no_content(),
    })
    .await;
    let source = client(&server.url("/"));
    let updates = run_to_end(source).await;
    assert!(
        states(&updates).contains(&ConnectionState::Reconnecting {
            delay: Duration::from_millis(400),
            attempt: 1,
            last_error: None
        }),
        "{:?}",
        states(&updates)
    );
    let requests = server.requests();
    let waited = requests[1].received_at - requests[0].received_at;
    assert!(
        waited >= Duration::from_millis(400),
        "reconnected after {waited:?}"
    );
}

#[tokio::test]
async fn status_204_closes_for_good() {
    let server = ScriptedServer::start(|_, _| Reply::no_content()).await;
    let updates = run_to_end(client(&server.url("/"))).await;
    assert_eq!(
        states(&updates),
        [
            ConnectionState::Connecting { attempt: 0 },
            ConnectionState::Closed
        ]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.requests().len(), 1, "a 204 must not be retried");
}

/// Runs a client against a server that always gives `reply`, expects exactly one request and a
/// failure, and returns the error.
async fn fails_without_reconnecting(reply: Reply) -> SseError {
    let server = ScriptedServer::start(move |_, _| reply.clone()).await;
    let updates = run_to_end(client(&server.url("/"))).await;
    // Four retry times: plenty for a wrong reconnect to show up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        server.requests().len(),
        1,
        "a fatal answer must not be retried"
    );
    match final_state(&updates) {
        ConnectionState::Failed(error) => {
            assert!(!error.is_retryable());
            error
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn status_500_fails_with_the_servers_message() {
    let error = fails_without_reconnecting(Reply::status(
        500,
        "Internal Server Error",
        "application/json",
        r#"{"error":{"code":"internal","message":"database is locked"}}"#,
    ))
    .await;
    let SseError::Status { status, detail, .. } = &error else {
        panic!("expected a status error, got {error:?}");
    };
    assert_eq!(*status, 500);
    assert!(detail.contains("database is locked"), "{detail}");
    assert!(error.to_string().contains("HTTP 500"), "{error}");
}

#[tokio::test]
async fn other_statuses_fail_without_reconnecting_even_another_2xx() {
    for (status, reason, content_type) in [
        (404, "Not Found", "text/plain"),
        (503, "Service Unavailable", "text/plain"),
        (201, "Created", "text/event-stream"),
    ] {
        let error =
            fails_without_reconnecting(Reply::status(status, reason, content_type, "data: x\n\n"))
                .await;
        assert!(
            matches!(&error, SseError::Status { status: got, .. } if *got == status),
            "HTTP {status}: {error:?}"
        );
    }
}

#[tokio::test]
async fn a_wrong_content_type_fails() {
    let error = fails_without_reconnecting(Reply::status(
        200,
        "OK",
        "application/json",
        "{\"runs\":[]}",
    ))
    .await;
    let SseError::ContentType { content_type, .. } = &error else {
        panic!("expected a content-type error, got {error:?}");
    };
    assert_eq!(content_type, "application/json");
}

#[tokio::test]
async fn a_content_type_with_parameters_is_accepted() {
    let server = ScriptedServer::start(|n, _| match n {
        0 => Reply::raw(
            "HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\n\
             Connection: close\r\n\r\ndata: ok\n\n",
        ),
        _ => Reply::no_content(),
    })
    .await;
    let updates = run_to_end(client(&server.url("/"))).await;
    assert_eq!(data(&updates), ["ok"]);
}

#[tokio::test]
async fn redirects_301_302_307_and_308_are_followed() {
    for code in [301, 302, 307, 308] {
        let server = ScriptedServer::start(move |_, request| match request.path.as_str() {
            "/old" => Reply::redirect(code, "/new"),
            _ if request.header("last-event-id").is_some() => Reply::no_content(),
            _ => Reply::sse("id: 9\ndata: moved\n\n"),
        })
        .await;
        let updates = run_to_end(client(&server.url("/old"))).await;
        assert_eq!(data(&updates), ["moved"], "HTTP {code}");
        assert_eq!(
            final_state(&updates),
            ConnectionState::Closed,
            "HTTP {code}"
        );
        let paths: Vec<_> = server.requests().iter().map(|r| r.path.clone()).collect();
        assert_eq!(paths[..2], ["/old", "/new"], "HTTP {code}");
    }
}

#[tokio::test]
async fn backoff_does_not_hammer_a_server_that_accepts_and_closes_at_once() {
    let server = ScriptedServer::start(|_, _| Reply::sse("")).await;
    let mut source = EventSource::builder(&server.url("/"))
        .unwrap()
        .reconnect(ReconnectPolicy {
            max_delay: Duration::from_millis(800),
            ..fast_policy()
        })
        .build()
        .unwrap();
    let mut delays = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(2500), async {
        while let Some(update) = source.next().await {
            if let Update::State(ConnectionState::Reconnecting { delay, .. }) = update {
                delays.push(delay);
            }
        }
    })
    .await;
    // Without backoff a 50 ms retry would make about 50 requests in 2.5 s; doubling from 50 ms
    // up to the 800 ms cap leaves room for about 7.
    let requests = server.requests().len();
    assert!(requests <= 10, "{requests} requests in 2.5 s: {delays:?}");
    assert!(delays.len() >= 3, "{delays:?}");
    assert_eq!(delays[0], Duration::from_millis(50));
    assert!(
        delays.last().unwrap() >= &Duration::from_millis(280),
        "the delay must grow: {delays:?}"
    );
    assert!(
        delays.iter().all(|d| *d <= Duration::from_millis(800)),
        "{delays:?}"
    );
}

#[tokio::test]
async fn a_silent_connection_is_dropped_after_the_idle_timeout() {
    let server = ScriptedServer::start(|n, _| match n {
        0 => Reply::sse(": hello\n\nid: 1\ndata: a\n\n").then(Step::Hang),
        _ => Reply::no_content(),
    })
    .await;
    let updates = run_to_end(client_with_idle_timeout(&server.url("/"))).await;
    assert_eq!(data(&updates), ["a"]);
    assert!(updates.contains(&Update::Comment(" hello".into())));
    assert!(
        reconnected_after(&updates, idle_timeout),
        "{:?}",
        states(&updates)
    );
    assert_eq!(server.requests()[1].header("last-event-id"), Some("1"));
}

#[tokio::test]
async fn keep_alive_comments_hold_off_the_idle_timeout() {
    // Comments every 100 ms for 600 ms, with a 300 ms idle timeout: never idle.
    let mut reply = Reply::sse("data: start\n\n");
    for _ in 0..6 {
        reply = reply
            .then(Step::Pause(Duration::from_millis(100)))
            .then(Step::Write(b": ping\n\n".to_vec()));
    }
    let server = ScriptedServer::start(move |n, _| match n {
        0 => reply.clone(),
        _ => Reply::no_content(),
    })
    .await;
    let updates = run_to_end(client_with_idle_timeout(&server.url("/"))).await;
    assert_eq!(data(&updates), ["start"]);
    assert!(
        !reconnected_after(&updates, idle_timeout),
        "{:?}",
        states(&updates)
    );
}

#[tokio::test]
async fn headers_and_the_bearer_token_go_on_every_request() {
    let server = ScriptedServer::start(|n, _| match n {
        0 => Reply::sse("data: a\n\n"),
        _ => Reply::no_content(),
    })
    .await;
    let source = EventSource::builder(&server.url("/"))
        .unwrap()
        .reconnect(fast_policy())
        .bearer_token("s3cret")
        .unwrap()
        .header("X-Worker-Pool", "gpu-a")
        .unwrap()
        .build()
        .unwrap();
    run_to_end(source).await;
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for request in requests {
        assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
        assert_eq!(request.header("x-worker-pool"), Some("gpu-a"));
    }
}

#[tokio::test]
async fn a_bad_header_is_a_clear_error() {
    let error = EventSource::builder("http://127.0.0.1:1/")
        .unwrap()
        .header("bad header", "x")
        .unwrap_err();
    assert!(matches!(error, SseError::InvalidHeader { .. }), "{error:?}");
    let error = EventSource::builder("ftp://example.invalid/").unwrap_err();
    assert!(error.to_string().contains("not http or https"), "{error}");
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_given_up_after_max_reconnects() {
    // Bind a port, then free it: nothing listens there.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let source = EventSource::builder(&format!("http://{addr}/"))
        .unwrap()
        .reconnect(ReconnectPolicy {
            max_reconnects: Some(2),
            ..fast_policy()
        })
        .build()
        .unwrap();
    let updates = run_to_end(source).await;
    let states = states(&updates);
    let reconnects = states
        .iter()
        .filter(|state| {
            matches!(
                state,
                ConnectionState::Reconnecting {
                    last_error: Some(SseError::Connect { .. }),
                    ..
                }
            )
        })
        .count();
    assert_eq!(reconnects, 2, "{states:?}");
    let ConnectionState::Failed(SseError::GaveUp { attempts: 2, last }) = states.last().unwrap()
    else {
        panic!("expected to give up, got {states:?}");
    };
    assert!(last.contains("could not connect"), "{last}");
}

#[tokio::test]
async fn a_server_restart_mid_stream_is_survived_without_loss_or_duplicates() {
    let first = ScriptedServer::start(|_, _| {
        Reply::sse("retry: 100\n\nid: 1\ndata: a\n\nid: 2\ndata: b\n\n").then(Step::Hang)
    })
    .await;
    let addr = first.addr;
    let mut source = client(&first.url("/"));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let Some(Update::Event(event)) = source.next().await {
            seen.push(event.data);
        }
    }
    // The server dies: its connections close, and for a while nothing listens on the port.
    drop(first);
    let watcher = tokio::spawn(async move {
        let mut updates = Vec::new();
        while let Some(update) = source.next().await {
            updates.push(update);
        }
        updates
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let replayed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&replayed);
    // The restarted server resumes after Last-Event-ID, then says it is done.
    let second = ScriptedServer::start_on(addr, move |_, request| {
        if request.header("last-event-id") == Some("2")
            && counter.fetch_add(1, Ordering::SeqCst) == 0
        {
            Reply::sse("id: 3\ndata: c\n\n")
        } else {
            Reply::no_content()
        }
    })
    .await;
    let updates = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("the client did not recover within 10 s")
        .unwrap();
    seen.extend(data(&updates));
    assert_eq!(seen, ["a", "b", "c"]);
    assert_eq!(final_state(&updates), ConnectionState::Closed);
    assert!(
        reconnected_after(&updates, |error| matches!(error, SseError::Connect { .. })),
        "the restart should have been seen as refused connections: {:?}",
        states(&updates)
    );
    assert_eq!(
        replayed.load(Ordering::SeqCst),
        1,
        "{:?}",
        second.requests()
    );
}

#[tokio::test]
async fn an_oversized_event_is_reported_and_the_stream_goes_on() {
    let big = "x".repeat(100);
    let server = ScriptedServer::start(move |n, _| match n {
        0 => Reply::sse(&format!("data: {big}\n\ndata: small\n\n")),
        _ => Reply::no_content(),
    })
    .await;
    let source = EventSource::builder(&server.url("/"))
        .unwrap()
        .reconnect(fast_policy())
        .max_event_bytes(64)
        .build()
        .unwrap();
    let updates = run_to_end(source).await;
    assert!(updates.contains(&Update::EventTooLarge { limit_bytes: 64 }));
    assert_eq!(data(&updates), ["small"]);
}

#[tokio::test]
async fn a_state_reads_well_for_people() {
    let state = ConnectionState::Reconnecting {
        delay: Duration::from_millis(1200),
        attempt: 3,
        last_error: Some(SseError::Connect {
            url: "http://127.0.0.1:9010/api/events".into(),
            reason: "connection refused".into(),
        }),
    };
    assert_eq!(
        state.to_string(),
        "reconnecting in 1200 ms (attempt 3, last error: could not connect to \
         http://127.0.0.1:9010/api/events: connection refused)"
    );
}
