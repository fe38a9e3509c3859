//! A scripted OpenAI-compatible model server on loopback, for what a real one will not do on
//! demand: error frames, missing usage or `[DONE]`, reasoning in both field names, tool-call
//! pieces, 429 with `Retry-After`, slow first tokens, cuts and hangs. `GET …/models` lists the
//! models it was started with; each `POST …/chat/completions` is answered by the script. It
//! records every request, how many were in flight at most, and which ones the client closed
//! before the script ended (so a test sees an upstream observe a cancel).

#![allow(dead_code)] // Each test binary uses part of it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::scripted_server::{Request, read_request};

/// One step of an answer.
#[derive(Debug, Clone)]
pub enum Step {
    Write(String),
    Pause(Duration),
    /// Stay open and silent until the client leaves.
    Hang,
}

/// A chat request as the upstream saw it, and how it ended.
#[derive(Debug, Clone)]
pub struct Seen {
    pub request: Request,
    pub body: Value,
    /// The client closed the connection before the script ended.
    pub closed_by_client: bool,
    /// When the answer ended (script done or client gone).
    pub ended_at: Option<Instant>,
}

type Script = dyn Fn(usize, &Value) -> Vec<Step> + Send + Sync;

/// The upstream; it stops when dropped.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    chats: Arc<Mutex<Vec<Seen>>>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    models_reads: Arc<AtomicUsize>,
    accept_loop: JoinHandle<()>,
}

