//! The web console's side of the server: the bundle served at `/` (from a directory, without a
//! token, never outside the directory), the page shown when there is no bundle, and CORS for a
//! bundle hosted elsewhere.

use crate::support;

use std::time::Duration;

use runboard_server::{RunningServer, ServerError, WebBundle};
use serde_json::Value;
use support::test_server::{config, start};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A bundle like scripts/build-web.sh's: a page, a script and a wasm file with hashed names.
fn bundle(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><title>runboard</title>",
    )
    .unwrap();
    std::fs::write(dist.join("runboard-5f1d.js"), "export default 1;").unwrap();
    std::fs::write(dist.join("runboard-5f1d_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "outside the bundle").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), dist.join("link.txt")).unwrap();
    dist
}

/// A raw request, so paths reach the server exactly as written (no `..` normalising).
async fn raw_get(server: &RunningServer, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    answer
}

#[tokio::test]
async fn the_bundle_is_served_at_the_root_without_a_token_and_never_outside_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.web = WebBundle::Dir(bundle(&dir));
    config.access.token = Some("s3cret".into());
    let server = start(config).await;
    let http = runboard_sse::http::client();
    let get = |path: &str| http.get(format!("{}{path}", server.url())).send();

    let page = get("/").await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<title>runboard</title>")
    );
    let wasm = get("/runboard-5f1d_bg.wasm").await.unwrap();
    assert_eq!(wasm.status(), 200);
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    assert!(
        wasm.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let script = get("/runboard-5f1d.js").await.unwrap();
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );

    // The API still needs the token; an unknown API path is the API's JSON 404.
    assert_eq!(get("/api/health").await.unwrap().status(), 401);
    let unknown = http
        .get(format!("{}/api/nope", server.url()))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = serde_json::from_slice(&unknown.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    for escape in [
        "/../secret.txt",
        "/a/../../secret.txt",
        "/link.txt",
        "/nope.js",
        "/%2e%2e/secret.txt",
    ] {
        let answer = raw_get(&server, escape).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{escape}: {answer}");
        assert!(!answer.contains("outside the bundle"), "{escape}");
    }
    server.stop().await;
}

#[tokio::test]
async fn without_a_bundle_the_root_says_how_to_build_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(&dir)).await;
    let page = runboard_sse::http::client()
        .get(format!("{}/", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(
        text.contains("scripts/build-web.sh") && text.contains("--web-dir"),
        "{text}"
    );
    let missing = runboard_sse::http::client()
        .get(format!("{}/app.js", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn cors_lets_the_named_origin_call_the_api_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.access.cors_origins = vec!["http://dash.example:8080".into()];
    config.access.token = Some("s3cret".into());
    let server = start(config).await;
    let http = runboard_sse::http::client();
    // A preflight carries no token and must still be answered.
    let preflight = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/runs", server.url()),
        )
        .header("origin", "http://dash.example:8080")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://dash.example:8080"
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("last-event-id"),
        "{allowed}"
    );
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    let health = http
        .get(format!("{}/api/health", server.url()))
        .header("origin", "http://dash.example:8080")
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.headers()["access-control-allow-origin"],
        "http://dash.example:8080"
    );
    let stranger = http
        .get(format!("{}/api/health", server.url()))
        .header("origin", "http://evil.example")
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert!(
        stranger
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    server.stop().await;

    for bad in [
        "dash.example",
        "ftp://x",
        "http://",
        "http://a/b",
        "http://*.example",
        "https://*",
        "http://user@dash.example",
        "http://dash.example?x",
        "HTTP://Dash.Example",
    ] {
        let mut config = support::test_server::config(&dir);
        config.access.cors_origins = vec![bad.into()];
        match runboard_server::start(config).await {
            Err(ServerError::BadOrigin(origin)) => assert_eq!(origin, bad),
            Ok(_) => panic!("{bad} was accepted"),
            Err(other) => panic!("{bad}: {other}"),
        }
    }
}
