//! Every endpoint of the reference server over real HTTP on loopback, with every error shape.

use crate::support;

use std::time::Duration;

use runboard_api::{ApiClient, ApiError, CreateRun, Feature, RunMode, RunQuery, RunStatus};
use runboard_server::{self as server, Access, EventSettings, ServerConfig, ServerError};
use serde_json::{Value, json};
use support::test_server::{client, config, start, wait_finished};

fn run_request(task: &str, params: Value) -> CreateRun {
    CreateRun {
        task: task.into(),
        mode: RunMode::Queued,
        params,
    }
}

/// A raw request, for bodies and methods the typed client never sends.
async fn raw(
    method: reqwest::Method,
    url: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = runboard_sse::http::client().request(method, url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// Asserts the `{"error": {"code", "message"}}` shape and returns the code.
fn error_code(body: &Value) -> String {
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "no error message in {body}");
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn health_lists_the_optional_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let health = client(&server).health().await.unwrap();
    assert_eq!(health.status, "ok");
    assert!(
        health.has(Feature::Events) && health.has(Feature::Cancel),
        "{health:?}"
    );
    assert_eq!(health.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    server.stop().await;
}

#[tokio::test]
async fn health_reports_the_events_head_and_a_seed_000_style_server_has_no_api_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let api = client(&server);
    assert_eq!(api.health().await.unwrap().events_head, Some(0));
    let run = api
        .create_run(&run_request("x", json!({"iterations": 1})))
        .await
        .unwrap();
    let detail = wait_finished(&api, &run.summary.run_id, Duration::from_secs(20)).await;
    let head = api.health().await.unwrap().events_head.unwrap();
    assert_eq!(
        head,
        detail.events.len() as u64,
        "one run: the head is its last event"
    );
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let server = start(ServerConfig {
        events: EventSettings {
            endpoint: false,
            ..config(&dir).events
        },
        ..config(&dir)
    })
    .await;
    let health = client(&server).health().await.unwrap();
    assert!(
        !health.has(Feature::Events) && health.events_head.is_none(),
        "{health:?}"
    );
    let (status, _, body) = raw(
        reqwest::Method::GET,
        &format!("{}/api/events", server.url()),
        None,
        None,
    )
    .await;
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    server.stop().await;
}

#[tokio::test]
async fn a_run_is_created_listed_and_shown_with_its_whole_chain() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let api = client(&server);
    let created = api
        .create_run(&run_request("write a haiku", json!({"iterations": 1})))
        .await
        .unwrap();
    let run_id = created.summary.run_id.clone();
    assert_eq!(created.summary.status, RunStatus::Queued);
    assert_eq!(created.summary.task, "write a haiku");
    let detail = wait_finished(&api, &run_id, Duration::from_secs(20)).await;
    assert_eq!(detail.summary.status, RunStatus::Completed);
    assert!(detail.summary.tokens_out > 0);
    assert!(detail.summary.started_at.is_some() && detail.summary.finished_at.is_some());
    let names: Vec<&str> = detail.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"run_created"));
    assert_eq!(names.last(), Some(&"stream_end"));
    assert!(names.contains(&"node_update") && names.contains(&"narration"));
    let seqs: Vec<u64> = detail.events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "run seqs are gap-free"
    );
    for event in &detail.events {
        assert_eq!(event.data["run_id"], run_id.as_str(), "{event:?}");
        assert!(event.ts.is_some());
    }
    // Cumulative tokens never go down, and snippets stay within 200 characters.
    let mut last = 0;
    for event in detail.events.iter().filter(|e| e.event == "node_update") {
        let tokens = event.data["tokens_out"].as_u64().unwrap();
        assert!(tokens >= last);
        last = tokens;
        assert!(event.data["snippet"].as_str().unwrap().chars().count() <= 200);
    }
    let listed = api.list_runs(&RunQuery::default()).await.unwrap();
    assert_eq!(listed.runs.len(), 1);
    assert_eq!(listed.runs[0], detail.summary);
    server.stop().await;
}

