//! The top bar: servers, workers live, aggregate tok/s with its sparkline, totals, and the
//! launch form.

use egui::RichText;

use super::format::{badge, link_color, rate, sparkline_ui, tokens};
use super::upstreams_view::upstreams_strip_ui;
use crate::board::Board;
use crate::ui::Action;
use crate::ui::state::{FocusTarget, UiState};
use runboard_api::{Action as ApiAction, Role, RunStatus};

/// Draws the summary bar (and the launch form when open).
pub fn summary_ui(
    ui: &mut egui::Ui,
    board: &Board,
    state: &mut UiState,
    now: f64,
    actions: &mut Vec<Action>,
) {
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.label(RichText::new("runboard").size(18.0).strong());
        ui.separator();
        servers_ui(ui, board, now);
        ui.separator();
        // The figures leave the buttons their room; those that do not fit are listed under a
        // "+N" (a 1,280-pixel window ran them under the buttons).
        let buttons = buttons_width(ui, board);
        totals_ui(ui, board, now, buttons);
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            buttons_ui(ui, board, state, actions);
        });
    });
    if board
        .servers
        .iter()
        .any(|server| !server.upstreams.is_empty())
    {
        ui.horizontal(|ui| {
            ui.label(RichText::new("model servers").small().weak())
                .on_hover_text("What the model servers say about their own load (Upstreams view)");
            upstreams_strip_ui(ui, board);
        });
    }
    if state.launch_open {
        launch_form_ui(ui, board, state, actions);
    }
    ui.add_space(4.0);
}

/// Settings, Clear finished, and Cancel all and Launch for a token that may use them.
fn buttons_ui(ui: &mut egui::Ui, board: &Board, state: &mut UiState, actions: &mut Vec<Action>) {
    if ui
        .button("Settings…")
        .on_hover_text("Smoothing, stall threshold, auto-clear")
        .clicked()
    {
        state.settings_open = !state.settings_open;
    }
    if ui
        .button("Clear finished")
        .on_hover_text("Remove the cards of finished runs")
        .clicked()
    {
        actions.push(Action::ClearFinished);
    }
    // A token that may not cancel or launch (a viewer's) gets no such buttons.
    if board.may_anywhere(ApiAction::Cancel)
        && ui
            .button("Cancel all")
            .on_hover_text("Cancel every queued and running run")
            .clicked()
    {
        actions.push(Action::CancelAll);
    }
    if board.may_anywhere(ApiAction::Launch) {
        let launch = ui
            .add(egui::Button::new("Launch…").selected(state.launch_open))
            .on_hover_text("Launch a batch of runs (L)");
        if launch.clicked() {
            state.launch_open = !state.launch_open;
            state.focus = state.launch_open.then_some(FocusTarget::Task);
        }
    } else {
        state.launch_open = false;
    }
}

/// The buttons' labels, as [`buttons_ui`] shows them to this token.
fn button_labels(board: &Board) -> Vec<&'static str> {
    let mut labels = vec!["Settings…", "Clear finished"];
    if board.may_anywhere(ApiAction::Cancel) {
        labels.push("Cancel all");
    }
    if board.may_anywhere(ApiAction::Launch) {
        labels.push("Launch…");
    }
    labels
}

/// The width [`buttons_ui`] takes, with the spacing before it.
fn buttons_width(ui: &egui::Ui, board: &Board) -> f32 {
    let spacing = ui.spacing();
    let (padding, gap) = (spacing.button_padding.x, spacing.item_spacing.x);
    button_labels(board)
        .into_iter()
        .map(|label| text_width(ui, RichText::new(label)) + 2.0 * padding + gap)
        .sum::<f32>()
        + gap
}

/// Each server with the state of its connection.
fn servers_ui(ui: &mut egui::Ui, board: &Board, now: f64) {
    for server in &board.servers {
        let (text, color) = match (&server.error, &server.link) {
            (Some(_), _) => ("error".to_owned(), egui::Color32::from_rgb(210, 60, 60)),
            (None, Some(link)) => (link.label(now), link_color(link)),
            (None, None) if server.health.is_some() => (
                "per-run streams".to_owned(),
                egui::Color32::from_rgb(46, 160, 67),
            ),
            (None, None) => (
                "connecting".to_owned(),
                egui::Color32::from_rgb(128, 128, 140),
            ),
        };
        ui.label(RichText::new(&server.label).monospace());
        let hover = server
            .error
            .clone()
            .unwrap_or_else(|| format!("{}: {text}", server.url));
        badge(ui, &text, color).on_hover_text(hover);
        role_badge_ui(ui, server);
        if let (Some(redaction), Some(note)) = (server.redaction(), server.redaction_note()) {
            let text = if redaction.withholds_answers() {
                "no text"
            } else {
                "no prompts"
            };
            badge(ui, text, ui.visuals().weak_text_color()).on_hover_text(note);
        }
        if let Some(store) = server.store.as_ref().filter(|store| !store.writable) {
            let why = store.error.as_deref().unwrap_or("no reason given");
            badge(
                ui,
                "store full or read-only",
                egui::Color32::from_rgb(210, 60, 60),
            )
            .on_hover_text(format!(
                "The server cannot store anything: {why}. New runs are refused; running \
                     runs are held and go on once it can write again."
            ));
        }
    }
}

