//! The fleet as its workers: who made each proxied call (`X-Runboard-Worker`, the body's
//! `user`, else the client's address and `User-Agent`), runs filtered by worker, a launch that
//! names one, `GET /api/workers` with each worker's figures, and live goodput against `--slo`.
//! A scripted upstream gives exact timings; the real llama.cpp server with the `openai`
//! package is in `llama_proxy.rs`.

use crate::support;

use std::time::Duration;

use runboard_api::{ApiClient, CreateRun, Feature, RunMode, RunQuery, RunStatus, Slo};
use runboard_server::{ServerConfig, UpstreamSpec};
use serde_json::json;
use support::openai_upstream::{FakeUpstream, answer};
use support::test_server::{config, start, wait_finished};

fn fleet_config(dir: &tempfile::TempDir, upstream: &FakeUpstream) -> ServerConfig {
    let mut config = config(dir);
    let spec = UpstreamSpec::parse(&format!("gpu={}", upstream.base()), |_| None).unwrap();
    config.upstreams.upstreams.push(spec);
    config.upstreams.idle_timeout = Duration::from_secs(5);
    // The scripted answers take about 40 ms to their first token and 5 ms a token after it.
    config.slo = Some(Slo::parse("ttft=2s,itl=1s").unwrap());
    config
}

