//! The Requests view: every server's requests in flight in one sortable table whose
//! durations tick live, with how each server's rows arrive (stream, polling, disabled).

use super::spec::{ViewNeeds, ViewSpec};
use std::cmp::Ordering;

use egui::RichText;

use runboard_api::RequestPhase;

use super::format::{self, badge, few_grid_marks, link_color, rate, seconds, tokens};
use crate::board::{Board, IN_FLIGHT_WINDOW_SECS, RequestRow, RequestsFeed, RunKey};
use crate::ui::View;
use crate::ui::state::{RequestColumn, RequestSort, UiState};

const COLUMNS: [(RequestColumn, &str); 11] = [
    (RequestColumn::Worker, "Worker"),
    (RequestColumn::Duration, "Duration"),
    (RequestColumn::Phase, "Phase"),
    (RequestColumn::Ttft, "TTFT"),
    (RequestColumn::Rate, "tok/s"),
    (RequestColumn::Model, "Model"),
    (RequestColumn::Resolved, "Resolved model"),
    (RequestColumn::Streaming, "Streaming"),
    (RequestColumn::Input, "In"),
    (RequestColumn::Output, "Out"),
    (RequestColumn::RequestId, "Request id"),
];

/// The Requests view.
pub const VIEW: ViewSpec = ViewSpec {
    key: "requests",
    label: "Requests",
    about: "Requests in flight",
    needs: ViewNeeds::RequestsStream,
    with_feed: false,
    ticks: |board| board.servers.iter().any(|s| !s.requests.rows().is_empty()),
    draw: |ui, board, state, now, _| requests_ui(ui, board, state, now),
};

/// Draws the connection line of each server and the table.
pub fn requests_ui(ui: &mut egui::Ui, board: &Board, state: &mut UiState, now: f64) {
    for server in &board.servers {
        ui.horizontal(|ui| {
            ui.label(RichText::new(&server.label).strong());
            let requests = &server.requests;
            match &requests.feed {
                RequestsFeed::Idle => {
                    badge(
                        ui,
                        "connecting",
                        link_color(&crate::board::Link::Connecting),
                    );
                }
                RequestsFeed::Streaming => match &requests.link {
                    Some(link) => {
                        badge(ui, &link.label(now), link_color(link));
                    }
                    None => {
                        badge(ui, "live", link_color(&crate::board::Link::Live));
                    }
                },
                RequestsFeed::Polling(reason) => {
                    badge(ui, "polling", egui::Color32::from_rgb(210, 130, 30)).on_hover_text(
                        if reason.is_empty() {
                            "the stream is unavailable"
                        } else {
                            reason
                        },
                    );
                    if !reason.is_empty() {
                        ui.label(RichText::new(reason).small().weak());
                    }
                }
                RequestsFeed::Disabled(message) => {
                    badge(ui, "metrics off", egui::Color32::from_rgb(128, 128, 140));
                    ui.label(RichText::new(message).small().weak());
                }
            }
            ui.label(
                RichText::new(format!("{} in flight", requests.rows().len()))
                    .small()
                    .weak(),
            );
        });
    }
    ui.separator();
    in_flight_plot_ui(ui, board, now);
    ui.add_space(4.0);
    let multi_server = board.servers.len() > 1;
    let mut rows: Vec<(usize, &str, &RequestRow)> = board
        .servers
        .iter()
        .enumerate()
        .flat_map(|(index, s)| {
            s.requests
                .rows()
                .iter()
                .map(move |row| (index, s.label.as_str(), row))
        })
        .collect();
    if rows.is_empty() {
        ui.add_space(8.0);
        ui.label(RichText::new("No request in flight.").weak());
        return;
    }
    let sort = state.requests_sort;
    rows.sort_by(|a, b| compare(a.2, b.2, sort, now));
    egui::ScrollArea::vertical()
        .id_salt("requests")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            egui::Grid::new("requests-grid")
                .striped(true)
                .num_columns(COLUMNS.len() + usize::from(multi_server))
                .spacing([20.0, 4.0])
                .show(ui, |ui| {
                    if multi_server {
                        ui.label(RichText::new("Server").strong());
                    }
                    for (column, title) in COLUMNS {
                        header_ui(ui, &mut state.requests_sort, column, title);
                    }
                    ui.end_row();
                    for (server, label, row) in rows {
                        if multi_server {
                            ui.label(label);
                        }
                        worker_ui(ui, board, state, server, row);
                        row_ui(ui, row, now);
                        ui.end_row();
                    }
                });
        });
}

