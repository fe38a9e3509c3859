//! The browser entry point: the console on the page's canvas, watching the server that served
//! the page (or the one `?api=URL` names, for a bundle hosted elsewhere), with a token from the
//! browser's local storage. `index.html` shows a loading screen until this replaces it, and
//! keeps it with a message when the app cannot start (WebGL 2 missing, say).

use wasm_bindgen::JsCast as _;

use crate::network::Spawner;
use crate::ui::{Console, ConsoleConfig};

/// The canvas in `index.html`.
const CANVAS_ID: &str = "runboard_canvas";

/// The loading screen in `index.html`.
const LOADING_ID: &str = "runboard_loading";

/// A browser allows six HTTP/1.1 connections per host: four run streams leave room for the
/// view stream and the API calls.
const MAX_RUN_STREAMS: usize = 4;

/// Starts the console on the page.
pub fn start() {
    wasm_bindgen_futures::spawn_local(async {
        let Some(document) = web_sys::window().and_then(|w| w.document()) else {
            return;
        };
        let Some(canvas) = document
            .get_element_by_id(CANVAS_ID)
            .and_then(|element| element.dyn_into::<web_sys::HtmlCanvasElement>().ok())
        else {
            show_failure(&document, "the page has no canvas to draw on");
            return;
        };
        let mut config = ConsoleConfig::new(vec![api_url()]);
        config.max_run_streams = Some(MAX_RUN_STREAMS);
        let started = eframe::WebRunner::new()
            .start(
                canvas,
                eframe::WebOptions::default(),
                Box::new(move |cc| {
                    Ok(Box::new(Console::new(
                        &cc.egui_ctx,
                        cc.storage,
                        config,
                        Spawner::new(),
                    )))
                }),
            )
            .await;
        match started {
            Ok(()) => {
                if let Some(loading) = document.get_element_by_id(LOADING_ID) {
                    loading.remove();
                }
            }
            Err(error) => {
                let detail = error
                    .as_string()
                    .or_else(|| {
                        error
                            .dyn_ref::<js_sys::Error>()
                            .map(|e| String::from(e.message()))
                    })
                    .unwrap_or_else(|| format!("{error:?}"));
                show_failure(
                    &document,
                    &format!(
                        "runboard could not start: {detail}. It draws with WebGL 2; if this \
                         browser has it switched off (or no graphics driver), turn hardware \
                         acceleration on or try another browser."
                    ),
                );
            }
        }
    });
}

/// The server to watch: `?api=URL` when given, else the page's own origin.
fn api_url() -> String {
    let location = web_sys::window().map(|w| w.location());
    let from_query = location
        .as_ref()
        .and_then(|l| l.search().ok())
        .and_then(|search| {
            web_sys::UrlSearchParams::new_with_str(&search)
                .ok()?
                .get("api")
        })
        .filter(|api| !api.is_empty());
    from_query
        .or_else(|| location.and_then(|l| l.origin().ok()))
        .unwrap_or_else(|| "http://127.0.0.1:9010".into())
}

/// Replaces the loading text with a message, so a failure never leaves a blank page.
fn show_failure(document: &web_sys::Document, message: &str) {
    if let Some(loading) = document.get_element_by_id(LOADING_ID) {
        loading.set_class_name("failed");
        loading.set_text_content(Some(message));
    }
}
