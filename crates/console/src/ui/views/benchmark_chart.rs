//! The Benchmark view's charts: the score of every task in the order they finished (passed and
//! failed told apart) with the pass rate and mean score as the benchmark went, and below it how
//! long each task took. Both share the task axis; hovering a bar names its task.

use egui::{Color32, RichText};
use egui_plot::{Bar, BarChart, Line, Plot, PlotPoints};

use crate::board::BenchmarkTally;
use runboard_api::TaskComplete;

use super::format::{few_grid_marks, seconds};

const PASSED: Color32 = Color32::from_rgb(46, 160, 67);
const FAILED: Color32 = Color32::from_rgb(210, 60, 60);
const PASS_RATE: Color32 = Color32::from_rgb(52, 120, 220);
const MEAN_SCORE: Color32 = Color32::from_rgb(210, 130, 30);
const DURATION: Color32 = Color32::from_rgb(128, 128, 140);

/// Draws the charts of one server's benchmark, or nothing before its first result.
pub fn results_chart_ui(ui: &mut egui::Ui, index: usize, view: &BenchmarkTally) {
    if view.results.is_empty() {
        return;
    }
    // Both charts show the same tasks: one x axis for both, so a bar sits above its duration.
    let link = ui.make_persistent_id(("bench-chart-x", index));
    let tasks = view.results.len();
    legend_ui(ui);
    task_axis_plot(("bench-scores", index), link, tasks)
        .height(170.0)
        .include_y(RESULT_STRIP_BASE)
        .include_y(max_score(view).max(1.0))
        .y_grid_spacer(egui_plot::uniform_grid_spacer(|input| {
            few_grid_marks(input.bounds, false)
        }))
        .y_axis_formatter(|mark, _| {
            // The strip under the axis says pass or fail; it has no score to label.
            if mark.value < 0.0 {
                String::new()
            } else {
                format!("{}", (mark.value * 100.0).round() / 100.0)
            }
        })
        .label_formatter(|hover| match hover {
            egui_plot::HoverPosition::NearDataPoint {
                plot_name,
                position,
                ..
            } if !plot_name.is_empty() => Some(format!(
                "{plot_name} after task {:.0}: {}",
                position.x,
                if *plot_name == "pass rate" {
                    format!("{:.0}%", position.y * 100.0)
                } else {
                    format!("{:.2}", position.y)
                }
            )),
            _ => None,
        })
        .show(ui, |plot| {
            for passed in [true, false] {
                plot.bar_chart(score_bars(view, passed));
                plot.bar_chart(result_strip(view, passed));
            }
            let totals = view.running_totals();
            plot.line(
                Line::new(
                    "pass rate",
                    totals
                        .iter()
                        .zip(1u32..)
                        .map(|(total, task)| [f64::from(task), total.pass_rate])
                        .collect::<PlotPoints>(),
                )
                .color(PASS_RATE)
                .width(2.0),
            );
            plot.line(
                Line::new(
                    "mean score",
                    totals
                        .iter()
                        .zip(1u32..)
                        .map(|(total, task)| [f64::from(task), total.mean_score])
                        .collect::<PlotPoints>(),
                )
                .color(MEAN_SCORE)
                .width(2.0),
            );
        });
    if view.results.iter().any(|r| r.duration_secs.is_some()) {
        ui.label(RichText::new("Duration per task").small().weak());
        task_axis_plot(("bench-durations", index), link, tasks)
            .height(90.0)
            .include_y(0.0)
            .y_grid_spacer(egui_plot::uniform_grid_spacer(|input| {
                few_grid_marks(input.bounds, false)
            }))
            .y_axis_formatter(|mark, _| short_seconds(mark.value))
            .show(ui, |plot| plot.bar_chart(duration_bars(view)));
    }
}

/// Where the pass/fail strip under the score axis starts: every task shows how it went there,
/// a failed one with a score of 0 included.
const RESULT_STRIP_BASE: f64 = -0.1;

/// What the colours and lines mean, as a row above the chart: the plot's own legend would sit
/// on the bars.
fn legend_ui(ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.label(RichText::new("Score per task, in order").small().weak());
        ui.add_space(12.0);
        for (color, text, line) in [
            (PASSED, "passed", false),
            (FAILED, "failed", false),
            (PASS_RATE, "pass rate so far", true),
            (MEAN_SCORE, "mean score so far", true),
        ] {
            let size = egui::vec2(if line { 14.0 } else { 9.0 }, 9.0);
            let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
            if line {
                ui.painter().hline(
                    rect.x_range(),
                    rect.center().y,
                    egui::Stroke::new(2.0, color),
                );
            } else {
                ui.painter().rect_filled(rect, 1.0, color);
            }
            ui.label(RichText::new(text).small());
            ui.add_space(6.0);
        }
    });
}

