//! The body a proxied call's client reads: the pieces the exchange passes on, joined when
//! several are already waiting (a burst the upstream wrote at once goes out in one write, not
//! one system call per chunk; the bytes are the same and none waits), and counted as the
//! connection takes them, so the exchange can tell a client that left after the whole answer
//! from one that left in the middle.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::mpsc;

use super::exchange::BodyPiece;

/// The most bytes joined into one write.
const MAX_JOINED: usize = 64 * 1024;

/// The client's side of an exchange's body channel.
pub struct ClientBody {
    pieces: mpsc::Receiver<BodyPiece>,
    delivered: Arc<AtomicU64>,
    /// An error met while joining, given at the next poll (after the bytes before it).
    held: Option<std::io::Error>,
}

impl ClientBody {
    /// The body of `pieces`, counting what is handed over in `delivered`.
    pub fn new(pieces: mpsc::Receiver<BodyPiece>, delivered: Arc<AtomicU64>) -> Self {
        Self {
            pieces,
            delivered,
            held: None,
        }
    }
}

impl Stream for ClientBody {
    type Item = BodyPiece;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BodyPiece>> {
        let this = self.get_mut();
        if let Some(error) = this.held.take() {
            return Poll::Ready(Some(Err(error)));
        }
        let first = match this.pieces.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => bytes,
            other => return other,
        };
        let mut joined: Option<BytesMut> = None;
        while joined.as_ref().map_or(first.len(), BytesMut::len) < MAX_JOINED {
            match this.pieces.try_recv() {
                Ok(Ok(more)) => joined
                    .get_or_insert_with(|| BytesMut::from(&first[..]))
                    .extend_from_slice(&more),
                Ok(Err(error)) => {
                    this.held = Some(error);
                    break;
                }
                Err(_) => break,
            }
        }
        let bytes: Bytes = joined.map_or(first, BytesMut::freeze);
        this.delivered
            .fetch_add(bytes.len() as u64, Ordering::Release);
        Poll::Ready(Some(Ok(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    #[tokio::test]
    async fn waiting_pieces_are_joined_counted_and_an_error_comes_after_them() {
        let (sender, receiver) = mpsc::channel(8);
        let delivered = Arc::new(AtomicU64::new(0));
        let mut body = ClientBody::new(receiver, Arc::clone(&delivered));
        for piece in ["data: a\n\n", "data: b\n\n", "data: [DONE]\n\n"] {
            sender.send(Ok(Bytes::from(piece))).await.unwrap();
        }
        let joined = body.next().await.unwrap().unwrap();
        assert_eq!(joined, "data: a\n\ndata: b\n\ndata: [DONE]\n\n");
        assert_eq!(delivered.load(Ordering::Acquire), joined.len() as u64);
        sender.send(Ok(Bytes::from("x"))).await.unwrap();
        sender
            .send(Err(std::io::Error::other("cut")))
            .await
            .unwrap();
        assert_eq!(body.next().await.unwrap().unwrap(), "x");
        assert!(body.next().await.unwrap().is_err());
        drop(sender);
        assert!(body.next().await.is_none());
        assert_eq!(delivered.load(Ordering::Acquire), joined.len() as u64 + 1);
    }
}