/// The role of our token on `server`, when it is not an admin's: why controls are missing.
fn role_badge_ui(ui: &mut egui::Ui, server: &crate::board::Server) {
    let Some(access) = server.access.as_ref().filter(|a| a.role != Role::Admin) else {
        return;
    };
    let name = access
        .name
        .as_deref()
        .map_or_else(String::new, |name| format!(" ({name})"));
    let may: Vec<&str> = access.may.iter().map(|action| action.describe()).collect();
    badge(ui, access.role.as_str(), ui.visuals().weak_text_color()).on_hover_text(format!(
        "This token{name} is a {}'s: it may {} only. Launch, Cancel and benchmarks need an \
         admin's token.",
        access.role,
        may.join(" and ")
    ));
}

/// Workers live, aggregate tok/s with its sparkline, tokens, and outcomes, as many as fit.
fn totals_ui(ui: &mut egui::Ui, board: &Board, now: f64, keep_free: f32) {
    let mut row = StatRow::new(ui, keep_free);
    row.stat(
        &board.live_workers().to_string(),
        "live",
        "Workers not finished yet",
    );
    row.stat(
        &rate(board.current_rate(now)),
        "tok/s",
        "Tokens per second of the workers generating now (stalled ones count 0)",
    );
    if !board.total_rate.history().is_empty() && row.fits(SPARKLINE_WIDTH) {
        sparkline_ui(
            row.ui,
            "total-rate",
            board.total_rate.history(),
            [SPARKLINE_WIDTH, 28.0],
        )
        .on_hover_text("tok/s over all workers, last 60 s");
    }
    row.stat(
        &tokens(board.total_tokens()),
        "tokens",
        "Tokens generated by the cards shown",
    );
    row.stat(
        &format!("{:.1}", board.call_rates.per_sec(now)),
        "calls/s",
        "Calls (or runs) that ended a second, over the last minute",
    );
    row.stat(
        &format!("{:.0}", board.call_rates.failures_per_min(now)),
        "failed/min",
        "Calls (or runs) that failed, over the last minute",
    );
    goodput_ui(&mut row, board);
    row.stat(
        &board.finished_count(RunStatus::Completed).to_string(),
        "completed",
        "Runs that completed while watched",
    );
    row.stat(
        &board.finished_count(RunStatus::Failed).to_string(),
        "failed",
        "Runs that failed while watched",
    );
    row.finish();
}

/// The aggregate tok/s sparkline's width in the top bar.
const SPARKLINE_WIDTH: f32 = 140.0;

/// Room kept at the end of the figures for the "+N" of those left out.
const MORE_WIDTH: f32 = 36.0;

/// Figures laid out in order while they fit; from the first that does not, the rest are
/// listed under a "+N" whose hover names them.
struct StatRow<'u> {
    ui: &'u mut egui::Ui,
    /// Width kept free after the figures (the buttons').
    keep_free: f32,
    left_out: Vec<String>,
}

impl<'u> StatRow<'u> {
    fn new(ui: &'u mut egui::Ui, keep_free: f32) -> Self {
        Self {
            ui,
            keep_free,
            left_out: Vec::new(),
        }
    }

    /// Whether `width` more (and a "+N" after it) fits, and nothing was left out before.
    fn fits(&self, width: f32) -> bool {
        self.left_out.is_empty()
            && width + self.ui.spacing().item_spacing.x + MORE_WIDTH + self.keep_free
                <= self.ui.available_width()
    }

    fn stat(&mut self, value: &str, unit: &str, explanation: &str) {
        let value_text = RichText::new(value).strong().monospace().size(16.0);
        let unit_text = RichText::new(unit).weak();
        let width = text_width(self.ui, value_text.clone())
            + self.ui.spacing().item_spacing.x
            + text_width(self.ui, unit_text.clone());
        if self.fits(width) {
            self.ui.label(value_text).on_hover_text(explanation);
            self.ui.label(unit_text);
        } else {
            self.left_out.push(format!("{value} {unit}"));
        }
    }

    fn finish(self) {
        if self.left_out.is_empty() {
            return;
        }
        self.ui
            .label(RichText::new(format!("+{}", self.left_out.len())).weak())
            .on_hover_text(format!(
                "Left out for want of room: {}",
                self.left_out.join(", ")
            ));
    }
}

