//! The settings window: how tok/s is smoothed, when a worker counts as stalled, and whether
//! finished cards clear themselves. Changes apply at once and are saved.

use crate::board::{Board, Settings};
use crate::ui::Action;
use crate::ui::state::UiState;

/// Draws the settings window when it is open.
pub fn settings_window_ui(
    ctx: &egui::Context,
    state: &mut UiState,
    board: &Board,
    actions: &mut Vec<Action>,
) {
    let mut open = state.settings_open;
    let servers: Vec<String> = board.servers.iter().map(|s| s.url.clone()).collect();
    // Edited on a copy; a change goes to the board as an action, like every other change.
    let mut edited = board.settings.clone();
    let settings = &mut edited;
    egui::Window::new("Settings")
        .open(&mut open)
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

                    ui.label("Idle workers leave after").on_hover_text(
                        "A worker with no call for this long leaves the grid; its calls stay \
                         in the feed",
                    );
                    ui.add(
                        egui::Slider::new(&mut settings.worker_idle_secs, 10.0..=3600.0)
                            .suffix(" s")
                            .logarithmic(true),
                    );
                    ui.end_row();
                });
            if ui.button("Restore defaults").clicked() {
                *settings = Settings::default();
            }
            ui.separator();
            servers_ui(ui, &servers, state, actions);
        });
    state.settings_open = open;
    if edited != board.settings {
        actions.push(Action::ChangeSettings(edited));
    }
}

/// The servers watched, and a field to add one (remembered for the next start).
fn servers_ui(
    ui: &mut egui::Ui,
    servers: &[String],
    state: &mut UiState,
    actions: &mut Vec<Action>,
) {
    ui.strong("Servers");
    for url in servers {
        ui.label(egui::RichText::new(url).monospace());
    }
    ui.horizontal(|ui| {
        let label = ui.label("Add");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut state.new_server)
                    .hint_text("http://gpu-box:9010")
                    .desired_width(220.0),
            )
            .labelled_by(label.id);
        let url = state.new_server.trim().trim_end_matches('/').to_owned();
        let valid = (url.starts_with("http://") || url.starts_with("https://"))
            && !servers
                .iter()
                .any(|known| known.trim_end_matches('/') == url);
        let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let clicked = ui
            .add_enabled(valid, egui::Button::new("Watch"))
            .on_hover_text("Watch this runs API now and at every start")
            .on_disabled_hover_text("An http(s) URL of a server not watched yet")
            .clicked();
        if valid && (clicked || entered) {
            actions.push(Action::AddServer(url));
            state.new_server.clear();
        }
    });
}
