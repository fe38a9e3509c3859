//! Accepting connections with bounds, so no client can hold the server's memory or sockets:
//! - a header-read timeout that also closes idle keep-alive connections (hyper restarts it
//!   whenever a connection waits for the next request's headers);
//! - a cap on the header size (hyper answers 431 past it);
//! - a cap on open connections: past it a client gets `503` at once and the connection is
//!   closed, with a log line, instead of hanging in the kernel's backlog;
//! - a fixed kernel send buffer per connection, so a reader that stops reading pins a known
//!   amount of kernel memory, not the several megabytes TCP autotuning would grow to;
//! - a stalled-write timeout: a connection whose output has waited for the client to read for
//!   this long is reset (its buffers freed at once), with a log line. This is what drops an event-stream subscriber that
//!   stopped reading (it resumes with `Last-Event-ID` and loses nothing); ending only its
//!   stream would leave hyper blocked flushing to it, holding the connection forever.
//!
//! With TLS (`--tls-cert`, `--tls-key`) the handshake must end within the header timeout too,
//! HTTP/2 is served when the client offers it, and a client speaking plain HTTP to the port
//! gets a plain 400 that says to use `https://`.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::http::first_head::{self, Prefixed};
use crate::http::tls;

/// The bounds every connection lives within.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request's headers must arrive within this; an idle keep-alive connection is closed
    /// after it too.
    pub header_timeout: Duration,
    /// The most bytes of request headers (431 beyond).
    pub max_header_bytes: usize,
    /// Connections open at once; more are refused with 503.
    pub max_connections: usize,
    /// The kernel send buffer of each connection, in bytes.
    pub send_buffer_bytes: usize,
    /// A connection whose output waits this long without the client reading is closed.
    pub stalled_write: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(15),
            max_header_bytes: 32 * 1024,
            max_connections: 2048,
            send_buffer_bytes: 64 * 1024,
            stalled_write: Duration::from_secs(30),
        }
    }
}

/// hyper's floor for its buffer size.
const MIN_HEADER_BYTES: usize = 8192;

/// At most one "refused a connection" log line per this many refusals.
const REFUSAL_LOG_EVERY: u64 = 100;

