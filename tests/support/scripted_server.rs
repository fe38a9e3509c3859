//! A real HTTP/1.1 server on loopback whose every answer is scripted by the test: exact bytes,
//! statuses, redirects, pauses, dropped and silent connections. One request per connection
//! (`Connection: close`), so each reconnect of a client is one request here.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub received_at: Instant,
}

impl Request {
    /// The value of the header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One step of an answer.
#[derive(Debug, Clone)]
pub enum Step {
    Write(Vec<u8>),
    Pause(Duration),
    /// Keep the connection open and silent until the server is dropped.
    Hang,
}

/// A scripted answer: its steps run in order, then the connection is closed.
#[derive(Debug, Clone)]
pub struct Reply(pub Vec<Step>);

impl Reply {
    /// 200 `text/event-stream`, `body`, then a clean close.
    pub fn sse(body: &str) -> Self {
        Self::raw(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
             Connection: close\r\n\r\n"
                .to_owned()
                + body,
        )
    }

    /// 200 `text/event-stream` with chunked encoding: `body` in one chunk, then the connection
    /// drops before the final chunk, which the client must see as a network error.
    pub fn sse_then_drop(body: &str) -> Self {
        Self::raw(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n{:x}\r\n{body}\r\n",
            body.len()
        ))
    }

    /// Any status with a content type and a body.
    pub fn status(code: u16, reason: &str, content_type: &str, body: &str) -> Self {
        Self::raw(format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ))
    }

    /// 204 No Content: "closed for good" to an `EventSource`.
    pub fn no_content() -> Self {
        Self::raw("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
    }

    /// A redirect to `location`.
    pub fn redirect(code: u16, location: &str) -> Self {
        Self::raw(format!(
            "HTTP/1.1 {code} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        ))
    }

    pub fn raw(text: impl Into<String>) -> Self {
        Self(vec![Step::Write(text.into().into_bytes())])
    }

    /// Adds a step after the ones so far.
    pub fn then(mut self, step: Step) -> Self {
        self.0.push(step);
        self
    }
}

type Script = dyn Fn(usize, &Request) -> Reply + Send + Sync;

/// The server; it stops (closing every connection) when dropped.
pub struct ScriptedServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    accept_loop: JoinHandle<()>,
}

impl ScriptedServer {
    /// Starts on a free loopback port. `script(n, request)` answers the n-th request (from 0).
    pub async fn start(script: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), script).await
    }

    /// Starts on a given address, as a restarted server would.
    // Async although it awaits nothing: it spawns on tokio, so it must only run inside a runtime.
    #[allow(clippy::unused_async)]
    pub async fn start_on(
        addr: SocketAddr,
        script: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let listener = socket.listen(64).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = Arc::clone(&requests);
        let accept_loop = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let script = Arc::clone(&script);
                let log = Arc::clone(&log);
                connections.spawn(serve(stream, script, log));
            }
        });
        Self {
            addr,
            requests,
            accept_loop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The requests so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn serve(mut stream: TcpStream, script: Arc<Script>, log: Arc<Mutex<Vec<Request>>>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let reply = {
        let mut log = log.lock().unwrap();
        let index = log.len();
        log.push(request.clone());
        script(index, &request)
    };
    for step in reply.0 {
        match step {
            Step::Write(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
                let _ = stream.flush().await;
            }
            Step::Pause(duration) => tokio::time::sleep(duration).await,
            Step::Hang => std::future::pending::<()>().await,
        }
    }
    let _ = stream.shutdown().await;
}

/// Reads one request, head and body (by `Content-Length`).
pub async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    // Read the body too, so closing the connection does not reset it under the client.
    let head_end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let body_len: usize = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + body_len {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body_end = buffer.len().min(head_end + body_len);
    let body = buffer[head_end..body_end].to_vec();
    let text = head;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Some(Request {
        method,
        path,
        headers,
        body,
        received_at: Instant::now(),
    })
}
