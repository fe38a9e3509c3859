//! The worker cards: a responsive grid, one card per worker (a named worker across its calls,
//! or a run that is its own worker), only visible rows laid out.

use egui::{Align, Layout, RichText, Vec2};

use super::format::{
    badge, first_chars, link_color, printable, rate, seconds, sparkline_ui, status_color, tokens,
};
use super::spec::{ViewNeeds, ViewSpec};
use crate::board::{Board, Card, Worker};
use crate::ui::Action;
use crate::ui::state::UiState;
use runboard_api::Action as ApiAction;

/// A card's size: wide enough for a readable snippet, tall enough for four lines of it.
const CARD_WIDTH: f32 = 310.0;
const CARD_HEIGHT: f32 = 236.0;
const GAP: f32 = 10.0;

/// The Workers view: the cards (or, before any, how to get some) beside the feed.
pub const VIEW: ViewSpec = ViewSpec {
    key: "workers",
    label: "Workers",
    about: "Worker cards and the feed",
    needs: ViewNeeds::Nothing,
    with_feed: true,
    ticks: |_| false,
    draw: |ui, board, state, now, actions| {
        if board.workers().is_empty() {
            empty_ui(ui, board, actions);
        } else {
            cards_ui(ui, board, state, now, actions);
        }
    },
};

/// Draws the grid of cards; returns what the user asked for.
pub fn cards_ui(
    ui: &mut egui::Ui,
    board: &Board,
    state: &mut UiState,
    now: f64,
    actions: &mut Vec<Action>,
) {
    let cards = board.cards();
    let available = ui.available_width();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // Small, positive.
    let columns = (((available + GAP) / (CARD_WIDTH + GAP)).floor() as usize).max(1);
    #[allow(clippy::cast_precision_loss)] // A handful of columns.
    let width = ((available - GAP * (columns as f32 - 1.0)) / columns as f32).max(200.0);
    let rows = cards.len().div_ceil(columns);
    let multi_server = board.servers.len() > 1;
    let selected = state
        .selected
        .as_ref()
        .and_then(|run| board.card_of_run(run))
        .map(|card| &card.key);
    let mut area = egui::ScrollArea::vertical()
        .id_salt("cards")
        .auto_shrink([false, false]);
    if std::mem::take(&mut state.scroll_to_selected)
        && let Some(index) = selected.and_then(|key| cards.iter().position(|c| &c.key == key))
    {
        // Only visible rows are laid out, so the offset is computed, not scrolled to.
        #[allow(clippy::cast_precision_loss)] // A row index.
        let offset = (index / columns) as f32 * (CARD_HEIGHT + GAP);
        area = area.vertical_scroll_offset(offset);
    }
    area.show_rows(ui, CARD_HEIGHT + GAP, rows, |ui, visible| {
        for row in visible {
            ui.horizontal(|ui| {
                ui.spacing_mut().item_spacing.x = GAP;
                for card in cards.iter().skip(row * columns).take(columns) {
                    let Some(worker) = card.current().and_then(|run| board.worker(run)) else {
                        continue;
                    };
                    let server =
                        multi_server.then(|| board.servers[card.key.server()].label.as_str());
                    let highlight = selected == Some(&card.key);
                    let shown = Shown {
                        card,
                        worker,
                        server,
                        highlight,
                    };
                    card_ui(ui, &shown, board, state, now, width, actions);
                }
            });
            ui.add_space(GAP - ui.spacing().item_spacing.y);
        }
    });
}

/// One card as drawn: the worker, the call it shows, where it is.
struct Shown<'a> {
    card: &'a Card,
    /// The call shown: the newest going on, else the latest finished.
    worker: &'a Worker,
    /// The server's label, when several are watched.
    server: Option<&'a str>,
    highlight: bool,
}

