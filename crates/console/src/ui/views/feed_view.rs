//! The generation feed: runs newest first with their summary snippet, a text and status filter,
//! and EXPAND for a run's whole event chain. Only visible rows are laid out.

use egui::RichText;

use super::format::{self, badge, seconds, status_color, tokens};
use crate::board::{Board, ChainLine, FeedEntry, RunKey, StepLine, chain};
use crate::ui::state::{FocusTarget, UiState};
use runboard_api::RunStatus;

const ROW_HEIGHT: f32 = 58.0;

/// Whether an entry passes the filter.
pub fn matches(entry: &FeedEntry, board: &Board, text: &str, status: Option<RunStatus>) -> bool {
    if status.is_some_and(|status| entry.summary.status != status) {
        return false;
    }
    if text.is_empty() {
        return true;
    }
    let needle = text.to_lowercase();
    let snippet = entry.summary.snippet.as_deref().unwrap_or("");
    [
        entry.key.run_id.as_str(),
        entry.summary.task.as_str(),
        snippet,
        entry.summary.worker.as_deref().unwrap_or(""),
    ]
    .iter()
    .any(|hay| hay.to_lowercase().contains(&needle))
        || board
            .feed
            .snippet(&entry.key)
            .is_some_and(|s| s.to_lowercase().contains(&needle))
}

/// Draws the feed panel.
pub fn feed_ui(ui: &mut egui::Ui, board: &Board, state: &mut UiState) {
    ui.horizontal(|ui| {
        ui.heading("Feed");
        ui.label(RichText::new(format!("{} runs", board.feed.len())).weak());
    });
    ui.horizontal(|ui| {
        let label = ui.label("Filter");
        let filter = ui
            .add(
                egui::TextEdit::singleline(&mut state.filter_text)
                    .hint_text("id, task, text or worker  (/)")
                    .desired_width(ui.available_width() - 170.0),
            )
            .labelled_by(label.id);
        if state.take_focus(FocusTarget::Filter) {
            filter.request_focus();
        }
        egui::ComboBox::new("feed-status", "Status")
            .selected_text(state.filter_status.map_or("any status", RunStatus::as_str))
            .width(100.0)
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut state.filter_status, None, "any status");
                for status in RunStatus::ALL {
                    ui.selectable_value(&mut state.filter_status, Some(status), status.as_str());
                }
            });
    });
    if let Some(worker) = state.filter_worker.clone() {
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("Calls of worker {worker}")).strong());
            if ui
                .small_button("All workers")
                .on_hover_text("Show every worker's calls again")
                .clicked()
            {
                state.filter_worker = None;
            }
        });
    }
    ui.separator();
    let worker = state.filter_worker.as_deref();
    let visible: Vec<&FeedEntry> = board
        .feed
        .entries()
        .filter(|entry| worker.is_none_or(|w| entry.summary.worker.as_deref() == Some(w)))
        .filter(|entry| matches(entry, board, &state.filter_text, state.filter_status))
        .collect();
    if visible.is_empty() {
        ui.add_space(20.0);
        ui.vertical_centered(|ui| {
            let text = if board.feed.is_empty() {
                "No runs yet. Finished runs appear here with their whole chain."
            } else {
                "No run matches the filter."
            };
            ui.label(RichText::new(text).weak());
        });
        return;
    }
    egui::ScrollArea::vertical()
        .id_salt("feed")
        .auto_shrink([false, false])
        .show_rows(ui, ROW_HEIGHT, visible.len(), |ui, rows| {
            for entry in &visible[rows] {
                row_ui(ui, board, entry, state);
            }
        });
}

fn row_ui(ui: &mut egui::Ui, board: &Board, entry: &FeedEntry, state: &mut UiState) {
    let summary = &entry.summary;
    let detail = board.feed.detail(&entry.key);
    ui.allocate_ui([ui.available_width(), ROW_HEIGHT].into(), |ui| {
        ui.vertical(|ui| {
            ui.horizontal(|ui| {
                badge(ui, summary.status.as_str(), status_color(summary.status));
                ui.label(RichText::new(&entry.key.run_id).monospace());
                if let Some(worker) = &summary.worker {
                    ui.add(
                        egui::Label::new(
                            RichText::new(format::first_chars(worker, 18))
                                .small()
                                .strong(),
                        )
                        .truncate(),
                    )
                    .on_hover_text(format!("The worker that made this call: {worker}"));
                }
                ui.label(RichText::new(format!("{} tok", tokens(summary.tokens_out))).weak());
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let open = state.expanded.contains(&entry.key);
                    let button =
                        egui::Button::new(if open { "Collapse" } else { "Expand" }).small();
                    let clicked = ui
                        .add_enabled(detail.is_some(), button)
                        .on_hover_text("Show every event of the run in order")
                        .on_disabled_hover_text("The chain is being fetched")
                        .clicked();
                    if clicked && !state.expanded.remove(&entry.key) {
                        state.expanded.insert(entry.key.clone());
                    }
                    if ui.small_button("Copy id").clicked() {
                        ui.ctx().copy_text(entry.key.run_id.clone());
                    }
                });
            });
            let snippet = board
                .feed
                .snippet(&entry.key)
                .or(summary.snippet.as_deref())
                .unwrap_or("");
            let text = if snippet.is_empty() {
                summary.task.as_str()
            } else {
                snippet
            };
            ui.horizontal(|ui| {
                if board.servers.len() > 1 {
                    let server = &board.servers[entry.key.server].label;
                    ui.label(RichText::new(format!("@{server}")).small().weak())
                        .on_hover_text("The server this run belongs to");
                }
                let text = format::printable(text);
                ui.add(egui::Label::new(RichText::new(text.as_ref()).small()).truncate())
                    .on_hover_text(text.as_ref());
            });
        });
    });
    ui.separator();
}

