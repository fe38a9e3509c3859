//! The log panel: narration lines of every run, each tagged with its run. Filters by level and
//! run, follows the newest or pauses where it is, and a click on a line selects its run.

use egui::{RichText, Sense};

use super::format::seconds;
use crate::board::{Board, LogLine};
use crate::ui::View;
use crate::ui::state::{LogLevel, UiState};

const LINE_HEIGHT: f32 = 18.0;

/// Width of the run column: a run id in small monospace.
const RUN_COLUMN: f32 = 112.0;

/// One row on screen: a line of a narration (a table narration spans several rows).
struct Row<'a> {
    line: &'a LogLine,
    text: &'a str,
    first: bool,
}

/// Draws the log's toolbar and lines.
pub fn log_ui(ui: &mut egui::Ui, board: &Board, state: &mut UiState, now: f64) {
    toolbar_ui(ui, board, state);
    let panel = &state.log;
    let filter = panel.run_filter.trim().to_owned();
    let rows: Vec<Row<'_>> = board
        .log
        .lines()
        .iter()
        .filter(|line| panel.paused_at.is_none_or(|at| line.number <= at))
        .filter(|line| panel.level.admits(&line.level))
        .filter(|line| filter.is_empty() || line.run.run_id.contains(&filter))
        .flat_map(|line| {
            line.text.lines().enumerate().map(move |(i, text)| Row {
                line,
                text,
                first: i == 0,
            })
        })
        .collect();
    if rows.is_empty() {
        let empty = if board.log.lines().is_empty() {
            "Narration from the runs appears here."
        } else {
            "No line matches the filters."
        };
        ui.label(RichText::new(empty).weak());
        return;
    }
    let following = state.log.paused_at.is_none();
    let mut clicked = None;
    egui::ScrollArea::vertical()
        .id_salt("log")
        .auto_shrink([false, false])
        .stick_to_bottom(following)
        .show_rows(ui, LINE_HEIGHT, rows.len(), |ui, range| {
            for row in &rows[range] {
                if row_ui(ui, row, state.selected.as_ref() == Some(&row.line.run), now) {
                    clicked = Some(row.line.run.clone());
                }
            }
        });
    if let Some(key) = clicked {
        // Its card when it has one; otherwise its feed entry's chain.
        if board.worker(&key).is_none() {
            state.expanded.insert(key.clone());
        }
        state.selected = Some(key);
        state.scroll_to_selected = true;
        state.view = View::Workers;
    }
}

fn toolbar_ui(ui: &mut egui::Ui, board: &Board, state: &mut UiState) {
    ui.horizontal(|ui| {
        let label = ui.label("Show");
        egui::ComboBox::from_id_salt("log-level")
            .selected_text(state.log.level.label())
            .show_ui(ui, |ui| {
                for level in LogLevel::ALL {
                    ui.selectable_value(&mut state.log.level, level, level.label());
                }
            })
            .response
            .labelled_by(label.id);
        let label = ui.label("Run");
        ui.add(
            egui::TextEdit::singleline(&mut state.log.run_filter)
                .hint_text("any run")
                .desired_width(150.0),
        )
        .labelled_by(label.id);
        if !state.log.run_filter.is_empty()
            && ui.small_button("×").on_hover_text("Any run").clicked()
        {
            state.log.run_filter.clear();
        }
        ui.separator();
        match state.log.paused_at {
            None => {
                if ui
                    .button("Pause")
                    .on_hover_text("Stop following: the log stays where it is")
                    .clicked()
                {
                    state.log.paused_at = Some(board.log.newest());
                }
            }
            Some(at) => {
                let waiting = board.log.newest().saturating_sub(at);
                if ui
                    .button(format!("Follow ({waiting} new)"))
                    .on_hover_text("Show new lines as they come")
                    .clicked()
                {
                    state.log.paused_at = None;
                }
            }
        }
    });
}

/// One row; true when it was clicked.
fn row_ui(ui: &mut egui::Ui, row: &Row<'_>, selected: bool, now: f64) -> bool {
    let response = ui.horizontal(|ui| {
        let age = if row.first {
            format!("{:>8} ago", seconds(now - row.line.at))
        } else {
            " ".repeat(12)
        };
        ui.label(RichText::new(age).monospace().weak());
        // A fixed column, so a table's later rows line up under its first.
        let column = egui::vec2(RUN_COLUMN, LINE_HEIGHT);
        let link_clicked = ui
            .allocate_ui_with_layout(
                column,
                egui::Layout::left_to_right(egui::Align::Center),
                |ui| {
                    ui.set_min_width(RUN_COLUMN);
                    if !row.first {
                        return false;
                    }
                    if row.line.run.run_id.is_empty() {
                        // A line about the server itself (its store, its retention): no run.
                        ui.label(RichText::new("server").monospace().small().weak());
                        return false;
                    }
                    let run = RichText::new(&row.line.run.run_id).monospace().small();
                    // A link too, so keyboards and screen readers can select the run.
                    ui.link(if selected { run.strong() } else { run }).clicked()
                },
            )
            .inner;
        let text = RichText::new(row.text).monospace();
        let text = match row.line.level.as_str() {
            "error" => text.color(egui::Color32::from_rgb(210, 60, 60)),
            "warn" | "warning" => text.color(egui::Color32::from_rgb(210, 130, 30)),
            _ => text,
        };
        ui.add(egui::Label::new(text).truncate().selectable(false));
        link_clicked
    });
    let link_clicked = response.inner;
    let response = response.response;
    let response = ui
        .interact(response.rect, response.id.with("click"), Sense::click())
        .on_hover_cursor(egui::CursorIcon::PointingHand);
    if selected {
        ui.painter().rect_stroke(
            response.rect.expand(1.0),
            2.0,
            ui.visuals().selection.stroke,
            egui::StrokeKind::Inside,
        );
    }
    response.clicked() || link_clicked
}

#[cfg(test)]
mod tests {
    use crate::ui::LogLevel;

    #[test]
    fn levels_admit_what_is_at_least_as_severe() {
        assert!(LogLevel::All.admits("info"));
        assert!(LogLevel::All.admits("debug"));
        assert!(!LogLevel::Warn.admits("info"));
        assert!(LogLevel::Warn.admits("warning"));
        assert!(LogLevel::Warn.admits("error"));
        assert!(!LogLevel::Error.admits("warn"));
        assert!(LogLevel::Error.admits("error"));
    }
}