fn card_ui(
    ui: &mut egui::Ui,
    shown: &Shown<'_>,
    board: &Board,
    state: &mut UiState,
    now: f64,
    width: f32,
    actions: &mut Vec<Action>,
) {
    let (card, worker) = (shown.card, shown.worker);
    let mut frame = egui::Frame::group(ui.style())
        .fill(ui.visuals().faint_bg_color)
        .inner_margin(10.0)
        .corner_radius(8.0);
    if shown.highlight {
        let stroke = ui.visuals().selection.stroke;
        frame = frame.stroke(egui::Stroke::new(2.0, stroke.color));
    }
    let size = Vec2::new(width, CARD_HEIGHT);
    ui.allocate_ui_with_layout(size, Layout::top_down(Align::Min), |ui| {
        frame.show(ui, |ui| {
            ui.set_width(width - 22.0);
            ui.set_height(CARD_HEIGHT - 22.0);
            header_ui(ui, shown, board, state, now);
            let stalled = worker
                .stalled_for(now, board.settings.stall_after_secs)
                .is_some();
            rate_ui(ui, card, stalled);
            stats_ui(ui, worker, now);
            ui.add_space(2.0);
            // A worker's new call that has no text yet keeps the last call's on show, dimmed,
            // rather than blanking the card between calls.
            let earlier = (worker.snippet.is_empty() && worker.reasoning.is_empty())
                .then(|| card.last.as_ref().filter(|last| **last != worker.key))
                .flatten()
                .and_then(|last| board.worker(last))
                .filter(|last| !last.snippet.is_empty());
            let server = board.servers.get(card.key.server());
            let withheld = server
                .filter(|server| server.redaction().is_some_and(runboard_api::Redaction::withholds_answers))
                .and_then(crate::board::Server::redaction_note);
            match (withheld, earlier) {
                (Some(note), _) => withheld_ui(ui, note),
                (None, Some(last)) => snippet_ui(ui, "", &last.snippet, true),
                (None, None) => snippet_ui(ui, &worker.reasoning, &worker.snippet, false),
            }
            // The buttons sit at the card's foot, and a failure's reason on a line of its own
            // above them, cut to the card: beside the buttons a long one ran over them.
            ui.with_layout(Layout::bottom_up(Align::Min), |ui| {
                footer_ui(ui, card, worker, board, state, now, actions);
                if let Some(error) = &worker.error {
                    ui.add(
                        egui::Label::new(
                            RichText::new(error)
                                .small()
                                .color(status_color(worker.status)),
                        )
                        .truncate(),
                    )
                    .on_hover_text(error);
                }
            });
        });
    })
    .response
    .on_hover_text(&worker.task);
}

/// In place of the text, for a server that sends none: why, in the box the text would fill.
fn withheld_ui(ui: &mut egui::Ui, note: &str) {
    let width = ui.available_width();
    let (rect, response) = ui.allocate_exact_size(Vec2::new(width, 62.0), egui::Sense::hover());
    let visuals = ui.visuals();
    let font_id = egui::TextStyle::Small.resolve(ui.style());
    let text = "text not sent by this server";
    let galley = ui
        .painter()
        .layout(text.to_owned(), font_id, visuals.weak_text_color(), width);
    ui.painter().galley(rect.min, galley, visuals.weak_text_color());
    // Painted, so it is given a label for screen readers (and the UI tests) by hand.
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, text));
    response.on_hover_text(note);
}

/// How much reasoning a card shows above an answer that has begun: the answer is what counts.
const REASONING_BESIDE_ANSWER: usize = 70;

/// The live text, wrapped to at most four lines, in a fixed-height box so cards line up. A
/// model's reasoning is shown dimmed and in italics before the answer, and shrinks to its last
/// words once the answer begins. `earlier` text (the worker's last call, while its new one has
/// none yet) is dimmed.
fn snippet_ui(ui: &mut egui::Ui, reasoning: &str, snippet: &str, earlier: bool) {
    let (reasoning, snippet) = (printable(reasoning), printable(snippet));
    let (reasoning, snippet) = (reasoning.as_ref(), snippet.as_ref());
    let width = ui.available_width();
    let (rect, response) = ui.allocate_exact_size(Vec2::new(width, 62.0), egui::Sense::hover());
    let visuals = ui.visuals();
    let font_id = egui::TextStyle::Small.resolve(ui.style());
    let format = |color, italics| egui::TextFormat {
        font_id: font_id.clone(),
        color,
        italics,
        ..egui::TextFormat::default()
    };
    let mut job = egui::text::LayoutJob::default();
    let mut hover = None;
    if !reasoning.is_empty() {
        let shown = if snippet.is_empty() {
            reasoning.trim_start()
        } else {
            // Cut at a word, so the dimmed line does not start mid-word.
            let end = tail_chars(reasoning, REASONING_BESIDE_ANSWER);
            match end.split_once(' ') {
                Some((_, words)) if end.len() < reasoning.len() && !words.is_empty() => words,
                _ => end,
            }
        };
        let ellipsis = if shown.len() < reasoning.trim_start().len() {
            "…"
        } else {
            ""
        };
        job.append(
            &format!("reasoning: {ellipsis}{shown}"),
            0.0,
            format(visuals.weak_text_color(), true),
        );
        if !snippet.is_empty() {
            job.append("\n", 0.0, format(visuals.weak_text_color(), true));
        }
        hover = Some("Dimmed: the model's reasoning, kept apart from its answer");
    }
    if earlier {
        job.append(
            &format!("last call: {snippet}"),
            0.0,
            format(visuals.weak_text_color(), true),
        );
        hover = Some("The worker's last call; this one has no text yet");
    } else if !snippet.is_empty() {
        job.append(snippet, 0.0, format(visuals.text_color(), false));
    } else if reasoning.is_empty() {
        job.append(
            "waiting for text…",
            0.0,
            format(visuals.weak_text_color(), true),
        );
    }
    let color = visuals.text_color();
    job.wrap = egui::text::TextWrapping {
        max_width: width,
        max_rows: 4,
        break_anywhere: false,
        overflow_character: Some('…'),
    };
    let galley = ui.fonts_mut(|fonts| fonts.layout_job(job));
    ui.painter().galley(rect.min, galley, color);
    if let Some(hover) = hover {
        response.on_hover_text(hover);
    }
}