/// An axis label for a duration: short enough for the axis ("0", "500 ms", "30 s", "2 min").
fn short_seconds(secs: f64) -> String {
    if secs <= 0.0 {
        if secs == 0.0 {
            "0".into()
        } else {
            String::new()
        }
    } else if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else if secs < 120.0 {
        format!("{secs:.0} s")
    } else {
        format!("{:.0} min", secs / 60.0)
    }
}

/// A plot over the tasks 1..=`tasks`, fixed in place (it is read, not explored).
fn task_axis_plot(id: impl egui::AsIdSalt, link: egui::Id, tasks: usize) -> Plot<'static> {
    #[allow(clippy::cast_precision_loss)] // Task counts are small.
    let last = tasks as f64;
    Plot::new(id)
        .include_x(0.4)
        .include_x(last + 0.6)
        .link_axis(link, [true, false])
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .show_grid([false, true])
        .y_axis_min_width(36.0)
        .x_axis_formatter(|mark, _| {
            // Tasks are whole numbers; the axis may ask about the spaces between them.
            if mark.value >= 1.0 && mark.value.fract() == 0.0 {
                format!("{:.0}", mark.value)
            } else {
                String::new()
            }
        })
}

/// The bars of the passed (or the failed) tasks: one chart each, so the legend names both.
fn score_bars(view: &BenchmarkTally, passed: bool) -> BarChart {
    let (name, color) = if passed {
        ("passed", PASSED)
    } else {
        ("failed", FAILED)
    };
    let bars = view
        .results
        .iter()
        .zip(1u32..)
        .filter(|(result, _)| result.success == passed)
        .map(|(result, task)| task_bar(f64::from(task), result.score, result, color))
        .collect();
    BarChart::new(name, bars)
        .color(color)
        .element_formatter(Box::new(|bar, _| bar.name.clone()))
}

/// The pass (or fail) marks under the axis, one per task.
fn result_strip(view: &BenchmarkTally, passed: bool) -> BarChart {
    let color = if passed { PASSED } else { FAILED };
    let bars = view
        .results
        .iter()
        .zip(1u32..)
        .filter(|(result, _)| result.success == passed)
        .map(|(result, task)| {
            task_bar(f64::from(task), 0.07, result, color).base_offset(RESULT_STRIP_BASE + 0.01)
        })
        .collect();
    BarChart::new(if passed { "passed" } else { "failed" }, bars)
        .color(color)
        .element_formatter(Box::new(|bar, _| bar.name.clone()))
}

fn duration_bars(view: &BenchmarkTally) -> BarChart {
    let bars = view
        .results
        .iter()
        .zip(1u32..)
        .filter_map(|(result, task)| {
            let secs = result
                .duration_secs
                .filter(|d| d.is_finite() && *d >= 0.0)?;
            Some(task_bar(f64::from(task), secs, result, DURATION))
        })
        .collect();
    BarChart::new("duration", bars)
        .color(DURATION)
        .element_formatter(Box::new(|bar, _| bar.name.clone()))
}

/// One task's bar, named with what a hover should say about the task.
fn task_bar(task: f64, value: f64, result: &TaskComplete, color: Color32) -> Bar {
    Bar::new(task, value)
        .width(0.7)
        .fill(color.gamma_multiply(0.8))
        .stroke(egui::Stroke::new(1.0, color))
        .name(describe(task, result))
}

/// "#3 task-7 · failed · score 0.25 · 12.4 s"
fn describe(task: f64, result: &TaskComplete) -> String {
    let outcome = if result.success { "passed" } else { "failed" };
    let mut text = format!(
        "#{task:.0} {} · {outcome} · score {:.2}",
        result.task_id, result.score
    );
    if let Some(secs) = result.duration_secs {
        text.push_str(" · ");
        text.push_str(&seconds(secs));
    }
    text
}

/// The highest score, for scales whose scores go past 1.
fn max_score(view: &BenchmarkTally) -> f64 {
    view.results
        .iter()
        .map(|r| r.score)
        .filter(|s| s.is_finite())
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_says_which_task_it_is_and_how_it_went() {
        let result = TaskComplete {
            task_id: "task-7".into(),
            success: false,
            score: 0.25,
            duration_secs: Some(12.4),
            run_id: None,
        };
        assert_eq!(
            describe(3.0, &result),
            "#3 task-7 · failed · score 0.25 · 12.4 s"
        );
    }

    #[test]
    fn duration_labels_stay_short() {
        let labels: Vec<String> = [-5.0, 0.0, 0.25, 30.0, 600.0]
            .into_iter()
            .map(short_seconds)
            .collect();
        assert_eq!(labels, ["", "0", "250 ms", "30 s", "10 min"]);
    }
}
