//! Image snapshots of the console from deterministic state (a synthetic model and a fixed
//! clock), rendered by wgpu on Mesa's software adapter, in dark and light: the cards (live and
//! finished), an expanded chain, the empty state and the other views. `UPDATE_SNAPSHOTS=1 cargo test --test
//! console_snapshots` writes new references into `tests/snapshots/`.

use egui_kittest::kittest::Queryable as _;
use egui_kittest::{Harness, SnapshotOptions, SnapshotResults};
use runboard_api::{
    ActiveRequest, ActiveRequests, BenchmarkEvent, BenchmarkProgress, BenchmarkStatus, DataEvent,
    Engine, FigurePoint, Figures, ModelFigures, NodeUpdate, RequestPhase, RunDetail, RunEvent,
    RunStatus, RunSummary, ScrapeState, Slot, StoredEvent, TaskComplete, Upstream, Upstreams,
};
use runboard_console::board::{Board, Inbound, RequestsFeed, RunKey, Settings};
use runboard_console::ui::{UiState, View, console_ui};
use runboard_sse::ConnectionState;
use serde_json::json;

/// The fixed clock every snapshot is drawn at.
const NOW: f64 = 75.0;

struct Scene {
    board: Board,
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

/// The server's clock `secs` after 05:20:00, as it writes times.
fn server_time(secs: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let millis = (secs * 1000.0).round() as u64;
    let (minutes, millis) = (millis / 60_000, millis % 60_000);
    format!(
        "2026-11-21T05:{:02}:{:02}.{:03}Z",
        20 + minutes,
        millis / 1000,
        millis % 1000
    )
}

fn progress(run_id: &str, agent: &str, tokens: u64, secs: f64) -> Inbound {
    Inbound::Event {
        server: 0,
        event: RunEvent::NodeUpdate(NodeUpdate {
            run_id: run_id.into(),
            agent: Some(agent.into()),
            iteration: Some(2),
            tokens_out: Some(tokens),
            snippet: Some(TEXT.into()),
            ts: Some(server_time(secs)),
            ..NodeUpdate::default()
        }),
    }
}

/// A `node_update` from a run on a real model: reasoning kept apart, a count not yet confirmed.
fn real_progress(run_id: &str, tokens: u64, secs: f64, reasoning: &str, answer: &str) -> Inbound {
    Inbound::Event {
        server: 0,
        event: RunEvent::NodeUpdate(NodeUpdate {
            run_id: run_id.into(),
            agent: Some("supervisor".into()),
            iteration: Some(1),
            tokens_out: Some(tokens),
            snippet: Some(answer.into()),
            ts: Some(server_time(secs)),
            reasoning: Some(reasoning.into()),
            estimated: Some(true),
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
            event(
                5,
                "data",
                json!({"action": "tool_call", "payload": {"agent": "critic", "iteration": 1,
                       "name": "search_logs", "arguments": "{\"year\": 1887, \"bay\": \"north\"}"}}),
            ),
            event(
                6,
                "data",
                json!({"action": "step", "payload": {"agent": "critic", "iteration": 1,
                       "output_tokens": 360, "estimated": false, "ttft_ms": 412.0,
                       "ttfat_ms": 1630.0, "itl_p50_ms": 21.4, "tok_per_sec": 46.2,
                       "tries": 2, "finish_reason": "stop"}}),
            ),
            event(
                7,
                "narration",
                json!({"level": "warn", "formatted": "critic: upstream gpu1 answered HTTP 429: Rate limit reached; try 2 of 3 in 1.0 s"}),
            ),
            event(
                8,
                "node_update",
                json!({"agent": "finish", "iteration": 1, "tokens_out": 1240, "snippet": "The keeper lit the lamp by hand.",
                       "reasoning": "keep it to one line"}),
            ),
            event(9, "status", json!({"status": "completed"})),
            event(10, "stream_end", json!({"status": "completed"})),
        ],
    }
}

/// A run created (at `minute` past five) and started at 05:20:00 on the server's clock.
fn start_run(board: &mut Board, id: &str, minute: u32) {
    let created = RunEvent::RunCreated(summary(id, RunStatus::Queued, minute));
    board.apply(
        Inbound::Event {
            server: 0,
            event: created,
        },
        0.0,
    );
    let mut started = RunEvent::status(RunStatus::Running, Some("started"));
    if let RunEvent::Status(change) = &mut started {
        id.clone_into(&mut change.run_id);
        change.ts = Some(server_time(0.0));
    }
    board.apply(
        Inbound::Event {
            server: 0,
            event: started,
        },
        10.0,
    );
}

/// Six live workers at different paces, a finished run in the feed, and some narration.
/// A step the model server cut short without a finish reason: a badge on the run's card.
fn mark_interrupted(board: &mut Board, run_id: &str) {
    board.apply(
        Inbound::Event {
            server: 0,
            event: RunEvent::Narration(runboard_api::Narration {
                run_id: run_id.to_owned(),
                formatted: "writer (iteration 2) was interrupted: upstream gpu1 ended the \
                            answer without a finish reason after 212 tokens"
                    .into(),
                level: Some("warn".into()),
                action: Some(runboard_api::STEP_INTERRUPTED_ACTION.into()),
            }),
        },
        NOW - 2.0,
    );
}

fn busy_scene() -> Scene {
    let mut board = Board::new(&["http://127.0.0.1:9010".into()], Settings::default());
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
        start_run(&mut board, id, 10 + u32::try_from(n).unwrap());
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
            // Each run's first tokens come after its own wait on the server (0.2 s to 1.3 s).
            let server_secs = t + 0.2 + 0.22 * worker;
            let update = if n == 1 {
                real_progress(
                    id,
                    count,
                    server_secs,
                    "The user wants a short story. I should plan the scenes first: the keeper, \
                     the storm, the lamp that fails, and who comes to help",
                    if t > 50.0 {
                        "Plan: 1. the keeper's routine; 2. the storm"
                    } else {
                        ""
                    },
                )
            } else {
                progress(id, agents[n], count, server_secs)
            };
            board.apply(update, t + 10.0);
        }
    }
    // Narration: lines of several runs and levels, and a table that spans rows.
    let lines = [
        (0, "info", "writer takes over (iteration 2)"),
        (2, "warn", "critic: the draft repeats its opening image"),
        (
            4,
            "info",
            "id    │ agent      │ tok/s\n──────┼────────────┼──────\nd404  │ supervisor │ 90.6",
        ),
        (
            1,
            "error",
            "researcher: the search tool timed out; retrying",
        ),
        (5, "info", "writer takes over (iteration 2)"),
    ];
    for (n, level, text) in lines {
        board.apply(
            Inbound::Event {
                server: 0,
                event: RunEvent::Narration(runboard_api::Narration {
                    run_id: ids[n].clone(),
                    formatted: text.into(),
                    level: Some(level.into()),
                    action: None,
                }),
            },
            NOW - 3.0,
        );
    }
    mark_interrupted(&mut board, &ids[3]);
    let done = finished_detail("run-0000f1n15h3d");
    board.apply(
        Inbound::Runs {
            server: 0,
            runs: vec![done.summary.clone()],
        },
        NOW,
    );
    board.apply(
        Inbound::Detail {
            server: 0,
            detail: done,
        },
        NOW,
    );
    let mut ui = UiState {
        log_open: true,
        ..UiState::default()
    };
    // The run picked from the log is outlined.
    ui.selected = Some(RunKey::new(0, ids[2].clone()));
    Scene { board, ui }
}

