//! The window's (or browser tab's) title: the fleet at a glance, so a background tab or a
//! minimised window still says what is going on.

use crate::board::Board;

/// `runboard · 6 live · 212.4 tok/s · 3 finished`, or just `runboard` when nothing happened.
pub fn title(board: &Board, now: f64) -> String {
    let live = board.live_workers();
    let finished = board
        .feed
        .entries()
        .filter(|entry| entry.summary.status.is_finished())
        .count();
    if live == 0 && finished == 0 {
        return "runboard".into();
    }
    format!(
        "runboard · {live} live · {:.1} tok/s · {finished} finished",
        board.current_rate(now)
    )
}

/// Sets the title when it changed: the browser tab's on the web, the window's natively.
pub fn show(ctx: &egui::Context, title: &str, shown: &mut String) {
    if title == shown {
        return;
    }
    title.clone_into(shown);
    #[cfg(target_arch = "wasm32")]
    {
        let _ = ctx;
        if let Some(document) = web_sys::window().and_then(|w| w.document()) {
            document.set_title(title);
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.to_owned()));
}
