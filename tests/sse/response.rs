//! `ResponseEvents`: one already-sent response read as frames, with no reconnect (how the server
//! reads a `POST /chat/completions` stream), against scripted servers: events split across
//! writes, comments, a clean end, a stream that falls silent, and one cut mid-body.

use crate::support;

use std::time::Duration;

use runboard_sse::{Frame, ResponseEvents, SseError};
use support::scripted_server::{Reply, ScriptedServer, Step};

async fn frames(server: &ScriptedServer, idle: Option<Duration>) -> Vec<Result<Frame, SseError>> {
    let response = runboard_sse::http::client()
        .post(server.url("/v1/chat/completions"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let mut events = ResponseEvents::new(response, idle);
    let mut seen = Vec::new();
    while let Some(frame) = events.next().await {
        let failed = frame.is_err();
        seen.push(frame);
        if failed {
            assert!(events.next().await.is_none(), "nothing after an error");
            break;
        }
    }
    seen
}

fn data(frames: &[Result<Frame, SseError>]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            Ok(Frame::Event(event)) => Some(event.data.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn events_split_across_writes_arrive_whole_and_the_end_is_clean() {
    let server = ScriptedServer::start(|_, _| {
        Reply::sse("data: {\"a\":")
            .then(Step::Pause(Duration::from_millis(30)))
            .then(Step::Write(b"1}\n\n: keep-alive\n\ndata: \xc3".to_vec()))
            .then(Step::Pause(Duration::from_millis(30)))
            .then(Step::Write(
                b"\xa9\n\ndata: [DONE]\n\ndata: left without its blank line".to_vec(),
            ))
    })
    .await;
    let seen = frames(&server, Some(Duration::from_secs(5))).await;
    assert_eq!(data(&seen), ["{\"a\":1}", "é", "[DONE]"]);
    assert!(
        seen.iter()
            .any(|f| matches!(f, Ok(Frame::Comment(c)) if c == " keep-alive"))
    );
    assert!(seen.iter().all(Result::is_ok));
}

#[tokio::test]
async fn a_silent_stream_ends_with_an_idle_timeout_and_a_cut_one_with_a_read_error() {
    let silent = ScriptedServer::start(|_, _| Reply::sse("data: first\n\n").then(Step::Hang)).await;
    let seen = frames(&silent, Some(Duration::from_millis(300))).await;
    assert_eq!(data(&seen), ["first"]);
    assert!(
        matches!(seen.last(), Some(Err(SseError::IdleTimeout { after, .. })) if *after == Duration::from_millis(300)),
        "{seen:?}"
    );

    let cut = ScriptedServer::start(|_, _| Reply::sse_then_drop("data: partial\n\n")).await;
    let seen = frames(&cut, None).await;
    assert_eq!(data(&seen), ["partial"]);
    assert!(
        matches!(seen.last(), Some(Err(SseError::Read { .. }))),
        "{seen:?}"
    );
}