fn snapshot(scene: &Scene, name: &str) {
    snapshot_with(scene, name, |_| {});
}

/// A snapshot with the fonts the context is given first (the console's own fallbacks, or the
/// system's as eframe installs them natively).
fn snapshot_with(scene: &Scene, name: &str, fonts: impl Fn(&egui::Context) + Copy + 'static) {
    // Both themes are checked (and updated) together, then any mismatch fails the test.
    let mut results = SnapshotResults::new();
    for theme in [egui::Theme::Dark, egui::Theme::Light] {
        let mut harness = Harness::builder()
            .with_size([1400.0, 860.0])
            .with_theme(theme)
            .with_context_setup(fonts)
            .wgpu()
            .build_ui_state(
                |ui, scene: &mut Scene| {
                    console_ui(ui, &scene.board, &mut scene.ui, NOW);
                },
                Scene {
                    board: scene.board.clone(),
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

/// The events of one proxied call of `worker` from `start` to `end` on the server's clock,
/// each with the time it is made (the console sees it then): created, running, its tokens
/// every quarter second after its first, and its end.
fn proxied_call(worker: &str, call: &str, start: f64, end: f64, pace: f64) -> Vec<(f64, RunEvent)> {
    let mut events = Vec::new();
    let summary = RunSummary {
        created_at: Some(server_time(start)),
        worker: Some(worker.into()),
        ..RunSummary::new(
            call,
            "Label this support ticket by topic",
            RunStatus::Queued,
        )
    };
    events.push((start, RunEvent::RunCreated(summary)));
    let mut started = RunEvent::status(RunStatus::Running, Some("started"));
    if let RunEvent::Status(change) = &mut started {
        call.clone_into(&mut change.run_id);
        change.ts = Some(server_time(start));
    }
    events.push((start, started));
    let first = start + 0.3;
    let mut t = first;
    while t <= end.min(NOW) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let tokens = ((t - first) * pace) as u64 + 1;
        let update = NodeUpdate {
            run_id: call.into(),
            agent: Some("labeler".into()),
            iteration: Some(1),
            tokens_out: Some(tokens),
            snippet: Some(TEXT.into()),
            ts: Some(server_time(t)),
            ..NodeUpdate::default()
        };
        events.push((t, RunEvent::NodeUpdate(update)));
        t += 0.25;
    }
    if end <= NOW {
        let mut done = RunEvent::status(RunStatus::Completed, None);
        if let RunEvent::Status(change) = &mut done {
            call.clone_into(&mut change.run_id);
            change.ts = Some(server_time(end));
        }
        events.push((end, done));
    }
    events
}

/// A proxied fleet: five named workers making one call after another (one with two calls in
/// flight, one idle for the last 20 s), and one client that named nothing, shown by its
/// address and `User-Agent`.
fn fleet_scene() -> Scene {
    let mut board = Board::new(&["http://127.0.0.1:9010".into()], Settings::default());
    let workers = [
        ("gen-01", 2.1, 48.0),
        ("gen-02", 1.8, 61.0),
        ("gen-03", 2.6, 39.0),
        ("gen-04", 1.9, 55.0),
        ("10.0.0.7 OpenAI/Python 1.54.0", 2.3, 44.0),
    ];
    let mut calls: Vec<(f64, String, String, f64, f64)> = Vec::new();
    for (n, (worker, length, pace)) in workers.iter().enumerate() {
        let stop = if n == 3 { NOW - 20.0 } else { NOW + 10.0 };
        let mut t = 1.0 + 0.4 * f64::from(u32::try_from(n).unwrap());
        let mut number = 0;
        while t < stop.min(NOW) {
            number += 1;
            let end = t + length;
            calls.push((
                t,
                (*worker).to_owned(),
                format!("run-{n:02}{number:04}"),
                end,
                *pace,
            ));
            t = end + 0.35;
        }
    }
    // The pool worker keeps a second call going beside its first.
    calls.push((
        NOW - 6.0,
        "gen-02".into(),
        "run-99side".into(),
        NOW + 5.0,
        30.0,
    ));
    // Every call's events, in the order the server made them.
    let mut events: Vec<(f64, RunEvent)> = calls
        .iter()
        .flat_map(|(start, worker, call, end, pace)| {
            proxied_call(worker, call, *start, *end, *pace)
        })
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (at, event) in events {
        board.apply(Inbound::Event { server: 0, event }, at);
    }
    // The server measures goodput against its objective (`serve --slo`).
    let fleet: runboard_api::FleetFigures = serde_json::from_value(json!({
        "calls_per_sec": 2.4, "failures_per_min": 0.0,
        "goodput": {"slo": {"ttft_ms": 500.0, "itl_ms": 50.0}, "calls": 144, "met": 131,
                    "models": [{"model": "qwen3-8b", "calls": 144, "met": 131}]}
    }))
    .unwrap();
    board.apply(Inbound::Fleet { server: 0, fleet }, NOW);
    board.apply(Inbound::Tick, NOW);
    Scene {
        board,
        ui: UiState::default(),
    }
}

#[test]
fn a_proxied_fleet_as_its_workers() {
    snapshot(&fleet_scene(), "fleet");
}

#[test]
fn a_click_on_a_workers_count_or_name_shows_its_calls_in_the_feed() {
    let mut harness = Harness::builder()
        .with_size([1400.0, 860.0])
        .build_ui_state(
            |ui, scene: &mut Scene| {
                console_ui(ui, &scene.board, &mut scene.ui, NOW);
            },
            fleet_scene(),
        );
    harness.run_steps(2);
    harness.get_by_label("30 done").click();
    harness.run_steps(2);
    assert_eq!(harness.state().ui.filter_worker.as_deref(), Some("gen-01"));
    harness.get_by_label("Calls of worker gen-01");
    // The card's name does the same (the feed shows only gen-01's calls now, so gen-03's name
    // is on its card alone).
    harness.get_by_label("gen-03").click();
    harness.run_steps(2);
    assert_eq!(harness.state().ui.filter_worker.as_deref(), Some("gen-03"));
    harness.get_by_label("All workers").click();
    harness.run_steps(2);
    assert_eq!(harness.state().ui.filter_worker, None);
}

#[test]
fn cards_feed_and_log() {
    snapshot(&busy_scene(), "cards");
}

/// Two runs finished a few seconds ago: their sparklines end where generation ended, with no
/// drop to zero (nor a filled wedge) at the right edge.
#[test]
fn finished_runs_keep_their_sparklines_as_they_ended() {
    let mut scene = busy_scene();
    for (n, status) in [(0u64, RunStatus::Completed), (3, RunStatus::Failed)] {
        let id = format!("run-{:012x}", 0x00a1_b2c3_d400 + n);
        for event in [RunEvent::status(status, None), RunEvent::stream_end(status)] {
            let event = event.with_run_id(&id);
            scene
                .board
                .apply(Inbound::Event { server: 0, event }, NOW - 4.0);
        }
    }
    snapshot(&scene, "finished");
}

/// Whether fontconfig knows a font for `lang` (the script tests need one installed).
fn has_font_for(lang: &str) -> bool {
    std::process::Command::new("fc-list")
        .arg(format!(":lang={lang}"))
        .output()
        .is_ok_and(|out| out.status.success() && !out.stdout.is_empty())
}

/// Model text in other scripts on a card, in the feed and in the log: CJK and Korean from the
/// system's fonts (as eframe finds them natively), emoji from the system or the console's
/// bundled emoji font. Needs a CJK font (Debian: fonts-noto-cjk; `scripts/test.sh` installs it).
#[test]
fn cards_show_cjk_and_emoji_from_the_fonts_installed() {
    if !has_font_for("zh") || !has_font_for("ko") {
        eprintln!("note: no CJK font installed (apt-get install fonts-noto-cjk); skipped");
        assert!(
            std::env::var_os("RUNBOARD_REQUIRE_FONTS").is_none(),
            "RUNBOARD_REQUIRE_FONTS is set but no CJK font is installed"
        );
        return;
    }
    let mut scene = busy_scene();
    let text = "灯台守は嵐の夜に灯をともした 😊 등대지기는 폭풍 속에서 🚀 灯塔看守人点亮了灯 ✨";
    let id = format!("run-{:012x}", 0x00a1_b2c3_d400_u64);
    scene.board.apply(
        Inbound::Event {
            server: 0,
            event: RunEvent::NodeUpdate(NodeUpdate {
                run_id: id.clone(),
                snippet: Some(text.into()),
                ..NodeUpdate::default()
            }),
        },
        NOW - 1.0,
    );
    scene.board.apply(
        Inbound::Event {
            server: 0,
            event: RunEvent::Narration(runboard_api::Narration {
                run_id: id,
                formatted: format!("writer: {text}"),
                level: Some("info".into()),
                action: None,
            }),
        },
        NOW - 1.0,
    );
    snapshot_with(&scene, "scripts", |ctx| {
        ctx.add_font_provider(std::sync::Arc::new(
            egui_system_font_provider::SystemFontProvider::new().with_locale(Some("en")),
        ));
        runboard_console::ui::install_fonts(ctx);
    });
}

/// Where no system font has emoji (the browser, a bare workstation), the console's bundled font
/// draws them: the harness refuses to draw a character no font has, and these draw. Without
/// `install_fonts` the same label fails with "No glyph for 😊".
#[test]
fn emoji_draw_without_any_system_font() {
    let mut harness = Harness::builder()
        .with_size([400.0, 60.0])
        .with_context_setup(runboard_console::ui::install_fonts)
        .build_ui(|ui| {
            ui.label("the keeper 😊 🚀 ❤ 👍 done");
            ui.label(egui::RichText::new("log 😊 🚀").monospace());
        });
    harness.run_steps(2);
    harness.get_by_label("the keeper 😊 🚀 ❤ 👍 done");
}

#[test]
fn an_expanded_chain() {
    let mut scene = busy_scene();
    scene.ui.expanded.insert(RunKey::new(0, "run-0000f1n15h3d"));
    snapshot(&scene, "chain");
}

#[test]
fn the_empty_state() {
    let board = Board::new(&["http://127.0.0.1:9010".into()], Settings::default());
    snapshot(
        &Scene {
            board,
            ui: UiState::default(),
        },
        "empty",
    );
}

#[test]
fn the_models_view() {
    let mut scene = busy_scene();
    let payload = json!({"models": [
        {"id": "synth-1b-instruct-q8", "name": "Synth 1B Instruct (Q8)", "size_bytes": 1_395_864_371u64, "context_length": 8192, "tok_per_sec": 95.0},
        {"id": "synth-8b-instruct-q4", "name": "Synth 8B Instruct (Q4_K_M)", "size_bytes": 5_261_334_937u64, "context_length": 32768, "tok_per_sec": 55.0},
        {"id": "synth-32b-reasoner-q4", "name": "Synth 32B Reasoner (Q4_K_M)", "size_bytes": 21_260_088_115u64, "context_length": 131_072, "tok_per_sec": 24.0},
        {"id": "mystery", "name": null}
    ]});
    scene.board.apply(
        Inbound::Event {
            server: 0,
            event: RunEvent::Data(DataEvent {
                run_id: "job-1".into(),
                action: "model_list".into(),
                payload,
            }),
        },
        NOW,
    );
    scene.ui.view = View::Models;
    snapshot(&scene, "models");
}

/// The busy scene with a model list from three upstreams, one unreachable.
fn real_models_scene() -> Scene {
    let mut scene = busy_scene();
    let payload = json!({
        "models": [
            {"id": "Qwen/Qwen2.5-7B-Instruct", "name": "Qwen/Qwen2.5-7B-Instruct", "context_length": 32768, "upstream": "gpu1", "owned_by": "vllm"},
            {"id": "meta-llama/Llama-3.1-8B-Instruct", "name": "meta-llama/Llama-3.1-8B-Instruct", "context_length": 131_072, "upstream": "gpu1", "owned_by": "vllm"},
            {"id": "tiny", "name": "tiny", "context_length": 4096, "size_bytes": 171_917_440u64, "upstream": "laptop", "owned_by": "llamacpp"}
        ],
        "upstreams": [
            {"name": "gpu1", "url": "http://gpu1:8000/v1", "reachable": true, "models": 2},
            {"name": "laptop", "url": "http://127.0.0.1:8080/v1", "reachable": true, "models": 1},
            {"name": "gpu2", "url": "http://gpu2:8000/v1", "reachable": false, "models": 0,
             "error": "could not reach it: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)"}
        ]
    });
    scene.board.apply(
        Inbound::Event {
            server: 0,
            event: RunEvent::Data(DataEvent {
                run_id: "job-2".into(),
                action: "model_list".into(),
                payload,
            }),
        },
        NOW,
    );
    scene
}

#[test]
fn the_models_view_of_real_upstreams() {
    let mut scene = real_models_scene();
    scene.ui.view = View::Models;
    snapshot(&scene, "models_upstreams");
}

#[test]
fn the_launch_form_with_a_model_picked() {
    let mut scene = real_models_scene();
    scene.ui.launch_open = true;
    scene.ui.launch.model = "meta-llama/Llama-3.1-8B-Instruct".into();
    snapshot(&scene, "launch_model");
}

fn bench_status(phase: &str, running: bool) -> Inbound {
    Inbound::Benchmark {
        server: 0,
        event: BenchmarkEvent::Status(BenchmarkStatus {
            kind: "benchmark_status".into(),
            connected: true,
            phase: phase.into(),
            running,
            source: Some("api".into()),
            name: Some("nightly-eval".into()),
            benchmark: Some(3),
            log: None,
        }),
    }
}

#[test]
fn the_benchmark_view_mid_run_with_an_error() {
    let mut scene = busy_scene();
    let board = &mut scene.board;
    board.apply(
        Inbound::BenchmarkLink {
            server: 0,
            state: ConnectionState::Open,
        },
        NOW - 30.0,
    );
    board.apply(bench_status("running", true), NOW - 30.0);
    let kinds = [
        "summarize",
        "translate",
        "extract",
        "classify",
        "reason",
        "code",
        "plan",
    ];
    for (n, kind) in kinds.iter().enumerate() {
        let step = f64::from(u32::try_from(n).unwrap());
        let success = n % 4 != 2;
        let score = if success { 0.6 + 0.05 * step } else { 0.0 };
        board.apply(
            Inbound::Benchmark {
                server: 0,
                event: BenchmarkEvent::TaskComplete(TaskComplete {
                    task_id: format!("task_{:03}_{kind}", n + 1),
                    success,
                    score,
                    duration_secs: Some(20.0 + 3.0 * step),
                    run_id: None,
                }),
            },
            NOW - 20.0,
        );
    }
    board.apply(
        Inbound::Benchmark {
            server: 0,
            event: BenchmarkEvent::Error(runboard_api::BenchmarkError {
                message: "task_003_extract: the worker lost its GPU and was restarted".into(),
            }),
        },
        NOW - 10.0,
    );
    board.apply(
        Inbound::Benchmark {
            server: 0,
            event: BenchmarkEvent::Progress(BenchmarkProgress {
                tasks_completed: 7,
                total_tasks: 20,
                current_task: Some("task_008_critique".into()),
                current_step: Some(42),
            }),
        },
        NOW - 5.0,
    );
    scene.ui.view = View::Benchmark;
    snapshot(&scene, "benchmark");
}

fn request(
    id: &str,
    model: &str,
    resolved: &str,
    started: &str,
    input: u64,
    output: u64,
) -> ActiveRequest {
    ActiveRequest {
        request_id: id.into(),
        model: model.into(),
        resolved_model: Some(resolved.into()),
        streaming: !id.ends_with('7'),
        input_tokens: input,
        output_tokens: output,
        started_at: started.into(),
        run_id: Some("run-00a1b2c3d400".into()),
        agent: Some("writer".into()),
        // Proxied calls name their worker; the others show their run's card.
        worker: id.ends_with('1').then(|| "gen-07".into()),
        ..ActiveRequest::default()
    }
}

#[test]
fn the_requests_view_sorted_by_duration() {
    let mut scene = busy_scene();
    scene.board.apply(
        Inbound::RequestsLink {
            server: 0,
            state: ConnectionState::Open,
        },
        NOW - 60.0,
    );
    let snapshot_body = ActiveRequests {
        disabled: false,
        active_requests: vec![
            request(
                "req-00000011",
                "synth-small",
                "synth-8b-instruct-q4",
                "2026-11-21T05:10:02Z",
                812,
                340,
            ),
            request(
                "req-00000014",
                "synth-coder",
                "synth-14b-coder-q5",
                "2026-11-21T05:10:09Z",
                1_530,
                96,
            ),
            request(
                "req-00000015",
                "synth-mini",
                "synth-1b-instruct-q8",
                "2026-11-21T05:10:11.500Z",
                240,
                12,
            ),
            request(
                "req-00000017",
                "synth-large",
                "synth-32b-reasoner-q4",
                "2026-11-21T05:09:31Z",
                12_480,
                2_210,
            ),
            request(
                "req-00000018",
                "synth-small",
                "synth-8b-instruct-q4",
                "2026-11-21T05:10:12Z",
                655,
                0,
            ),
        ],
        timestamp: "2026-11-21T05:10:12.250Z".into(),
        message: None,
    };
    let mut snapshot_body = snapshot_body;
    let live = [
        (Some(RequestPhase::Decoding), Some(380.0), Some(44.7), 1),
        (Some(RequestPhase::Queued), None, None, 1),
        (Some(RequestPhase::WaitingForFirstToken), None, None, 1),
        (Some(RequestPhase::Decoding), Some(2950.0), Some(18.9), 2),
        (None, None, None, 1),
    ];
    for (request, (phase, ttft, rate, attempt)) in
        snapshot_body.active_requests.iter_mut().zip(live)
    {
        request.phase = phase;
        request.ttft_ms = ttft;
        request.tok_per_sec = rate;
        request.attempt = phase.map(|_| attempt);
        request.upstream = phase.map(|_| "gpu1".to_owned());
    }
    // Four minutes of history before it: the plot above the table steps with the load.
    for step in 0..40u32 {
        let count =
            [1, 2, 2, 3, 4, 4, 3, 5, 5, 4, 2, 1, 0, 0, 1, 3, 5, 5, 4, 4][step as usize % 20];
        let mut earlier = snapshot_body.clone();
        earlier.active_requests.truncate(count);
        scene.board.apply(
            Inbound::Requests {
                server: 0,
                snapshot: earlier,
                feed: RequestsFeed::Streaming,
            },
            NOW - 242.0 + 6.0 * f64::from(step),
        );
    }
    scene.board.apply(
        Inbound::Requests {
            server: 0,
            snapshot: snapshot_body,
            feed: RequestsFeed::Streaming,
        },
        NOW - 1.5,
    );
    scene.ui.view = View::Requests;
    snapshot(&scene, "requests");
}

/// What a vLLM server's figures might read `t` seconds into a five-minute swell.
fn vllm_figures(t: f64, scale: f64) -> Figures {
    Figures {
        running: Some((scale * (6.0 + 4.0 * (t / 40.0).sin())).round()),
        waiting: Some((scale * 3.0 * (t / 25.0).sin()).max(0.0).round()),
        kv_cache: Some(0.45 + 0.3 * (t / 55.0).sin()),
        generation_tok_per_sec: Some(scale * (1800.0 + 500.0 * (t / 30.0).sin())),
        prompt_tok_per_sec: Some(scale * 700.0),
        preemptions: Some(3.0),
        preemptions_per_sec: Some(0.0),
        ttft_p50: Some(0.12 + 0.05 * (t / 20.0).sin()),
        ttft_p95: Some(0.48 + 0.2 * (t / 20.0).sin()),
        itl_p50: Some(0.018),
        itl_p95: Some(0.075),
    }
}

fn upstreams_snapshot() -> Upstreams {
    let read_at = 1_796_083_500.0;
    let history: Vec<FigurePoint> = (0..=150u32)
        .map(|n| {
            let t = f64::from(n) * 2.0;
            FigurePoint {
                at: read_at - 300.0 + t,
                figures: vllm_figures(t, 1.0),
            }
        })
        .collect();
    let vllm = Upstream {
        state: ScrapeState::Ok,
        engine: Some(Engine::Vllm),
        scraped_at: Some("2026-12-01T00:05:00Z".into()),
        figures: vllm_figures(300.0, 1.0),
        models: vec![
            ModelFigures {
                model: "meta-llama/Llama-3.1-8B-Instruct".into(),
                figures: vllm_figures(300.0, 0.6),
            },
            ModelFigures {
                model: "Qwen/Qwen2.5-7B-Instruct".into(),
                figures: vllm_figures(300.0, 0.4),
            },
        ],
        history,
        ..Upstream::pending("http://gpu1:8000/v1")
    };
    let llama = Upstream {
        state: ScrapeState::Ok,
        engine: Some(Engine::Llamacpp),
        scraped_at: Some("2026-12-01T00:05:00Z".into()),
        figures: Figures {
            running: Some(1.0),
            waiting: Some(0.0),
            generation_tok_per_sec: Some(61.8),
            ..Figures::default()
        },
        slots: Some(vec![
            Slot {
                id: 0,
                processing: true,
                decoded: Some(140),
                n_predict: Some(256),
            },
            Slot {
                id: 1,
                processing: false,
                decoded: None,
                n_predict: None,
            },
        ]),
        ..Upstream::pending("http://gpu2:8080")
    };
    let plain = Upstream {
        state: ScrapeState::NoMetrics,
        ..Upstream::pending("http://gpu3:8000")
    };
    let down = Upstream {
        state: ScrapeState::Error,
        error: Some(
            "could not reach http://gpu4:8000/metrics: tcp connect error: Connection refused"
                .into(),
        ),
        ..Upstream::pending("http://gpu4:8000")
    };
    Upstreams {
        upstreams: vec![vllm, llama, plain, down],
    }
}

#[test]
fn the_upstreams_view_with_five_minutes_of_history() {
    let mut scene = busy_scene();
    scene.board.apply(
        Inbound::Upstreams {
            server: 0,
            snapshot: upstreams_snapshot(),
        },
        NOW,
    );
    scene.ui.view = View::Upstreams;
    snapshot(&scene, "upstreams");
}
