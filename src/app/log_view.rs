//! The log panel: narration lines of every run, each tagged with its run, following the newest.

use egui::RichText;

use super::look::seconds;
use crate::model::Model;

const LINE_HEIGHT: f32 = 18.0;

/// Draws the log.
pub fn log_ui(ui: &mut egui::Ui, model: &Model, now: f64) {
    let lines = model.log.lines();
    if lines.is_empty() {
        ui.label(RichText::new("Narration from the runs appears here.").weak());
        return;
    }
    egui::ScrollArea::vertical()
        .id_salt("log")
        .auto_shrink([false, false])
        .stick_to_bottom(true)
        .show_rows(ui, LINE_HEIGHT, lines.len(), |ui, rows| {
            for line in lines.range(rows) {
                ui.horizontal(|ui| {
                    ui.label(
                        RichText::new(format!("{:>8} ago", seconds(now - line.at)))
                            .monospace()
                            .weak(),
                    );
                    ui.label(RichText::new(&line.run.run_id).monospace().small());
                    let text = RichText::new(&line.text);
                    let text = match line.level.as_str() {
                        "error" => text.color(egui::Color32::from_rgb(210, 60, 60)),
                        "warn" => text.color(egui::Color32::from_rgb(210, 130, 30)),
                        _ => text,
                    };
                    ui.add(egui::Label::new(text).truncate());
                });
            }
        });
}