/// The last `max_chars` characters of `text`.
fn tail_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().rev().nth(max_chars.saturating_sub(1)) {
        Some((start, _)) => &text[start..],
        None => text,
    }
}

fn header_ui(ui: &mut egui::Ui, shown: &Shown<'_>, board: &Board, state: &mut UiState, now: f64) {
    let (card, worker) = (shown.card, shown.worker);
    ui.horizontal(|ui| {
        // A long name (a client's address and `User-Agent`) is cut to leave the badges room.
        let room = if card.live.len() > 1 { 22 } else { 30 };
        let text = RichText::new(first_chars(card.key.title(), room))
            .monospace()
            .strong();
        if let Some(name) = card.key.worker() {
            let title = ui
                .add(egui::Label::new(text).sense(egui::Sense::click()))
                .on_hover_text(format!(
                    "Worker {name}: its calls, one after another; showing {}. Click: its \
                     recent calls in the feed",
                    worker.key.run_id
                ));
            if title.clicked() {
                state.filter_worker = Some(name.to_owned());
            }
        } else {
            ui.label(text);
        }
        if let Some(server) = shown.server {
            ui.label(RichText::new(format!("@{server}")).small().weak())
                .on_hover_text("The server this worker's runs are on");
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            if let Some(idle) = card.idle_for(now).filter(|_| card.is_named()) {
                badge(
                    ui,
                    &format!("idle {}", seconds(idle)),
                    egui::Color32::from_rgb(128, 128, 140),
                )
                .on_hover_text(format!(
                    "No call going on since the last ended ({})",
                    worker.status.as_str()
                ));
            } else {
                badge(ui, worker.status.as_str(), status_color(worker.status));
            }
            if card.live.len() > 1 {
                badge(
                    ui,
                    &format!("{} in flight", card.live.len()),
                    egui::Color32::from_rgb(70, 130, 180),
                )
                .on_hover_text("Calls this worker has going on at once; the newest is shown");
            }
            let link = worker
                .link
                .as_ref()
                .or(board.servers[card.key.server()].link.as_ref());
            if worker.polled && !worker.status.is_finished() {
                badge(ui, "polled", egui::Color32::from_rgb(128, 128, 140)).on_hover_text(
                    "Not followed live: a browser allows few connections per server, so this \
                     run is updated from the feed's polls until a stream is free",
                );
            } else if let Some(link) = link.filter(|_| !card.is_named()) {
                badge(ui, &link.label(now), link_color(link))
                    .on_hover_text("The stream this card's events arrive on");
            }
        });
    });
}

fn rate_ui(ui: &mut egui::Ui, card: &Card, stalled: bool) {
    ui.horizontal(|ui| {
        // A stalled worker is not generating: its last rate would be a lie.
        let (value, hover) = if stalled {
            (
                RichText::new("—").size(26.0).strong().monospace().weak(),
                "No tokens for a while: the last rate no longer holds",
            )
        } else {
            (
                RichText::new(rate(card.rate.per_sec()))
                    .size(26.0)
                    .strong()
                    .monospace(),
                "Tokens per second: a moving average (α 0.3) of the rate between updates \
                 more than 100 ms apart",
            )
        };
        ui.label(value).on_hover_text(hover);
        ui.label(RichText::new("tok/s").weak());
    });
    let width = ui.available_width();
    sparkline_ui(ui, &card.key, card.rate.history(), [width, 38.0])
        .on_hover_text("tok/s over the last 60 s, across the worker's calls");
}