impl FakeUpstream {
    /// Serves `models` and answers the n-th chat request (from 0) with `script(n, body)`.
    pub async fn start(
        models: &[&str],
        script: impl Fn(usize, &Value) -> Vec<Step> + Send + Sync + 'static,
    ) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), models, script).await
    }

    /// The same on a given address, as a model server started late would be.
    pub async fn start_on(
        addr: SocketAddr,
        models: &[&str],
        script: impl Fn(usize, &Value) -> Vec<Step> + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let models: Vec<String> = models.iter().map(|m| (*m).to_owned()).collect();
        let chats = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most_in_flight = Arc::new(AtomicUsize::new(0));
        let models_reads = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let shared = Shared {
            models: Arc::new(models),
            chats: Arc::clone(&chats),
            in_flight: Arc::clone(&in_flight),
            most_in_flight: Arc::clone(&most_in_flight),
            models_reads: Arc::clone(&models_reads),
            script,
        };
        let accept_loop = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(shared.clone().serve(stream));
            }
        });
        Self {
            addr,
            chats,
            in_flight,
            most_in_flight,
            models_reads,
            accept_loop,
        }
    }

    /// Its `OpenAI` base URL.
    pub fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The chat requests so far.
    pub fn chats(&self) -> Vec<Seen> {
        self.chats.lock().unwrap().clone()
    }

    /// The most chat requests it had in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    /// How often `GET /models` was read.
    pub fn models_reads(&self) -> usize {
        self.models_reads.load(Ordering::SeqCst)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

#[derive(Clone)]
struct Shared {
    models: Arc<Vec<String>>,
    chats: Arc<Mutex<Vec<Seen>>>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    models_reads: Arc<AtomicUsize>,
    script: Arc<Script>,
}

impl Shared {
    async fn serve(self, mut stream: TcpStream) {
        let Some(request) = read_request(&mut stream).await else {
            return;
        };
        if request.method == "GET" && request.path.ends_with("/models") {
            self.models_reads.fetch_add(1, Ordering::SeqCst);
            let data: Vec<Value> = self
                .models
                .iter()
                .map(|id| json!({"id": id, "object": "model", "owned_by": "scripted"}))
                .collect();
            let body = json!({"object": "list", "data": data}).to_string();
            let _ = stream.write_all(json_reply(200, &body).as_bytes()).await;
            let _ = stream.shutdown().await;
            return;
        }
        // `/chat/completions` and the legacy `/completions` are answered alike by the script.
        if !request.path.ends_with("/completions") {
            let _ = stream
                .write_all(json_reply(404, r#"{"error":{"message":"no such route"}}"#).as_bytes())
                .await;
            return;
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let index = {
            let mut chats = self.chats.lock().unwrap();
            chats.push(Seen {
                request: request.clone(),
                body: body.clone(),
                closed_by_client: false,
                ended_at: None,
            });
            chats.len() - 1
        };
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let steps = (self.script)(index, &body);
        let closed = play(&mut stream, steps).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut chats = self.chats.lock().unwrap();
        chats[index].closed_by_client = closed;
        chats[index].ended_at = Some(Instant::now());
    }
}

/// Plays the steps; true when the client closed the connection first.
async fn play(stream: &mut TcpStream, steps: Vec<Step>) -> bool {
    let (mut reader, mut writer) = stream.split();
    let mut probe = [0u8; 64];
    for step in steps {
        match step {
            Step::Write(text) => {
                if writer.write_all(text.as_bytes()).await.is_err() {
                    return true;
                }
                let _ = writer.flush().await;
            }
            Step::Pause(duration) => {
                tokio::select! {
                    () = tokio::time::sleep(duration) => {}
                    read = reader.read(&mut probe) => if matches!(read, Ok(0) | Err(_)) {
                        return true;
                    },
                }
            }
            Step::Hang => {
                // The client sends nothing more after its request: a read ends only when it
                // closes the connection.
                loop {
                    if matches!(reader.read(&mut probe).await, Ok(0) | Err(_)) {
                        return true;
                    }
                }
            }
        }
    }
    let _ = writer.shutdown().await;
    false
}

fn json_reply(code: u16, body: &str) -> String {
    format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The body bytes a script writes after its head (the first step), as a client reads them
/// from a stream that ends when the connection closes.
pub fn body_of(steps: &[Step]) -> String {
    steps
        .iter()
        .skip(1)
        .filter_map(|step| match step {
            Step::Write(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The head of a 200 event stream that ends when the connection closes.
pub fn stream_head() -> Step {
    Step::Write(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
         Connection: close\r\n\r\n"
            .into(),
    )
}

/// The head of a 200 event stream in chunked encoding; end it with [`chunked`] pieces, then
/// close without the final empty chunk to cut it.
pub fn chunked_head() -> Step {
    Step::Write(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
            .into(),
    )
}

/// `text` as one piece of a chunked body.
pub fn chunked(text: &str) -> Step {
    Step::Write(format!("{:x}\r\n{text}\r\n", text.len()))
}

/// A non-2xx answer with an `OpenAI` error body and extra header lines.
pub fn error_reply(code: u16, message: &str, extra_headers: &str) -> Vec<Step> {
    let body = json!({"error": {"message": message, "type": "error", "code": code}}).to_string();
    vec![Step::Write(format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\n{extra_headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))]
}

/// One `data:` frame.
pub fn frame(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// The role-only first chunk most servers send.
pub fn role() -> String {
    frame(
        &json!({"object": "chat.completion.chunk", "choices": [{"index": 0,
        "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
    )
}

/// A chunk of answer text.
pub fn content(text: &str) -> String {
    frame(
        &json!({"object": "chat.completion.chunk", "choices": [{"index": 0,
        "delta": {"content": text}, "finish_reason": null}]}),
    )
}

/// A chunk of reasoning in the given field (`reasoning_content` or `reasoning`).
pub fn reasoning(field: &str, text: &str) -> String {
    frame(
        &json!({"object": "chat.completion.chunk", "choices": [{"index": 0,
        "delta": {field: text}, "finish_reason": null}]}),
    )
}

/// A piece of a tool call.
pub fn tool_piece(index: u64, id: Option<&str>, name: Option<&str>, arguments: &str) -> String {
    let mut function = json!({"arguments": arguments});
    if let Some(name) = name {
        function["name"] = json!(name);
    }
    let mut call = json!({"index": index, "type": "function", "function": function});
    if let Some(id) = id {
        call["id"] = json!(id);
    }
    frame(
        &json!({"object": "chat.completion.chunk", "choices": [{"index": 0,
        "delta": {"tool_calls": [call]}, "finish_reason": null}]}),
    )
}

/// The last chunk with a choice.
pub fn finish(reason: &str) -> String {
    frame(
        &json!({"object": "chat.completion.chunk", "choices": [{"index": 0,
        "delta": {}, "finish_reason": reason}]}),
    )
}

/// The usage chunk of `stream_options.include_usage`: no choices.
pub fn usage(prompt: u64, completion: u64) -> String {
    frame(&json!({"object": "chat.completion.chunk", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion}}))
}

pub fn done() -> String {
    "data: [DONE]\n\n".into()
}

/// A whole well-behaved answer: role, `words` as content chunks `gap` apart, finish, usage,
/// `[DONE]`.
pub fn answer(words: &[&str], gap: Duration, prompt_tokens: u64) -> Vec<Step> {
    let mut steps = vec![stream_head(), Step::Write(role())];
    for word in words {
        steps.push(Step::Pause(gap));
        steps.push(Step::Write(content(word)));
    }
    steps.push(Step::Write(finish("stop")));
    steps.push(Step::Write(usage(prompt_tokens, words.len() as u64)));
    steps.push(Step::Write(done()));
    steps
}

/// A whole (non-streamed) chat completion answering `text`, with its usage.
pub fn whole_reply(text: &str, prompt: u64, completion: u64) -> Vec<Step> {
    let body = json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion}})
    .to_string();
    vec![Step::Write(json_reply(200, &body))]
}

/// The JSON body of a [`whole_reply`] or [`error_reply`] script.
pub fn json_body_of(steps: &[Step]) -> String {
    match &steps[0] {
        Step::Write(text) => text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default(),
        _ => String::new(),
    }
}
