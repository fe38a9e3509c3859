//! The token prompt: shown when a server refuses the console for want of a valid token.

use egui::RichText;

use crate::board::Board;
use crate::ui::Action;
use crate::ui::state::UiState;

/// Draws the prompt when a server needs a token.
pub fn token_window_ui(
    ctx: &egui::Context,
    board: &Board,
    state: &mut UiState,
    actions: &mut Vec<Action>,
) {
    let asking: Vec<(&str, &str)> = board
        .servers
        .iter()
        .filter_map(|s| s.needs_token.as_deref().map(|why| (s.label.as_str(), why)))
        .collect();
    if asking.is_empty() {
        return;
    }
    egui::Window::new("This server needs a token")
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            for (label, why) in &asking {
                ui.label(RichText::new(*label).strong());
                ui.label(RichText::new(*why).small().weak());
            }
            ui.add_space(6.0);
            ui.label("Paste the token the server was started with (--token or RUNBOARD_TOKEN).");
            let mut submit = false;
            ui.horizontal(|ui| {
                let label = ui.label("Token");
                let field = ui
                    .add(
                        egui::TextEdit::singleline(&mut state.token_input)
                            .password(true)
                            .desired_width(260.0),
                    )
                    .labelled_by(label.id);
                submit |= field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                submit |= ui.button("Connect").clicked();
            });
            #[cfg(target_arch = "wasm32")]
            ui.label(
                RichText::new("It is kept in this browser's local storage for the next visit.")
                    .small()
                    .weak(),
            );
            let token = state.token_input.trim().to_owned();
            if submit && !token.is_empty() {
                actions.push(Action::SetToken(token));
                state.token_input.clear();
            }
        });
}
