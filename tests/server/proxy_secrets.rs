//! runboard's upstream key never reaches a `/v1` client: model servers quote the key they were
//! sent (`OpenAI`'s 401 says "Incorrect API key provided: sk-…") and some echo it in a header.
//! The proxy masks it in headers and bodies, in one piece or split across stream chunks, and
//! the record of the call shows `<redacted>` there too.

use crate::support;

use std::time::Duration;

use runboard_api::{ApiClient, RunStatus};
use runboard_server::{RunningServer, ServerConfig, UpstreamSpec};
use serde_json::json;
use support::openai_upstream::{
    FakeUpstream, Step, chunked, chunked_head, content, done, error_reply, role,
};
use support::test_server::{config, start, wait_finished};

const KEY: &str = "sk-proj-secret-0123456789abcdef";
const TOKEN: &str = "secrets-token";

fn keyed_config(dir: &tempfile::TempDir, upstream: &FakeUpstream) -> ServerConfig {
    let mut config = config(dir);
    let spec = UpstreamSpec::parse(&format!("gpu={}", upstream.base()), |var| {
        (var == "RUNBOARD_UPSTREAM_KEY").then(|| KEY.to_owned())
    })
    .unwrap();
    config.upstreams.upstreams.push(spec);
    config.upstreams.idle_timeout = Duration::from_secs(5);
    config.access.token = Some(TOKEN.into());
    config
}

async fn call(server: &RunningServer, stream: bool) -> reqwest::Response {
    runboard_sse::http::client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(
            json!({"model": "org/chat", "stream": stream,
                   "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
}

/// No part of the key a reader could use: its distinctive middle.
fn assert_no_key(what: &str, text: &str) {
    assert!(
        !text.contains("secret-0123"),
        "{what} shows the key: {text}"
    );
    assert!(!text.contains(KEY), "{what} shows the key: {text}");
}

#[tokio::test]
async fn a_refusal_quoting_the_key_in_its_body_and_a_header_reaches_the_client_without_it() {
    let upstream = FakeUpstream::start(&["org/chat"], |_, _| {
        error_reply(
            401,
            &format!("Incorrect API key provided: {KEY}. You can find your API key at …"),
            &format!("X-Echo-Authorization: Bearer {KEY}\r\nX-Request-Key: {KEY}\r\n"),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(keyed_config(&dir, &upstream)).await;
    let response = call(&server, false).await;
    assert_eq!(response.status(), 401);
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    for (name, value) in response.headers() {
        assert_no_key(name.as_str(), &String::from_utf8_lossy(value.as_bytes()));
    }
    assert_eq!(
        response.headers()["x-echo-authorization"],
        "Bearer <redacted>*********************"
    );
    let run_id = response.headers()["x-runboard-run-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.text().await.unwrap();
    assert_eq!(body.len(), length, "the mask keeps the length");
    assert_no_key("the body", &body);
    assert!(body.contains("provided: <redacted>"), "{body}");
    serde_json::from_str::<serde_json::Value>(&body).expect("still JSON");
    // The upstream did get the key; the record of the call does not show it.
    assert_eq!(
        upstream.chats()[0].request.header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    let api = ApiClient::new(&server.url(), Some(TOKEN)).unwrap();
    let detail = wait_finished(&api, &run_id, Duration::from_secs(10)).await;
    assert_eq!(detail.summary.status, RunStatus::Failed);
    let record = serde_json::to_string(&detail).unwrap();
    assert_no_key("the record", &record);
    assert!(record.contains("<redacted>"), "{record}");
    server.stop().await;
}

#[tokio::test]
async fn a_key_split_across_stream_chunks_never_reaches_the_client() {
    // A mid-stream error quoting the key, its bytes cut inside the key at a different point in
    // every call, the two pieces apart in time.
    let upstream = FakeUpstream::start(&["org/chat"], |index, _| {
        let event = format!(
            "data: {}\n\n",
            json!({"error": {"message": format!("Incorrect API key provided: {KEY}")}})
        );
        let at = event.find(KEY).unwrap() + 1 + index % (KEY.len() - 1);
        vec![
            chunked_head(),
            chunked(&role()),
            chunked(&content("partial answer")),
            chunked(&event[..at]),
            Step::Pause(Duration::from_millis(30)),
            chunked(&event[at..]),
            chunked(&done()),
            Step::Write("0\r\n\r\n".into()),
        ]
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(keyed_config(&dir, &upstream)).await;
    let api = ApiClient::new(&server.url(), Some(TOKEN)).unwrap();
    for _ in 0..8 {
        let response = call(&server, true).await;
        assert_eq!(response.status(), 200);
        let run_id = response.headers()["x-runboard-run-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.text().await.unwrap();
        assert_no_key("the stream", &body);
        assert!(body.contains("provided: <redacted>"), "{body}");
        assert!(body.contains("[DONE]"), "{body}");
        let detail = wait_finished(&api, &run_id, Duration::from_secs(10)).await;
        assert_eq!(detail.summary.status, RunStatus::Failed);
        assert_no_key("the record", &serde_json::to_string(&detail).unwrap());
    }
    server.stop().await;
}

#[tokio::test]
async fn a_key_straddling_the_cut_of_an_error_message_leaves_nothing_of_itself() {
    // The message is cut at 300 characters, inside the key.
    let upstream = FakeUpstream::start(&["org/chat"], |_, _| {
        error_reply(
            403,
            &format!("{} {KEY} and more after it", "x".repeat(285)),
            "",
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(keyed_config(&dir, &upstream)).await;
    let response = call(&server, false).await;
    assert_eq!(response.status(), 403);
    let run_id = response.headers()["x-runboard-run-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_no_key("the body", &response.text().await.unwrap());
    let api = ApiClient::new(&server.url(), Some(TOKEN)).unwrap();
    let detail = wait_finished(&api, &run_id, Duration::from_secs(10)).await;
    let record = serde_json::to_string(&detail).unwrap();
    assert!(
        !record.contains("sk-proj"),
        "a start of the key at the cut: {record}"
    );
    assert!(record.contains("x <redacted>"), "{record}");
    server.stop().await;
}