#[tokio::test]
async fn listing_pages_newest_first_filters_by_status_and_clamps_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.runs.concurrency = 1;
    config.generator.speed = 0.01; // Nothing finishes during this test.
    let server = start(config).await;
    let api = client(&server);
    let mut ids = Vec::new();
    for i in 0..5 {
        let run = api
            .create_run(&run_request(&format!("task {i}"), json!({})))
            .await
            .unwrap();
        ids.push(run.summary.run_id);
    }
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = api
            .list_runs(&RunQuery {
                limit: Some(2),
                before: before.clone(),
                status: None,
                worker: None,
            })
            .await
            .unwrap();
        assert!(page.runs.len() <= 2);
        paged.extend(page.runs.iter().map(|run| run.run_id.clone()));
        match page.next_before {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(paged, ids, "newest first, every run once");
    let queued = api
        .list_runs(&RunQuery {
            status: Some(RunStatus::Queued),
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(queued.runs.len(), 4, "one runs, four wait");
    let (status, _, body) = raw(
        reqwest::Method::GET,
        &format!("{}/api/runs?limit=100000", server.url()),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["runs"].as_array().unwrap().len(), 5);
    server.stop().await;
}

#[tokio::test]
async fn an_inline_run_answers_with_the_finished_detail() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let detail = client(&server)
        .create_run(&CreateRun {
            task: "inline".into(),
            mode: RunMode::Inline,
            params: json!({"iterations": 1}),
        })
        .await
        .unwrap();
    assert_eq!(detail.summary.status, RunStatus::Completed);
    assert_eq!(detail.events.last().unwrap().event, "stream_end");
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_the_error_shape_with_a_fitting_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let url = |path: &str| format!("{}{path}", server.url());
    let runs_url = url("/api/runs");
    let post = |body: Vec<u8>| raw(reqwest::Method::POST, &runs_url, Some(body), None);

    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "bad_json"),
        (b"".to_vec(), 400, "bad_json"),
        (br#"{"mode": "queued"}"#.to_vec(), 422, "invalid_body"),
        (br#"{"task": 42}"#.to_vec(), 422, "invalid_body"),
        (
            br#"{"task": "x", "mode": "sideways"}"#.to_vec(),
            422,
            "invalid_body",
        ),
        (br#"{"task": "   "}"#.to_vec(), 422, "invalid_task"),
        (
            serde_json::to_vec(&json!({"task": "é".repeat(4097)})).unwrap(),
            422,
            "task_too_long",
        ),
        (
            br#"{"task": "x", "params": [1, 2]}"#.to_vec(),
            422,
            "invalid_params",
        ),
        (
            serde_json::to_vec(&json!({"task": "x", "params": {"blob": "a".repeat(70_000)}}))
                .unwrap(),
            413,
            "body_too_large",
        ),
    ];
    for (body, expected_status, expected_code) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
        let (status, _, answer) = post(body).await;
        assert_eq!(status, expected_status, "{shown}: {answer}");
        assert_eq!(error_code(&answer), expected_code, "{shown}");
    }

    let gets = [
        ("/api/runs?limit=abc", 400, "bad_limit"),
        ("/api/runs?limit=-1", 400, "bad_limit"),
        ("/api/runs?status=paused", 400, "bad_status"),
        ("/api/runs?before=run-nope", 404, "not_found"),
        ("/api/runs/run-nope", 404, "not_found"),
        ("/api/runs/run-nope/stream", 404, "not_found"),
        ("/api/nothing-here", 404, "not_found"),
        ("/api/runs?limit=%FF%FE", 400, "bad_limit"),
    ];
    for (path, expected_status, expected_code) in gets {
        let (status, _, answer) = raw(reqwest::Method::GET, &url(path), None, None).await;
        assert_eq!(status, expected_status, "{path}: {answer}");
        assert_eq!(error_code(&answer), expected_code, "{path}");
    }
    let (status, _, answer) = raw(
        reqwest::Method::POST,
        &url("/api/runs/run-nope/cancel"),
        None,
        None,
    )
    .await;
    assert_eq!((status, error_code(&answer).as_str()), (404, "not_found"));
    let many: Vec<String> = (0..1001).map(|i| format!("r{i}")).collect();
    let too_many = url(&format!("/api/events?runs={}", many.join(",")));
    let (status, _, answer) = raw(reqwest::Method::GET, &too_many, None, None).await;
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (400, "too_many_runs")
    );
    let (status, _, answer) = raw(reqwest::Method::DELETE, &url("/api/runs"), None, None).await;
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (405, "method_not_allowed")
    );

    // The typed client turns the shape into an error that names status, message and URL.
    let error = client(&server).run("run-nope").await.unwrap_err();
    let ApiError::Status { status, code, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((*status, code.as_str()), (404, "not_found"));
    let text = error.to_string();
    assert!(
        text.contains("HTTP 404") && text.contains("/api/runs/run-nope"),
        "{text}"
    );
    assert!(text.contains("no run with id"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_token_is_required_on_every_route_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(ServerConfig {
        access: Access {
            token: Some("correct-horse".into()),
            ..config(&dir).access
        },
        ..config(&dir)
    })
    .await;
    let url = |path: &str| format!("{}{path}", server.url());
    for path in [
        "/api/health",
        "/api/runs",
        "/api/events",
        "/api/runs/x/stream",
    ] {
        for token in [
            None,
            Some("wrong"),
            Some("correct-hors"),
            Some("correct-horse-"),
        ] {
            let (status, headers, body) = raw(reqwest::Method::GET, &url(path), None, token).await;
            assert_eq!(status, 401, "{path} with {token:?}");
            assert_eq!(error_code(&body), "unauthorized");
            assert_eq!(headers["www-authenticate"], "Bearer");
        }
    }
    let (status, _, _) = raw(
        reqwest::Method::POST,
        &url("/api/runs"),
        Some(br#"{"task": "x"}"#.to_vec()),
        None,
    )
    .await;
    assert_eq!(status, 401, "a run must not be created without the token");
    let authorised = ApiClient::new(&server.url(), Some("correct-horse")).unwrap();
    assert!(authorised.health().await.is_ok());
    let run = authorised
        .create_run(&run_request("x", json!({"iterations": 1})))
        .await
        .unwrap();
    wait_finished(&authorised, &run.summary.run_id, Duration::from_secs(20)).await;
    let anonymous = client(&server);
    assert_eq!(anonymous.health().await.unwrap_err().status(), Some(401));
    server.stop().await;
}

#[tokio::test]
async fn listening_beyond_loopback_needs_a_token_or_insecure() {
    let exposed = ServerConfig {
        addr: "0.0.0.0:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let Err(error) = server::start(exposed.clone()).await else {
        panic!("a server without a token must not listen on 0.0.0.0");
    };
    assert!(matches!(error, ServerError::Exposed(_)), "{error}");
    assert!(error.to_string().contains("--token"), "{error}");
    assert!(
        ServerConfig {
            access: Access {
                token: Some("t".into()),
                ..exposed.clone().access
            },
            ..exposed.clone()
        }
        .check_exposure()
        .is_ok()
    );
    assert!(
        ServerConfig {
            access: Access {
                insecure: true,
                ..exposed.clone().access
            },
            ..exposed.clone()
        }
        .check_exposure()
        .is_ok()
    );
    assert!(
        ServerConfig {
            access: Access {
                token: Some(String::new()),
                ..exposed.access
            },
            ..exposed
        }
        .check_exposure()
        .is_err(),
        "an empty token is no token"
    );
}

#[tokio::test]
async fn queued_and_running_runs_can_be_cancelled_and_finished_ones_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.runs.concurrency = 1;
    config.generator.speed = 1.0;
    let server = start(config).await;
    let api = client(&server);
    let running = api
        .create_run(&run_request("long", json!({"iterations": 5})))
        .await
        .unwrap();
    let queued = api
        .create_run(&run_request("waits", json!({})))
        .await
        .unwrap();
    let running_id = running.summary.run_id;
    let queued_id = queued.summary.run_id;
    tokio::time::timeout(Duration::from_secs(10), async {
        while api.run(&running_id).await.unwrap().summary.status != RunStatus::Running {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(
        api.run(&queued_id).await.unwrap().summary.status,
        RunStatus::Queued
    );

    let accepted = api.cancel(&queued_id).await.unwrap();
    assert_eq!(accepted.run_id, queued_id);
    let detail = wait_finished(&api, &queued_id, Duration::from_secs(10)).await;
    assert_eq!(detail.summary.status, RunStatus::Cancelled);
    let names: Vec<&str> = detail.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["run_created", "status", "stream_end"]);
    assert!(
        detail.summary.started_at.is_none(),
        "a cancelled queued run never started"
    );

    api.cancel(&running_id).await.unwrap();
    let detail = wait_finished(&api, &running_id, Duration::from_secs(10)).await;
    assert_eq!(detail.summary.status, RunStatus::Cancelled);
    assert_eq!(detail.events.last().unwrap().data["status"], "cancelled");

    let error = api.cancel(&running_id).await.unwrap_err();
    assert!(
        matches!(&error, ApiError::Status { status: 409, code, .. } if code == "already_finished"),
        "{error:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn at_most_concurrency_runs_generate_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.runs.concurrency = 2;
    config.generator.speed = 2.0;
    let server = start(config).await;
    let api = client(&server);
    for _ in 0..5 {
        api.create_run(&run_request("x", json!({}))).await.unwrap();
    }
    for _ in 0..20 {
        let running = api
            .list_runs(&RunQuery {
                status: Some(RunStatus::Running),
                ..RunQuery::default()
            })
            .await
            .unwrap();
        assert!(running.runs.len() <= 2, "{} running", running.runs.len());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.stop().await;
}
