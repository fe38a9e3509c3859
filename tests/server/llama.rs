//! `serve --scrape` against the real llama.cpp server (`llama-server --metrics --slots`) on a
//! tiny model the tests write (`tests/fixtures/write_tiny_gguf.py`): its metrics and slots as
//! runboard reads them, through generation and a restart of the model server.
//!
//! Needs `RUNBOARD_LLAMA_SERVER` (the `llama-server` binary) and `RUNBOARD_TINY_GGUF` (the model);
//! `.ci/run` builds and writes both. Without them the test says so and passes, unless
//! `RUNBOARD_REQUIRE_LLAMA` is set, when it fails.

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use runboard_api::{ApiClient, Engine, ScrapeState, Upstream};
use runboard_server::ScrapeConfig;
use support::llama_server::{Llama, free_port, llama_with};
use support::test_server::{client, config, start};

/// The binary and the tiny model, when this machine has them.
fn llama_setup() -> Option<(PathBuf, PathBuf)> {
    llama_with("RUNBOARD_TINY_GGUF")
}

/// Asks for `count` completions of a few hundred tokens (the end-of-text token is kept out, so
/// the random model does not stop early).
async fn generate(base: &str, count: usize) {
    let http = runboard_sse::http::client();
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