/// The chain windows of expanded runs.
pub fn chain_windows_ui(ctx: &egui::Context, board: &Board, state: &mut UiState) {
    let mut closed: Vec<RunKey> = Vec::new();
    for key in &state.expanded {
        let Some(detail) = board.feed.detail(key) else {
            continue;
        };
        let mut open = true;
        egui::Window::new(format!("Chain of {}", key.run_id))
            .id(egui::Id::unique(("chain", key)))
            .open(&mut open)
            .default_size([560.0, 420.0])
            .pivot(egui::Align2::CENTER_CENTER)
            .default_pos(ctx.content_rect().center())
            .show(ctx, |ui| {
                ui.label(RichText::new(&detail.summary.task).weak());
                ui.separator();
                egui::ScrollArea::vertical().show(ui, |ui| {
                    for line in chain(detail) {
                        chain_line_ui(ui, &line);
                    }
                });
            });
        if !open {
            closed.push(key.clone());
        }
    }
    for key in closed {
        state.expanded.remove(&key);
    }
}

fn agent_label(agent: &str, iteration: Option<u64>) -> String {
    match iteration {
        Some(i) => format!("{agent} · it {i}"),
        None => agent.to_owned(),
    }
}

/// A finished step: its tokens, first-token times, latency and rate, set apart as a summary.
fn step_line_ui(ui: &mut egui::Ui, step: &StepLine) {
    ui.horizontal_wrapped(|ui| {
        badge(ui, "step", egui::Color32::from_rgb(60, 130, 170));
        ui.label(
            RichText::new(agent_label(&step.agent, step.iteration))
                .strong()
                .monospace(),
        );
        let approx = if step.estimated { "~" } else { "" };
        let mut parts = vec![format!("{approx}{} tok", tokens(step.tokens))];
        if let Some(rate) = step.tok_per_sec {
            parts.push(format!("{} tok/s", format::rate(rate)));
        }
        if let Some(ttft) = step.ttft_ms {
            parts.push(format!("TTFT {}", seconds(ttft / 1000.0)));
        }
        if let Some(ttfat) = step.ttfat_ms {
            parts.push(format!("answer after {}", seconds(ttfat / 1000.0)));
        }
        if let Some(itl) = step.itl_p50_ms {
            parts.push(format!("ITL p50 {itl:.1} ms"));
        }
        if step.tries > 1 {
            parts.push(format!("{} tries", step.tries));
        }
        if let Some(reason) = &step.finish_reason {
            parts.push(format!("stop: {reason}"));
        }
        ui.label(RichText::new(parts.join(" · ")).monospace().small())
            .on_hover_text(
                "Measured by the server from the model server's stream: time to first token, \
                 to the first answer token after reasoning, median gap between tokens, and \
                 decode rate",
            );
    });
}

fn chain_line_ui(ui: &mut egui::Ui, line: &ChainLine) {
    match line {
        ChainLine::Node {
            agent,
            iteration,
            tokens: count,
            snippet,
            reasoning,
            estimated,
        } => {
            ui.horizontal_wrapped(|ui| {
                ui.label(
                    RichText::new(agent_label(agent, *iteration))
                        .strong()
                        .monospace(),
                );
                if let Some(count) = count {
                    let approx = if *estimated { "~" } else { "" };
                    ui.label(RichText::new(format!("{approx}{} tok", tokens(*count))).weak());
                }
                if let Some(reasoning) = reasoning {
                    ui.label(
                        RichText::new(format!("reasoning: {reasoning}"))
                            .italics()
                            .weak(),
                    )
                    .on_hover_text("The model's reasoning, kept apart from its answer");
                }
                ui.label(snippet);
            });
        }
        ChainLine::Step(step) => step_line_ui(ui, step),
        ChainLine::ToolCall {
            agent,
            name,
            arguments,
        } => {
            ui.horizontal_wrapped(|ui| {
                badge(ui, "tool call", egui::Color32::from_rgb(110, 110, 200));
                ui.label(RichText::new(agent).weak());
                ui.label(RichText::new(format!("{name}({arguments})")).monospace());
            });
        }
        ChainLine::Note { level, text } => {
            ui.horizontal_wrapped(|ui| {
                let color = if level == "error" {
                    status_color(RunStatus::Failed)
                } else {
                    egui::Color32::from_rgb(210, 130, 30)
                };
                badge(ui, level, color);
                ui.label(RichText::new(text).color(color));
            });
        }
        ChainLine::Status { status, message } => {
            let status_value = RunStatus::parse(status).unwrap_or(RunStatus::Unknown);
            ui.horizontal(|ui| {
                badge(ui, status, status_color(status_value));
                if let Some(message) = message {
                    ui.label(RichText::new(message).italics());
                }
            });
        }
        ChainLine::Error(message) => {
            ui.horizontal(|ui| {
                badge(ui, "error", status_color(RunStatus::Failed));
                ui.label(RichText::new(message).color(status_color(RunStatus::Failed)));
            });
        }
        ChainLine::End(status) => {
            ui.horizontal(|ui| {
                let status_value = RunStatus::parse(status).unwrap_or(RunStatus::Unknown);
                badge(ui, &format!("end: {status}"), status_color(status_value));
            });
        }
    }
}
