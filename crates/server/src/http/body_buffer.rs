//! Reading a request body into one buffer, so what a body costs is bounded by design: its own
//! bytes, once.
//!
//! The buffer is sized from the body's `Content-Length` before the first byte arrives, and
//! each piece is copied in and let go as it comes (no list of pieces, no copies as a buffer
//! doubles). A large body (1 MiB and up) goes into memory mapped from the system for it
//! alone and handed back when the last reference to it is dropped: a burst of 30 MB bodies
//! leaves nothing resident behind, where the allocator would keep the freed memory until its
//! threads next allocate.

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body::Body as _;

/// Bodies from this size on get memory of their own.
const OWN_MAPPING_FROM: u64 = 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// It is larger than the limit.
    TooLarge,
    /// The connection failed, or the system would not give the memory.
    Broken,
}

/// The body, at most `limit` bytes.
pub async fn collect(body: axum::body::Body, limit: usize) -> Result<Bytes, BodyError> {
    let expected = body.size_hint().exact();
    if expected.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut pieces = body.into_data_stream();
    match expected {
        Some(length) if length >= OWN_MAPPING_FROM => {
            let length = usize::try_from(length).map_err(|_| BodyError::TooLarge)?;
            let mut mapping = memmap2::MmapMut::map_anon(length).map_err(|_| BodyError::Broken)?;
            let mut filled = 0;
            while let Some(piece) = pieces.next().await {
                let piece = piece.map_err(|_| BodyError::Broken)?;
                // The connection frames the body by its length; more would be a bug there.
                let end = filled + piece.len();
                if end > length {
                    return Err(BodyError::Broken);
                }
                mapping[filled..end].copy_from_slice(&piece);
                filled = end;
            }
            if filled != length {
                return Err(BodyError::Broken);
            }
            let mapping = mapping.make_read_only().map_err(|_| BodyError::Broken)?;
            Ok(Bytes::from_owner(mapping))
        }
        _ => {
            let mut buffer =
                Vec::with_capacity(expected.and_then(|n| usize::try_from(n).ok()).unwrap_or(0));
            while let Some(piece) = pieces.next().await {
                let piece = piece.map_err(|_| BodyError::Broken)?;
                if buffer.len() + piece.len() > limit {
                    return Err(BodyError::TooLarge);
                }
                buffer.extend_from_slice(&piece);
            }
            Ok(Bytes::from(buffer))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[tokio::test]
    async fn small_large_and_unsized_bodies_come_back_whole_and_limits_hold() {
        let small = Bytes::from(vec![7u8; 1000]);
        assert_eq!(
            collect(Body::from(small.clone()), 4096).await.unwrap(),
            small
        );
        let large = Bytes::from(
            (0..3_000_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            collect(Body::from(large.clone()), 4 * 1024 * 1024)
                .await
                .unwrap(),
            large
        );
        assert_eq!(
            collect(Body::from(large.clone()), 1024 * 1024).await,
            Err(BodyError::TooLarge)
        );
        // A body of unknown length (chunked) is counted as it comes.
        let pieces = futures_util::stream::iter(
            (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 1000]))),
        );
        assert_eq!(
            collect(Body::from_stream(pieces), 5000).await,
            Err(BodyError::TooLarge)
        );
        let pieces = futures_util::stream::iter(
            (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 1000]))),
        );
        assert_eq!(
            collect(Body::from_stream(pieces), 10_000)
                .await
                .unwrap()
                .len(),
            10_000
        );
    }
}
