//! A strict look at the start of each connection, before hyper reads it: hyper accepts a bare
//! LF as a line end (RFC 9112 lets a recipient do so) and answers a request line with raw
//! non-ASCII bytes with an empty 400. A front proxy that reads lines the other way could be
//! made to see a different request than runboard does, and a client deserves to be told what
//! was wrong in runboard's usual JSON. So the head of a connection's first request is read
//! here: a bare LF, or a request line with anything but visible ASCII and spaces, gets a JSON
//! 400 and the connection is closed; otherwise hyper gets the bytes read so far, then the
//! connection.
//!
//! Later requests on a kept-alive connection are hyper's alone: telling where they start
//! would mean parsing every body here too.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

/// What a client whose first request head is malformed reads before the connection closes.
fn refusal(message: &str) -> Vec<u8> {
    let body = format!(
        "{{\"error\":{{\"code\":\"{}\",\"message\":{}}}}}\n",
        runboard_api::ErrorCode::BadRequest.as_str(),
        serde_json::Value::String(message.to_owned())
    );
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What was wrong with a head.
#[derive(Debug, PartialEq, Eq)]
enum Malformed {
    BareLf,
    RequestLineBytes,
}

/// Looks at what has arrived of a head: `Ok(true)` once it is whole and sound, `Ok(false)`
/// while more is needed.
fn judge(head: &[u8]) -> Result<bool, Malformed> {
    let mut line_start = 0;
    for (at, byte) in head.iter().enumerate() {
        if *byte != b'\n' {
            continue;
        }
        if at == 0 || head[at - 1] != b'\r' {
            return Err(Malformed::BareLf);
        }
        let line = &head[line_start..at - 1];
        if line_start == 0 && !line.iter().all(|b| matches!(b, b' '..=b'~')) {
            return Err(Malformed::RequestLineBytes);
        }
        if line.is_empty() && line_start > 0 {
            return Ok(true);
        }
        line_start = at + 1;
    }
    // A request line still arriving may already show a byte it must not hold.
    if line_start == 0 && !head.iter().all(|b| matches!(b, b' '..=b'~' | b'\r')) {
        return Err(Malformed::RequestLineBytes);
    }
    Ok(false)
}

/// Reads the first request's head (up to `limit` bytes, within `timeout`) and gives back the
/// connection with those bytes to be read again, or `None` when the client was answered 400
/// or went away.
pub async fn check(mut stream: TcpStream, limit: usize, timeout: Duration) -> Option<Prefixed> {
    let mut head = Vec::new();
    let read = tokio::time::timeout(timeout, async {
        let mut chunk = [0_u8; 4096];
        loop {
            match judge(&head) {
                Ok(true) => return Ok(()),
                Ok(false) if head.len() >= limit => return Ok(()),
                Ok(false) => {}
                Err(malformed) => return Err(Some(malformed)),
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    match read {
        // Too slow: hyper's own header timeout would close it the same way.
        Err(_) | Ok(Err(None)) => None,
        Ok(Err(Some(malformed))) => {
            let message = match malformed {
                Malformed::BareLf => {
                    "a line of the request ends in a bare LF; HTTP lines end in CR LF"
                }
                Malformed::RequestLineBytes => {
                    "the request line holds bytes other than visible ASCII; percent-encode \
                     them in the path"
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = stream.write_all(&refusal(message)).await;
                let _ = stream.shutdown().await;
            })
            .await;
            None
        }
        Ok(Ok(())) => Some(Prefixed {
            stream,
            prefix: head,
            read: 0,
        }),
    }
}

/// A connection whose first bytes were already read: they are read again first.
#[derive(Debug)]
pub struct Prefixed {
    stream: TcpStream,
    prefix: Vec<u8>,
    read: usize,
}

impl Prefixed {
    /// The connection itself.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.prefix.len() {
            let rest = &this.prefix[this.read..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.read += n;
            if this.read == this.prefix.len() {
                this.prefix = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_judged_line_by_line() {
        assert_eq!(judge(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody\n"), Ok(true));
        assert_eq!(judge(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(false));
        assert_eq!(judge(b"GET / HT"), Ok(false));
        assert_eq!(
            judge(b"GET / HTTP/1.1\nHost: a\n\n"),
            Err(Malformed::BareLf)
        );
        assert_eq!(
            judge(b"GET / HTTP/1.1\r\nHost: a\n\r\n"),
            Err(Malformed::BareLf)
        );
        assert_eq!(
            judge(b"GET /runs/\xff HTTP/1.1\r\n\r\n"),
            Err(Malformed::RequestLineBytes)
        );
        assert_eq!(judge(b"GET /\x01"), Err(Malformed::RequestLineBytes));
        // Header values may carry other bytes; hyper judges those.
        assert_eq!(judge(b"GET / HTTP/1.1\r\nX: \xc3\xa9\r\n\r\n"), Ok(true));
    }
}
