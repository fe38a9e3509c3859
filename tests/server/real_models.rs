//! `serve --upstream`: runs generated on OpenAI-compatible model servers, against a scripted
//! upstream for what a real one will not do on demand (the real llama.cpp server is in
//! `llama_runs.rs`): usage and reasoning in both spellings, tool-call pieces, streams without
//! usage or `[DONE]`, error frames, 429 with `Retry-After`, 5xx, cuts, silence, a slow first
//! token, cancel and shutdown, limits per upstream, and keys that never leak.

use crate::support;

use std::time::Duration;

use runboard_api::{ApiClient, CreateRun, RequestPhase, RunDetail, RunStatus, StoredEvent};
use runboard_server::{RunningServer, ServerConfig, UpstreamSpec};
use serde_json::{Value, json};
use support::openai_upstream::{
    FakeUpstream, Step, answer, chunked, chunked_head, content, done, error_reply, finish, frame,
    reasoning, role, stream_head, tool_piece, usage,
};
use support::test_server::{client, config, start, wait_finished};

const KEY: &str = "sk-test-0123456789abcdef";

fn upstream_config(dir: &tempfile::TempDir, upstreams: &[(&str, String)]) -> ServerConfig {
    let mut config = config(dir);
    for (name, url) in upstreams {
        let spec = UpstreamSpec::parse(&format!("{name}={url}"), |var| {
            (var == "RUNBOARD_UPSTREAM_KEY").then(|| KEY.to_owned())
        })
        .unwrap();
        config.upstreams.upstreams.push(spec);
    }
    config.upstreams.idle_timeout = Duration::from_millis(600);
    config
}

async fn launch(api: &ApiClient, params: Value) -> String {
    api.create_run(&CreateRun {
        task: "Write a haiku about lighthouses".into(),
        mode: runboard_api::RunMode::Queued,
        params,
    })
    .await
    .unwrap()
    .summary
    .run_id
}

async fn finished(server: &RunningServer, params: Value) -> RunDetail {
    let api = client(server);
    let run_id = launch(&api, params).await;
    wait_finished(&api, &run_id, Duration::from_secs(20)).await
}

fn of_kind<'a>(detail: &'a RunDetail, kind: &str) -> Vec<&'a StoredEvent> {
    detail.events.iter().filter(|e| e.event == kind).collect()
}

fn data_payloads(detail: &RunDetail, action: &str) -> Vec<Value> {
    of_kind(detail, "data")
        .into_iter()
        .filter(|e| e.data["action"] == action)
        .map(|e| e.data["payload"].clone())
        .collect()
}

