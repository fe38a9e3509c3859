//! OTLP export (`serve --otlp-endpoint`) against real receivers: Arize Phoenix (installed from
//! `PyPI` by `scripts/phoenix.sh`) shows each run as a trace, with a `GenAI` span for each step of
//! a run on the real llama.cpp server and for each call the `openai` package made through the
//! proxy; a receiver that decodes every request with the OpenTelemetry project's
//! `opentelemetry-proto` (`tests/fixtures/otlp_receiver.py`) gets the spans and the four
//! `GenAI` histograms, agreeing with the runs; with that receiver stopped mid-run the runs go
//! on, the dropped spans are counted on `/metrics`, and export resumes when it is back.
//!
//! Needs `RUNBOARD_PHOENIX` and `RUNBOARD_OTLP_PYTHON` (`eval "$(scripts/phoenix.sh)"`), and
//! for Phoenix's test the real model server (`eval "$(scripts/llama-server.sh)"`); skipped
//! with a message without them, unless `RUNBOARD_REQUIRE_PHOENIX` is set.

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use runboard_api::{
    ApiClient, CreateRun, PROMPT_WITHHELD, Redaction, RunMode, RunQuery, RunStatus,
};
use runboard_server::{OtlpConfig, RunningServer, ServerConfig, UpstreamSpec};
use serde_json::{Value, json};
use support::llama_server::{Llama, free_port, llama_with, server_with};
use support::openai_upstream::{
    FakeUpstream, Step, answer, chunked, chunked_head, content, error_reply, role, whole_reply,
};
use support::otlp_receiver::{ProtoReceiver, eventually, installed, proto_attribute, trace_of};
use support::test_server::{client, config, start, wait_finished};

/// Export to `endpoint`, quick to send so the tests need not wait.
fn otlp(endpoint: &str) -> OtlpConfig {
    OtlpConfig {
        spans_every: Duration::from_millis(100),
        metrics_every: Duration::from_millis(300),
        ..OtlpConfig::new(endpoint)
    }
}

/// Launches `count` synthetic runs of `task` and waits until each has finished.
async fn generated_runs(api: &ApiClient, task: &str, count: usize) -> Vec<String> {
    let mut runs = Vec::new();
    for _ in 0..count {
        let created = api
            .create_run(&CreateRun {
                task: task.into(),
                mode: RunMode::Queued,
                params: json!({}),
            })
            .await
            .unwrap();
        runs.push(created.summary.run_id);
    }
    for run_id in &runs {
        let detail = wait_finished(api, run_id, Duration::from_secs(60)).await;
        assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
    }
    runs
}

