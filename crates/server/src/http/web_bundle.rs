//! The browser console's bundle (`dist/`, built by `scripts/build-web.sh`), served at `/` so one server gives both the
//! API and the page: from a directory (`--web-dir`), or from the binary itself when it was built
//! with the `embed-web` feature.

use runboard_api::ErrorCode;
use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};

use crate::failure::Failure;

/// Where the page comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebBundle {
    /// No bundle: `/` explains how to build one.
    None,
    /// Files under this directory.
    Dir(PathBuf),
    /// The files built into the binary (`--features embed-web`).
    #[cfg(feature = "embed-web")]
    Embedded,
}

/// The bundle `scripts/build-web.sh` writes to the repository's `dist/` (the path is from this
/// crate's directory), read at compile time.
#[cfg(feature = "embed-web")]
#[derive(rust_embed::RustEmbed)]
#[folder = "../../dist/"]
struct Embedded;

impl WebBundle {
    /// The bundle to serve when none is named: the embedded one if there is one, else `dist/`
    /// in the working directory if it has an `index.html` (the repo after `scripts/build-web.sh`).
    pub fn discover() -> Self {
        #[cfg(feature = "embed-web")]
        {
            Self::Embedded
        }
        #[cfg(not(feature = "embed-web"))]
        {
            let dist = PathBuf::from("dist");
            if dist.join("index.html").is_file() {
                Self::Dir(dist)
            } else {
                Self::None
            }
        }
    }

    /// For the startup line: what `/` serves.
    pub fn describe(&self) -> String {
        match self {
            Self::None => "no web console (build it with `scripts/build-web.sh`)".into(),
            Self::Dir(dir) => format!("web console from {}", dir.display()),
            #[cfg(feature = "embed-web")]
            Self::Embedded => "web console built in".into(),
        }
    }
}

/// Whether a path belongs to the API (and so gets JSON errors and needs the token).
pub fn is_api_path(path: &str) -> bool {
    ["/api", "/metrics", "/v1"]
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")))
}

/// Answers a request for `path` from the bundle.
pub async fn serve(bundle: &WebBundle, path: &str) -> Response {
    let relative = path.trim_start_matches('/');
    let relative = if relative.is_empty() {
        "index.html"
    } else {
        relative
    };
    let Some(relative) = safe_relative(relative) else {
        return not_found(path);
    };
    let bytes = match bundle {
        WebBundle::None if relative == Path::new("index.html") => {
            return html_response(NO_BUNDLE_PAGE.as_bytes().to_vec(), "index.html");
        }
        WebBundle::None => None,
        WebBundle::Dir(dir) => read_within(dir, &relative).await,
        #[cfg(feature = "embed-web")]
        WebBundle::Embedded => relative
            .to_str()
            .and_then(Embedded::get)
            .map(|file| file.data.into_owned()),
    };
    match bytes {
        Some(bytes) => html_response(bytes, &relative.to_string_lossy()),
        None => not_found(path),
    }
}

/// The path as plain components below the bundle, or `None` for `..`, absolute or odd paths.
fn safe_relative(text: &str) -> Option<PathBuf> {
    let path = Path::new(text);
    let plain = path
        .components()
        .all(|component| matches!(component, Component::Normal(_)));
    (plain && !text.contains('\\')).then(|| path.to_path_buf())
}

/// Reads a file of the bundle; a symlink that leads outside the directory is not followed.
async fn read_within(dir: &Path, relative: &Path) -> Option<Vec<u8>> {
    let root = tokio::fs::canonicalize(dir).await.ok()?;
    let file = tokio::fs::canonicalize(dir.join(relative)).await.ok()?;
    if !file.starts_with(&root) || !tokio::fs::metadata(&file).await.ok()?.is_file() {
        return None;
    }
    tokio::fs::read(&file).await.ok()
}

fn html_response(bytes: Vec<u8>, name: &str) -> Response {
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    // scripts/build-web.sh puts a hash in every asset's name, so only the page itself must be asked again.
    let cache = if content_type(name).starts_with("text/html") {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

fn content_type(name: &str) -> &'static str {
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn not_found(path: &str) -> Response {
    Failure::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no such file: {path}"),
    )
    .into_response()
}

const NO_BUNDLE_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>runboard</title></head>\
<body style=\"font-family: sans-serif; max-width: 40em; margin: 3em auto\">\
<h1>runboard</h1><p>This server runs the runs API, but it has no web console to serve.</p>\
<p>Build it with <code>scripts/build-web.sh</code> in the runboard repository and start the \
server there (it serves <code>dist/</code>), or pass <code>--web-dir PATH</code>, or build the \
server with <code>--features embed-web</code>.</p><p>The API is at <code>/api/health</code>.</p>\
</body></html>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_served() {
        assert!(safe_relative("index.html").is_some());
        assert!(safe_relative("assets/runboard-1a2b_bg.wasm").is_some());
        for bad in ["../secret", "a/../../b", "/etc/passwd", "a\\..\\b", "./x"] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn api_paths_are_told_apart_from_files() {
        assert!(is_api_path("/api/health"));
        assert!(is_api_path("/metrics/active-requests"));
        assert!(is_api_path("/api"));
        assert!(!is_api_path("/apiary.html"));
        assert!(!is_api_path("/index.html"));
        assert_eq!(content_type("x_bg.wasm"), "application/wasm");
    }
}
