//! An incremental parser for the `text/event-stream` format, exactly as WHATWG HTML's
//! "Interpreting an event stream" describes it: bytes in, [`Frame`]s out, across any chunking.
//!
//! Cost is linear in the input. Each byte is scanned for line terminators once, when it arrives;
//! an unfinished line is buffered and never re-scanned, so a 1 MiB line in 4 KiB chunks costs the
//! same as in one chunk. Lines that arrive whole inside a chunk are parsed in place, unbuffered.

use std::time::Duration;

use memchr::{memchr, memchr2};

use super::event::{Event, Frame};

/// The UTF-8 encoding of U+FEFF, which the stream may start with (once).
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// The default cap on the size of one event: see [`Parser::with_max_event_bytes`].
pub const DEFAULT_MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Whether the start of the stream is still being checked for a byte-order mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BomCheck {
    /// This many leading bytes of the stream matched the BOM so far (0..=2).
    Pending(u8),
    /// The BOM was stripped, or the stream started with something else.
    Done,
}

/// An event-stream parser for one connection after another.
///
/// Feed it the body bytes as they arrive with [`feed`](Self::feed); call
/// [`end_of_stream`](Self::end_of_stream) when the body ends, before feeding the next connection's
/// body. The last event id and nothing else survives that, as in an `EventSource`.
#[derive(Debug, Clone)]
pub struct Parser {
    bom: BomCheck,
    /// The unfinished line, when it started in an earlier chunk.
    line: Vec<u8>,
    /// The unfinished line outgrew the cap; its bytes are skipped up to its terminator.
    skipping_line: bool,
    /// The last byte seen was a CR, so an LF that comes next belongs to the same line break.
    after_cr: bool,
    data: String,
    event_type: String,
    /// The "last event ID buffer": set by `id:` fields, committed on dispatch.
    id_buffer: String,
    /// The "last event ID string": what events carry and what `Last-Event-ID` sends.
    last_event_id: String,
    /// The current event outgrew the cap: its data is dropped and it will not be dispatched.
    event_too_large: bool,
    max_event_bytes: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser with the default cap on event size ([`DEFAULT_MAX_EVENT_BYTES`]).
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that drops any event whose data, together with the line being read, grows past
    /// `max_event_bytes`, reporting [`Frame::TooLarge`] once for it. The cap bounds memory
    /// against a server that never ends a line or an event.
    pub fn with_max_event_bytes(max_event_bytes: usize) -> Self {
        Self {
            bom: BomCheck::Pending(0),
            line: Vec::new(),
            skipping_line: false,
            after_cr: false,
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            event_too_large: false,
            max_event_bytes,
        }
    }

    /// Starts from a known last event id, as when resuming with `Last-Event-ID`.
    #[must_use]
    pub fn with_last_event_id(mut self, id: &str) -> Self {
        self.set_last_event_id(id);
        self
    }

    /// The last event id: what the next reconnect sends as `Last-Event-ID` (when non-empty).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Replaces the last event id, for a caller that resumes from an id it stored.
    pub fn set_last_event_id(&mut self, id: &str) {
        id.clone_into(&mut self.last_event_id);
        id.clone_into(&mut self.id_buffer);
    }

    /// Parses the next piece of the body, calling `sink` for every frame it completes.
    pub fn feed(&mut self, input: &[u8], sink: &mut impl FnMut(Frame)) {
        let mut input = input;
        if let BomCheck::Pending(matched) = self.bom {
            let mut matched = usize::from(matched);
            let mut used = 0;
            while matched < BOM.len() && used < input.len() && input[used] == BOM[matched] {
                matched += 1;
                used += 1;
            }
            if matched == BOM.len() {
                self.bom = BomCheck::Done;
                input = &input[used..];
            } else if used == input.len() {
                // Every byte so far may still be the start of a BOM: wait for more.
                self.bom = BomCheck::Pending(u8::try_from(matched).unwrap_or(0));
                return;
            } else {
                // Not a BOM after all; the bytes held back are ordinary content.
                self.bom = BomCheck::Done;
                self.feed_lines(&BOM[..matched], sink);
                input = &input[used..];
            }
        }
        self.feed_lines(input, sink);
    }