/// What an over-the-cap client reads before the connection closes.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 95\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server has too many open connections\"}}\n";

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown`, then lets open
/// connections finish for up to `grace` and drops the rest.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    grace: Duration,
    tls: Option<TlsAcceptor>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refused = Arc::new(AtomicU64::new(0));
    let mut spare = SpareDescriptor::open();
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if out_of_descriptors(&error) => {
                    // The waiting client still gets its 503, on the descriptor kept spare.
                    spare.refuse_one(&listener, &refused).await;
                    continue;
                }
                Err(error) => {
                    // A connection reset before it was accepted: go on.
                    tracing::debug!(%error, "could not accept a connection");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            refuse(stream, peer, &refused, limits.max_connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(limits.send_buffer_bytes);
        let service = TowerToHyperService::new(WithClient {
            router: app.clone(),
            client: ClientAddr(peer),
        });
        let watcher = graceful.watcher();
        let (http, h2, tls) = (http.clone(), h2.clone(), tls.clone());
        let (stalled_write, head_limit, head_timeout) = (
            limits.stalled_write,
            limits.max_header_bytes,
            limits.header_timeout,
        );
        tokio::spawn(async move {
            // Errors of a served connection are the client's (a reset, a timeout); the client
            // has its answer.
            if let Some(tls) = tls {
                let Some(stream) = handshake(&tls, stream, head_timeout, peer).await else {
                    return;
                };
                let h2_chosen = stream.get_ref().1.alpn_protocol() == Some(tls::H2);
                let io = StallGuard::new(TokioIo::new(stream), stalled_write, peer);
                if h2_chosen {
                    let _ = watcher.watch(h2.serve_connection(io, service)).await;
                } else {
                    let _ = watcher.watch(http.serve_connection(io, service)).await;
                }
            } else {
                let Some(stream) = first_head::check(stream, head_limit, head_timeout).await else {
                    return;
                };
                let io = StallGuard::new(TokioIo::new(stream), stalled_write, peer);
                let _ = watcher.watch(http.serve_connection(io, service)).await;
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}

/// The TLS handshake of a new connection, within `timeout`; a client that speaks plain HTTP
/// is answered in plain HTTP and dropped, as is one whose handshake fails.
async fn handshake(
    tls: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    if !tls::starts_with_tls(&stream, timeout).await? {
        tls::refuse_plain_http(stream).await;
        return None;
    }
    match tokio::time::timeout(timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "a TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// The address a request's connection came from, in the request's extensions (the proxy
/// names a worker that says nothing else by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The router, with the connection's [`ClientAddr`] put on every request.
#[derive(Clone)]
struct WithClient {
    router: Router,
    client: ClientAddr,
}

impl<B> tower_service::Service<axum::http::Request<B>> for WithClient
where
    Router: tower_service::Service<axum::http::Request<B>>,
{
    type Response = <Router as tower_service::Service<axum::http::Request<B>>>::Response;
    type Error = <Router as tower_service::Service<axum::http::Request<B>>>::Error;
    type Future = <Router as tower_service::Service<axum::http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.client);
        self.router.call(request)
    }
}

/// Whether accepting failed because the process (or the system) has no file descriptor left.
fn out_of_descriptors(error: &std::io::Error) -> bool {
    // EMFILE and ENFILE.
    matches!(error.raw_os_error(), Some(23 | 24))
}

/// One file descriptor held back for the moment the process has none left, so a client
/// waiting to be accepted then still gets a 503 instead of no answer at all: it is let go,
/// the client accepted on it, answered and closed, and the descriptor taken back.
struct SpareDescriptor(Option<std::fs::File>);

impl SpareDescriptor {
    fn open() -> Self {
        Self(std::fs::File::open("/dev/null").ok())
    }

    async fn refuse_one(&mut self, listener: &TcpListener, refused: &AtomicU64) {
        let count = refused.fetch_add(1, Ordering::Relaxed) + 1;
        if count % REFUSAL_LOG_EVERY == 1 {
            tracing::warn!(
                refused = count,
                "refused a connection: no file descriptor left (raise `ulimit -n` or lower \
                 --max-connections)"
            );
        }
        self.0 = None;
        if let Ok(Ok((stream, _))) =
            tokio::time::timeout(Duration::from_millis(10), listener.accept()).await
        {
            // No reading first, no waiting: the descriptor is needed back at once.
            let _ = stream.try_write(REFUSAL);
            drop(stream);
        } else {
            // Nothing could be accepted even so: let descriptors free up before trying again.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        *self = Self::open();
    }
}

/// Answers 503 and closes, off the accept loop so a slow client cannot hold it.
fn refuse(mut stream: TcpStream, peer: SocketAddr, refused: &AtomicU64, cap: usize) {
    let count = refused.fetch_add(1, Ordering::Relaxed) + 1;
    if count % REFUSAL_LOG_EVERY == 1 {
        tracing::warn!(
            %peer,
            open = cap,
            refused = count,
            "refused a connection: the most connections are open (--max-connections)"
        );
    }
    tokio::spawn(async move {
        // Read what the client sent first: closing with unread bytes resets the connection,
        // and the reset could reach the client before it reads the answer.
        let mut request = [0_u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut request)).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = stream.write_all(REFUSAL).await;
            let _ = stream.shutdown().await;
        })
        .await;
    });
}

/// A connection's IO that knows its socket (to reset it).
trait OnSocket: AsyncRead + AsyncWrite + Unpin {
    /// The TCP socket under it.
    fn socket(&self) -> &TcpStream;
}

impl OnSocket for Prefixed {
    fn socket(&self) -> &TcpStream {
        self.stream()
    }
}

impl OnSocket for TlsStream<TcpStream> {
    fn socket(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// The connection's IO, failing a write or flush that has made no progress for `limit`.
struct StallGuard<S> {
    inner: TokioIo<S>,
    limit: Duration,
    peer: SocketAddr,
    /// Started when a write first had to wait; cleared when one goes through.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: OnSocket> StallGuard<S> {
    fn new(inner: TokioIo<S>, limit: Duration, peer: SocketAddr) -> Self {
        Self {
            inner,
            limit,
            peer,
            waiting: None,
        }
    }

    /// After the inner IO said "not yet": still waiting, or waited too long.
    fn stalled<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let limit = self.limit;
        let timer = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                // Reset rather than close: a graceful close would leave the kernel holding the
                // unsent bytes for a client that reads nothing, probing its zero window for
                // minutes. A reset frees them now; the client resumes with Last-Event-ID.
                let _ = socket2::SockRef::from(self.inner.inner().socket())
                    .set_linger(Some(Duration::ZERO));
                tracing::warn!(
                    peer = %self.peer,
                    stalled_secs = limit.as_secs_f64(),
                    "reset a connection that read nothing while output waited \
                     (--slow-subscriber-secs); a stream resumes with Last-Event-ID"
                );
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading",
                )))
            }
        }
    }

    fn progressed<R>(
        &mut self,
        result: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        if result.is_pending() {
            return self.stalled(cx);
        }
        self.waiting = None;
        result
    }
}

impl<S: OnSocket> hyper::rt::Read for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: OnSocket> hyper::rt::Write for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progressed(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::REFUSAL;

    #[test]
    fn the_refusal_is_a_whole_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
