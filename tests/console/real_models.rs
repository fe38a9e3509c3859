//! The console against a server that generates on a model server (`serve --upstream`, here a
//! scripted OpenAI-compatible upstream): the launch form asks for the models, offers them with
//! their upstream, and the batch asks for the one picked; cards show the model's reasoning
//! apart from its answer and the runs' real token counts; EXPAND shows each step's figures.

use std::time::Duration;

use egui_kittest::kittest::Queryable as _;
use runboard_api::RunStatus;
use runboard_console::board::ChainLine;
use runboard_server::UpstreamSpec;

use crate::support::openai_upstream::{
    FakeUpstream, Step, content, done, reasoning, role, stream_head, usage,
};
use crate::ui::{console, setup_with, wait_for};

/// Reasoning first, then the answer, a word every 40 ms, then the server's usage figure.
fn thinking_answer(_: usize, _: &serde_json::Value) -> Vec<Step> {
    let mut steps = vec![stream_head(), Step::Write(role())];
    for word in ["Plan ", "the ", "scenes ", "first."] {
        steps.push(Step::Pause(Duration::from_millis(40)));
        steps.push(Step::Write(reasoning("reasoning_content", word)));
    }
    for word in ["The ", "keeper ", "lit ", "the ", "lamp."] {
        steps.push(Step::Pause(Duration::from_millis(40)));
        steps.push(Step::Write(content(word)));
    }
    steps.push(Step::Write(usage(30, 9)));
    steps.push(Step::Write(done()));
    steps
}

#[test]
fn the_console_picks_a_real_model_and_shows_reasoning_apart_and_each_steps_figures() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let upstream = runtime.block_on(FakeUpstream::start(
        &["org/small-chat", "org/big-chat"],
        thinking_answer,
    ));
    let base = upstream.base();
    let setup = setup_with(1.0, |config| {
        config
            .upstreams
            .upstreams
            .push(UpstreamSpec::parse(&format!("gpu1={base}"), |_| None).unwrap());
    });
    let mut harness = console(&setup, 2);
    wait_for(
        &mut harness,
        Duration::from_secs(10),
        "the server to answer",
        |h| h.state().board().servers[0].health.is_some(),
    );
    harness.get_by_label("Launch…").click();
    harness.step();
    harness.step();
    harness.get_by_label("Models…").click();
    wait_for(
        &mut harness,
        Duration::from_secs(10),
        "the model list",
        |h| h.state().board().servers[0].models.is_some(),
    );
    // The combo box offers each model with its upstream; pick the second one.
    harness.get_by_label("Model").click();
    harness.step();
    harness.step();
    harness.get_by_label("org/big-chat @ gpu1").click();
    harness.step();
    harness.step();
    harness.get_by_label("Launch").click();
    harness.step();
    harness.step();
    let mut saw_reasoning = false;
    wait_for(
        &mut harness,
        Duration::from_secs(30),
        "two finished runs in the feed",
        |h| {
            let model = h.state().board();
            model.workers().len() == 2
                && model.workers().iter().all(|w| {
                    w.status == RunStatus::Completed && model.feed.detail(&w.key).is_some()
                })
        },
    );
    let model = harness.state().board();
    for worker in model.workers() {
        // Five agent steps of 9 tokens each, as the upstream counted them.
        assert_eq!(worker.tokens_out, 45);
        assert!(!worker.estimated);
        saw_reasoning |= !worker.reasoning.is_empty();
        assert!(worker.snippet.contains("The keeper lit the lamp."));
        assert!(
            !worker.snippet.contains("Plan"),
            "reasoning kept out of the answer"
        );
        let chain = runboard_console::board::chain(model.feed.detail(&worker.key).unwrap());
        let steps: Vec<_> = chain
            .iter()
            .filter_map(|line| match line {
                ChainLine::Step(step) => Some(step),
                _ => None,
            })
            .collect();
        assert_eq!(steps.len(), 5);
        assert!(steps.iter().all(|s| s.tokens == 9 && s.ttfat_ms.is_some()));
    }
    assert!(saw_reasoning, "the cards kept the last step's reasoning");
    let asked: Vec<String> = upstream
        .chats()
        .iter()
        .map(|seen| seen.body["model"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(asked.len(), 10);
    assert!(asked.iter().all(|m| m == "org/big-chat"), "{asked:?}");
}