/// One streamed call with these headers and body fields; its run id.
async fn call(base: &str, headers: &[(&str, &str)], user: Option<&str>) -> String {
    let mut body = json!({"model": "org/chat", "stream": true,
                          "messages": [{"role": "user", "content": "count"}]});
    if let Some(user) = user {
        body["user"] = json!(user);
    }
    let mut request = runboard_sse::http::client()
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let run_id = response.headers()["x-runboard-run-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(response.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    run_id
}

/// A launch that names a worker joins it; one that names none is its own.
async fn launches_name_their_worker_or_none(api: &ApiClient) {
    let launched = api
        .create_run(&CreateRun {
            task: "a launched run".into(),
            mode: RunMode::Queued,
            params: json!({"worker": "gen-01", "iterations": 1}),
        })
        .await
        .unwrap();
    assert_eq!(launched.summary.worker.as_deref(), Some("gen-01"));
    wait_finished(api, &launched.summary.run_id, Duration::from_secs(30)).await;
    let alone = api
        .create_run(&CreateRun {
            task: "an anonymous run".into(),
            mode: RunMode::Queued,
            params: json!({"iterations": 1}),
        })
        .await
        .unwrap();
    assert_eq!(alone.summary.worker, None);
    wait_finished(api, &alone.summary.run_id, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_grouped_by_worker_listed_with_figures_and_judged_against_the_objective() {
    let upstream = FakeUpstream::start(&["org/chat"], |_, _| {
        answer(&["one", " two", " three"], Duration::from_millis(5), 7)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(fleet_config(&dir, &upstream)).await;
    let base = server.url();
    let api = ApiClient::new(&base, None).unwrap();
    assert!(api.health().await.unwrap().has(Feature::Workers));

    let mut named = Vec::new();
    for _ in 0..3 {
        named.push(
            call(
                &base,
                &[("x-runboard-worker", "gen-01"), ("user-agent", "w/1")],
                Some("alice"),
            )
            .await,
        );
    }
    let by_user = call(&base, &[("user-agent", "w/1")], Some("alice")).await;
    let by_client = call(&base, &[("user-agent", "labeler/2.0")], None).await;
    for run in named.iter().chain([&by_user, &by_client]) {
        wait_finished(&api, run, Duration::from_secs(5)).await;
    }
    let worker_of = |detail: runboard_api::RunDetail| detail.summary.worker;
    assert_eq!(
        worker_of(api.run(&named[0]).await.unwrap()).as_deref(),
        Some("gen-01")
    );
    assert_eq!(
        worker_of(api.run(&by_user).await.unwrap()).as_deref(),
        Some("alice")
    );
    assert_eq!(
        worker_of(api.run(&by_client).await.unwrap()).as_deref(),
        Some("127.0.0.1 labeler/2.0"),
        "a client that names nothing is its address and User-Agent"
    );

    launches_name_their_worker_or_none(&api).await;

    let only = |worker: &str| RunQuery {
        worker: Some(worker.into()),
        ..RunQuery::default()
    };
    let gen01 = api.list_runs(&only("gen-01")).await.unwrap().runs;
    assert_eq!(gen01.len(), 4, "three calls and the launched run");
    assert!(
        gen01
            .iter()
            .all(|run| run.worker.as_deref() == Some("gen-01"))
    );
    assert!(
        api.list_runs(&only("nobody"))
            .await
            .unwrap()
            .runs
            .is_empty()
    );

    let list = api.workers().await.unwrap();
    let listed: Vec<&str> = list.workers.iter().map(|w| w.worker.as_str()).collect();
    assert_eq!(
        listed.len(),
        3,
        "no worker for the anonymous run: {listed:?}"
    );
    assert_eq!(
        listed[0], "gen-01",
        "the most recently seen first: {listed:?}"
    );
    let gen01 = &list.workers[0];
    assert_eq!((gen01.done, gen01.failed, gen01.in_flight), (4, 0, 0));
    assert!(gen01.tokens_out >= 9, "{gen01:?}");
    assert!(gen01.ttft_p50_ms.is_some_and(|ms| ms > 0.0), "{gen01:?}");
    assert!(gen01.last_seen.is_some());
    let alice = list.workers.iter().find(|w| w.worker == "alice").unwrap();
    assert_eq!((alice.done, alice.tokens_out), (1, 3));

    // The five proxied calls and the launched run's steps (generated on the upstream, a
    // call a step); all met the loose objective.
    let goodput = list.fleet.goodput.expect("--slo was set");
    assert_eq!(goodput.slo.to_string(), "ttft=2000ms,itl=1000ms");
    assert!(goodput.calls > 5, "{goodput:?}");
    assert_eq!(goodput.met, goodput.calls, "{goodput:?}");
    let chat = goodput
        .models
        .iter()
        .find(|m| m.model == "org/chat")
        .unwrap();
    assert_eq!((chat.calls, chat.met), (goodput.calls, goodput.met));
    assert!(list.fleet.calls_per_sec > 0.0);
    assert!(list.fleet.failures_per_min.abs() < f64::EPSILON);

    // The same server and store after a restart: totals come from the store.
    server.stop().await;
    let server = start(fleet_config(&dir, &upstream)).await;
    let api = ApiClient::new(&server.url(), None).unwrap();
    let list = api.workers().await.unwrap();
    let gen01 = list.workers.iter().find(|w| w.worker == "gen-01").unwrap();
    assert_eq!(gen01.done, 4);
    assert!(
        list.fleet.goodput.unwrap().calls == 0,
        "the live window starts empty"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tight_objective_is_missed_and_failures_count_against_it() {
    let upstream = FakeUpstream::start(&["org/chat"], |index, _| match index {
        // The upstream refuses the second call.
        1 => support::openai_upstream::error_reply(500, "boom", ""),
        _ => answer(&["slow", " words"], Duration::from_millis(30), 3),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = fleet_config(&dir, &upstream);
    config.slo = Some(Slo::parse("itl=1ms").unwrap());
    let server = start(config).await;
    let base = server.url();
    let api = ApiClient::new(&base, None).unwrap();
    let first = call(&base, &[("x-runboard-worker", "w")], None).await;
    let response = runboard_sse::http::client()
        .post(format!("{base}/v1/chat/completions"))
        .header("x-runboard-worker", "w")
        .header("content-type", "application/json")
        .body(
            json!({"model": "org/chat", "messages": [{"role": "user", "content": "x"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let failed = response.headers()["x-runboard-run-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let failed = wait_finished(&api, &failed, Duration::from_secs(5)).await;
    assert_eq!(failed.summary.status, RunStatus::Failed);
    wait_finished(&api, &first, Duration::from_secs(5)).await;
    let list = api.workers().await.unwrap();
    let w = &list.workers[0];
    assert_eq!((w.worker.as_str(), w.done, w.failed), ("w", 1, 1));
    let goodput = list.fleet.goodput.unwrap();
    assert_eq!((goodput.calls, goodput.met), (2, 0), "{goodput:?}");
    assert!(list.fleet.failures_per_min > 0.0);
    server.stop().await;
}