/// The width `text` takes on one line.
fn text_width(ui: &egui::Ui, text: RichText) -> f32 {
    egui::WidgetText::from(text)
        .into_galley(
            ui,
            Some(egui::TextWrapMode::Extend),
            f32::INFINITY,
            egui::TextStyle::Body,
        )
        .size()
        .x
}

/// The share of the last minute's calls that met the servers' objective (`serve --slo`), over
/// every server that measures it.
fn goodput_ui(row: &mut StatRow<'_>, board: &Board) {
    let measured: Vec<(&str, &runboard_api::Goodput)> = board
        .servers
        .iter()
        .filter_map(|s| Some((s.label.as_str(), s.fleet.as_ref()?.goodput.as_ref()?)))
        .collect();
    if measured.is_empty() {
        return;
    }
    let calls: u64 = measured.iter().map(|(_, g)| g.calls).sum();
    let met: u64 = measured.iter().map(|(_, g)| g.met).sum();
    let value = if calls == 0 {
        "—".to_owned()
    } else {
        #[allow(clippy::cast_precision_loss)] // Call counts far below 2^52.
        let share = met as f64 / calls as f64;
        format!("{:.0}%", share * 100.0)
    };
    let objectives: Vec<String> = measured
        .iter()
        .map(|(label, g)| format!("{label}: {}", g.slo))
        .collect();
    row.stat(
        &value,
        "goodput",
        &format!(
            "Of the last minute's {calls} calls, {met} met the objective ({}); per model in \
             the Models view",
            objectives.join("; ")
        ),
    );
}

/// The model the batch asks for, from the server's model list (real models carry their
/// upstream); "server's choice" leaves it out. Without a list yet, a button asks for one.
fn model_choice_ui(
    ui: &mut egui::Ui,
    board: &Board,
    form: &mut crate::ui::state::LaunchForm,
    actions: &mut Vec<Action>,
) {
    let Some(server) = board.servers.get(form.server) else {
        return;
    };
    match &server.models {
        Some(list) if !list.models.is_empty() => {
            let shown = if form.model.is_empty() {
                "server's choice"
            } else {
                form.model.as_str()
            };
            let label = ui.label("Model");
            egui::ComboBox::from_id_salt("launch-model")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut form.model, String::new(), "server's choice");
                    for info in &list.models {
                        let label = match &info.upstream {
                            Some(upstream) => format!("{} @ {upstream}", info.id),
                            None => info.id.clone(),
                        };
                        ui.selectable_value(&mut form.model, info.id.clone(), label);
                    }
                })
                .response
                .labelled_by(label.id)
                .on_hover_text("The model every run of the batch asks for (params.model)");
        }
        _ if server.models_pending => {
            ui.spinner();
        }
        _ => {
            let offered = server
                .health
                .as_ref()
                .is_none_or(|h| h.has(runboard_api::Feature::Models));
            if offered
                && ui
                    .small_button("Models…")
                    .on_hover_text("Ask the server for its models, to pick one for the batch")
                    .clicked()
            {
                actions.push(Action::ListModels(form.server));
            }
        }
    }
}

fn launch_form_ui(
    ui: &mut egui::Ui,
    board: &Board,
    state: &mut UiState,
    actions: &mut Vec<Action>,
) {
    ui.separator();
    let focus_task = state.take_focus(FocusTarget::Task);
    ui.horizontal(|ui| {
        let form = &mut state.launch;
        let label = ui.label("Task");
        let task = ui
            .add(
                egui::TextEdit::singleline(&mut form.task)
                    .desired_width(360.0)
                    .hint_text("What should every worker do?"),
            )
            .labelled_by(label.id);
        if focus_task {
            task.request_focus();
        }
        ui.label("Workers");
        ui.add(egui::DragValue::new(&mut form.count).range(1..=256))
            .on_hover_text("How many runs to launch (1 to 256)");
        ui.label("Stagger");
        ui.add(
            egui::DragValue::new(&mut form.stagger_ms)
                .range(0..=10_000)
                .suffix(" ms"),
        )
        .on_hover_text("Time between submissions, so a batch does not hit the server at once");
        ui.checkbox(&mut form.inline, "Inline")
            .on_hover_text("Each request waits until its run finishes");
        if board.servers.len() > 1 {
            egui::ComboBox::new("launch-server", "Server")
                .selected_text(
                    board
                        .servers
                        .get(form.server)
                        .map_or("?", |s| s.label.as_str()),
                )
                .show_ui(ui, |ui| {
                    for (index, server) in board.servers.iter().enumerate() {
                        ui.selectable_value(&mut form.server, index, &server.label);
                    }
                });
        }
        model_choice_ui(ui, board, form, actions);
        let ready = !form.task.trim().is_empty();
        let submit = task.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.add_enabled(ready, egui::Button::new("Launch")).clicked() || (ready && submit) {
            actions.push(Action::Launch);
        }
    });
}
