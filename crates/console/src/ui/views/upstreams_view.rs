//! The Upstreams view: what the model servers say about their own load (`serve --scrape`),
//! beside what the workers see: per server its figures with five-minute sparklines, its models
//! in a table, and llama.cpp's slots as small cards. Also the compact strip of the summary bar.

use super::spec::{ViewNeeds, ViewSpec};
use egui::{Color32, RichText};

use super::format::{badge, rate, seconds, window_sparkline_ui};
use crate::board::{Board, Figure, HISTORY_SECS, UpstreamsState};
use runboard_api::{Figures, ScrapeState, Slot, Upstream};

const GREEN: Color32 = Color32::from_rgb(46, 160, 67);
const GREY: Color32 = Color32::from_rgb(128, 128, 140);
const RED: Color32 = Color32::from_rgb(210, 60, 60);
const AMBER: Color32 = Color32::from_rgb(210, 130, 30);

/// The Upstreams view.
pub const VIEW: ViewSpec = ViewSpec {
    key: "upstreams",
    label: "Upstreams",
    about: "The model servers' own load",
    needs: ViewNeeds::Nothing,
    with_feed: false,
    ticks: |_| false,
    draw: |ui, board, _, now, _| upstreams_ui(ui, board, now),
};

/// Draws every server's upstreams, or how to get some.
pub fn upstreams_ui(ui: &mut egui::Ui, board: &Board, now: f64) {
    let with_upstreams: Vec<_> = board
        .servers
        .iter()
        .filter(|server| !server.upstreams.is_empty())
        .collect();
    if with_upstreams.is_empty() {
        ui.add_space(24.0);
        ui.vertical_centered(|ui| {
            ui.label(RichText::new("No model servers are read").size(18.0));
            ui.add_space(6.0);
            ui.label(
                "Start the server with `runboard serve --scrape http://gpu1:8000` (repeatable) \
                 to see each model server's own load here: requests running and waiting, \
                 KV cache, its token rate and time to first token.",
            );
        });
        return;
    }
    egui::ScrollArea::vertical()
        .id_salt("upstreams")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for server in with_upstreams {
                if board.servers.len() > 1 {
                    ui.label(RichText::new(format!("via {}", server.label)).weak());
                }
                for upstream in &server.upstreams.latest {
                    upstream_ui(ui, upstream, &server.upstreams, now);
                    ui.add_space(8.0);
                }
            }
        });
}

fn upstream_ui(ui: &mut egui::Ui, upstream: &Upstream, history: &UpstreamsState, now: f64) {
    egui::Frame::group(ui.style())
        .inner_margin(egui::Margin::same(10))
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal(|ui| {
                ui.label(RichText::new(&upstream.url).monospace().strong());
                if let Some(engine) = upstream.engine {
                    badge(ui, engine.label(), Color32::from_rgb(90, 90, 160));
                }
                let (text, color) = state_badge(upstream);
                let response = badge(ui, text, color);
                if let Some(error) = &upstream.error {
                    response.on_hover_text(error);
                }
            });
            if let Some(error) = &upstream.error {
                let color = if upstream.state == ScrapeState::Error {
                    RED
                } else {
                    AMBER
                };
                ui.label(RichText::new(error).small().color(color));
            }
            if upstream.state == ScrapeState::NoMetrics {
                ui.label(
                    RichText::new(
                        "This server has no Prometheus /metrics (vLLM and SGLang have one; \
                         llama.cpp needs --metrics).",
                    )
                    .weak(),
                );
            }
            if upstream.state == ScrapeState::Ok {
                tiles_ui(ui, upstream, history, now);
                if upstream.models.len() > 1 {
                    models_ui(ui, upstream);
                }
            }
            if let Some(slots) = &upstream.slots {
                slots_ui(ui, &upstream.url, slots);
            }
        });
}

