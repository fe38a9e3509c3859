//! How numbers, statuses and links look: units, colours and the words on badges.

use egui::Color32;

use crate::board::Link;
use runboard_api::RunStatus;

/// Model text as it may be drawn: control characters (a model can emit any byte) become
/// spaces, so they never show as boxes or move the layout; line breaks and tabs stay.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        text.chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    ' '
                } else {
                    c
                }
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// The first `max` characters of `text`, with `…` when it was longer.
pub fn first_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `42.3`, `512`, `1.2k`: tokens per second, compact.
pub fn rate(per_sec: f64) -> String {
    if per_sec >= 1000.0 {
        format!("{:.1}k", per_sec / 1000.0)
    } else if per_sec >= 100.0 {
        format!("{per_sec:.0}")
    } else {
        format!("{per_sec:.1}")
    }
}

/// `950`, `12.3k`, `4.56M` tokens.
pub fn tokens(count: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // Display only.
    let value = count as f64;
    if count >= 1_000_000 {
        format!("{:.2}M", value / 1e6)
    } else if count >= 10_000 {
        format!("{:.1}k", value / 1e3)
    } else {
        count.to_string()
    }
}

pub use runboard_api::units::seconds;

/// The colour of a status badge, readable on dark and light backgrounds.
pub fn status_color(status: RunStatus) -> Color32 {
    match status {
        RunStatus::Queued => Color32::from_rgb(128, 128, 140),
        RunStatus::Running => Color32::from_rgb(52, 120, 220),
        RunStatus::Completed => Color32::from_rgb(46, 160, 67),
        RunStatus::Failed => Color32::from_rgb(210, 60, 60),
        RunStatus::Cancelled => Color32::from_rgb(210, 130, 30),
        RunStatus::Unknown => Color32::from_rgb(120, 120, 120),
    }
}

/// The colour of a link badge.
pub fn link_color(link: &Link) -> Color32 {
    match link {
        Link::Live | Link::Resumed { .. } => Color32::from_rgb(46, 160, 67),
        Link::Connecting | Link::Reconnecting { .. } => Color32::from_rgb(210, 130, 30),
        Link::Lost(_) => Color32::from_rgb(210, 60, 60),
        Link::Ended => Color32::from_rgb(128, 128, 140),
    }
}

/// A sparkline: the points as a filled line, with no axes, grid or interaction. The model keeps
/// 60 s of history, so a young run's shorter history fills the width.
pub fn sparkline_ui(
    ui: &mut egui::Ui,
    id: impl egui::AsIdSalt,
    history: &std::collections::VecDeque<[f64; 2]>,
    size: [f32; 2],
) -> egui::Response {
    let points: Vec<[f64; 2]> = history.iter().copied().collect();
    sparkline_plot(id, size)
        .show(ui, |plot| plot.line(sparkline_line(points)))
        .response
}

/// A sparkline over a fixed window of `window_secs` up to now (x is seconds before now), so a
/// short history sits at the right and gaps show as gaps in time.
pub fn window_sparkline_ui(
    ui: &mut egui::Ui,
    id: impl egui::AsIdSalt,
    points: Vec<[f64; 2]>,
    window_secs: f64,
    size: [f32; 2],
) -> egui::Response {
    sparkline_plot(id, size)
        .include_x(-window_secs)
        .include_x(0.0)
        .show(ui, |plot| plot.line(sparkline_line(points)))
        .response
}

fn sparkline_plot(id: impl egui::AsIdSalt, size: [f32; 2]) -> egui_plot::Plot<'static> {
    egui_plot::Plot::new(id)
        .width(size[0])
        .height(size[1])
        .show_axes(false)
        .show_grid(false)
        .show_background(false)
        .show_x(false)
        .show_y(false)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .include_y(0.0)
}

fn sparkline_line(points: Vec<[f64; 2]>) -> egui_plot::Line<'static> {
    // egui_plot merges points that fall on one pixel column into a solid vertical band (meant
    // for dense series); on a sparkline that reads as a filled wedge wherever two points are
    // close in time, such as a last measurement just before a run ends.
    egui_plot::Line::new("value", egui_plot::PlotPoints::from(points))
        .allow_band(false)
        .color(Color32::from_rgb(52, 120, 220))
        .width(1.5)
        .fill(0.0)
        .fill_alpha(0.15)
}

/// Grid steps for a small plot: about four labelled lines over the visible `bounds`, at a round
/// step (1, 2, 2.5 or 5 times a power of ten; 1, 2 or 5 for `whole` counts, never below 1),
/// with finer lines between. `egui_plot`'s default labels only powers of ten, which leaves a plot
/// 90 points high with a single label.
pub fn few_grid_marks(bounds: (f64, f64), whole: bool) -> [f64; 3] {
    let span = (bounds.1 - bounds.0).abs().max(f64::MIN_POSITIVE);
    let step = round_step(span / 4.0, whole);
    [step / 5.0, step, step * 5.0]
}

/// The smallest round step that is at least `at_least`.
fn round_step(at_least: f64, whole: bool) -> f64 {
    if whole && at_least <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(at_least.log10().floor());
    let multiples: &[f64] = if whole {
        &[1.0, 2.0, 5.0, 10.0]
    } else {
        &[1.0, 2.0, 2.5, 5.0, 10.0]
    };
    multiples
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= at_least * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

/// A small filled badge with white text.
pub fn badge(ui: &mut egui::Ui, text: &str, color: Color32) -> egui::Response {
    egui::Frame::new()
        .fill(color)
        .corner_radius(4.0)
        .inner_margin(egui::Margin::symmetric(6, 1))
        .show(ui, |ui| {
            ui.label(
                egui::RichText::new(text)
                    .small()
                    .color(Color32::WHITE)
                    .strong(),
            );
        })
        .response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_steps_are_round_numbers_and_whole_for_counts() {
        let steps: Vec<f64> = [0.3, 1.0, 4.0, 10.5, 0.07]
            .into_iter()
            .map(|x| round_step(x, false))
            .collect();
        assert_eq!(steps, [0.5, 1.0, 5.0, 20.0, 0.1]);
        let counts: Vec<f64> = [0.3, 1.25, 2.2, 30.0]
            .into_iter()
            .map(|x| round_step(x, true))
            .collect();
        assert_eq!(counts, [1.0, 2.0, 5.0, 50.0]);
    }

    #[test]
    fn numbers_carry_their_units_compactly() {
        assert_eq!(rate(42.34), "42.3");
        assert_eq!(rate(512.4), "512");
        assert_eq!(rate(1234.0), "1.2k");
        assert_eq!(tokens(950), "950");
        assert_eq!(tokens(12_345), "12.3k");
        assert_eq!(tokens(4_560_000), "4.56M");
    }

    #[test]
    fn control_characters_in_model_text_become_spaces() {
        assert_eq!(printable("a\u{11}b\u{7f}c\nd\te"), "a b c\nd\te");
        assert!(matches!(
            printable("plain é 😊"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
