//! `serve --upstream` against the real llama.cpp server (`llama-server`) serving the slower
//! random model the tests write (about 110 tokens a second per stream on one core): eight runs
//! launched at once all complete, every step's token count is the upstream's own and the sum
//! equals what llama.cpp says it generated, times and rates are recorded, and a cancel
//! mid-step stops the upstream's generation.
//!
//! Needs `RUNBOARD_LLAMA_SERVER` and `RUNBOARD_SMALL_GGUF` (`eval "$(scripts/llama-server.sh)"`);
//! skipped with a message without them, unless `RUNBOARD_REQUIRE_LLAMA` is set.

use crate::support;
use support::llama_server::{Llama, free_port, llama_with, server_with};

use std::time::Duration;

use runboard_api::{CreateRun, RunMode, RunStatus};
use runboard_server::UpstreamSpec;
use serde_json::{Value, json};
use support::test_server::{client, config, start, wait_finished};

const STEP_TOKENS: u64 = 16;

/// `llamacpp:tokens_predicted_total`, the tokens llama.cpp generated since it started.
async fn tokens_predicted(root: &str) -> u64 {
    let page = runboard_sse::http::client()
        .get(format!("{root}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .find_map(|line| line.strip_prefix("llamacpp:tokens_predicted_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|value| value.fract() == 0.0 && *value >= 0.0)
        .map(|value| format!("{value:.0}").parse().unwrap())
        .expect("llama-server reports tokens_predicted_total, a whole number")
}

/// Whether any slot is generating, and the most tokens a slot decoded in its last task.
async fn slots(root: &str) -> (bool, u64) {
    let body = runboard_sse::http::client()
        .get(format!("{root}/slots"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let slots: Vec<Value> = serde_json::from_slice(&body).unwrap();
    let busy = slots.iter().any(|s| s["is_processing"] == true);
    let decoded = slots
        .iter()
        .filter_map(|s| {
            s["next_token"][0]["n_decoded"]
                .as_u64()
                .or_else(|| s["next_token"]["n_decoded"].as_u64())
        })
        .max()
        .unwrap_or(0);
    (busy, decoded)
}

#[tokio::test]
async fn eight_runs_on_the_real_llama_cpp_server_complete_measured_and_a_cancel_stops_it() {
    let Some((binary, model)) = llama_with("RUNBOARD_SMALL_GGUF") else {
        return;
    };
    let port = free_port();
    let _llama = Llama::start_as(&binary, &model, port, "runboard-small").await;
    let root = format!("http://127.0.0.1:{port}");
    let before = tokens_predicted(&root).await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config
        .upstreams
        .upstreams
        .push(UpstreamSpec::parse(&format!("llama={root}/v1"), |_| None).unwrap());
    config.upstreams.aliases = vec![("fast".into(), "runboard-small".into())];
    let server = start(config).await;
    let api = client(&server);

    // Eight runs at once; the eos token is kept out so every step makes exactly its tokens.
    let params = json!({"model": "fast", "iterations": 1, "max_tokens": STEP_TOKENS,
                        "temperature": 0, "extra_body": {"logit_bias": {"2": -100}}});
    let mut runs = Vec::new();
    for n in 0..8 {
        let created = api
            .create_run(&CreateRun {
                task: format!("Describe lighthouse number {n}"),
                mode: RunMode::Queued,
                params: params.clone(),
            })
            .await
            .unwrap();
        runs.push(created.summary.run_id);
    }
    let mut total = 0;
    for run_id in &runs {
        let detail = wait_finished(&api, run_id, Duration::from_secs(120)).await;
        assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
        let steps: Vec<&Value> = detail
            .events
            .iter()
            .filter(|e| e.event == "data" && e.data["action"] == "step")
            .map(|e| &e.data["payload"])
            .collect();
        assert_eq!(steps.len(), 5);
        for step in &steps {
            assert_eq!(step["output_tokens"], STEP_TOKENS, "{step}");
            assert_eq!(step["estimated"], false, "llama.cpp sends usage: {step}");
            assert_eq!(step["resolved_model"], "runboard-small");
            assert!(step["prompt_tokens"].as_u64().unwrap() > 10);
            assert!(step["ttft_ms"].as_f64().unwrap() > 0.0);
            assert!(step["tok_per_sec"].as_f64().unwrap() > 0.0);
            assert!(step["itl_p50_ms"].as_f64().unwrap() > 0.0);
        }
        assert_eq!(detail.summary.tokens_out, 5 * STEP_TOKENS);
        let last_update = detail
            .events
            .iter()
            .rev()
            .find(|e| e.event == "node_update")
            .unwrap();
        assert_eq!(last_update.data["tokens_out"], 5 * STEP_TOKENS);
        assert!(last_update.data.get("estimated").is_none());
        total += detail.summary.tokens_out;
    }
    let produced = tokens_predicted(&root).await - before;
    assert_eq!(produced, total, "runboard's counts are llama.cpp's");
    cancel_mid_step(&api, &root).await;
    server.stop().await;
}

/// A long step, cancelled once it streams: llama.cpp stops generating at once.
async fn cancel_mid_step(api: &runboard_api::ApiClient, root: &str) {
    let long = json!({"model": "fast", "max_tokens": 1500, "temperature": 0,
                      "messages": [{"role": "user", "content": "Tell a long story"}],
                      "extra_body": {"logit_bias": {"2": -100}}});
    let run_id = api
        .create_run(&CreateRun {
            task: "A long story".into(),
            mode: RunMode::Queued,
            params: long,
        })
        .await
        .unwrap()
        .summary
        .run_id;
    tokio::time::timeout(Duration::from_secs(60), async {
        while api.run(&run_id).await.unwrap().summary.tokens_out < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the long step streams");
    assert!(slots(root).await.0, "llama.cpp is generating");
    api.cancel(&run_id).await.unwrap();
    let detail = wait_finished(api, &run_id, Duration::from_secs(10)).await;
    assert_eq!(detail.summary.status, RunStatus::Cancelled);
    let idle = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (busy, decoded) = slots(root).await;
            if !busy {
                return decoded;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("llama.cpp stops generating after the cancel");
    assert!(idle < 1500, "stopped after {idle} of 1500 tokens");
}

/// llama-cpp-python's server (its default settings) serving the small model, and a board whose
/// runs are generated on it; the server is killed when this is dropped.
struct PythonBoard {
    root: String,
    server: runboard_server::RunningServer,
    _model_server: Llama,
    _dir: tempfile::TempDir,
}

impl PythonBoard {
    /// `None` (the test says so and passes) when this machine has no llama-cpp-python.
    async fn start() -> Option<Self> {
        let (python, model) = server_with("RUNBOARD_LLAMA_PYTHON", "RUNBOARD_SMALL_GGUF")?;
        let port = free_port();
        let model_server = Llama::start_python(&python, &model, port, "runboard-small").await;
        let root = format!("http://127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&dir);
        config
            .upstreams
            .upstreams
            .push(UpstreamSpec::parse(&format!("py={root}/v1"), |_| None).unwrap());
        let server = start(config).await;
        Some(Self {
            root,
            server,
            _model_server: model_server,
            _dir: dir,
        })
    }
}

/// llama-cpp-python's server sends no usage chunk: runboard counts the stream's chunks, says so
/// (`estimated`) to the end, and the count never exceeds what the server made (the same request
/// answered whole carries the exact figure; a chunk can hold more than one token, never less).
#[tokio::test]
async fn runs_on_llama_cpp_pythons_server_without_usage_are_counted_from_the_stream() {
    let Some(board) = PythonBoard::start().await else {
        return;
    };
    let (root, api) = (board.root.clone(), client(&board.server));
    let messages = json!([{"role": "user", "content": "Describe a lighthouse"}]);
    let detail = api
        .create_run(&CreateRun {
            task: "one step".into(),
            mode: RunMode::Inline,
            params: json!({"messages": messages, "max_tokens": STEP_TOKENS, "temperature": 0,
                           "extra_body": {"logit_bias": {"2": -100}}}),
        })
        .await
        .unwrap();
    assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
    let step = detail
        .events
        .iter()
        .find(|e| e.event == "data" && e.data["action"] == "step")
        .map(|e| e.data["payload"].clone())
        .unwrap();
    assert_eq!(step["estimated"], true, "no usage chunk came: {step}");
    assert_eq!(step["finish_reason"], "length");
    assert!(step["ttft_ms"].as_f64().unwrap() > 0.0);
    let counted = step["output_tokens"].as_u64().unwrap();
    let last = detail
        .events
        .iter()
        .rev()
        .find(|e| e.event == "node_update")
        .unwrap();
    assert_eq!(last.data["estimated"], true);
    assert_eq!(last.data["tokens_out"], counted);

    // The same request answered whole says how many tokens the server made.
    let whole = runboard_sse::http::client()
        .post(format!("{root}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(
            json!({"model": "runboard-small", "messages": messages, "max_tokens": STEP_TOKENS,
                   "temperature": 0, "logit_bias": {"2": -100}})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let whole: Value = serde_json::from_slice(&whole).unwrap();
    let made = whole["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(made, STEP_TOKENS);
    eprintln!("llama-cpp-python's server: {counted} chunks with text for {made} tokens");
    assert!(
        counted >= 1 && counted <= made,
        "counted {counted} of {made}"
    );
    board.server.stop().await;
}

/// Three runs at once on llama-cpp-python's server with its default settings, which interrupt
/// the request being generated when a newer one arrives (its stream then ends with `[DONE]`
/// and no finish reason): no run ends `completed` with nothing made, and every interrupted
/// step is named in its run.
#[tokio::test]
async fn interrupted_answers_on_llama_cpp_pythons_server_are_named_not_counted_as_successes() {
    let Some(board) = PythonBoard::start().await else {
        return;
    };
    let api = client(&board.server);
    let mut ids = Vec::new();
    for n in 0..3 {
        let created = api
            .create_run(&CreateRun {
                task: format!("survey the coast, part {n}"),
                mode: RunMode::Queued,
                params: json!({"max_tokens": 12, "temperature": 0,
                               "extra_body": {"logit_bias": {"2": -100}}}),
            })
            .await
            .unwrap();
        ids.push(created.summary.run_id);
    }
    let mut interrupted_steps = 0;
    for run_id in &ids {
        let detail = wait_finished(&api, run_id, Duration::from_secs(180)).await;
        let steps: Vec<&Value> = detail
            .events
            .iter()
            .filter(|e| e.event == "data" && e.data["action"] == "step")
            .map(|e| &e.data["payload"])
            .collect();
        let named = detail
            .events
            .iter()
            .filter(|e| e.event == "narration" && e.data["action"] == "step_interrupted")
            .count();
        let interrupted = steps.iter().filter(|s| s["interrupted"] == true).count();
        assert_eq!(
            named, interrupted,
            "every interrupted step is named: {detail:#?}"
        );
        for step in &steps {
            assert!(
                step["finish_reason"].is_string() || step["interrupted"] == true,
                "a step without a finish reason is marked interrupted: {step}"
            );
        }
        interrupted_steps += interrupted;
        assert!(
            !(detail.summary.status == RunStatus::Completed && detail.summary.tokens_out == 0),
            "a run completed with nothing made: {detail:#?}"
        );
        eprintln!(
            "{run_id}: {} with {} tokens, {interrupted} of {} steps interrupted",
            detail.summary.status,
            detail.summary.tokens_out,
            steps.len()
        );
    }
    eprintln!("{interrupted_steps} steps interrupted in all");
    // Three runs at once on this server always interrupt one another; a test that saw none
    // would not have tested anything.
    assert!(
        interrupted_steps > 0,
        "llama-cpp-python interrupted no step"
    );
    board.server.stop().await;
}
