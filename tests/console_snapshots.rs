//! Image snapshots of the console from deterministic state (a synthetic model and a fixed
//! clock), rendered by wgpu on Mesa's software adapter, in dark and light: the cards, an
//! expanded chain, and the empty state. `UPDATE_SNAPSHOTS=1 cargo test --test
//! console_snapshots` writes new references into `tests/snapshots/`.

use egui_kittest::{Harness, SnapshotOptions, SnapshotResults};
use runboard::api::{NodeUpdate, RunDetail, RunEvent, RunStatus, RunSummary, StoredEvent};
use runboard::app::{UiState, console_ui};
use runboard::model::{Inbound, Model, RunKey, Settings};
use serde_json::json;

/// The fixed clock every snapshot is drawn at.
const NOW: f64 = 75.0;

struct Scene {
    model: Model,
    ui: UiState,
}

fn summary(run_id: &str, status: RunStatus, minute: u32) -> RunSummary {
    RunSummary {
        created_at: Some(format!("2026-11-21T05:{minute:02}:00Z")),
        ..RunSummary::new(
            run_id,
            "Write a short story about a lighthouse keeper",
            status,
        )
    }
}

const TEXT: &str = "the keeper climbed the stairs once more, counting the steps as his father had, \
                    and lit the lamp by hand when the storm took the power out over the bay";

fn progress(run_id: &str, agent: &str, tokens: u64) -> Inbound {
    Inbound::Event {
        server: 0,
        event: RunEvent::NodeUpdate(NodeUpdate {
            run_id: run_id.into(),
            agent: Some(agent.into()),
            iteration: Some(2),
            tokens_out: Some(tokens),
            snippet: Some(TEXT.into()),
            ts: None,
        }),
    }
}

fn finished_detail(run_id: &str) -> RunDetail {
    let event = |seq, name: &str, data| StoredEvent {
        seq,
        event: name.into(),
        data,
        ts: Some("2026-11-21T05:10:00Z".into()),
    };
    let mut done = summary(run_id, RunStatus::Completed, 1);
    done.tokens_out = 1240;
    RunDetail {
        summary: done,
        events: vec![
            event(
                1,
                "status",
                json!({"status": "running", "message": "started"}),
            ),
            event(
                2,
                "node_update",
                json!({"agent": "researcher", "iteration": 1, "tokens_out": 310, "snippet": "sources on nineteenth-century lighthouse keepers and their logs"}),
            ),
            event(
                3,
                "node_update",
                json!({"agent": "writer", "iteration": 1, "tokens_out": 880, "snippet": TEXT}),
            ),
            event(
                4,
                "node_update",
                json!({"agent": "critic", "iteration": 1, "tokens_out": 1240, "snippet": "tighten the ending; the storm arrives too late"}),
            ),
            event(5, "status", json!({"status": "completed"})),
            event(6, "stream_end", json!({"status": "completed"})),
        ],
    }
}

/// Six live workers at different paces, a finished run in the feed, and some narration.
fn busy_scene() -> Scene {
    let mut model = Model::new(&["http://127.0.0.1:9010".into()], Settings::default());
    let agents = [
        "writer",
        "researcher",
        "critic",
        "writer",
        "supervisor",
        "writer",
    ];
    let ids: Vec<String> = (0..agents.len())
        .map(|n| format!("run-{:012x}", 0x00a1_b2c3_d400 + n))
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let created = RunEvent::RunCreated(summary(
            id,
            RunStatus::Queued,
            10 + u32::try_from(n).unwrap(),
        ));
        model.apply(
            Inbound::Event {
                server: 0,
                event: created,
            },
            0.0,
        );
    }
    // Every worker advances together, each at its own pace with a slow swell and a stall.
    let mut tokens = vec![0.0f64; ids.len()];
    for step in 0..=240u32 {
        let t = f64::from(step) * 0.25;
        for (n, id) in ids.iter().enumerate() {
            let worker = f64::from(u32::try_from(n).unwrap());
            let base = 20.0 + 12.0 * worker;
            let swell = 1.0 + 0.35 * (t / 6.0 + worker).sin();
            let stalled = (30.0..34.0).contains(&t) && n % 3 == 0;
            if !stalled {
                tokens[n] += base * swell * 0.25;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let count = tokens[n] as u64;
            model.apply(progress(id, agents[n], count), t + 10.0);
        }
    }
    let done = finished_detail("run-0000f1n15h3d");
    model.apply(
        Inbound::Runs {
            server: 0,
            runs: vec![done.summary.clone()],
        },
        NOW,
    );
    model.apply(
        Inbound::Detail {
            server: 0,
            detail: done,
        },
        NOW,
    );
    let ui = UiState {
        log_open: true,
        ..UiState::default()
    };
    Scene { model, ui }
}

fn snapshot(scene: &Scene, name: &str) {
    // Both themes are checked (and updated) together, then any mismatch fails the test.
    let mut results = SnapshotResults::new();
    for theme in [egui::Theme::Dark, egui::Theme::Light] {
        let mut harness = Harness::builder()
            .with_size([1400.0, 860.0])
            .with_theme(theme)
            .wgpu()
            .build_ui_state(
                |ui, scene: &mut Scene| {
                    console_ui(ui, &mut scene.model, &mut scene.ui, NOW);
                },
                Scene {
                    model: scene.model.clone(),
                    ui: scene.ui.clone(),
                },
            );
        harness.run_steps(4);
        let suffix = match theme {
            egui::Theme::Dark => "dark",
            egui::Theme::Light => "light",
        };
        // Software rasterisers differ in anti-aliasing by a hair; a few pixels may differ.
        harness.snapshot_options(
            format!("{name}_{suffix}"),
            &SnapshotOptions::new().max_failed_pixels(40),
        );
        results.extend_harness(&mut harness);
    }
    if let Err(failed) = results.into_result() {
        panic!("{failed:?}");
    }
}

#[test]
fn cards_feed_and_log() {
    snapshot(&busy_scene(), "cards");
}

#[test]
fn an_expanded_chain() {
    let mut scene = busy_scene();
    scene.ui.expanded.insert(RunKey::new(0, "run-0000f1n15h3d"));
    snapshot(&scene, "chain");
}

#[test]
fn the_empty_state() {
    let model = Model::new(&["http://127.0.0.1:9010".into()], Settings::default());
    snapshot(
        &Scene {
            model,
            ui: UiState::default(),
        },
        "empty",
    );
}