fn state_badge(upstream: &Upstream) -> (&'static str, Color32) {
    match upstream.state {
        ScrapeState::Pending => ("reading…", GREY),
        ScrapeState::Ok => ("live", GREEN),
        ScrapeState::NoMetrics => ("no metrics", GREY),
        ScrapeState::Error => ("error", RED),
    }
}

/// Each figure with its value now and its last five minutes.
fn tiles_ui(ui: &mut egui::Ui, upstream: &Upstream, history: &UpstreamsState, now: f64) {
    ui.add_space(4.0);
    ui.horizontal_wrapped(|ui| {
        for figure in Figure::ALL {
            let value = figure.of(&upstream.figures);
            ui.vertical(|ui| {
                ui.set_width(170.0);
                ui.label(RichText::new(figure_label(figure)).small().weak());
                ui.label(
                    RichText::new(value.map_or_else(|| "—".to_owned(), |v| show(figure, v)))
                        .monospace()
                        .size(20.0),
                )
                .on_hover_text(figure_explanation(figure));
                let points = history.series(&upstream.url, figure, now);
                window_sparkline_ui(
                    ui,
                    (&upstream.url, figure_label(figure)),
                    points,
                    HISTORY_SECS,
                    [160.0, 30.0],
                )
                .on_hover_text(format!("{}, last 5 minutes", figure_label(figure)));
            });
        }
    });
}

fn figure_label(figure: Figure) -> &'static str {
    match figure {
        Figure::Running => "running",
        Figure::Waiting => "waiting",
        Figure::KvCache => "KV cache",
        Figure::TokPerSec => "server tok/s",
        Figure::TtftP50 => "TTFT p50 (1 min)",
        Figure::TtftP95 => "TTFT p95 (1 min)",
    }
}

fn figure_explanation(figure: Figure) -> &'static str {
    match figure {
        Figure::Running => "Requests the server is generating now",
        Figure::Waiting => "Requests waiting for a place in the batch",
        Figure::KvCache => "How full the KV cache is (the fullest engine)",
        Figure::TokPerSec => "Tokens the server generated per second, from its own counter",
        Figure::TtftP50 => {
            "Median time to first token over the last minute, as the server measured it"
        }
        Figure::TtftP95 => {
            "95th percentile of time to first token over the last minute, as the server measured it"
        }
    }
}

fn show(figure: Figure, value: f64) -> String {
    match figure {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // Counts of requests.
        Figure::Running | Figure::Waiting => format!("{}", value.max(0.0).round() as u64),
        Figure::KvCache => format!("{value:.0} %"),
        Figure::TokPerSec => rate(value),
        Figure::TtftP50 | Figure::TtftP95 => seconds(value),
    }
}

/// One row per model the server labels.
fn models_ui(ui: &mut egui::Ui, upstream: &Upstream) {
    ui.add_space(6.0);
    egui::Grid::new(("models", &upstream.url))
        .striped(true)
        .spacing([18.0, 4.0])
        .show(ui, |ui| {
            for header in [
                "model",
                "running",
                "waiting",
                "KV",
                "tok/s",
                "TTFT p50",
                "TTFT p95",
                "ITL p50",
                "ITL p95",
                "preempted",
            ] {
                ui.label(RichText::new(header).small().strong());
            }
            ui.end_row();
            for served in &upstream.models {
                ui.label(RichText::new(&served.model).monospace());
                for cell in model_cells(&served.figures) {
                    ui.label(RichText::new(cell).monospace());
                }
                ui.end_row();
            }
        });
}

fn model_cells(figures: &Figures) -> [String; 9] {
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "—".to_owned());
    [
        or_dash(figures.running.map(|v| show(Figure::Running, v))),
        or_dash(figures.waiting.map(|v| show(Figure::Waiting, v))),
        or_dash(figures.kv_cache.map(|v| show(Figure::KvCache, v * 100.0))),
        or_dash(figures.generation_tok_per_sec.map(rate)),
        or_dash(figures.ttft_p50.map(seconds)),
        or_dash(figures.ttft_p95.map(seconds)),
        or_dash(figures.itl_p50.map(seconds)),
        or_dash(figures.itl_p95.map(seconds)),
        or_dash(figures.preemptions.map(|v| format!("{v:.0}"))),
    ]
}

