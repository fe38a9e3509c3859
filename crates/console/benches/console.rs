//! The console's CPU cost, headless: one frame (egui layout + tessellation) with 18, 64 and 256
//! live cards beside a 10 000-run feed, while every card gets a `node_update` between frames;
//! a proxied fleet of 256 named workers making about 100 calls a second for 60,000 calls
//! (events applied and frame drawn, timed apart, and the memory it keeps); and how many
//! `node_update` events per second the inbox and the model absorb.
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
        launched_by: None,
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

/// A proxied fleet: `workers` named workers making one streamed call after another, each
/// call `call_secs` long with an update every 0.25 s, so the fleet makes `workers / call_secs`
/// calls a second. Each frame applies the events of its quarter second and then draws.
struct Fleet {
    model: Board,
    /// Per worker: its call going on, its number, when it ends.
    calls: Vec<(String, u64, f64)>,
    call_secs: f64,
    calls_made: u64,
}

impl Fleet {
    fn new(workers: usize, call_secs: f64) -> Self {
        let mut model = Board::new(&["http://127.0.0.1:9010".into()], Settings::default());
        let mut calls = Vec::with_capacity(workers);
        for n in 0..workers {
            // Staggered, so calls end evenly over time rather than all at once.
            #[allow(clippy::cast_precision_loss)]
            let ends = call_secs * (n as f64 + 1.0) / workers as f64;
            calls.push((format!("w{n:03}-0"), 0, ends));
        }
        for (n, (call, _, _)) in calls.iter().enumerate() {
            let created = RunEvent::RunCreated(RunSummary {
                worker: Some(format!("gen-{n:03}")),
                ..summary(call.clone(), RunStatus::Running, n)
            });
            model.apply(
                Inbound::Event {
                    server: 0,
                    event: created,
                },
                0.0,
            );
        }
        Self {
            model,
            calls,
            call_secs,
            calls_made: 0,
        }
    }

    /// The events of the quarter second up to `now`: progress of every call, ends, and the
    /// next calls.
    fn advance(&mut self, now: f64, frame: usize) {
        for n in 0..self.calls.len() {
            let (call, number, ends) = self.calls[n].clone();
            if now >= ends {
                for event in [
                    RunEvent::status(RunStatus::Completed, None),
                    RunEvent::StreamEnd(runboard_api::StreamEnd {
                        run_id: String::new(),
                        status: RunStatus::Completed,
                    }),
                ] {
                    let event = event.with_run_id(&call);
                    self.model.apply(Inbound::Event { server: 0, event }, now);
                }
                self.calls_made += 1;
                let next = format!("w{n:03}-{}", number + 1);
                let created = RunEvent::RunCreated(RunSummary {
                    worker: Some(format!("gen-{n:03}")),
                    ..summary(next.clone(), RunStatus::Running, frame)
                });
                self.model.apply(
                    Inbound::Event {
                        server: 0,
                        event: created,
                    },
                    now,
                );
                self.calls[n] = (next, number + 1, ends + self.call_secs);
            } else {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let tokens = ((self.call_secs - (ends - now)) * 40.0) as u64;
                self.model.apply(progress(&call, tokens, frame), now);
            }
        }
    }
}

/// Resident memory of this process, in MiB.
fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

/// Frame cost (the quarter second's events applied, then the frame drawn) of a fleet of 256
/// workers making about 100 calls a second, and the memory after `total_calls` calls.
fn fleet_run(total_calls: u64) -> (Vec<Duration>, Vec<Duration>, Vec<(u64, f64)>) {
    let before = resident_mib();
    let ctx = egui::Context::default();
    let mut fleet = Fleet::new(256, 2.56);
    let mut state = UiState::default();
    let mut times = Vec::new();
    let mut applies = Vec::new();
    let mut memory = Vec::new();
    let mut next_mark = total_calls / 10;
    let mut frame = 0;
    while fleet.calls_made < total_calls {
        frame += 1;
        #[allow(clippy::cast_precision_loss)]
        let now = frame as f64 * 0.25;
        // Every frame is drawn for the first minutes; after that one in 20 (the rest only
        // applied), so 60 000 calls take minutes, not an hour.
        let draw = frame <= 2400 || frame % 20 == 0;
        let start = Instant::now();
        fleet.advance(now, frame);
        let apply_time = start.elapsed();
        if draw {
            let start = Instant::now();
            let input = egui::RawInput {
                screen_rect: Some(egui::Rect::from_min_size(
                    egui::Pos2::ZERO,
                    egui::vec2(1600.0, 1000.0),
                )),
                ..egui::RawInput::default()
            };
            let output = ctx.run_ui(input, |ui| {
                black_box(console_ui(ui, &fleet.model, &mut state, now));
            });
            black_box(ctx.tessellate(output.shapes, output.pixels_per_point));
            if frame > 240 {
                times.push(start.elapsed());
                applies.push(apply_time);
            }
        }
        if fleet.calls_made >= next_mark {
            memory.push((fleet.calls_made, resident_mib() - before));
            next_mark += total_calls / 10;
        }
    }
    black_box(&fleet.model);
    times.sort();
    applies.sort();
    (times, applies, memory)
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
    let (times, applies, memory) = fleet_run(60_000);
    println!(
        "a proxied fleet, 256 named workers, about 100 calls/s (2.56 s calls, an update every \
         0.25 s), {} frames: drawing median {:.2} ms, p99 {:.2} ms, max {:.2} ms; applying a \
         frame's events median {:.2} ms, p99 {:.2} ms",
        times.len(),
        ms(times[times.len() / 2]),
        ms(times[times.len() * 99 / 100]),
        ms(*times.last().unwrap()),
        ms(applies[applies.len() / 2]),
        ms(applies[applies.len() * 99 / 100]),
    );
    let marks: Vec<String> = memory
        .iter()
        .map(|(calls, mib)| format!("{calls}: {mib:.1}"))
        .collect();
    println!(
        "  resident memory added (MiB) after N calls: {}",
        marks.join(", ")
    );
    let events = 500_000;
    let rates: Vec<f64> = (0..3).map(|_| absorb_rate(events)).collect();
    println!(
        "inbox + model: {events} node_update events into 64 cards, three runs: {:.0} / {:.0} / {:.0} events/s",
        rates[0], rates[1], rates[2]
    );
}
