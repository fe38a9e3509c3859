//! The OpenAI-compatible proxy under `/v1` against a scripted upstream, for what a real model
//! server will not do on demand (exact bytes to compare, an error mid-stream, a 429, a cut, a
//! hang to disconnect from); the real llama.cpp server with the `openai` package is in
//! `llama_proxy.rs`.

use crate::support;

use std::time::Duration;

use futures_util::StreamExt as _;
use runboard_api::{ApiClient, RequestPhase, RunDetail, RunQuery, RunStatus, StoredEvent};
use runboard_server::{RunningServer, ServerConfig, UpstreamSpec};
use serde_json::{Value, json};
use support::openai_upstream::{
    FakeUpstream, Step, answer, body_of, chunked, chunked_head, content, done, error_reply, frame,
    json_body_of, role, stream_head, whole_reply,
};
use support::test_server::{config, start, wait_finished};
use tokio::time::Instant;

const KEY: &str = "sk-upstream-0123456789";
const TOKEN: &str = "board-token-42";

fn proxy_config(dir: &tempfile::TempDir, upstream: &FakeUpstream) -> ServerConfig {
    let mut config = config(dir);
    let spec = UpstreamSpec::parse(&format!("gpu={}", upstream.base()), |var| {
        (var == "RUNBOARD_UPSTREAM_KEY").then(|| KEY.to_owned())
    })
    .unwrap();
    config.upstreams.upstreams.push(spec);
    config
        .upstreams
        .aliases
        .push(("fast".into(), "org/chat".into()));
    config.upstreams.idle_timeout = Duration::from_secs(5);
    config.access.token = Some(TOKEN.into());
    config
}

fn api(server: &RunningServer) -> ApiClient {
    ApiClient::new(&server.url(), Some(TOKEN)).unwrap()
}

/// A call as a worker makes it: JSON, runboard's token, and any extra headers.
async fn call(
    server: &RunningServer,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = runboard_sse::http::client()
        .post(format!("{}{path}", server.url()))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn chat(model: &str, stream: bool, question: &str) -> String {
    json!({"model": model, "stream": stream, "temperature": 0,
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": question}]})
    .to_string()
}

fn run_id_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-runboard-run-id")
        .expect("the answer names its run")
        .to_str()
        .unwrap()
        .to_owned()
}

fn data_payloads(detail: &RunDetail, action: &str) -> Vec<Value> {
    events(detail, "data")
        .into_iter()
        .filter(|e| e.data["action"] == action)
        .map(|e| e.data["payload"].clone())
        .collect()
}

fn events<'a>(detail: &'a RunDetail, kind: &str) -> Vec<&'a StoredEvent> {
    detail.events.iter().filter(|e| e.event == kind).collect()
}