/// Requests in flight over the last minutes, a step line per server, across the full width.
/// The x axis is time before now, so the newest count is always at the right edge.
fn in_flight_plot_ui(ui: &mut egui::Ui, board: &Board, now: f64) {
    let multi_server = board.servers.len() > 1;
    let lines: Vec<(&str, Vec<[f64; 2]>)> = board
        .servers
        .iter()
        .map(|server| {
            let points = server
                .requests
                .in_flight_steps(now)
                .into_iter()
                .map(|[at, count]| [at - now, count])
                .collect();
            (server.label.as_str(), points)
        })
        .collect();
    ui.label(RichText::new("In flight, last 5 minutes").small().weak());
    let mut plot = egui_plot::Plot::new("requests-in-flight")
        .height(110.0)
        .include_x(-IN_FLIGHT_WINDOW_SECS)
        .include_x(0.0)
        .include_y(0.0)
        .include_y(1.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .show_grid([false, true])
        .y_axis_min_width(24.0)
        .y_grid_spacer(egui_plot::uniform_grid_spacer(|input| {
            few_grid_marks(input.bounds, true)
        }))
        .x_axis_formatter(|mark, _| ago(mark.value))
        .y_axis_formatter(|mark, _| whole(mark.value))
        .label_formatter(|hover| {
            let (name, position) = match hover {
                egui_plot::HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => (*plot_name, position),
                egui_plot::HoverPosition::Elsewhere { .. } => return None,
            };
            let text = format!("{} in flight · {}", whole(position.y), ago(position.x));
            Some(if name.is_empty() {
                text
            } else {
                format!("{name}: {text}")
            })
        });
    if multi_server {
        plot = plot.legend(egui_plot::Legend::default().position(egui_plot::Corner::LeftTop));
    }
    plot.show(ui, |plot| {
        for (label, points) in lines {
            let name = if multi_server { label } else { "" };
            // Steps have two points at one x; egui_plot would merge those into a solid band.
            let mut line = egui_plot::Line::new(name, egui_plot::PlotPoints::from(points))
                .width(1.5)
                .allow_band(false);
            if !multi_server {
                line = line
                    .color(egui::Color32::from_rgb(52, 120, 220))
                    .fill(0.0)
                    .fill_alpha(0.15);
            }
            plot.line(line);
        }
    });
}

/// A time before now on the plot's axis: `now`, `30 s ago`, `2 min ago`.
fn ago(offset: f64) -> String {
    let secs = -offset;
    if secs.abs() < 0.5 {
        "now".to_owned()
    } else if secs < 60.0 || secs % 60.0 != 0.0 {
        format!("{secs:.0} s ago")
    } else {
        format!("{:.0} min ago", secs / 60.0)
    }
}

/// A count on the y axis: whole numbers only (no "0.5 requests").
fn whole(value: f64) -> String {
    if value.fract().abs() < 1e-9 && value >= 0.0 {
        format!("{value:.0}")
    } else {
        String::new()
    }
}

fn header_ui(ui: &mut egui::Ui, sort: &mut RequestSort, column: RequestColumn, title: &str) {
    let clicked = ui
        .horizontal(|ui| {
            ui.spacing_mut().item_spacing.x = 4.0;
            let clicked = ui
                .add(egui::Button::new(RichText::new(title).strong()).frame(false))
                .on_hover_text("Sort by this column; again to reverse")
                .clicked();
            if sort.column == column {
                sort_arrow_ui(ui, sort.ascending);
            }
            clicked
        })
        .inner;
    if clicked {
        if sort.column == column {
            sort.ascending = !sort.ascending;
        } else {
            *sort = RequestSort {
                column,
                // Big numbers first for durations and tokens, A to Z for names.
                ascending: !matches!(
                    column,
                    RequestColumn::Duration
                        | RequestColumn::Input
                        | RequestColumn::Output
                        | RequestColumn::Ttft
                        | RequestColumn::Rate
                ),
            };
        }
    }
}

/// A small triangle, pointing up for ascending: drawn, so it needs no font glyph.
fn sort_arrow_ui(ui: &mut egui::Ui, ascending: bool) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(8.0, 8.0), egui::Sense::hover());
    let color = ui.visuals().strong_text_color();
    let (top, bottom) = (rect.top() + 1.0, rect.bottom() - 1.0);
    let points = if ascending {
        vec![
            egui::pos2(rect.center().x, top),
            egui::pos2(rect.right(), bottom),
            egui::pos2(rect.left(), bottom),
        ]
    } else {
        vec![
            egui::pos2(rect.left(), top),
            egui::pos2(rect.right(), top),
            egui::pos2(rect.center().x, bottom),
        ]
    };
    ui.painter().add(egui::Shape::convex_polygon(
        points,
        color,
        egui::Stroke::NONE,
    ));
}

/// Who made the request: the worker (a click shows its card), or the run that is its own.
fn worker_ui(
    ui: &mut egui::Ui,
    board: &Board,
    state: &mut UiState,
    server: usize,
    row: &RequestRow,
) {
    let request = &row.request;
    let Some(run) = &request.run_id else {
        ui.label(RichText::new("—").weak());
        return;
    };
    let key = RunKey::new(server, run.clone());
    let name = request
        .worker
        .clone()
        .or_else(|| {
            board
                .card_of_run(&key)
                .map(|card| card.key.title().to_owned())
        })
        .unwrap_or_else(|| run.clone());
    let link = ui
        .link(RichText::new(format::first_chars(&name, 28)).monospace())
        .on_hover_text(format!("{name}: click to see its card"));
    if link.clicked() {
        state.selected = Some(key);
        state.scroll_to_selected = true;
        state.view = View::Workers;
    }
}