/// One figure of the server's `/metrics` page (the first line starting with `series`).
async fn figure(server: &RunningServer, series: &str) -> Option<f64> {
    let page = runboard_sse::http::client()
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Checks the trace of synthetic run `run_id` (a root and a `GenAI` span per step, whose
/// tokens add up to the run's) and gives its steps and tokens.
async fn check_synthetic_trace(
    receiver: &ProtoReceiver,
    api: &ApiClient,
    run_id: &str,
) -> (u64, u64) {
    let detail = api.run(run_id).await.unwrap();
    let (root, children) = eventually(Duration::from_secs(20), "the run's trace", async || {
        let (root, children) = trace_of(&receiver.spans(), run_id)?;
        // The root is sent when the run ends, after its last step.
        (!children.is_empty()).then_some((root, children))
    })
    .await;
    assert_eq!(root["name"], "invoke_agent");
    assert_eq!(
        proto_attribute(&root, "runboard.task"),
        Some(json!("Describe the harbour"))
    );
    assert_eq!(
        proto_attribute(&root, "runboard.status"),
        Some(json!("completed"))
    );
    assert_eq!(root["status"]["code"], "STATUS_CODE_OK");
    let mut tokens = 0;
    for span in &children {
        assert_eq!(span["traceId"], root["traceId"]);
        assert_eq!(span["kind"], "SPAN_KIND_CLIENT");
        let model = proto_attribute(span, "gen_ai.request.model").unwrap();
        assert_eq!(span["name"], format!("chat {}", model.as_str().unwrap()));
        assert_eq!(
            proto_attribute(span, "gen_ai.operation.name"),
            Some(json!("chat"))
        );
        assert_eq!(
            proto_attribute(span, "gen_ai.provider.name"),
            Some(json!("runboard.synthetic"))
        );
        assert!(
            proto_attribute(span, "gen_ai.agent.name").is_some(),
            "{span}"
        );
        let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(start <= end, "{span}");
        tokens += proto_attribute(span, "gen_ai.usage.output_tokens")
            .and_then(|tokens| tokens.as_u64())
            .unwrap();
    }
    assert_eq!(tokens, detail.summary.tokens_out, "{children:#?}");
    (children.len() as u64, tokens)
}

/// A field of the data points summed (over those of `token_type`, when given), rounded: the
/// counts, and sums of whole tokens.
fn sum_over(points: &[Value], field: &str, token_type: Option<&str>) -> u64 {
    let sum: f64 = points
        .iter()
        .filter(|point| {
            token_type
                .is_none_or(|kind| proto_attribute(point, "gen_ai.token.type") == Some(json!(kind)))
        })
        .map(|point| match &point[field] {
            Value::String(text) => text.parse::<f64>().unwrap(),
            other => other.as_f64().unwrap_or(0.0),
        })
        .sum();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // Small whole numbers.
    let rounded = sum.round() as u64;
    rounded
}

/// Checks the four `GenAI` histograms once they count all `steps`: the same steps and tokens
/// as the spans.
async fn check_gen_ai_metrics(receiver: &ProtoReceiver, steps: u64, output_tokens: u64) {
    eventually(Duration::from_secs(20), "the metrics", async || {
        let (unit, points) = receiver.metric("gen_ai.client.operation.duration")?;
        assert_eq!(unit, "s");
        (sum_over(&points, "count", None) == steps).then_some(())
    })
    .await;
    let (unit, usage) = receiver.metric("gen_ai.client.token.usage").unwrap();
    assert_eq!(unit, "{token}");
    assert_eq!(sum_over(&usage, "sum", Some("output")), output_tokens);
    assert_eq!(sum_over(&usage, "count", Some("output")), steps);
    for name in [
        "gen_ai.server.time_to_first_token",
        "gen_ai.server.time_per_output_token",
    ] {
        let (unit, points) = receiver.metric(name).unwrap();
        assert_eq!(unit, "s", "{name}");
        assert!(sum_over(&points, "count", None) > 0, "{name}: {points:#?}");
        for point in &points {
            assert_eq!(
                proto_attribute(point, "gen_ai.provider.name"),
                Some(json!("runboard.synthetic"))
            );
            assert!(proto_attribute(point, "gen_ai.request.model").is_some());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_decoding_with_opentelemetry_proto_gets_each_run_as_a_trace_and_the_gen_ai_metrics()
 {
    let Some(python) = installed("RUNBOARD_OTLP_PYTHON") else {
        return;
    };
    let port = free_port();
    let receiver = ProtoReceiver::start(&python, port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server_config = config(&dir);
    server_config.otlp = Some(otlp(&format!("http://127.0.0.1:{port}")));
    let server = start(server_config).await;
    let api = client(&server);

    let runs = generated_runs(&api, "Describe the harbour", 3).await;
    let (mut steps, mut output_tokens) = (0, 0);
    for run_id in &runs {
        let (run_steps, tokens) = check_synthetic_trace(&receiver, &api, run_id).await;
        steps += run_steps;
        output_tokens += tokens;
    }
    // The metrics are cumulative: once they count every step, they agree with the spans.
    check_gen_ai_metrics(&receiver, steps, output_tokens).await;
    let services = receiver.service_names();
    assert!(
        !services.is_empty() && services.iter().all(|name| name == "runboard"),
        "{services:?}"
    );
    assert_eq!(
        figure(&server, "runboard_otlp_receiver_up{signal=\"traces\"}").await,
        Some(1.0)
    );
    assert_eq!(
        figure(&server, "runboard_otlp_spans_dropped_total").await,
        Some(0.0)
    );
    server.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_runs_trace_carries_its_error_on_the_run_and_on_the_step_it_failed_in() {
    let Some(python) = installed("RUNBOARD_OTLP_PYTHON") else {
        return;
    };
    let port = free_port();
    let receiver = ProtoReceiver::start(&python, port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server_config = config(&dir);
    server_config.otlp = Some(otlp(&format!("http://127.0.0.1:{port}")));
    let server = start(server_config).await;
    let api = client(&server);
    let run_id = api
        .create_run(&CreateRun {
            task: "Fail part-way".into(),
            mode: RunMode::Queued,
            params: json!({"fail": true}),
        })
        .await
        .unwrap()
        .summary
        .run_id;
    let detail = wait_finished(&api, &run_id, Duration::from_secs(60)).await;
    assert_eq!(detail.summary.status, RunStatus::Failed);
    let (root, children) = eventually(
        Duration::from_secs(20),
        "the failed run's trace",
        async || trace_of(&receiver.spans(), &run_id),
    )
    .await;
    assert_eq!(root["status"]["code"], "STATUS_CODE_ERROR", "{root:#}");
    assert!(
        root["status"]["message"]
            .as_str()
            .unwrap()
            .contains("synthetic failure"),
        "{root:#}"
    );
    assert_eq!(
        proto_attribute(&root, "error.type"),
        Some(json!("run_failed"))
    );
    assert_eq!(
        proto_attribute(&root, "runboard.status"),
        Some(json!("failed"))
    );
    // The step going on when it failed ends with it, in error; the steps before it are fine.
    let (failed, fine): (Vec<&Value>, Vec<&Value>) = children
        .iter()
        .partition(|span| span["status"]["code"] == "STATUS_CODE_ERROR");
    assert_eq!(failed.len(), 1, "{children:#?}");
    assert_eq!(
        proto_attribute(failed[0], "error.type"),
        Some(json!("run_failed"))
    );
    assert!(
        fine.iter().all(|span| span["status"].get("code").is_none()),
        "{fine:#?}"
    );
    server.stop().await;
    receiver.stop().await;
}

/// A proxied call through the server at `url` as a worker makes it, in the run `run`.
async fn proxied_call(url: &str, stream: bool, run: &str, last: bool) -> reqwest::Response {
    let body = json!({"model": "org/chat", "stream": stream,
                      "messages": [{"role": "user", "content": "tell me of tides"}]});
    let mut request = runboard_sse::http::client()
        .post(format!("{url}/v1/chat/completions"))
        .header("x-runboard-run", run)
        .header("content-type", "application/json")
        .body(body.to_string());
    if last {
        request = request.header("x-runboard-run-end", "true");
    }
    request.send().await.unwrap()
}

/// The trace of proxied run `run_id`, whose first call was answered, second refused with 503
/// and third cut: one span fine and two in error with their `error.type`, and the duration
/// histogram counting each under its type.
async fn check_failed_proxied_calls(receiver: &ProtoReceiver, run_id: &str) {
    let (root, children) = eventually(
        Duration::from_secs(20),
        "the run's trace with its three calls",
        async || trace_of(&receiver.spans(), run_id).filter(|(_, children)| children.len() == 3),
    )
    .await;
    assert_eq!(root["status"]["code"], "STATUS_CODE_ERROR", "{root:#}");
    let by_call = |number: i64| {
        children
            .iter()
            .find(|span| proto_attribute(span, "runboard.iteration") == Some(json!(number)))
            .unwrap_or_else(|| panic!("no span for call {number}: {children:#?}"))
    };
    let fine = by_call(1);
    assert!(fine["status"].get("code").is_none(), "{fine:#}");
    assert_eq!(fine["name"], "chat org/chat");
    for (number, error_type, message) in [
        (2, "503", "the model is loading"),
        (3, "upstream_cut", "was cut after 1 tokens"),
    ] {
        let failed = by_call(number);
        assert_eq!(failed["name"], "chat org/chat", "{failed:#}");
        assert_eq!(failed["status"]["code"], "STATUS_CODE_ERROR", "{failed:#}");
        assert!(
            failed["status"]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{failed:#}"
        );
        assert_eq!(
            proto_attribute(failed, "error.type"),
            Some(json!(error_type))
        );
        assert_eq!(
            proto_attribute(failed, "runboard.upstream"),
            Some(json!("gpu"))
        );
        assert_eq!(
            proto_attribute(failed, "gen_ai.request.stream"),
            Some(json!(true))
        );
    }
    assert_eq!(
        proto_attribute(by_call(3), "gen_ai.usage.output_tokens"),
        Some(json!(1))
    );
    // The duration histogram counts the failed calls under their `error.type`.
    eventually(
        Duration::from_secs(20),
        "the failed calls' durations",
        async || {
            let (_, points) = receiver.metric("gen_ai.client.operation.duration")?;
            let count_of = |error_type: Option<&str>| {
                let matching: Vec<Value> = points
                    .iter()
                    .filter(|point| {
                        proto_attribute(point, "error.type") == error_type.map(|kind| json!(kind))
                    })
                    .cloned()
                    .collect();
                sum_over(&matching, "count", None)
            };
            (count_of(None) == 1
                && count_of(Some("503")) == 1
                && count_of(Some("upstream_cut")) == 1)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_fail_are_spans_in_error_with_their_error_type_and_counted_in_the_metrics() {
    let Some(python) = installed("RUNBOARD_OTLP_PYTHON") else {
        return;
    };
    // A scripted upstream: a real one will not refuse or cut a call on demand.
    let scripts = [
        whole_reply("Tides follow the moon.", 6, 5),
        error_reply(503, "the model is loading", ""),
        vec![
            chunked_head(),
            chunked(&role()),
            chunked(&content("half")),
            Step::Pause(Duration::from_millis(30)),
        ],
        // A run generated on the model: its first step answered, its second refused for good.
        answer(&["a", " plan"], Duration::ZERO, 12),
        error_reply(400, "the prompt is longer than the context", ""),
    ];
    let upstream = FakeUpstream::start(&["org/chat"], move |index, _| {
        scripts.get(index).cloned().unwrap_or_default()
    })
    .await;
    let port = free_port();
    let receiver = ProtoReceiver::start(&python, port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server_config = config(&dir);
    server_config.otlp = Some(otlp(&format!("http://127.0.0.1:{port}")));
    server_config
        .upstreams
        .upstreams
        .push(UpstreamSpec::parse(&format!("gpu={}", upstream.base()), |_| None).unwrap());
    let server = start(server_config).await;
    let url = server.url();

    let answered = proxied_call(&url, false, "tides", false).await;
    assert_eq!(answered.status(), 200);
    answered.text().await.unwrap();
    let refused = proxied_call(&url, true, "tides", false).await;
    assert_eq!(refused.status(), 503);
    refused.text().await.unwrap();
    let cut = proxied_call(&url, true, "tides", true).await;
    assert_eq!(cut.status(), 200);
    let run_id = cut.headers()["x-runboard-run-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cut.text().await.is_err(),
        "the client's stream is cut as the upstream's was"
    );
    let detail = wait_finished(&client(&server), &run_id, Duration::from_secs(10)).await;
    assert_eq!(detail.summary.status, RunStatus::Failed);

    check_failed_proxied_calls(&receiver, &run_id).await;

    // A run runboard generates on the model: the step that failed is a span in error of its
    // own, not a synthetic step ended with the run.
    let api = client(&server);
    let generated = api
        .create_run(&CreateRun {
            task: "Plan the harbour".into(),
            mode: RunMode::Queued,
            params: json!({"model": "org/chat", "iterations": 1, "max_tokens": 8}),
        })
        .await
        .unwrap()
        .summary
        .run_id;
    let detail = wait_finished(&api, &generated, Duration::from_secs(20)).await;
    assert_eq!(detail.summary.status, RunStatus::Failed);
    let (_, steps) = eventually(
        Duration::from_secs(20),
        "the generated run's trace",
        async || trace_of(&receiver.spans(), &generated).filter(|(_, steps)| steps.len() == 2),
    )
    .await;
    let agent_of = |span: &Value| proto_attribute(span, "gen_ai.agent.name");
    let (failed, fine): (Vec<&Value>, Vec<&Value>) = steps
        .iter()
        .partition(|span| span["status"]["code"] == "STATUS_CODE_ERROR");
    assert_eq!(fine.len(), 1, "{steps:#?}");
    assert_eq!(agent_of(fine[0]), Some(json!("supervisor")));
    assert_eq!(failed.len(), 1, "{steps:#?}");
    assert_eq!(agent_of(failed[0]), Some(json!("researcher")));
    // Refused for good with a 400: its `error.type` is the status, as a proxied call's is.
    assert_eq!(proto_attribute(failed[0], "error.type"), Some(json!("400")));
    assert_eq!(
        proto_attribute(failed[0], "gen_ai.provider.name"),
        Some(json!("openai"))
    );
    assert!(
        failed[0]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("longer than the context"),
        "{failed:#?}"
    );
    server.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redact_text_no_prompt_and_no_answer_leaves_in_a_span() {
    let Some(python) = installed("RUNBOARD_OTLP_PYTHON") else {
        return;
    };
    let port = free_port();
    let receiver = ProtoReceiver::start(&python, port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server_config = config(&dir);
    server_config.otlp = Some(otlp(&format!("http://127.0.0.1:{port}")));
    server_config.store.redaction = Some(Redaction::Text);
    let server = start(server_config).await;
    let api = client(&server);
    let secret = "the otters' secret harbour plan";
    let runs = generated_runs(&api, secret, 2).await;
    for run_id in &runs {
        let (root, _) = eventually(Duration::from_secs(20), "the run's trace", async || {
            trace_of(&receiver.spans(), run_id)
        })
        .await;
        assert_eq!(
            proto_attribute(&root, "runboard.task"),
            Some(json!(PROMPT_WITHHELD))
        );
    }
    let everything = serde_json::to_string(&receiver.requests("traces")).unwrap();
    assert!(!everything.contains("secret harbour"), "{everything}");
    server.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_receiver_stopped_mid_run_runs_go_on_drops_are_counted_and_export_resumes() {
    let Some(python) = installed("RUNBOARD_OTLP_PYTHON") else {
        return;
    };
    let port = free_port();
    let receiver = ProtoReceiver::start(&python, port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server_config = config(&dir);
    server_config.otlp = Some(OtlpConfig {
        // A queue far smaller than the spans of the runs made while the receiver is away.
        queue: 4,
        ..otlp(&format!("http://127.0.0.1:{port}"))
    });
    let server = start(server_config).await;
    let api = client(&server);

    let before = generated_runs(&api, "Before the outage", 1).await;
    eventually(
        Duration::from_secs(20),
        "the first run's trace",
        async || trace_of(&receiver.spans(), &before[0]),
    )
    .await;
    receiver.stop().await;

    // The receiver is gone: the runs are not held up by it, and complete as ever.
    let during = generated_runs(&api, "During the outage", 6).await;
    let dropped = eventually(Duration::from_secs(30), "drops counted", async || {
        let dropped = figure(&server, "runboard_otlp_spans_dropped_total").await?;
        (dropped > 0.0).then_some(dropped)
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "a failed export counted",
        async || {
            let failures = figure(
                &server,
                "runboard_otlp_export_failures_total{signal=\"traces\"}",
            )
            .await?;
            (failures >= 1.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        figure(&server, "runboard_otlp_receiver_up{signal=\"traces\"}").await,
        Some(0.0)
    );

    // It comes back on the same port: the spans held meanwhile arrive, and new runs follow.
    let receiver = ProtoReceiver::start(&python, port).await;
    eventually(
        Duration::from_secs(40),
        "spans held through the outage",
        async || {
            let spans = receiver.spans();
            spans
                .iter()
                .any(|span| {
                    proto_attribute(span, "runboard.run.id")
                        .is_some_and(|run| during.iter().any(|id| json!(id) == run))
                })
                .then_some(())
        },
    )
    .await;
    let after = generated_runs(&api, "After the outage", 1).await;
    eventually(Duration::from_secs(20), "a new run's trace", async || {
        trace_of(&receiver.spans(), &after[0])
    })
    .await;
    eventually(Duration::from_secs(20), "the metrics again", async || {
        receiver.metric("gen_ai.client.operation.duration")
    })
    .await;
    assert_eq!(
        figure(&server, "runboard_otlp_receiver_up{signal=\"traces\"}").await,
        Some(1.0)
    );
    // Nothing more was dropped once it was back.
    assert_eq!(
        figure(&server, "runboard_otlp_spans_dropped_total").await,
        Some(dropped)
    );
    for run_id in during.iter().chain(&after) {
        let detail = api.run(run_id).await.unwrap();
        assert_eq!(detail.summary.status, RunStatus::Completed);
    }
    server.stop().await;
    receiver.stop().await;
}

// --- Arize Phoenix --------------------------------------------------------------------------

/// Arize Phoenix on loopback ports, with its store in a temporary directory; killed when
/// dropped.
struct Phoenix {
    _child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Phoenix {
    async fn start(program: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = tokio::process::Command::new(program)
            .arg("serve")
            .env("PHOENIX_WORKING_DIR", dir.path())
            .env("PHOENIX_HOST", "127.0.0.1")
            .env("PHOENIX_PORT", port.to_string())
            .env("PHOENIX_GRPC_PORT", free_port().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("phoenix starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = runboard_sse::http::client();
        eventually(Duration::from_secs(120), "Phoenix answering", async || {
            let response = http.get(format!("{url}/healthz")).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        Self {
            _child: child,
            url,
            _dir: dir,
        }
    }

    /// Every span of the default project, through Phoenix's REST API, page by page.
    async fn spans(&self) -> Vec<Value> {
        let http = runboard_sse::http::client();
        let mut spans = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![("limit", "1000".to_owned())];
            if let Some(cursor) = &cursor {
                params.push(("cursor", cursor.clone()));
            }
            let url = reqwest::Url::parse_with_params(
                &format!("{}/v1/projects/default/spans", self.url),
                &params,
            )
            .unwrap();
            let Ok(response) = http.get(url).send().await else {
                return spans;
            };
            let Ok(text) = response.text().await else {
                return spans;
            };
            let Ok(page) = serde_json::from_str::<Value>(&text) else {
                return spans;
            };
            spans.extend(page["data"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return spans,
            }
        }
    }
}

/// The spans of run `run_id` in Phoenix: its root and its children.
fn phoenix_trace(spans: &[Value], run_id: &str) -> Option<(Value, Vec<Value>)> {
    let root = spans.iter().find(|span| {
        span["parent_id"].is_null() && span["attributes"]["runboard.run.id"] == run_id
    })?;
    let children = spans
        .iter()
        .filter(|span| span["parent_id"] == root["context"]["span_id"])
        .cloned()
        .collect();
    Some((root.clone(), children))
}

/// An attribute of a span as Phoenix's REST API gives it.
fn attribute(span: &Value, key: &str) -> Value {
    span["attributes"][key].clone()
}

/// Checks run `on_model`'s trace in Phoenix: a `GenAI` span for each of its `steps` on the
/// real model, with the model server's own figures.
async fn check_model_run_in_phoenix(phoenix: &Phoenix, on_model: &str, steps: usize) {
    let (root, children) = eventually(
        Duration::from_secs(60),
        "the model run in Phoenix",
        async || {
            let (root, children) = phoenix_trace(&phoenix.spans().await, on_model)?;
            (children.len() == steps).then_some((root, children))
        },
    )
    .await;
    assert_eq!(root["status_code"], "OK");
    assert_eq!(attribute(&root, "gen_ai.operation.name"), "invoke_agent");
    for span in &children {
        assert_eq!(span["name"], "chat runboard-small", "{span:#}");
        assert_eq!(span["context"]["trace_id"], root["context"]["trace_id"]);
        assert_eq!(attribute(span, "gen_ai.provider.name"), "openai");
        assert_eq!(attribute(span, "gen_ai.request.model"), "runboard-small");
        assert_eq!(attribute(span, "gen_ai.response.model"), "runboard-small");
        assert_eq!(attribute(span, "gen_ai.usage.output_tokens"), 8, "{span:#}");
        assert!(
            attribute(span, "gen_ai.usage.input_tokens")
                .as_u64()
                .unwrap()
                > 0
        );
        assert!(
            attribute(span, "gen_ai.server.time_to_first_token")
                .as_f64()
                .unwrap()
                > 0.0
        );
        assert!(
            attribute(span, "runboard.itl_p50").as_f64().unwrap() > 0.0,
            "{span:#}"
        );
        assert!(
            attribute(span, "runboard.output_tokens_per_second")
                .as_f64()
                .unwrap()
                > 0.0
        );
        assert_eq!(
            attribute(span, "gen_ai.response.finish_reasons"),
            json!(["length"])
        );
        assert_eq!(attribute(span, "runboard.upstream"), "llama");
    }
}

/// Checks a proxied run's trace in Phoenix (its worker on the root and on each call's span,
/// each call's tokens as the proxy recorded them) and gives its calls' `gen_ai.request.stream`.
async fn check_proxied_run_in_phoenix(
    phoenix: &Phoenix,
    api: &ApiClient,
    run_id: &str,
) -> Vec<Value> {
    let mut calls = Vec::new();
    // The tokens the proxy recorded for each call: the server's usage figure for the
    // whole answer, counted from the chunks for the streamed one (the package asks for no
    // usage there).
    let mut recorded: Vec<u64> = api
        .run(run_id)
        .await
        .unwrap()
        .events
        .iter()
        .filter(|event| event.event == "data" && event.data["action"] == "step")
        .map(|event| event.data["payload"]["output_tokens"].as_u64().unwrap())
        .collect();
    let (root, children) = eventually(
        Duration::from_secs(60),
        "a proxied run in Phoenix",
        async || {
            let (root, children) = phoenix_trace(&phoenix.spans().await, run_id)?;
            (!children.is_empty()).then_some((root, children))
        },
    )
    .await;
    let worker = attribute(&root, "runboard.worker");
    assert!(worker.is_string(), "{root:#}");
    assert_eq!(
        root["name"],
        format!("invoke_agent {}", worker.as_str().unwrap())
    );
    let mut exported = Vec::new();
    for span in children {
        assert_eq!(attribute(&span, "runboard.worker"), worker);
        assert_eq!(attribute(&span, "gen_ai.request.model"), "runboard-small");
        assert_eq!(attribute(&span, "gen_ai.agent.name"), "scout");
        let stream = attribute(&span, "gen_ai.request.stream");
        if stream == false {
            assert_eq!(
                attribute(&span, "gen_ai.usage.output_tokens"),
                24,
                "{span:#}"
            );
        }
        exported.push(
            attribute(&span, "gen_ai.usage.output_tokens")
                .as_u64()
                .unwrap(),
        );
        calls.push(stream);
    }
    recorded.sort_unstable();
    exported.sort_unstable();
    assert_eq!(exported, recorded);
    calls
}

/// A call the model server refuses: a prompt longer than its context (llama.cpp answers
/// 400) through the proxy at `url`. Its run fails, and its span in Phoenix is in error with
/// the status as its type.
async fn check_refused_call_in_phoenix(phoenix: &Phoenix, api: &ApiClient, url: &str) {
    let prompt = "harbour lights ".repeat(1500);
    let body = json!({"model": "runboard-small", "max_tokens": 4,
                      "messages": [{"role": "user", "content": prompt}]});
    let refused = runboard_sse::http::client()
        .post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let run_id = refused.headers()["x-runboard-run-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let detail = wait_finished(api, &run_id, Duration::from_secs(30)).await;
    assert_eq!(detail.summary.status, RunStatus::Failed);
    let (_, children) = eventually(
        Duration::from_secs(60),
        "the refused call in Phoenix",
        async || phoenix_trace(&phoenix.spans().await, &run_id).filter(|(_, c)| c.len() == 1),
    )
    .await;
    let span = &children[0];
    assert_eq!(span["status_code"], "ERROR", "{span:#}");
    assert_eq!(attribute(span, "error.type"), "400", "{span:#}");
    assert_eq!(attribute(span, "gen_ai.request.model"), "runboard-small");
    assert!(
        span["status_message"]
            .as_str()
            .is_some_and(|message| message.contains("context")),
        "{span:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phoenix_shows_runs_on_the_real_model_and_proxied_calls_as_traces_with_gen_ai_spans() {
    let Some(phoenix_program) = installed("RUNBOARD_PHOENIX") else {
        return;
    };
    let Some((binary, model)) = llama_with("RUNBOARD_SMALL_GGUF") else {
        return;
    };
    let Some((python, _)) = server_with("RUNBOARD_OPENAI_PYTHON", "RUNBOARD_SMALL_GGUF") else {
        return;
    };
    let phoenix = Phoenix::start(&phoenix_program).await;
    let llama_port = free_port();
    let _llama = Llama::start_as(&binary, &model, llama_port, "runboard-small").await;
    let dir = tempfile::tempdir().unwrap();
    let mut server_config: ServerConfig = config(&dir);
    server_config.upstreams.upstreams.push(
        UpstreamSpec::parse(&format!("llama=http://127.0.0.1:{llama_port}/v1"), |_| None).unwrap(),
    );
    server_config.otlp = Some(otlp(&phoenix.url));
    let server = start(server_config).await;
    let api = client(&server);

    // A run on the real model: one iteration of the agent loop, each step 8 tokens.
    let on_model = api
        .create_run(&CreateRun {
            task: "Describe the lighthouse".into(),
            mode: RunMode::Queued,
            params: json!({"model": "runboard-small", "iterations": 1, "max_tokens": 8,
                           "temperature": 0, "extra_body": {"logit_bias": {"2": -100}}}),
        })
        .await
        .unwrap()
        .summary
        .run_id;
    let detail = wait_finished(&api, &on_model, Duration::from_secs(120)).await;
    assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
    let steps = detail
        .events
        .iter()
        .filter(|event| event.event == "data" && event.data["action"] == "step")
        .count();

    // A worker as people write them: the openai package, one streamed call and one whole.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openai_client.py"
    );
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .args([
            &format!("{}/v1", server.url()),
            "no-key",
            "runboard-small",
            "scout",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let proxied: Vec<String> = eventually(
        Duration::from_secs(90),
        "the proxied run ended",
        async || {
            let runs = api.list_runs(&RunQuery::default()).await.ok()?.runs;
            let proxied: Vec<String> = runs
                .iter()
                .filter(|run| run.worker.is_some() && run.status.is_finished())
                .map(|run| run.run_id.clone())
                .collect();
            (!proxied.is_empty()).then_some(proxied)
        },
    )
    .await;

    check_model_run_in_phoenix(&phoenix, &on_model, steps).await;
    let mut calls = Vec::new();
    for run_id in &proxied {
        calls.extend(check_proxied_run_in_phoenix(&phoenix, &api, run_id).await);
    }
    calls.sort_by_key(Value::to_string);
    assert_eq!(
        calls,
        [json!(false), json!(true)],
        "one whole call and one streamed"
    );

    check_refused_call_in_phoenix(&phoenix, &api, &server.url()).await;
    server.stop().await;
}
