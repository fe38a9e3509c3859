//! Named tokens with roles, over real HTTP: every route × every role (and no token, a wrong
//! token) gets its documented status; `GET /api/access` says what a token may do; a worker
//! token names the worker of its calls.

use crate::support;

use std::time::Duration;

use reqwest::Method;
use runboard_api::{
    AccessInfo, Action, ApiClient, CreateBenchmark, CreateRun, Role, RunMode, RunQuery, RunStatus,
};
use runboard_server::{ServerConfig, UpstreamSpec, parse_token_list};
use serde_json::{Value, json};
use support::openai_upstream::{FakeUpstream, whole_reply};
use support::test_server::{config, start, wait_finished};

const ADMIN: &str = "admin-token-0123456789";
const VIEWER: &str = "viewer-token-0123456789";
const WORKER: &str = "worker-token-0123456789";
const SINGLE: &str = "single-token-0123456789";

fn roles_config(dir: &tempfile::TempDir, upstream: &FakeUpstream) -> ServerConfig {
    let mut config = config(dir);
    let spec = UpstreamSpec::parse(&format!("gpu={}", upstream.base()), |_| None).unwrap();
    config.upstreams.upstreams.push(spec);
    config.access.token = Some(SINGLE.into());
    config.access.tokens = parse_token_list(&format!(
        "# the team\nalice admin {ADMIN}\nops viewer {VIEWER}  # read only\ngpu-box-3 worker {WORKER}\n"
    ))
    .unwrap();
    config
}

/// A request's status and body; streams are answered as soon as their head arrives.
async fn status_of(
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = runboard_sse::http::client()
        .request(method, url)
        .timeout(Duration::from_secs(20));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let is_stream = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    if is_stream {
        return (status, Value::Null);
    }
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One route of the API, with what it does (`None`: any valid token may call it).
struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    action: Option<Action>,
}

/// Every route, reading or writing `run_id`.
fn routes(run_id: &str) -> Vec<Route> {
    let route = |method: Method, path: &str, body: Option<Value>, action| Route {
        method,
        path: path.to_owned(),
        body,
        action,
    };
    let chat = json!({"model": "org/chat", "messages": [{"role": "user", "content": "tides?"}]});
    let launch = json!({"task": "launched in the matrix", "params": {"iterations": 1}});
    let benchmark = json!({"tasks": 1, "params": {"iterations": 1}});
    let read = Some(Action::Read);
    vec![
        route(Method::GET, "/api/access", None, None),
        route(Method::GET, "/api/health", None, read),
        route(Method::GET, "/api/runs", None, read),
        route(Method::GET, &format!("/api/runs/{run_id}"), None, read),
        route(
            Method::GET,
            &format!("/api/runs/{run_id}/stream"),
            None,
            read,
        ),
        route(Method::GET, "/api/events", None, read),
        route(Method::GET, "/api/workers", None, read),
        route(Method::GET, "/api/upstreams", None, read),
        route(Method::GET, "/api/upstreams/stream", None, read),
        route(Method::GET, "/api/benchmark-sse", None, read),
        route(Method::GET, "/metrics", None, read),
        route(Method::GET, "/metrics/active-requests", None, read),
        route(Method::GET, "/metrics/active-requests/stream", None, read),
        route(Method::GET, "/v1/models", None, Some(Action::ListModels)),
        route(
            Method::POST,
            "/api/runs",
            Some(launch),
            Some(Action::Launch),
        ),
        route(
            Method::POST,
            &format!("/api/runs/{run_id}/cancel"),
            None,
            Some(Action::Cancel),
        ),
        route(
            Method::POST,
            "/api/benchmarks",
            Some(benchmark),
            Some(Action::Benchmark),
        ),
        route(
            Method::POST,
            "/v1/chat/completions",
            Some(chat),
            Some(Action::ProxyCall),
        ),
    ]
}

/// What an allowed request gets: the run to cancel has finished (409); one benchmark runs at a
/// time, so the second admin's may find the first's still running (409).
fn allowed(route: &Route) -> &'static [u16] {
    match (route.method.as_str(), route.path.as_str()) {
        ("POST", "/api/runs") => &[201],
        ("POST", "/api/benchmarks") => &[201, 409],
        ("POST", path) if path.ends_with("/cancel") => &[409],
        _ => &[200],
    }
}

