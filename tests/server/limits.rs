//! Requests that must not take the server down, over real TCP: parameters out of bounds,
//! cross-site writes and DNS rebinding, slow and stalled clients, oversized headers and bodies,
//! too many connections, subscribers that stop reading, a flood of queued runs, and small
//! malformed inputs.

use crate::support;

use std::time::{Duration, Instant};

use runboard_api::{CreateRun, RunMode};
use runboard_server::{self as server, ConnectionLimits, ServerError};
use runboard_sse::{EventSource, Update};
use serde_json::{Value, json};
use support::raw_http::{closed_within, exchange, read_response};
use support::test_server::{client, config, start, wait_finished};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

fn run_request(params: Value) -> CreateRun {
    CreateRun {
        task: "limits test".into(),
        mode: RunMode::Queued,
        params,
    }
}

fn post(host: &str, path: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: {}\r\nConnection: \
         close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn every_generator_parameter_has_bounds_and_a_value_outside_gets_422_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let api = client(&server);
    for (params, name) in [
        (json!({"tokens_per_sec": 1e9}), "tokens_per_sec"),
        (json!({"tokens_per_sec": 0}), "tokens_per_sec"),
        (json!({"iterations": 1_000_000}), "iterations"),
        (json!({"iterations": -1}), "iterations"),
        (json!({"fail": 1}), "fail"),
        (json!({"model": "x".repeat(300)}), "model"),
    ] {
        let error = api
            .create_run(&run_request(params.clone()))
            .await
            .expect_err(&params.to_string());
        assert_eq!(error.status(), Some(422), "{params}: {error}");
        assert!(
            error.to_string().contains(&format!("params.{name}")),
            "{error}"
        );
        let benchmark = api
            .create_benchmark(&runboard_api::CreateBenchmark {
                tasks: 1,
                name: None,
                params: params.clone(),
            })
            .await
            .expect_err("a benchmark's params are checked the same way");
        assert_eq!(benchmark.status(), Some(422), "{benchmark}");
    }
    // At the bound, a run works and its pace follows.
    let run = api
        .create_run(&run_request(
            json!({"tokens_per_sec": 5000, "iterations": 1}),
        ))
        .await
        .unwrap();
    let detail = wait_finished(&api, &run.summary.run_id, Duration::from_secs(30)).await;
    assert!(detail.summary.status.is_finished());
    server.stop().await;
}

