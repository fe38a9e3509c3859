//! The Benchmark view: phase and connection, a progress bar with ETA, the current
//! task and step, pass rate and mean score, an error banner, the results as charts
//! (`benchmark_chart`) and as a table.

use super::spec::{ViewNeeds, ViewSpec};
use runboard_api::Feature;
use std::fmt::Write as _;

use egui::{Color32, RichText};

use super::benchmark_chart::results_chart_ui;
use super::format::{badge, link_color, seconds};
use crate::board::{BenchmarkTally, Board, Server};
use crate::ui::Action;
use crate::ui::state::UiState;
use runboard_api::phase;

const GOOD: Color32 = Color32::from_rgb(46, 160, 67);
const BAD: Color32 = Color32::from_rgb(210, 60, 60);
const IDLE: Color32 = Color32::from_rgb(128, 128, 140);
const BUSY: Color32 = Color32::from_rgb(52, 120, 220);
const WAITING: Color32 = Color32::from_rgb(210, 130, 30);

/// The Benchmark view.
pub const VIEW: ViewSpec = ViewSpec {
    key: "benchmark",
    label: "Benchmark",
    about: "Benchmark progress",
    needs: ViewNeeds::BenchmarkStream,
    with_feed: false,
    ticks: |board| board.servers.iter().any(|s| s.benchmark.running()),
    draw: benchmark_ui,
};

/// Draws every server's benchmark.
pub fn benchmark_ui(
    ui: &mut egui::Ui,
    board: &Board,
    state: &mut UiState,
    now: f64,
    actions: &mut Vec<Action>,
) {
    egui::ScrollArea::vertical()
        .id_salt("bench")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for (index, server) in board.servers.iter().enumerate() {
                server_bench_ui(ui, index, server, state, now, actions);
                ui.add_space(16.0);
            }
        });
}

fn server_bench_ui(
    ui: &mut egui::Ui,
    index: usize,
    server: &Server,
    state: &mut UiState,
    now: f64,
    actions: &mut Vec<Action>,
) {
    let view = &server.benchmark;
    ui.horizontal(|ui| {
        let title = view
            .status
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| "Benchmark".into());
        ui.heading(format!("{title} on {}", server.label));
        if let Some(link) = &server.benchmark_link {
            badge(ui, &link.label(now), link_color(link));
        }
        if let Some(status) = &view.status {
            let color = match status.phase.as_str() {
                phase::RUNNING => BUSY,
                phase::FINISHED => GOOD,
                phase::STOPPED => BAD,
                phase::WAITING => WAITING,
                _ => IDLE,
            };
            badge(ui, &status.phase.replace('_', " "), color);
            if !status.connected {
                badge(ui, "source not connected", WAITING);
            }
        }
    });
    if server
        .health
        .as_ref()
        .is_some_and(|h| !h.has(Feature::Benchmarks))
    {
        ui.label(RichText::new("This server has no benchmark stream.").weak());
        return;
    }
    source_ui(ui, view);
    errors_ui(ui, view);
    let runs_here = view
        .status
        .as_ref()
        .is_some_and(|s| s.source.as_deref() == Some("api"));
    if runs_here && !view.running() && server.may(runboard_api::Action::Benchmark) {
        start_ui(ui, index, state, actions);
    }
    if view.status.is_none() {
        ui.label(RichText::new("Connecting to the benchmark stream…").weak());
        return;
    }
    progress_ui(ui, view);
    ui.add_space(6.0);
    results_chart_ui(ui, index, view);
    ui.add_space(6.0);
    results_ui(ui, index, view);
}

fn source_ui(ui: &mut egui::Ui, view: &BenchmarkTally) {
    let Some(log) = view.status.as_ref().and_then(|s| s.log.as_ref()) else {
        return;
    };
    let mut text = format!("Following the log {}", log.path);
    if !log.present {
        text.push_str(" — the file does not exist (yet)");
    }
    if log.rotations > 0 {
        let _ = write!(text, " — rotated {} time(s)", log.rotations);
    }
    if let Some(problem) = &log.problem {
        let _ = write!(text, " — cannot read it: {problem}");
    }
    let color = if log.present && log.problem.is_none() {
        ui.visuals().weak_text_color()
    } else {
        WAITING
    };
    ui.label(RichText::new(text).color(color));
}