/// What `role` gets on `route`: `None` for no valid token.
fn expected(role: Option<Role>, route: &Route) -> &'static [u16] {
    match (role, route.action) {
        (None, _) => &[401],
        (Some(role), Some(action)) if !role.may(action) => &[403],
        (Some(_), _) => allowed(route),
    }
}

/// The callers of the matrix: who, with which token, and its role.
const CALLERS: [(&str, Option<&str>, Option<Role>); 6] = [
    ("alice (admin)", Some(ADMIN), Some(Role::Admin)),
    ("the single --token", Some(SINGLE), Some(Role::Admin)),
    ("ops (viewer)", Some(VIEWER), Some(Role::Viewer)),
    ("gpu-box-3 (worker)", Some(WORKER), Some(Role::Worker)),
    ("no token", None, None),
    ("a wrong token", Some("viewer-token-012345678"), None),
];

#[tokio::test]
async fn every_route_answers_each_role_with_its_documented_status() {
    let upstream = FakeUpstream::start(&["org/chat"], |_, _| {
        whole_reply("Tides follow the moon.", 11, 5)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(roles_config(&dir, &upstream)).await;
    let admin = ApiClient::new(&server.url(), Some(ADMIN)).unwrap();
    let run = admin
        .create_run(&runboard_api::CreateRun {
            task: "a run to read".into(),
            mode: runboard_api::RunMode::Queued,
            params: json!({"iterations": 1}),
        })
        .await
        .unwrap();
    let run_id = run.summary.run_id.clone();
    wait_finished(&admin, &run_id, Duration::from_secs(20)).await;

    let routes = routes(&run_id);
    let mut table = Vec::new();
    for (who, token, role) in CALLERS {
        for route in &routes {
            let url = format!("{}{}", server.url(), route.path);
            let (status, answer) =
                status_of(route.method.clone(), &url, route.body.as_ref(), token).await;
            let expected = expected(role, route);
            let what = format!("{who}: {} {}", route.method, route.path);
            assert!(
                expected.contains(&status),
                "{what}: {status} {answer}, expected {expected:?}"
            );
            table.push(format!("{what} → {status}"));
            match status {
                401 => assert_eq!(answer["error"]["code"], "unauthorized", "{answer}"),
                403 => {
                    let action = route.action.unwrap();
                    assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
                    let message = answer["error"]["message"].as_str().unwrap();
                    let needed = format!("needs the {} role", Role::needed_for(action));
                    assert!(message.contains(&needed), "{what}: {message}");
                    assert!(message.contains(action.describe()), "{message}");
                }
                _ => {}
            }
        }
    }
    assert_eq!(table.len(), 6 * routes.len());

    // A write to a path no route takes needs an admin, whatever it is.
    let url = format!("{}/api/health", server.url());
    assert_eq!(
        status_of(Method::POST, &url, None, Some(VIEWER)).await.0,
        403
    );
    assert_eq!(
        status_of(Method::POST, &url, None, Some(ADMIN)).await.0,
        405
    );
    server.stop().await;
}

#[tokio::test]
async fn each_token_learns_what_it_may_do_and_a_worker_token_names_its_calls() {
    let upstream = FakeUpstream::start(&["org/chat"], |_, _| {
        whole_reply("Tides follow the moon.", 11, 5)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(roles_config(&dir, &upstream)).await;
    let access = |token: &'static str| {
        let url = server.url();
        async move {
            ApiClient::new(&url, Some(token))
                .unwrap()
                .access()
                .await
                .unwrap()
        }
    };
    let viewer: AccessInfo = access(VIEWER).await;
    assert_eq!(viewer.name.as_deref(), Some("ops"));
    assert_eq!(viewer.role, Role::Viewer);
    assert!(viewer.tokens_required);
    assert!(viewer.may(Action::Read) && !viewer.may(Action::Launch));
    assert!(!viewer.may(Action::Cancel) && !viewer.may(Action::ProxyCall));
    let worker = access(WORKER).await;
    assert_eq!(worker.role, Role::Worker);
    assert!(worker.may(Action::ProxyCall) && !worker.may(Action::Read));
    let single = access(SINGLE).await;
    assert_eq!((single.name, single.role), (None, Role::Admin));
    assert_eq!(single.may, Action::ALL);

    // The worker token's call names no worker: it is the token's name.
    let response = runboard_sse::http::client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(WORKER)
        .header("content-type", "application/json")
        .body(
            json!({"model": "org/chat", "messages": [{"role": "user", "content": "tides?"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Tides follow the moon.")
    );
    let admin = ApiClient::new(&server.url(), Some(ADMIN)).unwrap();
    // The record is written beside the answer: wait for it.
    let proxied = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let runs = admin.list_runs(&RunQuery::default()).await.unwrap().runs;
            if let Some(run) = runs.into_iter().find(|run| run.task.contains("tides?")) {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the call is a run");
    assert_eq!(proxied.worker.as_deref(), Some("gpu-box-3"));
    // The board's token stays with the board: the model server never sees it.
    let seen = upstream.chats();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].request.header("authorization").is_none());
    assert!(
        !seen[0]
            .request
            .headers
            .iter()
            .any(|(_, value)| value.contains(WORKER))
    );
    server.stop().await;

    // Without any token every caller is an admin, and the server says no token is needed.
    let open_dir = tempfile::tempdir().unwrap();
    let open = start(config(&open_dir)).await;
    let info = ApiClient::new(&open.url(), None)
        .unwrap()
        .access()
        .await
        .unwrap();
    assert!(!info.tokens_required);
    assert_eq!(info.role, Role::Admin);
    open.stop().await;
}

#[tokio::test]
async fn launches_cancels_and_benchmark_starts_carry_the_tokens_name_in_the_runs_events() {
    // A model server that holds its answer, so the run is still going when it is cancelled.
    let upstream = FakeUpstream::start(&["org/chat"], |_, _| {
        vec![
            support::openai_upstream::stream_head(),
            support::openai_upstream::Step::Pause(Duration::from_secs(30)),
        ]
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(roles_config(&dir, &upstream)).await;
    let alice = ApiClient::new(&server.url(), Some(ADMIN)).unwrap();
    let launched = alice
        .create_run(&CreateRun {
            task: "count the gulls".into(),
            mode: RunMode::Queued,
            params: json!({"model": "org/chat"}),
        })
        .await
        .unwrap();
    assert_eq!(launched.summary.launched_by.as_deref(), Some("alice"));
    let run_id = launched.summary.run_id;
    // The single --token has no name: its runs name nobody.
    let single = ApiClient::new(&server.url(), Some(SINGLE)).unwrap();
    let unnamed = single
        .create_run(&CreateRun {
            task: "count the terns".into(),
            mode: RunMode::Queued,
            params: json!({"model": "org/chat"}),
        })
        .await
        .unwrap();
    assert_eq!(unnamed.summary.launched_by, None);

    tokio::time::timeout(Duration::from_secs(10), async {
        while upstream.chats().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the run reaches the model server");
    alice.cancel(&run_id).await.unwrap();
    let detail = wait_finished(&alice, &run_id, Duration::from_secs(10)).await;
    assert_eq!(detail.summary.status, RunStatus::Cancelled);
    // Stored in the row (listings) and in the run's own events.
    assert_eq!(detail.summary.launched_by.as_deref(), Some("alice"));
    let created = detail
        .events
        .iter()
        .find(|event| event.event == "run_created")
        .unwrap();
    assert_eq!(created.data["launched_by"], "alice", "{created:?}");
    let ended = detail
        .events
        .iter()
        .rev()
        .find(|event| event.event == "status")
        .unwrap();
    assert_eq!(ended.data["message"], "cancelled by alice", "{ended:?}");
    let listed = alice.list_runs(&RunQuery::default()).await.unwrap().runs;
    let row = listed.iter().find(|run| run.run_id == run_id).unwrap();
    assert_eq!(row.launched_by.as_deref(), Some("alice"));
    alice.cancel(&unnamed.summary.run_id).await.unwrap();
    let unnamed = wait_finished(&alice, &unnamed.summary.run_id, Duration::from_secs(10)).await;
    let ended = unnamed
        .events
        .iter()
        .rev()
        .find(|event| event.event == "status")
        .unwrap();
    assert_eq!(ended.data["message"], "cancelled by alice", "{ended:?}");

    // A benchmark's runs are launched by who started it.
    alice
        .create_benchmark(&CreateBenchmark {
            name: Some("gulls".into()),
            tasks: 1,
            params: json!({"model": "org/chat"}),
        })
        .await
        .unwrap();
    let benchmark_run = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let runs = alice.list_runs(&RunQuery::default()).await.unwrap().runs;
            if let Some(run) = runs
                .into_iter()
                .find(|run| run.task.starts_with("Benchmark gulls"))
            {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the benchmark's run");
    assert_eq!(benchmark_run.launched_by.as_deref(), Some("alice"));
    server.stop().await;
}