fn row_ui(ui: &mut egui::Ui, row: &RequestRow, now: f64) {
    let request = &row.request;
    ui.label(RichText::new(row.duration(now).map_or_else(|| "—".into(), seconds)).monospace());
    phase_ui(ui, request);
    ui.label(
        RichText::new(
            request
                .ttft_ms
                .map_or_else(|| "—".into(), |ms| seconds(ms / 1000.0)),
        )
        .monospace(),
    )
    .on_hover_text("Time to first token: from sending the request to its first token");
    ui.label(RichText::new(request.tok_per_sec.map_or_else(|| "—".into(), rate)).monospace())
        .on_hover_text("Decode rate so far: tokens after the first over the time they took");
    ui.label(&request.model);
    let resolved = request.resolved_model.as_deref().unwrap_or("—");
    let resolved = match &request.upstream {
        Some(upstream) => format!("{resolved} @ {upstream}"),
        None => resolved.to_owned(),
    };
    ui.label(RichText::new(resolved).monospace().weak());
    ui.label(if request.streaming { "yes" } else { "no" });
    ui.label(RichText::new(tokens(request.input_tokens)).monospace());
    ui.label(RichText::new(tokens(request.output_tokens)).monospace());
    let id = ui.label(RichText::new(&request.request_id).monospace().small());
    if let (Some(run), Some(agent)) = (&request.run_id, &request.agent) {
        id.on_hover_text(format!("{agent} of {run}"));
    }
}

/// Where a real request stands, as a coloured word; "—" for servers that do not say.
fn phase_ui(ui: &mut egui::Ui, request: &runboard_api::ActiveRequest) {
    let Some(phase) = request.phase else {
        ui.label(RichText::new("—").weak());
        return;
    };
    let (word, color, hover) = match phase {
        RequestPhase::Queued => (
            "queued",
            egui::Color32::from_rgb(150, 110, 190),
            "Held by runboard until the model server has a free slot",
        ),
        RequestPhase::WaitingForFirstToken => (
            "waiting",
            egui::Color32::from_rgb(128, 128, 140),
            "Sent; no token yet (queued on the model server, or reading the prompt)",
        ),
        RequestPhase::Decoding => (
            "decoding",
            egui::Color32::from_rgb(60, 160, 90),
            "Tokens are arriving",
        ),
        RequestPhase::Retrying => (
            "retrying",
            egui::Color32::from_rgb(210, 130, 30),
            "Waiting before another try",
        ),
        RequestPhase::Other => (
            "?",
            egui::Color32::from_rgb(128, 128, 140),
            "A phase this console does not know (a newer server)",
        ),
    };
    let label = match request.attempt {
        Some(attempt) if attempt > 1 => format!("{word} · try {attempt}"),
        _ => word.to_owned(),
    };
    badge(ui, &label, color).on_hover_text(hover);
}

fn compare(a: &RequestRow, b: &RequestRow, sort: RequestSort, now: f64) -> Ordering {
    let (x, y) = (&a.request, &b.request);
    let order = match sort.column {
        RequestColumn::Duration => a
            .duration(now)
            .unwrap_or(0.0)
            .total_cmp(&b.duration(now).unwrap_or(0.0)),
        RequestColumn::Phase => x
            .phase
            .map(RequestPhase::as_str)
            .cmp(&y.phase.map(RequestPhase::as_str)),
        RequestColumn::Ttft => x
            .ttft_ms
            .unwrap_or(-1.0)
            .total_cmp(&y.ttft_ms.unwrap_or(-1.0)),
        RequestColumn::Rate => x
            .tok_per_sec
            .unwrap_or(-1.0)
            .total_cmp(&y.tok_per_sec.unwrap_or(-1.0)),
        RequestColumn::Worker => x.worker.cmp(&y.worker),
        RequestColumn::Model => x.model.cmp(&y.model),
        RequestColumn::Resolved => x.resolved_model.cmp(&y.resolved_model),
        RequestColumn::Streaming => x.streaming.cmp(&y.streaming),
        RequestColumn::Input => x.input_tokens.cmp(&y.input_tokens),
        RequestColumn::Output => x.output_tokens.cmp(&y.output_tokens),
        RequestColumn::RequestId => Ordering::Equal,
    }
    // Ties (and the id column) fall back to the id, so the order never flickers.
    .then_with(|| x.request_id.cmp(&y.request_id));
    if sort.ascending {
        order
    } else {
        order.reverse()
    }
}
