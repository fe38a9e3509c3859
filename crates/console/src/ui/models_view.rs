//! The Models view: each server's models, read only from the `model_list` data event of a
//! models job, never from its narration.

use egui::RichText;
use runboard_api::Feature;

use super::Action;
use crate::board::{Board, Server};
use runboard_api::units::bytes;

/// Draws every server's model list.
pub fn models_ui(ui: &mut egui::Ui, model: &Board, actions: &mut Vec<Action>) {
    egui::ScrollArea::vertical()
        .id_salt("models")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for (index, server) in model.servers.iter().enumerate() {
                server_models_ui(ui, index, server, actions);
                ui.add_space(12.0);
            }
        });
}

fn server_models_ui(ui: &mut egui::Ui, index: usize, server: &Server, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.heading(format!("Models on {}", server.label));
        let offered = server
            .health
            .as_ref()
            .is_none_or(|h| h.has(Feature::Models));
        if server.models_pending {
            ui.spinner();
        } else if offered
            && ui
                .button("Refresh")
                .on_hover_text("Run a models job on this server")
                .clicked()
        {
            actions.push(Action::ListModels(index));
        }
    });
    let Some(list) = &server.models else {
        let text = match &server.health {
            Some(health) if !health.has(Feature::Models) => {
                "This server does not offer a models job."
            }
            _ if server.models_pending => "Asking the server for its models…",
            _ => "Waiting for the server.",
        };
        ui.label(RichText::new(text).weak());
        return;
    };
    if list.models.is_empty() {
        ui.label(RichText::new("The server reports no models.").weak());
        return;
    }
    let fastest = list
        .models
        .iter()
        .filter_map(|m| m.tok_per_sec)
        .fold(0.0_f64, f64::max);
    egui::Grid::new(("models-grid", index))
        .striped(true)
        .num_columns(5)
        .spacing([18.0, 6.0])
        .show(ui, |ui| {
            for header in ["Model", "Id", "Size", "Context", "Typical tok/s"] {
                ui.label(RichText::new(header).strong());
            }
            ui.end_row();
            for info in &list.models {
                let name = if info.name.is_empty() {
                    &info.id
                } else {
                    &info.name
                };
                ui.label(name);
                ui.label(RichText::new(&info.id).monospace().weak());
                ui.label(info.size_bytes.map_or_else(|| "—".into(), bytes));
                ui.label(
                    info.context_length
                        .map_or_else(|| "—".into(), |c| format!("{}k tokens", c / 1024)),
                );
                match info.tok_per_sec {
                    Some(rate) => {
                        #[allow(clippy::cast_possible_truncation)] // A fraction for a bar.
                        let share = if fastest > 0.0 {
                            (rate / fastest) as f32
                        } else {
                            0.0
                        };
                        ui.add(
                            egui::ProgressBar::new(share)
                                .desired_width(140.0)
                                .text(format!("{rate:.0}")),
                        );
                    }
                    None => {
                        ui.label("—");
                    }
                }
                ui.end_row();
            }
        });
}
