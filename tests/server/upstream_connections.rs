//! Which connections proxied streams go upstream on: a model server that keeps a connection
//! after a stream gets the next calls on it; one that closes it after each stream (llama.cpp,
//! which says so only in its `Server` header, or one that says nothing) gets each stream on a
//! connection of its own, and no call is ever sent twice. The real llama.cpp server's side is
//! `llama_proxy.rs` (a hundred pipelines of streamed calls through the proxy).

use crate::support;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runboard_server::{RunningServer, UpstreamSpec};
use serde_json::json;
use support::scripted_server::{Request, read_request};
use support::test_server::{config, start};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};

/// What the upstream does with a connection after a streamed answer.
#[derive(Clone, Copy)]
enum AfterStream {
    /// Keeps it for the next request.
    Keep,
    /// Closes it this long after the answer, reading nothing more: a request sent on it
    /// meanwhile is never read.
    CloseAfter(Duration),
}

/// A model server that serves several requests per connection and numbers its connections.
struct KeepAliveUpstream {
    base: String,
    /// Each chat request with the number of the connection it came on.
    chats: Arc<Mutex<Vec<(usize, Request)>>>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl KeepAliveUpstream {
    async fn start(server: Option<&'static str>, after_stream: AfterStream) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let chats = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&chats);
        let connections = Arc::new(AtomicUsize::new(0));
        let accept_loop = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let number = connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(
                    stream,
                    number,
                    server,
                    after_stream,
                    Arc::clone(&seen),
                ));
            }
        });
        Self {
            base,
            chats,
            accept_loop,
        }
    }

    fn chats(&self) -> Vec<(usize, Request)> {
        self.chats.lock().unwrap().clone()
    }
}

impl Drop for KeepAliveUpstream {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    number: usize,
    server: Option<&'static str>,
    after_stream: AfterStream,
    chats: Arc<Mutex<Vec<(usize, Request)>>>,
) {
    let server_line = server.map_or(String::new(), |name| format!("Server: {name}\r\n"));
    while let Some(request) = read_request(&mut stream).await {
        if request.method == "GET" {
            let body = r#"{"object":"list","data":[{"id":"m","object":"model"}]}"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\n{server_line}Content-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let closes = request
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"));
        chats.lock().unwrap().push((number, request));
        let mut body = String::new();
        for frame in [
            json!({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
        ] {
            let piece = format!("data: {frame}\n\n");
            let _ = write!(body, "{:x}\r\n{piece}\r\n", piece.len());
        }
        let done = "data: [DONE]\n\n";
        let _ = write!(body, "{:x}\r\n{done}\r\n0\r\n\r\n", done.len());
        let reply = format!(
            "HTTP/1.1 200 OK\r\n{server_line}Content-Type: text/event-stream\r\n\
             Transfer-Encoding: chunked\r\n\r\n{body}"
        );
        if stream.write_all(reply.as_bytes()).await.is_err() || closes {
            return;
        }
        if let AfterStream::CloseAfter(delay) = after_stream {
            tokio::time::sleep(delay).await;
            return;
        }
    }
}

async fn proxy_to(upstream: &KeepAliveUpstream) -> (tempfile::TempDir, RunningServer) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config
        .upstreams
        .upstreams
        .push(UpstreamSpec::parse(&format!("gpu={}", upstream.base), |_| None).unwrap());
    let server = start(config).await;
    (dir, server)
}

/// Makes a streamed call through the proxy; its status and body.
async fn streamed_call(client: &reqwest::Client, server: &RunningServer) -> (u16, String) {
    let response = client
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("content-type", "application/json")
        .body(
            json!({"model": "m", "stream": true,
                   "messages": [{"role": "user", "content": "hello"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

fn asked_to_close(request: &Request) -> bool {
    request
        .header("connection")
        .is_some_and(|value| value.eq_ignore_ascii_case("close"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_share_the_kept_alive_connection_of_an_upstream_that_keeps_it() {
    let upstream = KeepAliveUpstream::start(Some("uvicorn"), AfterStream::Keep).await;
    let (_dir, server) = proxy_to(&upstream).await;
    let client = runboard_sse::http::client();
    for _ in 0..5 {
        let (status, body) = streamed_call(&client, &server).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("[DONE]"), "{body}");
    }
    let chats = upstream.chats();
    assert_eq!(chats.len(), 5);
    assert!(chats.iter().all(|(_, request)| !asked_to_close(request)));
    let first = chats[0].0;
    assert!(
        chats.iter().all(|(number, _)| *number == first),
        "the calls came on connections {:?}",
        chats.iter().map(|(number, _)| number).collect::<Vec<_>>()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_cpp_gets_each_stream_on_a_connection_of_its_own() {
    // It names itself on the model list runboard reads at start, before any call.
    let upstream =
        KeepAliveUpstream::start(Some("llama.cpp"), AfterStream::CloseAfter(Duration::ZERO)).await;
    let (_dir, server) = proxy_to(&upstream).await;
    let client = runboard_sse::http::client();
    for _ in 0..5 {
        let (status, body) = streamed_call(&client, &server).await;
        assert_eq!(status, 200, "{body}");
    }
    let chats = upstream.chats();
    assert_eq!(chats.len(), 5);
    assert!(chats.iter().all(|(_, request)| asked_to_close(request)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_closer_costs_one_failed_call_never_a_call_sent_twice() {
    // No `Server` header, and it closes each connection a moment after a stream without
    // reading what came meanwhile: the second call, sent on that connection, is never read.
    let upstream =
        KeepAliveUpstream::start(None, AfterStream::CloseAfter(Duration::from_millis(300))).await;
    let (_dir, server) = proxy_to(&upstream).await;
    let client = runboard_sse::http::client();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(streamed_call(&client, &server).await.0);
    }
    assert_eq!(statuses[0], 200);
    assert_eq!(statuses[1], 502, "{statuses:?}");
    assert!(
        statuses[2..].iter().all(|&status| status == 200),
        "{statuses:?}"
    );
    // The lost call was not sent again: the upstream read four calls, the later three each
    // on a connection of its own.
    let chats = upstream.chats();
    assert_eq!(chats.len(), 4, "{statuses:?}");
    assert!(!asked_to_close(&chats[0].1));
    assert!(
        chats[1..]
            .iter()
            .all(|(_, request)| asked_to_close(request))
    );
    server.stop().await;
}
