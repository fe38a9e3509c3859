//! The Models view: each server's models, read only from the `model_list` data event of a
//! models job, never from its narration.

use super::spec::{ViewNeeds, ViewSpec};
use egui::RichText;
use runboard_api::Feature;

use super::format::{badge, status_color};
use crate::board::{Board, Server};
use crate::ui::Action;
use runboard_api::units::bytes;
use runboard_api::{RunStatus, UpstreamModels};

/// The Models view.
pub const VIEW: ViewSpec = ViewSpec {
    key: "models",
    label: "Models",
    about: "The servers' models",
    needs: ViewNeeds::ModelLists,
    with_feed: false,
    ticks: |_| false,
    draw: |ui, board, _, _, actions| models_ui(ui, board, actions),
};

/// Draws every server's model list.
pub fn models_ui(ui: &mut egui::Ui, board: &Board, actions: &mut Vec<Action>) {
    egui::ScrollArea::vertical()
        .id_salt("models")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for (index, server) in board.servers.iter().enumerate() {
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
    if let Some(goodput) = server.fleet.as_ref().and_then(|f| f.goodput.as_ref()) {
        goodput_ui(ui, index, goodput);
    }
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
    upstreams_ui(ui, index, &list.upstreams);
    if list.models.is_empty() {
        ui.label(RichText::new("The server reports no models.").weak());
        return;
    }
    let by_upstream = list.models.iter().any(|m| m.upstream.is_some());
    let fastest = list
        .models
        .iter()
        .filter_map(|m| m.tok_per_sec)
        .fold(0.0_f64, f64::max);
    egui::Grid::new(("models-grid", index))
        .striped(true)
        .num_columns(5 + usize::from(by_upstream))
        .spacing([18.0, 6.0])
        .show(ui, |ui| {
            if by_upstream {
                ui.label(RichText::new("Upstream").strong());
            }
            for header in ["Model", "Id", "Size", "Context", "Typical tok/s"] {
                ui.label(RichText::new(header).strong());
            }
            ui.end_row();
            for info in &list.models {
                if by_upstream {
                    ui.label(RichText::new(info.upstream.as_deref().unwrap_or("—")).strong());
                }
                let name = if info.name.is_empty() {
                    &info.id
                } else {
                    &info.name
                };
                ui.label(name);
                ui.label(RichText::new(&info.id).monospace().weak());
                ui.label(info.size_bytes.map_or_else(|| "—".into(), bytes));
                ui.label(info.context_length.map_or_else(|| "—".into(), context));
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
                        ui.label("—").on_hover_text(
                            "Real models are measured as they run: see the cards, the chain's \
                             step lines and the Upstreams view",
                        );
                    }
                }
                ui.end_row();
            }
        });
}

/// Goodput of the last minute against the server's objective: the fleet, then each model.
fn goodput_ui(ui: &mut egui::Ui, index: usize, goodput: &runboard_api::Goodput) {
    ui.label(RichText::new(format!("Goodput over the last minute ({})", goodput.slo)).strong())
        .on_hover_text(
            "The share of calls that met the objective set with `serve --slo`: time to first \
             token and mean inter-token latency; a failed call never meets it",
        );
    let row = |ui: &mut egui::Ui, name: &str, calls: u64, met: u64, share: Option<f64>| {
        ui.label(name);
        ui.label(format!("{met} of {calls} calls"));
        match share {
            #[allow(clippy::cast_possible_truncation)] // A fraction for a bar.
            Some(share) => {
                ui.add(
                    egui::ProgressBar::new(share as f32)
                        .desired_width(160.0)
                        .text(format!("{:.0}%", share * 100.0)),
                );
            }
            None => {
                ui.label(RichText::new("no calls").weak());
            }
        }
        ui.end_row();
    };
    egui::Grid::new(("models-goodput", index))
        .striped(true)
        .num_columns(3)
        .spacing([18.0, 6.0])
        .show(ui, |ui| {
            row(ui, "fleet", goodput.calls, goodput.met, goodput.share());
            for per_model in &goodput.models {
                let (calls, met) = (per_model.calls, per_model.met);
                row(ui, &per_model.model, calls, met, per_model.share());
            }
        });
    ui.add_space(8.0);
}

/// A context length for people: whole thousands as `32k`, anything else exactly.
fn context(tokens: u64) -> String {
    if tokens >= 1024 && tokens.is_multiple_of(1024) {
        format!("{}k tokens", tokens / 1024)
    } else {
        format!("{tokens} tokens")
    }
}

/// The model servers a server generates on: reachable with their model count, or the error.
fn upstreams_ui(ui: &mut egui::Ui, index: usize, upstreams: &[UpstreamModels]) {
    if upstreams.is_empty() {
        return;
    }
    egui::Grid::new(("models-upstreams", index))
        .num_columns(4)
        .spacing([14.0, 4.0])
        .show(ui, |ui| {
            for upstream in upstreams {
                ui.label(RichText::new(&upstream.name).strong());
                ui.label(RichText::new(&upstream.url).monospace().weak());
                if upstream.reachable {
                    badge(ui, "reachable", egui::Color32::from_rgb(60, 160, 90));
                    ui.label(format!("{} model(s)", upstream.models));
                } else {
                    let color = status_color(RunStatus::Failed);
                    badge(ui, "unreachable", color);
                    let error = upstream.error.as_deref().unwrap_or("not read yet");
                    ui.label(RichText::new(error).color(color))
                        .on_hover_text(error);
                }
                ui.end_row();
            }
        });
    ui.add_space(6.0);
}
