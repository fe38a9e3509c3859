//! The console against a runs server it did not write: one in the first design document's
//! dialect (see `tests/support/seed_server.rs`), driven end to end through AccessKit.

use std::time::Duration;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;
use runboard_api::{Feature, RunStatus};
use runboard_console::network::Spawner;
use runboard_console::ui::{Console, ConsoleConfig, LaunchForm};

use super::ui::{click_until, launch_from_the_ui, wait_for};
use crate::support::seed_server::{SeedConfig, SeedServer};

fn logged(harness: &Harness<'static, Console>, text: &str) -> bool {
    harness
        .state()
        .board()
        .log
        .lines()
        .iter()
        .any(|line| line.text.contains(text))
}

/// A console watching `seed`, its launch form set to three runs.
fn console(seed: &SeedServer, runtime: &tokio::runtime::Runtime) -> Harness<'static, Console> {
    let mut config = ConsoleConfig::new(vec![seed.url()]);
    config.feed_poll = Duration::from_millis(300);
    // Three slots, one taken by the run that was going before we watched: the third is refused.
    config.launch = Some(LaunchForm {
        task: "seed dialect task".into(),
        count: 3,
        stagger_ms: 0,
        inline: false,
        server: 0,
        model: String::new(),
    });
    let spawner = Spawner::new(runtime.handle().clone());
    Harness::builder()
        .with_size([1400.0, 900.0])
        .allow_missing_glyphs()
        .build_eframe(move |cc| Console::new(&cc.egui_ctx, None, config, spawner))
}

#[test]
fn the_console_watches_launches_and_explains_a_server_in_the_first_designs_dialect() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Runs of 5 s: each stream is cut after 1.5 s and reopened (3 s later) before the run ends.
    let seed_config = SeedConfig {
        steps_per_agent: 10,
        ..SeedConfig::default()
    };
    let final_tokens = seed_config.final_tokens();
    let seed = runtime.block_on(SeedServer::start(seed_config));
    let mut harness = console(&seed, &runtime);

    // No `/api/health` (an HTML 404): a server with no optional features, not an error.
    wait_for(
        &mut harness,
        Duration::from_secs(10),
        "the run that was going before we watched to get a card",
        |h| h.state().board().workers().len() == 1,
    );
    {
        let server = &harness.state().board().servers[0];
        let health = server.health.as_ref().expect("health taken as featureless");
        assert!(!health.has(Feature::Events));
        assert_eq!(server.error, None);
    }

    // Launch three: two fit, the third is refused with the server's own words.
    launch_from_the_ui(&mut harness);
    wait_for(
        &mut harness,
        Duration::from_secs(10),
        "two launched cards and the refusal in the log",
        |h| {
            h.state().board().workers().len() == 3
                && logged(
                    h,
                    "answered HTTP 503: All 3 worker slots are busy; try again later",
                )
        },
    );
    // The log says it in red, and keeps it after the next poll clears the server's badge.
    click_until(&mut harness, "Log (", |h| {
        h.query_by_label_contains("All 3 worker slots are busy")
            .is_some()
    });

    // The server has no cancel: FastAPI's `{"detail": "Not Found"}` is what the user reads.
    let first = harness.state().board().workers()[0].key.run_id.clone();
    harness.query_all_by_label("Cancel").next().unwrap().click();
    wait_for(
        &mut harness,
        Duration::from_secs(10),
        "the cancel's refusal",
        |h| logged(h, "answered HTTP 404: Not Found"),
    );

    // Every run is followed on its own stream (cut by the proxy and reopened) to its end, and
    // its card ends with the run's final count.
    wait_for(
        &mut harness,
        Duration::from_secs(40),
        "every run to complete with its final count and reach the feed",
        |h| {
            let model = h.state().board();
            model.workers().iter().all(|w| {
                w.status == RunStatus::Completed
                    && w.tokens_out == final_tokens
                    && model.feed.detail(&w.key).is_some()
            })
        },
    );
    let model = harness.state().board();
    assert!(model.workers().iter().all(|w| w.link.is_some()));
    assert_eq!(model.finished_count(RunStatus::Completed), 3);
    let adopted = model
        .workers()
        .iter()
        .find(|w| w.key.run_id == "seed-0001")
        .unwrap();
    assert_eq!(
        adopted.time_to_first_token(),
        None,
        "no times from this server: TTFT is not known"
    );
    assert!(
        model.workers().iter().any(|w| w.key.run_id == first),
        "the refused cancel left the card"
    );
    let streams = seed
        .requests()
        .iter()
        .filter(|request| request.path.ends_with("/stream"))
        .count();
    assert!(
        streams > 3,
        "the proxy's cuts made the console reopen streams ({streams} opened)"
    );

    expand_the_older_run(&mut harness);
}

/// EXPAND on the run from before we watched (payloads stored as JSON text): the whole chain.
fn expand_the_older_run(harness: &mut Harness<'static, Console>) {
    // EXPAND on the run from before we watched (payloads stored as JSON text): the whole chain.
    let rows = harness.query_all_by_label("Expand").count();
    assert_eq!(rows, 4, "three runs and the older one in the feed");
    harness.query_all_by_label("Expand").last().unwrap().click();
    wait_for(
        harness,
        Duration::from_secs(10),
        "the older run's chain",
        |h| h.query_by_label_contains("Chain of legacy-0001").is_some(),
    );
    // An earlier step of the chain, not the snippet the feed row shows.
    harness.get_by_label_contains("notes on lighthouses");
    harness.get_by_label("end: completed");
}

/// Not a check: serves the seed dialect on `RUNBOARD_SEED_PORT` (or a free port, printed) for a
/// minute, launching a run every 2 s, so the real window can be pointed at it and looked at:
/// `cargo test --test console serve_the_seed_dialect_for_a_look -- --ignored --nocapture`, then
/// `runboard --api URL --screenshot shot.png`.
#[test]
#[ignore = "a tool for looking at the console against this dialect, not a test"]
fn serve_the_seed_dialect_for_a_look() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let port: u16 = std::env::var("RUNBOARD_SEED_PORT")
            .ok()
            .and_then(|port| port.parse().ok())
            .unwrap_or(0);
        let seed = SeedServer::start_on(
            port,
            SeedConfig {
                worker_slots: 6,
                steps_per_agent: 40,
                ..SeedConfig::default()
            },
        )
        .await;
        println!("seed dialect server at {}", seed.url());
        let client = runboard_sse::http::client();
        for _ in 0..30 {
            let _ = client
                .post(format!("{}/api/runs", seed.url()))
                .header("content-type", "application/json")
                .body(r#"{"task": "write about a lighthouse"}"#)
                .send()
                .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}
