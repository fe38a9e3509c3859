//! The console's CPU cost, headless: one frame (egui layout + tessellation) with 18, 64 and 256
//! live cards beside a 10 000-run feed, while every card gets a `node_update` between frames;
//! and how many `node_update` events per second the inbox and the model absorb.
//!
//! `cargo bench --bench console`. No window, no GPU: this is the CPU work a frame costs before
//! the renderer.

use std::hint::black_box;
use std::time::{Duration, Instant};

use runboard_api::{NodeUpdate, RunEvent, RunStatus, RunSummary};
use runboard_console::board::{Board, Inbound, Settings};
use runboard_console::ui::{Inbox, UiState, console_ui};

const WARMUP_FRAMES: usize = 30;
const FRAMES: usize = 200;
const FEED_RUNS: usize = 10_000;

fn summary(run_id: String, status: RunStatus, n: usize) -> RunSummary {
    RunSummary {
        run_id,
        task: "Write a short story about a lighthouse keeper".into(),
        status,
        created_at: Some(format!("2026-11-21T05:{:02}:{:02}.{:06}Z", n / 3600 % 60, n / 60 % 60, n)),
        started_at: None,
        finished_at: None,
        tokens_out: (n as u64 * 37) % 4000,
        agent: Some("writer".into()),
        iteration: Some(2),
        snippet: Some("the keeper climbed the stairs once more, counting the steps as his father had, and the lamp".into()),
        worker: None,
    }
}

fn progress(run_id: &str, tokens: u64, frame: usize) -> Inbound {
    let agents = ["supervisor", "researcher", "writer", "critic"];
    Inbound::Event {
        server: 0,
        event: RunEvent::NodeUpdate(NodeUpdate {
            run_id: run_id.to_owned(),
            agent: Some(agents[frame / 40 % 4].to_owned()),
            iteration: Some(1 + u32::try_from(frame / 160).unwrap_or(0)),
            tokens_out: Some(tokens),
            snippet: Some(format!(
                "…and at {tokens} tokens the story turned to the storm, the keeper lit the lamp by hand, \
                 and the ships in the bay saw the beam sweep once, twice, and hold steady through the night"
            )),
            ts: None,
            ..NodeUpdate::default()
        }),
    }
}

/// A model with `workers` live cards (each with a full 60 s sparkline) and a 10 000-run feed.
fn model_with(workers: usize) -> (Board, Vec<String>) {
    let mut model = Board::new(&["http://127.0.0.1:9010".into()], Settings::default());
    let feed: Vec<RunSummary> = (0..FEED_RUNS)
        .map(|n| summary(format!("run-feed{n:06}"), RunStatus::Completed, n))
        .collect();
    model.apply(
        Inbound::Runs {
            server: 0,
            runs: feed,
        },
        0.0,
    );
    let ids: Vec<String> = (0..workers).map(|n| format!("run-live{n:04}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let created = RunEvent::RunCreated(summary(id.clone(), RunStatus::Running, n));
        model.apply(
            Inbound::Event {
                server: 0,
                event: created,
            },
            0.0,
        );
    }
    for frame in 0..240 {
        #[allow(clippy::cast_precision_loss)]
        let now = frame as f64 * 0.25;
        for id in &ids {
            model.apply(progress(id, frame as u64 * 12, frame), now);
        }
    }
    (model, ids)
}

fn frame_times(workers: usize) -> Vec<Duration> {
    let ctx = egui::Context::default();
    let (mut model, ids) = model_with(workers);
    let mut state = UiState {
        log_open: true,
        ..UiState::default()
    };
    let mut times = Vec::with_capacity(FRAMES);
    for frame in 0..WARMUP_FRAMES + FRAMES {
        #[allow(clippy::cast_precision_loss)]
        let now = 60.0 + frame as f64 * 0.25;
        for id in &ids {
            model.apply(progress(id, 2880 + frame as u64 * 12, 240 + frame), now);
        }
        let input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(1600.0, 1000.0),
            )),
            ..egui::RawInput::default()
        };
        let start = Instant::now();
        let output = ctx.run_ui(input, |ui| {
            black_box(console_ui(ui, &model, &mut state, now));
        });
        black_box(ctx.tessellate(output.shapes, output.pixels_per_point));
        if frame >= WARMUP_FRAMES {
            times.push(start.elapsed());
        }
    }
    times.sort();
    times
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `node_update` events through the real inbox (a producer task on tokio) into `Board::apply`.
fn absorb_rate(events: usize) -> f64 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let ctx = egui::Context::default();
    let (mut inbox, outbox) = Inbox::new(&ctx);
    let (mut model, ids) = model_with(64);
    let messages: Vec<Inbound> = (0..events)
        .map(|n| progress(&ids[n % ids.len()], 3000 + n as u64, n))
        .collect();
    let start = Instant::now();
    runtime.spawn(async move {
        for message in messages {
            if !outbox.send(message).await {
                return;
            }
        }
    });
    let mut applied = 0;
    let mut now = 100.0;
    while applied < events {
        match inbox.try_next() {
            Some(message) => {
                model.apply(message, now);
                applied += 1;
                now += 0.000_01;
            }
            None => std::thread::yield_now(),
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = events as f64 / start.elapsed().as_secs_f64();
    black_box(&model);
    rate
}

fn main() {
    println!(
        "console frame cost, headless 1600×1000, {FEED_RUNS}-run feed, log open, {FRAMES} frames each:"
    );
    for workers in [18, 64, 256] {
        let times = frame_times(workers);
        println!(
            "  {workers:>3} live cards: median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
            ms(times[times.len() / 2]),
            ms(times[times.len() * 9 / 10]),
            ms(*times.last().unwrap())
        );
    }
    let events = 500_000;
    let rates: Vec<f64> = (0..3).map(|_| absorb_rate(events)).collect();
    println!(
        "inbox + model: {events} node_update events into 64 cards, three runs: {:.0} / {:.0} / {:.0} events/s",
        rates[0], rates[1], rates[2]
    );
}