/// llama.cpp's slots: busy ones with how far their request got.
fn slots_ui(ui: &mut egui::Ui, url: &str, slots: &[Slot]) {
    ui.add_space(6.0);
    ui.label(
        RichText::new(format!("{} slots", slots.len()))
            .small()
            .weak(),
    );
    ui.horizontal_wrapped(|ui| {
        for slot in slots {
            egui::Frame::group(ui.style())
                .inner_margin(egui::Margin::symmetric(8, 4))
                .show(ui, |ui| {
                    ui.set_width(150.0);
                    ui.horizontal(|ui| {
                        ui.label(RichText::new(format!("slot {}", slot.id)).monospace());
                        if slot.processing {
                            badge(ui, "busy", Color32::from_rgb(52, 120, 220));
                        } else {
                            badge(ui, "idle", GREY);
                        }
                    });
                    slot_progress_ui(ui, url, slot);
                });
        }
    });
}

fn slot_progress_ui(ui: &mut egui::Ui, url: &str, slot: &Slot) {
    let decoded = slot.decoded.unwrap_or(0);
    match slot.n_predict.and_then(|n| u64::try_from(n).ok()) {
        Some(limit) if slot.processing && limit > 0 => {
            #[allow(clippy::cast_precision_loss)] // Display only.
            let fraction = (decoded as f32 / limit as f32).clamp(0.0, 1.0);
            ui.add(
                egui::ProgressBar::new(fraction)
                    .desired_height(6.0)
                    .desired_width(140.0),
            )
            .on_hover_text(format!("{url}: slot {}", slot.id));
            ui.label(RichText::new(format!("{decoded} / {limit} tok")).small());
        }
        _ if slot.processing => {
            ui.label(RichText::new(format!("{decoded} tok")).small());
        }
        _ => {
            ui.label(RichText::new(" ").small());
        }
    }
}

/// The summary bar's strip: each model server in a few words.
pub fn upstreams_strip_ui(ui: &mut egui::Ui, board: &Board) {
    for server in &board.servers {
        for upstream in &server.upstreams.latest {
            let host = upstream
                .url
                .split("://")
                .nth(1)
                .unwrap_or(&upstream.url)
                .trim_end_matches("/v1");
            ui.label(RichText::new(host).monospace().small());
            let f = &upstream.figures;
            let text = match upstream.state {
                ScrapeState::Ok => {
                    let mut parts = Vec::new();
                    if let Some(running) = f.running {
                        parts.push(format!("{} run", show(Figure::Running, running)));
                    }
                    if let Some(waiting) = f.waiting {
                        parts.push(format!("{} wait", show(Figure::Waiting, waiting)));
                    }
                    if let Some(kv) = f.kv_cache {
                        parts.push(format!("KV {}", show(Figure::KvCache, kv * 100.0)));
                    }
                    if let Some(tok) = f.generation_tok_per_sec {
                        parts.push(format!("{} tok/s", rate(tok)));
                    }
                    parts.join(" · ")
                }
                ScrapeState::Pending => "reading…".to_owned(),
                ScrapeState::NoMetrics => "no metrics".to_owned(),
                ScrapeState::Error => "unreachable".to_owned(),
            };
            let color = match upstream.state {
                ScrapeState::Ok => ui.visuals().text_color(),
                ScrapeState::Error => RED,
                ScrapeState::Pending | ScrapeState::NoMetrics => GREY,
            };
            let response = ui.label(RichText::new(text).small().color(color));
            if let Some(error) = &upstream.error {
                response.on_hover_text(error);
            }
            ui.separator();
        }
    }
}
