//! Fan-out of persisted events to every live stream, with each SSE frame encoded once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::{Bytes, BytesMut};
use runboard_api::{EventKind, Redaction};
use runboard_sse::encode;
use tokio::sync::broadcast;

use crate::store::EventRow;

/// A persisted event, ready to send: its frames for `/api/events` (global id) and for the
/// per-run stream (run id) are encoded once here, not once per subscriber.
#[derive(Debug)]
pub struct Published {
    /// Global sequence.
    pub seq: i64,
    /// The run.
    pub run_id: String,
    /// Sequence within the run.
    pub run_seq: i64,
    /// Whether this is the run's `stream_end`.
    pub is_stream_end: bool,
    /// Whether this is a `node_update` (one generation step).
    pub is_node_update: bool,
    /// `id: <seq>` + event + data.
    pub global_frame: Bytes,
    /// `id: <run_seq>` + event + data.
    pub run_frame: Bytes,
    /// The global and per-run frames for readers the server redacts for (`--redact-viewers`);
    /// `None` when it redacts for none, or the event did not decode (then they are not sent
    /// it: what cannot be read cannot be shown to be safe).
    pub redacted: Option<(Bytes, Bytes)>,
}

impl Published {
    /// Encodes a stored event, and when `redaction` is given, its redacted frames too.
    pub fn from_row(row: &EventRow, redaction: Option<Redaction>) -> Self {
        let mut body = BytesMut::new();
        encode::write_event(&mut body, None, &row.event, &row.data);
        let redacted = redaction
            .and_then(|mode| mode.event_data(&row.event, &row.data))
            .map(|data| {
                let mut body = BytesMut::new();
                encode::write_event(&mut body, None, &row.event, &data);
                (
                    frame_with_id(row.seq, &body),
                    frame_with_id(row.run_seq, &body),
                )
            });
        Self {
            seq: row.seq,
            run_id: row.run_id.clone(),
            run_seq: row.run_seq,
            is_stream_end: row.event == EventKind::StreamEnd.as_str(),
            is_node_update: row.event == EventKind::NodeUpdate.as_str(),
            global_frame: frame_with_id(row.seq, &body),
            run_frame: frame_with_id(row.run_seq, &body),
            redacted,
        }
    }
}

/// `id: <id>` and then an encoded frame without an id: the event and its data are encoded
/// once for both of a stored event's frames (the data is scanned for line breaks once).
fn frame_with_id(id: i64, body: &[u8]) -> Bytes {
    let id = id.to_string();
    let mut frame = BytesMut::with_capacity(body.len() + id.len() + 5);
    frame.extend_from_slice(b"id: ");
    frame.extend_from_slice(id.as_bytes());
    frame.extend_from_slice(b"\n");
    frame.extend_from_slice(body);
    frame.freeze()
}

/// The broadcast of persisted events. A subscriber that falls more than the capacity behind is
/// told so (`Lagged`) and catches up from the store.
#[derive(Debug, Clone)]
pub struct Hub {
    sender: broadcast::Sender<Arc<Published>>,
    /// The global sequence of the newest event published (so stored): `/api/health` reads it
    /// here rather than from the database, where it would wait behind replays for a connection.
    head: Arc<AtomicI64>,
    /// What readers of redacted streams are not sent (`--redact-viewers`): each event's
    /// redacted frames are made once here, beside its plain ones.
    redaction: Option<Redaction>,
}

impl Hub {
    /// A hub that keeps up to `capacity` events for slow subscribers; `head` is the newest
    /// event already stored.
    pub fn new(capacity: usize, head: i64) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            head: Arc::new(AtomicI64::new(head)),
            redaction: None,
        }
    }

    /// The same hub, making each event's frames for readers `redaction` applies to as well.
    #[must_use]
    pub fn redacting(self, redaction: Option<Redaction>) -> Self {
        Self { redaction, ..self }
    }

    /// What redacted readers are not sent.
    pub fn redaction(&self) -> Option<Redaction> {
        self.redaction
    }

    /// Encodes a stored event for this hub's streams.
    pub fn encode(&self, row: &EventRow) -> Arc<Published> {
        Arc::new(Published::from_row(row, self.redaction))
    }

    /// The global sequence of the newest stored event.
    pub fn head(&self) -> i64 {
        self.head.load(Ordering::Acquire)
    }

    /// The event streams following the hub now.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.sender.subscribe()
    }

    /// Sends an event to every subscriber (none is fine).
    pub fn publish(&self, event: Arc<Published>) {
        self.head.fetch_max(event.seq, Ordering::AcqRel);
        let _ = self.sender.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One SSE frame of a stored event, encoded whole.
    fn encode_frame(id: i64, event: &str, data: &str) -> Bytes {
        let mut frame = BytesMut::new();
        encode::write_event(&mut frame, Some(&id.to_string()), event, data);
        frame.freeze()
    }

    #[test]
    fn both_frames_equal_a_frame_encoded_whole() {
        let row = EventRow {
            seq: 4021,
            run_id: "run-1".into(),
            run_seq: 7,
            event: "node_update".into(),
            data: "{\"snippet\":\"two\\nlines\"}\nraw second line".into(),
            ts: String::new(),
        };
        let published = Published::from_row(&row, None);
        assert_eq!(
            published.global_frame,
            encode_frame(4021, &row.event, &row.data)
        );
        assert_eq!(published.run_frame, encode_frame(7, &row.event, &row.data));
        assert!(published.is_node_update && !published.is_stream_end);
        assert!(published.redacted.is_none());
    }

    #[test]
    fn redacted_frames_leave_the_text_out_and_an_undecodable_event_has_none() {
        let row = EventRow {
            seq: 12,
            run_id: "run-1".into(),
            run_seq: 3,
            event: "node_update".into(),
            data: r#"{"run_id":"run-1","snippet":"the secret answer","tokens_out":9}"#.into(),
            ts: String::new(),
        };
        let published = Published::from_row(&row, Some(Redaction::Text));
        let (global, run) = published.redacted.clone().unwrap();
        let global = String::from_utf8(global.to_vec()).unwrap();
        assert!(global.starts_with("id: 12\n"), "{global}");
        assert!(
            !global.contains("secret") && global.contains("\"tokens_out\":9"),
            "{global}"
        );
        assert!(run.starts_with(b"id: 3\n"));
        assert!(String::from_utf8_lossy(&published.global_frame).contains("secret"));
        let broken = EventRow {
            data: "not json".into(),
            ..row
        };
        assert!(
            Published::from_row(&broken, Some(Redaction::Text))
                .redacted
                .is_none()
        );
    }
}
