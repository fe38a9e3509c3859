//! The settings window: how tok/s is smoothed, when a worker counts as stalled, and whether
//! finished cards clear themselves. Changes apply at once and are saved.

use crate::model::Settings;

/// Draws the settings window when `open`.
pub fn settings_window_ui(ctx: &egui::Context, open: &mut bool, settings: &mut Settings) {
    egui::Window::new("Settings")
        .open(open)
        .resizable(false)
        .pivot(egui::Align2::CENTER_CENTER)
        .default_pos(ctx.content_rect().center())
        .show(ctx, |ui| {
            egui::Grid::new("settings-grid")
                .num_columns(2)
                .spacing([16.0, 8.0])
                .show(ui, |ui| {
                    ui.label("Smoothing (α)")
                        .on_hover_text("Weight of the newest rate in the tok/s moving average");
                    ui.add(
                        egui::Slider::new(&mut settings.rate.alpha, 0.05..=1.0).fixed_decimals(2),
                    );
                    ui.end_row();

                    ui.label("Rate gate")
                        .on_hover_text("Updates closer together than this accumulate first");
                    let mut gate_ms = settings.rate.gate_secs * 1000.0;
                    if ui
                        .add(
                            egui::Slider::new(&mut gate_ms, 10.0..=2000.0)
                                .suffix(" ms")
                                .fixed_decimals(0),
                        )
                        .changed()
                    {
                        settings.rate.gate_secs = gate_ms / 1000.0;
                    }
                    ui.end_row();

                    ui.label("Stalled after")
                        .on_hover_text("A running worker silent this long is marked stalled");
                    ui.add(
                        egui::Slider::new(&mut settings.stall_after_secs, 1.0..=300.0)
                            .suffix(" s")
                            .logarithmic(true),
                    );
                    ui.end_row();

                    ui.label("Clear finished cards")
                        .on_hover_text("Remove a finished card this long after it finished");
                    ui.horizontal(|ui| {
                        let mut auto = settings.auto_clear_after_secs.is_some();
                        ui.checkbox(&mut auto, "after");
                        let mut secs = settings.auto_clear_after_secs.unwrap_or(60.0);
                        ui.add_enabled(
                            auto,
                            egui::Slider::new(&mut secs, 5.0..=3600.0)
                                .suffix(" s")
                                .logarithmic(true),
                        );
                        settings.auto_clear_after_secs = auto.then_some(secs);
                    });
                    ui.end_row();
                });
            ui.separator();
            if ui.button("Restore defaults").clicked() {
                *settings = Settings::default();
            }
        });
}
