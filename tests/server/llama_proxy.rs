//! The proxy against the real llama.cpp server, with the official `openai` Python package as
//! the worker: the answers it gets through runboard equal those it gets from the model server
//! directly (temperature 0, a fixed seed), and each call is a run in `/api/runs` that
//! `runboard tail` can follow.
//!
//! Needs `RUNBOARD_LLAMA_SERVER`, `RUNBOARD_SMALL_GGUF` and `RUNBOARD_OPENAI_PYTHON`
//! (`eval "$(scripts/llama-server.sh)"`); skipped with a message without them, unless
//! `RUNBOARD_REQUIRE_LLAMA` is set.

use crate::support;

use std::path::Path;
use std::time::Duration;

use runboard_api::{ApiClient, RunQuery, RunStatus};
use runboard_server::UpstreamSpec;
use serde_json::Value;
use support::llama_server::{Llama, free_port, llama_with, server_with};
use support::test_server::{config, start, wait_finished};

const TOKEN: &str = "proxy-test-token";
/// A worker's token, for the call over HTTPS.
const WORKER: &str = "gpu-worker-token-0123456789";

/// Runs the `openai` package's worker against `base` and returns what it received.
async fn worker(python: &Path, base: &str, key: &str, agent: Option<&str>) -> Value {
    worker_trusting(python, base, key, agent, None).await
}

/// [`worker`], trusting the certificate authority `ca` (a PEM file) for an `https://` base.
async fn worker_trusting(
    python: &Path,
    base: &str,
    key: &str,
    agent: Option<&str>,
    ca: Option<&Path>,
) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openai_client.py"
    );
    let mut command = tokio::process::Command::new(python);
    command.arg(script).args([base, key, "runboard-small"]);
    if let Some(ca) = ca {
        // httpx, under the openai package, reads the trusted authorities from here.
        command.env("SSL_CERT_FILE", ca);
    }
    if let Some(agent) = agent {
        command.arg(agent);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the worker did not finish within two minutes")
        .expect("python runs");
    assert!(
        output.status.success(),
        "the worker failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the worker prints one JSON line")
}

/// The real llama.cpp server on the small model, a board proxying to it behind [`TOKEN`], and
/// the Python that has the `openai` package; the model server is killed when this is dropped.
struct LlamaBoard {
    python: std::path::PathBuf,
    root: String,
    server: runboard_server::RunningServer,
    _llama: Llama,
    _dir: tempfile::TempDir,
}

impl LlamaBoard {
    /// `None` (the test says so and passes) when this machine has no llama.cpp or `openai`.
    async fn start() -> Option<Self> {
        Self::start_with(|_| {}).await
    }

