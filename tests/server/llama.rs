//! `serve --scrape` against the real llama.cpp server (`llama-server --metrics --slots`) on a
//! tiny model the tests write (`tests/fixtures/write_tiny_gguf.py`): its metrics and slots as
//! runboard reads them, through generation and a restart of the model server.
//!
//! Needs `RUNBOARD_LLAMA_SERVER` (the `llama-server` binary) and `RUNBOARD_TINY_GGUF` (the model);
//! `.ci/run` builds and writes both. Without them the test says so and passes, unless
//! `RUNBOARD_REQUIRE_LLAMA` is set, when it fails.

use crate::support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use runboard_api::{ApiClient, Engine, ScrapeState, Upstream};
use runboard_server::ScrapeConfig;
use support::test_server::{client, config, start};

/// The binary and the tiny model, when this machine has them.
fn llama_setup() -> Option<(PathBuf, PathBuf)> {
    llama_with("RUNBOARD_TINY_GGUF")
}

/// The binary and the model named by `model_var`, when this machine has them.
pub(crate) fn llama_with(model_var: &str) -> Option<(PathBuf, PathBuf)> {
    server_with("RUNBOARD_LLAMA_SERVER", model_var)
}

/// The program named by `program_var` and the model named by `model_var`, when this machine
/// has both; without them the test says so and passes, unless `RUNBOARD_REQUIRE_LLAMA` is set.
pub(crate) fn server_with(program_var: &str, model_var: &str) -> Option<(PathBuf, PathBuf)> {
    let binary = std::env::var_os(program_var).map(PathBuf::from);
    let model = std::env::var_os(model_var).map(PathBuf::from);
    match (binary, model) {
        (Some(binary), Some(model)) if binary.is_file() && model.is_file() => Some((binary, model)),
        _ => {
            assert!(
                std::env::var_os("RUNBOARD_REQUIRE_LLAMA").is_none(),
                "RUNBOARD_REQUIRE_LLAMA is set but {program_var} / {model_var} do not name \
                 a model server and a model"
            );
            eprintln!(
                "skipped: set {program_var} and {model_var} to run against a real model server \
                 (eval \"$(scripts/llama-server.sh)\")"
            );
            None
        }
    }
}

/// A running `llama-server`, killed when dropped.
pub(crate) struct Llama(Child);

impl Llama {
    async fn start(binary: &PathBuf, model: &PathBuf, port: u16) -> Self {
        Self::start_as(binary, model, port, "tiny").await
    }

    /// Serves `model` as `alias` with two slots on one thread, metrics and slots on.
    pub(crate) async fn start_as(
        binary: &PathBuf,
        model: &PathBuf,
        port: u16,
        alias: &str,
    ) -> Self {
        let child = Command::new(binary)
            .args(["-m"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--metrics",
                "--slots",
                "-t",
                "1",
                "-np",
                "2",
                "--alias",
                alias,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("llama-server starts");
        let llama = Self(child);
        llama
            .wait_until_it_answers(&format!("http://127.0.0.1:{port}/health"))
            .await;
        llama
    }

    /// llama-cpp-python's server (`python -m llama_cpp.server`) serving `model` as `alias` on one
    /// thread.
    pub(crate) async fn start_python(
        python: &PathBuf,
        model: &PathBuf,
        port: u16,
        alias: &str,
    ) -> Self {
        let child = Command::new(python)
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
            .args([
                "--model_alias",
                alias,
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(["--n_threads", "1", "--n_ctx", "4096"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("llama-cpp-python's server starts");
        let llama = Self(child);
        llama
            .wait_until_it_answers(&format!("http://127.0.0.1:{port}/v1/models"))
            .await;
        llama
    }

    async fn wait_until_it_answers(&self, url: &str) {
        let http = reqwest::Client::new();
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Ok(response) = http.get(url).send().await
                    && response.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{url} did not answer within a minute"));
    }
}

impl Drop for Llama {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Asks for `count` completions of a few hundred tokens (the end-of-text token is kept out, so
/// the random model does not stop early).
async fn generate(base: &str, count: usize) {
    let http = reqwest::Client::new();
    let body = r#"{"model": "tiny", "prompt": "the keeper", "max_tokens": 300, "temperature": 0, "logit_bias": {"2": -100}}"#;
    let requests = (0..count).map(|_| {
        http.post(format!("{base}/v1/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    });
    for response in futures_util::future::join_all(requests).await {
        assert!(response.unwrap().status().is_success());
    }
}

/// Polls until `done` holds, checking that no read ever shows a negative rate.
async fn wait_for(api: &ApiClient, what: &str, done: impl Fn(&Upstream) -> bool) -> Upstream {
    let mut last = None;
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let upstream = api.upstreams().await.unwrap().upstreams[0].clone();
            assert!(
                upstream
                    .figures
                    .generation_tok_per_sec
                    .is_none_or(|r| r >= 0.0)
                    && upstream.figures.prompt_tok_per_sec.is_none_or(|r| r >= 0.0),
                "a negative rate: {upstream:#?}"
            );
            if done(&upstream) {
                return upstream;
            }
            last = Some(upstream);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}; last read {last:#?}"))
}

#[tokio::test]
async fn the_real_llama_cpp_server_is_read_through_generation_and_a_restart() {
    let Some((binary, model)) = llama_setup() else {
        return;
    };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let llama = Llama::start(&binary, &model, port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server_config = config(&dir);
    server_config.scrape = ScrapeConfig {
        urls: vec![format!("{base}/v1")],
        every: Duration::from_millis(150),
        ..ScrapeConfig::default()
    };
    let server = start(server_config).await;
    let api = client(&server);

    let idle = wait_for(&api, "a first read", |u| u.state == ScrapeState::Ok).await;
    assert_eq!(idle.engine, Some(Engine::Llamacpp));
    assert_eq!(idle.figures.running, Some(0.0));
    assert_eq!(idle.figures.waiting, Some(0.0));
    let slots = idle.slots.expect("--slots gives /slots");
    assert_eq!(
        slots.iter().map(|slot| slot.id).collect::<Vec<_>>(),
        [0, 1],
        "-np 2 is two slots"
    );
    assert!(slots.iter().all(|slot| !slot.processing));

    generate(&base, 4).await;
    let busy = wait_for(&api, "a generation rate", |u| {
        u.figures
            .generation_tok_per_sec
            .is_some_and(|rate| rate > 0.0)
    })
    .await;
    assert!(busy.figures.prompt_tok_per_sec.is_some());

    // The model server restarts: runboard says it cannot reach it, then reads it again with
    // its counters back at zero, and its rates stay rates.
    drop(llama);
    let down = wait_for(&api, "the server to be missed", |u| {
        u.state == ScrapeState::Error
    })
    .await;
    assert!(down.error.unwrap().contains("could not reach"));
    let _llama = Llama::start(&binary, &model, port).await;
    wait_for(&api, "a read after the restart", |u| {
        u.state == ScrapeState::Ok
    })
    .await;
    generate(&base, 2).await;
    wait_for(&api, "a rate after the restart", |u| {
        u.figures
            .generation_tok_per_sec
            .is_some_and(|rate| rate > 0.0)
    })
    .await;
    server.stop().await;
}
