//! `--screenshot PATH`: run the real console, save its own frame as a PNG after a while, exit.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use web_time::Instant;

use super::Console;

/// Wraps the console: after `after`, asks for a screenshot; when it arrives, saves it and closes
/// the window.
pub struct Screenshot {
    console: Console,
    path: PathBuf,
    after: Duration,
    started: Instant,
    requested: bool,
    /// Set by the screenshot callback: the save result.
    outcome: Arc<Mutex<Option<Result<(), String>>>>,
}

impl Screenshot {
    /// A console that saves a screenshot to `path` after `after`.
    pub fn new(console: Console, path: PathBuf, after: Duration) -> Self {
        Self {
            console,
            path,
            after,
            started: Instant::now(),
            requested: false,
            outcome: Arc::new(Mutex::new(None)),
        }
    }
}

fn save_png(path: &std::path::Path, image: &egui::ColorImage) -> Result<(), String> {
    let [width, height] = image.size;
    let bytes: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(egui::Color32::to_array)
        .collect();
    let width = u32::try_from(width).map_err(|e| e.to_string())?;
    let height = u32::try_from(height).map_err(|e| e.to_string())?;
    image::save_buffer(path, &bytes, width, height, image::ExtendedColorType::Rgba8)
        .map_err(|e| format!("could not write {}: {e}", path.display()))
}

impl eframe::App for Screenshot {
    fn logic(&mut self, ctx: &egui::Context, frame: &mut eframe::Frame) {
        self.console.logic(ctx, frame);
        let finished = self
            .outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(result) = finished {
            match result {
                Ok(()) => eprintln!("runboard: saved {}", self.path.display()),
                Err(error) => eprintln!("runboard: error: {error}"),
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        // A stepped replay is photographed when it has reached its second, however long that
        // took; anything else after the time asked for.
        let due = self
            .console
            .replay_is_still()
            .unwrap_or_else(|| self.started.elapsed() >= self.after);
        if !self.requested && due {
            self.requested = true;
            let path = self.path.clone();
            let outcome = Arc::clone(&self.outcome);
            let waker = ctx.clone();
            ctx.request_screenshot(move |image| {
                let result = save_png(&path, &image);
                *outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
                waker.request_repaint();
            });
        }
        // Keep frames coming until the picture is taken.
        ctx.request_repaint_after(Duration::from_millis(100));
    }

    /// Nothing of a screenshot's session is kept for the next start.
    fn persist_egui_memory(&self) -> bool {
        false
    }

    /// A picture shows the console, not where the mouse happens to rest: no hover, no
    /// tooltip, the same picture wherever the pointer is.
    fn raw_input_hook(&mut self, _ctx: &egui::Context, raw_input: &mut egui::RawInput) {
        raw_input.events.retain(|event| {
            !matches!(
                event,
                egui::Event::PointerMoved(_)
                    | egui::Event::MouseMoved(_)
                    | egui::Event::PointerButton { .. }
                    | egui::Event::PointerGone
            )
        });
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        self.console.ui(ui, frame);
    }
}