fn narration(detail: &RunDetail, action: &str) -> Vec<String> {
    of_kind(detail, "narration")
        .into_iter()
        .filter(|e| e.data["action"] == action)
        .map(|e| e.data["formatted"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// One well-behaved step per request, with reasoning (alternating field names) on the
/// supervisor and writer, a tool call in three pieces on the critic, and a burst of 120
/// chunks at once on the finish.
fn chain_script(index: usize, body: &Value) -> Vec<Step> {
    let system = body["messages"][0]["content"].as_str().unwrap_or_default();
    let gap = Duration::from_millis(15);
    let mut steps = vec![stream_head(), Step::Write(role())];
    let mut tokens = 0;
    let is = |agent: &str| system.starts_with(&format!("You are the {agent}"));
    if is("supervisor") || is("writer") {
        let field = if index.is_multiple_of(2) {
            "reasoning_content"
        } else {
            "reasoning"
        };
        for piece in ["Let me ", "think ", "first."] {
            steps.push(Step::Pause(gap));
            steps.push(Step::Write(reasoning(field, piece)));
            tokens += 1;
        }
    }
    if is("critic") {
        steps.push(Step::Write(tool_piece(
            0,
            Some("call_1"),
            Some("search"),
            "",
        )));
        steps.push(Step::Write(tool_piece(0, None, None, "{\"q\": ")));
        steps.push(Step::Write(tool_piece(0, None, None, "\"lighthouse\"}")));
        tokens += 3;
    }
    let words = if is("editor") { 120 } else { 6 };
    for n in 0..words {
        if words < 100 {
            steps.push(Step::Pause(gap));
        }
        steps.push(Step::Write(content(&format!("w{index}.{n} "))));
        tokens += 1;
    }
    steps.push(Step::Write(finish("stop")));
    // The server's own count is one more than the chunks: a chunk may hold two tokens.
    steps.push(Step::Write(usage(40 + index as u64, tokens + 1)));
    steps.push(Step::Write(done()));
    steps
}

/// What the upstream was asked: five streaming steps of the resolved model, usage asked, the
/// run's sampling and extra fields, the key, and the task with the earlier steps' outputs.
fn asked_as_configured(chats: &[support::openai_upstream::Seen]) {
    assert_eq!(chats.len(), 5);
    for seen in chats {
        assert_eq!(seen.body["model"], "org/tiny-chat");
        assert_eq!(
            seen.body["stream"], true,
            "extra_body may not turn streaming off"
        );
        assert_eq!(seen.body["stream_options"]["include_usage"], true);
        assert_eq!(seen.body["max_tokens"], 64);
        assert_eq!(seen.body["temperature"], 0.2);
        assert_eq!(seen.body["seed"], 5);
        assert_eq!(
            seen.request.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        let user = seen.body["messages"][1]["content"].as_str().unwrap();
        assert!(user.starts_with("Task: Write a haiku about lighthouses"));
    }
    assert!(
        chats[4].body["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("## critic (iteration 1)")
    );
}

#[tokio::test]
async fn a_run_walks_the_chain_on_the_upstream_with_usage_reasoning_and_tool_calls() {
    let upstream = FakeUpstream::start(&["org/tiny-chat", "org/other"], chain_script).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = upstream_config(&dir, &[("gpu1", upstream.base())]);
    config.upstreams.aliases = vec![("fast".into(), "org/tiny-chat".into())];
    let server = start(config).await;
    let params = json!({"model": "fast", "iterations": 1, "max_tokens": 64, "temperature": 0.2,
                        "extra_body": {"seed": 5, "stream": false}});
    let detail = finished(&server, params).await;
    assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");

    asked_as_configured(&upstream.chats());

    // Each step's figures: the server's count, not the chunks; times from the stream.
    let steps = data_payloads(&detail, "step");
    let agents: Vec<&str> = steps.iter().map(|s| s["agent"].as_str().unwrap()).collect();
    assert_eq!(
        agents,
        ["supervisor", "researcher", "writer", "critic", "finish"]
    );
    let mut total = 0;
    for (index, step) in steps.iter().enumerate() {
        assert_eq!(step["estimated"], false);
        assert_eq!(step["model"], "fast");
        assert_eq!(step["resolved_model"], "org/tiny-chat");
        assert_eq!(step["upstream"], "gpu1");
        assert_eq!(step["prompt_tokens"], 40 + index as u64);
        assert!(step["ttft_ms"].as_f64().unwrap() >= 0.0);
        total += step["output_tokens"].as_u64().unwrap();
        assert_eq!(step["tokens_out"], total);
    }
    assert_eq!(steps[0]["output_tokens"], 3 + 6 + 1);
    assert!(steps[0]["ttfat_ms"].as_f64().unwrap() > steps[0]["ttft_ms"].as_f64().unwrap());
    assert!(
        steps[1].get("ttfat_ms").is_none(),
        "no reasoning, no answer time"
    );
    assert!(steps[1]["tok_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(detail.summary.tokens_out, total);
    let metrics = &data_payloads(&detail, "run_metrics")[0];
    assert_eq!(metrics["output_tokens"], total);
    assert_eq!(metrics["steps"], 5);
    assert_eq!(metrics["estimated"], false);

    // Reasoning kept apart from the answer, in both spellings.
    let updates = of_kind(&detail, "node_update");
    for agent in ["supervisor", "writer"] {
        let last = updates
            .iter()
            .rev()
            .find(|e| e.data["agent"] == agent)
            .unwrap();
        assert_eq!(last.data["reasoning"], "Let me think first.");
        assert!(!last.data["snippet"].as_str().unwrap().contains("think"));
    }
    assert!(
        updates
            .iter()
            .all(|e| e.data["agent"] != "researcher" || e.data.get("reasoning").is_none())
    );

    // The tool call merged from its pieces, as one line.
    let calls = data_payloads(&detail, "tool_call");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["name"], "search");
    assert_eq!(calls[0]["id"], "call_1");
    assert_eq!(calls[0]["arguments"], "{\"q\": \"lighthouse\"}");
    assert_eq!(calls[0]["agent"], "critic");

    // 120 chunks at once make a handful of updates, and the last one has the final text
    // and the server's count.
    let finish_updates: Vec<_> = updates
        .iter()
        .filter(|e| e.data["agent"] == "finish")
        .collect();
    assert!(
        finish_updates.len() <= 5,
        "{} updates for a burst",
        finish_updates.len()
    );
    let last = finish_updates.last().unwrap();
    assert_eq!(last.data["tokens_out"], total);
    assert!(last.data["snippet"].as_str().unwrap().ends_with("w4.119 "));
    assert!(last.data.get("estimated").is_none());

    // The key is nowhere in what the server stores or answers.
    let api = client(&server);
    let everything = format!(
        "{}{}{}",
        serde_json::to_string(&detail).unwrap(),
        serde_json::to_string(&api.health().await.unwrap()).unwrap(),
        serde_json::to_string(&api.upstreams().await.unwrap()).unwrap()
    );
    assert!(!everything.contains(KEY));
    server.stop().await;
}

#[tokio::test]
async fn streams_without_usage_or_done_are_counted_and_marked_estimated() {
    let upstream = FakeUpstream::start(&["m"], |_, _| {
        let mut steps = vec![stream_head(), Step::Write(role())];
        for n in 0..7 {
            steps.push(Step::Write(content(&format!("t{n} "))));
            steps.push(Step::Pause(Duration::from_millis(5)));
        }
        steps.push(Step::Write(finish("length")));
        steps
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(upstream_config(&dir, &[("u", upstream.base())])).await;
    let detail = finished(
        &server,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
    assert_eq!(upstream.chats().len(), 1, "a single-step run");
    assert_eq!(upstream.chats()[0].body["messages"][0]["content"], "hi");
    let steps = data_payloads(&detail, "step");
    assert_eq!(steps[0]["agent"], "chat");
    assert_eq!(steps[0]["output_tokens"], 7);
    assert_eq!(steps[0]["estimated"], true);
    assert_eq!(steps[0]["finish_reason"], "length");
    let last = of_kind(&detail, "node_update").pop().unwrap();
    assert_eq!(last.data["estimated"], true);
    assert_eq!(last.data["tokens_out"], 7);
    server.stop().await;
}

#[tokio::test]
async fn an_error_frame_mid_stream_fails_the_run_with_the_upstreams_own_message() {
    let upstream = FakeUpstream::start(&["m"], |_, _| {
        vec![
            stream_head(),
            Step::Write(role()),
            Step::Write(content("partial ")),
            Step::Write(": keep-alive\n\n".into()),
            Step::Write(frame(
                &json!({"error": {"message": "CUDA out of memory", "code": 500}}),
            )),
        ]
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(upstream_config(&dir, &[("u", upstream.base())])).await;
    let detail = finished(&server, json!({})).await;
    assert_eq!(detail.summary.status, RunStatus::Failed);
    let error = &of_kind(&detail, "error")[0].data["message"];
    assert!(
        error.as_str().unwrap().contains("CUDA out of memory"),
        "{error}"
    );
    assert_eq!(upstream.chats().len(), 1, "an error frame is not retried");
    server.stop().await;
}

#[tokio::test]
async fn overload_and_server_errors_are_retried_honouring_retry_after_then_given_up() {
    let upstream = FakeUpstream::start(&["m"], |index, _| match index {
        0 => error_reply(
            429,
            "Rate limit reached for requests",
            "Retry-After: 0.4\r\n",
        ),
        1 => error_reply(503, "Service Unavailable", ""),
        2 => answer(&["ok"], Duration::from_millis(5), 9),
        _ => error_reply(500, "Internal error: the engine died", ""),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(upstream_config(&dir, &[("u", upstream.base())])).await;
    let single = json!({"messages": [{"role": "user", "content": "hi"}]});
    let detail = finished(&server, single.clone()).await;
    assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
    let retries = narration(&detail, "upstream_retry");
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(
        retries[0].contains("HTTP 429: Rate limit reached")
            && retries[0].contains("try 2 of 3 in 0.4 s")
    );
    assert!(retries[1].contains("HTTP 503") && retries[1].contains("try 3 of 3 in 2.0 s"));
    let chats = upstream.chats();
    let waited = chats[1].request.received_at - chats[0].ended_at.unwrap();
    assert!(
        waited >= Duration::from_millis(400),
        "Retry-After honoured: {waited:?}"
    );
    assert_eq!(data_payloads(&detail, "step")[0]["tries"], 3);

    // Three 500s: the run fails with the upstream's message.
    let failed = finished(&server, single).await;
    assert_eq!(failed.summary.status, RunStatus::Failed);
    let message = of_kind(&failed, "error")[0].data["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("Internal error: the engine died"),
        "{message}"
    );
    assert!(message.contains("gave up after 3 tries"), "{message}");
    assert_eq!(upstream.chats().len(), 6);
    server.stop().await;
}

#[tokio::test]
async fn a_cut_stream_and_a_silent_one_are_tried_again() {
    let upstream = FakeUpstream::start(&["m"], |index, _| match index {
        0 => vec![
            chunked_head(),
            chunked(&role()),
            chunked(&content("lost ")),
            Step::Pause(Duration::from_millis(20)),
        ],
        1 => vec![
            stream_head(),
            Step::Write(role()),
            Step::Write(content("quiet ")),
            Step::Hang,
        ],
        _ => answer(&["fine", " now"], Duration::from_millis(5), 9),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(upstream_config(&dir, &[("u", upstream.base())])).await;
    let detail = finished(
        &server,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
    let retries = narration(&detail, "upstream_retry");
    assert!(retries[0].contains("was cut after 1 tokens"), "{retries:?}");
    assert!(
        retries[1].contains("sent nothing for 0.6 s after 1 tokens"),
        "{retries:?}"
    );
    assert!(
        upstream.chats()[1].closed_by_client,
        "the silent stream was closed"
    );
    // Every token the upstream produced counts, the wasted tries' too.
    assert_eq!(detail.summary.tokens_out, 1 + 1 + 2);
    assert_eq!(data_payloads(&detail, "step")[0]["output_tokens"], 2);
    server.stop().await;
}

#[tokio::test]
async fn cancel_and_shutdown_close_the_upstream_request_at_once() {
    let slow = |_: usize, _: &Value| {
        let mut steps = vec![stream_head(), Step::Write(role())];
        for n in 0..200 {
            steps.push(Step::Write(content(&format!("t{n} "))));
            steps.push(Step::Pause(Duration::from_millis(50)));
        }
        steps
    };
    let upstream = FakeUpstream::start(&["m"], slow).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(upstream_config(&dir, &[("u", upstream.base())])).await;
    let api = client(&server);
    let run_id = launch(&api, json!({})).await;
    wait_for("wait 1", || async {
        api.run(&run_id).await.unwrap().summary.tokens_out >= 3
    })
    .await;
    api.cancel(&run_id).await.unwrap();
    let detail = wait_finished(&api, &run_id, Duration::from_secs(5)).await;
    assert_eq!(detail.summary.status, RunStatus::Cancelled);
    wait_for("wait 2", || async {
        upstream.chats()[0].ended_at.is_some()
    })
    .await;
    assert!(
        upstream.chats()[0].closed_by_client,
        "the upstream saw the disconnect"
    );

    let other = launch(&api, json!({})).await;
    wait_for("wait 3", || async { upstream.chats().len() == 2 }).await;
    server.stop().await;
    wait_for("wait 4", || async {
        upstream.chats()[1].ended_at.is_some()
    })
    .await;
    assert!(
        upstream.chats()[1].closed_by_client,
        "shutdown closed the step in flight"
    );
    drop(other);
}

#[tokio::test]
async fn active_requests_show_the_phase_first_token_time_and_rate() {
    let upstream = FakeUpstream::start(&["org/m"], |_, _| {
        let mut steps = vec![stream_head(), Step::Pause(Duration::from_millis(450))];
        steps.push(Step::Write(role()));
        for n in 0..60 {
            steps.push(Step::Write(content(&format!("t{n} "))));
            steps.push(Step::Pause(Duration::from_millis(25)));
        }
        steps.push(Step::Write(usage(11, 60)));
        steps.push(Step::Write(done()));
        steps
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = upstream_config(&dir, &[("gpu1", upstream.base())]);
    config.upstreams.aliases = vec![("small".into(), "org/m".into())];
    let server = start(config).await;
    let api = client(&server);
    let run_id = launch(
        &api,
        json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    wait_for("wait 5", || async {
        !api.active_requests()
            .await
            .unwrap()
            .active_requests
            .is_empty()
    })
    .await;
    let waiting = api.active_requests().await.unwrap().active_requests[0].clone();
    assert_eq!(waiting.phase, Some(RequestPhase::WaitingForFirstToken));
    assert_eq!(waiting.model, "small");
    assert_eq!(waiting.resolved_model.as_deref(), Some("org/m"));
    assert_eq!(waiting.upstream.as_deref(), Some("gpu1"));
    assert!(waiting.streaming);
    wait_for("wait 6", || async {
        let list = api.active_requests().await.unwrap().active_requests;
        list.first().is_some_and(|r| r.output_tokens >= 10)
    })
    .await;
    let decoding = api.active_requests().await.unwrap().active_requests[0].clone();
    assert_eq!(decoding.phase, Some(RequestPhase::Decoding));
    assert!(decoding.ttft_ms.unwrap() > 450.0, "{decoding:?}");
    assert!(decoding.tok_per_sec.unwrap() > 0.0);
    let detail = wait_finished(&api, &run_id, Duration::from_secs(10)).await;
    assert!(
        data_payloads(&detail, "step")[0]["ttft_ms"]
            .as_f64()
            .unwrap()
            > 450.0
    );
    assert!(
        api.active_requests()
            .await
            .unwrap()
            .active_requests
            .is_empty()
    );
    server.stop().await;
}

#[tokio::test]
async fn models_unreachable_upstreams_and_limits_per_upstream() {
    let upstream = FakeUpstream::start(&["org/a", "org/b"], |_, _| {
        answer(&["x"; 8], Duration::from_millis(20), 5)
    })
    .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let mut config = upstream_config(&dir, &[("live", upstream.base()), ("dead", dead.clone())]);
    config.upstreams.concurrency = Some(1);
    let server = start(config).await;
    let api = client(&server);

    // The models job lists the real models with their upstream, and the dead one with its error.
    let job = finished(&server, json!({"job": "models"})).await;
    assert_eq!(job.summary.status, RunStatus::Completed);
    let list =
        runboard_api::ModelList::from_payload(&data_payloads(&job, "model_list")[0]).unwrap();
    let ids: Vec<(&str, Option<&str>)> = list
        .models
        .iter()
        .map(|m| (m.id.as_str(), m.upstream.as_deref()))
        .collect();
    assert_eq!(ids, [("org/a", Some("live")), ("org/b", Some("live"))]);
    assert_eq!(list.upstreams.len(), 2);
    assert!(list.upstreams[0].reachable && list.upstreams[0].models == 2);
    assert!(!list.upstreams[1].reachable);
    assert!(
        list.upstreams[1]
            .error
            .as_deref()
            .unwrap()
            .contains("could not reach"),
        "{:?}",
        list.upstreams[1]
    );
    assert!(narration(&job, "model_list_unreachable")[0].contains(&dead));

    // A model nobody serves fails at once, naming the unreachable upstream.
    let missing = finished(&server, json!({"model": "org/c"})).await;
    assert_eq!(missing.summary.status, RunStatus::Failed);
    let message = of_kind(&missing, "error")[0].data["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("upstream dead") && message.contains("unreachable"),
        "{message}"
    );

    // Three runs on a one-request upstream: one request at a time, all complete.
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(
            launch(
                &api,
                json!({"model": "org/b", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await,
        );
    }
    // The ones waiting for the slot show as queued among the active requests.
    let queued = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let active = api.active_requests().await.unwrap().active_requests;
            if active.iter().any(|r| r.phase == Some(RequestPhase::Queued)) {
                return active;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a request held for the upstream's slot shows as queued");
    assert!(queued.iter().all(|r| r.upstream.as_deref() == Some("live")));
    for run_id in &runs {
        let detail = wait_finished(&api, run_id, Duration::from_secs(10)).await;
        assert_eq!(detail.summary.status, RunStatus::Completed);
        assert_eq!(detail.summary.tokens_out, 8);
    }
    assert_eq!(upstream.most_in_flight(), 1);
    // The upstream's own state is read as --scrape reads it, with no flag.
    let scraped = api.upstreams().await.unwrap();
    assert!(
        scraped.upstreams.iter().any(|u| u.url == upstream.base()),
        "{scraped:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_model_server_started_after_runboard_is_found_by_the_next_run() {
    let spare = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = spare.local_addr().unwrap();
    drop(spare);
    let dir = tempfile::tempdir().unwrap();
    let server = start(upstream_config(
        &dir,
        &[("late", format!("http://{addr}/v1"))],
    ))
    .await;
    let single = json!({"messages": [{"role": "user", "content": "hi"}]});
    let refused = finished(&server, single.clone()).await;
    assert_eq!(refused.summary.status, RunStatus::Failed);
    let message = of_kind(&refused, "error")[0].data["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("upstream late") && message.contains("unreachable"),
        "{message}"
    );
    assert!(
        upstream_was_not_asked(&refused),
        "a run needing an unreachable upstream fails before any step"
    );

    let upstream = FakeUpstream::start_on(addr, &["m"], |_, _| {
        answer(&["back"], Duration::from_millis(5), 3)
    })
    .await;
    // At once, with no wait: a call for a model no list names reads the lists again first
    // (the trial that found this: about 60 calls refused with 502 in the first seconds after
    // runboard started a moment before its upstream).
    let proxied = runboard_sse::http::client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("content-type", "application/json")
        .body(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200, "{:?}", proxied.text().await);
    proxied.text().await.unwrap();
    let detail = finished(&server, single).await;
    assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
    assert_eq!(upstream.chats().len(), 2);
    assert!(upstream.models_reads() >= 1);
    server.stop().await;
}

#[tokio::test]
async fn a_model_server_that_goes_away_after_listing_its_models_is_retried_then_named() {
    let upstream = FakeUpstream::start(&["m"], |_, _| answer(&["x"], Duration::ZERO, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(upstream_config(&dir, &[("gone", upstream.base())])).await;
    // Its models were read at start; now it stops listening: connections are refused.
    drop(upstream);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let detail = finished(
        &server,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(detail.summary.status, RunStatus::Failed);
    let retries = narration(&detail, "upstream_retry");
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(
        retries
            .iter()
            .all(|r| r.contains("could not reach upstream gone")),
        "{retries:?}"
    );
    let message = of_kind(&detail, "error")[0].data["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("could not reach upstream gone")
            && message.contains("gave up after 3 tries"),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_server_that_ignores_stream_and_answers_whole_is_read_too() {
    let upstream = FakeUpstream::start(&["m"], |_, _| {
        let body = json!({"object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "Whole answer.",
                        "reasoning_content": "brief"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 6}})
        .to_string();
        vec![Step::Write(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ))]
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(upstream_config(&dir, &[("u", upstream.base())])).await;
    let detail = finished(
        &server,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
    assert_eq!(detail.summary.tokens_out, 6);
    let step = &data_payloads(&detail, "step")[0];
    assert_eq!(step["estimated"], false);
    assert_eq!(step["finish_reason"], "stop");
    let last = of_kind(&detail, "node_update").pop().unwrap();
    assert_eq!(last.data["snippet"], "Whole answer.");
    assert_eq!(last.data["reasoning"], "brief");
    server.stop().await;
}

fn upstream_was_not_asked(detail: &RunDetail) -> bool {
    of_kind(detail, "data").is_empty() && narration(detail, "agent_start").is_empty()
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    tokio::time::timeout(Duration::from_secs(10), async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within 10 s"));
}
