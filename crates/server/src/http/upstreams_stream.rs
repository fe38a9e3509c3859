//! `/api/upstreams/stream`: the figures with their five-minute history at once as an `update`
//! event, then every new read (without the history); keep-alive comments in between.

use std::time::Duration;

use axum::response::Response;
use runboard_api::Upstreams;
use tokio_util::sync::CancellationToken;

use crate::events::sse_out::{self, Gone, SseSink};
use crate::observe::scrape::UpstreamsBoard;

/// The streaming response.
pub fn response(
    board: UpstreamsBoard,
    retry: Duration,
    keep_alive: Duration,
    shutdown: CancellationToken,
) -> Response {
    let (sink, response) = sse_out::channel(shutdown);
    tokio::spawn(async move {
        let _ = pump(&sink, &board, retry, keep_alive).await;
    });
    response
}

async fn pump(
    sink: &SseSink,
    board: &UpstreamsBoard,
    retry: Duration,
    keep_alive: Duration,
) -> Result<(), Gone> {
    sink.retry(retry).await?;
    let mut reads = board.subscribe();
    reads.mark_unchanged();
    sink.event(Upstreams::UPDATE_EVENT, None, &board.snapshot())
        .await?;
    loop {
        tokio::select! {
            changed = reads.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let mut snapshot = reads.borrow_and_update().clone();
                // The history went with the first event; the rest carry only the new read.
                for upstream in &mut snapshot.upstreams {
                    upstream.history.clear();
                }
                sink.event(Upstreams::UPDATE_EVENT, None, &snapshot).await?;
            }
            () = tokio::time::sleep(keep_alive) => sink.keep_alive().await?,
            () = sink.closed() => return Err(Gone),
        }
    }
}