    /// [`LlamaBoard::start`] with the board's configuration changed by `change`.
    async fn start_with(change: impl FnOnce(&mut runboard_server::ServerConfig)) -> Option<Self> {
        let (binary, model) = llama_with("RUNBOARD_SMALL_GGUF")?;
        let (python, _) = server_with("RUNBOARD_OPENAI_PYTHON", "RUNBOARD_SMALL_GGUF")?;
        let port = free_port();
        let llama = Llama::start_as(&binary, &model, port, "runboard-small").await;
        let root = format!("http://127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&dir);
        config
            .upstreams
            .upstreams
            .push(UpstreamSpec::parse(&format!("llama={root}/v1"), |_| None).unwrap());
        config.access.token = Some(TOKEN.into());
        change(&mut config);
        let server = start(config).await;
        Some(Self {
            python,
            root,
            server,
            _llama: llama,
            _dir: dir,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_package_gets_the_same_answers_through_runboard_and_each_call_is_a_run() {
    let Some(board) = LlamaBoard::start().await else {
        return;
    };
    let (python, root, server) = (board.python, board.root, board.server);

    let direct = worker(&python, &format!("{root}/v1"), "no-key", None).await;
    let proxied = worker(
        &python,
        &format!("{}/v1", server.url()),
        TOKEN,
        Some("py-worker"),
    )
    .await;
    assert_eq!(proxied["stream"], direct["stream"]);
    assert_eq!(proxied["whole"], direct["whole"]);
    assert_eq!(proxied["chunks"], direct["chunks"]);
    assert_eq!(proxied["whole_tokens"], 24);
    let streamed = proxied["stream"].as_str().unwrap();
    assert!(!streamed.is_empty());

    let api = ApiClient::new(&server.url(), Some(TOKEN)).unwrap();
    let runs = api.list_runs(&RunQuery::default()).await.unwrap().runs;
    assert_eq!(runs.len(), 2, "one run per call: {runs:#?}");
    // Newest first: the whole answer, then the stream.
    let whole = wait_finished(&api, &runs[0].run_id, Duration::from_secs(10)).await;
    let stream = wait_finished(&api, &runs[1].run_id, Duration::from_secs(10)).await;
    for detail in [&whole, &stream] {
        assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
        assert_eq!(detail.summary.agent.as_deref(), Some("py-worker"));
        assert_eq!(
            detail.summary.task,
            "Describe the lighthouse at the end of the pier."
        );
    }
    assert_eq!(whole.summary.tokens_out, 24, "llama.cpp's usage figure");
    let step = stream
        .events
        .iter()
        .find(|e| e.event == "data" && e.data["action"] == "step")
        .map(|e| &e.data["payload"])
        .expect("the streamed call's step");
    assert!(step["ttft_ms"].as_f64().unwrap() > 0.0, "{step}");
    assert!(step["tok_per_sec"].as_f64().unwrap() > 0.0, "{step}");
    let counted = step["output_tokens"].as_u64().unwrap();
    assert!((1..=24).contains(&counted), "{step}");
    let snippet = stream
        .events
        .iter()
        .rev()
        .find(|e| e.event == "node_update")
        .and_then(|e| e.data["snippet"].as_str())
        .unwrap();
    assert_eq!(snippet, streamed, "the card shows the text the worker got");

    let tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_runboard"))
        .args(["tail", &stream.summary.run_id, "--api", &server.url()])
        .args(["--token", TOKEN])
        .output();
    let tail = tokio::time::timeout(Duration::from_secs(20), tail)
        .await
        .expect("runboard tail ends with the run")
        .unwrap();
    let printed = String::from_utf8_lossy(&tail.stdout);
    assert!(
        printed.contains("py-worker calls runboard-small at llama (call 1)"),
        "{printed}"
    );
    assert!(printed.contains("completed"), "{printed}");
    server.stop().await;
}

/// A hundred pipelines of three streamed calls each, written with the `openai` package (which
/// closes its connection as soon as it has read `[DONE]`, before llama.cpp's body has ended),
/// through runboard to the real llama.cpp server: a hundred runs, each with its three steps,
/// none cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_openai_pipelines_are_a_hundred_whole_runs() {
    let Some(board) = LlamaBoard::start().await else {
        return;
    };
    let (python, server) = (board.python, board.server);

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openai_pipelines.py"
    );
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .args([&format!("{}/v1", server.url()), TOKEN, "runboard-small"])
        .args(["100", "4"])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), output)
        .await
        .expect("the pipelines did not finish within five minutes")
        .expect("python runs");
    assert!(
        output.status.success(),
        "the pipelines failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["pipelines"], 100);

    let api = ApiClient::new(&server.url(), Some(TOKEN)).unwrap();
    let runs = api
        .list_runs(&RunQuery {
            limit: Some(500),
            ..RunQuery::default()
        })
        .await
        .unwrap()
        .runs;
    assert_eq!(runs.len(), 100, "one run per pipeline");
    for run in &runs {
        let detail = wait_finished(&api, &run.run_id, Duration::from_secs(10)).await;
        assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
        let steps = detail
            .events
            .iter()
            .filter(|e| e.event == "data" && e.data["action"] == "step")
            .count();
        assert_eq!(steps, 3, "{detail:#?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_package_calls_through_the_proxy_over_https_with_a_worker_token() {
    let Some((binary, model)) = llama_with("RUNBOARD_SMALL_GGUF") else {
        return;
    };
    let Some((python, _)) = server_with("RUNBOARD_OPENAI_PYTHON", "RUNBOARD_SMALL_GGUF") else {
        return;
    };
    let port = free_port();
    let _llama = Llama::start_as(&binary, &model, port, "runboard-small").await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = support::certificates::make_certificates(dir.path());
    let mut config = config(&dir);
    config
        .upstreams
        .upstreams
        .push(UpstreamSpec::parse(&format!("llama=http://127.0.0.1:{port}/v1"), |_| None).unwrap());
    config.access.tokens = runboard_server::parse_token_list(&format!(
        "lab-worker worker {WORKER}\nops admin {TOKEN}-admin-0123\n"
    ))
    .unwrap();
    config.tls = Some(runboard_server::TlsFiles { cert, key });
    let server = start(config).await;
    assert!(server.url().starts_with("https://"));

    let got = worker_trusting(
        &python,
        &format!("{}/v1", server.url()),
        WORKER,
        None,
        Some(&ca),
    )
    .await;
    assert!(!got["stream"].as_str().unwrap().is_empty(), "{got}");
    assert!(!got["whole"].as_str().unwrap().is_empty(), "{got}");

    runboard_sse::http::trust_ca_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let api = ApiClient::new(&server.url(), Some(&format!("{TOKEN}-admin-0123"))).unwrap();
    let runs = api.list_runs(&RunQuery::default()).await.unwrap().runs;
    assert_eq!(runs.len(), 2, "one run per call: {runs:#?}");
    for run in &runs {
        let detail = wait_finished(&api, &run.run_id, Duration::from_secs(10)).await;
        assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
        assert_eq!(detail.summary.worker.as_deref(), Some("lab-worker"));
    }
    server.stop().await;
}

/// `serve --redact text` in front of the real llama.cpp server: the `openai` package gets the
/// same whole answers as directly, and runboard's record of the calls (streams, lists, details)
/// holds neither the prompt nor the answer, only figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redact_text_the_openai_package_gets_whole_answers_and_the_record_keeps_no_text() {
    let Some(board) = LlamaBoard::start_with(|config| {
        config.store.redaction = Some(runboard_api::Redaction::Text);
    })
    .await
    else {
        return;
    };
    let (python, root, server) = (board.python, board.root, board.server);
    let direct = worker(&python, &format!("{root}/v1"), "no-key", None).await;
    let proxied = worker(
        &python,
        &format!("{}/v1", server.url()),
        TOKEN,
        Some("py-worker"),
    )
    .await;
    assert_eq!(proxied["stream"], direct["stream"]);
    assert_eq!(proxied["whole"], direct["whole"]);
    let answers = [
        proxied["stream"].as_str().unwrap().trim().to_owned(),
        proxied["whole"].as_str().unwrap().trim().to_owned(),
    ];
    assert!(answers.iter().all(|answer| !answer.is_empty()));

    let api = ApiClient::new(&server.url(), Some(TOKEN)).unwrap();
    let runs = api.list_runs(&RunQuery::default()).await.unwrap().runs;
    assert_eq!(runs.len(), 2, "{runs:#?}");
    let mut record = serde_json::to_string(&runs).unwrap();
    for run in &runs {
        let detail = wait_finished(&api, &run.run_id, Duration::from_secs(10)).await;
        assert_eq!(detail.summary.status, RunStatus::Completed, "{detail:#?}");
        assert!(detail.summary.tokens_out > 0, "the figures stay");
        record.push_str(&serde_json::to_string(&detail).unwrap());
    }
    let mut events = runboard_sse::http::client()
        .get(format!("{}/api/events", server.url()))
        .bearer_auth(TOKEN)
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(Duration::from_millis(500), events.chunk()).await
    {
        record.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(record.contains("py-worker") && record.contains("\"tokens_out\""));
    assert!(
        !record.contains("lighthouse"),
        "the prompt is in the record: {record}"
    );
    assert!(
        !record.contains("You are terse"),
        "the system prompt is in the record"
    );
    assert!(
        !record.contains("\"snippet\":\""),
        "text is in the record: {record}"
    );
    for answer in &answers {
        assert!(
            !record.contains(answer.as_str()),
            "an answer is in the record: {answer}"
        );
    }
    server.stop().await;
}
