//! A worker that knows nothing of runboard, the official `openai` Python package, calls the real
//! llama.cpp server through runboard's `/v1`: the console shows its calls as cards with the
//! worker's agent name, the text it received and a token count, and their chains in the feed.
//!
//! Needs `RUNBOARD_LLAMA_SERVER`, `RUNBOARD_SMALL_GGUF` and `RUNBOARD_OPENAI_PYTHON`
//! (`eval "$(scripts/llama-server.sh)"`); skipped with a message without them, unless
//! `RUNBOARD_REQUIRE_LLAMA` is set.

use std::time::Duration;

use runboard_api::RunStatus;
use runboard_console::board::ChainLine;
use runboard_server::UpstreamSpec;

use crate::support::llama_server::{Llama, free_port, llama_with, server_with};
use crate::ui::{console, setup_with, wait_for};

#[test]
fn a_worker_calling_through_the_proxy_shows_up_as_cards_with_its_text() {
    let Some((binary, model)) = llama_with("RUNBOARD_SMALL_GGUF") else {
        return;
    };
    let Some((python, _)) = server_with("RUNBOARD_OPENAI_PYTHON", "RUNBOARD_SMALL_GGUF") else {
        return;
    };
    let port = free_port();
    let starter = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _llama = starter.block_on(Llama::start_as(&binary, &model, port, "runboard-small"));
    let setup = setup_with(1.0, |config| {
        config.upstreams.upstreams.push(
            UpstreamSpec::parse(&format!("llama=http://127.0.0.1:{port}/v1"), |_| None).unwrap(),
        );
    });
    let base = format!("{}/v1", setup.url());
    let mut harness = console(&setup, 1);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openai_client.py"
    );
    let worker = std::thread::Builder::new()
        .name("openai-worker".into())
        .spawn(move || {
            std::process::Command::new(python)
                .arg(script)
                .args([
                    base.as_str(),
                    "no-token-needed",
                    "runboard-small",
                    "py-worker",
                ])
                .output()
                .expect("python runs")
        })
        .unwrap();
    wait_for(
        &mut harness,
        Duration::from_secs(90),
        "two finished cards of the worker's calls, in the feed",
        |h| {
            let model = h.state().model();
            model.workers().len() == 2
                && model.workers().iter().all(|w| {
                    w.status == RunStatus::Completed && model.feed.detail(&w.key).is_some()
                })
        },
    );
    let output = worker.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let received: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let model = harness.state().model();
    for worker in model.workers() {
        assert_eq!(worker.agent.as_deref(), Some("py-worker"));
        assert_eq!(
            worker.task,
            "Describe the lighthouse at the end of the pier."
        );
        assert!(worker.tokens_out > 0);
        let chain = runboard_console::board::chain(model.feed.detail(&worker.key).unwrap());
        assert!(
            chain.iter().any(|line| matches!(line, ChainLine::Step(_))),
            "each call's figures are a step in its chain"
        );
    }
    let snippets: Vec<&str> = model.workers().iter().map(|w| w.snippet.as_str()).collect();
    let streamed = received["stream"].as_str().unwrap();
    // Cards draw control characters as spaces; the text is the worker's otherwise.
    let printable: String = streamed
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    assert!(
        snippets
            .iter()
            .any(|s| *s == streamed || *s == printable.as_str()),
        "{snippets:?} vs {streamed:?}"
    );
}