fn errors_ui(ui: &mut egui::Ui, view: &BenchmarkTally) {
    let Some(latest) = view.errors.last() else {
        return;
    };
    egui::Frame::new()
        .fill(BAD.gamma_multiply(0.18))
        .stroke(egui::Stroke::new(1.0, BAD))
        .corner_radius(6.0)
        .inner_margin(8.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            let more = match view.errors.len() {
                1 => String::new(),
                n => format!("  ({n} errors)"),
            };
            ui.horizontal(|ui| {
                ui.label(RichText::new("Error").color(BAD).strong());
                ui.label(RichText::new(format!("{latest}{more}")).color(BAD));
            });
        });
}

fn start_ui(ui: &mut egui::Ui, index: usize, state: &mut UiState, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        let label = ui.label("Tasks");
        ui.add(egui::DragValue::new(&mut state.bench_tasks).range(1..=1000))
            .labelled_by(label.id);
        if ui
            .button("Start benchmark")
            .on_hover_text("Run this many tasks through the server's generator, one at a time")
            .clicked()
        {
            actions.push(Action::StartBenchmark {
                server: index,
                tasks: state.bench_tasks,
            });
        }
    });
}

fn progress_ui(ui: &mut egui::Ui, view: &BenchmarkTally) {
    let progress = &view.progress;
    let fraction = view.fraction().unwrap_or(0.0);
    // The theme's own fill keeps the text on the bar readable in dark and light.
    #[allow(clippy::cast_possible_truncation)] // 0..=1 for a bar.
    let bar = egui::ProgressBar::new(fraction as f32).text(format!(
        "{} / {} tasks · {:.0}%",
        progress.tasks_completed,
        progress.total_tasks,
        fraction * 100.0
    ));
    ui.add(bar);
    ui.horizontal(|ui| {
        match &progress.current_task {
            Some(task) => {
                ui.label("Current task");
                ui.label(RichText::new(task).monospace().strong());
                if let Some(step) = progress.current_step {
                    ui.label(format!("step {step}"));
                }
            }
            None => {
                ui.label(RichText::new("No task running").weak());
            }
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if let Some(eta) = view.eta_secs() {
                ui.label(RichText::new(format!("ETA {}", seconds(eta))).strong());
            }
        });
    });
    ui.horizontal(|ui| {
        stat_ui(
            ui,
            "Pass rate",
            &view
                .pass_rate()
                .map_or_else(|| "—".into(), |r| format!("{:.0}%", r * 100.0)),
        );
        stat_ui(
            ui,
            "Mean score",
            &view
                .mean_score()
                .map_or_else(|| "—".into(), |s| format!("{s:.2}")),
        );
        stat_ui(ui, "Passed", &view.passed().to_string());
        stat_ui(
            ui,
            "Failed",
            &(view.results.len() - view.passed()).to_string(),
        );
    });
}

fn stat_ui(ui: &mut egui::Ui, label: &str, value: &str) {
    ui.vertical(|ui| {
        ui.label(RichText::new(label).small().weak());
        ui.label(RichText::new(value).size(20.0).strong());
    });
    ui.add_space(18.0);
}

fn results_ui(ui: &mut egui::Ui, index: usize, view: &BenchmarkTally) {
    if view.results.is_empty() {
        ui.label(RichText::new("Results appear here as tasks finish.").weak());
        return;
    }
    egui::Grid::new(("bench-results", index))
        .striped(true)
        .num_columns(4)
        .spacing([24.0, 4.0])
        .show(ui, |ui| {
            for header in ["Task", "Result", "Score", "Duration"] {
                ui.label(RichText::new(header).strong());
            }
            ui.end_row();
            // Newest first: the one that just finished is where the eye is.
            for result in view.results.iter().rev() {
                ui.label(RichText::new(&result.task_id).monospace());
                if result.success {
                    badge(ui, "pass", GOOD);
                } else {
                    badge(ui, "fail", BAD);
                }
                ui.label(format!("{:.2}", result.score));
                ui.label(result.duration_secs.map_or_else(|| "—".into(), seconds));
                ui.end_row();
            }
        });
}
