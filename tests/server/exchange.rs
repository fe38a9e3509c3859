//! A recorded exchange with the server, compared byte for byte: the status, content type and
//! body of every answer a client sees for one seeded session (health, a run followed on its own
//! stream to its end, a models job, a run that fails, the list, the detail, and the usual errors).
//!
//! Only what differs between two sessions by nature is masked: RFC 3339 times (the wall clock).
//! Everything else — key order, number formats, event names, ids, SSE framing — must stay as
//! recorded in `tests/fixtures/exchange.txt`. `RUNBOARD_RECORD_EXCHANGE=1 cargo test exchange`
//! records it again after a deliberate change of the wire.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::support::test_server::{sqlite_config, start};

/// One request: method, path, body.
struct Call<'a> {
    method: &'a str,
    path: String,
    body: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn get(path: impl Into<String>) -> Self {
        Self {
            method: "GET",
            path: path.into(),
            body: None,
        }
    }

    fn post(path: impl Into<String>, body: &'a str) -> Self {
        Self {
            method: "POST",
            path: path.into(),
            body: Some(body),
        }
    }
}

/// Sends one request and writes what came back to `log`; returns the body.
async fn record(client: &reqwest::Client, base: &str, call: Call<'_>, log: &mut String) -> String {
    let url = format!("{base}{}", call.path);
    let request = match call.body {
        Some(body) => client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_owned()),
        None if call.method == "GET" => client.get(&url),
        None => client.post(&url),
    };
    let response = tokio::time::timeout(Duration::from_secs(60), request.send())
        .await
        .expect("no answer within 60 s")
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = tokio::time::timeout(Duration::from_secs(60), response.text())
        .await
        .expect("the body did not end within 60 s")
        .unwrap();
    let _ = writeln!(
        log,
        "> {} {}{}",
        call.method,
        call.path,
        call.body.map(|b| format!(" {b}")).unwrap_or_default()
    );
    let _ = writeln!(log, "< {status} {content_type}");
    log.push_str(&body);
    log.push_str("\n<end>\n\n");
    body
}

/// Replaces each server instance id (`"i-` and ten hex digits, new at every start) with
/// `<instance>`.
fn mask_instance_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\"i-") {
        let id = &rest[at + 3..];
        let hex = id.bytes().take_while(u8::is_ascii_hexdigit).count();
        out.push_str(&rest[..=at]);
        if hex == 10 && id.as_bytes().get(10) == Some(&b'"') {
            out.push_str("<instance>");
            rest = &id[10..];
        } else {
            out.push_str("i-");
            rest = id;
        }
    }
    out.push_str(rest);
    out
}

/// Replaces every RFC 3339 time (`2026-12-01T08:29:01.123456Z`, offsets too) with `<time>`.
fn mask_times(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while at + 20 <= bytes.len() {
        if let Some(len) = time_at(&bytes[at..]) {
            out.push_str(&text[copied..at]);
            out.push_str("<time>");
            at += len;
            copied = at;
        } else {
            at += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The length of an RFC 3339 time at the start of `b`, if one is there.
fn time_at(b: &[u8]) -> Option<usize> {
    let digits = |range: std::ops::Range<usize>| range.into_iter().all(|i| b[i].is_ascii_digit());
    let shape = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return None;
    }
    let mut end = 19;
    if b.get(end) == Some(&b'.') {
        end += 1;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    match b.get(end) {
        Some(b'Z') => Some(end + 1),
        Some(b'+' | b'-') if b.len() >= end + 6 => Some(end + 6),
        _ => None,
    }
}

/// Creates a run and follows its stream to the end; returns its id.
async fn create_and_follow(
    client: &reqwest::Client,
    base: &str,
    body: &str,
    log: &mut String,
) -> String {
    let created = record(client, base, Call::post("/api/runs", body), log).await;
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    // The per-run stream replays from the start and closes after `stream_end`.
    record(
        client,
        base,
        Call::get(format!("/api/runs/{run_id}/stream")),
        log,
    )
    .await;
    run_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_session_answers_byte_for_byte_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    // The recording is SQLite's (`/api/health` names the backend), whatever the tests run on.
    let mut config = sqlite_config(&dir);
    config.store.instance_name = Some("exchange".into());
    // Retention's record changes with its timer; tests/server/retention.rs covers it.
    config.store.retention = runboard_server::Retention {
        days: None,
        runs: None,
    };
    let server = start(config).await;
    let base = server.url();
    let client = runboard_sse::http::client();
    let mut log = String::new();

    record(&client, &base, Call::get("/api/health"), &mut log).await;
    let run_id = create_and_follow(
        &client,
        &base,
        r#"{"task":"Summarise the quarterly report","params":{"iterations":1,"model":"qwen2.5-7b"}}"#,
        &mut log,
    )
    .await;
    record(
        &client,
        &base,
        Call::get(format!("/api/runs/{run_id}")),
        &mut log,
    )
    .await;
    create_and_follow(
        &client,
        &base,
        r#"{"task":"list models","params":{"job":"models"}}"#,
        &mut log,
    )
    .await;
    create_and_follow(
        &client,
        &base,
        r#"{"task":"fail on purpose","params":{"iterations":1,"fail":true}}"#,
        &mut log,
    )
    .await;
    record(&client, &base, Call::get("/api/runs"), &mut log).await;
    record(
        &client,
        &base,
        Call::get("/api/runs?status=completed&limit=1"),
        &mut log,
    )
    .await;
    record(&client, &base, Call::get("/api/runs/run-nope"), &mut log).await;
    record(&client, &base, Call::get("/api/runs?limit=x"), &mut log).await;
    record(
        &client,
        &base,
        Call::post("/api/runs", "{not json"),
        &mut log,
    )
    .await;
    record(
        &client,
        &base,
        Call::post("/api/runs", r#"{"task":"t","params":{"iterations":99}}"#),
        &mut log,
    )
    .await;
    record(
        &client,
        &base,
        Call::post(format!("/api/runs/{run_id}/cancel"), "{}"),
        &mut log,
    )
    .await;
    record(&client, &base, Call::get("/api/nothing-here"), &mut log).await;
    server.stop().await;

    let seen = mask_instance_ids(&mask_times(&log));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exchange.txt");
    if std::env::var_os("RUNBOARD_RECORD_EXCHANGE").is_some() {
        std::fs::write(&path, &seen).unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(&path).expect("tests/fixtures/exchange.txt is missing");
    if seen != recorded {
        let line = seen
            .lines()
            .zip(recorded.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| seen.lines().count().min(recorded.lines().count()));
        panic!(
            "the exchange differs from the recording at line {}:\n  now:      {:?}\n  recorded: {:?}",
            line + 1,
            seen.lines().nth(line),
            recorded.lines().nth(line)
        );
    }
}

#[test]
fn times_are_masked_and_nothing_else() {
    assert_eq!(
        mask_times(
            r#"{"ts":"2026-12-01T08:29:01.123Z","n":"2026-12-01","at":"2026-12-01T08:29:01+01:00"}"#
        ),
        r#"{"ts":"<time>","n":"2026-12-01","at":"<time>"}"#
    );
}