#[tokio::test]
async fn cross_site_writes_and_foreign_hosts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(&dir);
    settings.access.cors_origins = vec!["https://dash.example.com".into()];
    let server = start(settings).await;
    let addr = server.addr();
    let own = format!("127.0.0.1:{}", addr.port());
    let body = r#"{"task":"from a page"}"#;

    // The attack as a browser sends it: a "simple" text/plain POST from another site.
    let text = exchange(
        addr,
        &post(
            &own,
            "/api/runs",
            "Origin: https://evil.example\r\nContent-Type: text/plain\r\n",
            body,
        ),
    )
    .await;
    assert_eq!(text.status, 403, "{text:?}");
    assert_eq!(text.code(), "cross_origin");
    // Even as JSON, from a foreign origin.
    let json = "Content-Type: application/json\r\n";
    let foreign = exchange(
        addr,
        &post(
            &own,
            "/api/runs",
            &format!("Origin: https://evil.example\r\n{json}"),
            body,
        ),
    )
    .await;
    assert_eq!(foreign.status, 403, "{foreign:?}");
    // A cancel has no body: the Origin alone decides.
    let cancel = exchange(
        addr,
        &post(
            &own,
            "/api/runs/run-x/cancel",
            "Origin: https://evil.example\r\n",
            "",
        ),
    )
    .await;
    assert_eq!(cancel.status, 403, "{cancel:?}");
    // Not JSON, with no Origin (a script, curl without -H): 415.
    let plain = exchange(
        addr,
        &post(&own, "/api/runs", "Content-Type: text/plain\r\n", body),
    )
    .await;
    assert_eq!(plain.status, 415, "{plain:?}");
    assert_eq!(plain.code(), "unsupported_media_type");
    // The server's own page, and an allowed origin, may write.
    for origin in [
        format!("http://{own}"),
        "https://dash.example.com".to_owned(),
    ] {
        let allowed = exchange(
            addr,
            &post(
                &own,
                "/api/runs",
                &format!("Origin: {origin}\r\n{json}"),
                body,
            ),
        )
        .await;
        assert_eq!(allowed.status, 201, "{origin}: {allowed:?}");
    }
    let tools = exchange(addr, &post(&own, "/api/runs", json, body)).await;
    assert_eq!(tools.status, 201, "{tools:?}");
    assert_eq!(
        exchange(
            addr,
            &post(
                &format!("localhost:{}", addr.port()),
                "/api/runs",
                json,
                body
            )
        )
        .await
        .status,
        201
    );

    // DNS rebinding: a page whose name now points at 127.0.0.1 cannot read either.
    let rebound = exchange(
        addr,
        b"GET /api/runs HTTP/1.1\r\nHost: evil.example:9010\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(rebound.status, 403, "{rebound:?}");
    assert_eq!(rebound.code(), "host_not_allowed");
    server.stop().await;

    // With a token, the Host check is not needed (a rebound page cannot present the token).
    let mut settings = config(&dir);
    settings.access.token = Some("s3cret".into());
    let server = start(settings).await;
    let with_token = exchange(
        server.addr(),
        b"GET /api/runs HTTP/1.1\r\nHost: gpu-box.lan:9010\r\nAuthorization: Bearer s3cret\r\n\
          Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(with_token.status, 200, "{with_token:?}");
    server.stop().await;
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // Each kind of bad client in turn, against one server.
async fn slow_idle_and_oversized_clients_are_cut_off_and_too_many_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(&dir);
    settings.connections = ConnectionLimits {
        header_timeout: Duration::from_secs(1),
        max_connections: 6,
        ..ConnectionLimits::default()
    };
    settings.requests.body_timeout = Duration::from_secs(1);
    let server = start(settings).await;
    let addr = server.addr();
    let host = format!("127.0.0.1:{}", addr.port());

    // Headers at one byte every 300 ms: closed by the header timeout.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        for byte in b"GET /api/health HTTP/1.1\r\nHost: x\r\n" {
            if slow.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    });
    // A socket that sends nothing, and one kept alive after a request: both closed.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(format!("GET /api/health HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut kept, Duration::from_secs(5))
            .await
            .status,
        200
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(4)).await,
        "idle socket"
    );
    assert!(
        closed_within(&mut kept, Duration::from_secs(4)).await,
        "kept-alive socket"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(10), trickle)
            .await
            .unwrap()
            .unwrap(),
        "the slow-header client was cut off"
    );

    // A body that never comes: 408.
    let mut stalled_body = TcpStream::connect(addr).await.unwrap();
    stalled_body
        .write_all(
            format!(
                "POST /api/runs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                 Content-Length: 40\r\n\r\n{{\"task\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let response = read_response(&mut stalled_body, Duration::from_secs(5)).await;
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(response.code(), "body_timeout");

    // A declared body far over the limit: 413 before any of it is sent.
    let started = Instant::now();
    let mut huge = TcpStream::connect(addr).await.unwrap();
    huge.write_all(
        format!(
            "POST /api/runs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: 100000000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let response = read_response(&mut huge, Duration::from_secs(5)).await;
    assert_eq!(response.status, 413, "{response:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Headers over the cap: 431.
    let mut big = TcpStream::connect(addr).await.unwrap();
    let filler = "a".repeat(40 * 1024);
    let _ = big
        .write_all(
            format!("GET /api/health HTTP/1.1\r\nHost: {host}\r\nX-Filler: {filler}\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let response = read_response(&mut big, Duration::from_secs(5)).await;
    assert_eq!(response.status, 431, "{response:?}");

    // Six connections held open (the cap); the seventh is refused at once with 503.
    let mut held = Vec::new();
    for _ in 0..6 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET /api/events HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = exchange(
        addr,
        format!("GET /api/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.code(), "too_many_connections");
    drop(held);
    // Room again once they close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client(&server).health().await.unwrap().status, "ok");
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_dropped_and_resumes_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(&dir);
    settings.connections.stalled_write = Duration::from_secs(1);
    settings.generator.speed = 100.0;
    settings.runs.concurrency = 32;
    let server = start(settings).await;
    let addr = server.addr();
    let host = format!("127.0.0.1:{}", addr.port());
    // A reader that never reads, with a small receive window.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    stalled
        .write_all(format!("GET /api/events HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let api = client(&server);
    let mut last = String::new();
    for _ in 0..32 {
        last = api
            .create_run(&run_request(
                json!({"iterations": 10, "tokens_per_sec": 5000}),
            ))
            .await
            .unwrap()
            .summary
            .run_id;
    }
    // Not a byte is read until every run is over (all their events are stored, so the
    // stream has had everything to send) and the stall limit has passed twice over.
    wait_finished(&api, &last, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // By then the server has reset the connection. (A graceful close was not enough: the kernel
    // kept probing this zero window with backoff, so the end took many seconds to arrive.)
    assert!(
        closed_within(&mut stalled, Duration::from_secs(5)).await,
        "the stalled subscriber was never dropped"
    );
    // Resuming from id 1 gets everything after it, in order, without a gap.
    let head = api.health().await.unwrap().events_head.unwrap();
    let mut source = EventSource::builder(&format!("{}/api/events", server.url()))
        .unwrap()
        .last_event_id("1")
        .build()
        .unwrap();
    let mut next = 2;
    tokio::time::timeout(Duration::from_secs(60), async {
        while next <= head {
            if let Some(Update::Event(event)) = source.next().await {
                assert_eq!(event.id, next.to_string());
                next += 1;
            }
        }
    })
    .await
    .expect("the resume delivered everything");
    server.stop().await;
}

#[tokio::test]
async fn past_max_queued_new_runs_get_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(&dir);
    settings.runs.concurrency = 1;
    settings.runs.max_queued = 3;
    settings.generator.speed = 1.0;
    let server = start(settings).await;
    let api = client(&server);
    let first = api
        .create_run(&run_request(json!({"iterations": 10})))
        .await
        .unwrap();
    // Wait until it holds the slot, then fill the queue.
    tokio::time::timeout(Duration::from_secs(10), async {
        while api.run(&first.summary.run_id).await.unwrap().summary.status
            != runboard_api::RunStatus::Running
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(
            api.create_run(&run_request(json!({})))
                .await
                .unwrap()
                .summary
                .run_id,
        );
    }
    let addr = server.addr();
    let refused = exchange(
        addr,
        &post(
            &format!("127.0.0.1:{}", addr.port()),
            "/api/runs",
            "Content-Type: application/json\r\n",
            r#"{"task":"one too many"}"#,
        ),
    )
    .await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.code(), "queue_full");
    assert_eq!(refused.header("retry-after"), Some("5"));
    // A cancelled queued run frees its place.
    api.cancel(&queued[0]).await.unwrap();
    wait_finished(&api, &queued[0], Duration::from_secs(10)).await;
    api.create_run(&run_request(json!({}))).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_path_that_is_not_utf8_gets_the_json_error_and_a_blank_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let addr = server.addr();
    for path in [
        "/api/runs/%FF",
        "/api/runs/%FF/stream",
        "/api/runs/%C3%28/cancel",
    ] {
        let method = if path.ends_with("cancel") {
            "POST"
        } else {
            "GET"
        };
        let response = exchange(
            addr,
            format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n",
                addr.port()
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(response.status, 400, "{path}: {response:?}");
        assert_eq!(response.code(), "bad_path", "{path}");
    }
    server.stop().await;

    for blank in [
        "",
        "   ",
        " padded ",
        "tab\there",
        "clé-secrète",
        "token\u{7f}",
    ] {
        let mut settings = config(&dir);
        settings.access.token = Some(blank.into());
        match server::start(settings).await {
            Err(ServerError::BadToken) => {}
            Err(other) => panic!("{blank:?}: {other}"),
            Ok(server) => {
                server.stop().await;
                panic!("{blank:?} was accepted as a token");
            }
        }
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_runboard"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--db",
            ":memory:",
            "--token",
            "  ",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("token is blank"), "{stderr}");
}

#[tokio::test]
async fn bare_lf_and_raw_bytes_in_the_request_line_get_a_json_400() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let addr = server.addr();
    let host = format!("127.0.0.1:{}", addr.port());
    let cases: [(Vec<u8>, &str); 4] = [
        (
            format!("GET /api/health HTTP/1.1\nHost: {host}\nConnection: close\n\n").into_bytes(),
            "bare LF",
        ),
        (
            format!("GET /api/health HTTP/1.1\r\nHost: {host}\nConnection: close\r\n\r\n")
                .into_bytes(),
            "bare LF",
        ),
        (
            [
                b"GET /api/runs/\xff\xfe HTTP/1.1\r\nHost: ".as_slice(),
                host.as_bytes(),
                b"\r\nConnection: close\r\n\r\n",
            ]
            .concat(),
            "visible ASCII",
        ),
        (
            [
                b"GET /api/r\x01uns HTTP/1.1\r\nHost: ".as_slice(),
                host.as_bytes(),
                b"\r\nConnection: close\r\n\r\n",
            ]
            .concat(),
            "visible ASCII",
        ),
    ];
    for (request, says) in cases {
        let response = exchange(addr, &request).await;
        assert_eq!(response.status, 400, "{response:?}");
        assert_eq!(response.code(), "bad_request", "{response:?}");
        assert!(response.body.contains(says), "{}", response.body);
    }
    // A sound request, byte for byte the same but for CR LF, is answered.
    let sound = exchange(
        addr,
        format!("GET /api/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(sound.status, 200, "{sound:?}");
    server.stop().await;
}