fn narration_text(detail: &RunDetail) -> String {
    events(detail, "narration")
        .iter()
        .map(|e| e.data["formatted"].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_proxy_gets_the_upstreams_bytes_and_the_call_becomes_a_run() {
    let script = answer(
        &["Light", "house", " keeps", " wätch", " 🌊"],
        Duration::from_millis(15),
        12,
    );
    let expected = body_of(&script);
    let upstream = FakeUpstream::start(&["org/chat"], move |_, _| script.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(proxy_config(&dir, &upstream)).await;

    let request = chat("org/chat", true, "Describe a lighthouse\nin one line");
    let headers_file = dir.path().join("headers.txt");
    let output = tokio::process::Command::new("curl")
        .args(["-sN", "--max-time", "20", "--dump-header"])
        .arg(&headers_file)
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["-H", "Content-Type: application/json"])
        .args(["-H", "X-Runboard-Agent: describer"])
        .args(["--data-binary", &request])
        .arg(format!("{}/v1/chat/completions", server.url()))
        .output()
        .await
        .expect("curl must be installed (.ci/run installs it)");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
    let head = std::fs::read_to_string(&headers_file)
        .unwrap()
        .to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let run_id = head
        .lines()
        .find_map(|line| line.strip_prefix("x-runboard-run-id: "))
        .expect("the run's id in the answer's headers")
        .trim()
        .to_owned();

    // The upstream got the client's body byte for byte, with runboard's key, not its token.
    let seen = upstream.chats();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        String::from_utf8(seen[0].request.body.clone()).unwrap(),
        request
    );
    assert_eq!(
        seen[0].request.header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    assert!(seen[0].request.path.ends_with("/v1/chat/completions"));
    assert!(
        seen[0]
            .request
            .headers
            .iter()
            .all(|(_, value)| !value.contains(TOKEN)),
        "runboard's token must not reach the upstream"
    );

    let detail = wait_finished(&api(&server), &run_id, Duration::from_secs(10)).await;
    assert_eq!(detail.summary.status, RunStatus::Completed);
    assert_eq!(detail.summary.task, "Describe a lighthouse in one line");
    assert_eq!(detail.summary.agent.as_deref(), Some("describer"));
    assert_eq!(detail.summary.tokens_out, 5);
    let steps = data_payloads(&detail, "step");
    assert_eq!(steps.len(), 1);
    let step = &steps[0];
    assert_eq!(step["output_tokens"], 5);
    assert_eq!(step["estimated"], false, "the usage chunk gives the count");
    assert_eq!(step["prompt_tokens"], 12);
    assert_eq!(step["agent"], "describer");
    assert_eq!(step["endpoint"], "/v1/chat/completions");
    assert_eq!(step["upstream"], "gpu");
    assert!(step["ttft_ms"].as_f64().unwrap() > 10.0, "{step}");
    assert!(step["itl_p50_ms"].as_f64().unwrap() > 5.0, "{step}");
    let updates = events(&detail, "node_update");
    let last = updates.last().expect("node_updates");
    assert_eq!(last.data["snippet"], "Lighthouse keeps wätch 🌊");
    assert_eq!(last.data["tokens_out"], 5);
    assert!(narration_text(&detail).contains("describer calls org/chat at gpu (call 1)"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_calls_with_one_run_header_are_one_run_with_three_steps() {
    let upstream = FakeUpstream::start(&["org/chat"], |index, _| match index {
        1 => whole_reply("A whole answer.", 9, 4),
        _ => answer(&["one", " two", " three"], Duration::from_millis(5), 7),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = proxy_config(&dir, &upstream);
    config.proxy.run_idle = Duration::from_millis(400);
    let server = start(config).await;

    let mut run_ids = Vec::new();
    for (agent, stream, last) in [
        ("planner", true, false),
        ("writer", false, false),
        ("critic", true, true),
    ] {
        let mut headers = vec![
            ("x-runboard-run", "pipeline-7"),
            ("x-runboard-agent", agent),
        ];
        if last {
            headers.push(("x-runboard-run-end", "true"));
        }
        let response = call(
            &server,
            "/v1/chat/completions",
            &chat("org/chat", stream, &format!("{agent}: write about tides")),
            &headers,
        )
        .await;
        assert_eq!(response.status(), 200);
        run_ids.push(run_id_of(&response));
        let body = response.text().await.unwrap();
        if stream {
            assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
        } else {
            let whole: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(whole["choices"][0]["message"]["content"], "A whole answer.");
        }
    }
    assert!(run_ids.iter().all(|id| *id == run_ids[0]), "{run_ids:?}");
    let api = api(&server);
    let detail = wait_finished(&api, &run_ids[0], Duration::from_secs(5)).await;
    assert_eq!(detail.summary.status, RunStatus::Completed);
    assert_eq!(detail.summary.task, "planner: write about tides");
    assert_eq!(detail.summary.tokens_out, 3 + 4 + 3);
    let steps = data_payloads(&detail, "step");
    let agents: Vec<&str> = steps.iter().map(|s| s["agent"].as_str().unwrap()).collect();
    assert_eq!(agents, ["planner", "writer", "critic"]);
    let numbers: Vec<u64> = steps
        .iter()
        .map(|s| s["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(steps[1]["stream"], false);
    assert_eq!(steps[1]["output_tokens"], 4);
    assert_eq!(
        steps[2]["tokens_out"], 10,
        "the run's count goes on across calls"
    );
    let metrics = data_payloads(&detail, "run_metrics");
    assert_eq!(metrics[0]["steps"], 3);
    assert_eq!(metrics[0]["output_tokens"], 10);
    let listed = api.list_runs(&RunQuery::default()).await.unwrap();
    assert_eq!(listed.runs.len(), 1, "one run for the pipeline");

    // Without the end header, the run ends once it has been idle for --proxy-run-idle-secs.
    let response = call(
        &server,
        "/v1/chat/completions",
        &chat("org/chat", true, "a lone step"),
        &[("x-runboard-run", "pipeline-8")],
    )
    .await;
    let lone = run_id_of(&response);
    response.text().await.unwrap();
    assert_eq!(
        api.run(&lone).await.unwrap().summary.status,
        RunStatus::Running
    );
    let detail = wait_finished(&api, &lone, Duration::from_secs(5)).await;
    assert_eq!(detail.summary.status, RunStatus::Completed);
    assert!(narration_text(&detail).contains("Done: 3 tokens in 1 call(s)"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_closes_the_upstream_request_at_once() {
    // The first answer stops sending after three words (nothing to write would reveal the
    // client's absence); the second keeps streaming.
    let upstream = FakeUpstream::start(&["org/chat"], |index, _| {
        let mut steps = vec![stream_head(), Step::Write(role())];
        for word in ["a", "b", "c"] {
            steps.push(Step::Write(content(word)));
        }
        if index == 0 {
            steps.push(Step::Hang);
        } else {
            for _ in 0..1000 {
                steps.push(Step::Pause(Duration::from_millis(20)));
                steps.push(Step::Write(content("more")));
            }
        }
        steps
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(proxy_config(&dir, &upstream)).await;
    let api = api(&server);

    for index in 0..2 {
        let response = call(
            &server,
            "/v1/chat/completions",
            &chat("org/chat", true, "stream until I leave"),
            &[],
        )
        .await;
        let run_id = run_id_of(&response);
        let mut body = response.bytes_stream();
        let mut text = String::new();
        while text.matches("\"content\"").count() < 4 {
            text.push_str(&String::from_utf8_lossy(
                &body.next().await.unwrap().unwrap(),
            ));
        }
        let left_at = Instant::now();
        drop(body);
        let ended_at = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(at) = upstream.chats()[index].ended_at {
                    return at;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the upstream never saw the request end");
        assert!(upstream.chats()[index].closed_by_client);
        let after = ended_at.saturating_duration_since(left_at);
        eprintln!("call {index}: the upstream saw the close {after:?} after the client left");
        assert!(
            after < Duration::from_millis(100),
            "upstream closed after {after:?}"
        );
        let detail = wait_finished(&api, &run_id, Duration::from_secs(5)).await;
        assert_eq!(detail.summary.status, RunStatus::Cancelled);
        assert!(
            narration_text(&detail).contains("the client closed the connection during call 1"),
            "{}",
            narration_text(&detail)
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_reach_the_client_as_sent_and_fail_the_run() {
    let error_frame = frame(&json!({"error": {"message": "CUDA out of memory", "code": 500}}));
    let mid_stream = vec![
        stream_head(),
        Step::Write(role()),
        Step::Write(content("partial")),
        Step::Write(error_frame),
        Step::Write(done()),
    ];
    let refusal = error_reply(429, "Rate limit reached for requests", "Retry-After: 2\r\n");
    let scripts = [
        refusal.clone(),
        mid_stream.clone(),
        vec![
            chunked_head(),
            chunked(&role()),
            chunked(&content("cut")),
            Step::Pause(Duration::from_millis(30)),
        ],
    ];
    let upstream = FakeUpstream::start(&["org/chat"], move |index, _| {
        scripts.get(index).cloned().unwrap_or_default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(proxy_config(&dir, &upstream)).await;
    let api = api(&server);
    let body = chat("org/chat", true, "fail somehow");

    // A 429: the client gets it as the upstream sent it, and runboard does not retry.
    let response = call(&server, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "2");
    let run_id = run_id_of(&response);
    assert_eq!(response.text().await.unwrap(), json_body_of(&refusal));
    let detail = wait_finished(&api, &run_id, Duration::from_secs(5)).await;
    assert_eq!(detail.summary.status, RunStatus::Failed);
    let error = &events(&detail, "error")[0].data["message"];
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("answered HTTP 429: Rate limit reached"),
        "{error}"
    );

    // An error inside the stream: the client gets every byte, the run fails with it.
    let response = call(&server, "/v1/chat/completions", &body, &[]).await;
    let run_id = run_id_of(&response);
    assert_eq!(response.text().await.unwrap(), body_of(&mid_stream));
    let detail = wait_finished(&api, &run_id, Duration::from_secs(5)).await;
    assert_eq!(detail.summary.status, RunStatus::Failed);
    let error = events(&detail, "error")[0].data["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("error mid-stream: CUDA out of memory"),
        "{error}"
    );

    // A cut stream: the client's is cut too, after what came before the cut.
    let response = call(&server, "/v1/chat/completions", &body, &[]).await;
    let run_id = run_id_of(&response);
    let mut stream = response.bytes_stream();
    let mut got = String::new();
    let mut broke = false;
    while let Some(piece) = stream.next().await {
        if let Ok(bytes) = piece {
            got.push_str(&String::from_utf8_lossy(&bytes));
        } else {
            broke = true;
            break;
        }
    }
    assert!(
        broke,
        "the client's stream must break as the upstream's did: {got}"
    );
    assert_eq!(got, role() + &content("cut"));
    let detail = wait_finished(&api, &run_id, Duration::from_secs(5)).await;
    assert_eq!(detail.summary.status, RunStatus::Failed);
    let error = events(&detail, "error")[0].data["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("was cut after 1 tokens"), "{error}");
    assert_eq!(upstream.chats().len(), 3, "nothing was tried twice");

    // A model server gone since its models were read: 502 with the reason, and a failed run.
    drop(upstream);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let response = call(&server, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(response.status(), 502);
    let run_id = run_id_of(&response);
    let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(answer["error"]["code"], "upstream_unavailable");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not reach upstream gpu"),
        "{answer}"
    );
    let detail = wait_finished(&api, &run_id, Duration::from_secs(5)).await;
    assert_eq!(detail.summary.status, RunStatus::Failed);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_refused_before_the_upstream_get_clear_errors_and_make_no_run() {
    let upstream =
        FakeUpstream::start(&["org/chat"], |_, _| answer(&["x"], Duration::ZERO, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = proxy_config(&dir, &upstream);
    config.proxy.max_body_bytes = 4096;
    let server = start(config).await;
    let url = format!("{}/v1/chat/completions", server.url());
    let http = runboard_sse::http::client();
    let body = chat("org/chat", true, "hello");

    let anonymous = http
        .post(&url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = http
        .post(&url)
        .header("content-type", "application/json")
        .bearer_auth("sk-not-the-token")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let cases: [(&str, u16, &str, &str); 4] = [
        ("{not json", 400, "bad_json", "not JSON"),
        ("[1, 2]", 400, "invalid_body", "JSON object"),
        (
            &chat("org/missing", true, "hello"),
            404,
            "model_not_found",
            "they serve: org/chat",
        ),
        (
            &chat("org/chat", true, &"long prompt ".repeat(500)),
            413,
            "body_too_large",
            "larger than 4096 bytes",
        ),
    ];
    for (body, status, code, says) in cases {
        let response = call(&server, "/v1/chat/completions", body, &[]).await;
        assert_eq!(response.status(), status, "{body:.40}");
        let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(answer["error"]["code"], code);
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    assert!(upstream.chats().is_empty());
    let runs = api(&server).list_runs(&RunQuery::default()).await.unwrap();
    assert!(runs.runs.is_empty(), "{:?}", runs.runs);
    // A wrong model name reads the lists again at most once a second, however many calls
    // name it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reads = upstream.models_reads();
    for _ in 0..5 {
        let response = call(
            &server,
            "/v1/chat/completions",
            &chat("org/typo", true, "x"),
            &[],
        )
        .await;
        assert_eq!(response.status(), 404);
    }
    assert_eq!(upstream.models_reads(), reads + 1);
    server.stop().await;

    // A server without --upstream says why it has no /v1.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = start(config_without_upstream(&plain_dir)).await;
    let response = runboard_sse::http::client()
        .get(format!("{}/v1/models", plain.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--upstream")
    );
    plain.stop().await;
}

fn config_without_upstream(dir: &tempfile::TempDir) -> ServerConfig {
    config(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_aliases_whole_answers_and_legacy_completions_pass_through() {
    let whole = whole_reply("Tides follow the moon.", 11, 5);
    let whole_body = json_body_of(&whole);
    let legacy = vec![
        stream_head(),
        Step::Write(frame(&json!({"object": "text_completion",
            "choices": [{"index": 0, "text": "Once", "finish_reason": null}]}))),
        Step::Write(frame(&json!({"object": "text_completion",
            "choices": [{"index": 0, "text": " upon", "finish_reason": "length"}]}))),
        Step::Write(done()),
    ];
    let legacy_body = body_of(&legacy);
    let upstream = FakeUpstream::start(&["org/chat", "org/base"], move |index, _| {
        if index == 0 {
            whole.clone()
        } else {
            legacy.clone()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(proxy_config(&dir, &upstream)).await;
    let api = api(&server);

    let models: Value = runboard_sse::http::client()
        .get(format!("{}/v1/models", server.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["org/chat", "org/base", "fast"]);
    assert_eq!(models["object"], "list");

    // An alias is replaced by its model on the way; the answer comes back as sent.
    let response = call(
        &server,
        "/v1/chat/completions",
        &json!({"model": "fast", "messages": [{"role": "user", "content": "tides?"}],
                "user": "ingest-worker"})
        .to_string(),
        &[],
    )
    .await;
    let run_id = run_id_of(&response);
    assert_eq!(response.text().await.unwrap(), whole_body);
    let sent = &upstream.chats()[0].body;
    assert_eq!(sent["model"], "org/chat");
    assert_eq!(sent["user"], "ingest-worker");
    let detail = wait_finished(&api, &run_id, Duration::from_secs(5)).await;
    assert_eq!(detail.summary.agent.as_deref(), Some("ingest-worker"));
    assert_eq!(detail.summary.tokens_out, 5);
    let step = &data_payloads(&detail, "step")[0];
    assert_eq!(
        (step["model"].as_str(), step["resolved_model"].as_str()),
        (Some("fast"), Some("org/chat"))
    );
    assert_eq!(
        events(&detail, "node_update").last().unwrap().data["snippet"],
        "Tides follow the moon."
    );

    let response = call(
        &server,
        "/v1/completions",
        &json!({"model": "org/base", "prompt": "Once", "stream": true}).to_string(),
        &[],
    )
    .await;
    let run_id = run_id_of(&response);
    assert_eq!(response.text().await.unwrap(), legacy_body);
    assert!(
        upstream.chats()[1]
            .request
            .path
            .ends_with("/v1/completions")
    );
    let detail = wait_finished(&api, &run_id, Duration::from_secs(5)).await;
    assert_eq!(detail.summary.task, "Once");
    let step = &data_payloads(&detail, "step")[0];
    assert_eq!(step["output_tokens"], 2);
    assert_eq!(
        step["estimated"], true,
        "no usage came: counted from the chunks"
    );
    assert_eq!(step["endpoint"], "/v1/completions");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_held_by_the_upstream_limit_show_as_queued_and_a_cancel_cuts_the_client() {
    let upstream = FakeUpstream::start(&["org/chat"], |_, _| {
        vec![
            stream_head(),
            Step::Write(role()),
            Step::Write(content("x")),
            Step::Hang,
        ]
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = proxy_config(&dir, &upstream);
    config.upstreams.concurrency = Some(1);
    let server = start(config).await;
    let api = api(&server);
    let body = chat("org/chat", true, "hold on");

    let first = call(
        &server,
        "/v1/chat/completions",
        &body,
        &[("x-runboard-agent", "first")],
    )
    .await;
    let first_run = run_id_of(&first);
    let second = {
        let server_url = server.url();
        let body = body.clone();
        tokio::spawn(async move {
            runboard_sse::http::client()
                .post(format!("{server_url}/v1/chat/completions"))
                .header("content-type", "application/json")
                .header("x-runboard-agent", "second")
                .bearer_auth(TOKEN)
                .body(body)
                .send()
                .await
        })
    };
    let queued = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let active = api.active_requests().await.unwrap();
            if let Some(request) = active
                .active_requests
                .iter()
                .find(|r| r.agent.as_deref() == Some("second"))
            {
                return request.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the held call shows among the active requests");
    assert_eq!(queued.phase, Some(RequestPhase::Queued));
    assert_eq!(queued.upstream.as_deref(), Some("gpu"));
    assert_eq!(
        upstream.chats().len(),
        1,
        "the second waits for the first's slot"
    );

    // Cancelling the first from the board cuts its client and frees the slot.
    api.cancel(&first_run).await.unwrap();
    let mut stream = first.bytes_stream();
    let mut broke = false;
    while let Some(piece) = stream.next().await {
        if piece.is_err() {
            broke = true;
            break;
        }
    }
    assert!(broke, "a cancelled call's client sees its stream cut");
    let detail = wait_finished(&api, &first_run, Duration::from_secs(5)).await;
    assert_eq!(detail.summary.status, RunStatus::Cancelled);
    let second = second.await.unwrap().unwrap();
    assert_eq!(second.status(), 200);
    let second_run = run_id_of(&second);
    tokio::time::timeout(Duration::from_secs(5), async {
        while upstream.chats().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the second call went on once the slot was free");
    assert!(upstream.chats()[0].closed_by_client);
    drop(second);
    let detail = wait_finished(&api, &second_run, Duration::from_secs(5)).await;
    assert_eq!(detail.summary.status, RunStatus::Cancelled);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_calls_in_parallel_ends_when_its_last_call_does() {
    // The first call streams for about 400 ms; the second is left by its client mid-stream.
    let upstream = FakeUpstream::start(&["org/chat"], |index, _| {
        let mut steps = vec![stream_head(), Step::Write(role())];
        if index == 0 {
            for _ in 0..20 {
                steps.push(Step::Pause(Duration::from_millis(20)));
                steps.push(Step::Write(content("w")));
            }
            steps.push(Step::Write(done()));
        } else {
            steps.push(Step::Write(content("x")));
            steps.push(Step::Hang);
        }
        steps
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(proxy_config(&dir, &upstream)).await;
    let api = api(&server);
    let body = chat("org/chat", true, "two at once");

    let first = call(
        &server,
        "/v1/chat/completions",
        &body,
        &[("x-runboard-run", "par"), ("x-runboard-agent", "a")],
    )
    .await;
    let run_id = run_id_of(&first);
    let second = call(
        &server,
        "/v1/chat/completions",
        &body,
        &[("x-runboard-run", "par"), ("x-runboard-agent", "b")],
    )
    .await;
    assert_eq!(run_id_of(&second), run_id, "one run");
    let mut leaving = second.bytes_stream();
    leaving.next().await.unwrap().unwrap();
    drop(leaving);
    // The first call's client still gets its whole answer, and the run is not over meanwhile.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        api.run(&run_id).await.unwrap().summary.status,
        RunStatus::Running
    );
    let answer = first.text().await.unwrap();
    assert_eq!(answer.matches("\"content\":\"w\"").count(), 20);
    assert!(answer.ends_with("data: [DONE]\n\n"));
    let detail = wait_finished(&api, &run_id, Duration::from_secs(5)).await;
    assert_eq!(detail.summary.status, RunStatus::Cancelled);
    let steps = data_payloads(&detail, "step");
    assert_eq!(steps.len(), 1, "the answered call's step is recorded");
    assert_eq!(steps[0]["agent"], "a");
    assert_eq!(steps[0]["output_tokens"], 20);
    assert!(
        narration_text(&detail).contains("the client closed the connection during call 2 of b"),
        "{}",
        narration_text(&detail)
    );
    assert!(upstream.chats()[1].closed_by_client);
    server.stop().await;
}