fn stats_ui(ui: &mut egui::Ui, worker: &Worker, now: f64) {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 10.0;
        let agent = worker.agent.as_deref().unwrap_or("—");
        ui.label(RichText::new(agent).strong())
            .on_hover_text("The agent working now");
        if let Some(iteration) = worker.iteration {
            ui.label(format!("it {iteration}"))
                .on_hover_text("Iteration of the agent loop");
        }
        if worker.estimated {
            ui.label(format!("~{} tok", tokens(worker.tokens_out)))
                .on_hover_text(
                    "Tokens generated so far, counted from the stream: the model server has not \
                 sent its own usage figure yet",
                );
        } else {
            ui.label(format!("{} tok", tokens(worker.tokens_out)))
                .on_hover_text("Tokens generated so far");
        }
        if let Some(elapsed) = worker.elapsed(now) {
            ui.label(seconds(elapsed))
                .on_hover_text("Time since the run started");
        }
        match worker.time_to_first_token() {
            Some(ttft) => {
                ui.label(format!("TTFT {}", seconds(ttft))).on_hover_text(
                    "Time to first token: from the start to the first token, on the server's clock",
                );
            }
            None if worker.tokens_out > 0 => {
                ui.label("TTFT —").on_hover_text(
                    "Time to first token: not known (the run was first seen mid-way, or the \
                     server sends no times)",
                );
            }
            None => {}
        }
    });
}

fn footer_ui(
    ui: &mut egui::Ui,
    card: &Card,
    worker: &Worker,
    board: &Board,
    state: &mut UiState,
    now: f64,
    actions: &mut Vec<Action>,
) {
    ui.horizontal(|ui| {
        if !worker.status.is_finished()
            && board.may(worker.key.server, ApiAction::Cancel)
            && ui
                .small_button("Cancel")
                .on_hover_text("Stop this call")
                .clicked()
        {
            actions.push(Action::Cancel(worker.key.clone()));
        }
        if let Some(name) = card.key.worker() {
            let counts = format!(
                "{} done{}",
                card.done,
                if card.failed > 0 {
                    format!(" · {} failed", card.failed)
                } else {
                    String::new()
                }
            );
            let calls = ui.small_button(counts).on_hover_text(format!(
                "Calls ended while watched: {} done, {} failed, {} cancelled; {} tokens in \
                     all. Click: this worker's recent calls in the feed",
                card.done,
                card.failed,
                card.cancelled,
                tokens(card.tokens_done)
            ));
            if calls.clicked() {
                state.filter_worker = Some(name.to_owned());
            }
        } else {
            if ui.small_button("Copy id").clicked() {
                ui.ctx().copy_text(worker.key.run_id.clone());
            }
            if !worker.snippet.is_empty() && ui.small_button("Copy text").clicked() {
                ui.ctx().copy_text(worker.snippet.clone());
            }
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            if let Some(silent) = worker.stalled_for(now, board.settings.stall_after_secs) {
                badge(
                    ui,
                    &format!("stalled {}", seconds(silent)),
                    egui::Color32::from_rgb(210, 130, 30),
                )
                .on_hover_text("No events from this worker for a while");
            } else if let Some(warning) = worker.warning.as_ref().filter(|_| worker.error.is_none()) {
                badge(ui, "interrupted", egui::Color32::from_rgb(210, 130, 30))
                    .on_hover_text(warning);
            }
        });
    });
}

/// What the Workers view shows before the first run: how to launch one.
fn empty_ui(ui: &mut egui::Ui, board: &Board, actions: &mut Vec<Action>) {
    ui.add_space(ui.available_height() * 0.3);
    ui.vertical_centered(|ui| {
        ui.heading("No workers yet");
        ui.label(
            egui::RichText::new(
                "Launch a batch of runs and every worker shows up here live: tokens per \
                 second, agent, iteration and the text as it is written.",
            )
            .weak(),
        );
        ui.add_space(10.0);
        if !board.may_anywhere(ApiAction::Launch) {
            ui.label(
                egui::RichText::new("This token may watch runs, not launch them.")
                    .small()
                    .weak(),
            );
            return;
        }
        if ui.button("Launch demo batch").clicked() {
            actions.push(Action::LaunchDemo);
        }
        ui.label(
            egui::RichText::new("or press L to launch your own")
                .small()
                .weak(),
        );
    });
}
