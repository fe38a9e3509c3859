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
    // The client names no worker: both calls are its process's (its address and
    // `User-Agent`), one card that counts them; each call is in the feed with its chain.
    wait_for(
        &mut harness,
        Duration::from_secs(90),
        "one card with both of the worker's calls done, each in the feed",
        |h| {
            let model = h.state().board();
            model.cards().len() == 1
                && model.cards()[0].done == 2
                && model.feed.len() == 2
                && model.feed.entries().all(|entry| {
                    entry.summary.status == RunStatus::Completed
                        && model.feed.detail(&entry.key).is_some()
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
    let model = harness.state().board();
    let card = &model.cards()[0];
    assert!(
        card.key.title().starts_with("127.0.0.1 OpenAI/Python"),
        "{}",
        card.key.title()
    );
    for entry in model.feed.entries() {
        assert_eq!(entry.summary.worker.as_deref(), Some(card.key.title()));
        assert_eq!(
            entry.summary.task,
            "Describe the lighthouse at the end of the pier."
        );
        assert!(entry.summary.tokens_out > 0);
        let chain = runboard_console::board::chain(model.feed.detail(&entry.key).unwrap());
        assert!(
            chain.iter().any(|line| matches!(line, ChainLine::Step(_))),
            "each call's figures are a step in its chain"
        );
    }
    let shown = model.worker(card.current().unwrap()).unwrap();
    assert_eq!(shown.agent.as_deref(), Some("py-worker"));
    let snippets: Vec<&str> = model
        .feed
        .entries()
        .filter_map(|entry| entry.summary.snippet.as_deref())
        .collect();
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

/// One fleet process: `threads` workers named by `mode`, `calls` streamed calls each.
fn fleet(
    python: &std::path::Path,
    base: &str,
    mode: &str,
    prefix: &str,
    threads: u32,
    calls: u32,
) -> std::thread::JoinHandle<std::process::Output> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openai_fleet.py"
    );
    let mut command = std::process::Command::new(python);
    command.arg(script).args([
        base,
        "runboard-small",
        mode,
        prefix,
        &threads.to_string(),
        &calls.to_string(),
    ]);
    std::thread::Builder::new()
        .name(format!("fleet-{prefix}"))
        .spawn(move || command.output().expect("python runs"))
        .unwrap()
}

#[test]
fn a_fleet_through_the_proxy_is_one_card_per_worker_across_its_calls() {
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
    // 32 workers: 12 naming themselves with the header, 12 with the body's `user`, and a
    // process of 8 threads that sets nothing (one worker: its address and `User-Agent`).
    let processes = [
        fleet(&python, &base, "header", "gen", 12, 3),
        fleet(&python, &base, "user", "usr", 12, 3),
        fleet(&python, &base, "none", "anon", 8, 3),
    ];
    // Which cards were seen reading above 0 tok/s while a call of theirs was going on.
    let generating = std::cell::RefCell::new(std::collections::HashSet::new());
    let expected_cards = 12 + 12 + 1;
    wait_for(
        &mut harness,
        Duration::from_secs(300),
        "every worker's calls done",
        |h| {
            let model = h.state().board();
            for card in model.cards() {
                if !card.live.is_empty() && card.rate.per_sec() > 0.0 {
                    generating.borrow_mut().insert(card.key.title().to_owned());
                }
            }
            model.cards().len() == expected_cards
                && model.cards().iter().all(|card| card.live.is_empty())
                && model.cards().iter().map(|card| card.done).sum::<u64>() == 96
        },
    );
    for process in processes {
        let output = process.join().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    }
    let model = harness.state().board();
    let mut titles: Vec<&str> = model.cards().iter().map(|c| c.key.title()).collect();
    titles.sort_unstable();
    assert!(
        titles.contains(&"gen-00") && titles.contains(&"gen-11"),
        "{titles:?}"
    );
    assert!(
        titles.contains(&"usr-00") && titles.contains(&"usr-11"),
        "{titles:?}"
    );
    assert!(
        titles
            .iter()
            .any(|t| t.starts_with("127.0.0.1 OpenAI/Python")),
        "{titles:?}"
    );
    for card in model.cards() {
        let expected = if card.key.title().starts_with("127.0.0.1") {
            24
        } else {
            3
        };
        assert_eq!(card.done, expected, "{}", card.key.title());
        assert!(
            generating.borrow().contains(card.key.title()),
            "{} never read above 0 tok/s while generating",
            card.key.title()
        );
    }
    assert_eq!(model.feed.len(), 96, "every call in the feed");
}