    /// The body ended (cleanly or not). An unfinished event is discarded, as the spec requires;
    /// the last event id is kept for the next connection.
    pub fn end_of_stream(&mut self) {
        self.bom = BomCheck::Pending(0);
        self.line.clear();
        self.skipping_line = false;
        self.after_cr = false;
        self.data.clear();
        self.event_type.clear();
        self.id_buffer.clone_from(&self.last_event_id);
        self.event_too_large = false;
    }

    fn feed_lines(&mut self, input: &[u8], sink: &mut impl FnMut(Frame)) {
        let mut rest = input;
        if rest.is_empty() {
            return;
        }
        if self.after_cr {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(at) = memchr2(b'\r', b'\n', rest) {
            let terminator = rest[at];
            self.end_line(&rest[..at], sink);
            rest = &rest[at + 1..];
            if terminator == b'\r' {
                // A CR ends the line at once; an LF right behind it is the rest of a CRLF. When
                // the CR is the last byte so far, the next chunk decides.
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.hold_partial_line(rest, sink);
    }

    /// Keeps the start of a line that the next chunk will finish.
    fn hold_partial_line(&mut self, partial: &[u8], sink: &mut impl FnMut(Frame)) {
        if self.skipping_line || partial.is_empty() {
            return;
        }
        if self.exceeds_cap(self.line.len() + partial.len()) {
            self.line.clear();
            self.skipping_line = true;
            self.mark_too_large(sink);
        } else {
            self.line.extend_from_slice(partial);
        }
    }

    /// A line terminator arrived after `tail`, the last piece of the current line.
    fn end_line(&mut self, tail: &[u8], sink: &mut impl FnMut(Frame)) {
        if self.skipping_line {
            self.skipping_line = false;
            return;
        }
        if self.line.is_empty() {
            if self.exceeds_cap(tail.len()) {
                self.mark_too_large(sink);
            } else {
                self.process_line(tail, sink);
            }
            return;
        }
        if self.exceeds_cap(self.line.len() + tail.len()) {
            self.mark_too_large(sink);
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(tail);
            self.process_line(&line, sink);
            // Hand the allocation back so the next long line does not start from nothing.
            line.clear();
            self.line = line;
        }
        self.line.clear();
    }

    fn exceeds_cap(&self, line_len: usize) -> bool {
        self.data.len().saturating_add(line_len) > self.max_event_bytes
    }

    fn mark_too_large(&mut self, sink: &mut impl FnMut(Frame)) {
        if !self.event_too_large {
            self.event_too_large = true;
            self.data = String::new();
            sink(Frame::TooLarge {
                limit_bytes: self.max_event_bytes,
            });
        }
    }

    fn process_line(&mut self, line: &[u8], sink: &mut impl FnMut(Frame)) {
        if line.is_empty() {
            self.dispatch(sink);
            return;
        }
        if line[0] == b':' {
            let mut text = String::new();
            push_utf8_lossy(&mut text, &line[1..]);
            sink(Frame::Comment(text));
            return;
        }
        let (name, value) = match memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data"
                if !self.event_too_large => {
                    push_utf8_lossy(&mut self.data, value);
                    self.data.push('\n');
                }
            b"event" => {
                self.event_type.clear();
                push_utf8_lossy(&mut self.event_type, value);
            }
            b"id"
                // A NUL byte is U+0000 after decoding, and nothing else decodes to it.
                if memchr(0, value).is_none() => {
                    self.id_buffer.clear();
                    push_utf8_lossy(&mut self.id_buffer, value);
                }
            b"retry"
                if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                    let millis = value.iter().fold(0u64, |acc, digit| {
                        acc.saturating_mul(10)
                            .saturating_add(u64::from(digit - b'0'))
                    });
                    sink(Frame::Retry(Duration::from_millis(millis)));
                }
            _ => {}
        }
    }

    fn dispatch(&mut self, sink: &mut impl FnMut(Frame)) {
        // The id is committed even when nothing is dispatched: an id-only block moves it.
        if self.last_event_id != self.id_buffer {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        if self.event_too_large {
            self.event_too_large = false;
            self.event_type.clear();
            return;
        }
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        self.data.pop();
        let capacity_hint = self.data.len();
        let data = std::mem::replace(&mut self.data, String::with_capacity(capacity_hint));
        let event = if self.event_type.is_empty() {
            String::from("message")
        } else {
            std::mem::take(&mut self.event_type)
        };
        sink(Frame::Event(Event {
            event,
            data,
            id: self.last_event_id.clone(),
        }));
    }
}

/// Appends `bytes` decoded as UTF-8, with U+FFFD for each invalid sequence. Decoding line by
/// line gives the same result as decoding the whole stream, because CR and LF never occur inside
/// a multi-byte sequence: a sequence cut by a line break is invalid either way.
fn push_utf8_lossy(out: &mut String, bytes: &[u8]) {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut parser = Parser::new();
        let mut frames = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut |frame| frames.push(frame));
        }
        frames
    }

    fn event(event: &str, data: &str, id: &str) -> Frame {
        Frame::Event(Event {
            event: event.into(),
            data: data.into(),
            id: id.into(),
        })
    }

    #[test]
    fn lone_cr_at_the_end_dispatches_without_waiting() {
        assert_eq!(
            parse(&[b"data: x\r\r"]),
            vec![event("message", "x", "")],
            "the second CR is a blank line the moment it arrives"
        );
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_break() {
        assert_eq!(
            parse(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]),
            vec![event("message", "a\nb", "")]
        );
    }

    #[test]
    fn bom_split_across_three_chunks_is_stripped() {
        assert_eq!(
            parse(&[b"\xEF", b"\xBB", b"\xBFdata: x\n\n"]),
            vec![event("message", "x", "")]
        );
    }

    #[test]
    fn partial_bom_followed_by_other_bytes_is_content() {
        // EF BB then 'd': the field name becomes U+FFFD + "data", an unknown field.
        assert_eq!(parse(&[b"\xEF\xBB", b"data: x\n\n"]), vec![]);
    }

    #[test]
    fn end_of_stream_discards_the_unfinished_event_but_keeps_the_id() {
        let mut parser = Parser::new();
        let mut frames = Vec::new();
        parser.feed(b"id: 7\ndata: a\n\nid: 8\ndata: b\n", &mut |f| {
            frames.push(f);
        });
        parser.end_of_stream();
        assert_eq!(parser.last_event_id(), "7");
        parser.feed(b"data: c\n\n", &mut |f| frames.push(f));
        assert_eq!(
            frames,
            vec![event("message", "a", "7"), event("message", "c", "7")]
        );
    }

    #[test]
    fn oversized_event_is_dropped_and_the_next_one_arrives() {
        let mut parser = Parser::with_max_event_bytes(16);
        let mut frames = Vec::new();
        parser.feed(b"data: 0123456789\ndata: 0123456789\n\n", &mut |f| {
            frames.push(f);
        });
        parser.feed(b"data: ok\n\n", &mut |f| frames.push(f));
        assert_eq!(
            frames,
            vec![
                Frame::TooLarge { limit_bytes: 16 },
                event("message", "ok", "")
            ]
        );
    }

    #[test]
    fn retry_saturates_instead_of_overflowing() {
        assert_eq!(
            parse(&[b"retry: 99999999999999999999999999\n"]),
            vec![Frame::Retry(Duration::from_millis(u64::MAX))]
        );
    }
}
